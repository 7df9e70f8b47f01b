//! Reference elementwise operations on every element type (bitwise ones on integers).

use super::{OpResult, activate, broadcast, broadcast_map, make};
use crate::ops::{Activation, BinaryOp, Op};
use crate::tensor::{DType, Tensor};

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let one = |what: &str| -> OpResult<&Tensor> {
        if ins.len() == 1 { Ok(ins[0]) } else { Err(format!("{what} takes 1 input, got {}", ins.len())) }
    };
    Ok(vec![match op {
        Op::Binary { op, activation } => {
            if ins.len() != 2 {
                return Err(format!("takes 2 inputs, got {}", ins.len()));
            }
            binary(ins[0], ins[1], *op, *activation)?
        }
        Op::Unary(act) => unary(one("a unary op")?, *act)?,
        Op::IsNaN => {
            let x = one("IsNaN")?;
            bools(x.shape(), x.to_f64s().iter().map(|v| v.is_nan()).collect())?
        }
        Op::IsInf { pos, neg } => {
            let x = one("IsInf")?;
            let v = x.to_f64s().iter().map(|&v| v.is_infinite() && (v > 0.0 && *pos || v < 0.0 && *neg)).collect();
            bools(x.shape(), v)?
        }
        Op::Not => {
            let x = one("Not")?;
            let b = x.as_bool().ok_or_else(|| format!("input must be bool, it is {}", x.dtype()))?;
            bools(x.shape(), b.iter().map(|v| !v).collect())?
        }
        Op::BitwiseNot => {
            let x = one("BitwiseNot")?;
            if !x.dtype().is_int() {
                return Err(format!("BitwiseNot takes an integer tensor, it is {}", x.dtype()));
            }
            let v = x.to_i64s().into_iter().map(|v| !v).collect();
            Tensor::from_i64(x.dtype(), x.shape().to_vec(), v).map_err(|e| e.to_string())?
        }
        Op::Where => {
            if ins.len() != 3 {
                return Err(format!("takes 3 inputs, got {}", ins.len()));
            }
            select(ins[0], ins[1], ins[2])?
        }
        _ => unreachable!("elementwise family"),
    }])
}

fn bools(shape: &[usize], v: Vec<bool>) -> OpResult<Tensor> {
    Tensor::from_bool(shape.to_vec(), v).map_err(|e| e.to_string())
}

fn binary(a: &Tensor, b: &Tensor, op: BinaryOp, act: Option<Activation>) -> OpResult<Tensor> {
    let shape = broadcast(a.shape(), b.shape())?;
    let a_map = broadcast_map(a.shape(), &shape)?;
    let b_map = broadcast_map(b.shape(), &shape)?;
    let t = a.dtype();
    let rt = op.result_type(t);
    if op != BinaryOp::Pow && b.dtype() != t {
        return Err(format!("operands are {t} and {}; they must have the same type", b.dtype()));
    }
    let exact_ints = (t.is_int() || t == DType::Bool) && (op != BinaryOp::Pow || b.dtype().is_int());
    if exact_ints {
        let (x, y) = (a.to_i64s(), b.to_i64s());
        let v: Vec<i64> = a_map.iter().zip(&b_map).map(|(&i, &j)| op.apply_typed(x[i], y[j], t)).collect();
        return Tensor::from_i64(rt, shape, v).map_err(|e| e.to_string());
    }
    let (x, y) = (a.to_f64s(), b.to_f64s());
    let v: Vec<f64> = a_map
        .iter()
        .zip(&b_map)
        .map(|(&i, &j)| {
            let r = op.apply_f64(x[i], y[j]);
            if rt.is_float() { activate(act, r) } else { r }
        })
        .collect();
    make(rt, shape, v)
}

fn unary(x: &Tensor, act: Activation) -> OpResult<Tensor> {
    if x.dtype().is_int() {
        if !act.on_integers() {
            return Err(format!("{} of a {} tensor is not defined", act.name(), x.dtype()));
        }
        let v = x.to_i64s().into_iter().map(|v| act.apply_int(v)).collect();
        return Tensor::from_i64(x.dtype(), x.shape().to_vec(), v).map_err(|e| e.to_string());
    }
    if !x.dtype().is_float() {
        return Err(format!("{} of a {} tensor is not defined", act.name(), x.dtype()));
    }
    make(x.dtype(), x.shape().to_vec(), x.to_f64s().into_iter().map(|v| act.apply_f64(v)).collect())
}

/// cond ? x : y with broadcasting of all three.
fn select(cond: &Tensor, x: &Tensor, y: &Tensor) -> OpResult<Tensor> {
    let c = cond.as_bool().ok_or_else(|| format!("the condition must be bool, it is {}", cond.dtype()))?;
    if x.dtype() != y.dtype() {
        return Err(format!("x is {} and y is {}; they must have the same type", x.dtype(), y.dtype()));
    }
    let shape = broadcast(&broadcast(cond.shape(), x.shape())?, y.shape())?;
    let (cm, xm, ym) =
        (broadcast_map(cond.shape(), &shape)?, broadcast_map(x.shape(), &shape)?, broadcast_map(y.shape(), &shape)?);
    let src: Vec<(usize, usize)> = (0..cm.len()).map(|i| if c[cm[i]] { (0, xm[i]) } else { (1, ym[i]) }).collect();
    Tensor::select(x.dtype(), shape, &[x, y], &src).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(t: DType, v: &[i64]) -> Tensor {
        Tensor::from_i64(t, vec![v.len()], v.to_vec()).unwrap()
    }

    fn shift(t: DType, x: &[i64], s: &[i64], left: bool) -> Vec<i64> {
        binary(&ints(t, x), &ints(t, s), BinaryOp::BitShift { left }, None).unwrap().to_i64s()
    }

    #[test]
    fn shifts_past_the_width_or_below_zero_give_the_sign_fill() {
        // ONNX's cases: int8 and int32, right and left.
        assert_eq!(shift(DType::I8, &[-8, 4, -1], &[8, 9, 127], false), [-1, 0, -1]);
        assert_eq!(shift(DType::I8, &[-8, 4, -1], &[8, 9, 127], true), [0, 0, 0]);
        assert_eq!(shift(DType::I8, &[-8, 4, -1], &[-1, -8, -16], false), [-1, 0, -1]);
        assert_eq!(shift(DType::I32, &[-8, 4, -1], &[-1, -32, -64], true), [0, 0, 0]);
        // Bits past the sign bit are dropped; right shifts of signed values are arithmetic.
        assert_eq!(shift(DType::I8, &[64, -128, 3], &[1, 1, 7], true), [-128, 0, -128]);
        assert_eq!(shift(DType::I8, &[-128], &[3], false), [-16]);
        // Unsigned: logical, wrapped into the type; a uint64's bit pattern shifts as unsigned.
        assert_eq!(shift(DType::U8, &[255, 16], &[1, 4], true), [254, 0]);
        assert_eq!(shift(DType::U64, &[-1], &[60], false), [15]);
    }

    #[test]
    fn bitwise_not_wraps_into_the_type() {
        let not = |t: DType, v: &[i64]| eval(&Op::BitwiseNot, &[&ints(t, v)]).unwrap()[0].to_i64s();
        assert_eq!(not(DType::U8, &[0, 5, 255]), [255, 250, 0]);
        assert_eq!(not(DType::I16, &[0, -1, 7]), [-1, 0, -8]);
        assert_eq!(not(DType::U16, &[1]), [65534]);
    }
}
