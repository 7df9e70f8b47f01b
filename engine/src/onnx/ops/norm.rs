//! Normalisations: BatchNormalization (inference form with constant statistics) and LRN map
//! to IR operations; training-mode BatchNormalization (batch statistics, running mean and
//! variance outputs) and one whose statistics come from the data are built; InstanceNormalization,
//! GroupNormalization, RMSNormalization, MeanVarianceNormalization and LpNormalization are
//! built from reductions and elementwise operations (as their ONNX function bodies are).

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{Activation, BinaryOp, LrnAttrs, Op, ReduceKind};
use crate::tensor::Tensor;

fn un(cx: &mut Ctx, act: Activation, a: V) -> Result<V> {
    cx.add1(Op::Unary(act), &[a])
}

fn mean(cx: &mut Ctx, x: V, axes: Vec<usize>) -> Result<V> {
    cx.add1(Op::Reduce { kind: ReduceKind::Mean, axes, keepdims: true }, &[x])
}

/// (x - mean) / sqrt(var + eps) over `axes` (biased variance).
fn standardise(cx: &mut Ctx, x: V, axes: Vec<usize>, eps: f32) -> Result<V> {
    let m = mean(cx, x.clone(), axes.clone())?;
    let d = cx.binary(BinaryOp::Sub, x, m)?;
    let sq = cx.binary(BinaryOp::Mul, d.clone(), d.clone())?;
    let var = mean(cx, sq, axes)?;
    let t = cx.dtype(&d);
    let e = cx.constant(Tensor::scalar(t, eps as f64));
    let ve = cx.binary(BinaryOp::Add, var, e)?;
    let sd = un(cx, Activation::Sqrt, ve)?;
    cx.binary(BinaryOp::Div, d, sd)
}

/// A per-channel vector [C] shaped to broadcast over [N, C, spatial...] of rank `rank`.
fn per_channel(cx: &mut Ctx, v: V, rank: usize) -> Result<V> {
    let c = cx.shape(&v).iter().product::<usize>();
    let mut shape = vec![c];
    shape.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
    cx.add1(Op::Reshape { shape }, &[v])
}

/// (x - mean[c]) / sqrt(var[c] + eps) * scale[c] + bias[c] for per-channel vectors.
fn normalise_channels(cx: &mut Ctx, x: V, [scale, bias, mean, var]: [V; 4], eps: f32) -> Result<V> {
    let rank = cx.rank(&x);
    let [scale, bias, mean, var] = [scale, bias, mean, var].map(|v| per_channel(cx, v, rank));
    let (scale, bias, mean, var) = (scale?, bias?, mean?, var?);
    let d = cx.binary(BinaryOp::Sub, x, mean)?;
    let t = cx.dtype(&d);
    let e = cx.constant(Tensor::scalar(t, eps as f64));
    let ve = cx.binary(BinaryOp::Add, var, e)?;
    let sd = un(cx, Activation::Sqrt, ve)?;
    let n = cx.binary(BinaryOp::Div, d, sd)?;
    let y = cx.binary(BinaryOp::Mul, n, scale)?;
    cx.binary(BinaryOp::Add, y, bias)
}

/// Training-mode batch normalisation (opset 14 on): normalised with the batch's own
/// statistics over every axis but the channels (biased variance); outputs 1 and 2 are the
/// running mean and variance, `input * momentum + batch statistic * (1 - momentum)`.
fn batch_norm_training(cx: &mut Ctx, ins: Vec<V>, eps: f32) -> Result<V> {
    let [x, scale, bias, running_mean, running_var] = <[V; 5]>::try_from(ins).expect("five inputs");
    let shape = cx.shape(&x);
    if shape.len() < 2 {
        return Err(cx.err(format!("input must have a channel axis (rank >= 2), has shape {shape:?}")));
    }
    let c = shape[1];
    let axes: Vec<usize> = std::iter::once(0).chain(2..shape.len()).collect();
    let batch_mean = mean(cx, x.clone(), axes.clone())?;
    let d = cx.binary(BinaryOp::Sub, x.clone(), batch_mean.clone())?;
    let sq = cx.binary(BinaryOp::Mul, d.clone(), d)?;
    let batch_var = mean(cx, sq, axes)?;
    let batch_mean = cx.add1(Op::Reshape { shape: vec![c] }, &[batch_mean])?;
    let batch_var = cx.add1(Op::Reshape { shape: vec![c] }, &[batch_var])?;
    let y = normalise_channels(cx, x, [scale, bias, batch_mean.clone(), batch_var.clone()], eps)?;
    let momentum = cx.attrs.f("momentum", 0.9) as f64;
    let t = cx.dtype(&y);
    let keep = cx.constant(Tensor::scalar(t, momentum));
    let take = cx.constant(Tensor::scalar(t, 1.0 - momentum));
    for (k, running, batch) in [(1, running_mean, batch_mean), (2, running_var, batch_var)] {
        if cx.wants_output(k) {
            let old = cx.binary(BinaryOp::Mul, running, keep.clone())?;
            let new = cx.binary(BinaryOp::Mul, batch, take.clone())?;
            let updated = cx.binary(BinaryOp::Add, old, new)?;
            cx.set(k, updated);
        }
    }
    Ok(y)
}

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let x = cx.need(0)?;
    let rank = cx.rank(&x);
    let out = match cx.op() {
        "BatchNormalization" => {
            if cx.opset() < 9 && cx.attrs.i("spatial", 1) == 0 {
                return Err(cx.err("per-element (spatial = 0) batch normalisation is not supported"));
            }
            let training = cx.opset() >= 14 && cx.attrs.i("training_mode", 0) != 0;
            if !training && (1..5).any(|k| cx.wants_output(k)) {
                return Err(cx.err(
                    "the running statistics outputs of opsets before 14 are not supported; export with opset >= 14 \
                     (training_mode) or for inference",
                ));
            }
            let ins: Vec<V> = (0..5).map(|k| cx.need(k)).collect::<Result<_>>()?;
            let eps = cx.attrs.f("epsilon", 1e-5);
            if training {
                batch_norm_training(cx, ins, eps)?
            } else if ins[1..].iter().all(|v| matches!(v, V::Const(_))) {
                cx.add1(Op::BatchNorm { epsilon: eps }, &ins)?
            } else {
                // Statistics computed from the data: the formula, elementwise.
                let [x, scale, bias, mean, var] = <[V; 5]>::try_from(ins).expect("five inputs");
                normalise_channels(cx, x, [scale, bias, mean, var], eps)?
            }
        }
        "LRN" => {
            let size = cx.attrs.i("size", 0);
            if size <= 0 {
                return Err(cx.err("size must be a positive integer"));
            }
            let attrs = LrnAttrs {
                size: size as usize,
                alpha: cx.attrs.f("alpha", 1e-4),
                beta: cx.attrs.f("beta", 0.75),
                bias: cx.attrs.f("bias", 1.0),
            };
            cx.add1(Op::Lrn(attrs), &[x])?
        }
        "InstanceNormalization" => {
            if rank < 3 {
                return Err(cx.err(format!("input must be [N, C, spatial...], is {:?}", cx.shape(&x))));
            }
            let eps = cx.attrs.f("epsilon", 1e-5);
            let y = standardise(cx, x, (2..rank).collect(), eps)?;
            let (s, b) = (cx.need(1)?, cx.need(2)?);
            let s = per_channel(cx, s, rank)?;
            let b = per_channel(cx, b, rank)?;
            let y = cx.binary(BinaryOp::Mul, y, s)?;
            cx.binary(BinaryOp::Add, y, b)?
        }
        "GroupNormalization" => {
            let xs = cx.shape(&x);
            if rank < 3 {
                return Err(cx.err(format!("input must be [N, C, spatial...], is {xs:?}")));
            }
            let g = cx.attrs.i("num_groups", 0);
            let c = xs[1];
            if g <= 0 || !c.is_multiple_of(g as usize) {
                return Err(cx.err(format!("num_groups {g} must divide the {c} channels")));
            }
            let g = g as usize;
            let eps = cx.attrs.f("epsilon", 1e-5);
            let grouped =
                cx.add1(Op::Reshape { shape: vec![xs[0], g, xs[1..].iter().product::<usize>() / g] }, &[x])?;
            let y = standardise(cx, grouped, vec![2], eps)?;
            let y = cx.add1(Op::Reshape { shape: xs.clone() }, &[y])?;
            let (mut s, mut b) = (cx.need(1)?, cx.need(2)?);
            if cx.shape(&s).iter().product::<usize>() == g && g != c {
                // Opset 18: one scale and bias per group, repeated over its channels.
                for v in [&mut s, &mut b] {
                    let col = cx.add1(Op::Reshape { shape: vec![g, 1] }, std::slice::from_ref(v))?;
                    let rep = cx.add1(Op::Expand { shape: vec![g, c / g] }, &[col])?;
                    *v = cx.add1(Op::Reshape { shape: vec![c] }, &[rep])?;
                }
            }
            let s = per_channel(cx, s, rank)?;
            let b = per_channel(cx, b, rank)?;
            let y = cx.binary(BinaryOp::Mul, y, s)?;
            cx.binary(BinaryOp::Add, y, b)?
        }
        "RMSNormalization" => {
            let axis = super::axis(cx, cx.attrs.i("axis", -1), rank)?;
            let eps = cx.attrs.f("epsilon", 1e-5);
            let sq = cx.binary(BinaryOp::Mul, x.clone(), x.clone())?;
            let ms = mean(cx, sq, (axis..rank).collect())?;
            let t = cx.dtype(&ms);
            let e = cx.constant(Tensor::scalar(t, eps as f64));
            let ve = cx.binary(BinaryOp::Add, ms, e)?;
            let rms = un(cx, Activation::Sqrt, ve)?;
            let y = cx.binary(BinaryOp::Div, x, rms)?;
            let s = cx.need(1)?;
            cx.binary(BinaryOp::Mul, y, s)?
        }
        "MeanVarianceNormalization" => {
            let ax = cx.attrs.ints("axes").unwrap_or(vec![0, 2, 3]);
            let axes = super::axes(cx, &ax, rank)?;
            // (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9), as the ONNX function computes it.
            let m = mean(cx, x.clone(), axes.clone())?;
            let sq = cx.binary(BinaryOp::Mul, x.clone(), x.clone())?;
            let msq = mean(cx, sq, axes)?;
            let m2 = cx.binary(BinaryOp::Mul, m.clone(), m.clone())?;
            let var = cx.binary(BinaryOp::Sub, msq, m2)?;
            let sd = un(cx, Activation::Sqrt, var)?;
            let t = cx.dtype(&sd);
            let e = cx.constant(Tensor::scalar(t, 1e-9));
            let den = cx.binary(BinaryOp::Add, sd, e)?;
            let d = cx.binary(BinaryOp::Sub, x, m)?;
            cx.binary(BinaryOp::Div, d, den)?
        }
        "LpNormalization" => {
            let axis = super::axis(cx, cx.attrs.i("axis", -1), rank)?;
            let p = cx.attrs.i("p", 2);
            let kind = match p {
                1 => ReduceKind::L1,
                2 => ReduceKind::L2,
                _ => return Err(cx.err(format!("p = {p}: only 1 and 2 are defined"))),
            };
            let norm = cx.add1(Op::Reduce { kind, axes: vec![axis], keepdims: true }, std::slice::from_ref(&x))?;
            let y = cx.binary(BinaryOp::Div, x, norm.clone())?;
            // A zero norm gives zeros, not NaN.
            let t = cx.dtype(&norm);
            let zero = cx.constant(Tensor::scalar(t, 0.0));
            let is_zero = cx.binary(BinaryOp::Equal, norm, zero.clone())?;
            cx.add1(Op::Where, &[is_zero, zero, y])?
        }
        other => return Err(cx.err(format!("{other} is not a normalisation"))),
    };
    cx.set(0, out);
    Ok(())
}
