//! The edge-site Debian package: `cargo deb` (cargo-deb, installed by scripts/test.sh) packs
//! the binary the tests built, the systemd units, the default config and the certificate
//! helper. The test reads the package's control data and files, runs the packed binary, and
//! (as root, as in CI) installs the package, checks the service user and its folders, runs
//! the binary as that user, and purges it again.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} does not run: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn target_dir() -> PathBuf {
    // CARGO_BIN_EXE_poolpipe is TARGET/debug/poolpipe.
    Path::new(env!("CARGO_BIN_EXE_poolpipe")).parent().and_then(Path::parent).unwrap().to_path_buf()
}

#[test]
fn the_debian_package_holds_the_binary_units_and_config_and_installs_offline() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let deb = tmp.join("poolpipe.deb");
    // Package the binary this test run built (no release build: --profile dev).
    run(Command::new("cargo")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir())
        .args(["deb", "--no-build", "--profile", "dev", "--fast", "-o"])
        .arg(&deb));

    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("Package: poolpipe"), "{info}");
    assert!(info.contains("Depends: libc6") && info.contains("passwd"), "{info}");
    assert!(info.contains("Recommends: libvulkan1, mesa-vulkan-drivers"), "{info}");
    let files = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for f in [
        "./usr/bin/poolpipe",
        "./usr/sbin/poolpipe-certs",
        "./lib/systemd/system/poolpipe-controller.service",
        "./lib/systemd/system/poolpipe-worker@.service",
        "./lib/systemd/system/poolpipe-serve.service",
        "./lib/systemd/system/poolpipe-frontend.service",
        "./etc/poolpipe/cluster.toml",
        "./usr/share/doc/poolpipe/deploy.md",
        "./usr/share/doc/poolpipe/worker.env.example",
        "./usr/share/doc/poolpipe/frontend.env.example",
    ] {
        assert!(files.lines().any(|l| l.ends_with(f)), "{f} is not in the package:\n{files}");
    }
    assert_eq!(run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Package")).trim(), "poolpipe");
    let control = tmp.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert_eq!(std::fs::read_to_string(control.join("conffiles")).unwrap().trim(), "/etc/poolpipe/cluster.toml");
    assert!(std::fs::read_to_string(control.join("postinst")).unwrap().contains("useradd --system"));

    // The packed files: the binary runs, every unit runs as the unprivileged user, the default
    // config parses as a cluster config.
    let root = tmp.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let version = run(Command::new(root.join("usr/bin/poolpipe")).arg("--version"));
    assert!(version.starts_with("poolpipe "), "{version}");
    for unit in [
        "poolpipe-controller.service",
        "poolpipe-worker@.service",
        "poolpipe-serve.service",
        "poolpipe-frontend.service",
    ] {
        let text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit)).unwrap();
        assert!(text.contains("User=poolpipe") && text.contains("ExecStart=/usr/bin/poolpipe "), "{unit}:\n{text}");
        assert!(text.contains("NoNewPrivileges=yes") && text.contains("WantedBy=multi-user.target"), "{unit}");
    }
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("etc/poolpipe/cluster.toml")).unwrap()).unwrap();
    assert_eq!(config["controller"]["certs"].as_str(), Some("/etc/poolpipe/certs"));

    // Installing needs root (CI runs as root); elsewhere the checks above are what can run.
    let is_root = run(Command::new("id").arg("-u")).trim() == "0";
    if !is_root {
        eprintln!("not root: the package was built and checked but not installed");
        return;
    }
    let already = Command::new("dpkg-query").args(["-W", "poolpipe"]).output().unwrap().status.success();
    assert!(!already, "a poolpipe package is already installed here; remove it before running this test");
    // Offline: dpkg alone, no apt, no network.
    run(Command::new("dpkg").arg("-i").arg(&deb));
    let outcome = std::panic::catch_unwind(|| {
        let user = run(Command::new("getent").args(["passwd", "poolpipe"]));
        assert!(user.contains("/var/lib/poolpipe") && user.contains("nologin"), "{user}");
        let owner = run(Command::new("stat").args(["-c", "%U %a", "/var/lib/poolpipe"]));
        assert_eq!(owner.trim(), "poolpipe 750");
        let certs = run(Command::new("stat").args(["-c", "%U:%G", "/etc/poolpipe/certs"]));
        assert_eq!(certs.trim(), "root:poolpipe");
        // The service user runs the binary (as the units do).
        let v = run(Command::new("runuser").args(["-u", "poolpipe", "--", "/usr/bin/poolpipe", "--version"]));
        assert!(v.starts_with("poolpipe "), "{v}");
        // The certificate helper makes the CA and a node certificate for the service.
        run(Command::new("/usr/sbin/poolpipe-certs").arg("controller"));
        let key = run(Command::new("stat").args(["-c", "%U:%G %a", "/etc/poolpipe/certs/controller.key"]));
        assert_eq!(key.trim(), "root:poolpipe 640");
        let ca_key = run(Command::new("stat").args(["-c", "%U %a", "/etc/poolpipe/certs/ca.key"]));
        assert_eq!(ca_key.trim(), "root 600");
    });
    let _ = Command::new("rm").args(["-rf", "/etc/poolpipe/certs"]).status();
    run(Command::new("dpkg").args(["--purge", "poolpipe"]));
    let gone = Command::new("getent").args(["passwd", "poolpipe"]).output().unwrap();
    assert!(!gone.status.success(), "purging removes the service user");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}
