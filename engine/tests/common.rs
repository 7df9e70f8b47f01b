//! Shared helpers of the GPU tests: one device per test binary (lavapipe on CPU-only
//! machines; a test fails, never skips, when there is no adapter) and the comparison of a
//! GPU run with the CPU reference.

#![allow(dead_code)]

use std::sync::OnceLock;

use poolpipe_engine::gpu::{AdapterSelector, CompileOptions, Device};
use poolpipe_engine::{Graph, Rng, Tensor, reference};

/// The test device: `POOLPIPE_TEST_ADAPTER` selects one (default: the first adapter).
pub fn device() -> Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(|| {
        let sel: AdapterSelector = std::env::var("POOLPIPE_TEST_ADAPTER").unwrap_or_default().parse().unwrap();
        match Device::open(&sel) {
            Ok(d) => d,
            Err(e) => panic!("GPU tests need a wgpu adapter (lavapipe on CPU-only machines): {e}"),
        }
    })
    .clone()
}

/// Random inputs for a graph at a batch.
pub fn inputs(g: &Graph, batch: usize, rng: &mut Rng) -> Vec<Tensor> {
    g.inputs().iter().map(|&i| Tensor::random(g.value(i).shape_at(batch), rng, -1.0, 1.0)).collect()
}

/// Largest error of `got` against `want`, relative to max(1, largest |want|).
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape(), want.shape(), "output shapes differ");
    got.max_abs_diff(want) / want.max_abs().max(1.0)
}

/// Compiles `g` (max batch 4) and checks every output against the CPU reference at each
/// batch; the tolerance is on the error relative to max(1, largest |reference|).
pub fn check(g: &Graph, batches: &[usize], tol: f32, seed: u64) {
    check_with(g, batches, tol, seed, &CompileOptions { max_batch: 4, ..Default::default() });
}

pub fn check_with(g: &Graph, batches: &[usize], tol: f32, seed: u64, opts: &CompileOptions) {
    let dev = device();
    let mut compiled = dev.compile(g, opts).unwrap_or_else(|e| panic!("compile {}: {e}", g.name));
    let mut rng = Rng::new(seed);
    for &b in batches {
        let ins = inputs(g, b, &mut rng);
        let want = reference::run(g, &ins).unwrap_or_else(|e| panic!("reference {}: {e}", g.name));
        let got = compiled.run(&ins).unwrap_or_else(|e| panic!("gpu {}: {e}", g.name));
        assert_eq!(got.len(), want.len());
        for (k, (gt, wt)) in got.iter().zip(&want).enumerate() {
            let e = rel_err(gt, wt);
            assert!(
                e <= tol,
                "graph {} output {k} at batch {b}: relative error {e:e} above {tol:e}\n  gpu {:?}\n  ref {:?}",
                g.name,
                &gt.data()[..gt.len().min(8)],
                &wt.data()[..wt.len().min(8)]
            );
        }
    }
}
