//! Reductions (axes as attribute before opset 18, ReduceSum before 13; as input after),
//! ArgMax/ArgMin, Softmax/LogSoftmax/Hardmax (before opset 13 over every axis from `axis`
//! on), LayerNormalization (with its mean and inverse standard deviation outputs), CumSum
//! and CumProd (the axis an input known at compile time).

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{BinaryOp, CumulativeKind, Op, ReduceKind, SoftmaxKind};
use crate::tensor::{DType, Tensor};

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let op = cx.op().to_string();
    let x = cx.need(0)?;
    let rank = cx.rank(&x);
    match op.as_str() {
        "ArgMax" | "ArgMin" => {
            let axis = super::axis(cx, cx.attrs.i("axis", 0), rank.max(1))?;
            let o = Op::ArgReduce {
                max: op == "ArgMax",
                axis,
                keepdims: cx.attrs.i("keepdims", 1) != 0,
                last: cx.attrs.i("select_last_index", 0) != 0,
            };
            let out = cx.add1(o, &[x])?;
            cx.set(0, out);
        }
        "Softmax" | "LogSoftmax" | "Hardmax" => {
            let kind = match op.as_str() {
                "Softmax" => SoftmaxKind::Softmax,
                "LogSoftmax" => SoftmaxKind::LogSoftmax,
                _ => SoftmaxKind::Hardmax,
            };
            let old = cx.opset() < 13;
            let axis = super::axis(cx, cx.attrs.i("axis", if old { 1 } else { -1 }), rank)?;
            let out = if old && axis + 1 != rank {
                // Before opset 13 the input is taken as 2-D [prod(d[..axis]), prod(d[axis..])].
                let d = cx.shape(&x);
                let flat = vec![d[..axis].iter().product(), d[axis..].iter().product()];
                let f = cx.add1(Op::Reshape { shape: flat }, &[x])?;
                let s = cx.add1(Op::Softmax { axis: 1, kind }, &[f])?;
                cx.add1(Op::Reshape { shape: d }, &[s])?
            } else {
                cx.add1(Op::Softmax { axis, kind }, &[x])?
            };
            cx.set(0, out);
        }
        "LayerNormalization" => layer_norm(cx, x, rank)?,
        "CumSum" | "CumProd" => {
            let kind = if op == "CumSum" { CumulativeKind::Sum } else { CumulativeKind::Prod };
            let a = match cx.ints(1, "axis")? {
                Some(v) if v.len() == 1 => v[0],
                other => return Err(cx.err(format!("axis must be one integer, got {other:?}"))),
            };
            let axis = super::axis(cx, a, rank)?;
            let exclusive = cx.attrs.i("exclusive", 0) != 0;
            let reverse = cx.attrs.i("reverse", 0) != 0;
            let out = cx.add1(Op::Cumulative { kind, axis, exclusive, reverse }, &[x])?;
            cx.set(0, out);
        }
        _ => {
            let kind = match op.as_str() {
                "ReduceMean" => ReduceKind::Mean,
                "ReduceSum" => ReduceKind::Sum,
                "ReduceMax" => ReduceKind::Max,
                "ReduceMin" => ReduceKind::Min,
                "ReduceProd" => ReduceKind::Prod,
                "ReduceL1" => ReduceKind::L1,
                "ReduceL2" => ReduceKind::L2,
                "ReduceLogSum" => ReduceKind::LogSum,
                "ReduceLogSumExp" => ReduceKind::LogSumExp,
                "ReduceSumSquare" => ReduceKind::SumSquare,
                other => return Err(cx.err(format!("{other} is not a reduction"))),
            };
            let as_input = if kind == ReduceKind::Sum { cx.opset() >= 13 } else { cx.opset() >= 18 };
            let ax = if as_input { cx.ints(1, "axes")? } else { cx.attrs.ints("axes") };
            let keepdims = cx.attrs.i("keepdims", 1) != 0;
            let axes = match ax {
                Some(a) if !a.is_empty() => super::axes(cx, &a, rank)?,
                _ if cx.attrs.i("noop_with_empty_axes", 0) != 0 => {
                    cx.set(0, x);
                    return Ok(());
                }
                _ => (0..rank).collect(),
            };
            let out = cx.add1(Op::Reduce { kind, axes, keepdims }, &[x])?;
            cx.set(0, out);
        }
    }
    Ok(())
}

fn layer_norm(cx: &mut Ctx, x: V, rank: usize) -> Result<()> {
    let axis = super::axis(cx, cx.attrs.i("axis", -1), rank)?;
    let eps = cx.attrs.f("epsilon", 1e-5);
    let mut ins = vec![x.clone(), cx.need(1)?];
    ins.extend(cx.input(2));
    let y = cx.add1(Op::LayerNorm { axis, epsilon: eps }, &ins)?;
    cx.set(0, y);
    if cx.wants_output(1) || cx.wants_output(2) {
        // Mean and 1 / sqrt(var + eps) over the normalised axes, kept as size 1 (float32
        // unless the stash type says otherwise, as ONNX computes them).
        let stash = DType::from_onnx(cx.attrs.i("stash_type", 1) as i32).unwrap_or(DType::F32);
        let xt = if cx.dtype(&x) == stash { x } else { cx.add1(Op::Cast { to: stash }, &[x])? };
        let axes: Vec<usize> = (axis..rank).collect();
        let mean = cx.add1(
            Op::Reduce { kind: ReduceKind::Mean, axes: axes.clone(), keepdims: true },
            std::slice::from_ref(&xt),
        )?;
        let d = cx.binary(BinaryOp::Sub, xt, mean.clone())?;
        let sq = cx.binary(BinaryOp::Mul, d.clone(), d)?;
        let var = cx.add1(Op::Reduce { kind: ReduceKind::Mean, axes, keepdims: true }, &[sq])?;
        let e = cx.constant(Tensor::scalar(stash, eps as f64));
        let ve = cx.binary(BinaryOp::Add, var, e)?;
        let sd = cx.add1(Op::Unary(crate::ops::Activation::Sqrt), &[ve])?;
        let inv = cx.add1(Op::Unary(crate::ops::Activation::Reciprocal), &[sd])?;
        cx.set(1, mean);
        cx.set(2, inv);
    }
    Ok(())
}
