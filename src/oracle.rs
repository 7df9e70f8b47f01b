//! onnxruntime (CPU, through `python3`) as the outside oracle of `poolpipe run --compare-ort`:
//! the same input tensors go to onnxruntime, its outputs come back as `.npy` files.
//!
//! Models whose graph fixes the batch (usually to 1) are run by onnxruntime one chunk of that
//! size at a time and the outputs concatenated, so any batch can be compared.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use poolpipe_engine::{Tensor, npy};

/// The Python side: argv = model, output folder, then NAME=FILE.npy per input.
const SCRIPT: &str = r#"
import sys
try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    sys.stderr.write(f"python3 lacks {e.name}: pip install numpy onnxruntime (scripts/setup.sh installs them)\n")
    sys.exit(3)
model, out_dir, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
feeds = {}
for p in pairs:
    name, path = p.split("=", 1)
    feeds[name] = np.load(path)
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
n = next(iter(feeds.values())).shape[0]
fixed = [i.shape[0] for i in sess.get_inputs() if i.shape and isinstance(i.shape[0], int)]
chunk = fixed[0] if fixed and fixed[0] > 0 and fixed[0] != n and n % fixed[0] == 0 else n
parts = []
for s in range(0, n, chunk):
    parts.append(sess.run(None, {k: v[s:s + chunk] for k, v in feeds.items()}))
for k, o in enumerate(sess.get_outputs()):
    arr = np.concatenate([p[k] for p in parts], axis=0) if len(parts) > 1 else parts[0][k]
    np.save(f"{out_dir}/out{k}.npy", np.ascontiguousarray(arr, dtype=np.float32))
    print(o.name)
"#;

/// Runs `model` in onnxruntime on `inputs` (name, tensor) and returns its outputs (name, tensor)
/// in the model's order.
pub fn run_onnxruntime(model: &Path, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    let dir = std::env::temp_dir().join(format!("poolpipe-ort-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run_in(&dir, model, inputs);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn run_in(dir: &Path, model: &Path, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(SCRIPT).arg(model).arg(dir);
    for (k, (name, t)) in inputs.iter().enumerate() {
        let path = dir.join(format!("in{k}.npy"));
        npy::write(&path, t)?;
        cmd.arg(format!("{name}={}", path.display()));
    }
    let out = cmd.output().context("cannot start python3 for --compare-ort (install python3, numpy, onnxruntime)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        bail!("onnxruntime failed on {}: {last}", model.display());
    }
    let names = String::from_utf8_lossy(&out.stdout);
    names
        .lines()
        .enumerate()
        .map(|(k, name)| Ok((name.to_string(), npy::read(&dir.join(format!("out{k}.npy")))?)))
        .collect()
}
