//! Conv and ConvTranspose (1-D, 2-D and 3-D), DeformConv (2-D) and Col2Im (1-D to 3-D
//! images).

use super::super::{Ctx, V};
use super::to_usize;
use crate::error::Result;
use crate::ops::{Col2ImAttrs, ConvAttrs, ConvTransposeAttrs, DeformConvAttrs, MAX_SPATIAL, Op};
use crate::tensor::Tensor;

/// Per-axis attribute values, `len` of them (default `d`), positive.
pub(super) fn spatial(cx: &Ctx, key: &str, len: usize, d: usize) -> Result<Vec<usize>> {
    match cx.attrs.ints(key) {
        None => Ok(vec![d; len]),
        Some(v) if v.len() == len && v.iter().all(|&x| x > 0) => Ok(v.iter().map(|&x| x as usize).collect()),
        Some(v) => Err(cx.err(format!("{key} {v:?} must be {len} positive values"))),
    }
}

/// Explicit pads [begin..., end...] from `pads` or `auto_pad` for a forward sweep.
pub(super) fn pads(
    cx: &Ctx,
    input: &[usize],
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
) -> Result<Vec<usize>> {
    let n = input.len();
    match cx.attrs.s("auto_pad", "NOTSET").as_str() {
        "NOTSET" => explicit_pads(cx, n),
        "VALID" => Ok(vec![0; 2 * n]),
        mode @ ("SAME_UPPER" | "SAME_LOWER") => {
            let mut out = vec![0usize; 2 * n];
            for i in 0..n {
                let o = input[i].div_ceil(stride[i]);
                let eff = dilation[i] * (kernel[i] - 1) + 1;
                let total = ((o.max(1) - 1) * stride[i] + eff).saturating_sub(input[i]);
                split_same(&mut out, i, total, mode == "SAME_UPPER");
            }
            Ok(out)
        }
        other => Err(bad_auto_pad(cx, other)),
    }
}

/// The `pads` attribute: 2 x `n` non-negative values (zeros when absent).
pub(super) fn explicit_pads(cx: &Ctx, n: usize) -> Result<Vec<usize>> {
    let p = cx.attrs.ints("pads").unwrap_or(vec![0; 2 * n]);
    if p.len() != 2 * n || p.iter().any(|&v| v < 0) {
        return Err(cx.err(format!("pads {p:?} must be {} non-negative values", 2 * n)));
    }
    Ok(p.iter().map(|&v| v as usize).collect())
}

/// Splits `total` padding of axis `i` between its begin (`pads[i]`) and end
/// (`pads[i + n]`): the larger half at the end for SAME_UPPER, at the begin for SAME_LOWER.
fn split_same(pads: &mut [usize], i: usize, total: usize, upper: bool) {
    let n = pads.len() / 2;
    let (small, big) = (total / 2, total - total / 2);
    (pads[i], pads[i + n]) = if upper { (small, big) } else { (big, small) };
}

fn bad_auto_pad(cx: &Ctx, mode: &str) -> crate::error::EngineError {
    cx.err(format!("auto_pad '{mode}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"))
}

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let out = match cx.op() {
        "Col2Im" => col2im(cx)?,
        "DeformConv" => deform_conv(cx)?,
        op => {
            let (x, w) = (cx.need(0)?, cx.need(1)?);
            let bias = cx.input(2);
            if op == "Conv" { conv_node(cx, x, w, bias)? } else { conv_transpose_node(cx, x, w, bias)? }
        }
    };
    cx.set(0, out);
    Ok(())
}

/// A convolution of `x` by `w` (plus `bias`) with the attributes of the node being mapped
/// (those of ONNX `Conv`, which `ConvInteger` and `QLinearConv` share).
pub(super) fn conv_node(cx: &mut Ctx, x: V, w: V, bias: Option<V>) -> Result<V> {
    conv_any(cx, x, w, bias, false)
}

/// A transposed convolution of `x` by `w` (plus `bias`) with the attributes of the node being
/// mapped (ONNX `ConvTranspose`).
pub(super) fn conv_transpose_node(cx: &mut Ctx, x: V, w: V, bias: Option<V>) -> Result<V> {
    conv_any(cx, x, w, bias, true)
}

/// The number of spatial axes of x [N, C, spatial...] (1 to 3), checked against the
/// weight's rank and its `kernel_shape` attribute.
fn conv_axes(cx: &Ctx, xs: &[usize], ws: &[usize], what: &str) -> Result<usize> {
    let nd = xs.len().saturating_sub(2);
    if !(1..=MAX_SPATIAL).contains(&nd) || ws.len() != xs.len() {
        return Err(cx.err(format!("only 1-D, 2-D and 3-D {what} are supported (input {xs:?}, weight {ws:?})")));
    }
    if xs.contains(&0) || ws.contains(&0) {
        return Err(cx.err(format!("input {xs:?} and weight {ws:?} must have no empty dimension")));
    }
    if let Some(k) = cx.attrs.ints("kernel_shape")
        && k.iter().map(|&v| v as usize).collect::<Vec<_>>() != ws[2..]
    {
        return Err(cx.err(format!("kernel_shape {k:?} does not match the weight {ws:?}")));
    }
    Ok(nd)
}

/// The `group` attribute (positive).
fn group(cx: &Ctx, key: &str) -> Result<usize> {
    usize::try_from(cx.attrs.i(key, 1)).ok().filter(|&g| g > 0).ok_or_else(|| cx.err(format!("{key} must be positive")))
}

fn conv_any(cx: &mut Ctx, x: V, w: V, bias: Option<V>, transposed: bool) -> Result<V> {
    let xs = cx.shape(&x);
    let ws = cx.shape(&w);
    let what = if transposed { "transposed convolutions" } else { "convolutions" };
    let nd = conv_axes(cx, &xs, &ws, what)?;
    let kernel = ws[2..].to_vec();
    let stride = spatial(cx, "strides", nd, 1)?;
    let dilation = spatial(cx, "dilations", nd, 1)?;
    let groups = group(cx, "group")?;
    let mut ins = vec![x, w];
    ins.extend(bias);
    if !transposed {
        let pads = pads(cx, &xs[2..], &kernel, &stride, &dilation)?;
        cx.add1(Op::Conv(ConvAttrs { stride, pads, dilation, groups, activation: None }), &ins)
    } else {
        let output_padding = match cx.attrs.ints("output_padding") {
            None => vec![0; nd],
            Some(v) if v.len() == nd && v.iter().all(|&x| x >= 0) => v.iter().map(|&x| x as usize).collect(),
            Some(v) => return Err(cx.err(format!("output_padding {v:?} must be {nd} non-negative values"))),
        };
        let (pads, output_padding) = transpose_pads(cx, &xs[2..], &kernel, &stride, &dilation, output_padding)?;
        let attrs = ConvTransposeAttrs { stride, pads, dilation, output_padding, groups, activation: None };
        cx.add1(Op::ConvTranspose(attrs), &ins)
    }
}

/// Deformable convolution (opset 19): X, W, offset, optional B (zeros when absent), optional
/// mask; 2-D only.
fn deform_conv(cx: &mut Ctx) -> Result<V> {
    let (x, w, offset) = (cx.need(0)?, cx.need(1)?, cx.need(2)?);
    let (xs, ws) = (cx.shape(&x), cx.shape(&w));
    if xs.len() != 4 || ws.len() != 4 {
        return Err(cx.err(format!("only 2-D deformable convolutions are supported (input {xs:?}, weight {ws:?})")));
    }
    conv_axes(cx, &xs, &ws, "deformable convolutions")?;
    let stride = spatial(cx, "strides", 2, 1)?;
    let dilation = spatial(cx, "dilations", 2, 1)?;
    let pads = explicit_pads(cx, 2)?;
    let attrs = DeformConvAttrs {
        stride,
        pads,
        dilation,
        groups: group(cx, "group")?,
        offset_groups: group(cx, "offset_group")?,
    };
    let bias = match cx.input(3) {
        Some(b) => b,
        None => cx.constant(Tensor::zeros_of(cx.dtype(&x), vec![ws[0]])),
    };
    let mut ins = vec![x, w, offset, bias];
    ins.extend(cx.input(4));
    cx.add1(Op::DeformConv(attrs), &ins)
}

/// Col2Im (opset 18): image_shape and block_shape must be known when the model is compiled.
fn col2im(cx: &mut Ctx) -> Result<V> {
    let x = cx.need(0)?;
    let dims = |cx: &Ctx, k: usize, what: &str| -> Result<Vec<usize>> {
        let v = cx.ints(k, what)?.ok_or_else(|| cx.err(format!("{what} (input {k}) is missing")))?;
        to_usize(cx, &v, what)
    };
    let image = dims(cx, 1, "image_shape")?;
    let block = dims(cx, 2, "block_shape")?;
    let n = image.len();
    if block.len() != n {
        return Err(cx.err(format!("block_shape {block:?} must have as many axes as image_shape {image:?}")));
    }
    let attrs = Col2ImAttrs {
        stride: spatial(cx, "strides", n, 1)?,
        pads: explicit_pads(cx, n)?,
        dilation: spatial(cx, "dilations", n, 1)?,
        image,
        block,
    };
    cx.add1(Op::Col2Im(attrs), &[x])
}

/// Pads and output padding of a transposed convolution from `pads`, `auto_pad` or
/// `output_shape` (which overrides the pads as ONNX specifies).
fn transpose_pads(
    cx: &Ctx,
    input: &[usize],
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
    mut output_padding: Vec<usize>,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let n = input.len();
    let auto = cx.attrs.s("auto_pad", "NOTSET");
    let full = |i: usize, op: usize| (input[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1 + op;
    let mut pads = vec![0usize; 2 * n];
    let upper = auto == "SAME_UPPER";
    if let Some(os) = cx.attrs.ints("output_shape") {
        let os = &os[os.len().saturating_sub(n)..];
        if os.len() != n {
            return Err(cx.err(format!("output_shape {os:?} must give {n} spatial sizes")));
        }
        for i in 0..n {
            let total = full(i, output_padding[i]) as i64 - os[i];
            if total < 0 {
                output_padding[i] += (-total) as usize;
            } else {
                split_same(&mut pads, i, total as usize, upper);
            }
        }
    } else if auto == "SAME_UPPER" || auto == "SAME_LOWER" {
        for i in 0..n {
            let total = full(i, output_padding[i]).saturating_sub(input[i] * stride[i]);
            split_same(&mut pads, i, total, upper);
        }
    } else if auto == "NOTSET" {
        pads = explicit_pads(cx, n)?;
    } else if auto != "VALID" {
        return Err(bad_auto_pad(cx, &auto));
    }
    Ok((pads, output_padding))
}
