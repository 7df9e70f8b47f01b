//! Matrix products: Gemm and batched MatMul with numpy broadcasting.

use super::{Activation, Check, In, Infer, Op, broadcast};

/// Attributes of Gemm: Y = alpha * A' B' + beta * C, A' = A or A^T, B' = B or B^T; A and B
/// are 2-D, C broadcasts to [M, N].
#[derive(Clone, Debug, PartialEq)]
pub struct GemmAttrs {
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of C.
    pub beta: f32,
    /// Transpose A.
    pub trans_a: bool,
    /// Transpose B.
    pub trans_b: bool,
    /// Activation fused into the write-back.
    pub activation: Option<Activation>,
}

impl Default for GemmAttrs {
    fn default() -> Self {
        GemmAttrs { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false, activation: None }
    }
}

/// Output shape of a numpy matmul of shapes `a` and `b` (1-D operands promoted and the
/// promoted axis removed again).
pub(crate) fn matmul_shape(a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
    if a.is_empty() || b.is_empty() {
        return Err("scalar operands are not allowed".into());
    }
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (ka, kb) = (a2[a2.len() - 1], b2[b2.len() - 2]);
    if ka != kb {
        return Err(format!("inner dimensions differ: A {a:?} x B {b:?}"));
    }
    let mut out = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2]);
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1]);
    }
    Ok(out)
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    match op {
        Op::Gemm(a) => {
            c.arity(2, 3)?;
            c.need_float(0, "A")?;
            let t = c.same_types(0)?;
            c.need_rank(0, 2, "A")?;
            c.need_rank(1, 2, "B")?;
            let (sa, sb) = (c.shape(0), c.shape(1));
            let (m, k) = if a.trans_a { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
            let (bk, n) = if a.trans_b { (sb[1], sb[0]) } else { (sb[0], sb[1]) };
            if bk != k {
                return Err(format!(
                    "A{} has {k} columns but B{} has {bk} rows",
                    if a.trans_a { "^T" } else { "" },
                    if a.trans_b { "^T" } else { "" }
                ));
            }
            if ins.len() == 3 {
                if c.rank(2) > 2 {
                    return Err(format!("C {:?} must have rank 0, 1 or 2", c.shape(2)));
                }
                let out = broadcast(&[m, n], c.shape(2)).map_err(|e| format!("C: {e}"))?;
                if out != [m, n] {
                    return Err(format!("C {:?} must broadcast to [{m}, {n}]", c.shape(2)));
                }
            }
            Ok(vec![(t, vec![m, n])])
        }
        Op::MatMul { .. } => {
            c.arity(2, 2)?;
            c.need_float(0, "A")?;
            let t = c.same_types(0)?;
            Ok(vec![(t, matmul_shape(c.shape(0), c.shape(1))?)])
        }
        _ => unreachable!("matmul family"),
    }
}
