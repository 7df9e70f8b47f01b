//! Smoke fuzzing of the HTTP API's inference-request parser (the `http_request` cargo-fuzz
//! target runs the same property for longer): 40,000 truncated, byte-mutated and spliced
//! versions of valid JSON and binary requests parse or are refused with 400/413, never panic,
//! and a parsed request is consistent (each input's elements match its shape) and answers.

use poolpipe::serve::frontend::kserve::{OutputTensor, encode_response, parse_request};
use poolpipe_engine::Rng;

/// Valid requests: (body, JSON part's length for binary ones).
fn seeds() -> Vec<(Vec<u8>, Option<usize>)> {
    let mut out = vec![
        (br#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#.to_vec(), None),
        (
            br#"{"id":"r1","inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","data":[[1.5,-2e3],[3,4e-3]]}],"outputs":[{"name":"y","parameters":{"binary_data":true}}],"parameters":{"binary_data_output":false}}"#
                .to_vec(),
            None,
        ),
        (br#"{"inputs":[{"name":"a","shape":[1],"datatype":"UINT8","data":[7]},{"name":"b","shape":[1,1],"datatype":"FP32","data":[[0.5]]}]}"#.to_vec(), None),
    ];
    for (datatype, size) in [("FP32", 4), ("FP16", 2), ("FP64", 8), ("UINT8", 1)] {
        let json = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1,3],"datatype":"{datatype}","parameters":{{"binary_data_size":{}}}}}],"parameters":{{"binary_data_output":true}}}}"#,
            3 * size
        );
        let mut body = json.clone().into_bytes();
        body.extend((0..3 * size).map(|i| (i * 37 % 251) as u8));
        out.push((body, Some(json.len())));
    }
    out
}

fn check(body: &[u8], header_length: Option<usize>) -> bool {
    match parse_request(body, header_length, 1 << 16) {
        Err(e) => {
            assert!(e.status == 400 || e.status == 413, "status {} for {e}", e.status);
            assert!(!e.message.is_empty());
            false
        }
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
            true
        }
    }
}

#[test]
fn the_request_parser_never_panics_on_damaged_requests() {
    let seeds = seeds();
    for (body, header) in &seeds {
        assert!(check(body, *header), "a seed does not parse: {}", String::from_utf8_lossy(body));
    }
    let mut rng = Rng::new(20);
    let (mut parsed, mut refused) = (0, 0);
    for i in 0..40_000 {
        let (body, header) = &seeds[i % seeds.len()];
        let mut m = body.clone();
        match rng.range(0, 3) {
            // Truncated.
            0 => m.truncate(rng.range(0, m.len())),
            // One to eight bytes changed, JSON punctuation and digits among them.
            1 | 2 => {
                for _ in 0..rng.range(1, 8) {
                    let at = rng.range(0, m.len() - 1);
                    m[at] = match rng.range(0, 4) {
                        0 => rng.next_u64() as u8,
                        1 => m[at] ^ (1 << rng.range(0, 7)),
                        2 => b"[]{},:\"-eE.0123456789"[rng.range(0, 20)],
                        _ => 0,
                    };
                }
            }
            // A stretch repeated (deep nesting, long numbers, duplicated keys).
            _ => {
                let from = rng.range(0, m.len() - 1);
                let to = rng.range(from, m.len());
                let piece = m[from..to].to_vec();
                for _ in 0..rng.range(1, 64) {
                    m.splice(from..from, piece.iter().copied());
                }
            }
        }
        // The declared JSON length too, now and then off.
        let header = match header {
            Some(n) if rng.coin() && rng.coin() => Some(rng.range(0, n + 8)),
            other => *other,
        };
        if check(&m, header) {
            parsed += 1;
        } else {
            refused += 1;
        }
    }
    assert!(parsed > 100 && refused > 10_000, "{parsed} parsed, {refused} refused");
}
