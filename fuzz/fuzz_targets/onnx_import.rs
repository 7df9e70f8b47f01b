//! ONNX import of arbitrary bytes: `onnx::load_bytes` parses the model and
//! `Model::first_segment` specializes it at batch 1 (shape inference, constant folding, the
//! split at host operations); both return a result or an error, never panic. No base
//! directory is given, so external-data references never touch the disk.

#![no_main]

use libfuzzer_sys::fuzz_target;
use poolpipe_engine::onnx::{ImportOptions, load_bytes};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = load_bytes(data, "fuzz.onnx", None, &ImportOptions::default()) {
        let _ = model.first_segment(1);
    }
});
