//! MaxPool (with its Indices output), AveragePool and LpPool over 1 to 3 spatial axes,
//! GlobalAveragePool, GlobalMaxPool, GlobalLpPool and MaxUnpool.

use super::super::{Ctx, V};
use super::conv::{explicit_pads, pads, spatial};
use super::to_usize;
use crate::error::Result;
use crate::ops::{IndexOrder, LpPoolAttrs, MAX_SPATIAL, MaxUnpoolAttrs, Op, PoolAttrs, PoolKind, ReduceKind};

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let x = cx.need(0)?;
    match cx.op() {
        "GlobalMaxPool" | "GlobalAveragePool" => {
            let kind = if cx.op() == "GlobalMaxPool" { PoolKind::Max } else { PoolKind::Average };
            let out = cx.add1(Op::GlobalPool(kind), &[x])?;
            cx.set(0, out);
        }
        "GlobalLpPool" => {
            let out = global_lp_pool(cx, x)?;
            cx.set(0, out);
        }
        "MaxUnpool" => {
            let out = max_unpool(cx, x)?;
            cx.set(0, out);
        }
        _ => window_pool(cx, x)?,
    }
    Ok(())
}

/// The spatial rank of x [N, C, spatial...] (1 to 3).
fn spatial_axes(cx: &Ctx, x: &V) -> Result<usize> {
    let xs = cx.shape(x);
    let nd = xs.len().saturating_sub(2);
    if !(1..=MAX_SPATIAL).contains(&nd) {
        return Err(cx.err(format!("only 1-D, 2-D and 3-D pooling is supported; the input is {xs:?}")));
    }
    Ok(nd)
}

/// The `kernel_shape` attribute (required), `nd` positive values.
fn kernel_shape(cx: &Ctx, nd: usize) -> Result<Vec<usize>> {
    match cx.attrs.ints("kernel_shape") {
        Some(v) if v.len() == nd && v.iter().all(|&x| x > 0) => Ok(v.iter().map(|&x| x as usize).collect()),
        other => Err(cx.err(format!("kernel_shape {:?} must be {nd} positive values", other.unwrap_or_default()))),
    }
}

/// The `p` attribute of Lp pooling: a float in opset 1, an integer after (default 2).
fn lp_exponent(cx: &Ctx) -> Result<f32> {
    const FLOAT: i32 = 1;
    let p = match cx.attrs.get("p") {
        None => 2.0,
        Some(a) if a.r#type == FLOAT => a.f,
        Some(a) => a.i as f32,
    };
    if !(p > 0.0 && p.is_finite()) {
        return Err(cx.err(format!("p must be positive, is {p}")));
    }
    Ok(p)
}

/// MaxPool, AveragePool, LpPool.
fn window_pool(cx: &mut Ctx, x: V) -> Result<()> {
    let op = cx.op().to_string();
    let xs = cx.shape(&x);
    let nd = spatial_axes(cx, &x)?;
    let kernel = kernel_shape(cx, nd)?;
    let stride = spatial(cx, "strides", nd, 1)?;
    let dilation = spatial(cx, "dilations", nd, 1)?;
    let pads = pads(cx, &xs[2..], &kernel, &stride, &dilation)?;
    let ceil_mode = cx.attrs.i("ceil_mode", 0) != 0;
    if op == "LpPool" {
        let attrs = LpPoolAttrs { p: lp_exponent(cx)?, kernel, stride, pads, dilation, ceil_mode };
        let out = cx.add1(Op::LpPool(attrs), &[x])?;
        cx.set(0, out);
        return Ok(());
    }
    let indices = if op == "MaxPool" && cx.wants_output(1) {
        match cx.attrs.i("storage_order", 0) {
            0 => Some(IndexOrder::RowMajor),
            1 => Some(IndexOrder::ColumnMajor),
            s => return Err(cx.err(format!("storage_order {s} must be 0 (row-major) or 1 (column-major)"))),
        }
    } else {
        None
    };
    let attrs = PoolAttrs {
        kind: if op == "MaxPool" { PoolKind::Max } else { PoolKind::Average },
        kernel,
        stride,
        pads,
        dilation,
        ceil_mode,
        count_include_pad: cx.attrs.i("count_include_pad", 0) != 0,
        indices,
    };
    let outs = cx.add(Op::Pool(attrs), &[x])?;
    for (k, v) in outs.into_iter().enumerate() {
        cx.set(k, v);
    }
    Ok(())
}

/// GlobalLpPool: the L1 or L2 norm over the spatial axes as a reduction, other exponents as
/// an Lp pooling whose window is the whole image.
fn global_lp_pool(cx: &mut Ctx, x: V) -> Result<V> {
    let p = lp_exponent(cx)?;
    let xs = cx.shape(&x);
    if xs.len() < 3 {
        return Err(cx.err(format!("input must be [N, C, spatial...], has shape {xs:?}")));
    }
    let axes: Vec<usize> = (2..xs.len()).collect();
    if p == 1.0 || p == 2.0 {
        let kind = if p == 1.0 { ReduceKind::L1 } else { ReduceKind::L2 };
        return cx.add1(Op::Reduce { kind, axes, keepdims: true }, &[x]);
    }
    let nd = spatial_axes(cx, &x)?;
    let attrs = LpPoolAttrs {
        p,
        kernel: xs[2..].to_vec(),
        stride: vec![1; nd],
        pads: vec![0; 2 * nd],
        dilation: vec![1; nd],
        ceil_mode: false,
    };
    cx.add1(Op::LpPool(attrs), &[x])
}

/// MaxUnpool: X, I, optional output_shape (known when the model is compiled).
fn max_unpool(cx: &mut Ctx, x: V) -> Result<V> {
    let at = cx.need(1)?;
    let nd = spatial_axes(cx, &x)?;
    let kernel = kernel_shape(cx, nd)?;
    let stride = spatial(cx, "strides", nd, 1)?;
    let pads = explicit_pads(cx, nd)?;
    let output_shape = match cx.ints(2, "output_shape")? {
        Some(v) => Some(to_usize(cx, &v, "output_shape")?),
        None => None,
    };
    cx.add1(Op::MaxUnpool(MaxUnpoolAttrs { kernel, stride, pads, output_shape }), &[x, at])
}
