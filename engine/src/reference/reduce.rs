//! Reference reductions, arg-max/arg-min, softmax variants and layer normalisation.

use super::{OpResult, broadcast_map, check_axis, floats, for_each_index, make, split_at_axis};
use crate::ops::{Op, ReduceKind, SoftmaxKind, reduced_shape};
use crate::tensor::{Tensor, numel, strides};

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let x = ins[0];
    Ok(vec![match op {
        Op::Reduce { kind, axes, keepdims } => reduce(x, *kind, axes, *keepdims)?,
        Op::ArgReduce { max, axis, keepdims, last } => arg_reduce(x, *max, *axis, *keepdims, *last)?,
        Op::Softmax { axis, kind } => softmax(x, *axis, *kind)?,
        Op::LayerNorm { axis, epsilon } => {
            if ins.len() < 2 {
                return Err("takes x, scale and an optional bias".into());
            }
            layer_norm(x, ins[1], ins.get(2).copied(), *axis, *epsilon)?
        }
        _ => unreachable!("reduce family"),
    }])
}

/// The values of each output element's group (reduced axes), in row-major order.
fn groups(shape: &[usize], axes: &[usize]) -> OpResult<(Vec<usize>, Vec<Vec<usize>>)> {
    let mut reduced = vec![false; shape.len()];
    for &axis in axes {
        check_axis(axis, shape.len())?;
        if reduced[axis] {
            return Err(format!("axis {axis} appears twice"));
        }
        reduced[axis] = true;
    }
    let kept_shape: Vec<usize> = shape.iter().zip(&reduced).map(|(&d, &r)| if r { 1 } else { d }).collect();
    let kept_strides = strides(&kept_shape);
    let mut members = vec![vec![]; numel(&kept_shape)];
    let mut i = 0;
    for_each_index(shape, |idx| {
        let o: usize = (0..shape.len()).filter(|&a| !reduced[a]).map(|a| idx[a] * kept_strides[a]).sum();
        members[o].push(i);
        i += 1;
    });
    Ok((kept_shape, members))
}

/// Reduces over the axes; reduced axes become 1 (keepdims) or disappear. Integers are
/// reduced exactly in i64 (a mean truncates toward zero).
fn reduce(x: &Tensor, kind: ReduceKind, axes: &[usize], keepdims: bool) -> OpResult<Tensor> {
    let s = x.shape();
    let (kept_shape, members) = groups(s, axes)?;
    let shape = if keepdims { kept_shape } else { reduced_shape(s, axes, false) };
    if x.dtype().is_int() || x.dtype() == crate::DType::Bool {
        let v = x.to_i64s();
        let out: Vec<i64> = members
            .iter()
            .map(|m| {
                let vals = m.iter().map(|&i| v[i]);
                match kind {
                    ReduceKind::Sum => vals.fold(0i64, |a, b| a.wrapping_add(b)),
                    ReduceKind::Mean => {
                        let s = vals.fold(0i64, |a, b| a.wrapping_add(b));
                        if m.is_empty() { 0 } else { s / m.len() as i64 }
                    }
                    ReduceKind::Max => vals.max().unwrap_or(x.dtype().int_range().0),
                    ReduceKind::Min => vals.min().unwrap_or(x.dtype().int_range().1),
                    ReduceKind::Prod => vals.fold(1i64, |a, b| a.wrapping_mul(b)),
                    ReduceKind::L1 => vals.fold(0i64, |a, b| a.wrapping_add(b.wrapping_abs())),
                    ReduceKind::SumSquare => vals.fold(0i64, |a, b| a.wrapping_add(b.wrapping_mul(b))),
                    _ => 0,
                }
            })
            .collect();
        let bool_ok = x.dtype() == crate::DType::Bool && matches!(kind, ReduceKind::Max | ReduceKind::Min);
        if !kind.on_integers() && !bool_ok {
            return Err(format!("{} of a {} tensor is not defined", kind.name(), x.dtype()));
        }
        return Tensor::from_i64(x.dtype(), shape, out).map_err(|e| e.to_string());
    }
    let v = floats(x, "input")?;
    let out: Vec<f64> = members
        .iter()
        .map(|m| {
            let vals: Vec<f64> = m.iter().map(|&i| v[i]).collect();
            kind.apply(&vals)
        })
        .collect();
    make(x.dtype(), shape, out)
}

/// Index of the first (or last) largest (or smallest) value along the axis; NaN counts as
/// larger than everything for ArgMax and smaller for ArgMin is not special-cased (NaNs are
/// skipped unless every value is NaN).
fn arg_reduce(x: &Tensor, max: bool, axis: usize, keepdims: bool, last: bool) -> OpResult<Tensor> {
    let s = x.shape();
    check_axis(axis, s.len())?;
    let (outer, len, inner) = split_at_axis(s, axis);
    if len == 0 {
        return Err(format!("axis {axis} is empty"));
    }
    let v = x.to_f64s();
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let mut best = 0usize;
            for j in 1..len {
                let (cand, cur) = (v[(o * len + j) * inner + i], v[(o * len + best) * inner + i]);
                let better = if max { cand > cur } else { cand < cur };
                if better || (last && cand == cur) {
                    best = j;
                }
            }
            out.push(best as i64);
        }
    }
    let shape = reduced_shape(s, &[axis], keepdims);
    Tensor::from_i64(crate::DType::I64, shape, out).map_err(|e| e.to_string())
}

/// exp(x - max) / sum exp(x - max) along the axis, its log, or the one-hot of the first
/// maximum.
fn softmax(x: &Tensor, axis: usize, kind: SoftmaxKind) -> OpResult<Tensor> {
    check_axis(axis, x.shape().len())?;
    let (outer, len, inner) = split_at_axis(x.shape(), axis);
    let xd = floats(x, "input")?;
    let mut out = vec![0f64; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let max = (0..len).map(|j| xd[at(j)]).fold(f64::NEG_INFINITY, f64::max);
            match kind {
                SoftmaxKind::Hardmax => {
                    if let Some(j) = (0..len).find(|&j| xd[at(j)] == max) {
                        out[at(j)] = 1.0;
                    }
                }
                _ => {
                    let sum: f64 = (0..len).map(|j| (xd[at(j)] - max).exp()).sum();
                    for j in 0..len {
                        out[at(j)] = match kind {
                            SoftmaxKind::Softmax => (xd[at(j)] - max).exp() / sum,
                            _ => xd[at(j)] - max - sum.ln(),
                        };
                    }
                }
            }
        }
    }
    make(x.dtype(), x.shape().to_vec(), out)
}

/// Normalises over the axes `axis..rank` (mean and biased variance), then scale and bias
/// broadcast to the normalised shape.
fn layer_norm(x: &Tensor, scale: &Tensor, bias: Option<&Tensor>, axis: usize, eps: f32) -> OpResult<Tensor> {
    let s = x.shape();
    check_axis(axis, s.len())?;
    let norm_shape = &s[axis..];
    let len = numel(norm_shape);
    let scale_map = broadcast_map(scale.shape(), norm_shape)?;
    let sd = scale.to_f64s();
    let bias_map = match bias {
        Some(b) => Some((b.to_f64s(), broadcast_map(b.shape(), norm_shape)?)),
        None => None,
    };
    let xd = floats(x, "input")?;
    let mut out = Vec::with_capacity(x.len());
    for row in xd.chunks(len.max(1)) {
        let mean = row.iter().sum::<f64>() / len as f64;
        let var = row.iter().map(|&v| (v - mean).powi(2)).sum::<f64>() / len as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, &v) in row.iter().enumerate() {
            let mut y = (v - mean) * inv * sd[scale_map[j]];
            if let Some((bd, map)) = &bias_map {
                y += bd[map[j]];
            }
            out.push(y);
        }
    }
    make(x.dtype(), s.to_vec(), out)
}
