//! ONNX import of arbitrary bytes: `onnx::load_bytes` returns a graph or an error, never
//! panics. No base directory is given, so external-data references never touch the disk.

#![no_main]

use libfuzzer_sys::fuzz_target;
use poolpipe_engine::onnx::{ImportOptions, load_bytes};

fuzz_target!(|data: &[u8]| {
    let _ = load_bytes(data, "fuzz.onnx", None, &ImportOptions::default());
});
