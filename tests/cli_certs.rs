//! `poolpipe certs init` and `poolpipe certs issue`.

mod common;

use common::poolpipe;

#[test]
fn certs_init_and_issue_write_pem_files_and_refuse_to_overwrite() {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let dir = d.to_string_lossy().into_owned();
    let ok = |args: &[&str]| {
        let out = poolpipe(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(ok(&["certs", "init", "--out", &dir]).contains("ca.pem"));
    assert!(ok(&["certs", "issue", "worker-1", "--ca", &dir]).contains("worker-1.pem"));
    for f in ["ca.pem", "ca.key", "worker-1.pem", "worker-1.key"] {
        let text = std::fs::read_to_string(d.join(f)).unwrap();
        assert!(text.starts_with("-----BEGIN"), "{f}");
    }
    let fail = |args: &[&str], expect: &str| {
        let out = poolpipe(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expect), "{args:?}: {err}");
    };
    fail(&["certs", "init", "--out", &dir], "already holds a CA");
    fail(&["certs", "issue", "worker-1", "--ca", &dir], "already has a certificate for 'worker-1'");
    fail(&["certs", "issue", "bad name", "--ca", &dir], "DNS-style name");
    let nowhere = d.join("nowhere").to_string_lossy().into_owned();
    fail(&["certs", "issue", "worker-2", "--ca", &nowhere], "poolpipe certs init");
    ok(&["certs", "issue", "worker-1", "--ca", &dir, "--force"]);
    std::fs::remove_dir_all(&d).unwrap();
}
