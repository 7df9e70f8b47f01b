//! Helpers shared by the end-to-end tests: run the binary, read its JSON.

use std::process::{Command, Output};

/// Runs `poolpipe` with `args`.
pub fn poolpipe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolpipe")).args(args).output().expect("the binary runs")
}

/// The one JSON object a successful `--json` run prints.
#[allow(dead_code)] // shared by the test files; not every one prints JSON
pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", String::from_utf8_lossy(&out.stdout)))
}
