//! Importer smoke fuzzing: thousands of truncated and mutated versions of the model-zoo
//! models shipped in the Python `onnx` package load or fail with an error, never panic.
//! (`scripts/setup.sh` installs the package.)

use std::path::PathBuf;
use std::process::Command;

use poolpipe_engine::{Rng, onnx};

fn light_models() -> Vec<(String, Vec<u8>)> {
    let out = Command::new("python3")
        .args(["-c", "import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), 'backend/test/data/light'))"])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "the Python onnx package is missing: run scripts/setup.sh");
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let mut models: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    models.sort();
    assert!(models.len() >= 9, "expected the 9 light models in {}", dir.display());
    models
}

#[test]
fn mutated_and_truncated_models_load_or_error_never_panic() {
    let mut rng = Rng::new(2026);
    let mut outcomes = (0usize, 0usize);
    for (name, bytes) in light_models() {
        // The original loads.
        onnx::load_bytes(&bytes, &name, None, &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut variants: Vec<Vec<u8>> = vec![];
        for _ in 0..120 {
            variants.push(bytes[..rng.range(0, bytes.len() - 1)].to_vec());
        }
        for _ in 0..240 {
            let mut m = bytes.clone();
            for _ in 0..rng.range(1, 8) {
                let i = rng.range(0, m.len() - 1);
                m[i] = match rng.range(0, 3) {
                    0 => rng.next_u64() as u8,
                    1 => m[i] ^ (1 << rng.range(0, 7)),
                    2 => 0xff,
                    _ => 0,
                };
            }
            variants.push(m);
        }
        for v in variants {
            match onnx::load_bytes(&v, &name, None, &Default::default()) {
                Ok(_) => outcomes.0 += 1,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    outcomes.1 += 1;
                }
            }
        }
    }
    assert!(outcomes.1 > 1000, "most variants are rejected with an error: {outcomes:?}");
}
