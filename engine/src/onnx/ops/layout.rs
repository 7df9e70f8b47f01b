//! Data movement: Concat, Split (sizes as attribute before opset 13, as input after;
//! num_outputs from 18), Slice (attributes before 10), Reshape (attribute before 5), Flatten,
//! Transpose, Squeeze/Unsqueeze (axes as attribute before 13), Pad (attributes before 11,
//! axes from 18, negative pads crop), Expand, Tile, DepthToSpace and SpaceToDepth.

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{Op, PadMode, broadcast};

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let op = cx.op().to_string();
    if op == "Concat" {
        let ins = cx.present();
        if ins.is_empty() {
            return Err(cx.err("takes at least one input"));
        }
        let rank = cx.rank(&ins[0]);
        let axis = super::axis(cx, cx.attrs.i("axis", 0), rank)?;
        // Empty pieces add nothing (and need no kernel).
        let parts: Vec<V> = ins.iter().filter(|v| cx.rank(v) != rank || cx.shape(v)[axis] != 0).cloned().collect();
        let out = match parts.len() {
            0 => cx.add1(Op::Concat { axis }, &ins)?,
            1 => parts[0].clone(),
            _ => cx.add1(Op::Concat { axis }, &parts)?,
        };
        cx.set(0, out);
        return Ok(());
    }
    let x = cx.need(0)?;
    let xs = cx.shape(&x);
    let rank = xs.len();
    let out = match op.as_str() {
        "Split" => return split(cx, x, &xs),
        "Slice" => {
            let (starts, ends, axes, steps) = if cx.opset() < 10 {
                (
                    cx.attrs.ints("starts").unwrap_or_default(),
                    cx.attrs.ints("ends").unwrap_or_default(),
                    cx.attrs.ints("axes"),
                    None,
                )
            } else {
                (
                    cx.ints(1, "starts")?.unwrap_or_default(),
                    cx.ints(2, "ends")?.unwrap_or_default(),
                    cx.ints(3, "axes")?,
                    cx.ints(4, "steps")?,
                )
            };
            if ends.len() != starts.len() {
                return Err(cx.err(format!("starts {starts:?} and ends {ends:?} differ in length")));
            }
            let axes = match axes {
                Some(ax) => super::axes(cx, &ax, rank)?,
                None => (0..starts.len()).collect(),
            };
            let steps = steps.unwrap_or_else(|| vec![1; axes.len()]);
            cx.add1(Op::Slice { axes, starts, ends, steps }, &[x])?
        }
        "Reshape" => {
            let target = cx.ints(1, "the target shape")?.ok_or_else(|| cx.err("needs a target shape"))?;
            let allowzero = cx.attrs.i("allowzero", 0) != 0;
            let shape = reshape_target(cx, &xs, &target, allowzero)?;
            cx.add1(Op::Reshape { shape }, &[x])?
        }
        "Flatten" => {
            // Flatten's axis lies in [-rank, rank]: negative ones count from the end.
            let a = cx.attrs.i("axis", 1);
            let axis = if a < 0 { a + rank as i64 } else { a };
            if axis < 0 || axis > rank as i64 {
                return Err(cx.err(format!("axis {a} is out of range for rank {rank}")));
            }
            let axis = axis as usize;
            let shape = vec![xs[..axis].iter().product(), xs[axis..].iter().product()];
            cx.add1(Op::Reshape { shape }, &[x])?
        }
        "Transpose" => {
            let perm = match cx.attrs.ints("perm") {
                Some(p) => super::to_usize(cx, &p, "perm")?,
                None => (0..rank).rev().collect(),
            };
            cx.add1(Op::Transpose { perm }, &[x])?
        }
        "Squeeze" => {
            let ax = if cx.opset() < 13 { cx.attrs.ints("axes") } else { cx.ints(1, "axes")? };
            let axes = match ax {
                Some(a) => super::axes(cx, &a, rank)?,
                None => (0..rank).filter(|&i| xs[i] == 1).collect(),
            };
            if let Some(&a) = axes.iter().find(|&&a| xs[a] != 1) {
                return Err(cx.err(format!("axis {a} has size {}, not 1", xs[a])));
            }
            let shape: Vec<usize> = (0..rank).filter(|i| !axes.contains(i)).map(|i| xs[i]).collect();
            cx.add1(Op::Reshape { shape }, &[x])?
        }
        "Unsqueeze" => {
            let ax = if cx.opset() < 13 { cx.attrs.ints("axes") } else { cx.ints(1, "axes")? };
            let ax = ax.ok_or_else(|| cx.err("needs axes"))?;
            let out_rank = rank + ax.len();
            let axes = super::axes(cx, &ax, out_rank)?;
            let mut sorted = axes.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != axes.len() {
                return Err(cx.err(format!("axes {ax:?} repeat an axis")));
            }
            let mut it = xs.iter();
            let shape: Vec<usize> =
                (0..out_rank).map(|i| if axes.contains(&i) { 1 } else { *it.next().unwrap_or(&1) }).collect();
            cx.add1(Op::Reshape { shape }, &[x])?
        }
        "Pad" => pad(cx, x, &xs)?,
        "Expand" => {
            let target = cx.ints(1, "shape")?.unwrap_or_default();
            let target = super::to_usize(cx, &target, "shape")?;
            let shape = broadcast(&xs, &target).map_err(|e| cx.err(e))?;
            if shape == xs { x } else { cx.add1(Op::Expand { shape }, &[x])? }
        }
        "Tile" => {
            let reps = cx.ints(1, "repeats")?.unwrap_or_default();
            if reps.len() != rank {
                return Err(cx.err(format!("repeats {reps:?} must give one count per axis of {xs:?}")));
            }
            let reps = super::to_usize(cx, &reps, "repeats")?;
            // One repeated axis k at a time, at rank 3 whatever the input's rank:
            // [pre, dk*post] -> [pre, 1, dk*post] -> expand to [pre, r, dk*post] -> dk*r at k.
            let mut shape = xs.clone();
            let mut v = x;
            for (k, &r) in reps.iter().enumerate() {
                if r == 1 {
                    continue;
                }
                let pre: usize = shape[..k].iter().product();
                let rest: usize = shape[k..].iter().product();
                let l = cx.add1(Op::Reshape { shape: vec![pre, 1, rest] }, &[v])?;
                let e = cx.add1(Op::Expand { shape: vec![pre, r, rest] }, &[l])?;
                shape[k] *= r;
                v = cx.add1(Op::Reshape { shape: shape.clone() }, &[e])?;
            }
            v
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let b = cx.attrs.i("blocksize", 0);
            if b <= 0 || rank != 4 {
                return Err(cx.err(format!("needs a positive blocksize and a 4-D input (blocksize {b}, input {xs:?})")));
            }
            let b = b as usize;
            let [n, c, h, w] = [xs[0], xs[1], xs[2], xs[3]];
            let (first, perm, last) = if op == "DepthToSpace" {
                if c % (b * b) != 0 {
                    return Err(cx.err(format!("{c} channels are not divisible by blocksize^2 = {}", b * b)));
                }
                let cb = c / (b * b);
                if cx.attrs.s("mode", "DCR") == "CRD" {
                    (vec![n, cb, b, b, h, w], vec![0, 1, 4, 2, 5, 3], vec![n, cb, h * b, w * b])
                } else {
                    (vec![n, b, b, cb, h, w], vec![0, 3, 4, 1, 5, 2], vec![n, cb, h * b, w * b])
                }
            } else {
                if h % b != 0 || w % b != 0 {
                    return Err(cx.err(format!("{h}x{w} is not divisible by the blocksize {b}")));
                }
                let perm =
                    if cx.attrs.s("mode", "DCR") == "CRD" { vec![0, 1, 3, 5, 2, 4] } else { vec![0, 3, 5, 1, 2, 4] };
                (vec![n, c, h / b, b, w / b, b], perm, vec![n, c * b * b, h / b, w / b])
            };
            let r = cx.add1(Op::Reshape { shape: first }, &[x])?;
            let t = cx.add1(Op::Transpose { perm }, &[r])?;
            cx.add1(Op::Reshape { shape: last }, &[t])?
        }
        other => return Err(cx.err(format!("{other} is not a layout op"))),
    };
    cx.set(0, out);
    Ok(())
}

fn split(cx: &mut Ctx, x: V, xs: &[usize]) -> Result<()> {
    let axis = super::axis(cx, cx.attrs.i("axis", 0), xs.len())?;
    let len = xs[axis];
    let given = if cx.opset() < 13 { cx.attrs.ints("split") } else { cx.ints(1, "split")? };
    let sizes = match given {
        Some(s) if !s.is_empty() => super::to_usize(cx, &s, "split")?,
        _ => {
            let parts =
                if cx.attrs.has("num_outputs") { cx.attrs.i("num_outputs", 1) } else { cx.n.output.len() as i64 };
            if parts <= 0 {
                return Err(cx.err("no outputs"));
            }
            let parts = parts as usize;
            let chunk = len.div_ceil(parts);
            (0..parts).map(|i| chunk.min(len.saturating_sub(i * chunk))).collect()
        }
    };
    let outs = cx.add(Op::Split { axis, sizes }, &[x])?;
    for (k, o) in outs.into_iter().enumerate() {
        cx.set(k, o);
    }
    Ok(())
}

/// A Reshape target resolved: 0 copies the input's dimension (unless `allowzero`), -1 takes
/// what is left. When the model fixes its batch and runs at another one, a first entry equal
/// to the fixed batch follows the run's batch.
fn reshape_target(cx: &Ctx, input: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out: Vec<i64> = Vec::with_capacity(target.len());
    for (i, &t) in target.iter().enumerate() {
        out.push(if t == 0 && !allowzero {
            *input
                .get(i)
                .ok_or_else(|| cx.err(format!("target {target:?} copies dimension {i}, which {input:?} lacks")))?
                as i64
        } else {
            t
        });
    }
    if let (Some((fixed, run)), Some(first)) = (cx.batch_change(), out.first_mut())
        && *first == fixed as i64
        && input.first() == Some(&run)
    {
        *first = run as i64;
    }
    let unknown = out.iter().filter(|&&v| v == -1).count();
    if unknown > 1 || out.iter().any(|&v| v < -1) {
        return Err(cx.err(format!("target shape {target:?} is not valid (at most one -1, no other negatives)")));
    }
    let known: i64 = out.iter().filter(|&&v| v != -1).product();
    if unknown == 1 {
        if known == 0 || total as i64 % known != 0 {
            return Err(cx.err(format!("cannot reshape {input:?} ({total} elements) to {target:?}")));
        }
        let fill = total as i64 / known;
        out.iter_mut().filter(|v| **v == -1).for_each(|v| *v = fill);
    }
    let shape: Vec<usize> = out.iter().map(|&v| v as usize).collect();
    if shape.iter().product::<usize>() != total {
        return Err(cx.err(format!("cannot reshape {input:?} ({total} elements) to {target:?} ({shape:?})")));
    }
    Ok(shape)
}

fn pad(cx: &mut Ctx, x: V, xs: &[usize]) -> Result<V> {
    let rank = xs.len();
    let mode = cx.attrs.s("mode", "constant");
    let (pads, value, axes) = if cx.opset() < 11 {
        (cx.attrs.ints("pads").or(cx.attrs.ints("paddings")).unwrap_or_default(), cx.attrs.f("value", 0.0) as f64, None)
    } else {
        let v = cx.floats(2, "constant_value")?.and_then(|v| v.first().copied()).unwrap_or(0.0);
        (cx.ints(1, "pads")?.unwrap_or_default(), v, cx.ints(3, "axes")?)
    };
    let axes = match axes {
        Some(ax) => super::axes(cx, &ax, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(cx.err(format!("pads {pads:?} must hold a begin and an end per padded axis ({} axes)", axes.len())));
    }
    let mode = match mode.as_str() {
        "constant" => PadMode::Constant(value as f32),
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        other => return Err(cx.err(format!("mode '{other}' is not one of constant, reflect, edge, wrap"))),
    };
    let mut grow = vec![(0usize, 0usize); rank];
    let mut crop: Vec<(usize, i64, i64)> = vec![];
    for (i, &ax) in axes.iter().enumerate() {
        let (b, e) = (pads[i], pads[i + axes.len()]);
        grow[ax] = (b.max(0) as usize, e.max(0) as usize);
        if b < 0 || e < 0 {
            let len = xs[ax] as i64 + b.max(0) + e.max(0);
            crop.push((ax, (-b).max(0), len - (-e).max(0)));
        }
    }
    let mut y =
        if grow.iter().any(|&(b, e)| b > 0 || e > 0) { cx.add1(Op::Pad { pads: grow, mode }, &[x])? } else { x };
    if !crop.is_empty() {
        // Negative pads remove elements: a slice of the padded tensor.
        let op = Op::Slice {
            axes: crop.iter().map(|c| c.0).collect(),
            starts: crop.iter().map(|c| c.1).collect(),
            ends: crop.iter().map(|c| c.2).collect(),
            steps: vec![1; crop.len()],
        };
        y = cx.add1(op, &[y])?;
    }
    Ok(y)
}
