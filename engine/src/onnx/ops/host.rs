//! Host ops (their output shapes depend on the data): NonZero, NonMaxSuppression, Unique,
//! TopK, Compress. Each is folded when its inputs are known at compile time, else it runs on
//! the host between two device graphs, except where the shape is known at compile time: TopK
//! with a constant k runs on the device (`Op::TopKStatic`), Compress with a constant
//! condition is a device gather of the selected positions.

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{NmsAttrs, Op};
use crate::tensor::DType;

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let n_in = cx.input_count();
    let ins: Vec<_> = (0..n_in).map(|k| cx.input(k)).collect();
    let op = match cx.op() {
        "NonZero" => Op::NonZero,
        "NonMaxSuppression" => {
            Op::NonMaxSuppression(NmsAttrs { center_point_box: cx.attrs.i("center_point_box", 0) != 0 })
        }
        "Unique" => {
            let x = cx.need(0)?;
            let axis =
                if cx.attrs.has("axis") { Some(super::axis(cx, cx.attrs.i("axis", 0), cx.rank(&x))?) } else { None };
            Op::Unique { sorted: cx.attrs.i("sorted", 1) != 0, axis }
        }
        "TopK" => {
            let x = cx.need(0)?;
            let axis = super::axis(cx, cx.attrs.i("axis", -1), cx.rank(&x))?;
            let largest = cx.attrs.i("largest", 1) != 0;
            // k is an attribute before opset 10, an input after.
            let k = if cx.opset() < 10 {
                Some(cx.attrs.i("k", -1))
            } else {
                match cx.input(1) {
                    Some(V::Const(t)) if t.len() == 1 && t.dtype().is_int() => Some(t.i64_at(0)),
                    Some(V::Const(t)) => {
                        return Err(cx.err(format!("k must be one integer, it is {} {:?}", t.dtype(), t.shape())));
                    }
                    _ => None,
                }
            };
            if let Some(k) = k {
                // Known at compile time: the device kernel.
                let k = usize::try_from(k).map_err(|_| cx.err(format!("k = {k} must be >= 0")))?;
                let outs = cx.add(Op::TopKStatic { axis, k, largest }, &[x])?;
                for (i, v) in outs.into_iter().enumerate() {
                    cx.set(i, v);
                }
                return Ok(());
            }
            Op::TopK { axis, largest, sorted: cx.attrs.i("sorted", 1) != 0 }
        }
        "Compress" => return compress(cx),
        other => return Err(cx.err(format!("{other} is not a host op"))),
    };
    cx.host(op, ins)
}

/// Compress: with a constant condition, a gather of the selected positions (of the
/// flattened input when there is no axis); with a condition from the data, a host step.
fn compress(cx: &mut Ctx) -> Result<()> {
    let (x, cond) = (cx.need(0)?, cx.need(1)?);
    let axis = if cx.attrs.has("axis") { Some(super::axis(cx, cx.attrs.i("axis", 0), cx.rank(&x))?) } else { None };
    if cx.dtype(&cond) != DType::Bool || cx.rank(&cond) != 1 {
        return Err(cx.err(format!(
            "condition must be a 1-D bool tensor, it is {} {:?}",
            cx.dtype(&cond),
            cx.shape(&cond)
        )));
    }
    if matches!(cond, V::Act(_)) {
        return cx.host(Op::Compress { axis }, vec![Some(x), Some(cond)]);
    }
    // The true positions ([1, n], folded now), as the indices of a gather (which checks that
    // they lie within the axis).
    let picked = cx.add1(Op::NonZero, &[cond])?;
    let n = cx.shape(&picked)[1];
    let picked = cx.add1(Op::Reshape { shape: vec![n] }, &[picked])?;
    let (src, axis) = match axis {
        Some(a) => (x, a),
        None => {
            let all = cx.shape(&x).iter().product();
            (cx.add1(Op::Reshape { shape: vec![all] }, &[x])?, 0)
        }
    };
    let out = cx.add1(Op::Gather { axis }, &[src, picked])?;
    cx.set(0, out);
    Ok(())
}
