//! Quantisation and low-precision element types on the GPU against the CPU reference:
//! QuantizeLinear to every target type (per tensor, per axis, blocked; saturating or not;
//! scales and zero points constant or computed), DequantizeLinear of computed values and of
//! constants packed several to a word, DynamicQuantizeLinear, casts of the float8, float4,
//! 4-bit and 2-bit types, BitCast, and a QDQ convolution block whose int8 weights stay int8
//! on the device. Integer results must be exact.

use super::*;

/// Every type QuantizeLinear produces.
const TARGETS: [DType; 13] = [
    DType::I8,
    DType::U8,
    DType::I16,
    DType::U16,
    DType::I4,
    DType::U4,
    DType::I2,
    DType::U2,
    DType::F8E4M3FN,
    DType::F8E4M3FNUZ,
    DType::F8E5M2,
    DType::F8E5M2FNUZ,
    DType::F4E2M1,
];

/// A constant of type `d` with random values of the type (integers over their range, floats
/// in [-lo, hi) rounded to the type).
fn random_of(d: DType, shape: Vec<usize>, rng: &mut Rng, lo: f32, hi: f32) -> Tensor {
    if d.is_int() {
        let (a, b) = d.int_range();
        return Tensor::random_of(d, shape, rng, a.max(-1000) as f32, b.min(1000) as f32);
    }
    Tensor::random_of(d, shape, rng, lo, hi)
}

/// Scale of a granularity: per tensor (`[]`), per axis 1 of `x` (`[x[1]]`) or blocked along
/// axis 1 (x's shape with ceil(x[1] / block) there); positive values.
fn scale_shape(x: &[usize], kind: usize, block: usize) -> Vec<usize> {
    match kind {
        0 => vec![],
        1 => vec![x[1]],
        _ => {
            let mut s = x.to_vec();
            s[1] = x[1].div_ceil(block);
            s
        }
    }
}

#[test]
fn quantize_and_dequantize_every_target_and_granularity() {
    let mut rng = Rng::new(71);
    let mut case = 0;
    for &to in &TARGETS {
        for kind in 0..3 {
            let block = rng.range(2, 3);
            let saturate = !(to.is_float() && kind == 1);
            let with_zp = to.is_int() && kind != 2 || rng.coin();
            let spread = if to.is_float() { 600.0 } else { 2.0 * to.int_range().1.max(4) as f32 };
            let (c, w) = (rng.range(3, 6), rng.range(3, 9));
            let xs = [1, c, w];
            let sshape = scale_shape(&xs, kind, block);
            let scale = Tensor::random(sshape.clone(), &mut rng, 0.5, 2.0);
            let zp = with_zp.then(|| random_of(to, sshape.clone(), &mut rng, -2.0, 2.0));
            let qa = QuantizeAttrs {
                axis: 1,
                block_size: if kind == 2 { block } else { 0 },
                to,
                saturate,
                precision: DType::F32,
            };
            let da = DequantizeAttrs { axis: 1, block_size: qa.block_size, to: DType::F32 };
            let graph = |n: usize| {
                build(&format!("quantize_{to}_{kind}"), |g| {
                    let x = g.input("x", &[n, c, w]);
                    let f = floats(g, "spread", vec![1], vec![spread]);
                    let xs = g.binary("spread", BinaryOp::Mul, x, f)?;
                    let s = g.constant("scale", scale.clone());
                    let mut ins = vec![xs, s];
                    ins.extend(zp.clone().map(|z| g.constant("zp", z)));
                    // Blocked scales need x's batch: per-sample scales repeat over it.
                    let q = if kind == 2 && n > 1 {
                        let mut s3 = sshape.clone();
                        s3[0] = n;
                        let e = g.add("expand_s", Op::Expand { shape: s3.clone() }, vec![ins[1]])?;
                        ins[1] = e;
                        if ins.len() == 3 {
                            ins[2] = g.add("expand_z", Op::Expand { shape: s3 }, vec![ins[2]])?;
                        }
                        g.add("q", Op::QuantizeLinear(qa.clone()), ins.clone())?
                    } else {
                        g.add("q", Op::QuantizeLinear(qa.clone()), ins.clone())?
                    };
                    let mut dins = vec![q, ins[1]];
                    dins.extend(ins.get(2).copied());
                    let d = g.add("dq", Op::DequantizeLinear(da.clone()), dins)?;
                    Ok(vec![q, d])
                })
            };
            check(graph, BATCHES, 0.0, case);
            case += 1;
        }
    }
}

#[test]
fn quantize_in_float16_precision_and_with_float16_scales() {
    for (case, precision) in [DType::F16, DType::BF16, DType::F32].into_iter().enumerate() {
        let graph = |n: usize| {
            build("quantize_precision", |g| {
                let x = g.input("x", &[n, 3, 17]);
                let f = floats(g, "spread", vec![1], vec![300.0]);
                let xs = g.binary("spread", BinaryOp::Mul, x, f)?;
                let s = g.constant("scale", Tensor::from_f32(DType::F16, vec![3], vec![0.7, 1.3, 2.9]).unwrap());
                let qa = QuantizeAttrs { axis: 1, block_size: 0, to: DType::I16, saturate: true, precision };
                let q = g.add("q", Op::QuantizeLinear(qa), vec![xs, s])?;
                let da = DequantizeAttrs { axis: 1, block_size: 0, to: DType::F16 };
                let d = g.add("dq", Op::DequantizeLinear(da), vec![q, s])?;
                Ok(vec![q, d])
            })
        };
        check(graph, BATCHES, 0.0, case as u64);
    }
}

#[test]
fn quantize_with_scales_and_zero_points_computed_from_the_data() {
    for (case, to) in [DType::I8, DType::U8, DType::I4, DType::U16].into_iter().enumerate() {
        let graph = |n: usize| {
            build("quantize_computed", |g| {
                let x = g.input("x", &[n, 5, 7]);
                // Per channel: the largest |x| over the batch and the width, over 100.
                let a = g.unary("abs", x, Activation::Abs)?;
                let r = Op::Reduce { kind: ReduceKind::Max, axes: vec![0, 2], keepdims: false };
                let m = g.add("range", r, vec![a])?;
                let eps = floats(g, "eps", vec![1], vec![0.01]);
                let s = g.binary("scale", BinaryOp::Add, m, eps)?;
                let step = floats(g, "step", vec![1], vec![0.01]);
                let s = g.binary("per_step", BinaryOp::Mul, s, step)?;
                // Zero points from the data too: 3 * the scale's steps, as integers.
                let k = floats(g, "k", vec![1], vec![300.0]);
                let zf = g.binary("zf", BinaryOp::Mul, s, k)?;
                let z = g.add("zp", Op::Cast { to }, vec![zf])?;
                let qa = QuantizeAttrs { axis: 1, block_size: 0, to, saturate: true, precision: DType::F32 };
                let q = g.add("q", Op::QuantizeLinear(qa), vec![x, s, z])?;
                let da = DequantizeAttrs { axis: 1, block_size: 0, to: DType::F32 };
                let d = g.add("dq", Op::DequantizeLinear(da), vec![q, s, z])?;
                // Per tensor, from a computed scalar.
                let all = Op::Reduce { kind: ReduceKind::Max, axes: vec![0, 1, 2], keepdims: false };
                let t = g.add("tensor_range", all, vec![a])?;
                let t = g.binary("tensor_scale", BinaryOp::Add, t, eps)?;
                let qa = QuantizeAttrs { axis: 0, block_size: 0, to: DType::I8, saturate: true, precision: DType::F32 };
                let qt = g.add("qt", Op::QuantizeLinear(qa), vec![x, t])?;
                Ok(vec![q, d, qt])
            })
        };
        check(graph, BATCHES, 0.0, case as u64);
    }
}

#[test]
fn dequantize_constants_packed_in_words() {
    let mut rng = Rng::new(73);
    let types = [
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I4,
        DType::U4,
        DType::I2,
        DType::U2,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::F4E2M1,
        DType::I32,
    ];
    for (case, &d) in types.iter().enumerate() {
        for kind in 0..3 {
            let (c, w) = (rng.range(2, 5), rng.range(3, 11));
            let xs = [3, c, w];
            let block = 2;
            let sshape = scale_shape(&xs, kind, block);
            let x = random_of(d, xs.to_vec(), &mut rng, -6.0, 6.0);
            let scale = Tensor::random(sshape.clone(), &mut rng, 0.1, 2.0);
            let zp = (d != DType::I32 && rng.coin()).then(|| random_of(d, sshape.clone(), &mut rng, -1.0, 1.0));
            let da = DequantizeAttrs { axis: 1, block_size: if kind == 2 { block } else { 0 }, to: DType::F32 };
            let graph = |n: usize| {
                build("dequantize_constant", |g| {
                    let input = g.input("y", &[n, 3, c, w]);
                    let xc = g.constant("x", x.clone());
                    let s = g.constant("scale", scale.clone());
                    let mut ins = vec![xc, s];
                    ins.extend(zp.clone().map(|z| g.constant("zp", z)));
                    let dq = g.add("dq", Op::DequantizeLinear(da.clone()), ins)?;
                    Ok(vec![g.binary("use", BinaryOp::Add, input, dq)?])
                })
            };
            check(graph, BATCHES, 0.0, (case * 3 + kind) as u64);
            // The constant x is held packed: its bytes are those of its bits, not of f32 words.
            let g = graph(1);
            let compiled = device().compile(&g, &gpu::CompileOptions::default()).unwrap();
            let (_, const_bytes) = compiled.memory_bytes();
            let packed = (x.len() * d.bits()).div_ceil(32).max(4) as u64 * 4;
            let words = |t: &Tensor| t.len().max(4) as u64 * 4;
            let others = words(&scale) + zp.as_ref().map_or(16, words);
            assert!(const_bytes <= packed + others, "{d}: {const_bytes} constant bytes, packed x {packed} + {others}");
        }
    }
}

#[test]
fn dequantize_computed_integers_and_floats() {
    for (case, d) in [DType::I8, DType::U8, DType::I4, DType::U2, DType::I32, DType::F8E5M2].into_iter().enumerate() {
        let graph = |n: usize| {
            build("dequantize_computed", |g| {
                let x = g.input("x", &[n, 7, 5]);
                let f = floats(g, "spread", vec![1], vec![100.0]);
                let xs = g.binary("spread", BinaryOp::Mul, x, f)?;
                let q = g.add("to_type", Op::Cast { to: d }, vec![xs])?;
                let s = floats(g, "scale", vec![5], vec![0.5, 1.5, 0.25, 3.0, 1.0]);
                let da = DequantizeAttrs { axis: 2, block_size: 0, to: DType::F32 };
                Ok(vec![g.add("dq", Op::DequantizeLinear(da), vec![q, s])?])
            })
        };
        check(graph, BATCHES, 0.0, case as u64);
    }
}

#[test]
fn dynamic_quantize_linear_over_odd_sizes_and_ranges() {
    // (shape after the batch, factor, shift): mixed signs, all positive, all negative, and
    // a tensor over several reduction chunks.
    let cases: [(&[usize], f32, f32); 4] =
        [(&[3, 5], 3.0, 0.0), (&[7], 2.0, 1.5), (&[2, 9], 1.0, -4.0), (&[37, 61], 10.0, 2.0)];
    for (case, &(dims, factor, shift)) in cases.iter().enumerate() {
        let graph = |n: usize| {
            build("dynamic_quantize", |g| {
                let mut shape = vec![n];
                shape.extend_from_slice(dims);
                let x = g.input("x", &shape);
                let f = floats(g, "factor", vec![1], vec![factor]);
                let xs = g.binary("factor", BinaryOp::Mul, x, f)?;
                let b = floats(g, "shift", vec![1], vec![shift]);
                let xs = g.binary("shift", BinaryOp::Add, xs, b)?;
                g.add_multi("dq", Op::DynamicQuantizeLinear, vec![xs])
            })
        };
        check(graph, BATCHES, 1e-6, case as u64);
    }
}

#[test]
fn casts_of_float8_float4_and_sub_byte_integers() {
    // Special values and the edges of the ranges, next to random ones.
    let specials = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e6,
        -1e6,
        464.0,
        465.0,
        240.0,
        248.0,
        61440.0,
        6.5,
        -7.0,
        1e-9,
        0.124,
    ];
    let k = specials.len();
    let narrow = [DType::F8E4M3FN, DType::F8E4M3FNUZ, DType::F8E5M2, DType::F8E5M2FNUZ, DType::F8E8M0, DType::F4E2M1];
    let ints = [DType::I4, DType::U4, DType::I2, DType::U2];
    let graph = |n: usize| {
        build("narrow_casts", |g| {
            let x = g.input("x", &[n, 3, 9]);
            let small = floats(g, "small", vec![1], vec![10.0]);
            let xi = g.binary("small", BinaryOp::Mul, x, small)?;
            let f = floats(g, "spread", vec![1], vec![500.0]);
            let x = g.binary("spread", BinaryOp::Mul, x, f)?;
            let sp: Vec<f32> = (0..n * 3).flat_map(|_| specials.clone()).collect();
            let sp = floats(g, "specials", vec![n, 3, k], sp);
            let x = g.add("all", Op::Concat { axis: 2 }, vec![x, sp])?;
            let mut outs = vec![];
            for &d in &narrow {
                let y = g.add(&format!("to_{d}"), Op::Cast { to: d }, vec![x])?;
                let back = g.add(&format!("{d}_to_f32"), Op::Cast { to: DType::F32 }, vec![y])?;
                let rounds = [E8m0Round::Up, E8m0Round::Down, E8m0Round::Nearest];
                for (r, round) in rounds.into_iter().enumerate() {
                    if d != DType::F8E8M0 && r > 0 {
                        continue;
                    }
                    let op = Op::CastWith { to: d, saturate: false, round };
                    outs.push(g.add(&format!("to_{d}_nonsat{r}"), op, vec![x])?);
                }
                // float16 to the type, and the type to float16.
                let h = g.add(&format!("{d}_f16"), Op::Cast { to: DType::F16 }, vec![y])?;
                let hx = g.add(&format!("x_f16_{d}"), Op::Cast { to: DType::F16 }, vec![x])?;
                let hy = g.add(&format!("f16_to_{d}"), Op::Cast { to: d }, vec![hx])?;
                outs.extend([y, back, h, hy]);
            }
            let i32s = g.add("to_i32", Op::Cast { to: DType::I32 }, vec![xi])?;
            for &d in &ints {
                // Floats truncate, out of range gives 0; integers wrap.
                let from_f = g.add(&format!("f_to_{d}"), Op::Cast { to: d }, vec![xi])?;
                let from_i = g.add(&format!("i_to_{d}"), Op::Cast { to: d }, vec![i32s])?;
                let back = g.add(&format!("{d}_back"), Op::Cast { to: DType::F32 }, vec![from_i])?;
                let to_f8 = g.add(&format!("{d}_to_f8"), Op::Cast { to: DType::F8E4M3FN }, vec![from_i])?;
                outs.extend([from_f, from_i, back, to_f8]);
            }
            Ok(outs)
        })
    };
    check(graph, BATCHES, 0.0, 7);
}

#[test]
fn narrow_float_results_are_rounded_after_each_operation() {
    // Arithmetic on float8 values is computed in f32 and rounded back (without saturating).
    for (case, d) in [DType::F8E4M3FN, DType::F8E5M2, DType::F4E2M1, DType::F8E8M0].into_iter().enumerate() {
        let graph = |n: usize| {
            build("float8_arithmetic", |g| {
                let x = g.input("x", &[n, 4, 5]);
                let f = floats(g, "spread", vec![1], vec![40.0]);
                let x = g.binary("spread", BinaryOp::Mul, x, f)?;
                let a = g.add("a", Op::Cast { to: d }, vec![x])?;
                let sq = g.binary("square", BinaryOp::Mul, a, a)?;
                let s = g.binary("sum", BinaryOp::Add, sq, a)?;
                Ok(vec![sq, s])
            })
        };
        check(graph, BATCHES, 0.0, case as u64);
    }
}

#[test]
fn bitcast_between_types_of_one_width() {
    // (from, to, factor): values made in `from` by a cast of x * factor.
    let pairs = [
        (DType::F32, DType::I32, 1.0),
        (DType::I32, DType::F32, 3e8),
        (DType::F16, DType::I16, 100.0),
        (DType::I16, DType::F16, 20000.0),
        (DType::BF16, DType::U16, 1000.0),
        (DType::U16, DType::BF16, 30000.0),
        (DType::F8E4M3FN, DType::U8, 300.0),
        (DType::I8, DType::F8E5M2, 120.0),
        (DType::U8, DType::F8E4M3FNUZ, 250.0),
        (DType::F8E8M0, DType::I8, 100.0),
        (DType::I8, DType::U8, 120.0),
        (DType::Bool, DType::U8, 1.0),
        (DType::U4, DType::I4, 15.0),
        (DType::F4E2M1, DType::U4, 6.0),
        (DType::I2, DType::U2, 1.5),
    ];
    for (case, &(from, to, factor)) in pairs.iter().enumerate() {
        let graph = |n: usize| {
            build("bitcast", |g| {
                let x = g.input("x", &[n, 3, 7]);
                let f = floats(g, "factor", vec![1], vec![factor]);
                let xs = g.binary("factor", BinaryOp::Mul, x, f)?;
                let v = if from == DType::F32 { xs } else { g.add("make", Op::Cast { to: from }, vec![xs])? };
                let y = g.add("bitcast", Op::BitCast { to }, vec![v])?;
                let back = g.add("back", Op::BitCast { to: from }, vec![y])?;
                Ok(vec![y, back])
            })
        };
        check(graph, BATCHES, 0.0, case as u64);
    }
}

/// Int8 conv weights with a per-output-channel scale, as a QDQ model holds them.
fn int8_weights(shape: Vec<usize>, rng: &mut Rng) -> (Tensor, Tensor) {
    let m = shape[0];
    let w = Tensor::random_of(DType::I8, shape, rng, -127.0, 127.0);
    let s = Tensor::random(vec![m], rng, 0.002, 0.01);
    (w, s)
}

/// Checks a QDQ block's outputs [y (float), y quantised, y dequantised] against the
/// reference: y within `TOL`; the quantised values equal, or one step apart where the
/// reference's y / y_scale lies within 1e-3 of a rounding tie (the float accumulations differ
/// in their last bits, so such values may round either way).
fn check_qdq(g: &Graph, seed: u64) {
    let ins = inputs(g, &mut Rng::new(seed));
    let want = reference::run(g, &ins).unwrap();
    let mut compiled = device().compile(g, &gpu::CompileOptions::default()).unwrap();
    let got = compiled.run(&ins).unwrap();
    let e = super::common::rel_err(&got[0], &want[0]);
    assert!(e <= TOL, "{}: conv output error {e:e}", g.name);
    let (gq, wq, y) = (got[1].to_f64s(), want[1].to_f64s(), want[0].to_f64s());
    let mut flips = 0;
    for i in 0..gq.len() {
        if gq[i] != wq[i] {
            let t = y[i] / 0.05;
            assert!(
                (gq[i] - wq[i]).abs() == 1.0 && (t - t.floor() - 0.5).abs() < 1e-3,
                "{}: element {i}: {} vs {} (y {})",
                g.name,
                gq[i],
                wq[i],
                y[i]
            );
            flips += 1;
        }
    }
    assert!(flips * 100 <= gq.len(), "{}: {flips} of {} values rounded differently", g.name, gq.len());
}

#[test]
fn qdq_conv_block_keeps_int8_weights_on_the_device() {
    let mut rng = Rng::new(79);
    // (c, m, k, groups, stride, pads, h, w): general, depthwise, pointwise, transposed.
    let shapes = [
        (3, 5, 3, 1, [1, 1], [1, 1, 1, 1], 9, 7),
        (6, 6, 3, 6, [2, 1], [1, 0, 1, 0], 11, 9),
        (5, 7, 1, 1, [1, 1], [0; 4], 4, 6),
        (4, 3, 3, 1, [2, 2], [1, 1, 1, 1], 5, 5),
    ];
    for (case, &(c, m, k, groups, stride, pads, h, w)) in shapes.iter().enumerate() {
        let transposed = case == 3;
        let wshape = if transposed { vec![c, m / groups, k, k] } else { vec![m, c / groups, k, k] };
        let (wq, ws) = if transposed {
            let w = Tensor::random_of(DType::I8, wshape.clone(), &mut rng, -127.0, 127.0);
            (w, Tensor::scalar(DType::F32, 0.004))
        } else {
            int8_weights(wshape.clone(), &mut rng)
        };
        let bias = Tensor::random_of(DType::I32, vec![m], &mut rng, -3000.0, 3000.0);
        let x_scale = 1.0 / 64.0;
        let graph = |n: usize| {
            build("qdq_conv", |g| {
                let x = g.input("x", &[n, c, h, w]);
                let xs = floats(g, "x_scale", vec![], vec![x_scale]);
                let xz = g.constant("x_zp", Tensor::from_i64(DType::U8, vec![], vec![128]).unwrap());
                let qa = QuantizeAttrs { axis: 0, block_size: 0, to: DType::U8, saturate: true, precision: DType::F32 };
                let da = DequantizeAttrs { axis: 0, block_size: 0, to: DType::F32 };
                let xq = g.add("x_q", Op::QuantizeLinear(qa.clone()), vec![x, xs, xz])?;
                let xd = g.add("x_dq", Op::DequantizeLinear(da.clone()), vec![xq, xs, xz])?;
                let wc = g.constant("w_int8", wq.clone());
                let wsc = g.constant("w_scale", ws.clone());
                // Per output channel (axis 0 of a conv's weight); per tensor for the transposed one.
                let wda = DequantizeAttrs { axis: 0, block_size: 0, to: DType::F32 };
                let wd = g.add("w_dq", Op::DequantizeLinear(wda), vec![wc, wsc])?;
                // The bias in the accumulator's scale: x_scale * w_scale.
                let bs: Vec<f32> = (0..m).map(|i| x_scale * ws.data()[if ws.len() == 1 { 0 } else { i }]).collect();
                let bsc = floats(g, "b_scale", vec![m], bs);
                let bc = g.constant("b_int32", bias.clone());
                let bda = DequantizeAttrs { axis: 0, block_size: 0, to: DType::F32 };
                let bd = g.add("b_dq", Op::DequantizeLinear(bda), vec![bc, bsc])?;
                let y = if transposed {
                    let attrs = ConvTransposeAttrs {
                        stride: stride.to_vec(),
                        pads: pads.to_vec(),
                        groups,
                        ..Default::default()
                    };
                    g.conv_transpose("conv", xd, wd, Some(bd), attrs)?
                } else {
                    let attrs =
                        ConvAttrs { stride: stride.to_vec(), pads: pads.to_vec(), groups, ..Default::default() };
                    g.conv("conv", xd, wd, Some(bd), attrs)?
                };
                let ys = floats(g, "y_scale", vec![], vec![0.05]);
                let yz = g.constant("y_zp", Tensor::from_i64(DType::U8, vec![], vec![100]).unwrap());
                let yq = g.add("y_q", Op::QuantizeLinear(qa), vec![y, ys, yz])?;
                let yd = g.add("y_dq", Op::DequantizeLinear(da), vec![yq, ys, yz])?;
                Ok(vec![y, yq, yd])
            })
        };
        for &n in BATCHES {
            check_qdq(&graph(n), case as u64 + n as u64);
        }
        // The weights are uploaded as int8, four to a word: no constant holds them as f32.
        let g = graph(1);
        let compiled = device().compile(&g, &gpu::CompileOptions::default()).unwrap();
        let (_, const_bytes) = compiled.memory_bytes();
        let f32_weights = (wq.len() * 4) as u64;
        assert!(
            const_bytes < f32_weights / 2 + 16 * 16 + (m as u64) * 8,
            "case {case}: {const_bytes} constant bytes for {} int8 weights",
            wq.len()
        );
    }
}

#[test]
fn constant_dequantization_moves_next_to_its_reader() {
    // Exporters put every weight's DequantizeLinear first; the rewrite runs each just before
    // its convolution, so the dequantised weights are not all alive at once.
    let mut rng = Rng::new(83);
    let g = build("qdq_order", |g| {
        let x = g.input("x", &[1, 4, 6, 6]);
        let da = DequantizeAttrs { axis: 0, block_size: 0, to: DType::F32 };
        let s = floats(g, "s", vec![], vec![0.01]);
        let mut ws = vec![];
        for i in 0..3 {
            let w =
                g.constant(&format!("w{i}"), Tensor::random_of(DType::I8, vec![4, 4, 3, 3], &mut rng, -100.0, 100.0));
            ws.push(g.add(&format!("dq{i}"), Op::DequantizeLinear(da.clone()), vec![w, s])?);
        }
        let mut y = x;
        for (i, w) in ws.into_iter().enumerate() {
            let attrs = ConvAttrs { pads: vec![1; 4], ..Default::default() };
            y = g.conv(&format!("conv{i}"), y, w, None, attrs)?;
        }
        Ok(vec![y])
    });
    let o = optimize(&g).unwrap();
    let names: Vec<&str> = o.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["dq0", "conv0", "dq1", "conv1", "dq2", "conv2"]);
    check(|_| g.clone(), &[1], TOL, 1);
}
