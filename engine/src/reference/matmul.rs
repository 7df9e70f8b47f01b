//! Reference matrix products.

use super::{OpResult, activate, broadcast_map, floats, make};
use crate::ops::{Activation, GemmAttrs, Op, broadcast};
use crate::tensor::Tensor;

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    Ok(vec![match op {
        Op::Gemm(a) => gemm(ins[0], ins[1], ins.get(2).copied(), a)?,
        Op::MatMul { activation } => {
            if ins.len() != 2 {
                return Err(format!("takes 2 inputs, got {}", ins.len()));
            }
            matmul(ins[0], ins[1], *activation)?
        }
        _ => unreachable!("matmul family"),
    }])
}

/// Y[i][j] = alpha * sum_k A'[i][k] * B'[k][j] + beta * C[i][j] (C broadcast to [M, N]).
fn gemm(a: &Tensor, b: &Tensor, c: Option<&Tensor>, attrs: &GemmAttrs) -> OpResult<Tensor> {
    let [a0, a1] = *a.shape() else {
        return Err(format!("A must have rank 2, has shape {:?}", a.shape()));
    };
    let [b0, b1] = *b.shape() else {
        return Err(format!("B must have rank 2, has shape {:?}", b.shape()));
    };
    let (n, k) = if attrs.trans_a { (a1, a0) } else { (a0, a1) };
    let (bk, m) = if attrs.trans_b { (b1, b0) } else { (b0, b1) };
    if bk != k {
        return Err(format!("A {:?} and B {:?} do not multiply", a.shape(), b.shape()));
    }
    let c_map = match c {
        Some(c) => Some((c.to_f64s(), broadcast_map(c.shape(), &[n, m])?)),
        None => None,
    };
    let (ad, bd) = (floats(a, "A")?, floats(b, "B")?);
    let mut out = Vec::with_capacity(n * m);
    for i in 0..n {
        for j in 0..m {
            let mut acc = 0f64;
            for kk in 0..k {
                let av = if attrs.trans_a { ad[kk * n + i] } else { ad[i * k + kk] };
                let bv = if attrs.trans_b { bd[j * k + kk] } else { bd[kk * m + j] };
                acc += av * bv;
            }
            let mut y = attrs.alpha as f64 * acc;
            if let Some((cd, map)) = &c_map {
                y += attrs.beta as f64 * cd[map[i * m + j]];
            }
            out.push(activate(attrs.activation, y));
        }
    }
    make(a.dtype(), vec![n, m], out)
}

/// Numpy matmul: 1-D operands promoted (and the promoted axis dropped from the result), the
/// leading dimensions broadcast.
fn matmul(a: &Tensor, b: &Tensor, act: Option<Activation>) -> OpResult<Tensor> {
    let out_shape = crate::ops::matmul_shape(a.shape(), b.shape())?;
    let sa: Vec<usize> = if a.shape().len() == 1 { vec![1, a.shape()[0]] } else { a.shape().to_vec() };
    let sb: Vec<usize> = if b.shape().len() == 1 { vec![b.shape()[0], 1] } else { b.shape().to_vec() };
    let (ra, rb) = (sa.len(), sb.len());
    let (p, k, q) = (sa[ra - 2], sa[ra - 1], sb[rb - 1]);
    let out_batch = broadcast(&sa[..ra - 2], &sb[..rb - 2])?;
    let a_map = broadcast_map(&sa[..ra - 2], &out_batch)?;
    let b_map = broadcast_map(&sb[..rb - 2], &out_batch)?;
    let (ad, bd) = (floats(a, "A")?, floats(b, "B")?);
    let mut out = Vec::with_capacity(a_map.len() * p * q);
    for (&ia, &ib) in a_map.iter().zip(&b_map) {
        let (a_off, b_off) = (ia * p * k, ib * k * q);
        for i in 0..p {
            for j in 0..q {
                let mut acc = 0f64;
                for kk in 0..k {
                    acc += ad[a_off + i * k + kk] * bd[b_off + kk * q + j];
                }
                out.push(activate(act, acc));
            }
        }
    }
    make(a.dtype(), out_shape, out)
}
