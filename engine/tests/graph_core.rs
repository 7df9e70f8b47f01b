//! The general graph core on the GPU, with small ONNX models written here by the `onnx`
//! package and onnxruntime as the oracle: operations on the batch axis, computed shapes
//! specialised per batch size (one compiled graph each, cached under a memory budget),
//! integer and bool tensors, Dropout's mask, Constant-node weights, current opsets, host
//! nodes between device graphs, and the errors of what cannot run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use common::device;
use poolpipe_engine::gpu::{CompileOptions, CompiledModel};
use poolpipe_engine::{DType, Model, Tensor, npy, onnx};

const SCRIPT: &str = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh
d = sys.argv[1]
rng = np.random.default_rng(5)

def save(name, nodes, inputs, outputs, inits=(), opset=17, feeds=None):
    m = h.make_model(h.make_graph(nodes, name, inputs, outputs, list(inits)),
                     opset_imports=[h.make_opsetid("", opset)])
    onnx.save(m, f"{d}/{name}.onnx")
    for k, feed in enumerate(feeds or []):
        np.savez(f"{d}/{name}.in{k}.npz", **feed)
        s = ort.InferenceSession(f"{d}/{name}.onnx", providers=["CPUExecutionProvider"])
        outs = s.run(None, feed)
        np.savez(f"{d}/{name}.out{k}.npz", **{o.name: v for o, v in zip(s.get_outputs(), outs)})

f = lambda *a: rng.standard_normal(a).astype(np.float32)
i64 = lambda name, v: nh.from_array(np.array(v, dtype=np.int64), name)

# Operations across the batch axis.
x = h.make_tensor_value_info("x", T.FLOAT, ["N", 2, 3, 4])
outs = [h.make_tensor_value_info(n, T.FLOAT, None) for n in ("soft0", "cat0", "mean0", "tr", "merged")]
nodes = [h.make_node("Softmax", ["x"], ["soft0"], axis=0),
         h.make_node("Concat", ["x", "x"], ["cat0"], axis=0),
         h.make_node("ReduceMean", ["x", "ax0"], ["mean0"], keepdims=0),
         h.make_node("Transpose", ["x"], ["tr"], perm=[1, 0, 3, 2]),
         h.make_node("Flatten", ["x"], ["merged"], axis=2)]
save("batch_axis", nodes, [x], outs, [i64("ax0", [0])], opset=18,
     feeds=[{"x": f(3, 2, 3, 4)}, {"x": f(1, 2, 3, 4)}])

# Shapes computed from Shape: a Reshape target and a Range/Expand anchor grid per batch.
x = h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 4, 5])
y = h.make_tensor_value_info("y", T.FLOAT, None)
g = h.make_tensor_value_info("grid", T.FLOAT, None)
nodes = [h.make_node("Shape", ["x"], ["s"]),
         h.make_node("Gather", ["s", "i0"], ["n"], axis=0),
         h.make_node("Gather", ["s", "i1"], ["c"], axis=0),
         h.make_node("Mul", ["n", "c"], ["nc"]),
         h.make_node("Unsqueeze", ["nc", "a0"], ["nc1"]),
         h.make_node("Concat", ["nc1", "m1"], ["target"], axis=0),
         h.make_node("Reshape", ["x", "target"], ["y"]),
         h.make_node("Gather", ["s", "i3"], ["w"], axis=0),
         h.make_node("Range", ["zero", "w", "one"], ["r"]),
         h.make_node("Cast", ["r"], ["rf"], to=T.FLOAT),
         h.make_node("Expand", ["rf", "s"], ["anchors"]),
         h.make_node("Add", ["x", "anchors"], ["grid"])]
inits = [i64("i0", 0), i64("i1", 1), i64("i3", 3), i64("a0", [0]), i64("m1", [-1]), i64("zero", 0), i64("one", 1)]
save("computed", nodes, [x], [y, g], inits, feeds=[{"x": f(2, 3, 4, 5)}, {"x": f(5, 3, 4, 5)}])

# Integers and bools: ArgMax, a computed Gather, Where, Not, Cast, integer Mod.
x = h.make_tensor_value_info("x", T.FLOAT, ["N", 6])
k = h.make_tensor_value_info("k", T.INT64, ["N", 2])
outs = [h.make_tensor_value_info("am", T.INT64, None), h.make_tensor_value_info("picked", T.FLOAT, None),
        h.make_tensor_value_info("sel", T.FLOAT, None), h.make_tensor_value_info("neg", T.BOOL, None),
        h.make_tensor_value_info("m", T.INT64, None), h.make_tensor_value_info("h", T.FLOAT16, None)]
nodes = [h.make_node("ArgMax", ["x"], ["am"], axis=1, keepdims=1),
         h.make_node("Gather", ["x", "am"], ["g"], axis=1),
         h.make_node("ReduceSum", ["g", "ax"], ["picked"], keepdims=0),
         h.make_node("Greater", ["x", "zero_f"], ["pos"]),
         h.make_node("Where", ["pos", "x", "zero_f"], ["sel"]),
         h.make_node("Not", ["pos"], ["neg"]),
         h.make_node("Mod", ["k", "three"], ["m"]),
         h.make_node("Cast", ["x"], ["h"], to=T.FLOAT16)]
inits = [i64("ax", [2]), nh.from_array(np.array(0.0, np.float32), "zero_f"), i64("three", 3)]
save("ints", nodes, [x, k], outs, inits,
     feeds=[{"x": f(4, 6), "k": np.array([[5, -7], [0, 9], [-1, 2], [30, -30]], np.int64)}])

# Dropout's mask (all true at inference) used by a later node; weights in Constant nodes.
x = h.make_tensor_value_info("x", T.FLOAT, ["N", 2, 5, 5])
y = h.make_tensor_value_info("y", T.FLOAT, None)
w = nh.from_array(f(4, 2, 3, 3), "w_value")
nodes = [h.make_node("Constant", [], ["w"], value=w),
         h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         h.make_node("Dropout", ["c"], ["d", "mask"]),
         h.make_node("Cast", ["mask"], ["mf"], to=T.FLOAT),
         h.make_node("Mul", ["d", "mf"], ["y"])]
save("dropout", nodes, [x], [y], feeds=[{"x": f(2, 2, 5, 5)}])

# The newest opset the installed onnx defines, and one below the supported range.
x = h.make_tensor_value_info("x", T.FLOAT, ["N", 4])
y = h.make_tensor_value_info("y", T.FLOAT, None)
newest = onnx.defs.onnx_opset_version()
save("newest", [h.make_node("Relu", ["x"], ["r"]), h.make_node("Add", ["r", "r"], ["y"])], [x], [y], opset=newest)
save("ancient", [h.make_node("Relu", ["x"], ["y"])], [x], [y], opset=6)

# A Reshape whose target comes from the data; a constant beyond int32; a host node (NonZero).
x = h.make_tensor_value_info("x", T.FLOAT, [1, 6])
s = h.make_tensor_value_info("shape", T.INT64, [1, 2])
y = h.make_tensor_value_info("y", T.FLOAT, None)
save("data_shape", [h.make_node("Squeeze", ["shape", "a0"], ["t"]), h.make_node("Reshape", ["x", "t"], ["y"])],
     [x, s], [y], [i64("a0", [0])])
k = h.make_tensor_value_info("k", T.INT64, ["N", 3])
y = h.make_tensor_value_info("y", T.INT64, None)
save("big_const", [h.make_node("Add", ["k", "big"], ["y"])], [k], [y], [i64("big", [1 << 40])])
x = h.make_tensor_value_info("x", T.FLOAT, ["N", 5])
y = h.make_tensor_value_info("y", T.FLOAT, None)
nodes = [h.make_node("NonZero", ["x"], ["nz"]),
         h.make_node("Cast", ["nz"], ["nzf"], to=T.FLOAT),
         h.make_node("ReduceSum", ["nzf"], ["y"], keepdims=0)]
save("host", nodes, [x], [y], opset=13,
     feeds=[{"x": np.array([[0, 1, 0, 2, 3], [4, 0, 0, 0, 5]], np.float32)}])
"#;

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("graph-core-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("python3").arg("-c").arg(SCRIPT).arg(&dir).output().expect("python3 runs");
        assert!(out.status.success(), "model script failed:\n{}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

fn load(name: &str) -> Arc<Model> {
    Arc::new(
        onnx::load(&dir().join(format!("{name}.onnx")), &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}")),
    )
}

/// Runs feed `k` of model `name` on the GPU and compares every output with onnxruntime's
/// (same type and shape; values within 1e-5 relative, exact for integers and bools).
fn matches_onnxruntime(compiled: &mut CompiledModel, name: &str, k: usize) {
    let feed = npy::read_npz(&dir().join(format!("{name}.in{k}.npz"))).unwrap();
    let want = npy::read_npz(&dir().join(format!("{name}.out{k}.npz"))).unwrap();
    let sig = compiled.model().signature().clone();
    let inputs: Vec<Tensor> = sig
        .inputs
        .iter()
        .map(|i| {
            feed.iter().find(|(n, _)| *n == i.name).unwrap_or_else(|| panic!("{name}: no input {}", i.name)).1.clone()
        })
        .collect();
    let got = compiled.run(&inputs).unwrap_or_else(|e| panic!("{name} feed {k}: {e}"));
    for (o, g) in sig.outputs.iter().zip(&got) {
        let w = &want.iter().find(|(n, _)| *n == o.name).unwrap().1;
        assert_eq!(g.dtype(), w.dtype(), "{name} {}: type", o.name);
        assert_eq!(g.shape(), w.shape(), "{name} {}: shape", o.name);
        let tol = if w.dtype().is_float() { 1e-5 } else { 0.0 };
        assert!(g.allclose(w, tol, tol), "{name} {}: {:?}\nvs onnxruntime {:?}", o.name, g.to_f64s(), w.to_f64s());
    }
}

#[test]
fn operations_across_the_batch_axis_match_onnxruntime() {
    let mut c = CompiledModel::new(&device(), load("batch_axis"), CompileOptions::default());
    matches_onnxruntime(&mut c, "batch_axis", 0);
    matches_onnxruntime(&mut c, "batch_axis", 1);
}

#[test]
fn computed_shapes_are_specialised_per_batch_and_cached() {
    let model = load("computed");
    // Everything computed from shapes folds away: no Shape, Range or Gather remains.
    let g = model.graph(2).unwrap();
    let ops: Vec<&str> = g.nodes().iter().map(|n| n.op.name()).collect();
    assert!(!ops.iter().any(|o| ["Shape", "Range", "Gather", "Concat"].contains(o)), "{ops:?}");
    let mut c = CompiledModel::new(&device(), model.clone(), CompileOptions::default());
    matches_onnxruntime(&mut c, "computed", 0);
    matches_onnxruntime(&mut c, "computed", 1);
    matches_onnxruntime(&mut c, "computed", 0);
    assert_eq!(c.cached_graphs(), 2, "one compiled graph per batch size run");
    // A budget below one graph's buffers keeps only the graph in use.
    let mut small = CompiledModel::new(&device(), model, CompileOptions::default()).with_cache_bytes(1);
    matches_onnxruntime(&mut small, "computed", 0);
    matches_onnxruntime(&mut small, "computed", 1);
    assert_eq!(small.cached_graphs(), 1);
    // The first run of a batch compiles, the next does not.
    let x = Tensor::random(vec![3, 3, 4, 5], &mut poolpipe_engine::Rng::new(1), -1.0, 1.0);
    let first = small.run_full(std::slice::from_ref(&x)).unwrap();
    let again = small.run_full(std::slice::from_ref(&x)).unwrap();
    assert!(first.compiled > std::time::Duration::ZERO && again.compiled == std::time::Duration::ZERO);
}

#[test]
fn integer_bool_and_half_tensors_match_onnxruntime() {
    let mut c = CompiledModel::new(&device(), load("ints"), CompileOptions::default());
    matches_onnxruntime(&mut c, "ints", 0);
}

#[test]
fn dropout_masks_and_constant_node_weights_work() {
    let mut c = CompiledModel::new(&device(), load("dropout"), CompileOptions::default());
    matches_onnxruntime(&mut c, "dropout", 0);
    let s = onnx::summarize(&dir().join("dropout.onnx")).unwrap();
    assert_eq!(s.parameters, 4 * 2 * 3 * 3, "weights in Constant nodes count as parameters");
}

#[test]
fn the_newest_opset_loads_and_an_ancient_one_is_refused() {
    let m = load("newest");
    let x = Tensor::new(vec![2, 4], vec![-1.0, 2.0, -3.0, 4.0, 0.5, -0.5, 1.0, -1.0]).unwrap();
    let y = CompiledModel::new(&device(), m, CompileOptions::default()).run(&[x]).unwrap();
    assert_eq!(y[0].data(), &[0.0, 4.0, 0.0, 8.0, 1.0, 0.0, 2.0, 0.0]);
    let e = onnx::load(&dir().join("ancient.onnx"), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("opset 6") && e.contains("7..="), "{e}");
}

#[test]
fn what_cannot_run_is_a_clear_error() {
    // A Reshape target computed from the data: not static for the given input.
    let m = load("data_shape");
    let e = m.graph(1).unwrap_err().to_string();
    assert!(e.contains("Reshape") && e.contains("computed from the input data") && e.contains("compiled"), "{e}");
    // int64 beyond the int32 range the device computes in: a constant (at compile time) and
    // an input (at upload), each named.
    let m = load("big_const");
    let k = Tensor::from_i64(DType::I64, vec![1, 3], vec![1, 2, 3]).unwrap();
    let e = CompiledModel::new(&device(), m.clone(), CompileOptions::default())
        .run(std::slice::from_ref(&k))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'big'") && e.contains("int32 range"), "{e}");
    let ints = load("ints");
    let x = Tensor::zeros(vec![1, 6]);
    let k = Tensor::from_i64(DType::I64, vec![1, 2], vec![1 << 35, 0]).unwrap();
    let e = CompiledModel::new(&device(), ints, CompileOptions::default()).run(&[x, k]).unwrap_err().to_string();
    assert!(e.contains("'k'") && e.contains("int32 range"), "{e}");
    // A host node: fine to run, but a pipeline stage or profile cannot hold it.
    let m = load("host");
    let e = m.graph(1).unwrap_err().to_string();
    assert!(e.contains("NonZero") && e.contains("host") && e.contains("stages"), "{e}");
}

#[test]
fn host_nodes_run_between_device_graphs_and_match_onnxruntime() {
    let mut c = CompiledModel::new(&device(), load("host"), CompileOptions::default());
    matches_onnxruntime(&mut c, "host", 0);
    let x = npy::read_npz(&dir().join("host.in0.npz")).unwrap().remove(0).1;
    let run = c.run_full(&[x]).unwrap();
    assert_eq!(run.host.steps, vec![("NonZero_0".to_string(), "NonZero".to_string())]);
    assert!(run.host.to_host >= 40 && run.host.to_device > 0, "{:?}", run.host);
}
