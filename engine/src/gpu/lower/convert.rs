//! Element type conversions (Cast) between the device's f32 and i32 words.

use super::{Buf, Class, Ctx, Words, class_of};
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
    // Integer targets: bits and signedness to wrap to (64-bit ones are held as i32), or bool.
    let (bits, signed) = match to {
        DType::I8 => (8, 1),
        DType::U8 => (8, 0),
        DType::I16 => (16, 1),
        DType::U16 => (16, 0),
        _ => (32, 1),
    };
    let round = match to {
        DType::F16 => 1,
        DType::BF16 => 2,
        _ => 0,
    };
    let flag = if to == DType::Bool { 1 } else { round };
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
