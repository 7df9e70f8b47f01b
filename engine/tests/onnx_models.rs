//! ONNX models imported and run on the GPU against onnxruntime (CPU), at the batch sizes the
//! generator ran them (1 and 4; 1 for the light models of the `onnx` package whose graphs fix
//! the batch), and the light models also against the outputs shipped beside them.
//!
//! The models, inputs and onnxruntime outputs come from `scripts/gen_onnx_models.py` (run here
//! into the test's temporary folder; `scripts/setup.sh` installs onnx and onnxruntime).
//! Tolerance: the largest absolute error relative to the largest |onnxruntime value| (floor
//! 1e-6) is at most 1e-3.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use common::device;
use poolpipe_engine::gpu::{CompileOptions, CompiledModel};
use poolpipe_engine::{npy, onnx};

const TOL: f32 = 1e-3;

/// Runs the generator once per test binary (or uses POOLPIPE_ONNX_DIR when set).
fn generated(kind: &str) -> PathBuf {
    static DIRS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (gen_dir, light_dir) = DIRS.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx-models");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gen_onnx_models.py");
        let (g, l) = (base.join("generated"), base.join("light"));
        for (dir, extra) in [(&g, None), (&l, Some("--light"))] {
            let _ = std::fs::remove_dir_all(dir);
            let mut cmd = Command::new("python3");
            cmd.arg(&script).arg(dir);
            cmd.args(extra);
            let out = cmd.output().expect("python3 runs (scripts/setup.sh installs onnx, onnxruntime)");
            assert!(
                out.status.success(),
                "{} failed (run scripts/setup.sh for onnx and onnxruntime):\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (g, l)
    });
    if kind == "light" { light_dir.clone() } else { gen_dir.clone() }
}

fn check_manifest(dir: &Path, only: Option<&str>) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest.json")).unwrap();
    let dev = device();
    let mut checked = 0;
    for m in manifest["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let model = onnx::load(&dir.join(m["file"].as_str().unwrap()), &Default::default())
            .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
        let batches: Vec<usize> =
            m["batches"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as usize).collect();
        // One model, compiled once per batch size it is run at.
        let mut compiled = CompiledModel::new(&dev, Arc::new(model), CompileOptions::default());
        for b in batches {
            let input = npy::read(&dir.join(format!("{name}.b{b}.input.npy"))).unwrap();
            let got = compiled.run(&[input]).unwrap_or_else(|e| panic!("{name} batch {b}: {e}"));
            for (k, g) in got.iter().enumerate() {
                let want = npy::read(&dir.join(format!("{name}.b{b}.out{k}.npy"))).unwrap();
                let g = g.clone().reshaped(want.shape().to_vec()).unwrap_or_else(|_| {
                    panic!("{name} batch {b} output {k}: shape {:?}, onnxruntime {:?}", g.shape(), want.shape())
                });
                let err = g.max_abs_diff(&want) / want.max_abs().max(1e-6);
                assert!(err <= TOL, "{name} batch {b} output {k}: relative error {err:e} above {TOL:e}");
            }
        }
        // The light models ship the output of a known input: compare with it too.
        if let (Some(inp), Some(exp)) = (m["expected_input"].as_str(), m["expected"].as_str()) {
            let input = npy::read(&dir.join(inp)).unwrap();
            let want = npy::read(&dir.join(exp)).unwrap();
            let got = compiled.run(&[input]).unwrap().remove(0).reshaped(want.shape().to_vec()).unwrap();
            let err = got.max_abs_diff(&want) / want.max_abs().max(1e-6);
            assert!(err <= TOL, "{name}: relative error {err:e} against the shipped expected output");
        }
        checked += 1;
    }
    assert!(checked > 0, "no model checked in {}", dir.display());
}

#[test]
fn generated_cnn_families_match_onnxruntime() {
    check_manifest(&generated("generated"), std::env::var("POOLPIPE_ONNX_ONLY").ok().as_deref());
}

#[test]
fn light_model_zoo_models_match_onnxruntime() {
    check_manifest(&generated("light"), std::env::var("POOLPIPE_ONNX_ONLY").ok().as_deref());
}
