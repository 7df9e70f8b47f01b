//! Reference data movement, on any element type.

use super::{OpResult, broadcast_map, check_axis, for_each_index, gather_axes, identity};
use crate::ops::{Op, PadMode, slice_axis};
use crate::tensor::{Tensor, numel, strides};

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let one = || -> OpResult<&Tensor> {
        if ins.len() == 1 { Ok(ins[0]) } else { Err(format!("takes 1 input, got {}", ins.len())) }
    };
    Ok(match op {
        Op::Concat { axis } => vec![concat(ins, *axis)?],
        Op::Split { axis, sizes } => split(one()?, *axis, sizes)?,
        Op::Slice { axes, starts, ends, steps } => vec![slice(one()?, axes, starts, ends, steps)?],
        Op::Reshape { shape } => {
            let x = one()?;
            if numel(shape) != x.len() {
                return Err(format!("cannot reshape {:?} to {shape:?}", x.shape()));
            }
            vec![x.clone().reshaped(shape.clone()).map_err(|e| e.to_string())?]
        }
        Op::Transpose { perm } => vec![transpose(one()?, perm)?],
        Op::Pad { pads, mode } => vec![pad(one()?, pads, *mode)?],
        Op::Expand { shape } => vec![expand(one()?, shape)?],
        _ => unreachable!("layout family"),
    })
}

fn concat(ins: &[&Tensor], axis: usize) -> OpResult<Tensor> {
    let first = ins.first().ok_or("takes at least one input")?;
    let fs = first.shape();
    check_axis(axis, fs.len())?;
    let mut shape = fs.to_vec();
    shape[axis] = 0;
    for t in ins {
        let s = t.shape();
        if s.len() != fs.len() || (0..s.len()).any(|i| i != axis && s[i] != fs[i]) {
            return Err(format!("{s:?} does not match {fs:?} outside axis {axis}"));
        }
        if t.dtype() != first.dtype() {
            return Err(format!("inputs are {} and {}; they must have the same type", first.dtype(), t.dtype()));
        }
        shape[axis] += s[axis];
    }
    let outer = numel(&fs[..axis]);
    let inner = numel(&fs[axis + 1..]);
    let mut src = Vec::with_capacity(numel(&shape));
    for o in 0..outer {
        for (p, t) in ins.iter().enumerate() {
            let chunk = t.shape()[axis] * inner;
            src.extend((o * chunk..(o + 1) * chunk).map(|i| (p, i)));
        }
    }
    Tensor::select(first.dtype(), shape, ins, &src).map_err(|e| e.to_string())
}

fn split(x: &Tensor, axis: usize, sizes: &[usize]) -> OpResult<Vec<Tensor>> {
    let s = x.shape();
    check_axis(axis, s.len())?;
    if sizes.iter().sum::<usize>() != s[axis] {
        return Err(format!("sizes {sizes:?} do not add up to {}, the length of axis {axis}", s[axis]));
    }
    let mut start = 0;
    let mut outs = vec![];
    for &size in sizes {
        let tables: Vec<Vec<Option<usize>>> = s
            .iter()
            .enumerate()
            .map(|(a, &d)| if a == axis { (start..start + size).map(Some).collect() } else { identity(d) })
            .collect();
        outs.push(gather_axes(x, &tables, 0.0)?);
        start += size;
    }
    Ok(outs)
}

/// Element i of a sliced axis reads start + i * step, as normalised by `slice_axis`.
fn slice(x: &Tensor, axes: &[usize], starts: &[i64], ends: &[i64], steps: &[i64]) -> OpResult<Tensor> {
    let s = x.shape();
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
        return Err("axes, starts, ends and steps must have the same length".into());
    }
    let mut tables: Vec<Option<Vec<Option<usize>>>> = vec![None; s.len()];
    for (i, &axis) in axes.iter().enumerate() {
        check_axis(axis, s.len())?;
        if tables[axis].is_some() {
            return Err(format!("axis {axis} appears twice"));
        }
        if steps[i] == 0 {
            return Err("step 0 is not allowed".into());
        }
        let (start, step, len) = slice_axis(s[axis], starts[i], ends[i], steps[i]);
        let table = (0..len as i64)
            .map(|j| {
                let src = start + j * step;
                if src >= 0 && src < s[axis] as i64 { Ok(Some(src as usize)) } else { Err(src) }
            })
            .collect::<std::result::Result<Vec<_>, i64>>()
            .map_err(|src| format!("slice of axis {axis} reads index {src}, outside 0..{}", s[axis]))?;
        tables[axis] = Some(table);
    }
    let tables: Vec<Vec<Option<usize>>> =
        tables.into_iter().zip(s).map(|(t, &d)| t.unwrap_or_else(|| identity(d))).collect();
    gather_axes(x, &tables, 0.0)
}

/// Output axis i is input axis perm[i].
fn transpose(x: &Tensor, perm: &[usize]) -> OpResult<Tensor> {
    let s = x.shape();
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if sorted != (0..s.len()).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of 0..{}", s.len()));
    }
    let in_strides = strides(s);
    let out_shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let mut src = Vec::with_capacity(x.len());
    for_each_index(&out_shape, |idx| {
        src.push(Some(idx.iter().zip(perm).map(|(&i, &p)| i * in_strides[p]).sum()));
    });
    x.gather(out_shape, &src, 0.0).map_err(|e| e.to_string())
}

/// Numpy broadcast of `x` to `shape`.
fn expand(x: &Tensor, shape: &[usize]) -> OpResult<Tensor> {
    let map = broadcast_map(x.shape(), shape)?;
    let src: Vec<Option<usize>> = map.into_iter().map(Some).collect();
    x.gather(shape.to_vec(), &src, 0.0).map_err(|e| e.to_string())
}

/// Source index of padded position `j` (relative to the first input element) on an axis of
/// length `d`, or None for constant padding.
pub(crate) fn pad_source(j: i64, d: usize, mode: PadMode) -> Option<usize> {
    let d = d as i64;
    if (0..d).contains(&j) {
        return Some(j as usize);
    }
    match mode {
        PadMode::Constant(_) => None,
        PadMode::Edge => Some(j.clamp(0, d - 1) as usize),
        PadMode::Wrap => Some(j.rem_euclid(d) as usize),
        PadMode::Reflect => {
            if d == 1 {
                return Some(0);
            }
            // Mirror without repeating the edge: the pattern 0, 1, .., d-1, d-2, .., 1 repeats.
            let period = 2 * (d - 1);
            let m = j.rem_euclid(period);
            Some(if m < d { m } else { period - m } as usize)
        }
    }
}

fn pad(x: &Tensor, pads: &[(usize, usize)], mode: PadMode) -> OpResult<Tensor> {
    let s = x.shape();
    if pads.len() != s.len() {
        return Err(format!("needs {} (begin, end) pairs, got {}", s.len(), pads.len()));
    }
    let tables: Vec<Vec<Option<usize>>> = s
        .iter()
        .zip(pads)
        .map(|(&d, &(begin, end))| (0..d + begin + end).map(|o| pad_source(o as i64 - begin as i64, d, mode)).collect())
        .collect();
    let fill = if let PadMode::Constant(v) = mode { v as f64 } else { 0.0 };
    gather_axes(x, &tables, fill)
}
