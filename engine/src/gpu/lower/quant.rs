//! Lowering: quantisation (QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear), `Cast`
//! with float8 attributes and BitCast.
//!
//! A constant of an 8-bit or narrower type (int8, uint8, int4, uint4, int2, uint2, the float8
//! types, float4e2m1) or of a 16-bit integer type that `DequantizeLinear` reads is uploaded
//! packed, 32 / bits values a word, and unpacked by the `dequantize` kernel: a QDQ model's
//! int8 weights take a quarter of the constant bytes of their f32 values (the importer keeps
//! `DequantizeLinear` of a constant on the device for that reason, see `onnx/ops/quant.rs`).

use super::convert::e8m0_word;
use super::{Buf, Class, Ctx, Words, class_of, div_up, int_bits, node_err, round_mode};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::{Node, ValueId};
use crate::half::E8m0Round;
use crate::ops::{Granularity, Op, granularity};
use crate::tensor::{DType, Tensor, numel};

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    match &node.op {
        Op::CastWith { to, saturate, round } => super::convert::cast(cx, ni, node, *to, *saturate, *round),
        Op::BitCast { to } => bit_cast(cx, ni, node, *to),
        Op::QuantizeLinear(a) => {
            let p = QuantParams { axis: a.axis, block_size: a.block_size };
            quantize(cx, ni, node, p, a.to, a.saturate, a.precision)
        }
        Op::DequantizeLinear(a) => dequantize(cx, ni, node, QuantParams { axis: a.axis, block_size: a.block_size }),
        Op::DynamicQuantizeLinear => dynamic_quantize(cx, ni, node),
        _ => Err(node_err(node, format!("{} is not an operation of the quant family", node.op.name()))),
    }
}

/// Axis and block size of a (de)quantisation.
#[derive(Clone, Copy)]
struct QuantParams {
    axis: usize,
    block_size: usize,
}

/// Words 0..=5 of quantize and dequantize: elements and the scale's layout.
fn scale_words(cx: &Ctx, node: &Node, p: QuantParams) -> Result<Words> {
    let x = cx.shape(node.inputs[0]);
    let scale = cx.shape(node.inputs[1]);
    let g = granularity(&x, &scale, p.axis, p.block_size).map_err(|e| node_err(node, e))?;
    let (len, inner) = if g == Granularity::Tensor { (1, 1) } else { (x[p.axis], numel(&x[p.axis + 1..])) };
    let code = match g {
        Granularity::Tensor => 0,
        Granularity::Axis => 1,
        Granularity::Blocked => 2,
    };
    let mut w = Words::new();
    w.u(0, numel(&x))
        .u(1, inner)
        .u(2, len)
        .u(3, p.block_size.max(1))
        .u(4, len.div_ceil(p.block_size.max(1)))
        .u(5, code);
    Ok(w)
}

/// The zero point's buffer, or a dummy one (the kernels always bind it).
fn zero_point(cx: &mut Ctx, node: &Node) -> Result<Option<Buf>> {
    node.inputs.get(2).map(|&z| cx.buf(node, z)).transpose()
}

fn dummy(cx: &mut Ctx, node: &Node) -> Buf {
    cx.zeros(format!("{}.no_zero_point", node.name), 4)
}

fn quantize(
    cx: &mut Ctx,
    ni: usize,
    node: &Node,
    p: QuantParams,
    to: DType,
    saturate: bool,
    precision: DType,
) -> Result<()> {
    let (x, s, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let mut w = scale_words(cx, node, p)?;
    let (lo, hi) = to.int_range();
    let xb = cx.buf(node, x)?;
    let sb = cx.buf(node, s)?;
    let zp = zero_point(cx, node)?;
    let zb = match zp {
        Some(b) => b,
        None => dummy(cx, node),
    };
    let float_target = to.is_float();
    let prec = if matches!(precision, DType::F16 | DType::BF16) { round_mode(precision).unwrap_or(0) } else { 0 };
    w.u(6, zp.is_some() as usize).u(7, float_target as usize).i(8, lo).i(9, hi).u(10, prec);
    w.u(11, (class_of(cx.dtype(x)) == Class::Int) as usize).u(12, (class_of(cx.dtype(s)) == Class::Int) as usize);
    let n = cx.g.value(y).numel();
    let kernel = Kernel::new(Family::Quant, "quantize", &[("WG", cx.wg as u32)]);
    let groups = cx.groups(n);
    cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb), (3, sb), (4, zb)], groups, w.done());
    if float_target {
        // x / scale + zero point rounded to the float8/float4 target with `saturate`.
        let mode = round_mode(to).expect("a narrow float target");
        let kernel = Kernel::new(Family::Convert, "round16", &[("WG", cx.wg as u32)]);
        let w = Words::new().u(0, n).u(1, mode).u(2, saturate as usize).u(3, e8m0_word(E8m0Round::Up)).done();
        cx.push(ni, kernel, vec![(9, Buf::Value(y))], groups, w);
    }
    Ok(())
}

/// How `dequantize` reads x: its words (mode 0 f32, 1 i32), or a constant packed `bits` a
/// value (mode 2 integers, 3 float codes of a format).
struct XLayout {
    buf: Buf,
    mode: usize,
    bits: usize,
    signed: usize,
    format: usize,
}

/// The codes of a constant's values in `bits`-bit fields, or None for types not packed.
fn packed_codes(t: &Tensor) -> Option<Vec<u32>> {
    let d = t.dtype();
    if let Some(f) = d.mini_float() {
        return Some(t.data().iter().map(|&v| f.encode(v, false) as u32).collect());
    }
    if d == DType::F8E8M0 {
        let code = |v: f32| crate::half::e8m0_from_f32(v, false, E8m0Round::Nearest) as u32;
        return Some(t.data().iter().map(|&v| code(v)).collect());
    }
    if d.is_int() && d.bits() <= 16 {
        let mask = (1u32 << d.bits()) - 1;
        return Some(t.as_i64()?.iter().map(|&v| v as u32 & mask).collect());
    }
    None
}

/// Packs `bits`-bit codes into words, 32 / bits a word, the first in the lowest bits.
fn pack(codes: &[u32], bits: usize) -> Vec<u32> {
    let per = 32 / bits;
    let mut words = vec![0u32; codes.len().div_ceil(per)];
    for (i, &c) in codes.iter().enumerate() {
        words[i / per] |= c << ((i % per) * bits);
    }
    words
}

fn x_layout(cx: &mut Ctx, node: &Node, x: ValueId) -> Result<XLayout> {
    let d = cx.dtype(x);
    let val = cx.g.value(x);
    if let Some(t) = val.constant()
        && let Some(codes) = packed_codes(t)
    {
        let name = format!("{}.packed", val.name);
        let existing = cx.out.consts.iter().position(|(n, _)| *n == name);
        let buf = match existing {
            Some(i) => Buf::Const(i),
            None => {
                let words = pack(&codes, d.bits());
                cx.words(name, words)
            }
        };
        let (mode, format) = if d.is_float() { (3, round_mode(d).unwrap_or(0)) } else { (2, 0) };
        let signed = d.is_int() && d.int_range().0 < 0;
        return Ok(XLayout { buf, mode, bits: d.bits(), signed: signed as usize, format });
    }
    let mode = if class_of(d) == Class::Float { 0 } else { 1 };
    Ok(XLayout { buf: cx.buf(node, x)?, mode, bits: 32, signed: 1, format: 0 })
}

fn dequantize(cx: &mut Ctx, ni: usize, node: &Node, p: QuantParams) -> Result<()> {
    let (x, s, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let mut w = scale_words(cx, node, p)?;
    let xl = x_layout(cx, node, x)?;
    let sb = cx.buf(node, s)?;
    let zp = zero_point(cx, node)?;
    let zkind = match zp {
        None => 0,
        Some(_) if class_of(cx.dtype(node.inputs[2])) == Class::Int => 1,
        Some(_) => 2,
    };
    let zb = match zp {
        Some(b) => b,
        None => dummy(cx, node),
    };
    w.u(6, xl.mode).u(7, xl.bits).u(8, xl.signed).u(9, xl.format).u(10, zkind);
    let n = cx.g.value(y).numel();
    let kernel = Kernel::new(Family::Quant, "dequantize", &[("WG", cx.wg as u32)]);
    let groups = cx.groups(n);
    cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xl.buf), (3, sb), (4, zb)], groups, w.done());
    Ok(())
}

/// Workgroup size of the range reductions (a power of two).
const RANGE_WG: usize = 64;

fn dynamic_quantize(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let x = node.inputs[0];
    let (y, s, z) = (node.outputs[0], node.outputs[1], node.outputs[2]);
    let n = cx.g.value(x).numel();
    // Each workgroup reduces a chunk of at least 16 values per invocation, at most 1024
    // chunks; one workgroup then combines them.
    let chunks = div_up(n, RANGE_WG * 16).clamp(1, 1024);
    let chunk = div_up(n, chunks);
    let xb = cx.buf(node, x)?;
    let partial = cx.scratch(format!("{}.range", node.name), (chunks * 2 * 4) as u64);
    let wg = [("WG", RANGE_WG as u32)];
    let range = Kernel::new(Family::Quant, "range_partial", &wg);
    cx.push(ni, range, vec![(2, xb), (5, partial)], chunks as u64, Words::new().u(0, n).u(1, chunk).done());
    let params = Kernel::new(Family::Quant, "dynamic_qparams", &wg);
    let bindings = vec![(6, partial), (7, Buf::Value(s)), (8, Buf::Value(z))];
    cx.push(ni, params, bindings, 1, Words::new().u(0, chunks).done());
    let mut w = Words::new();
    w.u(0, n).u(1, 1).u(2, 1).u(3, 1).u(4, 1).u(5, 0).u(6, 1).u(7, 0).i(8, 0).i(9, 255);
    let kernel = Kernel::new(Family::Quant, "quantize", &[("WG", cx.wg as u32)]);
    let groups = cx.groups(n);
    cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb), (3, Buf::Value(s)), (4, Buf::Value(z))], groups, w.done());
    Ok(())
}

/// How `bit_cast` reads or writes a type's bits: (kind, bits, float format, signed).
fn bit_kind(node: &Node, d: DType) -> Result<(usize, usize, usize, usize)> {
    if d.bits() == 64 {
        return Err(node_err(
            node,
            format!(
                "BitCast of {d} needs 64-bit words, but the device holds float64 as f32 and 64-bit integers as \
                 int32; only constant inputs (folded when the model is imported) can be bit-cast between 64-bit types"
            ),
        ));
    }
    Ok(match d {
        DType::F32 => (0, 32, 0, 0),
        DType::F16 => (2, 16, 0, 0),
        DType::BF16 => (3, 16, 0, 0),
        d if d.is_float() => (4, d.bits(), round_mode(d).unwrap_or(0), 0),
        d => {
            let (bits, signed) = int_bits(d);
            (1, bits, 0, signed)
        }
    })
}

fn bit_cast(cx: &mut Ctx, ni: usize, node: &Node, to: DType) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let (sk, sb, sf, _) = bit_kind(node, cx.dtype(x))?;
    let (tk, tb, tf, ts) = bit_kind(node, to)?;
    let xb = cx.buf(node, x)?;
    let n = cx.g.value(y).numel();
    let w = Words::new().u(0, n).u(1, sk).u(2, sb).u(3, sf).u(4, tk).u(5, tb).u(6, ts).u(7, tf).done();
    let kernel = Kernel::new(Family::Quant, "bit_cast", &[("WG", cx.wg as u32)]);
    let groups = cx.groups(n);
    cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb)], groups, w);
    Ok(())
}
