//! The HTTP API's inference-request parser (KServe v2 JSON, and the binary tensor data
//! extension) on arbitrary bytes: a request or a 400/413 refusal, never a panic; a parsed
//! request has as many elements in each input as its shape says, and its response encodes.
//!
//! The first byte picks the form: even, JSON only; odd, binary, with the JSON part's length
//! (`Inference-Header-Content-Length`) taken from the next two bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolpipe::serve::frontend::kserve::{OutputTensor, encode_response, parse_request};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (header_length, body) = if mode % 2 == 0 || rest.len() < 2 {
        (None, rest)
    } else {
        (Some(u16::from_le_bytes([rest[0], rest[1]]) as usize), &rest[2..])
    };
    match parse_request(body, header_length, 1 << 20) {
        Err(e) => assert!(e.status == 400 || e.status == 413, "status {} for {e}", e.status),
        Ok(req) => {
            for t in &req.inputs {
                assert_eq!(t.data.len(), t.shape.iter().product::<usize>(), "input {}", t.name);
            }
            let outputs: Vec<OutputTensor> = req
                .inputs
                .iter()
                .map(|t| OutputTensor { name: t.name.clone(), shape: t.shape.clone(), data: t.data.clone() })
                .collect();
            let _ = encode_response("m", &req, &outputs);
        }
    }
});
