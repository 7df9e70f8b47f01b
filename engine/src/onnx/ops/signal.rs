//! Signal processing: DFT (opset 17's axis attribute, opset 20's axis input), STFT, the
//! window functions (HannWindow, HammingWindow, BlackmanWindow), MelWeightMatrix, and Det.
//!
//! The transforms run as device kernels on signals from the data; their lengths, axes and
//! frame steps are needed when the model is compiled. Windows and mel filter banks take their
//! sizes as input values: folded to constants when those are known, else a host step (their
//! output shapes are those values).

use super::super::Ctx;
use crate::error::Result;
use crate::ops::{DftAttrs, Op, StftAttrs, WindowKind};
use crate::tensor::DType;

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
