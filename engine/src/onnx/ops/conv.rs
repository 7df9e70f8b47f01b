//! Conv and ConvTranspose, 2-D (1-D ones run as 2-D with a height of 1).

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{ConvAttrs, ConvTransposeAttrs, Op};

/// Per-axis attribute values, `len` of them (default `d`), positive.
fn spatial(cx: &Ctx, key: &str, len: usize, d: usize) -> Result<Vec<usize>> {
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
fn explicit_pads(cx: &Ctx, n: usize) -> Result<Vec<usize>> {
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

/// Adds a unit height to a 1-D tensor [N, C, L] -> [N, C, 1, L] (or a 1-D weight).
pub(super) fn lift(cx: &mut Ctx, v: V) -> Result<V> {
    let mut s = cx.shape(&v);
    s.insert(2, 1);
    cx.add1(Op::Reshape { shape: s }, &[v])
}

/// Removes the unit height of a lifted result.
pub(super) fn lower(cx: &mut Ctx, v: V) -> Result<V> {
    let mut s = cx.shape(&v);
    s.remove(2);
    cx.add1(Op::Reshape { shape: s }, &[v])
}

/// 2-D values from 1-D ones: [1, v] (or [0, v] for begin/end pads).
pub(super) fn two(v: &[usize], fill: usize) -> [usize; 2] {
    if v.len() == 1 { [fill, v[0]] } else { [v[0], v[1]] }
}

/// 2-D pads [top, left, bottom, right] from 1-D ones [begin, end] (no height padding).
pub(super) fn four(p: &[usize]) -> [usize; 4] {
    if p.len() == 2 { [0, p[0], 0, p[1]] } else { [p[0], p[1], p[2], p[3]] }
}

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let (x, w) = (cx.need(0)?, cx.need(1)?);
    let bias = cx.input(2);
    let out = if cx.op() == "Conv" { conv_node(cx, x, w, bias)? } else { conv_transpose_node(cx, x, w, bias)? };
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

fn conv_any(cx: &mut Ctx, x: V, w: V, bias: Option<V>, transposed: bool) -> Result<V> {
    let xs = cx.shape(&x);
    let ws = cx.shape(&w);
    let nd = xs.len().saturating_sub(2);
    if !(1..=2).contains(&nd) || ws.len() != xs.len() {
        return Err(cx.err(format!(
            "only 1-D and 2-D {} are supported (input {xs:?}, weight {ws:?})",
            if transposed { "transposed convolutions" } else { "convolutions" }
        )));
    }
    let kernel = ws[2..].to_vec();
    if let Some(k) = cx.attrs.ints("kernel_shape")
        && k.iter().map(|&v| v as usize).collect::<Vec<_>>() != kernel
    {
        return Err(cx.err(format!("kernel_shape {k:?} does not match the weight {ws:?}")));
    }
    let stride = spatial(cx, "strides", nd, 1)?;
    let dilation = spatial(cx, "dilations", nd, 1)?;
    let groups = usize::try_from(cx.attrs.i("group", 1))
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| cx.err("group must be positive"))?;
    let (x2, w2) = if nd == 1 { (lift(cx, x)?, lift(cx, w)?) } else { (x, w) };
    let mut ins = vec![x2, w2];
    ins.extend(bias);
    let out = if !transposed {
        let p = pads(cx, &xs[2..], &kernel, &stride, &dilation)?;
        let attrs = ConvAttrs {
            stride: two(&stride, 1),
            pads: four(&p),
            dilation: two(&dilation, 1),
            groups,
            activation: None,
        };
        cx.add1(Op::Conv(attrs), &ins)?
    } else {
        let output_padding = match cx.attrs.ints("output_padding") {
            None => vec![0; nd],
            Some(v) if v.len() == nd && v.iter().all(|&x| x >= 0) => v.iter().map(|&x| x as usize).collect(),
            Some(v) => return Err(cx.err(format!("output_padding {v:?} must be {nd} non-negative values"))),
        };
        let (p, op) = transpose_pads(cx, &xs[2..], &kernel, &stride, &dilation, output_padding)?;
        let attrs = ConvTransposeAttrs {
            stride: two(&stride, 1),
            pads: four(&p),
            dilation: two(&dilation, 1),
            output_padding: two(&op, 0),
            groups,
            activation: None,
        };
        cx.add1(Op::ConvTranspose(attrs), &ins)?
    };
    if nd == 1 { lower(cx, out) } else { Ok(out) }
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
