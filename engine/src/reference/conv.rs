//! Reference convolutions.

use super::{OpResult, activate, dims4, floats, make};
use crate::ops::{ConvAttrs, ConvTransposeAttrs, Op};
use crate::tensor::Tensor;

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let bias = ins.get(2).copied();
    Ok(vec![match op {
        Op::Conv(a) => conv(ins[0], ins[1], bias, a)?,
        Op::ConvTranspose(a) => conv_transpose(ins[0], ins[1], bias, a)?,
        _ => unreachable!("conv family"),
    }])
}

/// Output length of a convolution sweep.
fn conv_len(len: usize, pb: usize, pe: usize, k: usize, d: usize, s: usize) -> OpResult<usize> {
    if k == 0 || d == 0 || s == 0 {
        return Err(format!("kernel {k}, dilation {d} and stride {s} must be >= 1"));
    }
    crate::ops::pool_out(len, pb, pe, k, d, s, false)
        .ok_or_else(|| format!("window {} is larger than the padded input {}", d * (k - 1) + 1, len + pb + pe))
}

/// out[n][m][oy][ox] = bias[m] + sum over the channels c of m's group and the taps (ky, kx) of
/// x[n][c][oy*s - pad_top + ky*d][ox*s - pad_left + kx*d] * w[m][c - group start][ky][kx],
/// taps outside the input reading zero; then the activation.
fn conv(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, a: &ConvAttrs) -> OpResult<Tensor> {
    let [n, c, h, wd] = dims4(x, "input")?;
    let [m, cg, kh, kw] = dims4(w, "weight")?;
    let g = a.groups;
    if g == 0 || c % g != 0 || m % g != 0 || cg * g != c {
        return Err(format!("groups {g} do not fit input channels {c} and weight {:?}", w.shape()));
    }
    if let Some(b) = bias
        && b.shape() != [m]
    {
        return Err(format!("bias must have shape [{m}], has {:?}", b.shape()));
    }
    let (sh, sw) = (a.stride[0], a.stride[1]);
    let (dh, dw) = (a.dilation[0], a.dilation[1]);
    let (pt, pl) = (a.pads[0] as isize, a.pads[1] as isize);
    let oh = conv_len(h, a.pads[0], a.pads[2], kh, dh, sh)?;
    let ow = conv_len(wd, a.pads[1], a.pads[3], kw, dw, sw)?;
    let mg = m / g;
    let (xd, wdat) = (floats(x, "input")?, floats(w, "weight")?);
    let bd = bias.map(|b| b.to_f64s());
    let mut out = Vec::with_capacity(n * m * oh * ow);
    for ni in 0..n {
        for mi in 0..m {
            let group = mi / mg;
            let b = bd.as_ref().map_or(0.0, |b| b[mi]);
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b;
                    for ci in 0..cg {
                        let cin = group * cg + ci;
                        for ky in 0..kh {
                            let iy = (oy * sh + ky * dh) as isize - pt;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * sw + kx * dw) as isize - pl;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let xv = xd[((ni * c + cin) * h + iy as usize) * wd + ix as usize];
                                let wv = wdat[((mi * cg + ci) * kh + ky) * kw + kx];
                                acc += xv * wv;
                            }
                        }
                    }
                    out.push(activate(a.activation, acc));
                }
            }
        }
    }
    make(x.dtype(), vec![n, m, oh, ow], out)
}

/// Scatter formulation: every input pixel x[n][c][iy][ix] and tap (ky, kx) adds
/// x * w[c][mo][ky][kx] into out[n][group*Mg + mo][iy*s - pad_top + ky*d][ix*s - pad_left +
/// kx*d] when that lies inside the output; then bias and activation.
fn conv_transpose(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, a: &ConvTransposeAttrs) -> OpResult<Tensor> {
    let [n, c, h, wd] = dims4(x, "input")?;
    let [wc, mg, kh, kw] = dims4(w, "weight")?;
    let g = a.groups;
    if g == 0 || wc != c || c % g != 0 {
        return Err(format!("weight {:?} does not fit {c} input channels in {g} groups", w.shape()));
    }
    let m = mg * g;
    if let Some(b) = bias
        && b.shape() != [m]
    {
        return Err(format!("bias must have shape [{m}], has {:?}", b.shape()));
    }
    let cg = c / g;
    let out_len = |i: usize, len: usize, k: usize| -> OpResult<usize> {
        let full = (len as i64 - 1) * a.stride[i] as i64
            + a.dilation[i] as i64 * (k as i64 - 1)
            + 1
            + a.output_padding[i] as i64
            - (a.pads[i] + a.pads[i + 2]) as i64;
        if full > 0 { Ok(full as usize) } else { Err(format!("padding {:?} leaves an empty output", a.pads)) }
    };
    let oh = out_len(0, h, kh)?;
    let ow = out_len(1, wd, kw)?;
    let (sh, sw) = (a.stride[0] as isize, a.stride[1] as isize);
    let (dh, dw) = (a.dilation[0] as isize, a.dilation[1] as isize);
    let (pt, pl) = (a.pads[0] as isize, a.pads[1] as isize);
    let (xd, wdat) = (floats(x, "input")?, floats(w, "weight")?);
    let mut acc = vec![0f64; n * m * oh * ow];
    for ni in 0..n {
        for ci in 0..c {
            let group = ci / cg;
            for mo in 0..mg {
                let mi = group * mg + mo;
                for iy in 0..h {
                    for ix in 0..wd {
                        let xv = xd[((ni * c + ci) * h + iy) * wd + ix];
                        for ky in 0..kh {
                            let oy = iy as isize * sh - pt + ky as isize * dh;
                            if oy < 0 || oy >= oh as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ox = ix as isize * sw - pl + kx as isize * dw;
                                if ox < 0 || ox >= ow as isize {
                                    continue;
                                }
                                let wv = wdat[((ci * mg + mo) * kh + ky) * kw + kx];
                                acc[((ni * m + mi) * oh + oy as usize) * ow + ox as usize] += xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    let plane = oh * ow;
    let bd = bias.map(|b| b.to_f64s());
    let out = acc
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let b = bd.as_ref().map_or(0.0, |b| b[(i / plane) % m]);
            activate(a.activation, v + b)
        })
        .collect();
    make(x.dtype(), vec![n, m, oh, ow], out)
}
