//! The data plane is sans-IO: no async runtime, network stack, HTTP server or clock among its
//! dependencies, and no clock read in its sources or in the policies it runs.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_runtime_network_or_clock_among_the_dependencies() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let table: toml::Table = manifest.parse().unwrap();
    let deps = table["dependencies"].as_table().unwrap();
    for banned in ["tokio", "quinn", "axum", "hyper", "tonic", "mio", "async-std", "chrono", "time", "rustls"] {
        assert!(!deps.contains_key(banned), "poolpipe-dataplane depends on {banned}: it must stay sans-IO");
    }
    // What it may depend on, so a new dependency is a decision, not an accident.
    let allowed = ["poolpipe-planner", "poolpipe-policies", "serde", "thiserror", "tracing"];
    for name in deps.keys() {
        assert!(allowed.contains(&name.as_str()), "new dependency {name}: check it does no I/O, then list it here");
    }
}

#[test]
fn the_data_plane_and_policies_never_read_the_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("../policies/src"), &mut files);
    assert!(files.len() > 10, "{files:?}");
    for path in files.into_iter().filter(|p| !p.ends_with("tests.rs")) {
        let text = std::fs::read_to_string(&path).unwrap();
        // The WebAssembly sandbox has a deadline ticker (durations and a sleeping thread that
        // stops runaway guests); it never reads the time, and nothing it does feeds a decision.
        let banned: &[&str] = if path.ends_with("wasm.rs") {
            &["Instant", "SystemTime", "chrono::", "tokio::"]
        } else {
            &["Instant", "SystemTime", "std::time", "chrono::", "tokio::", "std::net", "std::thread"]
        };
        for word in banned {
            let hits = text.lines().filter(|l| l.contains(word)).count();
            assert_eq!(hits, 0, "{} mentions {word}: time and I/O must come from the caller", path.display());
        }
    }
}
