//! Shared helpers of the engine tests: ONNX's node cases generated into a folder, one device
//! per test binary (lavapipe on CPU-only machines; a test fails, never skips, when there is
//! no adapter) and the comparison of a GPU run with the CPU reference.

#![allow(dead_code)]

use std::sync::OnceLock;

use poolpipe_engine::gpu::{CompileOptions, Device};
use poolpipe_engine::{Graph, Rng, Tensor, reference};

/// The test device: `POOLPIPE_TEST_ADAPTER` selects one (default: the first adapter).
pub fn device() -> Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(|| {
        let sel: poolpipe_engine::gpu::AdapterSelector =
            std::env::var("POOLPIPE_TEST_ADAPTER").unwrap_or_default().parse().unwrap();
        match Device::open(&sel) {
            Ok(d) => d,
            Err(e) => panic!("GPU tests need a wgpu adapter (lavapipe on CPU-only machines): {e}"),
        }
    })
    .clone()
}

/// ONNX's backend node cases, generated from the installed `onnx` package by
/// `scripts/onnx_node_cases.py` into a fresh temporary folder named after `tag` (one folder
/// a case: `model.onnx`, `input_*.pb`, `output_*.pb`; `manifest.json`). Returns the folder.
pub fn node_cases(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("poolpipe-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/onnx_node_cases.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .status()
        .expect("python3 runs (scripts/setup.sh installs onnx)");
    assert!(status.success(), "{} failed", script.display());
    dir
}

/// Random inputs for a static graph (floats in [-1, 1), integers 0..=2, bools coins).
pub fn inputs(g: &Graph, rng: &mut Rng) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .map(|&i| {
            let v = g.value(i);
            let (lo, hi) = if v.dtype.is_float() { (-1.0, 1.0) } else { (0.0, 2.0) };
            Tensor::random_of(v.dtype, v.shape.clone(), rng, lo, hi)
        })
        .collect()
}

/// Largest error of `got` against `want`, relative to max(1, largest |want|).
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape(), want.shape(), "output shapes differ");
    assert_eq!(got.dtype(), want.dtype(), "output types differ");
    got.max_abs_diff(want) / want.max_abs().max(1.0)
}

/// Builds the graph at each batch with `build`, compiles it and checks every output against
/// the CPU reference; the tolerance is on the error relative to max(1, largest |reference|).
pub fn check(build: impl Fn(usize) -> Graph, batches: &[usize], tol: f32, seed: u64) {
    for &b in batches {
        check_graph(&build(b), tol, seed + b as u64, &CompileOptions::default());
    }
}

/// Compiles one static graph and checks every output against the CPU reference.
pub fn check_graph(g: &Graph, tol: f32, seed: u64, opts: &CompileOptions) {
    let dev = device();
    let mut compiled = dev.compile(g, opts).unwrap_or_else(|e| panic!("compile {}: {e}", g.name));
    let mut rng = Rng::new(seed);
    let ins = inputs(g, &mut rng);
    let want = reference::run(g, &ins).unwrap_or_else(|e| panic!("reference {}: {e}", g.name));
    let got = compiled.run(&ins).unwrap_or_else(|e| panic!("gpu {}: {e}", g.name));
    assert_eq!(got.len(), want.len());
    for (k, (gt, wt)) in got.iter().zip(&want).enumerate() {
        let e = rel_err(gt, wt);
        assert!(
            e <= tol,
            "graph {} output {k}: relative error {e:e} above {tol:e}\n  gpu {:?}\n  ref {:?}",
            g.name,
            &gt.to_f64s()[..gt.len().min(8)],
            &wt.to_f64s()[..wt.len().min(8)]
        );
    }
}
