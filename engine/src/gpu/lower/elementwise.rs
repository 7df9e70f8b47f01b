//! Elementwise operations: binary (float, comparison and integer kernels), functions of one
//! value, float classification, logical not, selection, and the bitwise operations (on the
//! integer kernels, results wrapped into 8- and 16-bit types).

use super::{Buf, Class, Ctx, Words, act_of, bstrides, class_of, int_bits, istrides, node_err, rank6};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::{Activation, BinaryOp, Op};
use crate::tensor::DType;

/// The wrap of an integer result into its type: (bits, signed), bits 0 where no wrap is
/// needed (32- and 64-bit types, bools).
fn wrap_of(t: DType) -> (usize, usize) {
    match int_bits(t) {
        (bits @ (8 | 16), signed) => (bits, signed),
        (_, signed) => (0, signed),
    }
}

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let y = node.outputs[0];
    let x = node.inputs[0];
    let n = cx.g.value(y).numel();
    let wg = cx.wg as u32;
    match &node.op {
        Op::Binary { op, activation } => binary(cx, ni, node, *op, *activation),
        Op::Unary(act) => {
            let xb = cx.buf(node, x)?;
            if class_of(cx.dtype(x)) == Class::Int {
                let (mode, lo, hi) = match act {
                    Activation::Abs => (0, 0, 0),
                    Activation::Neg => (1, 0, 0),
                    Activation::Sign => (2, 0, 0),
                    Activation::Relu => (3, 0, 0),
                    Activation::Clip { min, max } => (
                        4,
                        if min.is_finite() { min.max(i32::MIN as f32) as i32 } else { i32::MIN },
                        if max.is_finite() { max.min(i32::MAX as f32) as i32 } else { i32::MAX },
                    ),
                    other => return Err(node_err(node, format!("{} of integers is not defined", other.name()))),
                };
                let kernel = Kernel::new(Family::Elementwise, "unary_int", &[("MODE", mode), ("WG", wg)]);
                let (bits, signed) = wrap_of(cx.dtype(y));
                let p = Words::new().u(0, n).i(1, lo as i64).i(2, hi as i64).u(3, bits).u(4, signed).done();
                let groups = cx.groups(n);
                cx.push(ni, kernel, vec![(4, Buf::Value(y)), (5, xb)], groups, p);
                return Ok(());
            }
            let (code, fa, fb) = act.code();
            let kernel = Kernel::new(Family::Elementwise, "unary", &[("ACT", code), ("WG", wg)]);
            let groups = cx.groups(n.div_ceil(4));
            cx.push(
                ni,
                kernel,
                vec![(1, Buf::Value(y)), (2, xb)],
                groups,
                Words::new().u(0, n).f(1, fa).f(2, fb).done(),
            );
            Ok(())
        }
        Op::IsNaN | Op::IsInf { .. } => {
            let xb = cx.buf(node, x)?;
            let (mode, pos, neg) = match node.op {
                Op::IsInf { pos, neg } => (1, pos, neg),
                _ => (0, false, false),
            };
            let kernel = Kernel::new(Family::Elementwise, "classify", &[("MODE", mode), ("WG", wg)]);
            let p = Words::new().u(0, n).u(1, pos as usize).u(2, neg as usize).done();
            let groups = cx.groups(n);
            cx.push(ni, kernel, vec![(4, Buf::Value(y)), (2, xb)], groups, p);
            Ok(())
        }
        Op::Not => {
            let xb = cx.buf(node, x)?;
            let kernel = Kernel::new(Family::Elementwise, "unary_int", &[("MODE", 5), ("WG", wg)]);
            let groups = cx.groups(n);
            cx.push(ni, kernel, vec![(4, Buf::Value(y)), (5, xb)], groups, Words::new().u(0, n).done());
            Ok(())
        }
        Op::BitwiseNot => {
            let xb = cx.buf(node, x)?;
            let kernel = Kernel::new(Family::Elementwise, "unary_int", &[("MODE", 6), ("WG", wg)]);
            let (bits, signed) = wrap_of(cx.dtype(y));
            let groups = cx.groups(n);
            let p = Words::new().u(0, n).u(3, bits).u(4, signed).done();
            cx.push(ni, kernel, vec![(4, Buf::Value(y)), (5, xb)], groups, p);
            Ok(())
        }
        Op::Where => {
            let o = cx.shape(y);
            let (od, _) = rank6(node, &o, &istrides(&o))?;
            let (c, a, b) = (node.inputs[0], node.inputs[1], node.inputs[2]);
            let (cb, ab, bb) = (cx.buf(node, c)?, cx.buf(node, a)?, cx.buf(node, b)?);
            let (_, c6) = rank6(node, &o, &bstrides(&cx.shape(c), &o))?;
            let (_, a6) = rank6(node, &o, &bstrides(&cx.shape(a), &o))?;
            let (_, b6) = rank6(node, &o, &bstrides(&cx.shape(b), &o))?;
            let mut p = Words::new();
            p.u(0, n);
            for k in 0..6 {
                p.u(1 + k, od[k]).i(7 + k, c6[k]).i(13 + k, a6[k]).i(19 + k, b6[k]);
            }
            let kernel = Kernel::new(Family::Elementwise, "select_words", &[("WG", wg)]);
            let groups = cx.groups(n);
            cx.push(ni, kernel, vec![(7, Buf::Value(y)), (8, cb), (9, ab), (10, bb)], groups, p.done());
            Ok(())
        }
        _ => unreachable!("elementwise family"),
    }
}

fn binary(cx: &mut Ctx, ni: usize, node: &Node, op: BinaryOp, activation: Option<Activation>) -> Result<()> {
    let (a, bv, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let (sa, sb, so) = (cx.shape(a), cx.shape(bv), cx.shape(y));
    let (od, _) = rank6(node, &so, &istrides(&so))?;
    let wg = cx.wg as u32;
    let (act, fa, fb) = act_of(activation);
    let (mut ab, mut bb) = (cx.buf(node, a)?, cx.buf(node, bv)?);
    let mut operands = class_of(cx.dtype(a));
    let mut out = Buf::Value(y);
    let mut back_to_int = false;
    if operands == Class::Float && class_of(cx.dtype(bv)) == Class::Int {
        // Pow with an integer exponent: the exponent as floats.
        bb = cx.as_float(ni, node, bv)?;
    } else if operands == Class::Int && class_of(cx.dtype(bv)) == Class::Float {
        // Pow of an integer base with a float exponent: computed in floats, truncated back.
        ab = cx.as_float(ni, node, a)?;
        operands = Class::Float;
        out = cx.scratch(format!("{}.as_float", node.name), (so.iter().product::<usize>() * 4) as u64);
        back_to_int = true;
    }
    let (entry, out_binding, a_binding, b_binding) = match (operands, op.is_comparison()) {
        (Class::Float, false) => ("binary", 1, 2, 3),
        (Class::Float, true) => ("compare", 4, 2, 3),
        (Class::Int, _) => ("binary_int", 4, 5, 6),
    };
    let kernel = Kernel::new(Family::Elementwise, entry, &[("OP", op.code()), ("ACT", act), ("WG", wg)]);
    let (_, a6) = rank6(node, &so, &bstrides(&sa, &so))?;
    let (_, b6) = rank6(node, &so, &bstrides(&sb, &so))?;
    let items: usize = so.iter().product();
    let same = sa == so && sb == so;
    let mut p = Words::new();
    p.u(0, items);
    for k in 0..6 {
        p.u(1 + k, od[k]).i(7 + k, a6[k]).i(13 + k, b6[k]);
    }
    p.f(19, fa).f(20, fb).u(21, same as usize);
    if operands == Class::Int {
        // The operands' width and signedness (shifts), and the wrap of narrow results.
        let t = cx.dtype(a);
        let signed = crate::ops::is_signed_int(t);
        let (wrap, _) = wrap_of(cx.dtype(y));
        p.u(22, t.size() * 8).u(23, signed as usize).u(24, wrap);
    }
    let groups = cx.groups(items.div_ceil(4));
    cx.push(ni, kernel, vec![(out_binding, out), (a_binding, ab), (b_binding, bb)], groups, p.done());
    if back_to_int {
        cx.float_to_int(ni, out, y);
    }
    Ok(())
}
