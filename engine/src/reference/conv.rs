//! Reference convolutions over 1 to 3 spatial axes (each computed as a 3-D sweep whose
//! leading axes have unit size), deformable convolution and Col2Im.

use super::{OpResult, activate, floats, make};
use crate::ops::{
    Col2ImAttrs, ConvAttrs, ConvTransposeAttrs, DeformConvAttrs, MAX_SPATIAL, Op, axes3, check_axes, col2im_blocks,
    conv_dims, conv_transpose_dims, pads3,
};
use crate::tensor::Tensor;

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let arity = |lo: usize, hi: usize| -> OpResult<()> {
        if ins.len() < lo || ins.len() > hi {
            Err(format!("takes {lo}..={hi} inputs, got {}", ins.len()))
        } else {
            Ok(())
        }
    };
    Ok(vec![match op {
        Op::Conv(a) => {
            arity(2, 3)?;
            conv(ins[0], ins[1], ins.get(2).copied(), a)?
        }
        Op::ConvTranspose(a) => {
            arity(2, 3)?;
            conv_transpose(ins[0], ins[1], ins.get(2).copied(), a)?
        }
        Op::DeformConv(a) => {
            arity(4, 5)?;
            deform_conv(ins[0], ins[1], ins[2], ins[3], ins.get(4).copied(), a)?
        }
        Op::Col2Im(a) => {
            arity(1, 1)?;
            col2im(ins[0], a)?
        }
        _ => unreachable!("conv family"),
    }])
}

/// The spatial rank of x [N, C, spatial...] (1 to 3 axes), checked against the weight's.
fn spatial_rank(x: &Tensor, w: &Tensor) -> OpResult<usize> {
    let r = x.shape().len();
    if !(3..=2 + MAX_SPATIAL).contains(&r) || w.shape().len() != r {
        return Err(format!(
            "input {:?} must be [N, C, spatial...] with 1 to {MAX_SPATIAL} spatial axes and the weight {:?} of its rank",
            x.shape(),
            w.shape()
        ));
    }
    Ok(r - 2)
}

fn check_bias(bias: Option<&Tensor>, m: usize) -> OpResult<()> {
    match bias {
        Some(b) if b.shape() != [m] => Err(format!("bias must have shape [{m}], has {:?}", b.shape())),
        _ => Ok(()),
    }
}

/// Input position of output `o` through tap `k` on one axis (stride `s`, dilation `d`,
/// begin pad `p`), when it lies inside `len`.
fn tap(o: usize, k: usize, s: usize, d: usize, p: usize, len: usize) -> Option<usize> {
    (o * s + k * d).checked_sub(p).filter(|&i| i < len)
}

/// out[n][m][o] = bias[m] + sum over the channels c of m's group and the taps k of
/// x[n][c][o*s - pad_begin + k*d] * w[m][c - group start][k] (per axis; taps outside the
/// input read zero); then the activation.
fn conv(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, a: &ConvAttrs) -> OpResult<Tensor> {
    let ns = spatial_rank(x, w)?;
    let (xs, ws) = (x.shape(), w.shape());
    let (n, c, m, cg) = (xs[0], xs[1], ws[0], ws[1]);
    let g = a.groups;
    if g == 0 || c % g != 0 || m % g != 0 || cg * g != c {
        return Err(format!("groups {g} do not fit input channels {c} and weight {ws:?}"));
    }
    check_bias(bias, m)?;
    check_axes(ns, &[("stride", &a.stride), ("dilation", &a.dilation)], &a.pads)?;
    if a.stride.contains(&0) || a.dilation.contains(&0) || ws.contains(&0) || xs.contains(&0) {
        return Err("input and kernel dimensions, stride and dilation must be >= 1".into());
    }
    let dims = conv_dims(&xs[2..], &ws[2..], &a.stride, &a.pads, &a.dilation)?;
    let (id, k, od) = (axes3(&xs[2..], 1), axes3(&ws[2..], 1), axes3(&dims, 1));
    let (s, d, (p, _)) = (axes3(&a.stride, 1), axes3(&a.dilation, 1), pads3(&a.pads));
    let (isz, ksz) = (id.iter().product::<usize>(), k.iter().product::<usize>());
    let mg = m / g;
    let (xd, wd) = (floats(x, "input")?, floats(w, "weight")?);
    let bd = bias.map(|b| b.to_f64s());
    let mut out = Vec::with_capacity(n * m * od.iter().product::<usize>());
    for ni in 0..n {
        for mi in 0..m {
            let group = mi / mg;
            let b = bd.as_ref().map_or(0.0, |b| b[mi]);
            for oz in 0..od[0] {
                for oy in 0..od[1] {
                    for ox in 0..od[2] {
                        let mut acc = b;
                        for ci in 0..cg {
                            let xc = &xd[(ni * c + group * cg + ci) * isz..][..isz];
                            let wc = &wd[(mi * cg + ci) * ksz..][..ksz];
                            for kz in 0..k[0] {
                                let Some(iz) = tap(oz, kz, s[0], d[0], p[0], id[0]) else { continue };
                                for ky in 0..k[1] {
                                    let Some(iy) = tap(oy, ky, s[1], d[1], p[1], id[1]) else { continue };
                                    for kx in 0..k[2] {
                                        let Some(ix) = tap(ox, kx, s[2], d[2], p[2], id[2]) else { continue };
                                        acc += xc[(iz * id[1] + iy) * id[2] + ix] * wc[(kz * k[1] + ky) * k[2] + kx];
                                    }
                                }
                            }
                        }
                        out.push(activate(a.activation, acc));
                    }
                }
            }
        }
    }
    make(x.dtype(), [vec![n, m], dims].concat(), out)
}

/// Scatter formulation: every input x[n][c][i] and tap k adds x * w[c][mo][k] into
/// out[n][group*Mg + mo][i*s - pad_begin + k*d] (per axis) when that lies inside the output;
/// then bias and activation.
fn conv_transpose(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, a: &ConvTransposeAttrs) -> OpResult<Tensor> {
    let ns = spatial_rank(x, w)?;
    let (xs, ws) = (x.shape(), w.shape());
    let (n, c, mg) = (xs[0], xs[1], ws[1]);
    let g = a.groups;
    if g == 0 || ws[0] != c || c % g != 0 {
        return Err(format!("weight {ws:?} does not fit {c} input channels in {g} groups"));
    }
    let m = mg * g;
    check_bias(bias, m)?;
    check_axes(
        ns,
        &[("stride", &a.stride), ("dilation", &a.dilation), ("output_padding", &a.output_padding)],
        &a.pads,
    )?;
    if a.stride.contains(&0) || a.dilation.contains(&0) || ws.contains(&0) || xs.contains(&0) {
        return Err("input and kernel dimensions, stride and dilation must be >= 1".into());
    }
    let dims = conv_transpose_dims(&xs[2..], &ws[2..], a)?;
    let (id, k, od) = (axes3(&xs[2..], 1), axes3(&ws[2..], 1), axes3(&dims, 1));
    let (s, d, (p, _)) = (axes3(&a.stride, 1), axes3(&a.dilation, 1), pads3(&a.pads));
    let (ksz, osz) = (k.iter().product::<usize>(), od.iter().product::<usize>());
    let cg = c / g;
    // Output position of input i through tap k on one axis, when inside the output.
    let place = |ax: usize, i: usize, kk: usize| (i * s[ax] + kk * d[ax]).checked_sub(p[ax]).filter(|&o| o < od[ax]);
    let (xd, wd) = (floats(x, "input")?, floats(w, "weight")?);
    let mut acc = vec![0f64; n * m * osz];
    let mut xi = 0;
    for ni in 0..n {
        for ci in 0..c {
            let group = ci / cg;
            for iz in 0..id[0] {
                for iy in 0..id[1] {
                    for ix in 0..id[2] {
                        let xv = xd[xi];
                        xi += 1;
                        for mo in 0..mg {
                            let out = &mut acc[(ni * m + group * mg + mo) * osz..][..osz];
                            let wc = &wd[(ci * mg + mo) * ksz..][..ksz];
                            for kz in 0..k[0] {
                                let Some(oz) = place(0, iz, kz) else { continue };
                                for ky in 0..k[1] {
                                    let Some(oy) = place(1, iy, ky) else { continue };
                                    for kx in 0..k[2] {
                                        let Some(ox) = place(2, ix, kx) else { continue };
                                        out[(oz * od[1] + oy) * od[2] + ox] += xv * wc[(kz * k[1] + ky) * k[2] + kx];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let bd = bias.map(|b| b.to_f64s());
    let out = acc
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let b = bd.as_ref().map_or(0.0, |b| b[(i / osz) % m]);
            activate(a.activation, v + b)
        })
        .collect();
    make(x.dtype(), [vec![n, m], dims].concat(), out)
}

/// Bilinear sample of the plane `p` ([h, w]) at (y, x); the four neighbours outside the
/// plane read zero.
pub(crate) fn bilinear_zero(p: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = (y - y0, x - x0);
    let at = |yy: f64, xx: f64| -> f64 {
        if yy < 0.0 || xx < 0.0 || yy >= h as f64 || xx >= w as f64 { 0.0 } else { p[yy as usize * w + xx as usize] }
    };
    (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x0 + 1.0))
        + fy * ((1.0 - fx) * at(y0 + 1.0, x0) + fx * at(y0 + 1.0, x0 + 1.0))
}

/// out[n][m][oy][ox] = bias[m] + sum over the channels c of m's group and the taps (ky, kx)
/// of w[m][c - group start][ky][kx] * mask * x[n][c] sampled bilinearly at
/// (oy*sh - pad_top + ky*dh + dy, ox*sw - pad_left + kx*dw + dx), where (dy, dx) and mask
/// are those of the tap in c's offset group at (oy, ox).
fn deform_conv(
    x: &Tensor,
    w: &Tensor,
    offset: &Tensor,
    bias: &Tensor,
    mask: Option<&Tensor>,
    a: &DeformConvAttrs,
) -> OpResult<Tensor> {
    let (xs, ws, os) = (x.shape(), w.shape(), offset.shape());
    if xs.len() != 4 || ws.len() != 4 || os.len() != 4 {
        return Err(format!(
            "input {xs:?}, weight {ws:?} and offset {os:?} must have rank 4 (deformable convolution is 2-D)"
        ));
    }
    let [n, c, h, wd] = [xs[0], xs[1], xs[2], xs[3]];
    let [m, cg, kh, kw] = [ws[0], ws[1], ws[2], ws[3]];
    let (g, og) = (a.groups, a.offset_groups);
    if g == 0 || og == 0 || cg * g != c || m % g != 0 || c % og != 0 {
        return Err(format!("group {g} and offset_group {og} do not fit input {xs:?} and weight {ws:?}"));
    }
    check_bias(Some(bias), m)?;
    check_axes(2, &[("stride", &a.stride), ("dilation", &a.dilation)], &a.pads)?;
    if a.stride.contains(&0) || a.dilation.contains(&0) || ws.contains(&0) || xs.contains(&0) {
        return Err("input and kernel dimensions, stride and dilation must be >= 1".into());
    }
    let dims = conv_dims(&xs[2..], &ws[2..], &a.stride, &a.pads, &a.dilation)?;
    let (oh, ow) = (dims[0], dims[1]);
    let taps = kh * kw;
    if os != [n, og * taps * 2, oh, ow] || mask.is_some_and(|k| k.shape() != [n, og * taps, oh, ow]) {
        return Err(format!("offset {os:?} or mask does not fit {og} offset groups of {kh}x{kw} taps over {oh}x{ow}"));
    }
    let (xd, wdat, od, bd) = (floats(x, "input")?, floats(w, "weight")?, floats(offset, "offset")?, bias.to_f64s());
    let md = mask.map(|k| floats(k, "mask")).transpose()?;
    let (mg, c_per_og, plane) = (m / g, c / og, oh * ow);
    let mut out = Vec::with_capacity(n * m * plane);
    for ni in 0..n {
        for mi in 0..m {
            let group = mi / mg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bd[mi];
                    for ci in 0..cg {
                        let cin = group * cg + ci;
                        let ogi = cin / c_per_og;
                        let xp = &xd[(ni * c + cin) * h * wd..][..h * wd];
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let t = ogi * taps + ky * kw + kx;
                                let pix = oy * ow + ox;
                                let dy = od[(ni * og * taps * 2 + 2 * t) * plane + pix];
                                let dx = od[(ni * og * taps * 2 + 2 * t + 1) * plane + pix];
                                let k = md.as_ref().map_or(1.0, |md| md[(ni * og * taps + t) * plane + pix]);
                                let y = (oy * a.stride[0] + ky * a.dilation[0]) as f64 - a.pads[0] as f64 + dy;
                                let xx = (ox * a.stride[1] + kx * a.dilation[1]) as f64 - a.pads[1] as f64 + dx;
                                let wv = wdat[((mi * cg + ci) * kh + ky) * kw + kx];
                                acc += wv * k * bilinear_zero(xp, h, wd, y, xx);
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    make(x.dtype(), vec![n, m, oh, ow], out)
}

/// Scatter-add of column blocks: column c*K + k (k a tap of the block, row-major) of block l
/// (row-major over the blocks) adds to image position l*s - pad_begin + k*d (per axis) of
/// channel c, when that lies inside the image.
fn col2im(x: &Tensor, a: &Col2ImAttrs) -> OpResult<Tensor> {
    let xs = x.shape();
    let ns = a.image.len();
    if xs.len() != 3 || !(1..=MAX_SPATIAL).contains(&ns) {
        return Err(format!("input {xs:?} must be [N, C*prod(block), L] and the image 1 to {MAX_SPATIAL}-D"));
    }
    check_axes(ns, &[("block_shape", &a.block), ("strides", &a.stride), ("dilations", &a.dilation)], &a.pads)?;
    if a.block.contains(&0) || a.stride.contains(&0) || a.dilation.contains(&0) {
        return Err("block_shape, strides and dilations must be >= 1".into());
    }
    let blocks = col2im_blocks(a)?;
    let ksz: usize = a.block.iter().product();
    let l: usize = blocks.iter().product();
    if !xs[1].is_multiple_of(ksz) || xs[2] != l {
        return Err(format!("input {xs:?} does not hold {ksz}-tap columns of {l} blocks"));
    }
    let (n, c) = (xs[0], xs[1] / ksz);
    let (im, k, nb) = (axes3(&a.image, 1), axes3(&a.block, 1), axes3(&blocks, 1));
    let (s, d, (p, _)) = (axes3(&a.stride, 1), axes3(&a.dilation, 1), pads3(&a.pads));
    let isz: usize = im.iter().product();
    let place = |ax: usize, b: usize, kk: usize| (b * s[ax] + kk * d[ax]).checked_sub(p[ax]).filter(|&o| o < im[ax]);
    let xd = floats(x, "input")?;
    let mut out = vec![0f64; n * c * isz];
    for ni in 0..n {
        for ci in 0..c {
            let img = &mut out[(ni * c + ci) * isz..][..isz];
            for kz in 0..k[0] {
                for ky in 0..k[1] {
                    for kx in 0..k[2] {
                        let kk = (kz * k[1] + ky) * k[2] + kx;
                        let col = &xd[(ni * c * ksz + ci * ksz + kk) * l..][..l];
                        for bz in 0..nb[0] {
                            let Some(z) = place(0, bz, kz) else { continue };
                            for by in 0..nb[1] {
                                let Some(y) = place(1, by, ky) else { continue };
                                for bx in 0..nb[2] {
                                    let Some(xx) = place(2, bx, kx) else { continue };
                                    img[(z * im[1] + y) * im[2] + xx] += col[(bz * nb[1] + by) * nb[2] + bx];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    make(x.dtype(), [vec![n, c], a.image.clone()].concat(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), v.to_vec()).unwrap()
    }

    #[test]
    fn conv_1d_and_3d_match_2d_with_unit_axes() {
        // A 1-D convolution is the 2-D one over a unit height; a 3-D one over a unit depth.
        let x: Vec<f32> = (0..2 * 7).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..3 * 2 * 3).map(|i| (i as f32 * 0.91).cos()).collect();
        let a1 = ConvAttrs { stride: vec![2], pads: vec![1, 2], dilation: vec![2], ..ConvAttrs::spatial(1) };
        let a2 = ConvAttrs { stride: vec![1, 2], pads: vec![0, 1, 0, 2], dilation: vec![1, 2], ..Default::default() };
        let a3 = ConvAttrs {
            stride: vec![1, 1, 2],
            pads: vec![0, 0, 1, 0, 0, 2],
            dilation: vec![1, 1, 2],
            ..ConvAttrs::spatial(3)
        };
        let y1 = conv(&t(&[1, 2, 7], &x), &t(&[3, 2, 3], &w), None, &a1).unwrap();
        let y2 = conv(&t(&[1, 2, 1, 7], &x), &t(&[3, 2, 1, 3], &w), None, &a2).unwrap();
        let y3 = conv(&t(&[1, 2, 1, 1, 7], &x), &t(&[3, 2, 1, 1, 3], &w), None, &a3).unwrap();
        assert_eq!(y1.shape(), [1, 3, 3]);
        assert_eq!(y1.data(), y2.data());
        assert_eq!(y1.data(), y3.data());
    }

    #[test]
    fn conv_3d_box_filter_counts_inside_taps() {
        // A 2x2x2 box of ones with padding 1: each output counts the input cells its window covers.
        let x = t(&[1, 1, 2, 2, 2], &[1.0; 8]);
        let w = t(&[1, 1, 2, 2, 2], &[1.0; 8]);
        let a = ConvAttrs { pads: vec![1; 6], ..ConvAttrs::spatial(3) };
        let y = conv(&x, &w, None, &a).unwrap();
        assert_eq!(y.shape(), [1, 1, 3, 3, 3]);
        assert_eq!(y.data()[0], 1.0); // corner: one cell
        assert_eq!(y.data()[1], 2.0); // edge: two cells
        assert_eq!(y.data()[13], 8.0); // centre: all eight
    }

    #[test]
    fn conv_transpose_3d_scatters_each_input_into_a_block() {
        // Stride 2, a 2x2x2 kernel of ones: every input cell becomes a 2x2x2 block.
        let x = t(&[1, 1, 1, 1, 2], &[3.0, 5.0]);
        let w = t(&[1, 1, 2, 2, 2], &[1.0; 8]);
        let a = ConvTransposeAttrs { stride: vec![2; 3], ..ConvTransposeAttrs::spatial(3) };
        let y = conv_transpose(&x, &w, None, &a).unwrap();
        assert_eq!(y.shape(), [1, 1, 2, 2, 4]);
        assert_eq!(&y.data()[..4], &[3.0, 3.0, 5.0, 5.0]);
        assert_eq!(y.data().iter().sum::<f32>(), 8.0 * 8.0);
    }

    #[test]
    fn col2im_sums_overlapping_blocks() {
        // 1-D image of 4, blocks of 2 with stride 1: 3 blocks; position i gets the taps that
        // cover it (interior positions two of them).
        let cols = t(&[1, 2, 3], &[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]);
        let a = Col2ImAttrs { image: vec![4], block: vec![2], stride: vec![1], pads: vec![0, 0], dilation: vec![1] };
        let y = col2im(&cols, &a).unwrap();
        assert_eq!(y.shape(), [1, 1, 4]);
        assert_eq!(y.data(), &[1.0, 2.0 + 10.0, 3.0 + 20.0, 30.0]);
    }

    #[test]
    fn deform_conv_with_zero_offsets_is_a_convolution() {
        let x: Vec<f32> = (0..2 * 4 * 5).map(|i| (i as f32 * 0.3).sin()).collect();
        let w: Vec<f32> = (0..3 * 2 * 2 * 3).map(|i| (i as f32 * 0.7).cos()).collect();
        let (x, w) = (t(&[1, 2, 4, 5], &x), t(&[3, 2, 2, 3], &w));
        let b = t(&[3], &[0.5, -1.0, 2.0]);
        let pads = vec![1, 0, 0, 1];
        let plain = conv(&x, &w, Some(&b), &ConvAttrs { pads: pads.clone(), ..Default::default() }).unwrap();
        let (oh, ow) = (plain.shape()[2], plain.shape()[3]);
        let off = Tensor::zeros(vec![1, 2 * 6 * 2, oh, ow]);
        let a = DeformConvAttrs { stride: vec![1, 1], pads, dilation: vec![1, 1], groups: 1, offset_groups: 2 };
        let y = deform_conv(&x, &w, &off, &b, None, &a).unwrap();
        let e = y.data().iter().zip(plain.data()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(e < 1e-6, "{e}");
        // A whole-pixel offset of +1 column on every tap shifts the sampling one column right.
        let mut shift = vec![0f32; 2 * 6 * 2 * oh * ow];
        for t in 0..12 {
            shift[(2 * t + 1) * oh * ow..(2 * t + 2) * oh * ow].fill(1.0);
        }
        let shifted = deform_conv(&x, &w, &t(&[1, 24, oh, ow], &shift), &b, None, &a).unwrap();
        let moved = conv(&x, &w, Some(&b), &ConvAttrs { pads: vec![1, 0, 0, 1], ..Default::default() });
        // Output column ox with shift 1 equals the plain convolution at column ox + 1.
        let moved = moved.unwrap();
        for ch in 0..3 {
            for oy in 0..oh {
                for ox in 0..ow - 1 {
                    let a = shifted.data()[(ch * oh + oy) * ow + ox];
                    let b = moved.data()[(ch * oh + oy) * ow + ox + 1];
                    assert!((a - b).abs() < 1e-5, "({ch}, {oy}, {ox}): {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn bilinear_zero_pads_outside() {
        let p = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(bilinear_zero(&p, 2, 2, 0.5, 0.5), 2.5);
        assert_eq!(bilinear_zero(&p, 2, 2, -0.5, 0.0), 0.5);
        assert_eq!(bilinear_zero(&p, 2, 2, 1.0, 1.0), 4.0);
        assert_eq!(bilinear_zero(&p, 2, 2, 2.0, 0.0), 0.0);
    }
}
