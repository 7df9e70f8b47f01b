//! Signal processing: DFT (opset 17's axis attribute, opset 20's axis input), STFT, the
//! window functions (HannWindow, HammingWindow, BlackmanWindow), MelWeightMatrix,
//! CausalConvWithState (a causal FIR filter with state, built), and Det.
//!
//! The transforms run as device kernels on signals from the data; their lengths, axes and
//! frame steps are needed when the model is compiled. Windows and mel filter banks take their
//! sizes as input values: folded to constants when those are known, else a host step (their
//! output shapes are those values).

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{Activation, BinaryOp, ConvAttrs, DftAttrs, Op, StftAttrs, WindowKind};
use crate::tensor::{DType, Tensor};

/// One non-negative integer input known at compile time.
fn size_input(cx: &Ctx, k: usize, what: &str) -> Result<Option<usize>> {
    match cx.ints(k, what)? {
        None => Ok(None),
        Some(v) if v.len() == 1 && v[0] >= 0 => Ok(Some(v[0] as usize)),
        Some(v) => Err(cx.err(format!("{what} must be one non-negative integer, it is {v:?}"))),
    }
}

/// The `output_datatype` attribute (float32 by default).
fn output_type(cx: &Ctx) -> Result<DType> {
    let code = cx.attrs.i("output_datatype", 1) as i32;
    let t = DType::from_onnx(code)
        .ok_or_else(|| cx.err(format!("output_datatype {} is not a supported type", DType::onnx_name(code))))?;
    crate::ops::signal_check_output_type(t).map_err(|e| cx.err(e))?;
    Ok(t)
}

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    match cx.op() {
        "DFT" => dft(cx),
        "STFT" => stft(cx),
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => {
            let kind = match cx.op() {
                "HannWindow" => WindowKind::Hann,
                "HammingWindow" => WindowKind::Hamming,
                _ => WindowKind::Blackman,
            };
            let op = Op::Window { kind, periodic: cx.attrs.i("periodic", 1) != 0, dtype: output_type(cx)? };
            let size = cx.need(0)?;
            cx.host(op, vec![Some(size)])
        }
        "MelWeightMatrix" => {
            let op = Op::MelWeightMatrix { dtype: output_type(cx)? };
            let ins = (0..5).map(|k| cx.need(k).map(Some)).collect::<Result<Vec<_>>>()?;
            cx.host(op, ins)
        }
        "Det" => {
            let x = cx.need(0)?;
            let y = cx.add1(Op::Det, &[x])?;
            cx.set(0, y);
            Ok(())
        }
        other => Err(cx.err(format!("{other} is not a signal operation"))),
    }
}

fn dft(cx: &mut Ctx) -> Result<()> {
    let x = cx.need(0)?;
    let shape = cx.shape(&x);
    let rank = shape.len();
    if rank < 2 {
        return Err(cx.err(format!("input must end with an axis of complex parts and have rank >= 2, has {shape:?}")));
    }
    let axis = if cx.opset() >= 20 {
        match cx.ints(2, "axis")? {
            None => -2,
            Some(v) if v.len() == 1 => v[0],
            Some(v) => return Err(cx.err(format!("axis must be one integer, it is {v:?}"))),
        }
    } else {
        cx.attrs.i("axis", 1)
    };
    let axis = super::axis(cx, axis, rank)?;
    if axis == rank - 1 {
        return Err(cx.err(format!("axis {axis} is the axis of the complex parts; transform another")));
    }
    let inverse = cx.attrs.i("inverse", 0) != 0;
    let onesided = cx.attrs.i("onesided", 0) != 0;
    let length = match size_input(cx, 1, "dft_length")? {
        Some(n) => n,
        None if inverse && onesided => 2 * shape[axis].saturating_sub(1),
        None => shape[axis],
    };
    let y = cx.add1(Op::Dft(DftAttrs { axis, length, inverse, onesided }), &[x])?;
    cx.set(0, y);
    Ok(())
}

fn stft(cx: &mut Ctx) -> Result<()> {
    let x = cx.need(0)?;
    let shape = cx.shape(&x);
    if shape.len() != 3 {
        return Err(cx.err(format!("signal must be [batch, length, 1 or 2], has shape {shape:?}")));
    }
    let step = size_input(cx, 1, "frame_step")?.ok_or_else(|| cx.err("frame_step is required"))?;
    let window = cx.input(2);
    let frame_length = match (size_input(cx, 3, "frame_length")?, &window) {
        (Some(n), _) => n,
        (None, Some(w)) => cx.shape(w).first().copied().unwrap_or(0),
        (None, None) => shape[1],
    };
    let attrs = StftAttrs { step, frame_length, onesided: cx.attrs.i("onesided", 1) != 0 };
    let mut ins = vec![x];
    ins.extend(window);
    let y = cx.add1(Op::Stft(attrs), &ins)?;
    cx.set(0, y);
    Ok(())
}

/// CausalConvWithState (opset 27): a causal depthwise 1-D convolution over [B, C, L] whose
/// left context is the past state (zeros when absent), built as Concat, then a grouped
/// convolution (constant weights) or the sum of k shifted slices times the weight's columns
/// (weights from the data), an optional SiLU, and the last k - 1 positions as the new state.
pub(super) fn causal_conv_with_state(cx: &mut Ctx) -> Result<()> {
    let (x, w) = (cx.need(0)?, cx.need(1)?);
    let (bias, past) = (cx.input(2), cx.input(3));
    let (xs, ws) = (cx.shape(&x), cx.shape(&w));
    if xs.len() != 3 || ws.len() != 3 || ws[0] != xs[1] || ws[1] != 1 || ws[2] == 0 {
        return Err(cx.err(format!("input must be [B, C, L] and weight [C, 1, k]; they are {xs:?} and {ws:?}")));
    }
    let silu = match cx.attrs.s("activation", "none").as_str() {
        "none" => false,
        "silu" | "swish" => true,
        other => return Err(cx.err(format!("activation '{other}' is not none, silu or swish"))),
    };
    let (b, c, len, k) = (xs[0], xs[1], xs[2], ws[2]);
    let dt = cx.dtype(&x);
    let padded = match past {
        Some(p) if cx.shape(&p) != [b, c, k - 1] => {
            return Err(cx.err(format!("past_state must have shape {:?}, has {:?}", [b, c, k - 1], cx.shape(&p))));
        }
        Some(p) => cx.add1(Op::Concat { axis: 2 }, &[p, x])?,
        None if k > 1 => {
            let zeros = cx.constant(Tensor::zeros_of(dt, vec![b, c, k - 1]));
            cx.add1(Op::Concat { axis: 2 }, &[zeros, x])?
        }
        None => x,
    };
    let constant = matches!(w, V::Const(_)) && bias.as_ref().is_none_or(|v| matches!(v, V::Const(_)));
    let mut y = if constant {
        let p4 = cx.add1(Op::Reshape { shape: vec![b, c, 1, len + k - 1] }, std::slice::from_ref(&padded))?;
        let w4 = cx.add1(Op::Reshape { shape: vec![c, 1, 1, k] }, &[w])?;
        let attrs = ConvAttrs { groups: c, ..Default::default() };
        let mut ins = vec![p4, w4];
        ins.extend(bias);
        let y4 = cx.add1(Op::Conv(attrs), &ins)?;
        cx.add1(Op::Reshape { shape: vec![b, c, len] }, &[y4])?
    } else {
        // sum over j of padded[:, :, j .. j + L] * w[:, 0, j]
        let mut acc: Option<V> = None;
        for j in 0..k {
            let slice = |axis: usize, s: usize, e: usize| Op::Slice {
                axes: vec![axis],
                starts: vec![s as i64],
                ends: vec![e as i64],
                steps: vec![1],
            };
            let xj = cx.add1(slice(2, j, j + len), std::slice::from_ref(&padded))?;
            let wj = cx.add1(slice(2, j, j + 1), std::slice::from_ref(&w))?;
            let wj = cx.add1(Op::Reshape { shape: vec![c, 1] }, &[wj])?;
            let term = cx.binary(BinaryOp::Mul, xj, wj)?;
            acc = Some(match acc {
                Some(a) => cx.binary(BinaryOp::Add, a, term)?,
                None => term,
            });
        }
        let mut y = acc.expect("k >= 1");
        if let Some(bv) = bias {
            let bc = cx.add1(Op::Reshape { shape: vec![c, 1] }, &[bv])?;
            y = cx.binary(BinaryOp::Add, y, bc)?;
        }
        y
    };
    if silu {
        y = cx.add1(Op::Unary(Activation::Silu), &[y])?;
    }
    cx.set(0, y);
    if cx.wants_output(1) {
        let total = len + k - 1;
        let state = Op::Slice {
            axes: vec![2],
            starts: vec![(total - (k - 1)) as i64],
            ends: vec![total as i64],
            steps: vec![1],
        };
        let s = cx.add1(state, &[padded])?;
        cx.set(1, s);
    }
    Ok(())
}
