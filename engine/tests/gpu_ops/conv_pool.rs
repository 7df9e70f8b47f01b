//! 1-D and 3-D convolution and pooling, pooling indices, LpPool, MaxUnpool, Col2Im and
//! deformable convolution on the GPU against the CPU reference.

#[allow(unused_imports)]
use super::*;

/// Random per-axis values in lo..=hi for `n` axes.
fn per_axis(rng: &mut Rng, n: usize, lo: usize, hi: usize) -> Vec<usize> {
    (0..n).map(|_| rng.range(lo, hi)).collect()
}

/// Compiles and runs `g` and compares it with the reference: float outputs within `TOL`,
/// integer outputs (indices) exactly.
fn check_exact_ints(g: &Graph, seed: u64) {
    let ins = common::inputs(g, &mut Rng::new(seed));
    let want = reference::run(g, &ins).unwrap_or_else(|e| panic!("reference {}: {e}", g.name));
    let mut c =
        device().compile(g, &gpu::CompileOptions::default()).unwrap_or_else(|e| panic!("compile {}: {e}", g.name));
    let got = c.run(&ins).unwrap_or_else(|e| panic!("gpu {}: {e}", g.name));
    for (k, (gt, wt)) in got.iter().zip(&want).enumerate() {
        if wt.dtype().is_float() {
            let e = common::rel_err(gt, wt);
            assert!(e <= TOL, "graph {} output {k}: relative error {e:e}", g.name);
        } else {
            assert_eq!(gt.dtype(), wt.dtype(), "graph {} output {k}", g.name);
            assert_eq!(gt.to_i64s(), wt.to_i64s(), "graph {} output {k}", g.name);
        }
    }
}

#[test]
fn conv_1d_and_3d_groups_strides_pads_dilations() {
    let mut rng = Rng::new(101);
    for case in 0..16 {
        let nd = if case % 2 == 0 { 1 } else { 3 };
        let groups = rng.range(1, 2);
        let c = groups * rng.range(1, 3);
        let m = groups * rng.range(1, 4);
        let k = per_axis(&mut rng, nd, 1, 3);
        let stride = per_axis(&mut rng, nd, 1, 2);
        let dilation = per_axis(&mut rng, nd, 1, 2);
        let pads = per_axis(&mut rng, 2 * nd, 0, 1);
        let spatial: Vec<usize> =
            (0..nd).map(|i| rng.range(dilation[i] * (k[i] - 1) + 1, 7 + 4 * (nd == 1) as usize)).collect();
        let wt = weights([vec![m, c / groups], k.clone()].concat(), &mut rng);
        let b = rng.coin().then(|| weights(vec![m], &mut rng));
        let attrs = ConvAttrs { stride, pads, dilation, groups, activation: rand_act(&mut rng) };
        let graph = |n: usize| {
            build(&format!("conv{nd}d_{case}"), |g| {
                let x = g.input("x", &[vec![n, c], spatial.clone()].concat());
                let wt = g.constant("w", wt.clone());
                let b = b.clone().map(|b| g.constant("b", b));
                Ok(vec![g.conv("conv", x, wt, b, attrs.clone())?])
            })
        };
        check(graph, BATCHES, TOL, case);
    }
}

#[test]
fn depthwise_and_pointwise_1d_conv() {
    // The 1-D sweeps take the 2-D fast kernels with a unit height.
    let mut rng = Rng::new(102);
    for (case, (c, m, groups, k, len)) in [(3, 6, 3, 3, 11), (5, 5, 5, 5, 9), (4, 7, 1, 1, 12)].into_iter().enumerate()
    {
        let wt = weights(vec![m, c / groups, k], &mut rng);
        let b = weights(vec![m], &mut rng);
        let p = k / 2;
        let attrs = ConvAttrs { pads: vec![p, p], groups, ..ConvAttrs::spatial(1) };
        let graph = |n: usize| {
            build(&format!("conv1d_fast{case}"), |g| {
                let x = g.input("x", &[n, c, len]);
                let wt = g.constant("w", wt.clone());
                let b = g.constant("b", b.clone());
                Ok(vec![g.conv("conv", x, wt, Some(b), attrs.clone())?])
            })
        };
        check(graph, BATCHES, TOL, case as u64);
    }
}

#[test]
fn conv_transpose_1d_and_3d_groups_strides_pads_dilations() {
    let mut rng = Rng::new(103);
    let mut checked = 0;
    for case in 0..16 {
        let nd = if case % 2 == 0 { 1 } else { 3 };
        let groups = rng.range(1, 2);
        let c = groups * rng.range(1, 3);
        let m = groups * rng.range(1, 3);
        let k = per_axis(&mut rng, nd, 1, 3);
        let stride = per_axis(&mut rng, nd, 1, 3);
        let dilation = per_axis(&mut rng, nd, 1, 2);
        let output_padding: Vec<usize> = (0..nd).map(|i| rng.range(0, stride[i].max(dilation[i]) - 1)).collect();
        let pads: Vec<usize> = (0..2 * nd).map(|i| rng.range(0, k[i % nd] - 1)).collect();
        let spatial = per_axis(&mut rng, nd, 1, if nd == 1 { 9 } else { 4 });
        let wt = weights([vec![c, m / groups], k.clone()].concat(), &mut rng);
        let b = rng.coin().then(|| weights(vec![m], &mut rng));
        let attrs =
            ConvTransposeAttrs { stride, pads, dilation, output_padding, groups, activation: rand_act(&mut rng) };
        let graph = |n: usize| {
            try_build(&format!("convT{nd}d_{case}"), |g| {
                let x = g.input("x", &[vec![n, c], spatial.clone()].concat());
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
    assert!(checked >= 10, "only {checked} of 16 transposed convolutions were valid");
}

#[test]
fn batch_norm_and_activation_fold_into_1d_and_3d_convs() {
    let mut rng = Rng::new(104);
    for (case, (nd, transposed)) in [(1, false), (3, false), (1, true), (3, true)].into_iter().enumerate() {
        let (c, m) = (4, 3);
        let k = vec![2; nd];
        let w = if transposed {
            weights([vec![c, m], k].concat(), &mut rng)
        } else {
            weights([vec![m, c], k].concat(), &mut rng)
        };
        let params = batch_norm_params(m, &mut rng);
        let spatial = if nd == 1 { vec![9] } else { vec![3, 4, 5] };
        let graph = |n: usize| {
            build(&format!("bn_fold{case}"), |g| {
                let x = g.input("x", &[vec![n, c], spatial.clone()].concat());
                let wt = g.constant("w", w.clone());
                let y = if transposed {
                    g.conv_transpose(
                        "convT",
                        x,
                        wt,
                        None,
                        ConvTransposeAttrs { stride: vec![2; nd], ..ConvTransposeAttrs::spatial(nd) },
                    )?
                } else {
                    g.conv("conv", x, wt, None, ConvAttrs { pads: vec![1; 2 * nd], ..ConvAttrs::spatial(nd) })?
                };
                let y = add_batch_norm(g, y, &params, 1e-3)?;
                Ok(vec![g.unary("relu", y, Activation::Relu)?])
            })
        };
        for &n in BATCHES {
            assert_eq!(optimize(&graph(n)).unwrap().nodes().len(), 1, "conv + bn + relu become one node");
        }
        check(graph, BATCHES, TOL, case as u64);
    }
}

#[test]
fn pooling_1d_and_3d_max_average_ceil_mode_count_include_pad_dilation() {
    let mut rng = Rng::new(105);
    for case in 0..24 {
        let nd = if case % 2 == 0 { 1 } else { 3 };
        let kind = if rng.coin() { PoolKind::Max } else { PoolKind::Average };
        let k = per_axis(&mut rng, nd, 1, 3);
        let stride = per_axis(&mut rng, nd, 1, 3);
        let dilation = per_axis(&mut rng, nd, 1, 2);
        // At most half the dilated window (a window never lies wholly in the padding).
        let half = |i: usize| (dilation[i] * (k[i] - 1)).div_ceil(2);
        let pads: Vec<usize> = (0..2 * nd).map(|i| rng.range(0, half(i % nd))).collect();
        let spatial: Vec<usize> =
            (0..nd).map(|i| rng.range(k[i] * dilation[i], if nd == 1 { 13 } else { 7 })).collect();
        let c = rng.range(1, 3);
        let attrs = PoolAttrs {
            pads,
            dilation,
            ceil_mode: rng.coin(),
            count_include_pad: rng.coin(),
            ..PoolAttrs::new(kind, &k, &stride)
        };
        let graph = |n: usize| {
            build(&format!("pool{nd}d_{case}"), |g| {
                let x = g.input("x", &[vec![n, c], spatial.clone()].concat());
                Ok(vec![g.pool("pool", x, attrs.clone())?])
            })
        };
        check(graph, BATCHES, TOL, case);
    }
}

#[test]
fn max_pool_indices_row_and_column_major_1d_2d_3d() {
    let mut rng = Rng::new(106);
    for case in 0..18u64 {
        let nd = 1 + case as usize % 3;
        let k = per_axis(&mut rng, nd, 1, 3);
        let stride = per_axis(&mut rng, nd, 1, 2);
        let dilation = per_axis(&mut rng, nd, 1, 2);
        let half = |i: usize| (dilation[i] * (k[i] - 1)).div_ceil(2);
        let pads: Vec<usize> = (0..2 * nd).map(|i| rng.range(0, half(i % nd))).collect();
        let spatial: Vec<usize> = (0..nd).map(|i| rng.range(k[i] * dilation[i], [13, 9, 6][nd - 1])).collect();
        let order = if case % 2 == 0 { IndexOrder::RowMajor } else { IndexOrder::ColumnMajor };
        // Integers (every third case) pool through floats; indices are compared exactly.
        let dtype = if case % 3 == 2 { DType::I32 } else { DType::F32 };
        let c = rng.range(1, 3);
        let attrs = PoolAttrs {
            pads,
            dilation,
            ceil_mode: rng.coin(),
            indices: Some(order),
            ..PoolAttrs::new(PoolKind::Max, &k, &stride)
        };
        // Integer inputs (0..=2) tie often: the first maximum wins on both sides.
        for &n in BATCHES {
            let g = build(&format!("argmax_pool{case}"), |g| {
                let x = g.input_typed("x", dtype, &[vec![n, c], spatial.clone()].concat());
                g.add_multi("pool", Op::Pool(attrs.clone()), vec![x])
            });
            assert_eq!(g.value(g.outputs()[1]).dtype, DType::I64);
            check_exact_ints(&g, case + n as u64);
        }
    }
}

#[test]
fn lp_pooling_1d_2d_3d() {
    let mut rng = Rng::new(107);
    for case in 0..15u64 {
        let nd = 1 + case as usize % 3;
        let p = [1.0, 2.0, 3.0, 0.5, 4.0][case as usize % 5];
        let k = per_axis(&mut rng, nd, 1, 3);
        let stride = per_axis(&mut rng, nd, 1, 2);
        let dilation = per_axis(&mut rng, nd, 1, 2);
        let half = |i: usize| (dilation[i] * (k[i] - 1)).div_ceil(2);
        let pads: Vec<usize> = (0..2 * nd).map(|i| rng.range(0, half(i % nd))).collect();
        let spatial: Vec<usize> = (0..nd).map(|i| rng.range(k[i] * dilation[i], [13, 9, 6][nd - 1])).collect();
        let attrs = LpPoolAttrs { p, kernel: k, stride, pads, dilation, ceil_mode: rng.coin() };
        let graph = |n: usize| {
            build(&format!("lppool{case}"), |g| {
                let x = g.input("x", &[vec![n, 2], spatial.clone()].concat());
                Ok(vec![g.add("lp", Op::LpPool(attrs.clone()), vec![x])?])
            })
        };
        check(graph, BATCHES, TOL, case);
    }
    // The whole image as the window (GlobalLpPool with p other than 1 and 2).
    let graph = |n: usize| {
        build("global_lp", |g| {
            let x = g.input("x", &[n, 3, 5, 7]);
            let attrs = LpPoolAttrs {
                p: 3.0,
                kernel: vec![5, 7],
                stride: vec![1, 1],
                pads: vec![0; 4],
                dilation: vec![1, 1],
                ceil_mode: false,
            };
            Ok(vec![g.add("lp", Op::LpPool(attrs), vec![x])?])
        })
    };
    check(graph, BATCHES, TOL, 99);
}

#[test]
fn max_unpool_with_indices_from_max_pool() {
    let mut rng = Rng::new(108);
    for case in 0..9u64 {
        let nd = 1 + case as usize % 3;
        let k = per_axis(&mut rng, nd, 1, 3);
        let stride = per_axis(&mut rng, nd, 1, 3);
        // Sizes the windows tile exactly, so the default unpooled shape is the pooled input's.
        let spatial: Vec<usize> = (0..nd).map(|i| (rng.range(1, [6, 4, 3][nd - 1]) - 1) * stride[i] + k[i]).collect();
        let pool = PoolAttrs { indices: Some(IndexOrder::RowMajor), ..PoolAttrs::new(PoolKind::Max, &k, &stride) };
        // The unpooling inverts the pooling over the pooling's input; half the cases give a
        // larger output than the default.
        let c = rng.range(1, 3);
        let graph = |n: usize| {
            build(&format!("unpool{case}"), |g| {
                let x = g.input("x", &[vec![n, c], spatial.clone()].concat());
                let outs = g.add_multi("pool", Op::Pool(pool.clone()), vec![x])?;
                let pooled = g.shape(outs[0]).to_vec();
                let default: Vec<usize> = (0..nd).map(|i| (pooled[2 + i] - 1) * stride[i] + k[i]).collect();
                let output_shape =
                    (case % 2 == 1).then(|| [vec![n, c], default.iter().map(|d| d + 1).collect()].concat());
                let attrs =
                    MaxUnpoolAttrs { kernel: k.clone(), stride: stride.clone(), pads: vec![0; 2 * nd], output_shape };
                Ok(vec![g.add("unpool", Op::MaxUnpool(attrs), outs)?])
            })
        };
        check(graph, BATCHES, TOL, case);
    }
}

#[test]
fn col2im_1d_2d_3d_strides_pads_dilations() {
    let mut rng = Rng::new(109);
    for case in 0..12u64 {
        let nd = 1 + case as usize % 3;
        let block = per_axis(&mut rng, nd, 1, 3);
        let stride = per_axis(&mut rng, nd, 1, 2);
        let dilation = per_axis(&mut rng, nd, 1, 2);
        let pads = per_axis(&mut rng, 2 * nd, 0, 1);
        let image: Vec<usize> =
            (0..nd).map(|i| rng.range(dilation[i] * (block[i] - 1) + 1, [11, 7, 5][nd - 1])).collect();
        let attrs = Col2ImAttrs { image, block: block.clone(), stride, pads, dilation };
        let blocks: usize = (0..nd)
            .map(|i| {
                let eff = attrs.dilation[i] * (block[i] - 1) + 1;
                (attrs.image[i] + attrs.pads[i] + attrs.pads[nd + i] - eff) / attrs.stride[i] + 1
            })
            .product();
        let c = rng.range(1, 3);
        let kk: usize = block.iter().product();
        let graph = |n: usize| {
            build(&format!("col2im{case}"), |g| {
                let x = g.input("x", &[n, c * kk, blocks]);
                Ok(vec![g.add("col2im", Op::Col2Im(attrs.clone()), vec![x])?])
            })
        };
        check(graph, BATCHES, TOL, case);
    }
}

#[test]
fn deform_conv_with_offsets_and_masks_from_the_data() {
    let mut rng = Rng::new(110);
    for case in 0..10u64 {
        let groups = rng.range(1, 2);
        let offset_groups = rng.range(1, 2);
        let c = groups * offset_groups * rng.range(1, 2);
        let m = groups * rng.range(1, 3);
        let (kh, kw) = (rng.range(1, 3), rng.range(1, 3));
        let stride = per_axis(&mut rng, 2, 1, 2);
        let dilation = per_axis(&mut rng, 2, 1, 2);
        let pads = per_axis(&mut rng, 4, 0, 1);
        let (h, w) = (rng.range(dilation[0] * (kh - 1) + 1, 7), rng.range(dilation[1] * (kw - 1) + 1, 8));
        let oh = (h + pads[0] + pads[2] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
        let ow = (w + pads[1] + pads[3] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
        let taps = offset_groups * kh * kw;
        let with_mask = case % 2 == 0;
        // Every other case takes the weight from the data too.
        let weight_input = case % 3 == 1;
        let wt = weights(vec![m, c / groups, kh, kw], &mut rng);
        let b = weights(vec![m], &mut rng);
        let attrs = DeformConvAttrs { stride, pads, dilation, groups, offset_groups };
        let graph = |n: usize| {
            build(&format!("deform{case}"), |g| {
                let x = g.input("x", &[n, c, h, w]);
                // Offsets in [-3, 3): taps land between pixels and past the borders.
                let off = g.input("offset", &[n, taps * 2, oh, ow]);
                let three = floats(g, "three", vec![1], vec![3.0]);
                let off = g.binary("scale", BinaryOp::Mul, off, three)?;
                let wt =
                    if weight_input { g.input("w", &[m, c / groups, kh, kw]) } else { g.constant("w", wt.clone()) };
                let mut ins = vec![x, wt, off, g.constant("b", b.clone())];
                if with_mask {
                    ins.push(g.input("mask", &[n, taps, oh, ow]));
                }
                Ok(vec![g.add("deform", Op::DeformConv(attrs.clone()), ins)?])
            })
        };
        check(graph, BATCHES, TOL, case);
    }
}
