//! Reference host operations (data-dependent output shapes): NonZero, NonMaxSuppression,
//! Unique, TopK (defined with the device's TopK in `reduce.rs`) and Compress. These run on
//! the CPU between device graphs.

use super::{OpResult, check_axis, split_at_axis};
use crate::ops::{NmsAttrs, Op};
use crate::tensor::{DType, Tensor, strides};

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    match op {
        Op::NonZero => nonzero(ins[0]).map(|t| vec![t]),
        Op::NonMaxSuppression(a) => nms(ins, a).map(|t| vec![t]),
        Op::Unique { sorted, axis } => unique(ins[0], *sorted, *axis),
        Op::TopK { axis, largest, sorted: _ } => {
            let k = ins.get(1).ok_or("takes x and k")?;
            if k.len() != 1 || !k.dtype().is_int() {
                return Err(format!("k must be one integer, it is {} {:?}", k.dtype(), k.shape()));
            }
            let k = k.i64_at(0);
            super::reduce::topk(ins[0], k, *axis, *largest)
        }
        Op::Range => range(ins),
        Op::Compress { axis } => {
            let cond = ins.get(1).ok_or("takes input and condition")?;
            compress(ins[0], cond, *axis).map(|t| vec![t])
        }
        Op::ConstantOfShape { value } => {
            let shape = ins[0].to_i64s();
            if let Some(bad) = shape.iter().find(|&&d| d < 0) {
                return Err(format!("shape {shape:?} has the negative dimension {bad}"));
            }
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= 1 << 28);
            let n = n.ok_or_else(|| format!("shape {shape:?} is too large"))?;
            value.gather(shape, &vec![Some(0); n], 0.0).map(|t| vec![t]).map_err(|e| e.to_string())
        }
        _ => unreachable!("host family"),
    }
}

/// start, start + delta, ... while below limit (above it for a negative delta).
fn range(ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    if ins.len() != 3 || ins.iter().any(|t| t.len() != 1) {
        return Err("takes three scalars: start, limit, delta".into());
    }
    let t = ins[0].dtype();
    if ins.iter().any(|x| x.dtype() != t) {
        return Err("start, limit and delta must have the same type".into());
    }
    if t.is_int() {
        let (s, l, d) = (ins[0].i64_at(0), ins[1].i64_at(0), ins[2].i64_at(0));
        if d == 0 {
            return Err("delta must not be 0".into());
        }
        let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
        if n > 1 << 28 {
            return Err(format!("{n} elements is too many"));
        }
        let v = (0..n as i64).map(|i| s + i * d).collect();
        return Tensor::from_i64(t, vec![n], v).map(|t| vec![t]).map_err(|e| e.to_string());
    }
    let (s, l, d) = (ins[0].f64_at(0), ins[1].f64_at(0), ins[2].f64_at(0));
    if d == 0.0 || !d.is_finite() || !s.is_finite() || !l.is_finite() {
        return Err(format!("start {s}, limit {l} and delta {d} must be finite, delta not 0"));
    }
    let n = ((l - s) / d).ceil().max(0.0) as usize;
    if n > 1 << 28 {
        return Err(format!("{n} elements is too many"));
    }
    // In the tensor's precision, as ONNX defines it: start + i * delta.
    let v = (0..n).map(|i| s + i as f64 * d).collect();
    Tensor::from_f64_as(t, vec![n], v).map(|t| vec![t]).map_err(|e| e.to_string())
}

fn ints(shape: Vec<usize>, v: Vec<i64>) -> OpResult<Tensor> {
    Tensor::from_i64(DType::I64, shape, v).map_err(|e| e.to_string())
}

/// [rank, count]: the coordinates of the nonzero elements in row-major order.
fn nonzero(x: &Tensor) -> OpResult<Tensor> {
    let s = x.shape();
    let st = strides(s);
    let nz: Vec<usize> = x.to_bools().iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i).collect();
    let mut out = vec![0i64; s.len() * nz.len()];
    for (k, &flat) in nz.iter().enumerate() {
        for a in 0..s.len() {
            out[a * nz.len() + k] = ((flat / st[a]) % s[a]) as i64;
        }
    }
    ints(vec![s.len(), nz.len()], out)
}

/// Greedy per-class suppression, as the ONNX operator defines it: candidates above the
/// score threshold by descending score (ties by box index), a box kept when its IoU with
/// every kept box of its class is at most the IoU threshold, at most
/// max_output_boxes_per_class per class. Output rows are [batch, class, box].
fn nms(ins: &[&Tensor], a: &NmsAttrs) -> OpResult<Tensor> {
    if ins.len() < 2 {
        return Err("takes boxes and scores".into());
    }
    let (boxes, scores) = (ins[0], ins[1]);
    let [nb, nbox, four] = *boxes.shape() else {
        return Err(format!("boxes must be [batches, boxes, 4], are {:?}", boxes.shape()));
    };
    let [sb, classes, sn] = *scores.shape() else {
        return Err(format!("scores must be [batches, classes, boxes], are {:?}", scores.shape()));
    };
    if four != 4 || sb != nb || sn != nbox {
        return Err(format!("boxes {:?} and scores {:?} do not match", boxes.shape(), scores.shape()));
    }
    let scalar = |i: usize| ins.get(i).filter(|t| !t.is_empty()).map(|t| t.f64_at(0));
    let max_out = scalar(2).map_or(0, |v| v.max(0.0) as usize);
    let iou_t = scalar(3).unwrap_or(0.0);
    let score_t = scalar(4);
    let b = boxes.to_f64s();
    let sc = scores.to_f64s();
    let corners = |bi: usize, i: usize| -> [f64; 4] {
        let v = &b[(bi * nbox + i) * 4..(bi * nbox + i) * 4 + 4];
        if a.center_point_box {
            let (xc, yc, w, h) = (v[0], v[1], v[2], v[3]);
            [yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0]
        } else {
            [v[0].min(v[2]), v[1].min(v[3]), v[0].max(v[2]), v[1].max(v[3])]
        }
    };
    let iou = |p: [f64; 4], q: [f64; 4]| -> f64 {
        let area = |r: [f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
        let ih = (p[2].min(q[2]) - p[0].max(q[0])).max(0.0);
        let iw = (p[3].min(q[3]) - p[1].max(q[1])).max(0.0);
        let inter = ih * iw;
        let union = area(p) + area(q) - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    };
    let mut out = vec![];
    for bi in 0..nb {
        for ci in 0..classes {
            let s = |i: usize| sc[(bi * classes + ci) * nbox + i];
            let mut cand: Vec<usize> = (0..nbox).filter(|&i| score_t.is_none_or(|t| s(i) > t)).collect();
            cand.sort_by(|&x, &y| s(y).partial_cmp(&s(x)).unwrap_or(std::cmp::Ordering::Equal).then(x.cmp(&y)));
            let mut kept: Vec<usize> = vec![];
            for i in cand {
                if kept.len() >= max_out {
                    break;
                }
                if kept.iter().all(|&k| iou(corners(bi, k), corners(bi, i)) <= iou_t) {
                    kept.push(i);
                }
            }
            for k in kept {
                out.extend([bi as i64, ci as i64, k as i64]);
            }
        }
    }
    ints(vec![out.len() / 3, 3], out)
}

/// Unique elements (or slices along `axis`): Y, first-occurrence indices, inverse indices,
/// counts; sorted ascending (lexicographically for slices) or in first-occurrence order.
fn unique(x: &Tensor, sorted: bool, axis: Option<usize>) -> OpResult<Vec<Tensor>> {
    let s = x.shape().to_vec();
    let (outer, len, inner, axis) = match axis {
        Some(a) => {
            check_axis(a, s.len())?;
            let (o, l, i) = split_at_axis(&s, a);
            (o, l, i, Some(a))
        }
        None => (1, x.len(), 1, None),
    };
    let v = x.to_f64s();
    // Slice j: the values at [o, j, i] for every o, i.
    let slice = |j: usize| -> Vec<f64> {
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                out.push(v[(o * len + j) * inner + i]);
            }
        }
        out
    };
    let same = |p: &[f64], q: &[f64]| p.iter().zip(q).all(|(a, b)| a == b || a.is_nan() && b.is_nan());
    let mut uniq: Vec<(Vec<f64>, usize, i64)> = vec![]; // (slice, first index, count)
    let mut inverse_raw = vec![0usize; len];
    for (j, inv) in inverse_raw.iter_mut().enumerate() {
        let sl = slice(j);
        match uniq.iter().position(|u| same(&u.0, &sl)) {
            Some(k) => {
                uniq[k].2 += 1;
                *inv = k;
            }
            None => {
                uniq.push((sl, j, 1));
                *inv = uniq.len() - 1;
            }
        }
    }
    let mut order: Vec<usize> = (0..uniq.len()).collect();
    if sorted {
        order.sort_by(|&p, &q| {
            let (a, b) = (&uniq[p].0, &uniq[q].0);
            a.iter()
                .zip(b)
                .map(|(x, y)| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    let mut rank = vec![0usize; uniq.len()];
    for (r, &k) in order.iter().enumerate() {
        rank[k] = r;
    }
    let u = order.len();
    // Y: the unique slices placed along the axis.
    let mut src = Vec::with_capacity(outer * u * inner);
    for o in 0..outer {
        for &k in &order {
            let j = uniq[k].1;
            for i in 0..inner {
                src.push(Some((o * len + j) * inner + i));
            }
        }
    }
    let y_shape = match axis {
        Some(a) => {
            let mut sh = s.clone();
            sh[a] = u;
            sh
        }
        None => vec![u],
    };
    // Gather reads flat indices whatever the source's shape.
    let y = x.gather(y_shape, &src, 0.0).map_err(|e| e.to_string())?;
    let indices = ints(vec![u], order.iter().map(|&k| uniq[k].1 as i64).collect())?;
    let inverse = ints(vec![len], inverse_raw.iter().map(|&k| rank[k] as i64).collect())?;
    let counts = ints(vec![u], order.iter().map(|&k| uniq[k].2).collect())?;
    Ok(vec![y, indices, inverse, counts])
}

/// The positions whose condition is true, checked against a dimension of `len` (a condition
/// may be shorter; a true entry past the end is an error, as in numpy).
pub(crate) fn compress_positions(cond: &Tensor, len: usize) -> OpResult<Vec<usize>> {
    if cond.dtype() != DType::Bool || cond.shape().len() != 1 {
        return Err(format!("condition must be a 1-D bool tensor, it is {} {:?}", cond.dtype(), cond.shape()));
    }
    let picked: Vec<usize> = cond.to_bools().iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i).collect();
    if let Some(bad) = picked.iter().find(|&&i| i >= len) {
        return Err(format!("condition selects position {bad}, beyond the length {len} it applies to"));
    }
    Ok(picked)
}

/// numpy.compress: the slices along `axis` (or the elements of the flattened input) whose
/// condition is true.
fn compress(x: &Tensor, cond: &Tensor, axis: Option<usize>) -> OpResult<Tensor> {
    let (shape, axis) = match axis {
        Some(a) => {
            check_axis(a, x.shape().len())?;
            (x.shape().to_vec(), a)
        }
        None => (vec![x.len()], 0),
    };
    let (outer, len, inner) = split_at_axis(&shape, axis);
    let picked = compress_positions(cond, len)?;
    let mut src = Vec::with_capacity(outer * picked.len() * inner);
    for o in 0..outer {
        for &j in &picked {
            src.extend((0..inner).map(|i| Some((o * len + j) * inner + i)));
        }
    }
    let mut out_shape = shape;
    out_shape[axis] = picked.len();
    x.gather(out_shape, &src, 0.0).map_err(|e| e.to_string())
}
