//! Bad input gets a clear error naming the node, tensor or graph, never a panic: mismatched
//! shapes, unsupported attribute values, wrong run inputs, a batch above the compiled maximum,
//! tensors larger than the device allows.

mod common;

use common::device;
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
    let x = g.input("x", &[3, 8, 8]);
    let wt = w(&mut g, vec![4, 2, 3, 3]);
    let e = err_text(g.conv("stem_conv", x, wt, None, ConvAttrs::default()));
    assert!(e.contains("stem_conv") && e.contains("input channels"), "{e}");

    let a = g.input("a", &[3, 4]);
    let b = g.input("b", &[5, 4]);
    let e = err_text(g.binary("residual_add", BinaryOp::Add, a, b));
    assert!(e.contains("residual_add") && e.contains("do not broadcast"), "{e}");

    let m1 = g.input("m1", &[2, 3]);
    let m2 = g.input("m2", &[4, 5]);
    let e = err_text(g.matmul("attn", m1, m2));
    assert!(e.contains("attn") && e.contains("inner dimensions"), "{e}");

    let e = err_text(g.reshape("flat", x, &[100]));
    assert!(e.contains("flat") && e.contains("cannot reshape"), "{e}");

    let c1 = g.input("c1", &[3, 4, 4]);
    let c2 = g.input("c2", &[3, 5, 5]);
    let e = err_text(g.add("cat", Op::Concat { axis: 1 }, vec![c1, c2]));
    assert!(e.contains("cat") && e.contains("does not match"), "{e}");

    let wt = w(&mut g, vec![4, 3, 9, 9]);
    let e = err_text(g.conv("big_kernel", x, wt, None, ConvAttrs::default()));
    assert!(e.contains("big_kernel") && e.contains("larger than the padded input"), "{e}");
}

#[test]
fn unsupported_attribute_values_name_the_node() {
    let mut g = GraphBuilder::new("u");
    let x = g.input("x", &[3, 8, 8]);
    let cases: Vec<(&str, Op, &str)> = vec![
        ("sm0", Op::Softmax { axis: 0 }, "batch"),
        ("sm9", Op::Softmax { axis: 9 }, "out of range"),
        ("tr", Op::Transpose { perm: vec![1, 0, 2, 3] }, "batch axis"),
        (
            "avg_dil",
            Op::Pool(PoolAttrs { dilation: [2, 2], ..PoolAttrs::new(PoolKind::Average, [2, 2], [1, 1]) }),
            "dilation",
        ),
        ("stride0", Op::Pool(PoolAttrs::new(PoolKind::Max, [2, 2], [0, 1])), "stride"),
        ("pad_batch", Op::Pad { pads: vec![(1, 0), (0, 0), (0, 0), (0, 0)], mode: PadMode::Edge }, "batch"),
        ("reflect", Op::Pad { pads: vec![(0, 0), (0, 0), (8, 0), (0, 0)], mode: PadMode::Reflect }, "reflect"),
        ("reduce0", Op::ReduceMean { axes: vec![0], keepdims: true }, "batch"),
        ("split", Op::Split { axis: 1, sizes: vec![1, 1] }, "add up"),
        ("slice0", Op::Slice { axes: vec![2], starts: vec![0], ends: vec![4], steps: vec![0] }, "step 0"),
    ];
    for (name, op, needle) in cases {
        let e = err_text(g.add(name, op, vec![x]));
        assert!(e.contains(name) && e.contains(needle), "{name}: {e}");
    }
    let e = err_text(g.flatten("flat2", x, 2));
    assert!(e.contains("flat2") && e.contains("batch"), "{e}");
    let a = g.input("a", &[4]);
    let b = w(&mut g, vec![4, 2]);
    let e = err_text(g.gemm("gemm_ta", a, b, None, GemmAttrs { trans_a: true, ..Default::default() }));
    assert!(e.contains("gemm_ta") && e.contains("trans_a"), "{e}");
    let wt = w(&mut g, vec![4, 3, 3, 3]);
    let e = err_text(g.conv("dyn_w", x, x, None, ConvAttrs::default()));
    assert!(e.contains("dyn_w") && e.contains("constant"), "{e}");
    let _ = wt;
}

fn small_graph() -> Graph {
    let mut g = GraphBuilder::new("small");
    let x = g.input("image", &[2, 4, 4]);
    let y = g.unary("relu", x, Activation::Relu).unwrap();
    g.output(y);
    g.build().unwrap()
}

#[test]
fn wrong_run_inputs_are_errors() {
    let g = small_graph();
    let mut c = device().compile(&g, &CompileOptions { max_batch: 2, ..Default::default() }).unwrap();
    let e = err_text(c.run(&[]));
    assert!(e.contains("small") && e.contains("expected 1 input"), "{e}");
    let e = err_text(c.run(&[Tensor::zeros(vec![1, 2, 4, 5])]));
    assert!(e.contains("image") && e.contains("expected shape [batch, 2, 4, 4]"), "{e}");
    let e = err_text(c.run(&[Tensor::zeros(vec![0, 2, 4, 4])]));
    assert!(e.contains("at least 1"), "{e}");
    let e = err_text(c.run(&[Tensor::zeros(vec![3, 2, 4, 4])]));
    assert!(e.contains("batch 3 exceeds the compiled maximum of 2"), "{e}");
    // The compiled graph still works after the errors.
    assert_eq!(c.run(&[Tensor::zeros(vec![2, 2, 4, 4])]).unwrap()[0].shape(), &[2, 2, 4, 4]);
    let e = err_text(reference::run(&g, &[Tensor::zeros(vec![1, 3])]));
    assert!(e.contains("image"), "{e}");
    let e = err_text(device().compile(&g, &CompileOptions { max_batch: 0, ..Default::default() }));
    assert!(e.contains("max_batch"), "{e}");
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
    let x = g.input("x", &[per_sample]);
    let y = g.unary("expand_relu", x, Activation::Relu).unwrap();
    g.output(y);
    let e = err_text(dev.compile(&g.build().unwrap(), &CompileOptions { max_batch: 8, ..Default::default() }));
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
    let g = small_graph();
    let e = err_text(g.slice_nodes(1..1));
    assert!(e.contains("small") && e.contains("range"), "{e}");
    let e = err_text(g.slice_nodes(0..5));
    assert!(e.contains("outside"), "{e}");
}
