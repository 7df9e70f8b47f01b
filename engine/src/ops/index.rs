//! Indexing: gathers along an axis (Gather, GatherElements) or by index tuples (GatherND),
//! scatters (ScatterElements, ScatterND, TensorScatter), one-hot encoding, triangular masks
//! (Trilu) and ReverseSequence, with computed (or constant) indices.

use super::{Check, In, Infer, Op, check_axis};
use crate::tensor::DType;

/// How a scatter combines an update with the value already at its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScatterReduction {
    /// The update replaces the value.
    None,
    /// The update is added.
    Add,
    /// The value is multiplied by the update.
    Mul,
    /// The larger of the two.
    Max,
    /// The smaller of the two.
    Min,
}

impl ScatterReduction {
    /// The ONNX `reduction` attribute's value ("none", "add", "mul", "max", "min").
    pub fn parse(s: &str) -> Option<ScatterReduction> {
        Some(match s {
            "none" => ScatterReduction::None,
            "add" => ScatterReduction::Add,
            "mul" => ScatterReduction::Mul,
            "max" => ScatterReduction::Max,
            "min" => ScatterReduction::Min,
            _ => return None,
        })
    }

    /// Kernel code (the `KIND` override constant of the scatter kernels).
    pub fn code(self) -> u32 {
        match self {
            ScatterReduction::None => 0,
            ScatterReduction::Add => 1,
            ScatterReduction::Mul => 2,
            ScatterReduction::Max => 3,
            ScatterReduction::Min => 4,
        }
    }

    /// The ONNX spelling.
    pub fn name(self) -> &'static str {
        match self {
            ScatterReduction::None => "none",
            ScatterReduction::Add => "add",
            ScatterReduction::Mul => "mul",
            ScatterReduction::Max => "max",
            ScatterReduction::Min => "min",
        }
    }

    /// True when the result is computed from both values (not one of them moved).
    pub fn computes(self) -> bool {
        matches!(self, ScatterReduction::Add | ScatterReduction::Mul)
    }
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    match op {
        Op::Gather { axis } => gather(&c, *axis),
        Op::GatherElements { axis } => gather_elements(&c, *axis),
        Op::GatherNd { batch_dims } => gather_nd(&c, *batch_dims),
        Op::ScatterElements { axis, reduction } => scatter_elements(&c, *axis, *reduction),
        Op::ScatterNd { reduction } => scatter_nd(&c, *reduction),
        Op::TensorScatter { axis, circular } => tensor_scatter(&c, *axis, *circular),
        Op::OneHot { axis, depth } => one_hot(&c, *axis, *depth),
        Op::Trilu { .. } => {
            c.arity(1, 1)?;
            if c.rank(0) < 2 {
                return Err(format!("input must have rank >= 2, has shape {:?}", c.shape(0)));
            }
            Ok(vec![(c.dtype(0), c.shape(0).to_vec())])
        }
        Op::ReverseSequence { batch_axis, time_axis } => reverse_sequence(&c, *batch_axis, *time_axis),
        _ => unreachable!("index family"),
    }
}

fn need_int(c: &Check, i: usize, what: &str) -> Result<(), String> {
    if c.dtype(i).is_int() { Ok(()) } else { Err(format!("{what} must be integers, they are {}", c.dtype(i))) }
}

/// Every constant index of input `i` lies in [-len, len).
fn const_in_range(c: &Check, i: usize, len: usize, what: &str) -> Result<(), String> {
    if let Some(k) = c.ins[i].konst {
        let n = len as i64;
        if let Some(bad) = k.to_i64s().into_iter().find(|&v| v < -n || v >= n) {
            return Err(format!("{what} {bad} is out of range for a dimension of length {n}"));
        }
    }
    Ok(())
}

fn gather(c: &Check, axis: usize) -> Infer {
    c.arity(2, 2)?;
    need_int(c, 1, "indices")?;
    check_axis(axis, c.rank(0))?;
    let d = c.shape(0);
    if d[axis] == 0 && !c.shape(1).contains(&0) {
        return Err(format!("axis {axis} of the data is empty; no index is valid"));
    }
    if let Some(k) = c.ins[1].konst {
        let n = d[axis] as i64;
        if let Some(bad) = k.to_i64s().into_iter().find(|&i| i < -n || i >= n) {
            return Err(format!("index {bad} is out of range for axis {axis} of length {n}"));
        }
    }
    let mut out = d[..axis].to_vec();
    out.extend_from_slice(c.shape(1));
    out.extend_from_slice(&d[axis + 1..]);
    Ok(vec![(c.dtype(0), out)])
}

/// Indices (and updates) of the same rank as the data, no larger than it off the axis.
fn elementwise_indices(c: &Check, axis: usize) -> Result<(), String> {
    need_int(c, 1, "indices")?;
    let (d, i) = (c.shape(0), c.shape(1));
    if d.is_empty() {
        return Err("data must have rank >= 1".into());
    }
    check_axis(axis, d.len())?;
    if i.len() != d.len() {
        return Err(format!("indices {i:?} must have the rank of the data {d:?}"));
    }
    if let Some(a) = (0..d.len()).find(|&a| a != axis && i[a] > d[a]) {
        return Err(format!("indices {i:?} are larger than the data {d:?} on axis {a}"));
    }
    if d[axis] == 0 && !i.contains(&0) {
        return Err(format!("axis {axis} of the data is empty; no index is valid"));
    }
    const_in_range(c, 1, d[axis], "index")
}

fn gather_elements(c: &Check, axis: usize) -> Infer {
    c.arity(2, 2)?;
    elementwise_indices(c, axis)?;
    Ok(vec![(c.dtype(0), c.shape(1).to_vec())])
}

/// Checks the index tuples of GatherND/ScatterND (the last dimension of the indices) against
/// the data after `batch` leading dimensions; returns the tuple length.
fn index_tuples(c: &Check, batch: usize) -> Result<usize, String> {
    need_int(c, 1, "indices")?;
    let (d, i) = (c.shape(0), c.shape(1));
    if d.is_empty() || i.is_empty() {
        return Err(format!("data {d:?} and indices {i:?} must have rank >= 1"));
    }
    if batch >= d.len().min(i.len()) {
        return Err(format!("batch_dims {batch} must be below the ranks of data {d:?} and indices {i:?}"));
    }
    if d[..batch] != i[..batch] {
        return Err(format!("the first {batch} dimensions of data {d:?} and indices {i:?} must be equal"));
    }
    let k = i[i.len() - 1];
    if k < 1 || k > d.len() - batch {
        return Err(format!(
            "the last dimension of indices {i:?} ({k}) must be in 1..={} (the data's rank after the batch dimensions)",
            d.len() - batch
        ));
    }
    if let Some(t) = c.ins[1].konst {
        for (n, &v) in t.to_i64s().iter().enumerate() {
            let len = d[batch + n % k] as i64;
            if v < -len || v >= len {
                return Err(format!("index {v} is out of range for data dimension {} of length {len}", batch + n % k));
            }
        }
    }
    Ok(k)
}

fn gather_nd(c: &Check, batch: usize) -> Infer {
    c.arity(2, 2)?;
    let k = index_tuples(c, batch)?;
    let (d, i) = (c.shape(0), c.shape(1));
    let mut out = i[..i.len() - 1].to_vec();
    out.extend_from_slice(&d[batch + k..]);
    Ok(vec![(c.dtype(0), out)])
}

fn check_updates(c: &Check, reduction: ScatterReduction) -> Result<(), String> {
    if c.dtype(2) != c.dtype(0) {
        return Err(format!("updates are {} but the data is {}; ONNX requires the same type", c.dtype(2), c.dtype(0)));
    }
    if c.dtype(0) == DType::Bool && reduction.computes() {
        return Err(format!("reduction '{}' is not defined on bool tensors", reduction.name()));
    }
    Ok(())
}

fn scatter_elements(c: &Check, axis: usize, reduction: ScatterReduction) -> Infer {
    c.arity(3, 3)?;
    elementwise_indices(c, axis)?;
    check_updates(c, reduction)?;
    if c.shape(2) != c.shape(1) {
        return Err(format!("updates {:?} must have the shape of the indices {:?}", c.shape(2), c.shape(1)));
    }
    Ok(vec![(c.dtype(0), c.shape(0).to_vec())])
}

fn scatter_nd(c: &Check, reduction: ScatterReduction) -> Infer {
    c.arity(3, 3)?;
    let k = index_tuples(c, 0)?;
    check_updates(c, reduction)?;
    let (d, i) = (c.shape(0), c.shape(1));
    let mut want = i[..i.len() - 1].to_vec();
    want.extend_from_slice(&d[k..]);
    if c.shape(2) != want.as_slice() {
        return Err(format!(
            "updates {:?} must have the shape {want:?} (indices {i:?} without the last dimension, then data {d:?} \
             after the first {k})",
            c.shape(2)
        ));
    }
    Ok(vec![(c.dtype(0), d.to_vec())])
}

fn tensor_scatter(c: &Check, axis: usize, circular: bool) -> Infer {
    c.arity(2, 3)?;
    let (p, u) = (c.shape(0), c.shape(1));
    check_axis(axis, p.len())?;
    if axis == 0 {
        return Err("axis must not be 0 (the batch dimension)".into());
    }
    if c.dtype(1) != c.dtype(0) {
        return Err(format!("update is {} but the cache is {}; ONNX requires the same type", c.dtype(1), c.dtype(0)));
    }
    if u.len() != p.len() || (0..p.len()).any(|a| if a == axis { u[a] > p[a] } else { u[a] != p[a] }) {
        return Err(format!(
            "update {u:?} must have the cache's shape {p:?} except on axis {axis}, where it may be shorter"
        ));
    }
    if c.ins.len() == 3 {
        need_int(c, 2, "write_indices")?;
        if c.shape(2) != [p[0]] {
            return Err(format!("write_indices {:?} must have shape [{}] (one per batch)", c.shape(2), p[0]));
        }
        if let (Some(w), false) = (c.ins[2].konst, circular) {
            let room = (p[axis] - u[axis]) as i64;
            if let Some(bad) = w.to_i64s().into_iter().find(|&v| v < 0 || v > room) {
                return Err(format!(
                    "write index {bad} is outside 0..={room}: in linear mode the update of length {} must fit in the \
                     cache of length {}",
                    u[axis], p[axis]
                ));
            }
        }
    }
    Ok(vec![(c.dtype(0), p.to_vec())])
}

fn one_hot(c: &Check, axis: usize, depth: usize) -> Infer {
    c.arity(2, 2)?;
    let t = c.dtype(0);
    if !(t.is_int() || t.is_float()) {
        return Err(format!("indices must be numbers, they are {t}"));
    }
    if c.shape(1).iter().product::<usize>() != 2 {
        return Err(format!("values must hold two elements [off, on], has shape {:?}", c.shape(1)));
    }
    if axis > c.rank(0) {
        return Err(format!("axis {axis} is out of range for the output's rank {}", c.rank(0) + 1));
    }
    if depth == 0 {
        return Err("depth must be >= 1".into());
    }
    let mut out = c.shape(0).to_vec();
    out.insert(axis, depth);
    Ok(vec![(c.dtype(1), out)])
}

fn reverse_sequence(c: &Check, batch_axis: usize, time_axis: usize) -> Infer {
    c.arity(2, 2)?;
    let s = c.shape(0);
    if s.len() < 2 {
        return Err(format!("input must have rank >= 2, has shape {s:?}"));
    }
    check_axis(batch_axis, s.len())?;
    check_axis(time_axis, s.len())?;
    if batch_axis == time_axis {
        return Err(format!("batch_axis and time_axis must differ, both are {batch_axis}"));
    }
    need_int(c, 1, "sequence_lens")?;
    if c.shape(1) != [s[batch_axis]] {
        return Err(format!("sequence_lens {:?} must have shape [{}] (one per batch)", c.shape(1), s[batch_axis]));
    }
    if let Some(t) = c.ins[1].konst {
        let n = s[time_axis] as i64;
        if let Some(bad) = t.to_i64s().into_iter().find(|&v| v < 0 || v > n) {
            return Err(format!("sequence length {bad} is outside 0..={n} (the time axis)"));
        }
    }
    Ok(vec![(c.dtype(0), s.to_vec())])
}
