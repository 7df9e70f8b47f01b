//! Pooling: windows of 1 to 3 spatial axes on `pool` (max, average, Lp) or
//! `max_pool_indices`; global pooling as a reduction; max unpooling as a clear and a scatter.

use super::{Buf, Class, Ctx, Words, class_of, node_err, reduce};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::{IndexOrder, MaxUnpoolAttrs, Op, PoolKind, ReduceKind, Window, axes3, pads3};

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    match &node.op {
        Op::Pool(a) => {
            let kind = if a.kind == PoolKind::Average { 1 } else { 0 };
            let order = a.indices.map(|o| o == IndexOrder::ColumnMajor);
            lower_window(cx, ni, node, &a.window(), kind, 0.0, a.count_include_pad, order)
        }
        Op::LpPool(a) => lower_window(cx, ni, node, &a.window(), 2, a.p, false, None),
        Op::GlobalPool(kind) => {
            let rank = cx.g.value(node.inputs[0]).rank();
            let axes: Vec<usize> = (2..rank).collect();
            if cx.g.value(node.inputs[0]).numel() == 0 {
                return Err(node_err(node, "global pooling of an empty tensor".into()));
            }
            let k = if *kind == PoolKind::Max { ReduceKind::Max } else { ReduceKind::Mean };
            reduce::reduce_axes(cx, ni, node, &axes, k)
        }
        Op::MaxUnpool(a) => lower_unpool(cx, ni, node, a),
        _ => unreachable!("pool family"),
    }
}

/// A window sweep: `kind` 0 max, 1 average, 2 Lp (exponent `p`); `indices` Some(column-major)
/// writes the maxima's indices into the second output.
#[allow(clippy::too_many_arguments)]
fn lower_window(
    cx: &mut Ctx,
    ni: usize,
    node: &Node,
    w: &Window,
    kind: u32,
    p: f32,
    count_include_pad: bool,
    indices: Option<bool>,
) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let (d, o) = (cx.shape(x), cx.shape(y));
    let int = class_of(cx.dtype(x)) == Class::Int;
    // Integer tensors pool as floats (exact up to 2^24), then convert back.
    let xb = if int { cx.as_float(ni, node, x)? } else { cx.buf(node, x)? };
    let items: usize = o.iter().product();
    let out = if int { cx.scratch(format!("{}.as_float", node.name), (items * 4) as u64) } else { Buf::Value(y) };
    let (pb, pe) = pads3(w.pads);
    let mut words = Words::new();
    words.u(0, items).f(1, p);
    let axes =
        [axes3(&d[2..], 1), axes3(&o[2..], 1), axes3(w.kernel, 1), axes3(w.stride, 1), pb, pe, axes3(w.dilation, 1)];
    for (k, v) in axes.iter().enumerate() {
        for (j, &a) in v.iter().enumerate() {
            words.u(2 + 3 * k + j, a);
        }
    }
    words.u(23, usize::from(count_include_pad)).u(24, usize::from(indices == Some(true)));
    let entry = if indices.is_some() { "max_pool_indices" } else { "pool" };
    let kernel = Kernel::new(Family::Pool, entry, &[("KIND", kind), ("WG", cx.wg as u32)]);
    let mut bindings = vec![(1, out), (2, xb)];
    if indices.is_some() {
        bindings.push((3, Buf::Value(node.outputs[1])));
    }
    let groups = cx.groups(items);
    cx.push(ni, kernel, bindings, groups, words.done());
    if int {
        cx.float_to_int(ni, out, y);
    }
    Ok(())
}

/// Max unpooling: zeros over the output, then every input written at its index.
fn lower_unpool(cx: &mut Ctx, ni: usize, node: &Node, a: &MaxUnpoolAttrs) -> Result<()> {
    let (x, at, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let (xs, ys) = (cx.shape(x), cx.shape(y));
    let dims = crate::ops::unpool_dims(&xs[2..], a).map_err(|e| node_err(node, e))?;
    let (xb, ab) = (cx.buf(node, x)?, cx.buf(node, at)?);
    let total: usize = ys.iter().product();
    let clear = Kernel::new(Family::Pool, "unpool_clear", &[("WG", cx.wg as u32)]);
    let groups = cx.groups(total);
    cx.push(ni, clear, vec![(1, Buf::Value(y))], groups, Words::new().u(0, total).done());
    let items: usize = xs.iter().product();
    let default = axes3(&dims, 1);
    let full = axes3(&ys[2..], 1);
    let mut p = Words::new();
    p.u(0, items).u(1, xs[0] * xs[1] * default.iter().product::<usize>()).u(2, xs[0]).u(3, xs[1]);
    for j in 0..3 {
        p.u(4 + j, default[j]).u(7 + j, full[j]);
    }
    let scatter = Kernel::new(Family::Pool, "unpool_scatter", &[("WG", cx.wg as u32)]);
    let groups = cx.groups(items);
    cx.push(ni, scatter, vec![(1, Buf::Value(y)), (2, xb), (4, ab)], groups, p.done());
    Ok(())
}
