//! Reference batch normalisation and local response normalisation.

use super::{OpResult, floats, make, split_at_axis};
use crate::ops::{LrnAttrs, Op};
use crate::tensor::Tensor;

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    Ok(vec![match op {
        Op::BatchNorm { epsilon } => {
            if ins.len() != 5 {
                return Err(format!("takes 5 inputs, got {}", ins.len()));
            }
            batch_norm(ins[0], [ins[1], ins[2], ins[3], ins[4]], *epsilon)?
        }
        Op::Lrn(a) => lrn(ins[0], a)?,
        _ => unreachable!("norm family"),
    }])
}

/// y = (x - mean[c]) / sqrt(var[c] + eps) * scale[c] + bias[c], channel c on axis 1.
fn batch_norm(x: &Tensor, params: [&Tensor; 4], eps: f32) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(format!("input must have a channel axis, has shape {s:?}"));
    }
    let (_, c, inner) = split_at_axis(s, 1);
    for (p, what) in params.iter().zip(["scale", "bias", "mean", "var"]) {
        if p.shape() != [c] {
            return Err(format!("{what} must have shape [{c}], has {:?}", p.shape()));
        }
    }
    let [scale, bias, mean, var] = params.map(|p| p.to_f64s());
    let xd = floats(x, "input")?;
    let out = xd
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / inner.max(1)) % c;
            (v - mean[ch]) / (var[ch] + eps as f64).sqrt() * scale[ch] + bias[ch]
        })
        .collect();
    make(x.dtype(), s.to_vec(), out)
}

/// y = x / (bias + alpha / size * sum of x^2 over the channels [c - (size-1)/2, c +
/// ceil((size-1)/2)] clipped to the tensor)^beta.
fn lrn(x: &Tensor, a: &LrnAttrs) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 3 {
        return Err(format!("input must be [N, C, spatial...], has shape {s:?}"));
    }
    if a.size == 0 {
        return Err("size must be >= 1".into());
    }
    let (n, c, inner) = split_at_axis(s, 1);
    let (before, after) = ((a.size - 1) / 2, a.size / 2);
    let xd = floats(x, "input")?;
    let mut out = Vec::with_capacity(x.len());
    for ni in 0..n {
        for ci in 0..c {
            let (lo, hi) = (ci.saturating_sub(before), (ci + after).min(c - 1));
            for i in 0..inner {
                let at = |ch: usize| (ni * c + ch) * inner + i;
                let sq: f64 = (lo..=hi).map(|ch| xd[at(ch)].powi(2)).sum();
                let denom = (a.bias as f64 + a.alpha as f64 / a.size as f64 * sq).powf(a.beta as f64);
                out.push(xd[at(ci)] / denom);
            }
        }
    }
    make(x.dtype(), s.to_vec(), out)
}
