//! ONNX import followed, for small graphs, by one run of the CPU reference executor at batch 1
//! on seeded random inputs. Import and run may fail with an error; any panic is a bug (the
//! reference also cross-checks every output shape against the shapes the importer inferred).

#![no_main]

use libfuzzer_sys::fuzz_target;
use poolpipe_engine::onnx::{ImportOptions, load_bytes};
use poolpipe_engine::{Rng, Tensor, reference};

/// Largest multiply-accumulate count per sample that is still run (keeps runs at a few ms).
const MAX_MACS: u64 = 2_000_000;
/// Largest per-sample element count of one graph input.
const MAX_INPUT_ELEMS: usize = 1 << 16;
/// Largest per-sample element count of all activations together (bounds memory and the time
/// of operations that `macs_per_sample` does not count: resizes, pools, elementwise ops).
const MAX_ACTIVATION_ELEMS: usize = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let Ok(graph) = load_bytes(data, "fuzz.onnx", None, &ImportOptions::default()) else {
        return;
    };
    if graph.macs_per_sample() > MAX_MACS {
        return;
    }
    if graph.inputs().iter().any(|&id| graph.value(id).per_sample_len() > MAX_INPUT_ELEMS) {
        return;
    }
    let activations =
        graph.values().iter().filter(|v| v.is_batched()).try_fold(0usize, |acc, v| acc.checked_add(v.per_sample_len()));
    if activations.is_none_or(|n| n > MAX_ACTIVATION_ELEMS) {
        return;
    }
    let mut rng = Rng::new(0x5eed);
    let inputs: Vec<Tensor> =
        graph.inputs().iter().map(|&id| Tensor::random(graph.value(id).shape_at(1), &mut rng, -1.0, 1.0)).collect();
    let _ = reference::run(&graph, &inputs);
});
