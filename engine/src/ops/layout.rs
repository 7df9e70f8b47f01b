//! Data movement of `shaders/layout.wgsl`: concatenation, split, slice, reshape, transpose,
//! padding and expansion (broadcast copy), on any element type.

use std::collections::HashSet;

use super::{Check, In, Infer, Op, broadcast, check_axis};
use crate::tensor::numel;

/// Padding modes of Pad.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// Fill with a constant.
    Constant(f32),
    /// Mirror without repeating the edge.
    Reflect,
    /// Repeat the edge value.
    Edge,
    /// Wrap around (the opposite edge's values).
    Wrap,
}

/// Normalised slice of one axis: (start, step, length) with ONNX clamping.
pub(crate) fn slice_axis(dim: usize, start: i64, end: i64, step: i64) -> (i64, i64, usize) {
    // i128 arithmetic: ONNX uses i64::MAX / i64::MIN as "to the end" markers.
    let d = dim as i128;
    let norm = |v: i64| if v < 0 { v as i128 + d } else { v as i128 };
    let (s, e, st) = (norm(start), norm(end), step as i128);
    let (s, len) = if st > 0 {
        let s = s.clamp(0, d);
        let e = e.clamp(0, d);
        (s, if e > s { (e - s + st - 1) / st } else { 0 })
    } else {
        let s = s.clamp(-1, d - 1);
        let e = e.clamp(-1, d - 1);
        (s, if s > e { (s - e + (-st) - 1) / (-st) } else { 0 })
    };
    // A step beyond the dimension takes one element; keep it small for index arithmetic.
    let st = st.clamp(-d.max(1), d.max(1));
    (s.max(0) as i64, st as i64, len as usize)
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    match op {
        Op::Concat { axis } => {
            if ins.is_empty() {
                return Err("takes at least one input".into());
            }
            let t = c.same_types(0)?;
            let rank = c.rank(0);
            check_axis(*axis, rank)?;
            let mut out = c.shape(0).to_vec();
            out[*axis] = 0;
            for i in ins {
                let d = i.shape;
                if d.len() != rank || d.iter().zip(&out).enumerate().any(|(j, (a, b))| j != *axis && a != b) {
                    return Err(format!(
                        "input '{}' {:?} does not match {:?} outside axis {axis}",
                        i.name,
                        d,
                        c.shape(0)
                    ));
                }
                out[*axis] += d[*axis];
            }
            Ok(vec![(t, out)])
        }
        Op::Split { axis, sizes } => {
            c.arity(1, 1)?;
            check_axis(*axis, c.rank(0))?;
            let d = c.shape(0)[*axis];
            if sizes.is_empty() || sizes.iter().sum::<usize>() != d {
                return Err(format!("sizes {sizes:?} must add up to {d}, the length of axis {axis}"));
            }
            Ok(sizes
                .iter()
                .map(|&s| {
                    let mut o = c.shape(0).to_vec();
                    o[*axis] = s;
                    (c.dtype(0), o)
                })
                .collect())
        }
        Op::Slice { axes, starts, ends, steps } => {
            c.arity(1, 1)?;
            if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
                return Err("axes, starts, ends and steps must have the same length".into());
            }
            let mut out = c.shape(0).to_vec();
            let mut seen = HashSet::new();
            for i in 0..axes.len() {
                check_axis(axes[i], c.rank(0))?;
                if !seen.insert(axes[i]) {
                    return Err(format!("axis {} appears twice", axes[i]));
                }
                if steps[i] == 0 {
                    return Err("step 0 is not allowed".into());
                }
                let (_, _, len) = slice_axis(out[axes[i]], starts[i], ends[i], steps[i]);
                out[axes[i]] = len;
            }
            Ok(vec![(c.dtype(0), out)])
        }
        Op::Reshape { shape } => {
            c.arity(1, 1)?;
            if numel(shape) != numel(c.shape(0)) {
                return Err(format!(
                    "cannot reshape {:?} ({} elements) to {shape:?} ({} elements)",
                    c.shape(0),
                    numel(c.shape(0)),
                    numel(shape)
                ));
            }
            Ok(vec![(c.dtype(0), shape.clone())])
        }
        Op::Transpose { perm } => {
            c.arity(1, 1)?;
            let r = c.rank(0);
            let mut sorted = perm.clone();
            sorted.sort();
            if sorted != (0..r).collect::<Vec<_>>() {
                return Err(format!("perm {perm:?} is not a permutation of 0..{r}"));
            }
            Ok(vec![(c.dtype(0), perm.iter().map(|&p| c.shape(0)[p]).collect())])
        }
        Op::Pad { pads, mode } => {
            c.arity(1, 1)?;
            let r = c.rank(0);
            if pads.len() != r {
                return Err(format!("needs {r} (begin, end) pairs, got {}", pads.len()));
            }
            let mut out = c.shape(0).to_vec();
            for i in 0..r {
                let d = out[i];
                let padded = pads[i].0 > 0 || pads[i].1 > 0;
                match mode {
                    PadMode::Reflect if padded && (pads[i].0 >= d || pads[i].1 >= d) => {
                        return Err(format!("reflect padding {:?} must be smaller than axis {i} ({d})", pads[i]));
                    }
                    PadMode::Edge | PadMode::Wrap if padded && d == 0 => {
                        return Err(format!("{mode:?} padding of the empty axis {i}"));
                    }
                    _ => {}
                }
                out[i] = d + pads[i].0 + pads[i].1;
            }
            Ok(vec![(c.dtype(0), out)])
        }
        Op::Expand { shape } => {
            c.arity(1, 1)?;
            let out = broadcast(c.shape(0), shape)?;
            if out != *shape {
                return Err(format!("{:?} does not broadcast to {shape:?}", c.shape(0)));
            }
            Ok(vec![(c.dtype(0), out)])
        }
        _ => unreachable!("layout family"),
    }
}
