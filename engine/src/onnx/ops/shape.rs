//! Ops that produce constants or aliases: Constant, ConstantOfShape, Identity, Dropout (at
//! inference, or training with ratio 0: nothing dropped), Shape and Size (every shape is static once the model is specialised), Range
//! (folded when its inputs are known, else a host step).

use std::sync::Arc;

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::Op;
use crate::tensor::{DType, Tensor};

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    match cx.op() {
        "Constant" => {
            let a = &cx.attrs;
            let t = if let Some(t) = cx.value_attr() {
                t
            } else if a.has("value_float") {
                Arc::new(Tensor::new(vec![], vec![a.f("value_float", 0.0)])?)
            } else if let Some(fs) = a.floats("value_floats") {
                Arc::new(Tensor::new(vec![fs.len()], fs)?)
            } else if a.has("value_int") {
                Arc::new(Tensor::from_i64(DType::I64, vec![], vec![a.i("value_int", 0)])?)
            } else if let Some(is) = a.ints("value_ints") {
                Arc::new(Tensor::ints(&is))
            } else if a.has("sparse_value") || a.has("value_string") || a.has("value_strings") {
                return Err(cx.err("sparse and string constants are not supported"));
            } else {
                return Err(cx.err("needs a value, value_float(s) or value_int(s) attribute"));
            };
            cx.set(0, V::Const(t));
        }
        "Identity" => {
            let v = cx.need(0)?;
            cx.set(0, v);
        }
        "Dropout" => {
            let training = match cx.opset() {
                o if o >= 12 => cx.ints(2, "training_mode")?.and_then(|v| v.first().copied()).unwrap_or(0) != 0,
                _ => false,
            };
            let ratio = match cx.opset() {
                o if o >= 12 => cx.floats(1, "ratio")?.and_then(|v| v.first().copied()).unwrap_or(0.5),
                _ => 0.0,
            };
            if training && ratio != 0.0 {
                // A ratio of 0 drops nothing: the output is the input, the mask all true.
                return Err(cx.err(format!(
                    "training-mode dropout with ratio {ratio} drops random elements, which cannot be reproduced; \
                     export the model for inference (or use ratio 0)"
                )));
            }
            let x = cx.need(0)?;
            let shape = cx.shape(&x);
            cx.set(0, x);
            if cx.wants_output(1) {
                // At inference nothing is dropped: the mask is all true.
                let n = shape.iter().product();
                let mask = cx.constant(Tensor::from_bool(shape, vec![true; n])?);
                cx.set(1, mask);
            }
        }
        "Shape" => {
            let x = cx.need(0)?;
            let s: Vec<i64> = cx.shape(&x).iter().map(|&d| d as i64).collect();
            let r = s.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (st, en) = if cx.opset() >= 15 {
                (clampi(cx.attrs.i("start", 0)), clampi(cx.attrs.i("end", r)))
            } else {
                (0, r as usize)
            };
            let v = cx.constant(Tensor::ints(&s[st..en.max(st)]));
            cx.set(0, v);
        }
        "Size" => {
            let x = cx.need(0)?;
            let n = cx.shape(&x).iter().product::<usize>() as i64;
            let v = cx.constant(Tensor::from_i64(DType::I64, vec![], vec![n])?);
            cx.set(0, v);
        }
        "ConstantOfShape" => {
            let value = match cx.value_attr() {
                Some(t) => t.as_ref().clone(),
                None => Tensor::new(vec![1], vec![0.0])?,
            };
            if value.len() != 1 {
                return Err(cx.err(format!("value must hold one element, holds {}", value.len())));
            }
            let shape = cx.need(0)?;
            cx.host(Op::ConstantOfShape { value }, vec![Some(shape)])?;
        }
        "Range" => {
            let ins = (0..3).map(|k| cx.input(k)).collect();
            cx.host(Op::Range, ins)?;
        }
        _ => unreachable!("shape family"),
    }
    Ok(())
}
