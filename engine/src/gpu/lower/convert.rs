//! Element type conversions (Cast) between the device's f32 and i32 words.

use super::{Buf, Class, Ctx, Words, class_of, int_bits, round_mode};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::Op;
use crate::tensor::DType;

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let Op::Cast { to } = node.op else { unreachable!("convert family") };
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let from = cx.dtype(x);
    let n = cx.g.value(y).numel();
    let xb = cx.buf(node, x)?;
    // Integer targets: bits and signedness to wrap to, or bool; float16 targets: rounding.
    let (bits, signed) = int_bits(to);
    let flag = if to == DType::Bool { 1 } else { round_mode(to).unwrap_or(0) };
    let (entry, in_b, out_b) = match (class_of(from), class_of(to)) {
        (Class::Float, Class::Float) => ("cast_f2f", 5, 7),
        (Class::Float, Class::Int) => ("cast_f2i", 5, 8),
        (Class::Int, Class::Float) => ("cast_i2f", 6, 7),
        (Class::Int, Class::Int) => ("cast_i2i", 6, 8),
    };
    let kernel = Kernel::new(Family::Convert, entry, &[("WG", cx.wg as u32)]);
    let p = Words::new().u(0, n).u(1, bits).u(2, signed).u(3, flag).done();
    let groups = cx.groups(n);
    cx.push(ni, kernel, vec![(in_b, xb), (out_b, Buf::Value(y))], groups, p);
    Ok(())
}
