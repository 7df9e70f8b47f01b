//! Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (a log-softmax over the
//! classes, then the negative log-likelihood), built from elementwise operations and
//! reductions.
//!
//! Labels may come from the data, so each label's log-probability is selected without a
//! gather: `Equal(labels, iota over the classes)` marks it, `Where` keeps it and a sum over
//! the class axis takes it (exact: one value and zeros). Class weights are selected the same
//! way; an ignored label (`ignore_index`, also outside 0..C) has loss 0 and weight 0. The
//! mean reduction divides by the summed weights of the labels not ignored, as ONNX's
//! weighted mean does (by the count of those labels without weights).

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{Activation, BinaryOp, Op, ReduceKind, SoftmaxKind};
use crate::tensor::Tensor;

/// The reduction of the per-element losses.
#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Sum,
    Mean,
}

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let x = cx.need(0)?;
    let labels = cx.need(1)?;
    let weight = cx.input(2);
    let reduction = match cx.attrs.s("reduction", "mean").as_str() {
        "none" => Reduction::None,
        "sum" => Reduction::Sum,
        "mean" => Reduction::Mean,
        other => return Err(cx.err(format!("reduction '{other}' is not one of none, sum, mean"))),
    };
    let xs = cx.shape(&x);
    let ls = cx.shape(&labels);
    if xs.len() < 2 {
        return Err(cx.err(format!("scores must be [N, C, d...], have shape {xs:?}")));
    }
    if !cx.dtype(&x).is_float() {
        return Err(cx.err(format!("scores must be a float tensor, they are {}", cx.dtype(&x))));
    }
    if !cx.dtype(&labels).is_int() {
        return Err(cx.err(format!("labels must be integers, they are {}", cx.dtype(&labels))));
    }
    let expected: Vec<usize> = std::iter::once(xs[0]).chain(xs[2..].iter().copied()).collect();
    if ls != expected {
        return Err(cx.err(format!("labels have shape {ls:?}; scores {xs:?} need labels {expected:?}")));
    }
    if let Some(w) = &weight
        && cx.shape(w) != [xs[1]]
    {
        return Err(cx.err(format!("weights must have shape [{}] (one per class), have {:?}", xs[1], cx.shape(w))));
    }
    let log_prob = if cx.op() == "SoftmaxCrossEntropyLoss" {
        let lp = cx.add1(Op::Softmax { axis: 1, kind: SoftmaxKind::LogSoftmax }, &[x])?;
        cx.set(1, lp.clone());
        lp
    } else {
        x
    };
    let ignore = cx.attrs.has("ignore_index").then(|| cx.attrs.i("ignore_index", 0));
    // More than one spatial axis: flattened into one ([N, C, D], labels [N, D]), as the
    // ONNX definition does, and the per-element losses shaped back as the labels.
    let (log_prob, flat_labels) = if xs.len() > 3 {
        let d: usize = xs[2..].iter().product();
        let lp = cx.add1(Op::Reshape { shape: vec![xs[0], xs[1], d] }, &[log_prob])?;
        let l = cx.add1(Op::Reshape { shape: vec![xs[0], d] }, &[labels])?;
        (lp, l)
    } else {
        (log_prob, labels)
    };
    let mut loss = nll(cx, log_prob, flat_labels, weight, ignore, reduction)?;
    if cx.rank(&loss) > 0 && cx.shape(&loss) != ls {
        loss = cx.add1(Op::Reshape { shape: ls }, &[loss])?;
    }
    cx.set(0, loss);
    Ok(())
}

/// Sums over every axis (a scalar).
fn sum_all(cx: &mut Ctx, v: V) -> Result<V> {
    let axes = (0..cx.rank(&v)).collect();
    cx.add1(Op::Reduce { kind: ReduceKind::Sum, axes, keepdims: false }, &[v])
}

/// The negative log-likelihood of `labels` [N, d...] under `log_prob` [N, C, d...].
fn nll(cx: &mut Ctx, log_prob: V, labels: V, weight: Option<V>, ignore: Option<i64>, r: Reduction) -> Result<V> {
    let xs = cx.shape(&log_prob);
    let (c, rank) = (xs[1], xs.len());
    let dt = cx.dtype(&log_prob);
    let lt = cx.dtype(&labels);
    let zero = cx.constant(Tensor::scalar(dt, 0.0));

    // Where each label's class is: [N, C, d...] from labels [N, 1, d...] == iota [1, C, 1...].
    let mut col = xs.clone();
    col[1] = 1;
    let labels_col = cx.add1(Op::Reshape { shape: col }, std::slice::from_ref(&labels))?;
    let mut iota_shape = vec![1; rank];
    iota_shape[1] = c;
    let iota = cx.constant(Tensor::from_i64(lt, iota_shape.clone(), (0..c as i64).collect())?);
    let hit = cx.binary(BinaryOp::Equal, labels_col, iota)?;
    let pick = |cx: &mut Ctx, v: V| -> Result<V> {
        let kept = cx.add1(Op::Where, &[hit.clone(), v, zero.clone()])?;
        cx.add1(Op::Reduce { kind: ReduceKind::Sum, axes: vec![1], keepdims: false }, &[kept])
    };
    let picked = pick(cx, log_prob)?;
    let mut loss = cx.add1(Op::Unary(Activation::Neg), &[picked])?;

    // Per-element weights: the label's class weight, 0 where the label is ignored.
    let mut weights = match weight {
        Some(w) => {
            let wb = cx.add1(Op::Reshape { shape: iota_shape }, &[w])?;
            Some(pick(cx, wb)?)
        }
        None => None,
    };
    if let Some(ii) = ignore {
        let ii = cx.constant(Tensor::from_i64(lt, vec![], vec![ii])?);
        let ignored = cx.binary(BinaryOp::Equal, labels, ii)?;
        loss = cx.add1(Op::Where, &[ignored.clone(), zero.clone(), loss])?;
        let w = match weights {
            Some(w) => w,
            None => cx.constant(Tensor::scalar(dt, 1.0)),
        };
        let w = cx.add1(Op::Where, &[ignored, zero.clone(), w])?;
        // A scalar weight (no class weights) broadcast to the labels' shape for the sum.
        let mut ls = xs.clone();
        ls.remove(1);
        weights = Some(if cx.shape(&w) == ls { w } else { cx.add1(Op::Expand { shape: ls }, &[w])? });
    }
    if let Some(w) = &weights {
        loss = cx.binary(BinaryOp::Mul, loss, w.clone())?;
    }
    Ok(match (r, weights) {
        (Reduction::None, _) => loss,
        (Reduction::Sum, _) => sum_all(cx, loss)?,
        (Reduction::Mean, Some(w)) => {
            let total = sum_all(cx, loss)?;
            let wsum = sum_all(cx, w)?;
            cx.binary(BinaryOp::Div, total, wsum)?
        }
        (Reduction::Mean, None) => {
            let axes = (0..cx.rank(&loss)).collect();
            cx.add1(Op::Reduce { kind: ReduceKind::Mean, axes, keepdims: false }, &[loss])?
        }
    })
}
