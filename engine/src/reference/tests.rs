//! Unit tests of the reference executor on hand-computed values.

use super::*;
use crate::graph::GraphBuilder;
use crate::tensor::Rng;

fn t(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::new(shape.to_vec(), data.to_vec()).unwrap()
}

fn seq(shape: &[usize]) -> Tensor {
    let n = numel(shape);
    t(shape, &(1..=n).map(|v| v as f32).collect::<Vec<_>>())
}

#[track_caller]
fn assert_close(got: &Tensor, shape: &[usize], expected: &[f32], tol: f32) {
    assert_eq!(got.shape(), shape, "shape");
    assert_eq!(got.len(), expected.len(), "length");
    for (i, (g, e)) in got.data().iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= tol, "element {i}: got {g}, expected {e}\n got {:?}", got.data());
    }
}

/// Builds a one-input graph with `f`, runs it on `x` and returns its single output.
fn run1(x: &Tensor, f: impl FnOnce(&mut GraphBuilder, ValueId) -> ValueId) -> Tensor {
    let mut g = GraphBuilder::new("test");
    let xi = g.input_typed("x", x.dtype(), x.shape());
    let y = f(&mut g, xi);
    g.output(y);
    let graph = g.build().unwrap();
    let mut out = run(&graph, std::slice::from_ref(x)).unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0)
}

use crate::graph::ValueId;

fn conv1(x: &Tensor, w: Tensor, bias: Option<Tensor>, attrs: ConvAttrs) -> Tensor {
    run1(x, |g, xi| {
        let wi = g.constant("w", w);
        let bi = bias.map(|b| g.constant("b", b));
        g.conv("conv", xi, wi, bi, attrs).unwrap()
    })
}

// ----- convolution -----------------------------------------------------------------------

#[test]
fn conv_known_kernel() {
    // x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,2],[3,4]]:
    // out[i][j] = x[i][j] + 2 x[i][j+1] + 3 x[i+1][j] + 4 x[i+1][j+1].
    let x = seq(&[1, 1, 3, 3]);
    let y = conv1(&x, t(&[1, 1, 2, 2], &[1., 2., 3., 4.]), Some(t(&[1], &[0.5])), ConvAttrs::default());
    assert_close(&y, &[1, 1, 2, 2], &[37.5, 47.5, 67.5, 77.5], 0.0);
}

#[test]
fn conv_padding_stride_dilation_activation() {
    let x = seq(&[1, 1, 3, 3]);
    let ones = t(&[1, 1, 3, 3], &[1.0; 9]);
    // Pad 1, all-ones kernel: sums of the 3x3 neighbourhoods.
    let y = conv1(&x, ones.clone(), None, ConvAttrs { pads: vec![1; 4], ..Default::default() });
    assert_close(&y, &[1, 1, 3, 3], &[12., 21., 16., 27., 45., 33., 24., 39., 28.], 0.0);
    // Same with stride 2: the corners only.
    let y = conv1(&x, ones.clone(), None, ConvAttrs { pads: vec![1; 4], stride: vec![2, 2], ..Default::default() });
    assert_close(&y, &[1, 1, 2, 2], &[12., 16., 24., 28.], 0.0);
    // Asymmetric padding: top 1 only, left 0 / right 1 -> 2x2 outputs ... (H 3+1-3+1 = 2, W 3+1-3+1 = 2).
    let y = conv1(&x, ones.clone(), None, ConvAttrs { pads: vec![1, 0, 0, 1], ..Default::default() });
    // (0,0): rows 0..2 cols 0..3 = 1+2+3+4+5+6 = 21; (0,1): rows 0..2 cols 1..3 (+pad) = 2+3+5+6 = 16
    // (1,0): rows 0..3 cols 0..3 = 45; (1,1): cols 1..3 = 2+3+5+6+8+9 = 33
    assert_close(&y, &[1, 1, 2, 2], &[21., 16., 45., 33.], 0.0);
    // Dilation 2 with a 2x2 kernel of ones: the four corners, 1+3+7+9.
    let y = conv1(&x, t(&[1, 1, 2, 2], &[1.0; 4]), None, ConvAttrs { dilation: vec![2, 2], ..Default::default() });
    assert_close(&y, &[1, 1, 1, 1], &[20.], 0.0);
    // Bias then fused activation: sums - 30 clipped to [0, 6].
    let y = conv1(
        &x,
        ones,
        Some(t(&[1], &[-30.0])),
        ConvAttrs { pads: vec![1; 4], activation: Some(Activation::Clip { min: 0.0, max: 6.0 }), ..Default::default() },
    );
    assert_close(&y, &[1, 1, 3, 3], &[0., 0., 0., 0., 6., 3., 0., 6., 0.], 0.0);
}

#[test]
fn conv_multi_channel_sum() {
    // 2 input channels, 2 output channels, 1x1 kernels: out[m] = sum_c w[m][c] x[c].
    let x = t(&[1, 2, 1, 2], &[1., 2., 10., 20.]);
    let w = t(&[2, 2, 1, 1], &[1., 1., 2., -1.]);
    let y = conv1(&x, w, Some(t(&[2], &[0., 100.])), ConvAttrs::default());
    assert_close(&y, &[1, 2, 1, 2], &[11., 22., 92., 84.], 0.0);
}

/// Channels [lo, hi) of an NCHW tensor.
fn channels(x: &Tensor, lo: usize, hi: usize) -> Tensor {
    let [n, c, h, w] = *x.shape() else { panic!() };
    let mut d = vec![];
    for ni in 0..n {
        d.extend_from_slice(&x.data()[(ni * c + lo) * h * w..(ni * c + hi) * h * w]);
    }
    t(&[n, hi - lo, h, w], &d)
}

/// Concatenation of NCHW tensors along channels.
fn cat_channels(parts: &[Tensor]) -> Tensor {
    let n = parts[0].shape()[0];
    let (h, w) = (parts[0].shape()[2], parts[0].shape()[3]);
    let c: usize = parts.iter().map(|p| p.shape()[1]).sum();
    let mut d = vec![];
    for ni in 0..n {
        for p in parts {
            let pc = p.shape()[1];
            d.extend_from_slice(&p.data()[ni * pc * h * w..(ni + 1) * pc * h * w]);
        }
    }
    t(&[n, c, h, w], &d)
}

#[test]
fn grouped_conv_equals_separate_convs() {
    let mut rng = Rng::new(3);
    let x = Tensor::random(vec![2, 4, 6, 5], &mut rng, -1.0, 1.0);
    let w = Tensor::random(vec![6, 2, 3, 3], &mut rng, -1.0, 1.0);
    let b = Tensor::random(vec![6], &mut rng, -1.0, 1.0);
    let attrs = ConvAttrs { pads: vec![1, 0, 2, 1], stride: vec![2, 1], groups: 2, ..Default::default() };
    let grouped = conv1(&x, w.clone(), Some(b.clone()), attrs.clone());
    let single = ConvAttrs { groups: 1, ..attrs };
    let parts: Vec<Tensor> = (0..2)
        .map(|g| {
            let wg = t(&[3, 2, 3, 3], &w.data()[g * 54..(g + 1) * 54]);
            let bg = t(&[3], &b.data()[g * 3..(g + 1) * 3]);
            conv1(&channels(&x, 2 * g, 2 * g + 2), wg, Some(bg), single.clone())
        })
        .collect();
    let expected = cat_channels(&parts);
    assert_eq!(grouped.shape(), &[2, 6, 4, 4]);
    assert!(grouped.max_abs_diff(&expected) < 1e-6, "{}", grouped.max_abs_diff(&expected));
}

#[test]
fn depthwise_conv() {
    // Channel 0: ones (neighbourhood sums); channel 1: centre 2 (doubles);
    // channel 2: top-left 1 (out[i][j] = x[i-1][j-1], 0 outside).
    let x = t(&[1, 3, 3, 3], &(0..27).map(|v| (v % 9 + 1) as f32).collect::<Vec<_>>());
    let mut w = vec![1.0; 9];
    w.extend([0., 0., 0., 0., 2., 0., 0., 0., 0.]);
    w.extend([1., 0., 0., 0., 0., 0., 0., 0., 0.]);
    let y = conv1(&x, t(&[3, 1, 3, 3], &w), None, ConvAttrs { pads: vec![1; 4], groups: 3, ..Default::default() });
    #[rustfmt::skip]
        let expected = [
            12., 21., 16., 27., 45., 33., 24., 39., 28.,
            2., 4., 6., 8., 10., 12., 14., 16., 18.,
            0., 0., 0., 0., 1., 2., 0., 4., 5.,
        ];
    assert_close(&y, &[1, 3, 3, 3], &expected, 0.0);
}

/// Direct (gather) formula of a transposed convolution: out[n][m][oy][ox] = bias[m] + sum
/// over c in m's group, ky, kx with oy + pad_top - ky*d = iy*s (iy inside) of x * w.
fn conv_transpose_gather(x: &Tensor, w: &Tensor, b: &Tensor, a: &ConvTransposeAttrs, oh: usize, ow: usize) -> Tensor {
    let [n, c, h, wd] = *x.shape() else { panic!() };
    let [_, mg, kh, kw] = *w.shape() else { panic!() };
    let g = a.groups;
    let (cg, m) = (c / g, mg * g);
    let mut out = vec![];
    for ni in 0..n {
        for mi in 0..m {
            let (group, mo) = (mi / mg, mi % mg);
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b.data()[mi] as f64;
                    for ci in group * cg..(group + 1) * cg {
                        for ky in 0..kh {
                            let ty = oy as i64 + a.pads[0] as i64 - (ky * a.dilation[0]) as i64;
                            if ty < 0 || ty % a.stride[0] as i64 != 0 || ty / a.stride[0] as i64 >= h as i64 {
                                continue;
                            }
                            let iy = (ty / a.stride[0] as i64) as usize;
                            for kx in 0..kw {
                                let tx = ox as i64 + a.pads[1] as i64 - (kx * a.dilation[1]) as i64;
                                if tx < 0 || tx % a.stride[1] as i64 != 0 || tx / a.stride[1] as i64 >= wd as i64 {
                                    continue;
                                }
                                let ix = (tx / a.stride[1] as i64) as usize;
                                let xv = x.data()[((ni * c + ci) * h + iy) * wd + ix] as f64;
                                let wv = w.data()[((ci * mg + mo) * kh + ky) * kw + kx] as f64;
                                acc += xv * wv;
                            }
                        }
                    }
                    out.push(acc as f32);
                }
            }
        }
    }
    t(&[n, m, oh, ow], &out)
}

fn conv_t1(x: &Tensor, w: Tensor, bias: Option<Tensor>, attrs: ConvTransposeAttrs) -> Tensor {
    run1(x, |g, xi| {
        let wi = g.constant("w", w);
        let bi = bias.map(|b| g.constant("b", b));
        g.conv_transpose("convt", xi, wi, bi, attrs).unwrap()
    })
}

#[test]
fn conv_transpose_hand_computed() {
    // Stride 2, 2x2 kernel of ones: each input pixel becomes a 2x2 block; output_padding 1
    // adds a zero row and column.
    let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let attrs = ConvTransposeAttrs { stride: vec![2, 2], output_padding: vec![1, 1], ..Default::default() };
    let y = conv_t1(&x, t(&[1, 1, 2, 2], &[1.0; 4]), None, attrs);
    #[rustfmt::skip]
        let expected = [
            1., 1., 2., 2., 0.,
            1., 1., 2., 2., 0.,
            3., 3., 4., 4., 0.,
            3., 3., 4., 4., 0.,
            0., 0., 0., 0., 0.,
        ];
    assert_close(&y, &[1, 1, 5, 5], &expected, 0.0);
    // Stride 1, 2x2 kernel [[1,2],[3,4]] on [[1,2],[3,4]]: full correlation sum.
    // out[0][0] = 1*1; out[0][1] = 2*1 + 1*2; out[0][2] = 2*2; out[1][0] = 3*1 + 1*3;
    // out[1][1] = 4*1 + 3*2 + 2*3 + 1*4 = 20; out[1][2] = 4*2 + 2*4 = 16; out[2][0] = 3*3;
    // out[2][1] = 4*3 + 3*4 = 24; out[2][2] = 16.
    let y = conv_t1(&x, t(&[1, 1, 2, 2], &[1., 2., 3., 4.]), Some(t(&[1], &[1.0])), ConvTransposeAttrs::default());
    assert_close(&y, &[1, 1, 3, 3], &[2., 5., 5., 7., 21., 17., 10., 25., 17.], 0.0);
}

#[test]
fn conv_transpose_matches_gather_formula() {
    let mut rng = Rng::new(11);
    let cases = [
        ConvTransposeAttrs {
            stride: vec![2, 2],
            pads: vec![1, 1, 1, 1],
            output_padding: vec![1, 1],
            ..Default::default()
        },
        ConvTransposeAttrs {
            stride: vec![2, 3],
            pads: vec![0, 1, 2, 0],
            output_padding: vec![1, 2],
            groups: 2,
            ..Default::default()
        },
        ConvTransposeAttrs {
            stride: vec![2, 1],
            dilation: vec![2, 2],
            pads: vec![1, 0, 0, 1],
            output_padding: vec![0, 1],
            groups: 2,
            activation: Some(Activation::LeakyRelu { alpha: 0.1 }),
        },
    ];
    for attrs in cases {
        let x = Tensor::random(vec![2, 4, 3, 4], &mut rng, -1.0, 1.0);
        let w = Tensor::random(vec![4, 3, 3, 2], &mut rng, -1.0, 1.0);
        let m = 3 * attrs.groups;
        let b = Tensor::random(vec![m], &mut rng, -1.0, 1.0);
        let y = conv_t1(&x, w.clone(), Some(b.clone()), attrs.clone());
        let oh =
            2 * attrs.stride[0] + attrs.dilation[0] * 2 + 1 + attrs.output_padding[0] - attrs.pads[0] - attrs.pads[2];
        let ow = 3 * attrs.stride[1] + attrs.dilation[1] + 1 + attrs.output_padding[1] - attrs.pads[1] - attrs.pads[3];
        let mut expected = conv_transpose_gather(&x, &w, &b, &attrs, oh, ow);
        if let Some(act) = attrs.activation {
            expected.data_mut().iter_mut().for_each(|v| *v = act.apply(*v));
        }
        assert_eq!(y.shape(), expected.shape(), "{attrs:?}");
        assert!(y.max_abs_diff(&expected) < 1e-5, "{attrs:?}: {}", y.max_abs_diff(&expected));
    }
}

// ----- gemm and matmul -------------------------------------------------------------------

#[test]
fn gemm_trans_b_alpha_beta() {
    // A = [[1,2],[3,4]], B^T with B = [[1,0],[0,1],[1,1]]: A B^T = [[1,2,3],[3,4,7]];
    // alpha 2 and beta 0.5 with C = [1,2,3]: [[2.5,5,7.5],[6.5,9,15.5]].
    let a = t(&[2, 2], &[1., 2., 3., 4.]);
    let y = run1(&a, |g, ai| {
        let b = g.constant("b", t(&[3, 2], &[1., 0., 0., 1., 1., 1.]));
        let c = g.constant("c", t(&[3], &[1., 2., 3.]));
        let attrs = GemmAttrs { alpha: 2.0, beta: 0.5, trans_b: true, ..Default::default() };
        g.gemm("gemm", ai, b, Some(c), attrs).unwrap()
    });
    assert_close(&y, &[2, 3], &[2.5, 5., 7.5, 6.5, 9., 15.5], 0.0);
    // No transpose, C of shape [1, 1], ReLU: A B with B = [[1,-1],[1,-1]] -> [[3,-3],[7,-7]].
    let y = run1(&a, |g, ai| {
        let b = g.constant("b", t(&[2, 2], &[1., -1., 1., -1.]));
        let c = g.constant("c", t(&[1, 1], &[1.]));
        let attrs = GemmAttrs { activation: Some(Activation::Relu), ..Default::default() };
        g.gemm("gemm", ai, b, Some(c), attrs).unwrap()
    });
    assert_close(&y, &[2, 2], &[4., 0., 8., 0.], 0.0);
}

#[test]
fn gemm_batched_c() {
    // C is an activation [N, 1] (per-row offsets).
    let mut g = GraphBuilder::new("gemm_c");
    let a = g.input("a", &[2, 2]);
    let c = g.input("c", &[2, 1]);
    let b = g.constant("b", t(&[2, 3], &[1., 2., 3., 4., 5., 6.]));
    let y = g.gemm("gemm", a, b, Some(c), GemmAttrs { beta: 10.0, ..Default::default() }).unwrap();
    g.output(y);
    let graph = g.build().unwrap();
    let out = run(&graph, &[t(&[2, 2], &[1., 0., 0., 1.]), t(&[2, 1], &[1., 2.])]).unwrap();
    assert_close(&out[0], &[2, 3], &[11., 12., 13., 24., 25., 26.], 0.0);
}

#[test]
fn matmul_broadcast_constant_b() {
    // [N,2,3] x [3,4]: B = [I | ones], so A B = [A | row sums].
    let a = t(&[2, 2, 3], &[1., 2., 3., 4., 5., 6., -1., 0., 1., 2., 2., 2.]);
    let y = run1(&a, |g, ai| {
        let b = g.constant("b", t(&[3, 4], &[1., 0., 0., 1., 0., 1., 0., 1., 0., 0., 1., 1.]));
        g.matmul("mm", ai, b).unwrap()
    });
    #[rustfmt::skip]
        let expected = [1., 2., 3., 6., 4., 5., 6., 15., -1., 0., 1., 0., 2., 2., 2., 6.];
    assert_close(&y, &[2, 2, 4], &expected, 0.0);
}

#[test]
fn matmul_leading_broadcast_batched_operands_activation() {
    // Constant A [2, 2, 2] = [I, swap] x batched B [N, 1, 2, 2]: batch dims [2] and [N, 1]
    // broadcast to [N, 2]; out[n][0] = B[n], out[n][1] = B[n] with its rows swapped.
    let b = t(&[2, 1, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
    let y = run1(&b, |g, bi| {
        let a = g.constant("a", t(&[2, 2, 2], &[1., 0., 0., 1., 0., 1., 1., 0.]));
        g.matmul("mm", a, bi).unwrap()
    });
    #[rustfmt::skip]
        let expected = [1., 2., 3., 4., 3., 4., 1., 2., 5., 6., 7., 8., 7., 8., 5., 6.];
    assert_close(&y, &[2, 2, 2, 2], &expected, 0.0);

    // Both operands batched, [N,1,3] x [N,3,2], with a fused ReLU.
    let mut g = GraphBuilder::new("mm2");
    let a = g.input("a", &[2, 1, 3]);
    let bi = g.input("b", &[2, 3, 2]);
    let y = g.add("mm", Op::MatMul { activation: Some(Activation::Relu) }, vec![a, bi]).unwrap();
    g.output(y);
    let graph = g.build().unwrap();
    let av = t(&[2, 1, 3], &[1., 2., 3., 1., 1., 1.]);
    let bv = t(&[2, 3, 2], &[1., -1., 1., -1., 1., -1., 1., 2., 3., 4., 5., 6.]);
    let out = run(&graph, &[av, bv]).unwrap();
    // Sample 0: [6, -6] -> [6, 0]; sample 1: [9, 12].
    assert_close(&out[0], &[2, 1, 2], &[6., 0., 9., 12.], 0.0);
}

// ----- pooling ---------------------------------------------------------------------------

fn pool1(x: &Tensor, attrs: PoolAttrs) -> Tensor {
    run1(x, |g, xi| g.pool("pool", xi, attrs).unwrap())
}

#[test]
fn average_pool_ceil_mode_count_include_pad() {
    // x[i][j] = 4i + j + 1 on 4x4, kernel 3, stride 2, pads 1, ceil mode: 3x3 outputs.
    // Row windows (and column windows) before clipping: [-1,2), [1,4), [3,5) (cut at
    // H + pad = 5), sizes 3, 3, 2; inside the input: {0,1}, {1,2,3}, {3}.
    let x = seq(&[1, 1, 4, 4]);
    let attrs = PoolAttrs { pads: vec![1; 4], ceil_mode: true, ..PoolAttrs::new(PoolKind::Average, &[3, 3], &[2, 2]) };
    let sums = [14., 30., 12., 57., 99., 36., 27., 45., 16.];
    let inside = [4., 6., 2., 6., 9., 3., 2., 3., 1.];
    let padded = [9., 9., 6., 9., 9., 6., 6., 6., 4.];
    let y = pool1(&x, attrs.clone());
    let expected: Vec<f32> = sums.iter().zip(&inside).map(|(s, d)| s / d).collect();
    assert_close(&y, &[1, 1, 3, 3], &expected, 1e-6);
    let y = pool1(&x, PoolAttrs { count_include_pad: true, ..attrs.clone() });
    let expected: Vec<f32> = sums.iter().zip(&padded).map(|(s, d)| s / d).collect();
    assert_close(&y, &[1, 1, 3, 3], &expected, 1e-6);
    // Without ceil mode the last window row/column is dropped.
    let y = pool1(&x, PoolAttrs { ceil_mode: false, count_include_pad: true, ..attrs });
    assert_close(&y, &[1, 1, 2, 2], &[14. / 9., 30. / 9., 57. / 9., 11.], 1e-6);
}

#[test]
fn max_pool_ceil_dilation_and_padding() {
    let x = seq(&[1, 1, 4, 4]);
    let attrs = PoolAttrs { pads: vec![1; 4], ceil_mode: true, ..PoolAttrs::new(PoolKind::Max, &[3, 3], &[2, 2]) };
    // The largest element of each clipped window is its bottom-right one.
    let y = pool1(&x, attrs);
    assert_close(&y, &[1, 1, 3, 3], &[6., 8., 8., 14., 16., 16., 14., 16., 16.], 0.0);
    // Dilation 2, kernel 2: taps (i, j), (i, j+2), (i+2, j), (i+2, j+2).
    let x = t(&[1, 1, 4, 4], &[3., 1., 4., 1., 5., 9., 2., 6., 5., 3., 5., 8., 9., 7., 9., 3.]);
    let y = pool1(&x, PoolAttrs { dilation: vec![2, 2], ..PoolAttrs::new(PoolKind::Max, &[2, 2], &[1, 1]) });
    assert_close(&y, &[1, 1, 2, 2], &[5., 8., 9., 9.], 0.0);
    // Padding taps are ignored, not zero: all-negative input.
    let x = t(&[1, 1, 2, 2], &[-1., -2., -3., -4.]);
    let y = pool1(&x, PoolAttrs { pads: vec![1; 4], ..PoolAttrs::new(PoolKind::Max, &[2, 2], &[1, 1]) });
    assert_close(&y, &[1, 1, 3, 3], &[-1., -1., -2., -1., -1., -2., -3., -3., -4.], 0.0);
    // Asymmetric padding on an average pool (count_include_pad false): pads top 1 only.
    let x = seq(&[1, 1, 2, 2]);
    let y = pool1(&x, PoolAttrs { pads: vec![1, 0, 0, 0], ..PoolAttrs::new(PoolKind::Average, &[2, 2], &[1, 1]) });
    // Windows rows [-1,1) and [0,2), cols [0,2): means of {1,2} and {1,2,3,4}.
    assert_close(&y, &[1, 1, 2, 1], &[1.5, 2.5], 0.0);
}

#[test]
fn global_pools() {
    let x = t(&[1, 2, 2, 2], &[1., 2., 3., 4., -1., -5., -2., -3.]);
    let y = run1(&x, |g, xi| g.global_pool("gp", xi, PoolKind::Average).unwrap());
    assert_close(&y, &[1, 2, 1, 1], &[2.5, -2.75], 0.0);
    let y = run1(&x, |g, xi| g.global_pool("gp", xi, PoolKind::Max).unwrap());
    assert_close(&y, &[1, 2, 1, 1], &[4., -1.], 0.0);
    // Rank 3: [N, C, L].
    let x = t(&[1, 2, 3], &[1., 2., 6., 0., 0., 3.]);
    let y = run1(&x, |g, xi| g.global_pool("gp", xi, PoolKind::Average).unwrap());
    assert_close(&y, &[1, 2, 1], &[3., 1.], 0.0);
}

// ----- elementwise -----------------------------------------------------------------------

#[test]
fn binary_broadcasting() {
    // [N,2,1] * [1,3] -> [N,2,3].
    let x = t(&[1, 2, 1], &[2., 3.]);
    let y = run1(&x, |g, xi| {
        let c = g.constant("c", t(&[1, 3], &[1., 10., 100.]));
        g.binary("mul", BinaryOp::Mul, xi, c).unwrap()
    });
    assert_close(&y, &[1, 2, 3], &[2., 20., 200., 3., 30., 300.], 0.0);
    // Constant first: [3] - [N,3].
    let x = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let y = run1(&x, |g, xi| {
        let c = g.constant("c", t(&[3], &[10., 20., 30.]));
        g.binary("sub", BinaryOp::Sub, c, xi).unwrap()
    });
    assert_close(&y, &[2, 3], &[9., 18., 27., 6., 15., 24.], 0.0);
    // Two activations, [N,2,2] / [N,1,2], and Add of a value with itself.
    let mut g = GraphBuilder::new("bin");
    let a = g.input("a", &[1, 2, 2]);
    let b = g.input("b", &[1, 1, 2]);
    let d = g.binary("div", BinaryOp::Div, a, b).unwrap();
    let s = g.binary("add", BinaryOp::Add, d, d).unwrap();
    g.output(s);
    let graph = g.build().unwrap();
    let out = run(&graph, &[t(&[1, 2, 2], &[1., 2., 3., 4.]), t(&[1, 1, 2], &[2., 4.])]).unwrap();
    assert_close(&out[0], &[1, 2, 2], &[1., 1., 3., 2.], 0.0);
}

#[test]
fn unary_uses_activation() {
    let x = t(&[1, 4], &[-2., -0.5, 0.5, 8.]);
    let y = run1(&x, |g, xi| g.unary("relu6", xi, Activation::Clip { min: 0.0, max: 6.0 }).unwrap());
    assert_close(&y, &[1, 4], &[0., 0., 0.5, 6.], 0.0);
    let y = run1(&x, |g, xi| g.unary("sig", xi, Activation::Sigmoid).unwrap());
    let expected: Vec<f32> = x.data().iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect();
    assert_close(&y, &[1, 4], &expected, 1e-6);
}

#[test]
fn softmax_values_and_axis() {
    let x = t(&[1, 3], &[1., 2., 3.]);
    let y = run1(&x, |g, xi| g.add("sm", Op::Softmax { axis: 1, kind: SoftmaxKind::Softmax }, vec![xi]).unwrap());
    assert_close(&y, &[1, 3], &[0.09003057, 0.24472847, 0.66524096], 1e-6);
    // Large values do not overflow (max subtracted).
    let x = t(&[1, 2], &[1000., 1000.]);
    let y = run1(&x, |g, xi| g.add("sm", Op::Softmax { axis: 1, kind: SoftmaxKind::Softmax }, vec![xi]).unwrap());
    assert_close(&y, &[1, 2], &[0.5, 0.5], 0.0);
    // Axis 1 of [1, 2, 2]: over columns. Column [0, ln 3]: [1/4, 3/4].
    let x = t(&[1, 2, 2], &[0., 5., 3f32.ln(), 5.]);
    let y = run1(&x, |g, xi| g.add("sm", Op::Softmax { axis: 1, kind: SoftmaxKind::Softmax }, vec![xi]).unwrap());
    assert_close(&y, &[1, 2, 2], &[0.25, 0.5, 0.75, 0.5], 1e-6);
}

#[test]
fn layer_norm_last_axis_and_two_axes() {
    let x = t(&[1, 2, 2], &[1., 2., 3., 4.]);
    // Last axis: each row normalises to [-1, 1]; scale [2, 3], bias [0.5, -0.5].
    let y = run1(&x, |g, xi| {
        let s = g.constant("s", t(&[2], &[2., 3.]));
        let b = g.constant("b", t(&[2], &[0.5, -0.5]));
        g.add("ln", Op::LayerNorm { axis: 2, epsilon: 0.0 }, vec![xi, s, b]).unwrap()
    });
    assert_close(&y, &[1, 2, 2], &[-1.5, 2.5, -1.5, 2.5], 1e-6);
    // Axes 1..3: mean 2.5, variance 1.25; scale [1, 2] broadcast over the last axis.
    let y = run1(&x, |g, xi| {
        let s = g.constant("s", t(&[2], &[1., 2.]));
        g.add("ln", Op::LayerNorm { axis: 1, epsilon: 0.0 }, vec![xi, s]).unwrap()
    });
    let r = 1.25f32.sqrt();
    assert_close(&y, &[1, 2, 2], &[-1.5 / r, -1.0 / r, 0.5 / r, 3.0 / r], 1e-6);
    // Epsilon counts: variance 0.25 + 0.75 = 1 -> (x - mean) unscaled.
    let y = run1(&x, |g, xi| {
        let s = g.constant("s", t(&[1], &[1.]));
        g.add("ln", Op::LayerNorm { axis: 2, epsilon: 0.75 }, vec![xi, s]).unwrap()
    });
    assert_close(&y, &[1, 2, 2], &[-0.5, 0.5, -0.5, 0.5], 1e-6);
}

#[test]
fn batch_norm_per_channel() {
    // Channel 0: (x - 1) / 2 * 2 + 1 = x; channel 1: (x - 3) / 0.5 * 0.25 + 10.
    let x = t(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
    let y = run1(&x, |g, xi| {
        let ins = [[2., 0.25], [1., 10.], [1., 3.], [4., 0.25]]
            .iter()
            .zip(["scale", "bias", "mean", "var"])
            .map(|(v, n)| g.constant(n, t(&[2], v)))
            .collect::<Vec<_>>();
        g.add("bn", Op::BatchNorm { epsilon: 0.0 }, [vec![xi], ins].concat()).unwrap()
    });
    assert_close(&y, &[1, 2, 1, 2], &[1., 2., 10., 10.5], 1e-6);
}

#[test]
fn lrn_windows() {
    let x = t(&[1, 3, 1, 1], &[1., 2., 3.]);
    // Size 3 (channels c-1..=c+1), alpha/size = 1, bias 1, beta 1.
    let y = run1(&x, |g, xi| {
        g.add("lrn", Op::Lrn(LrnAttrs { size: 3, alpha: 3.0, beta: 1.0, bias: 1.0 }), vec![xi]).unwrap()
    });
    assert_close(&y, &[1, 3, 1, 1], &[1. / 6., 2. / 15., 3. / 14.], 1e-6);
    // Size 2 (channels c..=c+1), alpha/size = 1, bias 1, beta 0.5.
    let y = run1(&x, |g, xi| {
        g.add("lrn", Op::Lrn(LrnAttrs { size: 2, alpha: 2.0, beta: 0.5, bias: 1.0 }), vec![xi]).unwrap()
    });
    let expected = [1. / 6f32.sqrt(), 2. / 14f32.sqrt(), 3. / 10f32.sqrt()];
    assert_close(&y, &[1, 3, 1, 1], &expected, 1e-6);
}

// ----- data movement ---------------------------------------------------------------------

#[test]
fn concat_and_split() {
    let mut g = GraphBuilder::new("cs");
    let a = g.input("a", &[1, 2, 1]);
    let b = g.input("b", &[1, 2, 2]);
    let c = g.add("cat", Op::Concat { axis: 2 }, vec![a, b]).unwrap();
    let parts = g.add_multi("split", Op::Split { axis: 1, sizes: vec![1, 1] }, vec![c]).unwrap();
    g.output(c);
    g.output(parts[1]);
    g.output(parts[0]);
    let graph = g.build().unwrap();
    let out = run(&graph, &[t(&[1, 2, 1], &[1., 4.]), t(&[1, 2, 2], &[2., 3., 5., 6.])]).unwrap();
    assert_eq!(out.len(), 3);
    assert_close(&out[0], &[1, 2, 3], &[1., 2., 3., 4., 5., 6.], 0.0);
    assert_close(&out[1], &[1, 1, 3], &[4., 5., 6.], 0.0);
    assert_close(&out[2], &[1, 1, 3], &[1., 2., 3.], 0.0);
    // Split of the last axis into uneven pieces, batch 2.
    let x = seq(&[2, 2, 3]);
    let mut g = GraphBuilder::new("split");
    let xi = g.input("x", &[2, 2, 3]);
    let parts = g.add_multi("split", Op::Split { axis: 2, sizes: vec![2, 1] }, vec![xi]).unwrap();
    g.output(parts[0]);
    g.output(parts[1]);
    let out = run(&g.build().unwrap(), &[x]).unwrap();
    assert_close(&out[0], &[2, 2, 2], &[1., 2., 4., 5., 7., 8., 10., 11.], 0.0);
    assert_close(&out[1], &[2, 2, 1], &[3., 6., 9., 12.], 0.0);
}

fn slice1(x: &Tensor, axes: &[usize], starts: &[i64], ends: &[i64], steps: &[i64]) -> Tensor {
    run1(x, |g, xi| {
        let op = Op::Slice { axes: axes.to_vec(), starts: starts.to_vec(), ends: ends.to_vec(), steps: steps.to_vec() };
        g.add("slice", op, vec![xi]).unwrap()
    })
}

#[test]
fn slices() {
    let x = t(&[1, 5], &[0., 1., 2., 3., 4.]);
    assert_close(&slice1(&x, &[1], &[1], &[4], &[1]), &[1, 3], &[1., 2., 3.], 0.0);
    assert_close(&slice1(&x, &[1], &[0], &[i64::MAX], &[2]), &[1, 3], &[0., 2., 4.], 0.0);
    // Negative step: from the last element backwards by 2, end before the start.
    assert_close(&slice1(&x, &[1], &[-1], &[-6], &[-2]), &[1, 3], &[4., 2., 0.], 0.0);
    assert_close(&slice1(&x, &[1], &[3], &[0], &[-1]), &[1, 3], &[3., 2., 1.], 0.0);
    assert_close(&slice1(&x, &[1], &[i64::MAX], &[i64::MIN], &[-1]), &[1, 5], &[4., 3., 2., 1., 0.], 0.0);
    // Two axes of a [1, 3, 4] tensor: rows 2..0 backwards, columns 1..4 step 2.
    let x = seq(&[1, 3, 4]);
    let y = slice1(&x, &[2, 1], &[1, 2], &[4, 0], &[2, -1]);
    assert_close(&y, &[1, 2, 2], &[10., 12., 6., 8.], 0.0);
}

#[test]
fn reshape_flatten_transpose() {
    let x = seq(&[2, 2, 3]);
    let y = run1(&x, |g, xi| g.flatten("flat", xi, 1).unwrap());
    assert_close(&y, &[2, 6], x.data(), 0.0);
    let y = run1(&x, |g, xi| g.reshape("r", xi, &[2, 3, 1, 2]).unwrap());
    assert_close(&y, &[2, 3, 1, 2], x.data(), 0.0);
    // The batch is an ordinary axis: merged into another, or moved.
    let y = run1(&x, |g, xi| g.reshape("r", xi, &[4, 3]).unwrap());
    assert_close(&y, &[4, 3], x.data(), 0.0);
    let y = run1(&x, |g, xi| g.add("tr", Op::Transpose { perm: vec![1, 0, 2] }, vec![xi]).unwrap());
    assert_close(&y, &[2, 2, 3], &[1., 2., 3., 7., 8., 9., 4., 5., 6., 10., 11., 12.], 0.0);
    let y = run1(&x, |g, xi| g.add("tr", Op::Transpose { perm: vec![0, 2, 1] }, vec![xi]).unwrap());
    assert_close(&y, &[2, 3, 2], &[1., 4., 2., 5., 3., 6., 7., 10., 8., 11., 9., 12.], 0.0);
    // Rank 4, perm [0, 3, 1, 2] (NCHW -> NWCH): out[0][w][c][h] = x[0][c][h][w].
    let x = seq(&[1, 2, 1, 3]);
    let y = run1(&x, |g, xi| g.add("tr", Op::Transpose { perm: vec![0, 3, 1, 2] }, vec![xi]).unwrap());
    assert_close(&y, &[1, 3, 2, 1], &[1., 4., 2., 5., 3., 6.], 0.0);
}

fn pad1(x: &Tensor, pads: Vec<(usize, usize)>, mode: PadMode) -> Tensor {
    run1(x, |g, xi| g.add("pad", Op::Pad { pads, mode }, vec![xi]).unwrap())
}

#[test]
fn pad_modes() {
    let x = t(&[1, 3], &[1., 2., 3.]);
    let pads = vec![(0, 0), (2, 2)];
    assert_close(&pad1(&x, pads.clone(), PadMode::Reflect), &[1, 7], &[3., 2., 1., 2., 3., 2., 1.], 0.0);
    assert_close(&pad1(&x, pads.clone(), PadMode::Edge), &[1, 7], &[1., 1., 1., 2., 3., 3., 3.], 0.0);
    assert_close(&pad1(&x, pads, PadMode::Constant(9.0)), &[1, 7], &[9., 9., 1., 2., 3., 9., 9.], 0.0);
    // Two axes: [[1,2],[3,4]] padded (1, 0) rows and (0, 1) columns.
    let x = seq(&[1, 2, 2]);
    let pads = vec![(0, 0), (1, 0), (0, 1)];
    assert_close(&pad1(&x, pads.clone(), PadMode::Reflect), &[1, 3, 3], &[3., 4., 3., 1., 2., 1., 3., 4., 3.], 0.0);
    assert_close(&pad1(&x, pads.clone(), PadMode::Edge), &[1, 3, 3], &[1., 2., 2., 1., 2., 2., 3., 4., 4.], 0.0);
    assert_close(&pad1(&x, pads, PadMode::Constant(-1.0)), &[1, 3, 3], &[-1., -1., -1., 1., 2., -1., 3., 4., -1.], 0.0);
}

#[test]
fn reduce_mean_axes() {
    let x = seq(&[1, 2, 3]);
    let rm = |axes: Vec<usize>, keepdims| {
        run1(&x, |g, xi| g.add("rm", Op::Reduce { kind: ReduceKind::Mean, axes, keepdims }, vec![xi]).unwrap())
    };
    assert_close(&rm(vec![2], true), &[1, 2, 1], &[2., 5.], 0.0);
    assert_close(&rm(vec![1], false), &[1, 3], &[2.5, 3.5, 4.5], 0.0);
    assert_close(&rm(vec![2, 1], false), &[1], &[3.5], 0.0);
    assert_close(&rm(vec![1, 2], true), &[1, 1, 1], &[3.5], 0.0);
}

// ----- whole graphs, batches, errors -----------------------------------------------------

/// A small CNN with a branch and a shared value: conv -> relu -> (maxpool, avgpool) ->
/// add -> flatten -> gemm -> softmax, plus the relu output itself as a second output.
fn small_cnn(rng: &mut Rng, batch: usize) -> Graph {
    let mut g = GraphBuilder::new("cnn");
    let x = g.input("x", &[batch, 3, 6, 6]);
    let w = g.constant("w", Tensor::random(vec![4, 3, 3, 3], rng, -0.5, 0.5));
    let b = g.constant("b", Tensor::random(vec![4], rng, -0.5, 0.5));
    let y = g.conv("conv", x, w, Some(b), ConvAttrs { pads: vec![1; 4], ..Default::default() }).unwrap();
    let r = g.unary("relu", y, Activation::Relu).unwrap();
    let p1 = g.pool("max", r, PoolAttrs::new(PoolKind::Max, &[2, 2], &[2, 2])).unwrap();
    let p2 = g.pool("avg", r, PoolAttrs::new(PoolKind::Average, &[2, 2], &[2, 2])).unwrap();
    let s = g.binary("sum", BinaryOp::Add, p1, p2).unwrap();
    let f = g.flatten("flat", s, 1).unwrap();
    let fw = g.constant("fw", Tensor::random(vec![5, 36], rng, -0.5, 0.5));
    let fc = g.gemm("fc", f, fw, None, GemmAttrs { trans_b: true, ..Default::default() }).unwrap();
    let sm = g.add("softmax", Op::Softmax { axis: 1, kind: SoftmaxKind::Softmax }, vec![fc]).unwrap();
    g.output(sm);
    g.output(r);
    g.build().unwrap()
}

#[test]
fn batch_samples_are_independent() {
    let graph = small_cnn(&mut Rng::new(5), 3);
    let single = small_cnn(&mut Rng::new(5), 1);
    let x = Tensor::random(vec![3, 3, 6, 6], &mut Rng::new(6), -1.0, 1.0);
    let all = run(&graph, std::slice::from_ref(&x)).unwrap();
    assert_eq!(all[0].shape(), &[3, 5]);
    assert_eq!(all[1].shape(), &[3, 4, 6, 6]);
    let per = 3 * 6 * 6;
    for n in 0..3 {
        let xn = t(&[1, 3, 6, 6], &x.data()[n * per..(n + 1) * per]);
        let one = run(&single, &[xn]).unwrap();
        for (full, single) in all.iter().zip(&one) {
            let len = single.len();
            assert_eq!(&full.data()[n * len..(n + 1) * len], single.data(), "sample {n}");
        }
    }
    // Softmax rows sum to 1.
    for row in all[0].data().chunks(5) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn input_passed_through_as_output() {
    let mut g = GraphBuilder::new("id");
    let x = g.input("x", &[1, 2]);
    let y = g.unary("neg", x, Activation::LeakyRelu { alpha: -1.0 }).unwrap();
    g.output(x);
    g.output(y);
    let graph = g.build().unwrap();
    let out = run(&graph, &[t(&[1, 2], &[-3., 4.])]).unwrap();
    assert_close(&out[0], &[1, 2], &[-3., 4.], 0.0);
    assert_close(&out[1], &[1, 2], &[3., 4.], 0.0);
}

fn two_input_graph() -> Graph {
    let mut g = GraphBuilder::new("two");
    let a = g.input("a", &[2, 2, 3]);
    let b = g.input("b", &[2, 1, 3]);
    let y = g.binary("add", BinaryOp::Add, a, b).unwrap();
    g.output(y);
    g.build().unwrap()
}

#[track_caller]
fn expect_input_error(r: Result<Vec<Tensor>>, name: &str, needle: &str) {
    match r {
        Err(EngineError::Input { graph, input, reason }) => {
            assert_eq!(graph, "two");
            assert_eq!(input, name);
            assert!(reason.contains(needle), "reason '{reason}' lacks '{needle}'");
        }
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn input_errors() {
    let graph = two_input_graph();
    let a = Tensor::zeros(vec![2, 2, 3]);
    let b = Tensor::zeros(vec![2, 1, 3]);
    assert!(run(&graph, &[a.clone(), b.clone()]).is_ok());
    // Wrong number of inputs.
    expect_input_error(run(&graph, std::slice::from_ref(&a)), "b", "takes 2 input(s)");
    expect_input_error(run(&graph, &[]), "a", "got 0");
    let three = [a.clone(), b.clone(), b.clone()];
    expect_input_error(run(&graph, &three), "(extra input)", "got 3");
    // Wrong shape, rank or type.
    let wrong = [Tensor::zeros(vec![2, 3, 2]), b.clone()];
    expect_input_error(run(&graph, &wrong), "a", "expected shape [2, 2, 3]");
    let wrong = [Tensor::zeros(vec![2, 3]), b.clone()];
    expect_input_error(run(&graph, &wrong), "a", "got [2, 3]");
    let wrong = [a.clone(), Tensor::zeros(vec![3, 1, 3])];
    expect_input_error(run(&graph, &wrong), "b", "expected shape [2, 1, 3]");
    let wrong = [a, Tensor::zeros_of(crate::DType::I64, vec![2, 1, 3])];
    expect_input_error(run(&graph, &wrong), "b", "expected element type float32, got int64");
}

#[test]
fn helpers() {
    // broadcast_map: [2, 1] into [3, 2, 2].
    assert_eq!(broadcast_map(&[2, 1], &[3, 2, 2]).unwrap(), vec![0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]);
    assert!(broadcast_map(&[3], &[2]).is_err());
    assert!(broadcast_map(&[1, 2], &[2]).is_err());
    assert_eq!(broadcast(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
    assert!(broadcast(&[2], &[3]).is_err());
    // Reflection repeats with period 2(d-1); edge clamps.
    let r: Vec<usize> = (-4..7).map(|j| layout::pad_source(j, 3, PadMode::Reflect).unwrap()).collect();
    assert_eq!(r, vec![0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2]);
    assert_eq!(layout::pad_source(-1, 1, PadMode::Reflect), Some(0));
    assert_eq!(layout::pad_source(5, 3, PadMode::Edge), Some(2));
    assert_eq!(layout::pad_source(3, 3, PadMode::Constant(0.0)), None);
    let mut seen = vec![];
    for_each_index(&[2, 3], |i| seen.push(i.to_vec()));
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[4], vec![1, 1]);
}
