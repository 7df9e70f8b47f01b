//! Elementwise ops: binary arithmetic, comparisons and logic (variadic Max, Min, Sum, Mean
//! as chains), activations and math functions, IsNaN, IsInf, Not, Where; the bitwise ops
//! (BitwiseAnd/Or/Xor/Not, BitShift) and SwiGLU (Swish of the gate times the value).

use super::super::Ctx;
use crate::error::Result;
use crate::ops::{Activation, BinaryOp, Op};
use crate::tensor::Tensor;

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let op = cx.op().to_string();
    let binary = match op.as_str() {
        "Add" => Some(BinaryOp::Add),
        "Sub" => Some(BinaryOp::Sub),
        "Mul" => Some(BinaryOp::Mul),
        "Div" => Some(BinaryOp::Div),
        "Pow" => Some(BinaryOp::Pow),
        "Mod" => Some(BinaryOp::Mod { fmod: cx.attrs.i("fmod", 0) != 0 }),
        "PRelu" => Some(BinaryOp::PRelu),
        "Equal" => Some(BinaryOp::Equal),
        "Less" => Some(BinaryOp::Less),
        "LessOrEqual" => Some(BinaryOp::LessOrEqual),
        "Greater" => Some(BinaryOp::Greater),
        "GreaterOrEqual" => Some(BinaryOp::GreaterOrEqual),
        "And" => Some(BinaryOp::And),
        "Or" => Some(BinaryOp::Or),
        "Xor" => Some(BinaryOp::Xor),
        "BitwiseAnd" => Some(BinaryOp::BitwiseAnd),
        "BitwiseOr" => Some(BinaryOp::BitwiseOr),
        "BitwiseXor" => Some(BinaryOp::BitwiseXor),
        "BitShift" => Some(BinaryOp::BitShift {
            left: match cx.attrs.s("direction", "").as_str() {
                "LEFT" => true,
                "RIGHT" => false,
                other => return Err(cx.err(format!("direction '{other}' is not LEFT or RIGHT"))),
            },
        }),
        _ => None,
    };
    if let Some(b) = binary {
        let (x, y) = (cx.need(0)?, cx.need(1)?);
        let out = cx.binary(b, x, y)?;
        cx.set(0, out);
        return Ok(());
    }
    match op.as_str() {
        "Max" | "Min" | "Sum" | "Mean" => {
            let ins = cx.present();
            if ins.is_empty() {
                return Err(cx.err("takes at least one input"));
            }
            let b = match op.as_str() {
                "Max" => BinaryOp::Max,
                "Min" => BinaryOp::Min,
                _ => BinaryOp::Add,
            };
            let mut acc = ins[0].clone();
            for v in &ins[1..] {
                acc = cx.binary(b, acc, v.clone())?;
            }
            if op == "Mean" && ins.len() > 1 {
                let n = cx.constant(Tensor::scalar(cx.dtype(&acc), ins.len() as f64));
                acc = cx.binary(BinaryOp::Div, acc, n)?;
            }
            cx.set(0, acc);
        }
        "Where" => {
            let (c, x, y) = (cx.need(0)?, cx.need(1)?, cx.need(2)?);
            let out = cx.add1(Op::Where, &[c, x, y])?;
            cx.set(0, out);
        }
        "SwiGLU" => {
            let (a, b) = (cx.need(0)?, cx.need(1)?);
            if cx.shape(&a) != cx.shape(&b) {
                return Err(cx.err(format!(
                    "A {:?} and B {:?} must have the same shape (SwiGLU does not broadcast)",
                    cx.shape(&a),
                    cx.shape(&b)
                )));
            }
            let gate = cx.add1(Op::Unary(Activation::Swish { alpha: cx.attrs.f("alpha", 1.0) }), &[a])?;
            let out = cx.binary(BinaryOp::Mul, gate, b)?;
            cx.set(0, out);
        }
        "Not" | "IsNaN" | "IsInf" | "BitwiseNot" => {
            let x = cx.need(0)?;
            let o = match op.as_str() {
                "Not" => Op::Not,
                "BitwiseNot" => Op::BitwiseNot,
                "IsNaN" => Op::IsNaN,
                _ => {
                    Op::IsInf { pos: cx.attrs.i("detect_positive", 1) != 0, neg: cx.attrs.i("detect_negative", 1) != 0 }
                }
            };
            let out = cx.add1(o, &[x])?;
            cx.set(0, out);
        }
        _ => {
            let act = activation(cx, &op)?;
            let x = cx.need(0)?;
            let out = cx.add1(Op::Unary(act), &[x])?;
            cx.set(0, out);
        }
    }
    Ok(())
}

fn activation(cx: &Ctx, op: &str) -> Result<Activation> {
    let a = &cx.attrs;
    Ok(match op {
        "Relu" => Activation::Relu,
        "LeakyRelu" => Activation::LeakyRelu { alpha: a.f("alpha", 0.01) },
        "Clip" => {
            let (lo, hi) = if cx.opset() < 11 {
                (a.f("min", f32::MIN), a.f("max", f32::MAX))
            } else {
                let bound = |k: usize, what: &str| -> Result<Option<f32>> {
                    Ok(cx.floats(k, what)?.and_then(|v| v.first().copied()).map(|v| v as f32))
                };
                (bound(1, "min")?.unwrap_or(f32::NEG_INFINITY), bound(2, "max")?.unwrap_or(f32::INFINITY))
            };
            Activation::Clip { min: lo, max: hi }
        }
        "Sigmoid" => Activation::Sigmoid,
        "HardSigmoid" => Activation::HardSigmoid { alpha: a.f("alpha", 0.2), beta: a.f("beta", 0.5) },
        "HardSwish" => Activation::HardSwish,
        "Tanh" => Activation::Tanh,
        "Erf" => Activation::Erf,
        "Gelu" => match a.s("approximate", "none").as_str() {
            "none" => Activation::Gelu { tanh_approx: false },
            "tanh" => Activation::Gelu { tanh_approx: true },
            other => return Err(cx.err(format!("approximate='{other}' is not one of none, tanh"))),
        },
        "Abs" => Activation::Abs,
        "Neg" => Activation::Neg,
        "Exp" => Activation::Exp,
        "Log" => Activation::Log,
        "Sqrt" => Activation::Sqrt,
        "Reciprocal" => Activation::Reciprocal,
        "Floor" => Activation::Floor,
        "Ceil" => Activation::Ceil,
        "Round" => Activation::Round,
        "Sign" => Activation::Sign,
        "Sin" => Activation::Sin,
        "Cos" => Activation::Cos,
        "Tan" => Activation::Tan,
        "Asin" => Activation::Asin,
        "Acos" => Activation::Acos,
        "Atan" => Activation::Atan,
        "Sinh" => Activation::Sinh,
        "Cosh" => Activation::Cosh,
        "Asinh" => Activation::Asinh,
        "Acosh" => Activation::Acosh,
        "Atanh" => Activation::Atanh,
        "Elu" => Activation::Elu { alpha: a.f("alpha", 1.0) },
        "Selu" => Activation::Selu { alpha: a.f("alpha", 1.673_263_2), gamma: a.f("gamma", 1.050_701) },
        "Celu" => Activation::Celu { alpha: a.f("alpha", 1.0) },
        "Softplus" => Activation::Softplus,
        "Softsign" => Activation::Softsign,
        "Mish" => Activation::Mish,
        "ThresholdedRelu" => Activation::ThresholdedRelu { alpha: a.f("alpha", 1.0) },
        "Shrink" => Activation::Shrink { lambd: a.f("lambd", 0.5), bias: a.f("bias", 0.0) },
        "Swish" => Activation::Swish { alpha: a.f("alpha", 1.0) },
        other => return Err(cx.err(format!("{other} is not an elementwise op"))),
    })
}
