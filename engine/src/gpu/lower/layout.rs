//! Data movement as strided copies of 32-bit words (any element type) and padding.

use super::{Buf, Class, Ctx, Words, bstrides, class_of, istrides, rank6};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::{Op, PadMode, slice_axis};

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let x = node.inputs[0];
    let y = node.outputs[0];
    match &node.op {
        Op::Reshape { .. } => {
            if cx.g.value(x).constant().is_some() {
                // A constant has no activation buffer to share: copy it.
                let shape = cx.shape(y);
                let src = cx.buf(node, x)?;
                let st = istrides(&shape);
                return cx.copy(ni, node, Buf::Value(y), src, &shape, &st, &st, 0, 0);
            }
            cx.alias(x, y);
            Ok(())
        }
        Op::Concat { axis } => {
            let os = cx.shape(y);
            let dst = istrides(&os);
            let mut offset = 0;
            for &inp in &node.inputs {
                let region = cx.shape(inp);
                let src = cx.buf(node, inp)?;
                let off = offset as i64 * dst[*axis];
                offset += region[*axis];
                cx.copy(ni, node, Buf::Value(y), src, &region, &istrides(&region), &dst, 0, off)?;
            }
            Ok(())
        }
        Op::Split { axis, .. } => {
            // Output k is the slice [offset_k, offset_k + size_k) of the axis.
            let is = istrides(&cx.shape(x));
            let src = cx.buf(node, x)?;
            let mut offset = 0i64;
            for &o in &node.outputs {
                let region = cx.shape(o);
                let off = offset * is[*axis];
                offset += region[*axis] as i64;
                cx.copy(ni, node, Buf::Value(o), src, &region, &is, &istrides(&region), off, 0)?;
            }
            Ok(())
        }
        Op::Slice { axes, starts, ends, steps } => {
            let d = cx.shape(x);
            let is = istrides(&d);
            let mut src_st = is.clone();
            let mut off = 0i64;
            for i in 0..axes.len() {
                let (s, st, _) = slice_axis(d[axes[i]], starts[i], ends[i], steps[i]);
                off += s * is[axes[i]];
                src_st[axes[i]] = st * is[axes[i]];
            }
            let region = cx.shape(y);
            let src = cx.buf(node, x)?;
            cx.copy(ni, node, Buf::Value(y), src, &region, &src_st, &istrides(&region), off, 0)
        }
        Op::Transpose { perm } => {
            let is = istrides(&cx.shape(x));
            let src_st: Vec<i64> = perm.iter().map(|&p| is[p]).collect();
            let region = cx.shape(y);
            let src = cx.buf(node, x)?;
            cx.copy(ni, node, Buf::Value(y), src, &region, &src_st, &istrides(&region), 0, 0)
        }
        Op::Expand { shape } => {
            let src_st = bstrides(&cx.shape(x), shape);
            let src = cx.buf(node, x)?;
            cx.copy(ni, node, Buf::Value(y), src, shape, &src_st, &istrides(shape), 0, 0)
        }
        Op::Pad { pads, mode } => {
            let (mode_code, fill) = match mode {
                PadMode::Constant(v) => {
                    let t = cx.dtype(x);
                    let bits = if class_of(t) == Class::Float {
                        t.round_float(*v).to_bits()
                    } else {
                        t.wrap(*v as i64) as i32 as u32
                    };
                    (0, bits)
                }
                PadMode::Reflect => (1, 0),
                PadMode::Edge => (2, 0),
                PadMode::Wrap => (3, 0),
            };
            let (is, os) = (cx.shape(x), cx.shape(y));
            let (od, _) = rank6(node, &os, &istrides(&os))?;
            let (id, ist) = rank6(node, &is, &istrides(&is))?;
            let begins: Vec<i64> = pads.iter().map(|p| p.0 as i64).collect();
            let (_, pb) = rank6(node, &is, &begins)?;
            let items: usize = os.iter().product();
            let mut p = Words::new();
            p.u(0, items);
            for k in 0..6 {
                p.u(1 + k, od[k]).u(7 + k, id[k]).i(13 + k, pb[k]).i(19 + k, ist[k]);
            }
            p.u(25, fill as usize);
            let kernel = Kernel::new(Family::Layout, "pad", &[("MODE", mode_code), ("WG", cx.wg as u32)]);
            let xb = cx.buf(node, x)?;
            let groups = cx.groups(items);
            cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb)], groups, p.done());
            Ok(())
        }
        _ => unreachable!("layout family"),
    }
}
