//! Reference pooling.

use super::{OpResult, dims4, floats, make};
use crate::ops::{Op, PoolAttrs, PoolKind, pool_out};
use crate::tensor::{Tensor, numel};

pub(super) fn eval(op: &Op, x: &Tensor) -> OpResult<Vec<Tensor>> {
    Ok(vec![match op {
        Op::Pool(a) => pool(x, a)?,
        Op::GlobalPool(kind) => global_pool(x, *kind)?,
        _ => unreachable!("pool family"),
    }])
}

/// Max pooling takes the largest in-bounds tap (padding taps are ignored; a window with no
/// in-bounds tap gives f32::MIN, like onnxruntime). Average pooling follows PyTorch: the
/// window is cut at the end of the padding, its size there is the count_include_pad divisor,
/// and the sum runs over the (dilated) taps inside the input, whose count is the other
/// divisor.
fn pool(x: &Tensor, a: &PoolAttrs) -> OpResult<Tensor> {
    let [n, c, h, w] = dims4(x, "input")?;
    let [kh, kw] = a.kernel;
    let [sh, sw] = a.stride;
    let [dh, dw] = a.dilation;
    let [pt, pl, pb, pr] = a.pads;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || dh == 0 || dw == 0 {
        return Err("kernel, stride and dilation must be >= 1".into());
    }
    let too_big = || format!("window {:?} is larger than the padded input", a.kernel);
    let oh = pool_out(h, pt, pb, kh, dh, sh, a.ceil_mode).ok_or_else(too_big)?;
    let ow = pool_out(w, pl, pr, kw, dw, sw, a.ceil_mode).ok_or_else(too_big)?;
    let (hi, wi) = (h as i64, w as i64);
    // Integers (max pooling only) are exact in f64.
    let xd = if a.kind == PoolKind::Max && x.dtype().is_int() { x.to_f64s() } else { floats(x, "input")? };
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        let xp = &xd[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            let hstart = (oy * sh) as i64 - pt as i64;
            for ox in 0..ow {
                let wstart = (ox * sw) as i64 - pl as i64;
                let v = match a.kind {
                    PoolKind::Max => {
                        let mut best: Option<f64> = None;
                        for ky in 0..kh {
                            let iy = hstart + (ky * dh) as i64;
                            if iy < 0 || iy >= hi {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = wstart + (kx * dw) as i64;
                                if ix < 0 || ix >= wi {
                                    continue;
                                }
                                let xv = xp[iy as usize * w + ix as usize];
                                best = Some(best.map_or(xv, |b| b.max(xv)));
                            }
                        }
                        best.unwrap_or(f32::MIN as f64)
                    }
                    PoolKind::Average => {
                        // The window's taps, cut at the end of the padding.
                        let mut sum = 0f64;
                        let (mut inside, mut in_pad) = (0i64, 0i64);
                        for ky in 0..kh {
                            let iy = hstart + (ky * dh) as i64;
                            if iy >= hi + pb as i64 {
                                break;
                            }
                            for kx in 0..kw {
                                let ix = wstart + (kx * dw) as i64;
                                if ix >= wi + pr as i64 {
                                    break;
                                }
                                in_pad += 1;
                                if iy >= 0 && iy < hi && ix >= 0 && ix < wi {
                                    sum += xp[iy as usize * w + ix as usize];
                                    inside += 1;
                                }
                            }
                        }
                        let divisor = if a.count_include_pad { in_pad } else { inside };
                        if divisor > 0 { sum / divisor as f64 } else { 0.0 }
                    }
                };
                out.push(v);
            }
        }
    }
    make(x.dtype(), vec![n, c, oh, ow], out)
}

/// Max or mean over all spatial dimensions of [N, C, spatial...] to [N, C, 1, ...].
fn global_pool(x: &Tensor, kind: PoolKind) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(format!("input must be [N, C, spatial...], has shape {s:?}"));
    }
    let inner = numel(&s[2..]);
    let xd = floats(x, "input")?;
    let out: Vec<f64> = if inner == 0 {
        vec![f64::NAN; s[0] * s[1]]
    } else {
        xd.chunks(inner)
            .map(|plane| match kind {
                PoolKind::Max => plane.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                PoolKind::Average => plane.iter().sum::<f64>() / plane.len() as f64,
            })
            .collect()
    };
    let mut shape = vec![s[0], s[1]];
    shape.extend(std::iter::repeat_n(1, s.len() - 2));
    make(x.dtype(), shape, out)
}
