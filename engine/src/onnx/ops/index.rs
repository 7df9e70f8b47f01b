//! Indexing ops (on constant or computed data and indices): Gather, GatherElements, GatherND
//! (batch_dims from opset 12), ScatterElements (reduction from opset 16, max/min from 18) and
//! its predecessor Scatter (opsets 9-10), ScatterND (reduction from opset 16), TensorScatter
//! (opset 24), OneHot, Trilu, ReverseSequence, and EyeLike (a constant: its output depends
//! only on the input's static shape).

use super::super::Ctx;
use crate::error::Result;
use crate::ops::{Op, ScatterReduction};
use crate::tensor::{DType, Tensor};

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let op = cx.op().to_string();
    let out = match op.as_str() {
        "Gather" => {
            let (data, idx) = (cx.need(0)?, cx.need(1)?);
            let axis = super::axis(cx, cx.attrs.i("axis", 0), cx.rank(&data))?;
            cx.add1(Op::Gather { axis }, &[data, idx])?
        }
        "GatherElements" => {
            let (data, idx) = (cx.need(0)?, cx.need(1)?);
            let axis = super::axis(cx, cx.attrs.i("axis", 0), cx.rank(&data))?;
            cx.add1(Op::GatherElements { axis }, &[data, idx])?
        }
        "GatherND" => {
            let (data, idx) = (cx.need(0)?, cx.need(1)?);
            let b = cx.attrs.i("batch_dims", 0);
            let batch_dims = usize::try_from(b).map_err(|_| cx.err(format!("batch_dims {b} must be >= 0")))?;
            cx.add1(Op::GatherNd { batch_dims }, &[data, idx])?
        }
        "ScatterElements" | "Scatter" => {
            let (data, idx, upd) = (cx.need(0)?, cx.need(1)?, cx.need(2)?);
            let axis = super::axis(cx, cx.attrs.i("axis", 0), cx.rank(&data))?;
            let reduction = reduction(cx)?;
            cx.add1(Op::ScatterElements { axis, reduction }, &[data, idx, upd])?
        }
        "ScatterND" => {
            let (data, idx, upd) = (cx.need(0)?, cx.need(1)?, cx.need(2)?);
            let reduction = reduction(cx)?;
            cx.add1(Op::ScatterNd { reduction }, &[data, idx, upd])?
        }
        "TensorScatter" => {
            let past = cx.need(0)?;
            let axis = super::axis(cx, cx.attrs.i("axis", -2), cx.rank(&past))?;
            let circular = match cx.attrs.s("mode", "linear").as_str() {
                "linear" => false,
                "circular" => true,
                other => return Err(cx.err(format!("mode '{other}' is not one of linear, circular"))),
            };
            let mut ins = vec![past, cx.need(1)?];
            ins.extend(cx.input(2));
            cx.add1(Op::TensorScatter { axis, circular }, &ins)?
        }
        "OneHot" => one_hot(cx)?,
        "Trilu" => {
            let x = cx.need(0)?;
            let k = match cx.ints(1, "k")? {
                None => 0,
                Some(v) if v.len() == 1 => v[0],
                Some(v) => return Err(cx.err(format!("k must be one integer, got {v:?}"))),
            };
            cx.add1(Op::Trilu { upper: cx.attrs.i("upper", 1) != 0, k }, &[x])?
        }
        "ReverseSequence" => {
            let (x, lens) = (cx.need(0)?, cx.need(1)?);
            let rank = cx.rank(&x);
            let batch_axis = super::axis(cx, cx.attrs.i("batch_axis", 1), rank)?;
            let time_axis = super::axis(cx, cx.attrs.i("time_axis", 0), rank)?;
            cx.add1(Op::ReverseSequence { batch_axis, time_axis }, &[x, lens])?
        }
        "EyeLike" => eye_like(cx)?,
        other => return Err(cx.err(format!("{other} is not an indexing op"))),
    };
    cx.set(0, out);
    Ok(())
}

/// The `reduction` attribute of the scatters ("none" when absent).
fn reduction(cx: &Ctx) -> Result<ScatterReduction> {
    let r = cx.attrs.s("reduction", "none");
    ScatterReduction::parse(&r).ok_or_else(|| cx.err(format!("reduction '{r}' is not one of none, add, mul, max, min")))
}

/// OneHot: depth is needed when the model is compiled (it is the new axis' length); the
/// indices and the `[off, on]` values may come from the data.
fn one_hot(cx: &mut Ctx) -> Result<super::super::V> {
    let (idx, values) = (cx.need(0)?, cx.need(2)?);
    let depth = cx.const_input(1, "depth")?.ok_or_else(|| cx.err("depth is missing"))?;
    if depth.len() != 1 {
        return Err(cx.err(format!("depth must hold one value, has shape {:?}", depth.shape())));
    }
    // A float depth is truncated, as ONNX casts it to int64.
    let d = depth.i64_at(0);
    let depth = usize::try_from(d).ok().filter(|&d| d >= 1).ok_or_else(|| cx.err(format!("depth {d} must be >= 1")))?;
    let axis = super::axis(cx, cx.attrs.i("axis", -1), cx.rank(&idx) + 1)?;
    cx.add1(Op::OneHot { axis, depth }, &[idx, values])
}

/// EyeLike: ones on diagonal k of a matrix of the input's shape, of the `dtype` attribute's
/// type (the input's when absent).
fn eye_like(cx: &mut Ctx) -> Result<super::super::V> {
    let x = cx.need(0)?;
    let shape = cx.shape(&x);
    let [rows, cols] = shape[..] else {
        return Err(cx.err(format!("input must be a matrix (rank 2), has shape {shape:?}")));
    };
    let dtype = if cx.attrs.has("dtype") {
        let code = cx.attrs.i("dtype", 0);
        i32::try_from(code)
            .ok()
            .and_then(DType::from_onnx)
            .ok_or_else(|| cx.err(format!("dtype {code} is not an element type poolpipe supports")))?
    } else {
        cx.dtype(&x)
    };
    if rows.checked_mul(cols).is_none_or(|n| n > 1 << 28) {
        return Err(cx.err(format!("a constant of shape {shape:?} would be more than 2^28 elements")));
    }
    let k = cx.attrs.i("k", 0);
    let values = (0..rows * cols).map(|f| if (f % cols) as i64 - (f / cols) as i64 == k { 1.0 } else { 0.0 }).collect();
    let t = Tensor::from_f64_as(dtype, shape, values).map_err(|e| cx.err(e.to_string()))?;
    Ok(cx.constant(t))
}
