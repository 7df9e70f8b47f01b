//! ONNX import followed, for small models, by one run of the CPU reference executor at
//! batch 1 on seeded random inputs of each input's element type (host steps included).
//! Import and run may fail with an error; any panic is a bug (the reference also cross-checks
//! every output shape against the shapes the importer inferred).

#![no_main]

use libfuzzer_sys::fuzz_target;
use poolpipe_engine::onnx::{ImportOptions, load_bytes};
use poolpipe_engine::{Rng, Tensor, reference};

/// Largest multiply-accumulate count of the first device graph that is still run (keeps runs
/// at a few ms).
const MAX_MACS: u64 = 2_000_000;
/// Largest element count of one model input.
const MAX_INPUT_ELEMS: usize = 1 << 16;
/// Largest element count of all values of the first device graph together (bounds memory
/// and the time of operations that `macs` does not count: resizes, pools, elementwise ops).
const MAX_VALUE_ELEMS: usize = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = load_bytes(data, "fuzz.onnx", None, &ImportOptions::default()) else {
        return;
    };
    let Ok(segment) = model.first_segment(1) else {
        return;
    };
    let graph = &segment.graph;
    if graph.macs() > MAX_MACS {
        return;
    }
    let values = graph.values().iter().try_fold(0usize, |acc, v| acc.checked_add(v.numel()));
    if values.is_none_or(|n| n > MAX_VALUE_ELEMS) {
        return;
    }
    let Ok(shapes) = model.input_shapes(1) else {
        return;
    };
    if shapes.iter().any(|s| s.iter().product::<usize>() > MAX_INPUT_ELEMS) {
        return;
    }
    let mut rng = Rng::new(0x5eed);
    let inputs: Vec<Tensor> = model
        .signature()
        .inputs
        .iter()
        .zip(shapes)
        .map(|(spec, shape)| Tensor::random_of(spec.dtype, shape, &mut rng, -1.0, 1.0))
        .collect();
    let _ = reference::run_model(&model, &inputs);
});
