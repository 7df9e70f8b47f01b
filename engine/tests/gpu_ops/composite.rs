//! Composite and miscellaneous operations (einsum, losses, rotary embedding, signal processing, bitwise ops) on the GPU against the CPU reference.
//!
//! Kernels (bitwise ops and shifts on every integer type, DFT, STFT, Det, linear attention)
//! run at odd sizes on inputs from the data, batch 1 and 3. Built operations (Einsum
//! equations, losses with labels from the data, RotaryEmbedding with position ids from the
//! data, training-mode BatchNormalization, CausalConvWithState with computed weights) come
//! through the ONNX importer from models written here by the `onnx` package, each batch's
//! static graph checked against the reference.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::*;
use common::check_graph;

/// Compiles `g`, runs it on `ins` and checks every output against the reference, exactly
/// (integer results).
fn check_exact_on(g: &Graph, ins: &[Tensor]) {
    let mut compiled =
        device().compile(g, &gpu::CompileOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", g.name));
    let want = reference::run(g, ins).unwrap_or_else(|e| panic!("reference {}: {e}", g.name));
    let got = compiled.run(ins).unwrap_or_else(|e| panic!("gpu {}: {e}", g.name));
    for (k, (gt, wt)) in got.iter().zip(&want).enumerate() {
        assert_eq!(gt.dtype(), wt.dtype());
        assert_eq!(gt.to_i64s(), wt.to_i64s(), "graph {} output {k}", g.name);
    }
}

/// Random values of an integer type that fit the device's 32-bit words.
fn ints_of(t: DType, shape: Vec<usize>, rng: &mut Rng, lo: i64, hi: i64) -> Tensor {
    let n = shape.iter().product();
    let (mut tlo, thi) = t.int_range();
    if matches!(t, DType::U64) {
        tlo = 0;
    }
    let (lo, hi) = (lo.max(tlo).max(i32::MIN as i64), hi.min(thi).min(i32::MAX as i64));
    let v = (0..n).map(|_| lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64).collect();
    Tensor::from_i64(t, shape, v).unwrap()
}

const INT_TYPES: [DType; 8] =
    [DType::I8, DType::I16, DType::I32, DType::I64, DType::U8, DType::U16, DType::U32, DType::U64];

#[test]
fn bitwise_ops_and_shifts_on_every_integer_type() {
    let mut rng = Rng::new(91);
    for t in INT_TYPES {
        let width = (t.size() * 8) as i64;
        let signed = matches!(t, DType::I8 | DType::I16 | DType::I32 | DType::I64);
        for &n in BATCHES {
            let g = build(&format!("bitwise_{t}"), |g| {
                let a = g.input_typed("a", t, &[n, 3, 7]);
                let b = g.input_typed("b", t, &[n, 1, 7]);
                let s = g.input_typed("s", t, &[n, 3, 7]);
                let mut outs = vec![];
                for op in [BinaryOp::BitwiseAnd, BinaryOp::BitwiseOr, BinaryOp::BitwiseXor] {
                    outs.push(g.binary(op.name(), op, a, b)?);
                }
                outs.push(g.binary("shl", BinaryOp::BitShift { left: true }, a, s)?);
                outs.push(g.binary("shr", BinaryOp::BitShift { left: false }, a, s)?);
                outs.push(g.add("not", Op::BitwiseNot, vec![a])?);
                Ok(outs)
            });
            // Values across the type's range (32-bit words), shifts past the width and, for
            // signed types, below 0. 64-bit values live in 32-bit words on the device, so
            // their left shifts stay within them (small values, shifts up to 20 or >= 64).
            let big = if width == 64 { 1 << 10 } else { 1i64 << 40 };
            let a = ints_of(t, vec![n, 3, 7], &mut rng, -big, big);
            let b = ints_of(t, vec![n, 1, 7], &mut rng, -(1 << 40), 1 << 40);
            let s = ints_of(t, vec![n, 3, 7], &mut rng, if signed { -3 } else { 0 }, width + 3);
            let s = if width == 64 {
                let v = s.to_i64s().into_iter().map(|x| if (21..64).contains(&x) { 64 + x % 4 } else { x }).collect();
                Tensor::from_i64(t, vec![n, 3, 7], v).unwrap()
            } else {
                s
            };
            check_exact_on(&g, &[a, b, s]);
        }
    }
}

#[test]
fn narrow_integer_arithmetic_wraps_as_the_reference() {
    let mut rng = Rng::new(92);
    for t in [DType::I8, DType::U8, DType::I16, DType::U16] {
        let g = build(&format!("wrap_{t}"), |g| {
            let a = g.input_typed("a", t, &[3, 5]);
            let b = g.input_typed("b", t, &[3, 5]);
            Ok(vec![g.binary("add", BinaryOp::Add, a, b)?, g.binary("mul", BinaryOp::Mul, a, b)?])
        });
        let a = ints_of(t, vec![3, 5], &mut rng, i64::MIN, i64::MAX);
        let b = ints_of(t, vec![3, 5], &mut rng, i64::MIN, i64::MAX);
        check_exact_on(&g, &[a, b]);
    }
}

#[test]
fn dft_every_mode_on_signals_from_the_data() {
    // (shape after the batch, axis, length, inverse, onesided)
    let cases: &[(&[usize], usize, usize, bool, bool)] = &[
        (&[7, 1], 1, 7, false, false),
        (&[7, 2], 1, 7, true, false),
        (&[9, 1], 1, 9, false, true),
        (&[5, 3, 2], 1, 5, false, false),  // a transformed axis with values after it
        (&[3, 5, 2], 2, 11, false, false), // zero-padded to 11
        (&[13, 2], 1, 6, true, false),     // cut to 6
        (&[4, 2], 1, 6, true, true),       // the real signal of a one-sided spectrum
        (&[5, 2], 1, 9, true, true),
    ];
    for (case, &(dims, axis, length, inverse, onesided)) in cases.iter().enumerate() {
        let attrs = DftAttrs { axis, length, inverse, onesided };
        let graph = |n: usize| {
            build(&format!("dft{case}"), |g| {
                let shape: Vec<usize> = std::iter::once(n).chain(dims.iter().copied()).collect();
                let x = g.input("x", &shape);
                Ok(vec![g.add("dft", Op::Dft(attrs.clone()), vec![x])?])
            })
        };
        check(graph, BATCHES, TOL, case as u64);
    }
}

#[test]
fn stft_with_and_without_a_window_from_the_data() {
    for (case, (len, parts, step, frame, onesided, window)) in
        [(23, 1, 4, 7, true, false), (19, 2, 3, 5, false, true), (16, 1, 5, 8, true, true)].into_iter().enumerate()
    {
        let attrs = StftAttrs { step, frame_length: frame, onesided };
        let graph = |n: usize| {
            build(&format!("stft{case}"), |g| {
                let x = g.input("x", &[n, len, parts]);
                let mut ins = vec![x];
                if window {
                    ins.push(g.input("w", &[frame]));
                }
                Ok(vec![g.add("stft", Op::Stft(attrs.clone()), ins)?])
            })
        };
        check(graph, BATCHES, TOL, 40 + case as u64);
    }
}

#[test]
fn determinants_of_odd_sizes() {
    for m in [1, 2, 3, 5] {
        let graph = |n: usize| {
            build(&format!("det{m}"), |g| {
                let x = g.input("x", &[n, 3, m, m]);
                Ok(vec![g.add("det", Op::Det, vec![x])?])
            })
        };
        check(graph, BATCHES, TOL, m as u64);
    }
}

#[test]
fn linear_attention_every_rule_and_grouped_heads() {
    // (q heads, kv heads, dk, dv, gated (decay per head?), delta (beta shared?))
    let cases = [
        (2, 2, 3, 5, None, None),
        (4, 2, 3, 2, Some(true), None),
        (2, 1, 4, 3, Some(false), Some(true)),
        (3, 3, 2, 3, None, Some(false)),
        (2, 2, 3, 3, Some(false), Some(false)),
    ];
    for (case, (hq, hk, dk, dv, gated, delta)) in cases.into_iter().enumerate() {
        let t = 5;
        let attrs = LinearAttentionAttrs {
            q_heads: hq,
            kv_heads: hk,
            scale: 0.7,
            gated: gated.is_some(),
            delta: delta.is_some(),
        };
        let graph = |n: usize| {
            build(&format!("linear_attention{case}"), |g| {
                let q = g.input("q", &[n, t, hq * dk]);
                let k = g.input("k", &[n, t, hk * dk]);
                let v = g.input("v", &[n, t, hk * dv]);
                let s = g.input("s", &[n, hk, dk, dv]);
                let mut ins = vec![q, k, v, s];
                if let Some(per_head) = gated {
                    ins.push(g.input("decay", &[n, t, if per_head { hk } else { hk * dk }]));
                }
                if let Some(shared) = delta {
                    let b = g.input("beta", &[n, t, if shared { 1 } else { hk }]);
                    ins.push(g.unary("beta01", b, Activation::Sigmoid)?);
                }
                g.add_multi("la", Op::LinearAttention(attrs.clone()), ins)
            })
        };
        check(graph, BATCHES, TOL, 60 + case as u64);
    }
}

/// Models of built operations, written once by the `onnx` package.
const SCRIPT: &str = r#"
import sys, numpy as np, onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh
d = sys.argv[1]
rng = np.random.default_rng(7)

def save(name, nodes, inputs, outputs, inits=(), opset=23):
    m = h.make_model(h.make_graph(nodes, name, inputs, outputs, list(inits)),
                     opset_imports=[h.make_opsetid("", opset)])
    onnx.save(m, f"{d}/{name}.onnx")

fl = lambda name, *dims: h.make_tensor_value_info(name, T.FLOAT, ["N", *dims])
i64 = lambda name, *dims: h.make_tensor_value_info(name, T.INT64, ["N", *dims])
out = lambda *names: [h.make_tensor_value_info(n, T.FLOAT, None) for n in names]
init = lambda name, a: nh.from_array(np.asarray(a), name)

einsums = [
    ("bij,bjk->bik", [[3, 5], [5, 4]]),
    ("bij->bji", [[3, 5]]),
    ("bii->bi", [[4, 4]]),
    ("b...ii->b...i", [[2, 3, 3]]),
    ("bi,bj->bij", [[3], [5]]),
    ("bij,bij->b", [[3, 4], [3, 4]]),
    ("bhqd,bhkd->bhqk", [[2, 3, 4], [2, 5, 4]]),
    ("...ij,...jk", [[2, 3, 4], [2, 4, 5]]),
    ("bij->", [[3, 5]]),
    ("bijk,bkj->bi", [[2, 3, 4], [4, 3]]),
    ("bi,bij,bj->b", [[3], [3, 4], [4]]),
    ("bii,bjj->bij", [[3, 3], [2, 2]]),
]
for k, (eq, dims) in enumerate(einsums):
    names = [f"x{i}" for i in range(len(dims))]
    save(f"einsum{k}", [h.make_node("Einsum", names, ["y"], equation=eq)],
         [fl(n, *ds) for n, ds in zip(names, dims)], out("y"), opset=12)
# One operand a constant.
save("einsum_const", [h.make_node("Einsum", ["x", "w"], ["y"], equation="bij,jk->bik")],
     [fl("x", 3, 5)], out("y"), [init("w", rng.standard_normal((5, 4)).astype(np.float32))], opset=12)

# Losses with labels from the data ([N, 4] labels of 5 classes).
w = init("w", rng.uniform(0.5, 2, 5).astype(np.float32))
for k, (op, red, weight, ii, logp) in enumerate([
        ("SoftmaxCrossEntropyLoss", "mean", False, None, False),
        ("SoftmaxCrossEntropyLoss", "none", True, 1, True),
        ("SoftmaxCrossEntropyLoss", "mean", True, 2, False),
        ("SoftmaxCrossEntropyLoss", "sum", False, 0, True),
        ("NegativeLogLikelihoodLoss", "mean", True, None, False),
        ("NegativeLogLikelihoodLoss", "none", False, 1, False),
        ("NegativeLogLikelihoodLoss", "mean", False, 2, False),
        ("NegativeLogLikelihoodLoss", "sum", True, 0, False)]):
    ins = ["x", "labels"] + (["w"] if weight else [])
    outs = ["loss"] + (["log_prob"] if logp else [])
    attrs = {"reduction": red}
    if ii is not None:
        attrs["ignore_index"] = ii
    save(f"loss{k}", [h.make_node(op, ins, outs, **attrs)], [fl("x", 5, 4), i64("labels", 4)], out(*outs),
         [w] if weight else [], opset=13)

# RotaryEmbedding with position ids from the data.
cos = init("cos", rng.uniform(-1, 1, (6, 4)).astype(np.float32))
sin = init("sin", rng.uniform(-1, 1, (6, 4)).astype(np.float32))
cos2 = init("cos", rng.uniform(-1, 1, (6, 2)).astype(np.float32))
sin2 = init("sin", rng.uniform(-1, 1, (6, 2)).astype(np.float32))
for k, (dims, attrs, caches) in enumerate([
        ([2, 3, 8], {}, (cos, sin)),
        ([2, 3, 8], {"interleaved": 1}, (cos, sin)),
        ([2, 3, 10], {"rotary_embedding_dim": 4}, (cos2, sin2)),
        ([3, 16], {"num_heads": 2}, (cos, sin)),
        ([3, 12], {"num_heads": 2, "interleaved": 1, "rotary_embedding_dim": 4}, (cos2, sin2))]):
    save(f"rope{k}", [h.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"], **attrs)],
         [fl("x", *dims), i64("pos", 3)], out("y"), list(caches))

# Training-mode batch normalisation; CausalConvWithState with weights computed from the data.
p = [init(n, rng.uniform(0.5, 1.5, 3).astype(np.float32)) for n in ("s", "b", "m", "v")]
save("bn_training", [h.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"],
                                 training_mode=1, momentum=0.8)],
     [fl("x", 3, 4, 5)], out("y", "rm", "rv"), p, opset=15)
wc = init("w0", rng.standard_normal((3, 1, 4)).astype(np.float32))
save("causal_conv", [h.make_node("ReduceMean", ["x"], ["mx"], keepdims=0),
                     h.make_node("Mul", ["w0", "mx"], ["w"]),
                     h.make_node("CausalConvWithState", ["x", "w", "bias", "past"], ["y", "state"], activation="silu")],
     [fl("x", 3, 7), fl("past", 3, 3)], out("y", "state"), [wc, init("bias", np.float32([0.1, -0.2, 0.3]))],
     opset=27)
"#;

fn models() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("composite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("python3").arg("-c").arg(SCRIPT).arg(&dir).output().expect("python3 runs");
        assert!(out.status.success(), "model script failed:\n{}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

/// Imports model `name` and checks its static graph at batch 1 and 3 against the reference
/// on random inputs (integers 0..=2: labels and position ids from the data).
fn check_model(name: &str, seed: u64) {
    let path = models().join(format!("{name}.onnx"));
    let model = onnx::load(&path, &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    for &b in BATCHES {
        let g = model.graph(b).unwrap_or_else(|e| panic!("{name} at batch {b}: {e}"));
        check_graph(&g, TOL, seed + b as u64, &gpu::CompileOptions::default());
    }
}

#[test]
fn einsum_equations_through_the_importer() {
    for k in 0..12 {
        check_model(&format!("einsum{k}"), 100 + k);
    }
    check_model("einsum_const", 120);
}

#[test]
fn losses_with_labels_from_the_data() {
    for k in 0..8 {
        check_model(&format!("loss{k}"), 200 + k);
    }
}

#[test]
fn rotary_embedding_with_position_ids_from_the_data() {
    for k in 0..5 {
        check_model(&format!("rope{k}"), 300 + k);
    }
}

#[test]
fn training_batch_norm_and_causal_conv_with_computed_weights() {
    check_model("bn_training", 400);
    check_model("causal_conv", 401);
}
