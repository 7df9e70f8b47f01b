//! Element type conversions (Cast) between the device's f32 and i32 words: integers wrapped
//! to their type, floats rounded to their narrow type (float16, bfloat16, float8, float4)
//! with ONNX's `saturate` and `round_mode`.

use super::{Buf, Class, Ctx, Words, class_of, int_bits, round_mode};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::half::E8m0Round;
use crate::ops::Op;
use crate::tensor::DType;

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let Op::Cast { to } = node.op else { unreachable!("convert family") };
    cast(cx, ni, node, to, true, E8m0Round::Up)
}

/// The `round_mode` word of the cast kernels for a float8e8m0 rounding.
pub(super) fn e8m0_word(round: E8m0Round) -> usize {
    match round {
        E8m0Round::Nearest => 0,
        E8m0Round::Up => 1,
        E8m0Round::Down => 2,
    }
}

/// Casts the node's first input to `to` into its first output, with the float8 conversion
/// attributes `saturate` and `round` (float8e8m0).
pub(super) fn cast(cx: &mut Ctx, ni: usize, node: &Node, to: DType, saturate: bool, round: E8m0Round) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let from = cx.dtype(x);
    let n = cx.g.value(y).numel();
    let xb = cx.buf(node, x)?;
    // Integer targets: bits and signedness to wrap to, or bool; narrow float targets: rounding.
    let (bits, signed) = int_bits(to);
    let flag = if to == DType::Bool { 1 } else { round_mode(to).unwrap_or(0) };
    let (entry, in_b, out_b) = match (class_of(from), class_of(to)) {
        (Class::Float, Class::Float) => ("cast_f2f", 5, 7),
        (Class::Float, Class::Int) => ("cast_f2i", 5, 8),
        (Class::Int, Class::Float) => ("cast_i2f", 6, 7),
        (Class::Int, Class::Int) => ("cast_i2i", 6, 8),
    };
    let kernel = Kernel::new(Family::Convert, entry, &[("WG", cx.wg as u32)]);
    let p =
        Words::new().u(0, n).u(1, bits).u(2, signed).u(3, flag).u(4, saturate as usize).u(5, e8m0_word(round)).done();
    let groups = cx.groups(n);
    cx.push(ni, kernel, vec![(in_b, xb), (out_b, Buf::Value(y))], groups, p);
    Ok(())
}
