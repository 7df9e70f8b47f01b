//! Row reductions: reductions over any axes, arg-max/arg-min, softmax variants, layer norm,
//! cumulative sums and products, TopK with a constant k.

use super::{Buf, Class, Ctx, Words, class_of, int_bits, istrides, node_err, rank6};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::{Op, ReduceKind};

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    match &node.op {
        Op::Reduce { kind, axes, .. } => {
            if axes.is_empty() {
                // Nothing reduced: the identity.
                let shape = cx.shape(y);
                let src = cx.buf(node, x)?;
                let st = super::istrides(&shape);
                return cx.copy(ni, node, Buf::Value(y), src, &shape, &st, &st, 0, 0);
            }
            reduce_axes(cx, ni, node, axes, *kind)
        }
        Op::ArgReduce { max, axis, last, .. } => {
            let d = cx.shape(x);
            let (l, inner) = (d[*axis], d[axis + 1..].iter().product::<usize>());
            let rows = d.iter().product::<usize>() / l.max(1);
            // Integers are compared as floats (exact up to 2^24).
            let xb = if class_of(cx.dtype(x)) == Class::Int { cx.as_float(ni, node, x)? } else { cx.buf(node, x)? };
            let kernel = Kernel::new(Family::Reduce, "arg_reduce", &[("KIND", u32::from(!*max)), ("WG", 64)]);
            let p = Words::new().u(0, rows).u(1, l).u(2, inner).u(3, *last as usize).done();
            cx.push(ni, kernel, vec![(5, Buf::Value(y)), (2, xb)], rows as u64, p);
            Ok(())
        }
        Op::Softmax { axis, kind } => {
            let d = cx.shape(x);
            let l = d[*axis];
            let inner: usize = d[axis + 1..].iter().product();
            let rows = d.iter().product::<usize>() / l.max(1);
            let kernel = Kernel::new(Family::Reduce, "softmax", &[("KIND", kind.code()), ("WG", 64)]);
            let xb = cx.buf(node, x)?;
            let p = Words::new().u(0, rows).u(1, l).u(2, inner).done();
            cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb)], rows as u64, p);
            Ok(())
        }
        Op::LayerNorm { axis, epsilon } => {
            let d = cx.shape(x);
            let norm = d[*axis..].to_vec();
            let l: usize = norm.iter().product();
            let rows = d.iter().product::<usize>() / l.max(1);
            let expand = |t: &crate::Tensor| -> Vec<f32> {
                // Broadcast scale/bias to the normalised shape.
                let vals = t.to_f32s();
                crate::reference::broadcast_map(t.shape(), &norm)
                    .expect("checked")
                    .into_iter()
                    .map(|i| vals[i])
                    .collect()
            };
            let scale = expand(cx.g.value(node.inputs[1]).constant().expect("checked"));
            let sb = cx.constant(format!("{}.scale", node.name), scale);
            let has_bias = node.inputs.len() == 3;
            let bb = if has_bias {
                let bias = expand(cx.g.value(node.inputs[2]).constant().expect("checked"));
                cx.constant(format!("{}.bias", node.name), bias)
            } else {
                cx.zeros(format!("{}.bias", node.name), 4)
            };
            let kernel = Kernel::new(Family::Reduce, "layer_norm", &[("WG", 64)]);
            let xb = cx.buf(node, x)?;
            let p = Words::new().u(0, rows).u(1, l).f(2, *epsilon).u(3, has_bias as usize).done();
            cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb), (3, sb), (4, bb)], rows as u64, p);
            Ok(())
        }
        Op::Cumulative { kind, axis, exclusive, reverse } => {
            let d = cx.shape(x);
            let (l, inner) = (d[*axis], d[axis + 1..].iter().product::<usize>());
            let rows = d.iter().product::<usize>() / l.max(1);
            let t = cx.dtype(x);
            let (bits, signed) = int_bits(t);
            let is_int = class_of(t) == Class::Int;
            let kernel = Kernel::new(Family::Reduce, "cumulative", &[("KIND", kind.code()), ("WG", 64)]);
            let p = Words::new()
                .u(0, rows)
                .u(1, l)
                .u(2, inner)
                .u(3, *exclusive as usize)
                .u(4, *reverse as usize)
                .u(5, is_int as usize)
                .u(6, bits)
                .u(7, signed)
                .done();
            let xb = cx.buf(node, x)?;
            cx.push(ni, kernel, vec![(7, Buf::Value(y)), (6, xb)], rows as u64, p);
            Ok(())
        }
        Op::TopKStatic { axis, k, largest } => {
            let d = cx.shape(x);
            let (l, inner) = (d[*axis], d[axis + 1..].iter().product::<usize>());
            let rows = d.iter().product::<usize>() / l.max(1);
            // Each workgroup ranks 64 elements of a row against the whole row.
            let chunks = l.div_ceil(64);
            let is_int = class_of(cx.dtype(x)) == Class::Int;
            let kernel = Kernel::new(Family::Reduce, "top_k", &[("WG", 64)]);
            let p = Words::new()
                .u(0, rows)
                .u(1, l)
                .u(2, inner)
                .u(3, *k)
                .u(4, chunks)
                .u(5, is_int as usize)
                .u(6, *largest as usize)
                .done();
            let xb = cx.buf(node, x)?;
            let bindings = vec![(7, Buf::Value(y)), (5, Buf::Value(node.outputs[1])), (6, xb)];
            cx.push(ni, kernel, bindings, (rows * chunks) as u64, p);
            Ok(())
        }
        _ => unreachable!("reduce family"),
    }
}

/// A reduction of node's input 0 over `axes` into its output 0.
pub(super) fn reduce_axes(cx: &mut Ctx, ni: usize, node: &Node, axes: &[usize], kind: ReduceKind) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let s = cx.shape(x);
    if s.len() > 6 {
        return Err(node_err(node, format!("rank {} is above the supported 6", s.len())));
    }
    let st = istrides(&s);
    let (mut kd, mut ks, mut rd, mut rs) = (vec![], vec![], vec![], vec![]);
    for i in 0..s.len() {
        if axes.contains(&i) {
            rd.push(s[i]);
            rs.push(st[i]);
        } else {
            kd.push(s[i]);
            ks.push(st[i]);
        }
    }
    let rows: usize = kd.iter().product();
    let l: usize = rd.iter().product();
    let (kd6, ks6) = rank6(node, &kd, &ks)?;
    let (rd6, rs6) = rank6(node, &rd, &rs)?;
    let mut p = Words::new();
    p.u(0, rows).u(1, l);
    for k in 0..6 {
        p.u(2 + k, kd6[k]).i(8 + k, ks6[k]).u(14 + k, rd6[k]).i(20 + k, rs6[k]);
    }
    let kernel = Kernel::new(Family::Reduce, "reduce", &[("KIND", kind.code()), ("WG", 64)]);
    if class_of(cx.dtype(x)) == Class::Int {
        // Integers and bools are reduced as floats (exact up to 2^24), then converted back.
        let xb = cx.as_float(ni, node, x)?;
        let out = cx.scratch(format!("{}.as_float", node.name), (rows * 4) as u64);
        cx.push(ni, kernel, vec![(1, out), (2, xb)], rows as u64, p.done());
        cx.float_to_int(ni, out, y);
        return Ok(());
    }
    let xb = cx.buf(node, x)?;
    cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb)], rows as u64, p.done());
    Ok(())
}
