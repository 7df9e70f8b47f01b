//! QuantizeLinear, DequantizeLinear (opsets 10 to 25: per-tensor, per-axis and blocked
//! scales, `output_dtype`, `saturate`, `precision`), DynamicQuantizeLinear, BitCast, and the
//! integer operations of quantised models, built from them and the float convolution and
//! matrix product: ConvInteger, MatMulInteger, QLinearConv and QLinearMatMul.
//!
//! **Integer products are exact.** ConvInteger and MatMulInteger compute `(x - x_zp)` and
//! `(w - w_zp)` as f32 values (DequantizeLinear with scale 1), run the f32 convolution or
//! matrix product and convert to int32. f32 holds every integer up to 2^24 exactly, so the
//! result is exact while the sum of |products| (and bias) of every output stays within 2^24;
//! the importer bounds that sum from the constant weights and the range of the input type
//! and, where it could exceed 2^24, splits the reduction (input channels, or the inner
//! dimension of a product) into chunks that each stay exact, converting each to int32 and
//! adding them in int32 on the device. A single input channel of a convolution whose bound
//! alone exceeds 2^24 (kernels above about 258 taps at full uint8 range), and a grouped
//! convolution over the bound, are errors naming the bound.
//!
//! **QLinearConv and QLinearMatMul** compute that exact integer accumulator (bias included),
//! multiply it in f32 by `x_scale * w_scale / y_scale` (computed in the scales' type, as
//! ONNX's reference does) and quantise the product with `QuantizeLinear` (scale 1, the output
//! zero point): the float convolution runs on the device between a dequantising and a
//! requantising kernel.
//!
//! **DequantizeLinear of a constant is not folded** when its input is an 8-bit or narrower
//! type (or a 16-bit integer) and every node reading its output takes computed operands
//! (Conv, ConvTranspose, Gemm, MatMul, Add, Sub, Mul, Div, Transpose, Concat, Gather): it
//! stays a device node, so a QDQ model's int8 weights stay int8 on the device (packed four to
//! a word, unpacked by the dequantising kernel) instead of becoming f32 constants four times
//! their size. Elsewhere (e.g. an op that needs the value when compiling) it folds as every
//! operation on constants does.

use std::sync::Arc;

use super::super::{Ctx, V};
use crate::error::Result;
use crate::graph::ValueId;
use crate::ops::{BinaryOp, DequantizeAttrs, Op, QuantizeAttrs};
use crate::tensor::{DType, Tensor, numel};

/// f32 holds every integer up to 2^24 exactly: integer sums within it are exact.
const EXACT: f64 = 16_777_216.0;

/// Ops that take computed (device) values for every operand, so a dequantised constant
/// feeding them may stay on the device.
const COMPUTED_OPERANDS: &[&str] =
    &["Add", "Concat", "Conv", "ConvTranspose", "Div", "Gather", "Gemm", "MatMul", "Mul", "Sub", "Transpose"];

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    match cx.op() {
        "QuantizeLinear" => quantize_linear(cx),
        "DequantizeLinear" => dequantize_linear(cx),
        "DynamicQuantizeLinear" => {
            let x = cx.need(0)?;
            let outs = cx.add(Op::DynamicQuantizeLinear, &[x])?;
            for (k, v) in outs.into_iter().enumerate() {
                cx.set(k, v);
            }
            Ok(())
        }
        "BitCast" => bit_cast(cx),
        "ConvInteger" => {
            let y = integer_conv(cx, 0, 1, 2, 3, None)?;
            let y = to_type(cx, y, DType::I32)?;
            cx.set(0, y);
            Ok(())
        }
        "MatMulInteger" => {
            let y = integer_matmul(cx, 0, 1, 2, 3)?;
            let y = to_type(cx, y, DType::I32)?;
            cx.set(0, y);
            Ok(())
        }
        "QLinearConv" => {
            let acc = integer_conv(cx, 0, 3, 2, 5, cx.input(8))?;
            let y = requantize(cx, acc, 1, 4, 6, 7, Layout::Conv)?;
            cx.set(0, y);
            Ok(())
        }
        "QLinearMatMul" => {
            let acc = integer_matmul(cx, 0, 3, 2, 5)?;
            let y = requantize(cx, acc, 1, 4, 6, 7, Layout::MatMul)?;
            cx.set(0, y);
            Ok(())
        }
        op => Err(cx.err(format!("{op} is not an operation of the quant family"))),
    }
}

/// The quantisation axis (normalised), 0 where the scale is a single value.
fn quant_axis(cx: &Ctx, x: &V, scale: &V) -> Result<usize> {
    let rank = cx.rank(x);
    if numel(&cx.shape(scale)) == 1 || rank == 0 {
        return Ok(0);
    }
    super::axis(cx, cx.attrs.i("axis", 1), rank)
}

fn block_size(cx: &Ctx) -> Result<usize> {
    let b = cx.attrs.i("block_size", 0);
    usize::try_from(b).map_err(|_| cx.err(format!("block_size {b} must be non-negative")))
}

/// A type attribute (`output_dtype`, `precision`, `to`): None when absent or 0.
fn type_attr(cx: &Ctx, key: &str) -> Result<Option<DType>> {
    match cx.attrs.i(key, 0) as i32 {
        0 => Ok(None),
        code => DType::from_onnx(code)
            .map(Some)
            .ok_or_else(|| cx.err(format!("{key} {} is not supported", DType::onnx_name(code)))),
    }
}

fn quantize_linear(cx: &mut Ctx) -> Result<()> {
    let (x, scale) = (cx.need(0)?, cx.need(1)?);
    let zp = cx.input(2);
    let declared = type_attr(cx, "output_dtype")?;
    let to = match (&zp, declared) {
        (Some(z), Some(d)) if cx.dtype(z) != d => {
            return Err(cx.err(format!("output_dtype {d} differs from the zero point's type {}", cx.dtype(z))));
        }
        (Some(z), _) => cx.dtype(z),
        (None, Some(d)) => d,
        (None, None) => DType::U8,
    };
    let precision = match type_attr(cx, "precision")? {
        Some(p) => p,
        None if cx.dtype(&scale).is_float() => cx.dtype(&scale),
        None => DType::F32,
    };
    let attrs = QuantizeAttrs {
        axis: quant_axis(cx, &x, &scale)?,
        block_size: block_size(cx)?,
        to,
        saturate: cx.attrs.i("saturate", 1) != 0,
        precision,
    };
    let mut ins = vec![x, scale];
    ins.extend(zp);
    let y = cx.add1(Op::QuantizeLinear(attrs), &ins)?;
    cx.set(0, y);
    Ok(())
}

fn dequantize_linear(cx: &mut Ctx) -> Result<()> {
    let (x, scale) = (cx.need(0)?, cx.need(1)?);
    let to = type_attr(cx, "output_dtype")?.unwrap_or(cx.dtype(&scale));
    let attrs = DequantizeAttrs { axis: quant_axis(cx, &x, &scale)?, block_size: block_size(cx)?, to };
    let on_device = matches!(&x, V::Const(t) if packs(t.dtype())) && readers_take_computed_values(cx);
    let mut ins = vec![x, scale];
    ins.extend(cx.input(2));
    let y = if on_device {
        add_on_device(cx, Op::DequantizeLinear(attrs), &ins)?
    } else {
        cx.add1(Op::DequantizeLinear(attrs), &ins)?
    };
    cx.set(0, y);
    Ok(())
}

/// Types whose constants the dequantising kernel reads packed several to a word.
fn packs(d: DType) -> bool {
    d.bits() <= 16 && (d.is_int() || d.is_narrow_float())
}

/// True when the node's first output is read, and only by ops taking computed operands.
fn readers_take_computed_values(cx: &Ctx) -> bool {
    let Some(out) = cx.n.output.first() else { return false };
    let mut readers = cx.im.p.nodes[cx.index + 1..].iter().filter(|n| n.input.contains(out)).peekable();
    let outputs_it = cx.im.p.outputs.iter().any(|o| &o.name == out);
    readers.peek().is_some()
        && !outputs_it
        && readers
            .all(|n| (n.domain.is_empty() || n.domain == "ai.onnx") && COMPUTED_OPERANDS.contains(&n.op_type.as_str()))
}

/// Adds an operation to the device graph even when its inputs are all constants.
fn add_on_device(cx: &mut Ctx, op: Op, inputs: &[V]) -> Result<V> {
    let name = cx.next_name();
    let ids: Vec<ValueId> =
        inputs.iter().enumerate().map(|(k, v)| cx.im.value_id(v, &format!("{name}.in{k}"))).collect();
    let mut outs = cx.im.b.add_multi(&name, op, ids)?;
    Ok(V::Act(outs.remove(0)))
}

fn bit_cast(cx: &mut Ctx) -> Result<()> {
    let x = cx.need(0)?;
    let to = type_attr(cx, "to")?.ok_or_else(|| cx.err("BitCast needs its 'to' attribute"))?;
    let y = if cx.dtype(&x) == to { x } else { cx.add1(Op::BitCast { to }, &[x])? };
    cx.set(0, y);
    Ok(())
}

fn to_type(cx: &mut Ctx, v: V, to: DType) -> Result<V> {
    if cx.dtype(&v) == to { Ok(v) } else { cx.add1(Op::Cast { to }, &[v]) }
}

/// `x - zero_point` as f32 values (exact for integers): DequantizeLinear with a scale of 1,
/// per tensor or along `axis` as the zero point's shape says; on the device even for a
/// constant x when `keep_packed` (weights stay in their integer type there).
fn centred(cx: &mut Ctx, x: V, zp: Option<V>, axis: usize, keep_packed: bool) -> Result<V> {
    let zshape = zp.as_ref().map(|z| cx.shape(z)).unwrap_or_default();
    let per_axis = numel(&zshape) > 1;
    let ones = if per_axis { zshape.clone() } else { vec![] };
    let n = numel(&ones);
    let one = cx.constant(Tensor::new(ones, vec![1.0; n]).map_err(|e| cx.err(e.to_string()))?);
    let attrs = DequantizeAttrs { axis: if per_axis { axis } else { 0 }, block_size: 0, to: DType::F32 };
    let mut ins = vec![x.clone(), one];
    ins.extend(zp);
    if keep_packed && matches!(&x, V::Const(t) if packs(t.dtype())) {
        add_on_device(cx, Op::DequantizeLinear(attrs), &ins)
    } else {
        cx.add1(Op::DequantizeLinear(attrs), &ins)
    }
}

/// The largest |x - zero point| over the values of x's integer type (the zero point's values
/// when it is a constant, any value of the type when it is computed).
fn centred_bound(cx: &Ctx, x: &V, zp: &Option<V>) -> f64 {
    let (lo, hi) = cx.dtype(x).int_range();
    let (lo, hi) = (lo as f64, hi as f64);
    match zp {
        None => lo.abs().max(hi.abs()),
        Some(V::Const(z)) => z.to_f64s().iter().map(|&z| (z - lo).abs().max((hi - z).abs())).fold(0.0, f64::max),
        Some(V::Act(_)) => hi - lo,
    }
}

/// A constant input that must be known when compiling, by index.
fn const_operand(cx: &Ctx, k: usize, what: &str) -> Result<Option<Arc<Tensor>>> {
    cx.const_input(k, what)
}

/// Slice `[start, end)` of axis `axis` (folded for constants).
fn slice(cx: &mut Ctx, v: V, axis: usize, start: usize, end: usize) -> Result<V> {
    let op = Op::Slice { axes: vec![axis], starts: vec![start as i64], ends: vec![end as i64], steps: vec![1] };
    cx.add1(op, &[v])
}

/// Sum of per-chunk exact f32 results: the only one as it is, or each converted to int32 and
/// added in int32.
fn sum_chunks(cx: &mut Ctx, parts: Vec<V>) -> Result<V> {
    if parts.len() == 1 {
        return Ok(parts.into_iter().next().expect("one part"));
    }
    let mut acc: Option<V> = None;
    for p in parts {
        let p = to_type(cx, p, DType::I32)?;
        acc = Some(match acc {
            None => p,
            Some(a) => cx.binary(BinaryOp::Add, a, p)?,
        });
    }
    Ok(acc.expect("parts"))
}

/// Splits `0..len` into consecutive ranges whose bounds (`cost(i)` per index, per output)
/// stay within `limit` (the first range also carries `first`); None when one index alone
/// does not fit.
fn chunks(
    len: usize,
    outputs: usize,
    first: &[f64],
    limit: f64,
    cost: impl Fn(usize, usize) -> f64,
) -> Option<Vec<(usize, usize)>> {
    let mut out = vec![];
    let mut start = 0;
    let mut acc: Vec<f64> = first.to_vec();
    for i in 0..len {
        let add: Vec<f64> = (0..outputs).map(|o| cost(i, o)).collect();
        if (0..outputs).any(|o| acc[o] + add[o] > limit) {
            if i == start {
                return None;
            }
            out.push((start, i));
            start = i;
            acc = vec![0.0; outputs];
            if (0..outputs).any(|o| add[o] > limit) {
                return None;
            }
        }
        for o in 0..outputs {
            acc[o] += add[o];
        }
    }
    out.push((start, len));
    Some(out)
}

/// The integer convolution of ConvInteger and QLinearConv (inputs x, w and their zero points
/// by index, an optional int32 bias): exact f32 values, or int32 when computed in chunks.
fn integer_conv(cx: &mut Ctx, xi: usize, wi: usize, xzi: usize, wzi: usize, bias: Option<V>) -> Result<V> {
    let x = cx.need(xi)?;
    let w = const_operand(cx, wi, "the weight")?.ok_or_else(|| cx.err("the weight is missing"))?;
    if !w.dtype().is_int() || !cx.dtype(&x).is_int() {
        return Err(cx.err(format!("x and w must be 8-bit integers, they are {} and {}", cx.dtype(&x), w.dtype())));
    }
    let (xzp, wzp) = (cx.input(xzi), const_operand(cx, wzi, "the weight's zero point")?);
    let xmax = centred_bound(cx, &x, &xzp);
    let xf = centred(cx, x, xzp, 1, false)?;
    let ws = w.shape().to_vec();
    if ws.len() < 3 {
        return Err(cx.err(format!("the weight must have rank 3 or more, has shape {ws:?}")));
    }
    let (m, cg, taps) = (ws[0], ws[1], numel(&ws[2..]));
    let wv = w.to_i64s();
    let zv = wzp.as_ref().map(|z| z.to_i64s()).unwrap_or_default();
    let z_of = |mi: usize| {
        if zv.is_empty() {
            0
        } else if zv.len() == 1 {
            zv[0]
        } else {
            zv[mi.min(zv.len() - 1)]
        }
    };
    let bias_t = match &bias {
        None => None,
        Some(V::Const(b)) => Some(b.clone()),
        Some(V::Act(_)) => return Err(cx.err("the bias must be a constant (it is computed from the input data)")),
    };
    let bias_abs: Vec<f64> = match &bias_t {
        Some(b) => b.to_f64s().iter().map(|v| v.abs()).collect(),
        None => vec![0.0; m],
    };
    if bias_abs.len() != m {
        return Err(cx.err(format!("the bias has {} values, the output {m} channels", bias_abs.len())));
    }
    let cost = |ci: usize, mi: usize| -> f64 {
        let base = (mi * cg + ci) * taps;
        wv[base..base + taps].iter().map(|&v| (v - z_of(mi)).abs() as f64).sum::<f64>() * xmax
    };
    let groups = cx.attrs.i("group", 1);
    let ranges = chunks(cg, m, &bias_abs, EXACT, cost).filter(|r| r.len() == 1 || groups == 1).ok_or_else(|| {
        cx.err(format!(
            "the integer convolution may exceed 2^24 in f32 (the engine accumulates integer products exactly \
                 in f32 up to 2^24 and splits ungrouped convolutions by input channel; weight {ws:?}, |x - zero point| \
                 up to {xmax}, group {groups})"
        ))
    })?;
    let wzp_v = wzp.map(V::Const);
    let bias_f = bias_t.map(|b| cx.constant(b.convert(DType::F32)));
    let mut parts = vec![];
    for (k, &(c0, c1)) in ranges.iter().enumerate() {
        let (xc, wc) = if ranges.len() == 1 {
            (xf.clone(), V::Const(w.clone()))
        } else {
            (slice(cx, xf.clone(), 1, c0, c1)?, slice(cx, V::Const(w.clone()), 1, c0, c1)?)
        };
        let wf = centred(cx, wc, wzp_v.clone(), 0, true)?;
        let b = if k == 0 { bias_f.clone() } else { None };
        parts.push(super::conv::conv_node(cx, xc, wf, b)?);
    }
    sum_chunks(cx, parts)
}

/// The integer matrix product of MatMulInteger and QLinearMatMul (inputs a, b and their zero
/// points by index; a per-row zero point for a, per-column for b): exact f32 values, or
/// int32 when computed in chunks of the inner dimension. float8 operands (QLinearMatMul)
/// give their f32 product.
fn integer_matmul(cx: &mut Ctx, ai: usize, bi: usize, azi: usize, bzi: usize) -> Result<V> {
    let (a, b) = (cx.need(ai)?, cx.need(bi)?);
    let (azp, bzp) = (cx.input(azi), cx.input(bzi));
    let (ra, rb) = (cx.rank(&a), cx.rank(&b));
    if ra == 0 || rb == 0 {
        return Err(cx.err("the operands of a matrix product must have rank 1 or more"));
    }
    let (sa, sb) = (cx.shape(&a), cx.shape(&b));
    let k = sa[ra - 1];
    let kb_axis = if rb == 1 { 0 } else { rb - 2 };
    let integers = cx.dtype(&a).is_int() && cx.dtype(&b).is_int();
    let amax = if integers { centred_bound(cx, &a, &azp) } else { 0.0 };
    let af = centred(cx, a, azp, ra.saturating_sub(2), false)?;
    let n = if rb == 1 { 1 } else { sb[rb - 1] };
    let ranges = if !integers {
        vec![(0, k)]
    } else if let V::Const(bt) = &b {
        // Per column of every batch: the sum of |b - zero point| over the inner dimension.
        let bv = bt.to_i64s();
        let zv = match &bzp {
            Some(V::Const(z)) => z.to_i64s(),
            Some(V::Act(_)) => return Err(cx.err("b's zero point must be a constant when b is one")),
            None => vec![0],
        };
        let batches = numel(&sb[..kb_axis]);
        let cost = |kk: usize, col: usize| -> f64 {
            let (bat, j) = (col / n, col % n);
            let z = if zv.len() == 1 { zv[0] } else { zv[j.min(zv.len() - 1)] };
            (bv[(bat * k + kk) * n + j] - z).abs() as f64 * amax
        };
        chunks(k, batches * n, &vec![0.0; batches * n], EXACT, cost)
            .ok_or_else(|| cx.err("one inner index alone exceeds the exact f32 range"))?
    } else {
        let bmax = centred_bound(cx, &b, &bzp);
        chunks(k, 1, &[0.0], EXACT, |_, _| amax * bmax).ok_or_else(|| cx.err("one inner index alone exceeds 2^24"))?
    };
    let b_computed = matches!(b, V::Act(_));
    let bf_all = if b_computed { Some(centred(cx, b.clone(), bzp.clone(), rb - 1, true)?) } else { None };
    let mut parts = vec![];
    for &(k0, k1) in &ranges {
        let whole = ranges.len() == 1;
        let ac = if whole { af.clone() } else { slice(cx, af.clone(), ra - 1, k0, k1)? };
        let bc = match &bf_all {
            Some(bf) if whole => bf.clone(),
            Some(bf) => slice(cx, bf.clone(), kb_axis, k0, k1)?,
            None => {
                let bc = if whole { b.clone() } else { slice(cx, b.clone(), kb_axis, k0, k1)? };
                centred(cx, bc, bzp.clone(), rb - 1, true)?
            }
        };
        parts.push(cx.add1(Op::MatMul { activation: None }, &[ac, bc])?);
    }
    sum_chunks(cx, parts)
}

/// Where the output channels (QLinearConv: axis 1) or rows and columns (QLinearMatMul) of a
/// requantised accumulator lie.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Conv,
    MatMul,
}

/// `QuantizeLinear(acc * (a_scale * b_scale / y_scale), 1, y_zero_point)`: the requantisation
/// of an integer accumulator (scales and zero points by index).
fn requantize(cx: &mut Ctx, acc: V, asi: usize, bsi: usize, ysi: usize, yzi: usize, layout: Layout) -> Result<V> {
    let (a_scale, b_scale, y_scale) = (cx.need(asi)?, cx.need(bsi)?, cx.need(ysi)?);
    let yzp = cx.need(yzi)?;
    let rank = cx.rank(&acc);
    // Per-channel (conv) or per-row (matmul, a) scales broadcast along their axis.
    let along = |cx: &mut Ctx, s: V, trailing: usize| -> Result<V> {
        let shape = cx.shape(&s);
        if numel(&shape) <= 1 {
            return Ok(s);
        }
        let mut to = vec![numel(&shape)];
        to.extend(std::iter::repeat_n(1, trailing));
        cx.add1(Op::Reshape { shape: to }, &[s])
    };
    let (a_scale, b_scale) = match layout {
        Layout::Conv => (a_scale, along(cx, b_scale, rank.saturating_sub(2))?),
        Layout::MatMul => (along(cx, a_scale, 1)?, b_scale),
    };
    let ab = cx.binary(BinaryOp::Mul, a_scale, b_scale)?;
    let m = cx.binary(BinaryOp::Div, ab, y_scale)?;
    let m = to_type(cx, m, DType::F32)?;
    let accf = to_type(cx, acc, DType::F32)?;
    let r = cx.binary(BinaryOp::Mul, accf, m)?;
    let to = cx.dtype(&yzp);
    let attrs = QuantizeAttrs { axis: 0, block_size: 0, to, saturate: true, precision: DType::F32 };
    let one = cx.constant(Tensor::scalar(DType::F32, 1.0));
    if numel(&cx.shape(&yzp)) != 1 {
        return Err(cx.err(format!("y_zero_point must be a single value, has shape {:?}", cx.shape(&yzp))));
    }
    let yzp = if cx.rank(&yzp) == 0 { yzp } else { cx.add1(Op::Reshape { shape: vec![] }, &[yzp])? };
    cx.add1(Op::QuantizeLinear(attrs), &[r, one, yzp])
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::super::super::proto::*;
    use crate::tensor::{DType, Tensor};

    fn info(name: &str, elem_type: i32, dims: &[i64]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .enumerate()
            .map(|(i, &d)| Dimension {
                value: Some(if i == 0 { DimValue::Param("N".into()) } else { DimValue::Value(d) }),
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto { elem_type, shape: Some(TensorShapeProto { dim }) }),
            }),
        }
    }

    fn init(name: &str, t: &Tensor) -> TensorProto {
        TensorProto {
            dims: t.shape().iter().map(|&d| d as i64).collect(),
            data_type: t.dtype().onnx_code(),
            name: name.into(),
            raw_data: crate::onnx::encode_le(t),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec!["y".into()],
            name: op.into(),
            op_type: op.into(),
            domain: String::new(),
            attribute: attrs,
        }
    }

    /// A one-node model: input x (type, dims with the batch first), initializers, output y.
    fn model(n: NodeProto, x: ValueInfoProto, inits: Vec<TensorProto>, y: i32) -> crate::Model {
        let m = ModelProto {
            ir_version: 9,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 21 }],
            producer_name: "test".into(),
            producer_version: String::new(),
            graph: Some(GraphProto {
                node: vec![n],
                name: "quant".into(),
                initializer: inits,
                input: vec![x],
                output: vec![info("y", y, &[])],
                value_info: vec![],
            }),
        };
        crate::onnx::load_bytes(&m.encode_to_vec(), "quant.onnx", None, &Default::default()).unwrap()
    }

    fn count(g: &crate::Graph, name: &str) -> usize {
        g.nodes().iter().filter(|n| n.op.name() == name).count()
    }

    #[test]
    fn matmul_integer_splits_the_inner_dimension_and_stays_exact() {
        let (k, n) = (600, 3);
        let mut rng = crate::Rng::new(3);
        let b = Tensor::random_of(DType::U8, vec![k, n], &mut rng, 200.0, 255.0);
        let bzp = Tensor::from_i64(DType::U8, vec![n], vec![0, 3, 9]).unwrap();
        let m = model(
            node("MatMulInteger", &["a", "b", "", "bzp"], vec![]),
            info("a", data_type::UINT8, &[2, k as i64]),
            vec![init("b", &b), init("bzp", &bzp)],
            data_type::INT32,
        );
        let g = m.graph(2).unwrap();
        assert!(count(&g, "MatMul") >= 3, "600 x 255 x 255 needs at least 3 exact chunks");
        let a = Tensor::random_of(DType::U8, vec![2, k], &mut rng, 230.0, 255.0);
        let y = crate::reference::run_model(&m, std::slice::from_ref(&a)).unwrap().remove(0);
        let (av, bv, zv) = (a.to_i64s(), b.to_i64s(), bzp.to_i64s());
        let want: Vec<i64> = (0..2 * n)
            .map(|o| (0..k).map(|kk| av[(o / n) * k + kk] * (bv[kk * n + o % n] - zv[o % n])).sum())
            .collect();
        assert_eq!(y.dtype(), DType::I32);
        assert_eq!(y.as_i64().unwrap(), want.as_slice());
    }

    #[test]
    fn conv_integer_splits_input_channels_and_stays_exact() {
        let (c, m, hw) = (40, 2, 4);
        let mut rng = crate::Rng::new(4);
        let w = Tensor::random_of(DType::U8, vec![m, c, 3, 3], &mut rng, 240.0, 255.0);
        let xzp = Tensor::from_i64(DType::U8, vec![], vec![0]).unwrap();
        let m_ = model(
            node("ConvInteger", &["x", "w", "xzp"], vec![]),
            info("x", data_type::UINT8, &[1, c as i64, hw as i64, hw as i64]),
            vec![init("w", &w), init("xzp", &xzp)],
            data_type::INT32,
        );
        let g = m_.graph(1).unwrap();
        assert_eq!(count(&g, "Conv"), 2, "40 channels x 9 taps x 255 x 255 split in two exact halves");
        let x = Tensor::random_of(DType::U8, vec![1, c, hw, hw], &mut rng, 240.0, 255.0);
        let y = crate::reference::run_model(&m_, std::slice::from_ref(&x)).unwrap().remove(0);
        let (xv, wv) = (x.to_i64s(), w.to_i64s());
        let o = hw - 2;
        let mut want = vec![0i64; m * o * o];
        for mi in 0..m {
            for i in 0..o {
                for j in 0..o {
                    let mut s = 0;
                    for ci in 0..c {
                        for a in 0..3 {
                            for b in 0..3 {
                                s += xv[(ci * hw + i + a) * hw + j + b] * wv[((mi * c + ci) * 3 + a) * 3 + b];
                            }
                        }
                    }
                    want[(mi * o + i) * o + j] = s;
                }
            }
        }
        assert!(want.iter().any(|&v| v > 1 << 24), "the case goes beyond the exact f32 range");
        assert_eq!(y.as_i64().unwrap(), want.as_slice());
    }

    #[test]
    fn dequantized_int8_weights_stay_on_the_device_for_conv_only() {
        let w = Tensor::from_i64(DType::I8, vec![2, 3, 1, 1], vec![1, -2, 3, -4, 5, -6]).unwrap();
        let s = Tensor::scalar(DType::F32, 0.5);
        let dq = NodeProto {
            input: vec!["w".into(), "s".into()],
            output: vec!["wf".into()],
            name: "dq".into(),
            op_type: "DequantizeLinear".into(),
            domain: String::new(),
            attribute: vec![],
        };
        let build = |op: &str, inputs: &[&str]| {
            let m = ModelProto {
                ir_version: 9,
                opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 21 }],
                producer_name: "test".into(),
                producer_version: String::new(),
                graph: Some(GraphProto {
                    node: vec![dq.clone(), node(op, inputs, vec![])],
                    name: "qdq".into(),
                    initializer: vec![init("w", &w), init("s", &s)],
                    input: vec![info("x", data_type::FLOAT, &[1, 3, 2, 2])],
                    output: vec![info("y", data_type::FLOAT, &[])],
                    value_info: vec![],
                }),
            };
            crate::onnx::load_bytes(&m.encode_to_vec(), "qdq.onnx", None, &Default::default()).unwrap()
        };
        // Read by a Conv: a device node over the int8 constant.
        let g = build("Conv", &["x", "wf"]).graph(1).unwrap();
        assert_eq!(count(&g, "DequantizeLinear"), 1);
        let on_device = g.nodes().iter().find(|n| n.op.name() == "DequantizeLinear").unwrap();
        assert_eq!(g.value(on_device.inputs[0]).constant().map(|t| t.dtype()), Some(DType::I8));
        // Read by an op outside the list (a Reshape's data could be anything): folded.
        let shape = Tensor::ints(&[1, 6]);
        let m = ModelProto {
            ir_version: 9,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 21 }],
            producer_name: "test".into(),
            producer_version: String::new(),
            graph: Some(GraphProto {
                node: vec![dq.clone(), node("Reshape", &["wf", "shape"], vec![]), {
                    let mut n = node("Add", &["x", "y"], vec![]);
                    n.output = vec!["z".into()];
                    n
                }],
                name: "folded".into(),
                initializer: vec![init("w", &w), init("s", &s), init("shape", &shape)],
                input: vec![info("x", data_type::FLOAT, &[1, 6])],
                output: vec![info("z", data_type::FLOAT, &[])],
                value_info: vec![],
            }),
        };
        let m = crate::onnx::load_bytes(&m.encode_to_vec(), "folded.onnx", None, &Default::default()).unwrap();
        assert_eq!(count(&m.graph(1).unwrap(), "DequantizeLinear"), 0);
    }
}
