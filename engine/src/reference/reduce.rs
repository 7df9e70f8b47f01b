//! Reference reductions, arg-max/arg-min, softmax variants, layer normalisation, cumulative
//! sums and products, and TopK (also the host TopK's definition).

use std::cmp::Ordering;

use super::{OpResult, broadcast_map, check_axis, floats, for_each_index, make, split_at_axis};
use crate::ops::{CumulativeKind, Op, ReduceKind, SoftmaxKind, reduced_shape};
use crate::tensor::{DType, Tensor, numel, strides};

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let x = ins[0];
    if let Op::TopKStatic { axis, k, largest } = op {
        return topk(x, *k as i64, *axis, *largest);
    }
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
        Op::Cumulative { kind, axis, exclusive, reverse } => cumulative(x, *kind, *axis, *exclusive, *reverse)?,
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

/// The running sum or product along the axis: inclusive or exclusive (the first output is
/// the identity), from the start or from the end. Floats accumulate in f64, integers in i64
/// (wrapping, then wrapped into the type).
fn cumulative(x: &Tensor, kind: CumulativeKind, axis: usize, exclusive: bool, reverse: bool) -> OpResult<Tensor> {
    let s = x.shape();
    check_axis(axis, s.len())?;
    let (outer, len, inner) = split_at_axis(s, axis);
    let order = |p: usize| if reverse { len - 1 - p } else { p };
    let at = |o: usize, j: usize, i: usize| (o * len + j) * inner + i;
    if x.dtype().is_int() {
        let v = x.to_i64s();
        let mut out = vec![0i64; v.len()];
        let (id, comb): (i64, fn(i64, i64) -> i64) = match kind {
            CumulativeKind::Sum => (0, i64::wrapping_add),
            CumulativeKind::Prod => (1, i64::wrapping_mul),
        };
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = id;
                for p in 0..len {
                    let e = at(o, order(p), i);
                    let next = comb(acc, v[e]);
                    out[e] = if exclusive { acc } else { next };
                    acc = next;
                }
            }
        }
        return Tensor::from_i64(x.dtype(), s.to_vec(), out).map_err(|e| e.to_string());
    }
    let v = floats(x, "input")?;
    let mut out = vec![0f64; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = if kind == CumulativeKind::Sum { 0.0 } else { 1.0 };
            for p in 0..len {
                let e = at(o, order(p), i);
                let next = if kind == CumulativeKind::Sum { acc + v[e] } else { acc * v[e] };
                out[e] = if exclusive { acc } else { next };
                acc = next;
            }
        }
    }
    make(x.dtype(), s.to_vec(), out)
}

/// TopK's order of two values: NaN is larger than every number (and equal to NaN).
fn topk_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// The k largest (or smallest) values along the axis, sorted, equal values by lower index
/// (as ONNX specifies), NaN larger than every number; and their int64 indices. Integers are
/// compared exactly.
pub(super) fn topk(x: &Tensor, k: i64, axis: usize, largest: bool) -> OpResult<Vec<Tensor>> {
    let s = x.shape();
    check_axis(axis, s.len())?;
    if x.dtype() == DType::Bool {
        return Err("TopK of a bool tensor is not defined".into());
    }
    let (outer, len, inner) = split_at_axis(s, axis);
    if k < 0 || k as usize > len {
        return Err(format!("k = {k} is outside 0..={len}, the length of axis {axis}"));
    }
    let k = k as usize;
    let (ints, floats) = if x.dtype().is_int() { (x.to_i64s(), vec![]) } else { (vec![], x.to_f64s()) };
    let cmp =
        |p: usize, q: usize| if floats.is_empty() { ints[p].cmp(&ints[q]) } else { topk_cmp(floats[p], floats[q]) };
    let mut src = Vec::with_capacity(outer * k * inner);
    let mut idx = vec![0i64; outer * k * inner];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let mut order: Vec<usize> = (0..len).collect();
            order.sort_by(|&p, &q| {
                let c = if largest { cmp(at(q), at(p)) } else { cmp(at(p), at(q)) };
                c.then(p.cmp(&q))
            });
            for (r, &j) in order.iter().take(k).enumerate() {
                idx[(o * k + r) * inner + i] = j as i64;
            }
        }
    }
    for o in 0..outer {
        for r in 0..k {
            for i in 0..inner {
                let j = idx[(o * k + r) * inner + i] as usize;
                src.push(Some((o * len + j) * inner + i));
            }
        }
    }
    let mut shape = s.to_vec();
    shape[axis] = k;
    let values = x.gather(shape.clone(), &src, 0.0).map_err(|e| e.to_string())?;
    let indices = Tensor::from_i64(DType::I64, shape, idx).map_err(|e| e.to_string())?;
    Ok(vec![values, indices])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_inclusive_exclusive_reverse() {
        let x = Tensor::new(vec![3], vec![1.0, 2.0, 3.0]).unwrap();
        let run = |kind, exclusive, reverse| cumulative(&x, kind, 0, exclusive, reverse).unwrap().data().to_vec();
        assert_eq!(run(CumulativeKind::Sum, false, false), [1.0, 3.0, 6.0]);
        assert_eq!(run(CumulativeKind::Sum, true, false), [0.0, 1.0, 3.0]);
        assert_eq!(run(CumulativeKind::Sum, false, true), [6.0, 5.0, 3.0]);
        assert_eq!(run(CumulativeKind::Sum, true, true), [5.0, 3.0, 0.0]);
        assert_eq!(run(CumulativeKind::Prod, false, false), [1.0, 2.0, 6.0]);
        assert_eq!(run(CumulativeKind::Prod, true, true), [6.0, 3.0, 1.0]);
        let big = Tensor::from_i64(DType::I32, vec![2], vec![i32::MAX as i64, 1]).unwrap();
        let s = cumulative(&big, CumulativeKind::Sum, 0, false, false).unwrap();
        assert_eq!(s.to_i64s(), [i32::MAX as i64, i32::MIN as i64], "int32 sums wrap");
    }

    #[test]
    fn topk_ties_by_lower_index_and_nan_largest() {
        let x = Tensor::new(vec![5], vec![1.0, f32::NAN, 3.0, 1.0, 3.0]).unwrap();
        let r = topk(&x, 3, 0, true).unwrap();
        assert_eq!(r[1].to_i64s(), [1, 2, 4]);
        let r = topk(&x, 3, 0, false).unwrap();
        assert_eq!(r[1].to_i64s(), [0, 3, 2]);
        let r = topk(&x, 5, 0, false).unwrap();
        assert_eq!(r[1].to_i64s(), [0, 3, 2, 4, 1], "NaN comes last among the smallest");
    }
}
