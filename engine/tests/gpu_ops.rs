//! Every operation on the GPU against the CPU reference, over random shapes (odd sizes
//! included), batch 1 and batch 3, and every attribute variant.
//!
//! Tolerance: the largest absolute error relative to max(1, largest |reference value|) must
//! stay below `TOL` = 1e-4 (f32 accumulation in a different order, and the erf approximation
//! of GELU with absolute error < 1.5e-7).

mod common;

use common::check;
use poolpipe_engine::*;

const TOL: f32 = 1e-4;
const BATCHES: &[usize] = &[1, 3];

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

fn weights(g: &mut GraphBuilder, name: &str, shape: Vec<usize>, rng: &mut Rng) -> ValueId {
    g.constant(name, Tensor::random(shape, rng, -0.5, 0.5))
}

fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
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
        let mut g = GraphBuilder::new(&format!("conv{case}"));
        let x = g.input("x", &[c, h, w]);
        let wt = weights(&mut g, "w", vec![m, c / groups, kh, kw], &mut rng);
        let b = rng.coin().then(|| weights(&mut g, "b", vec![m], &mut rng));
        let activation = rand_act(&mut rng);
        let attrs = ConvAttrs { stride, pads, dilation, groups, activation };
        let y = g.conv("conv", x, wt, b, attrs).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case);
    }
}

#[test]
fn conv1x1_pointwise_path() {
    let mut rng = Rng::new(12);
    for (case, (c, m, h, w)) in [(8, 12, 4, 4), (3, 5, 2, 6), (16, 7, 8, 2)].into_iter().enumerate() {
        let mut g = GraphBuilder::new(&format!("pw{case}"));
        let x = g.input("x", &[c, h, w]);
        let wt = weights(&mut g, "w", vec![m, c, 1, 1], &mut rng);
        let b = weights(&mut g, "b", vec![m], &mut rng);
        let y = g
            .conv("pw", x, wt, Some(b), ConvAttrs { activation: Some(Activation::Relu), ..Default::default() })
            .unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case as u64);
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
        let mut g = GraphBuilder::new(&format!("dw{case}"));
        let x = g.input("x", &[c, h, w]);
        let wt = weights(&mut g, "w", vec![c * mult, 1, k, k], &mut rng);
        let b = weights(&mut g, "b", vec![c * mult], &mut rng);
        let attrs = ConvAttrs {
            stride: [stride, stride],
            pads: [p, p, rng.range(0, p), p],
            dilation: [d, d],
            groups: c,
            activation: rand_act(&mut rng),
        };
        let y = g.conv("dw", x, wt, Some(b), attrs).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case);
    }
}

#[test]
fn conv_transpose_strides_pads_output_padding_groups() {
    let mut rng = Rng::new(14);
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
        let mut g = GraphBuilder::new(&format!("convT{case}"));
        let x = g.input("x", &[c, h, w]);
        let wt = weights(&mut g, "w", vec![c, m / groups, kh, kw], &mut rng);
        let b = rng.coin().then(|| weights(&mut g, "b", vec![m], &mut rng));
        let attrs =
            ConvTransposeAttrs { stride, pads, dilation, output_padding, groups, activation: rand_act(&mut rng) };
        let Ok(y) = g.conv_transpose("convT", x, wt, b, attrs) else { continue };
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case);
    }
}

#[test]
fn gemm_with_transposes_alpha_beta_and_bias_shapes() {
    let mut rng = Rng::new(15);
    for case in 0..10 {
        let (k, n) = (rng.range(1, 40), rng.range(1, 21));
        let trans_b = rng.coin();
        let mut g = GraphBuilder::new(&format!("gemm{case}"));
        let x = g.input("x", &[k]);
        let bshape = if trans_b { vec![n, k] } else { vec![k, n] };
        let bw = weights(&mut g, "b", bshape, &mut rng);
        let c = match case % 4 {
            0 => None,
            1 => Some(weights(&mut g, "c", vec![n], &mut rng)),
            2 => Some(weights(&mut g, "c", vec![1, n], &mut rng)),
            _ => Some(weights(&mut g, "c", vec![1], &mut rng)),
        };
        let attrs = GemmAttrs {
            alpha: rng.uniform(0.5, 2.0),
            beta: rng.uniform(0.5, 2.0),
            trans_a: false,
            trans_b,
            activation: rand_act(&mut rng),
        };
        let y = g.gemm("fc", x, bw, c, attrs).unwrap();
        g.output(y);
        check(&g.build().unwrap(), &[1, 3, 4], TOL, case);
    }
}

#[test]
fn gemm_with_batched_c() {
    let mut rng = Rng::new(16);
    let mut g = GraphBuilder::new("gemm_c_act");
    let x = g.input("x", &[9]);
    let r = g.input("r", &[5]);
    let bw = weights(&mut g, "b", vec![9, 5], &mut rng);
    let y = g.gemm("fc", x, bw, Some(r), GemmAttrs::default()).unwrap();
    g.output(y);
    check(&g.build().unwrap(), BATCHES, TOL, 1);
}

#[test]
fn matmul_batched_broadcast_and_constant_operands() {
    let mut rng = Rng::new(17);
    // (A per-sample dims, B dims, B constant?)
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
        let mut g = GraphBuilder::new(&format!("matmul{case}"));
        let a = g.input("a", &ad);
        let b = if bconst { weights(&mut g, "b", bd, &mut rng) } else { g.input("b", &bd) };
        let y = g.matmul("mm", a, b).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case as u64);
    }
}

#[test]
fn matmul_fused_activation_after_optimize() {
    let mut rng = Rng::new(18);
    let mut g = GraphBuilder::new("mm_act");
    let a = g.input("a", &[6, 10]);
    let b = weights(&mut g, "b", vec![10, 7], &mut rng);
    let y = g.matmul("mm", a, b).unwrap();
    let y = g.unary("gelu", y, Activation::Gelu { tanh_approx: false }).unwrap();
    g.output(y);
    let graph = g.build().unwrap();
    assert_eq!(optimize(&graph).unwrap().nodes().len(), 1, "GELU fuses into the matmul");
    check(&graph, BATCHES, TOL, 3);
}

#[test]
fn pooling_max_average_ceil_mode_count_include_pad_dilation() {
    let mut rng = Rng::new(19);
    for case in 0..30 {
        let kind = if rng.coin() { PoolKind::Max } else { PoolKind::Average };
        let k = [rng.range(1, 4), rng.range(1, 4)];
        let stride = [rng.range(1, 3), rng.range(1, 3)];
        let dilation = if kind == PoolKind::Max { [rng.range(1, 2), rng.range(1, 2)] } else { [1, 1] };
        // At most half the dilated window (a window never lies wholly in the padding).
        let half = |i: usize| (dilation[i] * (k[i] - 1)).div_ceil(2);
        let pads = [rng.range(0, half(0)), rng.range(0, half(1)), rng.range(0, half(0)), rng.range(0, half(1))];
        let (c, h, w) = (rng.range(1, 4), rng.range(k[0] * dilation[0], 11), rng.range(k[1] * dilation[1], 11));
        let attrs =
            PoolAttrs { kind, kernel: k, stride, pads, dilation, ceil_mode: rng.coin(), count_include_pad: rng.coin() };
        let mut g = GraphBuilder::new(&format!("pool{case}"));
        let x = g.input("x", &[c, h, w]);
        let y = g.pool("pool", x, attrs).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case);
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
        let mut g = GraphBuilder::new(&format!("gpool{case}"));
        let x = g.input("x", &dims);
        let y = g.global_pool("gp", x, kind).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case as u64);
    }
}

#[test]
fn elementwise_binary_with_broadcasting() {
    let mut rng = Rng::new(20);
    // (a per-sample dims or constant, b ...): (dims, is_const)
    // ((dims, constant?), (dims, constant?))
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
            let mut g = GraphBuilder::new(&format!("bin{case}{op:?}"));
            let mk = |g: &mut GraphBuilder, n: &str, d: &[usize], c: bool, rng: &mut Rng| {
                if c { g.constant(n, Tensor::random(d.to_vec(), rng, 0.5, 1.5)) } else { g.input(n, d) }
            };
            let a = mk(&mut g, "a", &ad, ac, &mut rng);
            let b = mk(&mut g, "b", &bd, bc, &mut rng);
            // Division by inputs near 0 is ill-conditioned: divide by constants only.
            if op == BinaryOp::Div && !bc {
                continue;
            }
            let y = g.binary("op", op, a, b).unwrap();
            g.output(y);
            check(&g.build().unwrap(), BATCHES, TOL, case as u64);
        }
    }
}

#[test]
fn binary_with_fused_activation() {
    for (case, act) in
        [Activation::Relu, Activation::HardSwish, Activation::Clip { min: -0.5, max: 0.5 }].into_iter().enumerate()
    {
        let mut g = GraphBuilder::new(&format!("add_act{case}"));
        let a = g.input("a", &[4, 5, 6]);
        let b = g.input("b", &[4, 1, 6]);
        let s = g.binary("add", BinaryOp::Add, a, b).unwrap();
        let y = g.unary("act", s, act).unwrap();
        g.output(y);
        let graph = g.build().unwrap();
        assert_eq!(optimize(&graph).unwrap().nodes().len(), 1, "the activation fuses into the add");
        check(&graph, BATCHES, TOL, case as u64);
    }
}

#[test]
fn every_activation_standalone() {
    let acts = [
        Activation::Relu,
        Activation::LeakyRelu { alpha: 0.01 },
        Activation::Clip { min: -0.3, max: 0.6 },
        Activation::Clip { min: 0.0, max: 6.0 },
        Activation::Sigmoid,
        Activation::HardSigmoid { alpha: 0.2, beta: 0.5 },
        Activation::HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 },
        Activation::HardSwish,
        Activation::Silu,
        Activation::Gelu { tanh_approx: false },
        Activation::Gelu { tanh_approx: true },
        Activation::Tanh,
        Activation::Erf,
    ];
    for (case, act) in acts.into_iter().enumerate() {
        let mut g = GraphBuilder::new(&format!("act{case}"));
        let x = g.input("x", &[3, 7, 5]);
        let s = g.constant("s", Tensor::new(vec![1], vec![8.0]).unwrap());
        let xs = g.binary("scale", BinaryOp::Mul, x, s).unwrap(); // inputs over [-8, 8]
        let y = g.unary("act", xs, act).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case as u64);
    }
}

#[test]
fn softmax_on_every_axis() {
    for axis in 1..4 {
        let mut g = GraphBuilder::new(&format!("softmax{axis}"));
        let x = g.input("x", &[5, 3, 70]);
        let y = g.add("sm", Op::Softmax { axis }, vec![x]).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, axis as u64);
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
    ]
    .into_iter()
    .enumerate()
    {
        let mut g = GraphBuilder::new(&format!("ln{case}"));
        let x = g.input("x", &dims);
        let s = g.constant("s", Tensor::random(sshape.clone(), &mut rng, 0.5, 1.5));
        let mut ins = vec![x, s];
        if bias {
            ins.push(g.constant("b", Tensor::random(sshape, &mut rng, -0.5, 0.5)));
        }
        let y = g.add("ln", Op::LayerNorm { axis, epsilon: 1e-5 }, ins).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case as u64);
    }
}

fn batch_norm_params(g: &mut GraphBuilder, c: usize, rng: &mut Rng) -> Vec<ValueId> {
    vec![
        g.constant("scale", Tensor::random(vec![c], rng, 0.5, 1.5)),
        g.constant("bias", Tensor::random(vec![c], rng, -0.5, 0.5)),
        g.constant("mean", Tensor::random(vec![c], rng, -0.5, 0.5)),
        g.constant("var", Tensor::random(vec![c], rng, 0.5, 1.5)),
    ]
}

#[test]
fn batch_norm_as_kernel_and_folded_into_conv() {
    let mut rng = Rng::new(22);
    // Standalone (input is a graph input: nothing to fold into).
    let mut g = GraphBuilder::new("bn_kernel");
    let x = g.input("x", &[5, 6, 7]);
    let mut ins = vec![x];
    ins.extend(batch_norm_params(&mut g, 5, &mut rng));
    let y = g.add("bn", Op::BatchNorm { epsilon: 1e-5 }, ins).unwrap();
    g.output(y);
    let graph = g.build().unwrap();
    assert!(optimize(&graph).unwrap().nodes().iter().any(|n| matches!(n.op, Op::BatchNorm { .. })));
    check(&graph, BATCHES, TOL, 1);

    // Conv -> BN -> ReLU folds into one conv node; same for ConvTranspose.
    for transposed in [false, true] {
        let mut g = GraphBuilder::new(&format!("bn_fold_{transposed}"));
        let x = g.input("x", &[4, 6, 6]);
        let y = if transposed {
            let w = weights(&mut g, "w", vec![4, 3, 3, 3], &mut rng);
            g.conv_transpose(
                "convT",
                x,
                w,
                None,
                ConvTransposeAttrs { stride: [2, 2], groups: 1, ..Default::default() },
            )
            .unwrap()
        } else {
            let w = weights(&mut g, "w", vec![6, 2, 3, 3], &mut rng);
            let b = weights(&mut g, "b", vec![6], &mut rng);
            g.conv("conv", x, w, Some(b), ConvAttrs { groups: 2, pads: [1; 4], ..Default::default() }).unwrap()
        };
        let c = if transposed { 3 } else { 6 };
        let mut ins = vec![y];
        ins.extend(batch_norm_params(&mut g, c, &mut rng));
        let y = g.add("bn", Op::BatchNorm { epsilon: 1e-3 }, ins).unwrap();
        let y = g.unary("relu", y, Activation::Relu).unwrap();
        g.output(y);
        let graph = g.build().unwrap();
        let opt = optimize(&graph).unwrap();
        assert_eq!(opt.nodes().len(), 1, "conv + bn + relu become one node");
        check(&graph, BATCHES, TOL, 2);
    }
}

#[test]
fn concat_split_slice_transpose_reshape_family() {
    // concat on each axis
    for axis in 1..4 {
        let mut g = GraphBuilder::new(&format!("concat{axis}"));
        let a = g.input("a", &[3, 4, 5]);
        let mut d = vec![3, 4, 5];
        d[axis - 1] = 2;
        let b = g.input("b", &d);
        let y = g.add("cat", Op::Concat { axis }, vec![a, b, a]).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, 0.0, axis as u64);
    }
    // split into three on axis 2, outputs consumed by a relu each
    let mut g = GraphBuilder::new("split");
    let x = g.input("x", &[4, 9, 3]);
    let parts = g.add_multi("split", Op::Split { axis: 2, sizes: vec![2, 4, 3] }, vec![x]).unwrap();
    for (i, p) in parts.iter().enumerate() {
        let r = g.unary(&format!("relu{i}"), *p, Activation::Relu).unwrap();
        g.output(r);
    }
    check(&g.build().unwrap(), BATCHES, 0.0, 5);
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
        let mut g = GraphBuilder::new(&format!("slice{case}"));
        let x = g.input("x", &[5, 8, 6]);
        let y = g.add("slice", Op::Slice { axes, starts, ends, steps }, vec![x]).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, 0.0, case as u64);
    }
    // transpose, then reshape/flatten/squeeze/unsqueeze (views) feeding kernels
    let mut g = GraphBuilder::new("transpose_views");
    let x = g.input("x", &[2, 3, 4, 5]);
    let t = g.add("t", Op::Transpose { perm: vec![0, 3, 1, 4, 2] }, vec![x]).unwrap();
    let r = g.reshape("r", t, &[4, 6, 5]).unwrap();
    let u = g.unsqueeze("u", r, &[1]).unwrap();
    let s = g.squeeze("s", u, &[1]).unwrap();
    let f = g.flatten("f", s, 1).unwrap();
    let y = g.unary("relu", f, Activation::Relu).unwrap();
    g.output(y);
    g.output(t);
    check(&g.build().unwrap(), BATCHES, 0.0, 9);
}

#[test]
fn pad_constant_reflect_edge() {
    for (case, mode) in
        [PadMode::Constant(0.0), PadMode::Constant(-2.5), PadMode::Reflect, PadMode::Edge].into_iter().enumerate()
    {
        let mut g = GraphBuilder::new(&format!("pad{case}"));
        let x = g.input("x", &[3, 5, 4]);
        let y = g.add("pad", Op::Pad { pads: vec![(0, 0), (1, 0), (2, 3), (0, 2)], mode }, vec![x]).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, 0.0, case as u64);
    }
}

#[test]
fn resize_nearest_and_bilinear_every_coordinate_mode() {
    let coords = [CoordMode::HalfPixel, CoordMode::PytorchHalfPixel, CoordMode::AlignCorners, CoordMode::Asymmetric];
    let nearest = [NearestMode::RoundPreferFloor, NearestMode::RoundPreferCeil, NearestMode::Floor, NearestMode::Ceil];
    let mut case = 0u64;
    for (in_hw, out_hw) in [([4, 5], [8, 10]), ([7, 3], [3, 7]), ([5, 5], [1, 9])] {
        let scales = [out_hw[0] as f32 / in_hw[0] as f32, out_hw[1] as f32 / in_hw[1] as f32];
        let mut modes: Vec<(ResizeMode, CoordMode)> = coords.iter().map(|&c| (ResizeMode::Linear, c)).collect();
        for (i, &nm) in nearest.iter().enumerate() {
            modes.push((ResizeMode::Nearest(nm), coords[i]));
        }
        modes.push((ResizeMode::Nearest(NearestMode::RoundPreferFloor), CoordMode::TfHalfPixelForNn));
        for (mode, coord) in modes {
            case += 1;
            let mut g = GraphBuilder::new(&format!("resize{case}"));
            let x = g.input("x", &[2, in_hw[0], in_hw[1]]);
            let y = g.add("resize", Op::Resize(ResizeAttrs { mode, coord, out_hw, scales }), vec![x]).unwrap();
            g.output(y);
            check(&g.build().unwrap(), BATCHES, TOL, case);
        }
    }
}

#[test]
fn reduce_mean_over_axis_sets() {
    for (case, (axes, keepdims)) in
        [(vec![2, 3], true), (vec![3], false), (vec![1], true), (vec![1, 3], false), (vec![2], false)]
            .into_iter()
            .enumerate()
    {
        let mut g = GraphBuilder::new(&format!("reduce{case}"));
        let x = g.input("x", &[4, 6, 7]);
        let y = g.add("mean", Op::ReduceMean { axes, keepdims }, vec![x]).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case as u64);
    }
}

#[test]
fn lrn_across_channels() {
    for (case, size) in [1, 2, 3, 5].into_iter().enumerate() {
        let mut g = GraphBuilder::new(&format!("lrn{case}"));
        let x = g.input("x", &[7, 4, 3]);
        let y = g.add("lrn", Op::Lrn(LrnAttrs { size, alpha: 1e-2, beta: 0.75, bias: 1.0 }), vec![x]).unwrap();
        g.output(y);
        check(&g.build().unwrap(), BATCHES, TOL, case as u64);
    }
}
