//! Every operation on the GPU against the CPU reference, over random shapes (odd sizes
//! included), batch 1 and batch 3 (each batch a static graph of its own, with the same
//! weights), and every attribute variant; operations across axis 0 (the batch is an ordinary
//! axis), typed tensors (integers, bools, float16) and the math functions.
//!
//! Tolerance: the largest absolute error relative to max(1, largest |reference value|) must
//! stay below `TOL` = 1e-4 (f32 accumulation in a different order, and the erf approximation
//! of GELU with absolute error < 1.5e-7); data movement, integer, bool and cast results must
//! be exact; float16 graphs within `TOL_F16` = 2e-3 (one fp16 rounding step apart).

#[path = "../common.rs"]
mod common;

// The operations of each area in a file of its own.
mod composite;
mod conv_pool;
mod index;
mod quant;
mod recurrent;
mod sample;

use common::{check, device, inputs};
use poolpipe_engine::*;

const TOL: f32 = 1e-4;
const TOL_F16: f32 = 2e-3;
/// asin and acos: Vulkan allows them the error of atan2 (4096 ulp, 5e-4 near pi/2).
const TOL_ASIN: f32 = 1e-3;
const BATCHES: &[usize] = &[1, 3];
/// Batches for operations across axis 0 (at least 2 samples to mix).
const BATCHES_AXIS0: &[usize] = &[2, 3];

fn rand_act(rng: &mut Rng) -> Option<Activation> {
    let all = [
        None,
        Some(Activation::Relu),
        Some(Activation::LeakyRelu { alpha: 0.1 }),
        Some(Activation::Clip { min: 0.0, max: 6.0 }),
        Some(Activation::Sigmoid),
        Some(Activation::HardSigmoid { alpha: 0.2, beta: 0.5 }),
        Some(Activation::HardSwish),
        Some(Activation::Silu),
        Some(Activation::Gelu { tanh_approx: false }),
        Some(Activation::Gelu { tanh_approx: true }),
        Some(Activation::Tanh),
    ];
    *rng.pick(&all)
}

/// Random weights in [-0.5, 0.5), drawn once and cloned into the graph of every batch.
fn weights(shape: Vec<usize>, rng: &mut Rng) -> Tensor {
    Tensor::random(shape, rng, -0.5, 0.5)
}

fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
}

/// A graph whose outputs `body` adds; an error of the builder is returned.
fn try_build(name: &str, body: impl FnOnce(&mut GraphBuilder) -> Result<Vec<ValueId>>) -> Result<Graph> {
    let mut g = GraphBuilder::new(name);
    for y in body(&mut g)? {
        g.output(y);
    }
    g.build()
}

/// A graph whose outputs `body` adds; panics (naming the graph) when the builder refuses it.
fn build(name: &str, body: impl FnOnce(&mut GraphBuilder) -> Result<Vec<ValueId>>) -> Graph {
    try_build(name, body).unwrap_or_else(|e| panic!("building {name}: {e}"))
}

/// A float32 constant of the given values.
fn floats(g: &mut GraphBuilder, name: &str, shape: Vec<usize>, v: Vec<f32>) -> ValueId {
    g.constant(name, Tensor::new(shape, v).unwrap())
}

/// An int64 constant of the given values.
fn int64s(g: &mut GraphBuilder, name: &str, shape: Vec<usize>, v: Vec<i64>) -> ValueId {
    g.constant(name, Tensor::from_i64(DType::I64, shape, v).unwrap())
}

/// Runs a graph on the device on `common::inputs` from `seed` (for checks beyond the
/// comparison with the reference).
fn run_gpu(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut c = device().compile(g, &gpu::CompileOptions::default()).unwrap();
    c.run(&inputs(g, &mut Rng::new(seed))).unwrap()
}

#[test]
fn conv2d_random_shapes_strides_pads_dilations_groups() {
    let mut rng = Rng::new(11);
    for case in 0..24 {
        let groups_base = rng.range(1, 3);
        let c = groups_base * rng.range(1, 4);
        let groups = *rng.pick(&divisors(c));
        let m = groups * rng.range(1, 6);
        let (kh, kw) = (rng.range(1, 4), rng.range(1, 4));
        let stride = [rng.range(1, 3), rng.range(1, 3)];
        let dilation = [rng.range(1, 2), rng.range(1, 2)];
        let pads = [rng.range(0, 2), rng.range(0, 2), rng.range(0, 2), rng.range(0, 2)];
        let h = rng.range(dilation[0] * (kh - 1) + 1, 13);
        let w = rng.range(dilation[1] * (kw - 1) + 1, 13);
        let wt = weights(vec![m, c / groups, kh, kw], &mut rng);
        let b = rng.coin().then(|| weights(vec![m], &mut rng));
        let activation = rand_act(&mut rng);
        let attrs =
            ConvAttrs { stride: stride.to_vec(), pads: pads.to_vec(), dilation: dilation.to_vec(), groups, activation };
        let graph = |n: usize| {
            build(&format!("conv{case}"), |g| {
                let x = g.input("x", &[n, c, h, w]);
                let wt = g.constant("w", wt.clone());
                let b = b.clone().map(|b| g.constant("b", b));
                Ok(vec![g.conv("conv", x, wt, b, attrs.clone())?])
            })
        };
        check(graph, BATCHES, TOL, case);
    }
}

#[test]
fn conv1x1_pointwise_path() {
    let mut rng = Rng::new(12);
    for (case, (c, m, h, w)) in [(8, 12, 4, 4), (3, 5, 2, 6), (16, 7, 8, 2)].into_iter().enumerate() {
        let wt = weights(vec![m, c, 1, 1], &mut rng);
        let b = weights(vec![m], &mut rng);
        let graph = |n: usize| {
            build(&format!("pw{case}"), |g| {
                let x = g.input("x", &[n, c, h, w]);
                let wt = g.constant("w", wt.clone());
                let b = g.constant("b", b.clone());
                let attrs = ConvAttrs { activation: Some(Activation::Relu), ..Default::default() };
                Ok(vec![g.conv("pw", x, wt, Some(b), attrs)?])
            })
        };
        check(graph, BATCHES, TOL, case as u64);
    }
}

#[test]
fn depthwise_conv_with_multiplier_stride_and_padding() {
    let mut rng = Rng::new(13);
    for case in 0..12 {
        let c = rng.range(2, 9);
        let mult = rng.range(1, 2);
        let k = *rng.pick(&[3, 5, 7]);
        let stride = rng.range(1, 2);
        let d = rng.range(1, 2);
        let p = rng.range(0, k / 2 * d);
        let h = rng.range(d * (k - 1) + 1, 14);
        let w = rng.range(d * (k - 1) + 1, 14);
        let wt = weights(vec![c * mult, 1, k, k], &mut rng);
        let b = weights(vec![c * mult], &mut rng);
        let attrs = ConvAttrs {
            stride: vec![stride, stride],
            pads: vec![p, p, rng.range(0, p), p],
            dilation: vec![d, d],
            groups: c,
            activation: rand_act(&mut rng),
        };
        let graph = |n: usize| {
            build(&format!("dw{case}"), |g| {
                let x = g.input("x", &[n, c, h, w]);
                let wt = g.constant("w", wt.clone());
                let b = g.constant("b", b.clone());
                Ok(vec![g.conv("dw", x, wt, Some(b), attrs.clone())?])
            })
        };
        check(graph, BATCHES, TOL, case);
    }
}

#[test]
fn conv_transpose_strides_pads_output_padding_groups() {
    let mut rng = Rng::new(14);
    let mut checked = 0;
    for case in 0..14 {
        let groups = rng.range(1, 2);
        let c = groups * rng.range(1, 3);
        let m = groups * rng.range(1, 5);
        let (kh, kw) = (rng.range(1, 4), rng.range(1, 4));
        let stride = [rng.range(1, 3), rng.range(1, 3)];
        let dilation = [rng.range(1, 2), 1];
        let output_padding = [rng.range(0, stride[0].max(dilation[0]) - 1), rng.range(0, stride[1] - 1)];
        let pads = [rng.range(0, kh - 1), rng.range(0, kw - 1), rng.range(0, kh - 1), rng.range(0, kw - 1)];
        let (h, w) = (rng.range(1, 7), rng.range(1, 7));
        let wt = weights(vec![c, m / groups, kh, kw], &mut rng);
        let b = rng.coin().then(|| weights(vec![m], &mut rng));
        let attrs = ConvTransposeAttrs {
            stride: stride.to_vec(),
            pads: pads.to_vec(),
            dilation: dilation.to_vec(),
            output_padding: output_padding.to_vec(),
            groups,
            activation: rand_act(&mut rng),
        };
        let graph = |n: usize| {
            try_build(&format!("convT{case}"), |g| {
                let x = g.input("x", &[n, c, h, w]);
                let wt = g.constant("w", wt.clone());
                let b = b.clone().map(|b| g.constant("b", b));
                Ok(vec![g.conv_transpose("convT", x, wt, b, attrs.clone())?])
            })
        };
        // Padding may leave an empty output: such draws are skipped.
        if graph(1).is_err() {
            continue;
        }
        checked += 1;
        check(|n| graph(n).unwrap(), BATCHES, TOL, case);
    }
    assert!(checked >= 7, "only {checked} of 14 transposed convolutions were valid");
}

#[test]
fn gemm_with_transposes_alpha_beta_and_bias_shapes() {
    let mut rng = Rng::new(15);
    for case in 0..10 {
        let (k, n) = (rng.range(1, 40), rng.range(1, 21));
        let trans_b = rng.coin();
        let bshape = if trans_b { vec![n, k] } else { vec![k, n] };
        let bw = weights(bshape, &mut rng);
        let c = match case % 4 {
            0 => None,
            1 => Some(weights(vec![n], &mut rng)),
            2 => Some(weights(vec![1, n], &mut rng)),
            _ => Some(weights(vec![1], &mut rng)),
        };
        let attrs = GemmAttrs {
            alpha: rng.uniform(0.5, 2.0),
            beta: rng.uniform(0.5, 2.0),
            // A transposed A: the input holds [k, batch] (its rows are the batch's columns).
            trans_a: case % 3 == 2,
            trans_b,
            activation: rand_act(&mut rng),
        };
        let graph = |b: usize| {
            build(&format!("gemm{case}"), |g| {
                let x = g.input("x", &if attrs.trans_a { [k, b] } else { [b, k] });
                let bw = g.constant("b", bw.clone());
                let c = c.clone().map(|c| g.constant("c", c));
                Ok(vec![g.gemm("fc", x, bw, c, attrs.clone())?])
            })
        };
        check(graph, &[1, 3, 4], TOL, case);
    }
}

#[test]
fn gemm_with_batched_c() {
    let mut rng = Rng::new(16);
    let bw = weights(vec![9, 5], &mut rng);
    let graph = |n: usize| {
        build("gemm_c_act", |g| {
            let x = g.input("x", &[n, 9]);
            let r = g.input("r", &[n, 5]);
            let bw = g.constant("b", bw.clone());
            Ok(vec![g.gemm("fc", x, bw, Some(r), GemmAttrs::default())?])
        })
    };
    check(graph, BATCHES, TOL, 1);
}

#[test]
fn matmul_batched_broadcast_and_constant_operands() {
    let mut rng = Rng::new(17);
    // (A dims after the batch, B dims (after the batch when B is an input), B constant?)
    let cases: Vec<(Vec<usize>, Vec<usize>, bool)> = vec![
        (vec![5, 7], vec![7, 6], true),        // [N,5,7] x [7,6] const (folds rows)
        (vec![3, 5, 7], vec![7, 9], true),     // [N,3,5,7] x [7,9]
        (vec![4, 5, 7], vec![4, 7, 3], false), // batched x batched (attention-like)
        (vec![2, 6, 8], vec![1, 8, 5], false), // B broadcasts over dim 1
        (vec![1, 6, 8], vec![3, 8, 5], false), // A broadcasts over dim 1
        (vec![2, 5, 7], vec![2, 7, 6], true),  // constant batched B [2,7,6]
        (vec![2, 3, 4, 5], vec![2, 3, 5, 2], false),
    ];
    for (case, (ad, bd, bconst)) in cases.into_iter().enumerate() {
        let bw = bconst.then(|| weights(bd.clone(), &mut rng));
        let graph = |n: usize| {
            build(&format!("matmul{case}"), |g| {
                let a = g.input("a", &[vec![n], ad.clone()].concat());
                let b = match &bw {
                    Some(t) => g.constant("b", t.clone()),
                    None => g.input("b", &[vec![n], bd.clone()].concat()),
                };
                Ok(vec![g.matmul("mm", a, b)?])
            })
        };
        check(graph, BATCHES, TOL, case as u64);
    }
}

#[test]
fn matmul_fused_activation_after_optimize() {
    let mut rng = Rng::new(18);
    let bw = weights(vec![10, 7], &mut rng);
    let graph = |n: usize| {
        build("mm_act", |g| {
            let a = g.input("a", &[n, 6, 10]);
            let b = g.constant("b", bw.clone());
            let y = g.matmul("mm", a, b)?;
            Ok(vec![g.unary("gelu", y, Activation::Gelu { tanh_approx: false })?])
        })
    };
    for &n in BATCHES {
        assert_eq!(optimize(&graph(n)).unwrap().nodes().len(), 1, "GELU fuses into the matmul at batch {n}");
    }
    check(graph, BATCHES, TOL, 3);
}

#[test]
fn pooling_max_average_ceil_mode_count_include_pad_dilation() {
    let mut rng = Rng::new(19);
    for case in 0..30 {
        let kind = if rng.coin() { PoolKind::Max } else { PoolKind::Average };
        let k = [rng.range(1, 4), rng.range(1, 4)];
        let stride = [rng.range(1, 3), rng.range(1, 3)];
        // Dilation for both kinds (ONNX AveragePool has dilations since opset 19).
        let dilation = [rng.range(1, 2), rng.range(1, 2)];
        // At most half the dilated window (a window never lies wholly in the padding).
        let half = |i: usize| (dilation[i] * (k[i] - 1)).div_ceil(2);
        let pads = [rng.range(0, half(0)), rng.range(0, half(1)), rng.range(0, half(0)), rng.range(0, half(1))];
        let (c, h, w) = (rng.range(1, 4), rng.range(k[0] * dilation[0], 11), rng.range(k[1] * dilation[1], 11));
        let attrs = PoolAttrs {
            kind,
            kernel: k.to_vec(),
            stride: stride.to_vec(),
            pads: pads.to_vec(),
            dilation: dilation.to_vec(),
            ceil_mode: rng.coin(),
            count_include_pad: rng.coin(),
            indices: None,
        };
        let graph = |n: usize| {
            build(&format!("pool{case}"), |g| {
                let x = g.input("x", &[n, c, h, w]);
                Ok(vec![g.pool("pool", x, attrs.clone())?])
            })
        };
        check(graph, BATCHES, TOL, case);
    }
}

#[test]
fn global_pooling_max_and_average() {
    for (case, (kind, dims)) in [
        (PoolKind::Average, vec![5, 7, 9]),
        (PoolKind::Max, vec![3, 13, 11]),
        (PoolKind::Average, vec![16, 1, 1]),
        (PoolKind::Max, vec![2, 70, 3]),
    ]
    .into_iter()
    .enumerate()
    {
        let graph = |n: usize| {
            build(&format!("gpool{case}"), |g| {
                let x = g.input("x", &[vec![n], dims.clone()].concat());
                Ok(vec![g.global_pool("gp", x, kind)?])
            })
        };
        check(graph, BATCHES, TOL, case as u64);
    }
}

#[test]
fn elementwise_binary_with_broadcasting() {
    let mut rng = Rng::new(20);
    // ((dims, constant?), (dims, constant?)); inputs get the batch in front of their dims,
    // constants keep theirs (and broadcast over the batch).
    type Operand = (Vec<usize>, bool);
    let cases: Vec<(Operand, Operand)> = vec![
        ((vec![4, 5, 6], false), (vec![4, 5, 6], false)),
        ((vec![4, 5, 6], false), (vec![4, 1, 1], true)),
        ((vec![4, 5, 6], false), (vec![6], true)),
        ((vec![4, 1, 1], false), (vec![4, 5, 6], false)),
        ((vec![3, 1, 6], false), (vec![1, 5, 1], false)),
        ((vec![2, 3], true), (vec![7, 2, 1], false)),
        ((vec![5, 7], false), (vec![1], true)),
        ((vec![2, 3, 4, 5, 2], false), (vec![1, 4, 1, 2], true)),
    ];
    for (case, ((ad, ac), (bd, bc))) in cases.into_iter().enumerate() {
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            let konst = |d: &[usize], c: bool, rng: &mut Rng| c.then(|| Tensor::random(d.to_vec(), rng, 0.5, 1.5));
            let (at, bt) = (konst(&ad, ac, &mut rng), konst(&bd, bc, &mut rng));
            // Division by inputs near 0 is ill-conditioned: divide by constants only.
            if op == BinaryOp::Div && !bc {
                continue;
            }
            let graph = |n: usize| {
                build(&format!("bin{case}{op:?}"), |g| {
                    let mut mk = |name: &str, d: &[usize], t: &Option<Tensor>| match t {
                        Some(t) => g.constant(name, t.clone()),
                        None => g.input(name, &[&[n][..], d].concat()),
                    };
                    let a = mk("a", &ad, &at);
                    let b = mk("b", &bd, &bt);
                    Ok(vec![g.binary("op", op, a, b)?])
                })
            };
            check(graph, BATCHES, TOL, case as u64);
        }
    }
}

#[test]
fn binary_operands_broadcast_over_the_batch() {
    // An input of batch 1 against one of batch N: axis 0 broadcasts like any other.
    let graph = |n: usize| {
        build("bin_batch_broadcast", |g| {
            let a = g.input("a", &[n, 4, 5]);
            let b = g.input("b", &[1, 4, 1]);
            let c = g.input("c", &[n, 1, 1, 5]);
            let s = g.binary("add", BinaryOp::Add, a, b)?;
            Ok(vec![s, g.binary("mul", BinaryOp::Mul, s, c)?])
        })
    };
    check(graph, BATCHES_AXIS0, TOL, 4);
}

#[test]
fn new_binary_ops_on_floats() {
    let mut rng = Rng::new(23);
    let exps = Tensor::random(vec![6], &mut rng, -2.0, 3.0);
    // Divisors away from 0, both signs.
    let divs = Tensor::new(vec![6], vec![0.7, -0.45, 1.3, -1.9, 0.25, 3.0]).unwrap();
    let slope = weights(vec![4, 1, 1], &mut rng);
    let graph = |n: usize| {
        build("binary_new", |g| {
            let a = g.input("a", &[n, 4, 5, 6]);
            let b = g.input("b", &[n, 1, 5, 6]);
            let s = floats(g, "four", vec![1], vec![4.0]);
            let a4 = g.binary("a4", BinaryOp::Mul, a, s)?; // [-4, 4)
            let abs = g.unary("abs", a4, Activation::Abs)?;
            let eps = floats(g, "eps", vec![1], vec![0.1]);
            let base = g.binary("base", BinaryOp::Add, abs, eps)?; // positive bases
            let e = g.constant("exps", exps.clone());
            let d = g.constant("divs", divs.clone());
            let p = g.constant("slope", slope.clone());
            Ok(vec![
                g.binary("pow", BinaryOp::Pow, base, e)?,
                g.binary("max", BinaryOp::Max, a, b)?,
                g.binary("min", BinaryOp::Min, a, b)?,
                g.binary("prelu", BinaryOp::PRelu, a4, p)?,
                g.binary("mod", BinaryOp::Mod { fmod: false }, a4, d)?,
                g.binary("fmod", BinaryOp::Mod { fmod: true }, a4, d)?,
            ])
        })
    };
    check(graph, BATCHES, TOL, 5);
}

#[test]
fn binary_with_fused_activation() {
    for (case, act) in
        [Activation::Relu, Activation::HardSwish, Activation::Clip { min: -0.5, max: 0.5 }].into_iter().enumerate()
    {
        let graph = |n: usize| {
            build(&format!("add_act{case}"), |g| {
                let a = g.input("a", &[n, 4, 5, 6]);
                let b = g.input("b", &[n, 4, 1, 6]);
                let s = g.binary("add", BinaryOp::Add, a, b)?;
                Ok(vec![g.unary("act", s, act)?])
            })
        };
        for &n in BATCHES {
            assert_eq!(optimize(&graph(n)).unwrap().nodes().len(), 1, "the activation fuses into the add");
        }
        check(graph, BATCHES, TOL, case as u64);
    }
}

#[test]
fn every_activation_standalone() {
    use Activation::*;
    // (function, domain): 0 = [-8, 8), 1 = [-1, 1), 2 = (0.05, 8.05], 3 = [1, 9), 4 = [-1, 1)
    // with the tolerance `TOL_ASIN`.
    let acts = [
        (Relu, 0),
        (LeakyRelu { alpha: 0.01 }, 0),
        (Clip { min: -0.3, max: 0.6 }, 0),
        (Clip { min: 0.0, max: 6.0 }, 0),
        (Sigmoid, 0),
        (HardSigmoid { alpha: 0.2, beta: 0.5 }, 0),
        (HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 }, 0),
        (HardSwish, 0),
        (Silu, 0),
        (Gelu { tanh_approx: false }, 0),
        (Gelu { tanh_approx: true }, 0),
        (Tanh, 0),
        (Erf, 0),
        (Abs, 0),
        (Neg, 0),
        (Exp, 0),
        (Floor, 0),
        (Ceil, 0),
        (Round, 0),
        (Sign, 0),
        (Sin, 0),
        (Cos, 0),
        (Atan, 0),
        (Sinh, 0),
        (Cosh, 0),
        (Asinh, 0),
        (Elu { alpha: 0.8 }, 0),
        (Selu { alpha: 1.673_263_2, gamma: 1.050_701 }, 0),
        (Celu { alpha: 1.5 }, 0),
        (Softplus, 0),
        (Softsign, 0),
        (Mish, 0),
        (ThresholdedRelu { alpha: 1.0 }, 0),
        (Shrink { lambd: 1.5, bias: 0.5 }, 0),
        (Swish { alpha: 0.7 }, 0),
        // Vulkan bounds asin and acos by atan2's 4096 ulp (lavapipe: 2.6e-4 near 0.92).
        (Asin, 4),
        (Acos, 4),
        (Atanh, 1),
        (Tan, 1),
        (Log, 2),
        (Sqrt, 2),
        (Reciprocal, 2),
        (Acosh, 3),
    ];
    for (case, (act, domain)) in acts.into_iter().enumerate() {
        let graph = |n: usize| {
            build(&format!("act{case}_{}", act.name()), |g| {
                let x = g.input("x", &[n, 3, 7, 5]);
                let xs = match domain {
                    1 | 4 => x,
                    _ => {
                        let s = floats(g, "s", vec![1], vec![8.0]);
                        let xs = g.binary("scale", BinaryOp::Mul, x, s)?; // [-8, 8)
                        if domain == 0 {
                            xs
                        } else {
                            let a = g.unary("abs", xs, Abs)?;
                            let off = floats(g, "off", vec![1], vec![if domain == 2 { 0.05 } else { 1.0 }]);
                            g.binary("shift", BinaryOp::Add, a, off)?
                        }
                    }
                };
                Ok(vec![g.unary("act", xs, act)?])
            })
        };
        check(graph, BATCHES, if domain == 4 { TOL_ASIN } else { TOL }, case as u64);
    }
}

#[test]
fn softmax_log_softmax_hardmax_on_every_axis() {
    for axis in 0..4 {
        let graph = |n: usize| {
            build(&format!("softmax{axis}"), |g| {
                let x = g.input("x", &[n, 5, 3, 70]);
                let mut outs = vec![];
                for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax, SoftmaxKind::Hardmax] {
                    outs.push(g.add(&format!("{kind:?}"), Op::Softmax { axis, kind }, vec![x])?);
                }
                Ok(outs)
            })
        };
        check(graph, BATCHES, TOL, axis as u64);
    }
}

#[test]
fn layer_norm_with_and_without_bias() {
    let mut rng = Rng::new(21);
    for (case, (dims, axis, sshape, bias)) in [
        (vec![6, 7, 9], 3, vec![9], true),
        (vec![6, 7, 9], 2, vec![7, 9], false),
        (vec![4, 100], 2, vec![100], true),
        (vec![6, 7, 9], 2, vec![1, 9], true),
        (vec![3, 4], 0, vec![3, 1], true), // over the whole tensor, batch included
    ]
    .into_iter()
    .enumerate()
    {
        let s = Tensor::random(sshape.clone(), &mut rng, 0.5, 1.5);
        let b = bias.then(|| Tensor::random(sshape.clone(), &mut rng, -0.5, 0.5));
        let graph = |n: usize| {
            build(&format!("ln{case}"), |g| {
                let x = g.input("x", &[vec![n], dims.clone()].concat());
                let s = g.constant("s", s.clone());
                let mut ins = vec![x, s];
                if let Some(b) = &b {
                    ins.push(g.constant("b", b.clone()));
                }
                Ok(vec![g.add("ln", Op::LayerNorm { axis, epsilon: 1e-5 }, ins)?])
            })
        };
        check(graph, BATCHES, TOL, case as u64);
    }
}

fn batch_norm_params(c: usize, rng: &mut Rng) -> Vec<Tensor> {
    vec![
        Tensor::random(vec![c], rng, 0.5, 1.5),
        Tensor::random(vec![c], rng, -0.5, 0.5),
        Tensor::random(vec![c], rng, -0.5, 0.5),
        Tensor::random(vec![c], rng, 0.5, 1.5),
    ]
}

fn add_batch_norm(g: &mut GraphBuilder, x: ValueId, params: &[Tensor], epsilon: f32) -> Result<ValueId> {
    let mut ins = vec![x];
    for (name, t) in ["scale", "bias", "mean", "var"].into_iter().zip(params) {
        ins.push(g.constant(name, t.clone()));
    }
    g.add("bn", Op::BatchNorm { epsilon }, ins)
}

#[test]
fn batch_norm_as_kernel_and_folded_into_conv() {
    let mut rng = Rng::new(22);
    // Standalone (input is a graph input: nothing to fold into).
    let params = batch_norm_params(5, &mut rng);
    let graph = |n: usize| {
        build("bn_kernel", |g| {
            let x = g.input("x", &[n, 5, 6, 7]);
            Ok(vec![add_batch_norm(g, x, &params, 1e-5)?])
        })
    };
    assert!(optimize(&graph(1)).unwrap().nodes().iter().any(|n| matches!(n.op, Op::BatchNorm { .. })));
    check(graph, BATCHES, TOL, 1);

    // Conv -> BN -> ReLU folds into one conv node; same for ConvTranspose.
    for transposed in [false, true] {
        let (w, b) = if transposed {
            (weights(vec![4, 3, 3, 3], &mut rng), None)
        } else {
            (weights(vec![6, 2, 3, 3], &mut rng), Some(weights(vec![6], &mut rng)))
        };
        let params = batch_norm_params(if transposed { 3 } else { 6 }, &mut rng);
        let graph = |n: usize| {
            build(&format!("bn_fold_{transposed}"), |g| {
                let x = g.input("x", &[n, 4, 6, 6]);
                let wt = g.constant("w", w.clone());
                let y = if transposed {
                    let attrs = ConvTransposeAttrs { stride: vec![2, 2], groups: 1, ..Default::default() };
                    g.conv_transpose("convT", x, wt, None, attrs)?
                } else {
                    let b = b.clone().map(|b| g.constant("b", b));
                    g.conv("conv", x, wt, b, ConvAttrs { groups: 2, pads: vec![1; 4], ..Default::default() })?
                };
                let y = add_batch_norm(g, y, &params, 1e-3)?;
                Ok(vec![g.unary("relu", y, Activation::Relu)?])
            })
        };
        for &n in BATCHES {
            assert_eq!(optimize(&graph(n)).unwrap().nodes().len(), 1, "conv + bn + relu become one node");
        }
        check(graph, BATCHES, TOL, 2);
    }
}

#[test]
fn concat_split_slice_transpose_reshape_family() {
    // concat on each axis but the batch (see ops_across_axis_0)
    for axis in 1..4 {
        let graph = |n: usize| {
            build(&format!("concat{axis}"), |g| {
                let a = g.input("a", &[n, 3, 4, 5]);
                let mut d = vec![n, 3, 4, 5];
                d[axis] = 2;
                let b = g.input("b", &d);
                Ok(vec![g.add("cat", Op::Concat { axis }, vec![a, b, a])?])
            })
        };
        check(graph, BATCHES, 0.0, axis as u64);
    }
    // split into three on axis 2, outputs consumed by a relu each
    let graph = |n: usize| {
        build("split", |g| {
            let x = g.input("x", &[n, 4, 9, 3]);
            let parts = g.add_multi("split", Op::Split { axis: 2, sizes: vec![2, 4, 3] }, vec![x])?;
            parts.iter().enumerate().map(|(i, p)| g.unary(&format!("relu{i}"), *p, Activation::Relu)).collect()
        })
    };
    check(graph, BATCHES, 0.0, 5);
    // slices: steps, negative steps, negative indices, clamping
    // (axes, starts, ends, steps)
    type SliceCase = (Vec<usize>, Vec<i64>, Vec<i64>, Vec<i64>);
    let slices: Vec<SliceCase> = vec![
        (vec![1], vec![1], vec![3], vec![1]),
        (vec![2, 3], vec![0, -1], vec![7, -100], vec![2, -1]),
        (vec![3], vec![-3], vec![i64::MAX], vec![1]),
        (vec![1, 3], vec![4, 5], vec![0, 1], vec![-2, -3]),
    ];
    for (case, (axes, starts, ends, steps)) in slices.into_iter().enumerate() {
        let op = Op::Slice { axes, starts, ends, steps };
        let graph = |n: usize| {
            build(&format!("slice{case}"), |g| {
                let x = g.input("x", &[n, 5, 8, 6]);
                Ok(vec![g.add("slice", op.clone(), vec![x])?])
            })
        };
        check(graph, BATCHES, 0.0, case as u64);
    }
    // transpose, then reshape/flatten/squeeze/unsqueeze (views) feeding kernels
    let graph = |n: usize| {
        build("transpose_views", |g| {
            let x = g.input("x", &[n, 2, 3, 4, 5]);
            let t = g.add("t", Op::Transpose { perm: vec![0, 3, 1, 4, 2] }, vec![x])?;
            let r = g.reshape("r", t, &[n, 4, 6, 5])?;
            let u = g.unsqueeze("u", r, &[1])?;
            let s = g.squeeze("s", u, &[1])?;
            let f = g.flatten("f", s, 1)?;
            Ok(vec![g.unary("relu", f, Activation::Relu)?, t])
        })
    };
    check(graph, BATCHES, 0.0, 9);
}

/// Operations on axis 0, which is an ordinary axis of a static graph: softmax (see
/// softmax_log_softmax_hardmax_on_every_axis), concat, split, slice, reduce (see
/// every_reduce_kind), transposes moving it, reshapes merging it, pads, unsqueeze/squeeze.
#[test]
fn ops_across_axis_0() {
    let mut rng = Rng::new(24);
    let b2 = weights(vec![20, 6], &mut rng);
    let graph = |n: usize| {
        build("axis0_concat_split_slice", |g| {
            let a = g.input("a", &[n, 3, 4]);
            let b = g.input("b", &[2, 3, 4]);
            let cat = g.add("cat0", Op::Concat { axis: 0 }, vec![a, b, a])?; // [2n+2, 3, 4]
            let parts = g.add_multi("split0", Op::Split { axis: 0, sizes: vec![2, n, n] }, vec![cat])?;
            let r = g.unary("relu", parts[1], Activation::Relu)?;
            let slice = Op::Slice { axes: vec![0], starts: vec![1], ends: vec![-1], steps: vec![1] };
            let s1 = g.add("slice0", slice, vec![cat])?;
            let slice =
                Op::Slice { axes: vec![0, 2], starts: vec![-1, 0], ends: vec![i64::MIN, 4], steps: vec![-2, 3] };
            let s2 = g.add("slice0_back", slice, vec![cat])?;
            let m = g.add("max0", Op::Reduce { kind: ReduceKind::Max, axes: vec![0], keepdims: false }, vec![s2])?;
            Ok(vec![cat, parts[0], r, parts[2], s1, s2, m])
        })
    };
    check(graph, BATCHES_AXIS0, 0.0, 1);

    let graph = |n: usize| {
        build("axis0_transpose_reshape", |g| {
            let x = g.input("x", &[n, 3, 4, 5]);
            let t = g.add("t1023", Op::Transpose { perm: vec![1, 0, 2, 3] }, vec![x])?;
            let t2 = g.add("t3120", Op::Transpose { perm: vec![3, 1, 2, 0] }, vec![x])?;
            let t2 = g.unary("relu", t2, Activation::Relu)?;
            // The batch merged into the rows of a matrix product, and of a Gemm.
            let r = g.reshape("merge", x, &[n * 3, 20])?;
            let w = g.constant("w", b2.clone());
            let mm = g.matmul("mm", r, w)?;
            let f = g.flatten("flat2", x, 2)?; // [n * 3, 20]
            let gm = g.gemm("gemm", f, w, None, GemmAttrs { alpha: 0.5, ..Default::default() })?;
            // The transposed tensor split back per sample by a reshape after the transpose.
            let back = g.reshape("back", t, &[3, n * 20])?;
            let sm = g.add("sm", Op::Softmax { axis: 1, kind: SoftmaxKind::Softmax }, vec![back])?;
            let u = g.unsqueeze("u0", x, &[0])?; // [1, n, 3, 4, 5]
            let s = g.squeeze("s0", u, &[0])?;
            let s = g.unary("tanh", s, Activation::Tanh)?;
            Ok(vec![t, t2, mm, gm, sm, s])
        })
    };
    check(graph, BATCHES_AXIS0, TOL, 2);

    for (case, mode) in [PadMode::Constant(1.5), PadMode::Reflect, PadMode::Edge, PadMode::Wrap].into_iter().enumerate()
    {
        let graph = |n: usize| {
            build(&format!("axis0_pad{case}"), |g| {
                let x = g.input("x", &[n, 3, 4]);
                Ok(vec![g.add("pad0", Op::Pad { pads: vec![(1, 1), (0, 2), (1, 0)], mode }, vec![x])?])
            })
        };
        check(graph, BATCHES_AXIS0, 0.0, case as u64);
    }
}

#[test]
fn pad_constant_reflect_edge_wrap() {
    for (case, mode) in
        [PadMode::Constant(0.0), PadMode::Constant(-2.5), PadMode::Reflect, PadMode::Edge, PadMode::Wrap]
            .into_iter()
            .enumerate()
    {
        let graph = |n: usize| {
            build(&format!("pad{case}"), |g| {
                let x = g.input("x", &[n, 3, 5, 4]);
                Ok(vec![g.add("pad", Op::Pad { pads: vec![(0, 0), (1, 0), (2, 3), (0, 2)], mode }, vec![x])?])
            })
        };
        check(graph, BATCHES, 0.0, case as u64);
    }
}

#[test]
fn expand_broadcasts_to_a_shape() {
    let graph = |n: usize| {
        build("expand", |g| {
            let a = g.input("a", &[n, 1, 5]);
            let b = g.input("b", &[n, 3, 1]);
            let c = g.input("c", &[1, 3, 4]);
            let k = floats(g, "k", vec![3, 1], vec![1.0, -2.0, 3.5]);
            let ea = g.add("ea", Op::Expand { shape: vec![n, 4, 5] }, vec![a])?;
            let eb = g.add("eb", Op::Expand { shape: vec![2, n, 3, 4] }, vec![b])?;
            let ec = g.add("ec", Op::Expand { shape: vec![n, 3, 4] }, vec![c])?; // over the batch
            let ek = g.add("ek", Op::Expand { shape: vec![n, 3, 2] }, vec![k])?;
            let ek = g.unary("neg", ek, Activation::Neg)?;
            Ok(vec![ea, eb, ec, ek])
        })
    };
    check(graph, BATCHES_AXIS0, 0.0, 3);
}

#[test]
fn reduce_mean_over_axis_sets() {
    for (case, (axes, keepdims)) in [
        (vec![2, 3], true),
        (vec![3], false),
        (vec![1], true),
        (vec![1, 3], false),
        (vec![2], false),
        (vec![0], false),
        (vec![0, 2], true),
        (vec![0, 1, 2, 3], false),
    ]
    .into_iter()
    .enumerate()
    {
        let op = Op::Reduce { kind: ReduceKind::Mean, axes, keepdims };
        let graph = |n: usize| {
            build(&format!("reduce{case}"), |g| {
                let x = g.input("x", &[n, 4, 6, 7]);
                Ok(vec![g.add("mean", op.clone(), vec![x])?])
            })
        };
        check(graph, BATCHES, TOL, case as u64);
    }
}

#[test]
fn every_reduce_kind_over_axis_sets() {
    use ReduceKind::*;
    let axis_sets: [(&[usize], bool); 4] = [(&[0], false), (&[1, 3], true), (&[2], false), (&[0, 2, 3], true)];
    for kind in [Mean, Sum, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare] {
        let graph = |n: usize| {
            build(&format!("reduce_{}", kind.name()), |g| {
                let x = g.input("x", &[n, 4, 5, 3]);
                // The log of a sum needs positive sums: exp of the inputs.
                let x = if kind == LogSum { g.unary("exp", x, Activation::Exp)? } else { x };
                axis_sets
                    .iter()
                    .enumerate()
                    .map(|(i, &(axes, keepdims))| {
                        let op = Op::Reduce { kind, axes: axes.to_vec(), keepdims };
                        g.add(&format!("r{i}"), op, vec![x])
                    })
                    .collect()
            })
        };
        check(graph, BATCHES, TOL, kind.code() as u64);
    }
    // Integer reductions are exact (inputs -1..=1).
    for kind in [Sum, Max, Min, Prod, L1, SumSquare, Mean] {
        let graph = |n: usize| {
            build(&format!("reduce_int_{}", kind.name()), |g| {
                let x = g.input_typed("x", DType::I64, &[n, 4, 5]);
                let one = int64s(g, "one", vec![1], vec![1]);
                let x = g.binary("shift", BinaryOp::Sub, x, one)?;
                let r1 = g.add("r1", Op::Reduce { kind, axes: vec![1], keepdims: false }, vec![x])?;
                let r2 = g.add("r02", Op::Reduce { kind, axes: vec![0, 2], keepdims: true }, vec![x])?;
                Ok(vec![r1, r2])
            })
        };
        check(graph, BATCHES, 0.0, kind.code() as u64);
    }
}

#[test]
fn lrn_across_channels() {
    for (case, size) in [1, 2, 3, 5].into_iter().enumerate() {
        let graph = |n: usize| {
            build(&format!("lrn{case}"), |g| {
                let x = g.input("x", &[n, 7, 4, 3]);
                let attrs = LrnAttrs { size, alpha: 1e-2, beta: 0.75, bias: 1.0 };
                Ok(vec![g.add("lrn", Op::Lrn(attrs), vec![x])?])
            })
        };
        check(graph, BATCHES, TOL, case as u64);
    }
}

#[test]
fn casts_between_floats_integers_and_bools() {
    let graph = |n: usize| {
        build("casts", |g| {
            let x = g.input("x", &[n, 3, 8]);
            let four = floats(g, "four", vec![1], vec![4.0]);
            let xs = g.binary("scale", BinaryOp::Mul, x, four)?; // [-4, 4): truncation both ways
            let i = g.add("to_i64", Op::Cast { to: DType::I64 }, vec![xs])?;
            let f = g.add("to_f32", Op::Cast { to: DType::F32 }, vec![i])?;
            let u8 = g.add("to_u8", Op::Cast { to: DType::U8 }, vec![i])?; // negatives wrap
            let r = g.unary("relu", x, Activation::Relu)?; // exact zeros for half the values
            let b = g.add("to_bool", Op::Cast { to: DType::Bool }, vec![r])?;
            let ib = g.add("i_to_bool", Op::Cast { to: DType::Bool }, vec![i])?;
            let bf = g.add("bool_to_f32", Op::Cast { to: DType::F32 }, vec![b])?;
            let big = floats(g, "big", vec![1], vec![1000.0 / 3.0]);
            let xb = g.binary("spread", BinaryOp::Mul, x, big)?; // needs rounding to fp16
            let h = g.add("to_f16", Op::Cast { to: DType::F16 }, vec![xb])?;
            let hf = g.add("f16_to_f32", Op::Cast { to: DType::F32 }, vec![h])?;
            let d = g.binary("rounding", BinaryOp::Sub, xb, hf)?;
            Ok(vec![i, f, u8, b, ib, bf, h, d])
        })
    };
    check(graph, BATCHES, 0.0, 6);
    // The fp16 values are rounded (to nearest, within half an fp16 ulp) and representable.
    let out = run_gpu(&graph(2), 60);
    let h = &out[6];
    assert_eq!(h.dtype(), DType::F16);
    assert!(h.data().iter().all(|&v| round_f16(v) == v), "values not representable in fp16: {:?}", &h.data()[..8]);
    let d = out[7].data();
    assert!(d.iter().any(|&v| v != 0.0), "no value needed rounding");
    assert!(
        h.data().iter().zip(d).all(|(&v, &e)| e.abs() <= (v.abs() * 2f32.powi(-11)).max(2f32.powi(-25))),
        "rounding error above half an fp16 ulp"
    );
}

#[test]
fn int64_binary_ops() {
    let graph = |n: usize| {
        build("int64_binary", |g| {
            let x = g.input_typed("x", DType::I64, &[n, 4, 5]);
            let y = g.input_typed("y", DType::I64, &[n, 1, 5]);
            let k = int64s(g, "k", vec![5], vec![-7, 3, 11, -2, 5]);
            let o = int64s(g, "o", vec![4, 1], vec![-3, 1, 0, 9]);
            let xk = g.binary("xk", BinaryOp::Mul, x, k)?;
            let a = g.binary("a", BinaryOp::Add, xk, o)?; // -17..=31, both signs
            // Divisors away from 0, both signs.
            let d = int64s(g, "d", vec![5], vec![3, -2, 5, -7, 4]);
            Ok(vec![
                a,
                g.binary("add", BinaryOp::Add, a, y)?,
                g.binary("sub", BinaryOp::Sub, a, y)?,
                g.binary("mul", BinaryOp::Mul, a, y)?,
                g.binary("div", BinaryOp::Div, a, d)?,
                g.binary("mod", BinaryOp::Mod { fmod: false }, a, d)?,
                g.binary("fmod", BinaryOp::Mod { fmod: true }, a, d)?,
                g.binary("max", BinaryOp::Max, a, y)?,
                g.binary("min", BinaryOp::Min, a, y)?,
                g.unary("abs", a, Activation::Abs)?,
                g.unary("neg", a, Activation::Neg)?,
            ])
        })
    };
    check(graph, BATCHES, 0.0, 7);
}

#[test]
fn comparisons_give_bools_and_logic_on_them() {
    let graph = |n: usize| {
        build("compare", |g| {
            let x = g.input("x", &[n, 3, 4]);
            let y = g.input("y", &[n, 1, 4]);
            let i = g.input_typed("i", DType::I64, &[n, 3, 4]);
            let j = int64s(g, "j", vec![3, 1], vec![0, 1, 2]);
            let lt = g.binary("lt", BinaryOp::Less, x, y)?;
            let le = g.binary("le", BinaryOp::LessOrEqual, x, y)?;
            let gt = g.binary("gt", BinaryOp::Greater, x, y)?;
            let ge = g.binary("ge", BinaryOp::GreaterOrEqual, x, y)?;
            let r = g.unary("relu", x, Activation::Relu)?;
            let eq = g.binary("eq", BinaryOp::Equal, x, r)?; // true where x >= 0
            let eqi = g.binary("eq_i", BinaryOp::Equal, i, j)?; // ties are frequent
            let lti = g.binary("lt_i", BinaryOp::Less, i, j)?;
            let gei = g.binary("ge_i", BinaryOp::GreaterOrEqual, i, j)?;
            let and = g.binary("and", BinaryOp::And, lt, eq)?;
            let or = g.binary("or", BinaryOp::Or, gt, eqi)?;
            let xor = g.binary("xor", BinaryOp::Xor, lti, eq)?;
            let eqb = g.binary("eq_b", BinaryOp::Equal, lt, eq)?;
            let not = g.add("not", Op::Not, vec![and])?;
            Ok(vec![lt, le, gt, ge, eq, eqi, lti, gei, and, or, xor, eqb, not])
        })
    };
    check(graph, BATCHES, 0.0, 8);
    assert_eq!(graph(1).value(graph(1).outputs()[0]).dtype, DType::Bool);
}

#[test]
fn where_selects_with_a_bool_condition() {
    let graph = |n: usize| {
        build("where", |g| {
            let c = g.input_typed("c", DType::Bool, &[n, 1, 5]);
            let x = g.input("x", &[n, 4, 5]);
            let y = floats(g, "y", vec![5], vec![9.0, -9.0, 0.5, 0.0, 3.0]);
            let w1 = g.add("where", Op::Where, vec![c, x, y])?;
            let zero = floats(g, "zero", vec![1], vec![0.0]);
            let pos = g.binary("pos", BinaryOp::Greater, x, zero)?;
            let neg = g.unary("neg", x, Activation::Neg)?;
            let abs = g.add("abs", Op::Where, vec![pos, x, neg])?;
            let i = g.input_typed("i", DType::I64, &[n, 4, 5]);
            let k = int64s(g, "k", vec![1], vec![-9]);
            let wi = g.add("where_i", Op::Where, vec![c, i, k])?;
            Ok(vec![w1, abs, wi])
        })
    };
    check(graph, BATCHES, 0.0, 9);
}

#[test]
fn gather_with_computed_and_constant_indices() {
    let mut rng = Rng::new(25);
    let table = weights(vec![6, 4], &mut rng);
    let graph = |n: usize| {
        build("gather", |g| {
            let data = g.input("data", &[n, 5, 6]);
            let idx = g.input_typed("idx", DType::I64, &[2, 3]); // 0..=2
            let one = int64s(g, "one", vec![1], vec![1]);
            let idx = g.binary("idx_shift", BinaryOp::Sub, idx, one)?; // -1..=1 (from the end)
            let g1 = g.add("gather1", Op::Gather { axis: 1 }, vec![data, idx])?; // [n, 2, 3, 6]
            let g0 = g.add("gather0", Op::Gather { axis: 0 }, vec![data, idx])?; // [2, 3, 5, 6]
            let am = g.add("argmax", Op::ArgReduce { max: true, axis: 2, keepdims: false, last: false }, vec![data])?;
            let t = g.constant("table", table.clone());
            let gt = g.add("lookup", Op::Gather { axis: 0 }, vec![t, am])?; // [n, 5, 4]
            let k = int64s(g, "k", vec![4], vec![5, -6, 0, 2]);
            let g2 = g.add("gather_const", Op::Gather { axis: 2 }, vec![data, k])?;
            Ok(vec![g1, g0, gt, g2])
        })
    };
    check(graph, BATCHES_AXIS0, 0.0, 10);
}

#[test]
fn arg_max_and_arg_min_give_int64() {
    let graph = |n: usize| {
        build("argreduce", |g| {
            let x = g.input("x", &[n, 4, 5]);
            let i = g.input_typed("i", DType::I64, &[n, 4, 5]); // 0..=2: many ties
            let arg = |max, axis, keepdims, last| Op::ArgReduce { max, axis, keepdims, last };
            Ok(vec![
                g.add("argmax1", arg(true, 1, true, false), vec![x])?,
                g.add("argmin2", arg(false, 2, false, false), vec![x])?,
                g.add("argmax0", arg(true, 0, false, false), vec![x])?,
                g.add("argmax_first", arg(true, 2, false, false), vec![i])?,
                g.add("argmax_last", arg(true, 2, false, true), vec![i])?,
                g.add("argmin_last", arg(false, 1, true, true), vec![i])?,
            ])
        })
    };
    let g1 = graph(1);
    assert!(g1.outputs().iter().all(|&o| g1.value(o).dtype == DType::I64));
    check(graph, BATCHES, 0.0, 11);
}

#[test]
fn not_is_nan_is_inf() {
    let graph = |n: usize| {
        build("classify", |g| {
            let x = g.input("x", &[n, 3, 5]);
            let s = g.unary("sqrt", x, Activation::Sqrt)?; // NaN for negative inputs
            let nan = g.add("isnan", Op::IsNaN, vec![s])?;
            let not = g.add("not", Op::Not, vec![nan])?;
            let r = g.unary("relu", x, Activation::Relu)?;
            let inv = g.unary("inv", r, Activation::Reciprocal)?; // +inf where x <= 0
            let ninv = g.unary("neg", inv, Activation::Neg)?;
            Ok(vec![
                nan,
                not,
                g.add("isinf_pos", Op::IsInf { pos: true, neg: false }, vec![inv])?,
                g.add("isinf_neg", Op::IsInf { pos: false, neg: true }, vec![ninv])?,
                g.add("isinf_pos_on_neg", Op::IsInf { pos: true, neg: false }, vec![ninv])?,
                g.add("isinf_any", Op::IsInf { pos: true, neg: true }, vec![ninv])?,
                s,
            ])
        })
    };
    check(graph, BATCHES, 0.0, 12);
    // Both classes occur (the check is not vacuous).
    let out = run_gpu(&graph(1), 13);
    let nan = out[0].to_bools();
    assert!(nan.iter().any(|&b| b) && nan.iter().any(|&b| !b), "{nan:?}");
}

#[test]
fn float16_graph_conv_and_binary() {
    let mut rng = Rng::new(26);
    let w = weights(vec![4, 3, 3, 3], &mut rng).cast(DType::F16);
    let b = weights(vec![4], &mut rng).cast(DType::F16);
    let s = Tensor::random(vec![4, 1, 1], &mut rng, 0.5, 2.0).cast(DType::F16);
    let graph = |n: usize| {
        build("f16", |g| {
            let x = g.input_typed("x", DType::F16, &[n, 3, 6, 6]);
            let z = g.input_typed("z", DType::F16, &[n, 4, 1, 1]);
            let w = g.constant("w", w.clone());
            let b = g.constant("b", b.clone());
            let attrs = ConvAttrs { pads: vec![1; 4], activation: Some(Activation::Relu), ..Default::default() };
            let y = g.conv("conv", x, w, Some(b), attrs)?;
            let y = g.binary("add", BinaryOp::Add, y, z)?;
            let s = g.constant("s", s.clone());
            let y = g.binary("mul", BinaryOp::Mul, y, s)?;
            let p = g.global_pool("gap", y, PoolKind::Average)?;
            Ok(vec![y, p])
        })
    };
    check(graph, BATCHES, TOL_F16, 14);
    let out = run_gpu(&graph(1), 15);
    for o in &out {
        assert_eq!(o.dtype(), DType::F16);
        assert!(o.data().iter().all(|&v| round_f16(v) == v), "outputs are rounded to fp16");
    }
}
