//! Pooling: windows of [N, C, H, W] on pool2d; global pooling as a reduction.

use super::{Buf, Class, Ctx, Words, class_of, node_err, reduce};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::{Op, PoolKind, ReduceKind};

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    match &node.op {
        Op::Pool(a) => {
            let d = cx.shape(x);
            let o = cx.shape(y);
            let (c, h, w) = (d[1], d[2], d[3]);
            let (oh, ow) = (o[2], o[3]);
            let kind = u32::from(a.kind == PoolKind::Average);
            let kernel = Kernel::new(Family::Pool, "pool2d", &[("KIND", kind), ("WG", cx.wg as u32)]);
            let int = class_of(cx.dtype(x)) == Class::Int;
            // Integer tensors pool as floats (exact up to 2^24), then convert back.
            let xb = if int { cx.as_float(ni, node, x)? } else { cx.buf(node, x)? };
            let items = d[0] * c * oh * ow;
            let out =
                if int { cx.scratch(format!("{}.as_float", node.name), (items * 4) as u64) } else { Buf::Value(y) };
            let mut p = Words::new();
            p.u(0, items).u(1, c).u(2, h).u(3, w).u(4, oh).u(5, ow).u(6, a.kernel[0]).u(7, a.kernel[1]);
            p.u(8, a.stride[0]).u(9, a.stride[1]).u(10, a.pads[0]).u(11, a.pads[1]).u(12, a.pads[2]);
            p.u(13, a.pads[3]).u(14, a.dilation[0]).u(15, a.dilation[1]).u(16, a.count_include_pad as usize);
            let groups = cx.groups(items);
            cx.push(ni, kernel, vec![(1, out), (2, xb)], groups, p.done());
            if int {
                cx.float_to_int(ni, out, y);
            }
            Ok(())
        }
        Op::GlobalPool(kind) => {
            let rank = cx.g.value(x).rank();
            let axes: Vec<usize> = (2..rank).collect();
            if cx.g.value(x).numel() == 0 {
                return Err(node_err(node, "global pooling of an empty tensor".into()));
            }
            let k = if *kind == PoolKind::Max { ReduceKind::Max } else { ReduceKind::Mean };
            reduce::reduce_axes(cx, ni, node, &axes, k)
        }
        _ => unreachable!("pool family"),
    }
}
