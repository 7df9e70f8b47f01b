//! Bad input gets a clear error naming the node, tensor or graph, never a panic: mismatched
//! shapes, unsupported attribute values, wrong run inputs (shape, batch, element type,
//! int64 values beyond the device's int32), a batch above a stage's compiled maximum,
//! tensors larger than the device allows. Operations on the batch axis, once refused, are
//! ordinary operations of a static graph and run.

mod common;

use std::sync::Arc;

use common::{check_graph, device};
use poolpipe_engine::gpu::CompileOptions;
use poolpipe_engine::*;

fn w(g: &mut GraphBuilder, shape: Vec<usize>) -> ValueId {
    let n = numel(&shape);
    g.constant("w", Tensor::new(shape, vec![0.1; n]).unwrap())
}

fn err_text<T: std::fmt::Debug>(r: Result<T>) -> String {
    r.expect_err("must fail").to_string()
}

#[test]
fn mismatched_shapes_name_the_node() {
    let mut g = GraphBuilder::new("m");
    let x = g.input("x", &[1, 3, 8, 8]);
    let wt = w(&mut g, vec![4, 2, 3, 3]);
    let e = err_text(g.conv("stem_conv", x, wt, None, ConvAttrs::default()));
    assert!(e.contains("stem_conv") && e.contains("input channels"), "{e}");

    let a = g.input("a", &[1, 3, 4]);
    let b = g.input("b", &[1, 5, 4]);
    let e = err_text(g.binary("residual_add", BinaryOp::Add, a, b));
    assert!(e.contains("residual_add") && e.contains("do not broadcast"), "{e}");
    // Batches broadcast like any axis: 2 against 3 does not.
    let a2 = g.input("a2", &[2, 3, 4]);
    let a3 = g.input("a3", &[3, 3, 4]);
    let e = err_text(g.binary("batch_add", BinaryOp::Add, a2, a3));
    assert!(e.contains("batch_add") && e.contains("do not broadcast"), "{e}");

    let m1 = g.input("m1", &[1, 2, 3]);
    let m2 = g.input("m2", &[1, 4, 5]);
    let e = err_text(g.matmul("attn", m1, m2));
    assert!(e.contains("attn") && e.contains("inner dimensions"), "{e}");

    let e = err_text(g.reshape("flat", x, &[100]));
    assert!(e.contains("flat") && e.contains("cannot reshape"), "{e}");
    // The full shape is given: leaving the batch out is a reshape of the wrong size.
    let x2 = g.input("x2", &[2, 3, 8, 8]);
    let e = err_text(g.reshape("per_sample", x2, &[3, 64]));
    assert!(e.contains("per_sample") && e.contains("cannot reshape"), "{e}");

    let c1 = g.input("c1", &[1, 3, 4, 4]);
    let c2 = g.input("c2", &[1, 3, 5, 5]);
    let e = err_text(g.add("cat", Op::Concat { axis: 1 }, vec![c1, c2]));
    assert!(e.contains("cat") && e.contains("does not match"), "{e}");
    // Concatenating along axis 1 needs equal batches.
    let c3 = g.input("c3", &[2, 3, 4, 4]);
    let e = err_text(g.add("cat_batch", Op::Concat { axis: 1 }, vec![c1, c3]));
    assert!(e.contains("cat_batch") && e.contains("does not match"), "{e}");

    let wt = w(&mut g, vec![4, 3, 9, 9]);
    let e = err_text(g.conv("big_kernel", x, wt, None, ConvAttrs::default()));
    assert!(e.contains("big_kernel") && e.contains("larger than the padded input"), "{e}");
}

#[test]
fn unsupported_attribute_values_name_the_node() {
    let mut g = GraphBuilder::new("u");
    let x = g.input("x", &[2, 3, 8, 8]);
    let cases: Vec<(&str, Op, &str)> = vec![
        ("sm9", Op::Softmax { axis: 9, kind: SoftmaxKind::Softmax }, "out of range"),
        ("tr", Op::Transpose { perm: vec![1, 0, 2, 2] }, "permutation"),
        ("stride0", Op::Pool(PoolAttrs::new(PoolKind::Max, &[2, 2], &[0, 1])), "stride"),
        ("pad_rank", Op::Pad { pads: vec![(1, 0), (0, 0), (0, 0)], mode: PadMode::Edge }, "pairs"),
        ("reflect", Op::Pad { pads: vec![(0, 0), (0, 0), (8, 0), (0, 0)], mode: PadMode::Reflect }, "reflect"),
        ("reflect0", Op::Pad { pads: vec![(2, 0), (0, 0), (0, 0), (0, 0)], mode: PadMode::Reflect }, "reflect"),
        ("reduce9", Op::Reduce { kind: ReduceKind::Mean, axes: vec![4], keepdims: true }, "out of range"),
        ("reduce_twice", Op::Reduce { kind: ReduceKind::Sum, axes: vec![0, 0], keepdims: true }, "twice"),
        ("split", Op::Split { axis: 1, sizes: vec![1, 1] }, "add up"),
        ("split0", Op::Split { axis: 0, sizes: vec![1, 2] }, "add up"),
        ("slice0", Op::Slice { axes: vec![2], starts: vec![0], ends: vec![4], steps: vec![0] }, "step 0"),
        ("argmax9", Op::ArgReduce { max: true, axis: 4, keepdims: false, last: false }, "out of range"),
        ("not_float", Op::Not, "bool"),
        ("expand", Op::Expand { shape: vec![2, 3, 8, 7] }, "broadcast"),
    ];
    for (name, op, needle) in cases {
        let e = err_text(g.add(name, op, vec![x]));
        assert!(e.contains(name) && e.contains(needle), "{name}: {e}");
    }
    let e = err_text(g.flatten("flat5", x, 5));
    assert!(e.contains("flat5") && e.contains("out of range"), "{e}");
    let e = err_text(g.squeeze("sq0", x, &[0]));
    assert!(e.contains("sq0") && e.contains("not 1"), "{e}");
    let a = g.input("a", &[4, 1]);
    let b = w(&mut g, vec![4, 2]);
    let e = err_text(g.gemm("gemm_k", a, b, None, GemmAttrs::default()));
    assert!(e.contains("gemm_k") && e.contains("columns"), "{e}");
    // Computed weights (a QDQ model's dequantised ones) are accepted, and checked as others.
    let wd = g.input("wd", &[4, 2, 3, 3]);
    let e = err_text(g.conv("dyn_w", x, wd, None, ConvAttrs::default()));
    assert!(e.contains("dyn_w") && e.contains("input channels"), "{e}");
    // Types: comparisons give bools, which arithmetic refuses; gathers need integer indices.
    let lt = g.binary("lt", BinaryOp::Less, x, x).unwrap();
    let e = err_text(g.binary("bool_add", BinaryOp::Add, lt, lt));
    assert!(e.contains("bool_add") && e.contains("bool"), "{e}");
    let e = err_text(g.add("gather_f", Op::Gather { axis: 1 }, vec![x, x]));
    assert!(e.contains("gather_f") && e.contains("integers"), "{e}");
    let idx = g.constant("idx", Tensor::from_i64(DType::I64, vec![2], vec![0, 3]).unwrap());
    let e = err_text(g.add("gather_oob", Op::Gather { axis: 1 }, vec![x, idx]));
    assert!(e.contains("gather_oob") && e.contains("out of range"), "{e}");
    let i = g.input_typed("i", DType::I64, &[2, 3]);
    let e = err_text(g.binary("mixed", BinaryOp::Add, i, a));
    assert!(e.contains("mixed") && e.contains("same type"), "{e}");
}

/// What was refused when axis 0 was the batch (softmax, transposes, pads and reductions
/// over it, flattening it away), average pooling with dilation and Gemm with a transposed
/// A are now ordinary operations: they build and the device agrees with the reference.
#[test]
fn once_refused_operations_now_run() {
    let ops: Vec<(&str, Op)> = vec![
        ("sm0", Op::Softmax { axis: 0, kind: SoftmaxKind::Softmax }),
        ("tr", Op::Transpose { perm: vec![1, 0, 2, 3] }),
        (
            "avg_dil",
            Op::Pool(PoolAttrs { dilation: vec![2, 2], ..PoolAttrs::new(PoolKind::Average, &[2, 2], &[1, 1]) }),
        ),
        ("pad_batch", Op::Pad { pads: vec![(1, 0), (0, 0), (0, 0), (0, 0)], mode: PadMode::Edge }),
        ("reduce0", Op::Reduce { kind: ReduceKind::Mean, axes: vec![0], keepdims: true }),
    ];
    for (name, op) in ops {
        let mut g = GraphBuilder::new(name);
        let x = g.input("x", &[2, 3, 8, 8]);
        let y = g.add(name, op, vec![x]).unwrap_or_else(|e| panic!("{name}: {e}"));
        g.output(y);
        check_graph(&g.build().unwrap(), 1e-4, 1, &CompileOptions::default());
    }
    let mut g = GraphBuilder::new("flat2");
    let x = g.input("x", &[2, 3, 8, 8]);
    let f = g.flatten("flat2", x, 2).unwrap();
    assert_eq!(g.shape(f), &[6, 64]);
    let y = g.unary("relu", f, Activation::Relu).unwrap();
    g.output(y);
    check_graph(&g.build().unwrap(), 0.0, 2, &CompileOptions::default());
    let mut g = GraphBuilder::new("gemm_ta");
    let a = g.input("a", &[4, 2]);
    let b = w(&mut g, vec![4, 3]);
    let y = g.gemm("gemm_ta", a, b, None, GemmAttrs { trans_a: true, ..Default::default() }).unwrap();
    assert_eq!(g.shape(y), &[2, 3]);
    g.output(y);
    check_graph(&g.build().unwrap(), 1e-4, 3, &CompileOptions::default());
}

fn small_graph(batch: usize) -> Graph {
    let mut g = GraphBuilder::new("small");
    let x = g.input("image", &[batch, 2, 4, 4]);
    let y = g.unary("relu", x, Activation::Relu).unwrap();
    g.output(y);
    g.build().unwrap()
}

#[test]
fn wrong_run_inputs_are_errors() {
    let g = small_graph(2);
    let mut c = device().compile(&g, &CompileOptions::default()).unwrap();
    let e = err_text(c.run(&[]));
    assert!(e.contains("small") && e.contains("expected 1 input"), "{e}");
    let e = err_text(c.run(&[Tensor::zeros(vec![2, 2, 4, 5])]));
    assert!(e.contains("image") && e.contains("expected shape [2, 2, 4, 4]"), "{e}");
    // A compiled graph runs exactly its batch: neither fewer nor more samples.
    let e = err_text(c.run(&[Tensor::zeros(vec![0, 2, 4, 4])]));
    assert!(e.contains("image") && e.contains("expected shape [2, 2, 4, 4], got [0, 2, 4, 4]"), "{e}");
    let e = err_text(c.run(&[Tensor::zeros(vec![1, 2, 4, 4])]));
    assert!(e.contains("image") && e.contains("got [1, 2, 4, 4]"), "{e}");
    let e = err_text(c.run(&[Tensor::zeros(vec![3, 2, 4, 4])]));
    assert!(e.contains("image") && e.contains("got [3, 2, 4, 4]"), "{e}");
    let e = err_text(c.run(&[Tensor::zeros_of(DType::I64, vec![2, 2, 4, 4])]));
    assert!(e.contains("image") && e.contains("element type float32, got int64"), "{e}");
    // The compiled graph still works after the errors.
    assert_eq!(c.run(&[Tensor::zeros(vec![2, 2, 4, 4])]).unwrap()[0].shape(), &[2, 2, 4, 4]);
    let e = err_text(reference::run(&g, &[Tensor::zeros(vec![1, 3])]));
    assert!(e.contains("image"), "{e}");
    // A model is specialised at batches of at least 1.
    let model = Model::batched("small", |b| Ok(small_graph(b))).unwrap();
    let e = err_text(model.graph(0));
    assert!(e.contains("small") && e.contains("at least 1"), "{e}");
    assert_eq!(model.graph(3).unwrap().value(model.graph(3).unwrap().inputs()[0]).shape, vec![3, 2, 4, 4]);
}

/// int64 values live as int32 on the device: an input beyond that range is refused, naming
/// the tensor; within it they round-trip.
#[test]
fn int64_inputs_beyond_int32_are_errors() {
    let mut g = GraphBuilder::new("ids");
    let x = g.input_typed("ids", DType::I64, &[2, 3]);
    let y = g.add("to_f32", Op::Cast { to: DType::F32 }, vec![x]).unwrap();
    g.output(y);
    let g = g.build().unwrap();
    let mut c = device().compile(&g, &CompileOptions::default()).unwrap();
    let bad = Tensor::from_i64(DType::I64, vec![2, 3], vec![0, 1, 2, 3, 4, 1 << 40]).unwrap();
    let e = err_text(c.run(&[bad]));
    assert!(e.contains("ids") && e.contains("int32"), "{e}");
    let ok = Tensor::from_i64(DType::I64, vec![2, 3], vec![0, -1, 2, i32::MIN as i64, 4, i32::MAX as i64]).unwrap();
    let out = c.run(std::slice::from_ref(&ok)).unwrap();
    assert_eq!(out[0], ok.cast(DType::F32));
}

/// A pipeline stage serves batches up to its maximum; a larger one (or none) is an error
/// naming the stage and the maximum.
#[test]
fn batch_above_a_stage_maximum_is_an_error() {
    let model = Arc::new(Model::batched("small", |b| Ok(small_graph(b))).unwrap());
    let graph = optimize(&model.graph(1).unwrap()).unwrap();
    let costs = vec![vec![1.0; graph.nodes().len()]];
    let part =
        partition::partition(&graph, &costs, &partition::PartitionOptions { blocks: 1, tolerance: 0.5 }).unwrap();
    let st = stage::Stage::new(&model, &part, 0..1, boundary::Precision::F16).unwrap();
    let mut c = stage::CompiledStage::new(&device(), st, 2);
    let e = c.prepare(3).unwrap_err();
    assert!(matches!(e, EngineError::BatchTooLarge { batch: 3, max: 2, .. }), "{e:?}");
    assert!(e.to_string().contains("small") && e.to_string().contains("batch 3 exceeds the maximum of 2"), "{e}");
    assert!(matches!(c.prepare(0), Err(EngineError::BatchTooLarge { batch: 0, .. })));
    c.prepare(2).unwrap();
}

/// A tensor larger than one buffer may be is refused at compile time, naming the node and
/// tensor, before anything is allocated.
#[test]
fn tensor_too_large_for_the_device_names_the_node() {
    let dev = device();
    let limits = &dev.adapter().limits;
    let limit = limits.max_buffer_size.min(limits.max_storage_buffer_binding_size);
    // Smallest per-sample size whose batch-8 buffer exceeds the device limit.
    let per_sample = (limit / 4 / 8 + 1) as usize;
    let mut g = GraphBuilder::new("huge");
    let x = g.input("x", &[8, per_sample]);
    let y = g.unary("expand_relu", x, Activation::Relu).unwrap();
    g.output(y);
    let e = dev.compile(&g.build().unwrap(), &CompileOptions::default()).unwrap_err();
    // Kernels index up to 2^29 elements; below that the buffer limit is what refuses it.
    if 8 * per_sample < 1 << 29 {
        match &e {
            EngineError::TensorTooLarge { tensor, bytes, limit: l, .. } => {
                assert!(tensor == "x" && *bytes > *l && *l == limit, "{e}")
            }
            other => panic!("expected TensorTooLarge, got {other:?}"),
        }
    }
    let e = e.to_string();
    assert!(e.contains("expand_relu") || e.contains("input"), "{e}");
    assert!(e.contains("smaller"), "{e}");
}

#[test]
fn unknown_adapter_lists_the_available_ones() {
    let e = err_text(gpu::Device::open(&gpu::AdapterSelector::Name("no-such-gpu-xyz".into())));
    assert!(e.contains("no-such-gpu-xyz") && e.contains("available"), "{e}");
}

#[test]
fn empty_or_bad_node_ranges_are_errors() {
    let g = small_graph(1);
    let e = err_text(g.slice_nodes(1..1));
    assert!(e.contains("small") && e.contains("range"), "{e}");
    let e = err_text(g.slice_nodes(0..5));
    assert!(e.contains("outside"), "{e}");
}
