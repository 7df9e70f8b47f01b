//! Reference indexing: gathers (Gather, GatherElements, GatherND), scatters (ScatterElements,
//! ScatterND, TensorScatter), OneHot, Trilu and ReverseSequence. Indices out of range are
//! errors (OneHot's give off values, as ONNX defines); scatters apply their updates in
//! row-major order of the indices, so duplicate targets combine in that order.

use super::{OpResult, check_axis, for_each_index};
use crate::ops::{Op, ScatterReduction};
use crate::tensor::{DType, Tensor, numel, strides};

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let arg = |i: usize| ins.get(i).copied().ok_or_else(|| format!("{} takes at least {} inputs", op.name(), i + 1));
    Ok(vec![match op {
        Op::Gather { axis } => gather(arg(0)?, arg(1)?, *axis)?,
        Op::GatherElements { axis } => gather_elements(arg(0)?, arg(1)?, *axis)?,
        Op::GatherNd { batch_dims } => gather_nd(arg(0)?, arg(1)?, *batch_dims)?,
        Op::ScatterElements { axis, reduction } => scatter_elements(arg(0)?, arg(1)?, arg(2)?, *axis, *reduction)?,
        Op::ScatterNd { reduction } => scatter_nd(arg(0)?, arg(1)?, arg(2)?, *reduction)?,
        Op::TensorScatter { axis, circular } => {
            tensor_scatter(arg(0)?, arg(1)?, ins.get(2).copied(), *axis, *circular)?
        }
        Op::OneHot { axis, depth } => one_hot(arg(0)?, arg(1)?, *axis, *depth)?,
        Op::Trilu { upper, k } => trilu(arg(0)?, *upper, *k)?,
        Op::ReverseSequence { batch_axis, time_axis } => reverse_sequence(arg(0)?, arg(1)?, *batch_axis, *time_axis)?,
        _ => unreachable!("index family"),
    }])
}

fn int_indices(t: &Tensor, what: &str) -> OpResult<Vec<i64>> {
    if !t.dtype().is_int() {
        return Err(format!("{what} must be integers, they are {}", t.dtype()));
    }
    Ok(t.to_i64s())
}

/// An index into a dimension of length `len`, negative ones counting from the end.
fn normalize(i: i64, len: usize) -> OpResult<usize> {
    let j = if i < 0 { i + len as i64 } else { i };
    if j < 0 || j >= len as i64 {
        return Err(format!("index {i} is out of range for a dimension of length {len}"));
    }
    Ok(j as usize)
}

/// out[outer, idx..., inner] = data[outer, indices[idx...], inner] (negative indices count
/// from the end).
fn gather(data: &Tensor, indices: &Tensor, axis: usize) -> OpResult<Tensor> {
    let s = data.shape();
    check_axis(axis, s.len())?;
    let (outer, len, inner): (usize, usize, usize) =
        (s[..axis].iter().product(), s[axis], s[axis + 1..].iter().product());
    let norm = int_indices(indices, "indices")?
        .into_iter()
        .map(|i| normalize(i, len).map_err(|e| format!("{e} (axis {axis})")))
        .collect::<OpResult<Vec<usize>>>()?;
    let mut src = Vec::with_capacity(outer * norm.len() * inner);
    for o in 0..outer {
        for &j in &norm {
            for i in 0..inner {
                src.push(Some((o * len + j) * inner + i));
            }
        }
    }
    let mut shape = s[..axis].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&s[axis + 1..]);
    data.gather(shape, &src, 0.0).map_err(|e| e.to_string())
}

/// Checks that `indices` has the data's rank and is no larger off the axis.
fn same_rank_within(data: &[usize], idx: &[usize], axis: usize) -> OpResult<()> {
    check_axis(axis, data.len())?;
    if idx.len() != data.len() || (0..data.len()).any(|a| a != axis && idx[a] > data[a]) {
        return Err(format!(
            "indices {idx:?} must have the rank of the data {data:?} and be no larger off axis {axis}"
        ));
    }
    Ok(())
}

/// The flat data position of each indices position (row-major), the axis coordinate
/// replaced by the index.
fn element_targets(data: &[usize], idx_shape: &[usize], idx: &[i64], axis: usize) -> OpResult<Vec<usize>> {
    same_rank_within(data, idx_shape, axis)?;
    let st = strides(data);
    let mut targets = Vec::with_capacity(idx.len());
    let mut err = None;
    let mut n = 0;
    for_each_index(idx_shape, |pos| {
        let mut flat = 0;
        for (a, &p) in pos.iter().enumerate() {
            let c = if a == axis {
                match normalize(idx[n], data[a]) {
                    Ok(j) => j,
                    Err(e) => {
                        err.get_or_insert(e);
                        0
                    }
                }
            } else {
                p
            };
            flat += c * st[a];
        }
        targets.push(flat);
        n += 1;
    });
    match err {
        Some(e) => Err(e),
        None => Ok(targets),
    }
}

/// out[p] = data[p with p[axis] = indices[p]].
fn gather_elements(data: &Tensor, indices: &Tensor, axis: usize) -> OpResult<Tensor> {
    let idx = int_indices(indices, "indices")?;
    let src = element_targets(data.shape(), indices.shape(), &idx, axis)?;
    let src: Vec<Option<usize>> = src.into_iter().map(Some).collect();
    data.gather(indices.shape().to_vec(), &src, 0.0).map_err(|e| e.to_string())
}

/// For each index tuple (the last dimension of `indices`, after `batch` leading dimensions
/// shared with the data): the flat data offset of the slice it selects. Returns the offsets,
/// the tuple length and the slice size.
fn tuple_offsets(data: &[usize], indices: &Tensor, batch: usize) -> OpResult<(Vec<usize>, usize, usize)> {
    let i = indices.shape();
    if data.is_empty() || i.is_empty() || batch >= data.len().min(i.len()) || data[..batch] != i[..batch] {
        return Err(format!("data {data:?} and indices {i:?} do not fit batch_dims {batch}"));
    }
    let k = i[i.len() - 1];
    if k < 1 || k > data.len() - batch {
        return Err(format!("index tuples of length {k} do not fit data {data:?} after {batch} batch dimensions"));
    }
    let idx = int_indices(indices, "indices")?;
    let st = strides(data);
    let slice = numel(&data[batch + k..]);
    let batch_size = numel(&data[batch..]);
    let tuples = idx.len() / k;
    let per_batch = tuples / numel(&i[..batch]).max(1);
    let mut out = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let mut off = (t / per_batch.max(1)) * batch_size;
        for u in 0..k {
            let a = batch + u;
            off += normalize(idx[t * k + u], data[a]).map_err(|e| format!("{e} (data dimension {a})"))? * st[a];
        }
        out.push(off);
    }
    Ok((out, k, slice))
}

/// out[b..., t..., s...] = data[b..., indices[b..., t..., :], s...].
fn gather_nd(data: &Tensor, indices: &Tensor, batch: usize) -> OpResult<Tensor> {
    let (offsets, k, slice) = tuple_offsets(data.shape(), indices, batch)?;
    let src: Vec<Option<usize>> = offsets.iter().flat_map(|&o| (0..slice).map(move |s| Some(o + s))).collect();
    let i = indices.shape();
    let mut shape = i[..i.len() - 1].to_vec();
    shape.extend_from_slice(&data.shape()[batch + k..]);
    data.gather(shape, &src, 0.0).map_err(|e| e.to_string())
}

/// The data's values as f64 (floats) or i64 (integers, bools), combined by a reduction and
/// turned back into a tensor of the data's type.
enum Values {
    Float(Vec<f64>),
    Int(Vec<i64>),
}

impl Values {
    fn of(t: &Tensor) -> Values {
        if t.dtype().is_float() { Values::Float(t.to_f64s()) } else { Values::Int(t.to_i64s()) }
    }

    /// dst[d] = r(dst[d], src[s]).
    fn apply(&mut self, d: usize, src: &Values, s: usize, r: ScatterReduction) {
        match (self, src) {
            (Values::Float(dst), Values::Float(src)) => {
                let (a, b) = (dst[d], src[s]);
                dst[d] = match r {
                    ScatterReduction::None => b,
                    ScatterReduction::Add => a + b,
                    ScatterReduction::Mul => a * b,
                    ScatterReduction::Max => {
                        if b > a {
                            b
                        } else {
                            a
                        }
                    }
                    ScatterReduction::Min => {
                        if b < a {
                            b
                        } else {
                            a
                        }
                    }
                };
            }
            (Values::Int(dst), Values::Int(src)) => {
                let (a, b) = (dst[d], src[s]);
                dst[d] = match r {
                    ScatterReduction::None => b,
                    ScatterReduction::Add => a.wrapping_add(b),
                    ScatterReduction::Mul => a.wrapping_mul(b),
                    ScatterReduction::Max => a.max(b),
                    ScatterReduction::Min => a.min(b),
                };
            }
            _ => unreachable!("data and updates have one type"),
        }
    }

    fn into_tensor(self, dtype: DType, shape: Vec<usize>) -> OpResult<Tensor> {
        match self {
            Values::Float(v) => Tensor::from_f64_as(dtype, shape, v),
            Values::Int(v) => Tensor::from_i64(dtype, shape, v),
        }
        .map_err(|e| e.to_string())
    }
}

fn same_type(data: &Tensor, updates: &Tensor) -> OpResult<()> {
    if data.dtype() != updates.dtype() {
        return Err(format!("updates are {} but the data is {}", updates.dtype(), data.dtype()));
    }
    Ok(())
}

/// A copy of the data with updates[p] combined into position p with p[axis] = indices[p],
/// in row-major order of p.
fn scatter_elements(
    data: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    axis: usize,
    r: ScatterReduction,
) -> OpResult<Tensor> {
    same_type(data, updates)?;
    if indices.shape() != updates.shape() {
        return Err(format!("updates {:?} must have the shape of the indices {:?}", updates.shape(), indices.shape()));
    }
    let idx = int_indices(indices, "indices")?;
    let targets = element_targets(data.shape(), indices.shape(), &idx, axis)?;
    let (mut out, upd) = (Values::of(data), Values::of(updates));
    for (s, &d) in targets.iter().enumerate() {
        out.apply(d, &upd, s, r);
    }
    out.into_tensor(data.dtype(), data.shape().to_vec())
}

/// A copy of the data with update slices combined at the index tuples, in row-major order of
/// the tuples.
fn scatter_nd(data: &Tensor, indices: &Tensor, updates: &Tensor, r: ScatterReduction) -> OpResult<Tensor> {
    same_type(data, updates)?;
    let (offsets, k, slice) = tuple_offsets(data.shape(), indices, 0)?;
    let i = indices.shape();
    let mut want = i[..i.len() - 1].to_vec();
    want.extend_from_slice(&data.shape()[k..]);
    if updates.shape() != want.as_slice() {
        return Err(format!("updates {:?} must have shape {want:?}", updates.shape()));
    }
    let (mut out, upd) = (Values::of(data), Values::of(updates));
    for (t, &o) in offsets.iter().enumerate() {
        for s in 0..slice {
            out.apply(o + s, &upd, t * slice + s, r);
        }
    }
    out.into_tensor(data.dtype(), data.shape().to_vec())
}

/// The cache with the update written along `axis` from each batch's write index (wrapping
/// around the cache's length in circular mode).
fn tensor_scatter(
    past: &Tensor,
    update: &Tensor,
    write: Option<&Tensor>,
    axis: usize,
    circular: bool,
) -> OpResult<Tensor> {
    same_type(past, update)?;
    let (p, u) = (past.shape(), update.shape());
    check_axis(axis, p.len())?;
    if axis == 0 || u.len() != p.len() || (0..p.len()).any(|a| if a == axis { u[a] > p[a] } else { u[a] != p[a] }) {
        return Err(format!("update {u:?} does not fit the cache {p:?} along axis {axis}"));
    }
    let writes = match write {
        Some(w) => int_indices(w, "write_indices")?,
        None => vec![0; p[0]],
    };
    if writes.len() != p[0] {
        return Err(format!("write_indices has {} values for a batch of {}", writes.len(), p[0]));
    }
    let (m, l) = (p[axis] as i64, u[axis] as i64);
    if !circular && let Some(bad) = writes.iter().find(|&&w| w < 0 || w + l > m) {
        return Err(format!("write index {bad} leaves no room for {l} updates in a cache of {m} (linear mode)"));
    }
    let (ps, us) = (strides(p), strides(u));
    let mut src: Vec<(usize, usize)> = (0..past.len()).map(|i| (0, i)).collect();
    for_each_index(u, |pos| {
        let mut seq = writes[pos[0]] + pos[axis] as i64;
        if circular {
            seq = seq.rem_euclid(m);
        }
        let dst: usize =
            pos.iter().enumerate().map(|(a, &c)| if a == axis { seq as usize } else { c } * ps[a]).sum::<usize>();
        let from: usize = pos.iter().zip(&us).map(|(c, s)| c * s).sum();
        src[dst] = (1, from);
    });
    Tensor::select(past.dtype(), p.to_vec(), &[past, update], &src).map_err(|e| e.to_string())
}

/// The new axis of length `depth` at `axis`: on where the (truncated) index, negative ones
/// counting back from depth, equals the position; off elsewhere.
fn one_hot(indices: &Tensor, values: &Tensor, axis: usize, depth: usize) -> OpResult<Tensor> {
    if values.len() != 2 {
        return Err(format!("values must hold [off, on], has shape {:?}", values.shape()));
    }
    let s = indices.shape();
    if axis > s.len() {
        return Err(format!("axis {axis} is out of range for the output's rank {}", s.len() + 1));
    }
    let (outer, inner) = (numel(&s[..axis]), numel(&s[axis..]));
    let idx = indices.to_i64s();
    let d = depth as i64;
    let mut src = Vec::with_capacity(outer * depth * inner);
    for o in 0..outer {
        for c in 0..d {
            for i in 0..inner {
                let v = idx[o * inner + i];
                let v = if v < 0 { v + d } else { v };
                src.push(Some(usize::from(v == c)));
            }
        }
    }
    let mut shape = s.to_vec();
    shape.insert(axis, depth);
    values.gather(shape, &src, 0.0).map_err(|e| e.to_string())
}

/// Elements with column - row >= k (upper) or <= k (lower) kept, the others zero.
fn trilu(x: &Tensor, upper: bool, k: i64) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(format!("input must have rank >= 2, has shape {s:?}"));
    }
    let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
    let src: Vec<Option<usize>> = (0..x.len())
        .map(|f| {
            let (j, i) = ((f % cols) as i64, ((f / cols) % rows) as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            keep.then_some(f)
        })
        .collect();
    x.gather(s.to_vec(), &src, 0.0).map_err(|e| e.to_string())
}

/// Along the time axis, the first `lens[b]` elements of batch b reversed, the rest copied.
fn reverse_sequence(x: &Tensor, lens: &Tensor, batch_axis: usize, time_axis: usize) -> OpResult<Tensor> {
    let s = x.shape();
    check_axis(batch_axis, s.len())?;
    check_axis(time_axis, s.len())?;
    let lens = int_indices(lens, "sequence_lens")?;
    if batch_axis == time_axis || lens.len() != s[batch_axis] {
        return Err(format!(
            "sequence_lens has {} values for batch axis {batch_axis} of {s:?} (time axis {time_axis})",
            lens.len()
        ));
    }
    let t = s[time_axis];
    if let Some(bad) = lens.iter().find(|&&l| l < 0 || l > t as i64) {
        return Err(format!("sequence length {bad} is outside 0..={t}"));
    }
    let st = strides(s);
    let mut src = Vec::with_capacity(x.len());
    for_each_index(s, |pos| {
        let (b, tt) = (pos[batch_axis], pos[time_axis]);
        let len = lens[b] as usize;
        let from_t = if tt < len { len - 1 - tt } else { tt };
        let flat: usize = pos.iter().zip(&st).map(|(c, s)| c * s).sum();
        src.push(Some(flat - tt * st[time_axis] + from_t * st[time_axis]));
    });
    x.gather(s.to_vec(), &src, 0.0).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: Vec<usize>, v: &[f32]) -> Tensor {
        Tensor::new(shape, v.to_vec()).unwrap()
    }

    fn i(shape: Vec<usize>, v: &[i64]) -> Tensor {
        Tensor::from_i64(DType::I64, shape, v.to_vec()).unwrap()
    }

    fn run(op: Op, ins: &[&Tensor]) -> Tensor {
        eval(&op, ins).unwrap().remove(0)
    }

    #[test]
    fn scatter_elements_applies_duplicates_in_update_order() {
        let data = f(vec![1, 4], &[1.0, 2.0, 3.0, 4.0]);
        let idx = i(vec![1, 3], &[1, 1, -1]);
        let upd = f(vec![1, 3], &[10.0, 20.0, 5.0]);
        let r = |reduction| run(Op::ScatterElements { axis: 1, reduction }, &[&data, &idx, &upd]);
        assert_eq!(r(ScatterReduction::None).data(), &[1.0, 20.0, 3.0, 5.0]);
        assert_eq!(r(ScatterReduction::Add).data(), &[1.0, 32.0, 3.0, 9.0]);
        assert_eq!(r(ScatterReduction::Mul).data(), &[1.0, 400.0, 3.0, 20.0]);
        assert_eq!(r(ScatterReduction::Max).data(), &[1.0, 20.0, 3.0, 5.0]);
        assert_eq!(r(ScatterReduction::Min).data(), &[1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn gather_nd_with_batch_dims_and_scatter_nd_slices() {
        // ONNX's batch_dims example: data [2, 2, 2], indices [[1], [0]] per batch.
        let data = i(vec![2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        let idx = i(vec![2, 1], &[1, 0]);
        assert_eq!(run(Op::GatherNd { batch_dims: 1 }, &[&data, &idx]).to_i64s(), [2, 3, 4, 5]);
        let idx = i(vec![2, 2], &[0, 1, -1, 0]);
        assert_eq!(run(Op::GatherNd { batch_dims: 0 }, &[&data, &idx]).to_i64s(), [2, 3, 4, 5]);
        let upd = i(vec![2, 2], &[10, 11, 12, 13]);
        let out = run(Op::ScatterNd { reduction: ScatterReduction::Add }, &[&data, &idx, &upd]);
        assert_eq!(out.to_i64s(), [0, 1, 12, 14, 16, 18, 6, 7]);
        let bad = i(vec![1, 2], &[2, 0]);
        assert!(eval(&Op::GatherNd { batch_dims: 0 }, &[&data, &bad]).is_err());
    }

    #[test]
    fn one_hot_counts_negative_indices_back_and_ignores_out_of_range() {
        let idx = i(vec![4], &[0, -1, 3, -4]);
        let values = f(vec![2], &[-1.0, 2.0]);
        let out = run(Op::OneHot { axis: 1, depth: 3 }, &[&idx, &values]);
        assert_eq!(out.data(), &[2.0, -1.0, -1.0, -1.0, -1.0, 2.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]);
        let out = run(Op::OneHot { axis: 0, depth: 3 }, &[&idx, &values]);
        assert_eq!(out.shape(), &[3, 4]);
        assert_eq!(&out.data()[..4], &[2.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn tensor_scatter_linear_and_circular() {
        let past = f(vec![2, 4, 1], &[0.0; 8]);
        let upd = f(vec![2, 2, 1], &[1.0, 2.0, 3.0, 4.0]);
        let w = i(vec![2], &[1, 3]);
        let lin = eval(&Op::TensorScatter { axis: 1, circular: false }, &[&past, &upd, &w]);
        assert!(lin.is_err(), "batch 1 writes past the end in linear mode");
        let out = run(Op::TensorScatter { axis: 1, circular: true }, &[&past, &upd, &w]);
        assert_eq!(out.data(), &[0.0, 1.0, 2.0, 0.0, 4.0, 0.0, 0.0, 3.0]);
        let out = run(Op::TensorScatter { axis: 1, circular: false }, &[&past, &upd]);
        assert_eq!(out.data(), &[1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0]);
    }

    #[test]
    fn reverse_sequence_and_trilu() {
        // ONNX's example 2: time axis 1, batch axis 0.
        let x = f(vec![2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let lens = i(vec![2], &[2, 3]);
        let out = run(Op::ReverseSequence { batch_axis: 0, time_axis: 1 }, &[&x, &lens]);
        assert_eq!(out.data(), &[1.0, 0.0, 2.0, 5.0, 4.0, 3.0]);
        let up = run(Op::Trilu { upper: true, k: 1 }, &[&x]);
        assert_eq!(up.data(), &[0.0, 1.0, 2.0, 0.0, 0.0, 5.0]);
        let low = run(Op::Trilu { upper: false, k: -1 }, &[&x]);
        assert_eq!(low.data(), &[0.0, 0.0, 0.0, 3.0, 0.0, 0.0]);
    }
}
