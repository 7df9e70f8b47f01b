//! Gemm and MatMul.

use super::super::Ctx;
use crate::error::Result;
use crate::ops::{GemmAttrs, Op};

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let (a, b) = (cx.need(0)?, cx.need(1)?);
    let out = match cx.op() {
        "Gemm" => {
            let attrs = GemmAttrs {
                alpha: cx.attrs.f("alpha", 1.0),
                beta: cx.attrs.f("beta", 1.0),
                trans_a: cx.attrs.i("transA", 0) != 0,
                trans_b: cx.attrs.i("transB", 0) != 0,
                activation: None,
            };
            let mut ins = vec![a, b];
            ins.extend(cx.input(2));
            cx.add1(Op::Gemm(attrs), &ins)?
        }
        _ => cx.add1(Op::MatMul { activation: None }, &[a, b])?,
    };
    cx.set(0, out);
    Ok(())
}
