//! MaxPool, AveragePool (2-D; 1-D ones run as 2-D with a height of 1), GlobalAveragePool,
//! GlobalMaxPool.

use super::super::Ctx;
use super::conv::{four, lift, lower, pads, two};
use crate::error::Result;
use crate::ops::{Op, PoolAttrs, PoolKind};

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let x = cx.need(0)?;
    let op = cx.op().to_string();
    if op.starts_with("Global") {
        let kind = if op == "GlobalMaxPool" { PoolKind::Max } else { PoolKind::Average };
        let out = cx.add1(Op::GlobalPool(kind), &[x])?;
        cx.set(0, out);
        return Ok(());
    }
    if cx.wants_output(1) {
        return Err(cx.err("the indices output of MaxPool is not supported"));
    }
    let xs = cx.shape(&x);
    let nd = xs.len().saturating_sub(2);
    if !(1..=2).contains(&nd) {
        return Err(cx.err(format!("only 1-D and 2-D pooling is supported; the input is {xs:?}")));
    }
    let ints = |key: &str, d: usize| -> Result<Vec<usize>> {
        match cx.attrs.ints(key) {
            None if d > 0 => Ok(vec![d; nd]),
            Some(v) if v.len() == nd && v.iter().all(|&x| x > 0) => Ok(v.iter().map(|&x| x as usize).collect()),
            other => Err(cx.err(format!("{key} {:?} must be {nd} positive values", other.unwrap_or_default()))),
        }
    };
    let kernel = ints("kernel_shape", 0)?;
    let stride = ints("strides", 1)?;
    let dilation = ints("dilations", 1)?;
    let p = pads(cx, &xs[2..], &kernel, &stride, &dilation)?;
    let kind = if op == "MaxPool" { PoolKind::Max } else { PoolKind::Average };
    let attrs = PoolAttrs {
        kind,
        kernel: two(&kernel, 1),
        stride: two(&stride, 1),
        pads: four(&p),
        dilation: two(&dilation, 1),
        ceil_mode: cx.attrs.i("ceil_mode", 0) != 0,
        count_include_pad: cx.attrs.i("count_include_pad", 0) != 0,
    };
    let x2 = if nd == 1 { lift(cx, x)? } else { x };
    let out = cx.add1(Op::Pool(attrs), &[x2])?;
    let out = if nd == 1 { lower(cx, out)? } else { out };
    cx.set(0, out);
    Ok(())
}
