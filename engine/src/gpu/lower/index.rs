//! Indexing: gathers (along an axis, GatherElements, GatherND), scatters (ScatterElements,
//! ScatterND: a copy of the data, then the updates; TensorScatter in gather form), OneHot,
//! Trilu and ReverseSequence. Every kernel moves 32-bit words; scatter reductions compute
//! on f32 or i32 words.

use super::{Buf, Class, Ctx, Words, class_of, int_bits, istrides, node_err, rank6, round_mode};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::{Node, ValueId};
use crate::ops::{Op, ScatterReduction};

/// Most index tuple components GatherND/ScatterND kernels take (their parameter words).
const MAX_TUPLE: usize = 16;

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    // Inference checked the index types (integers; OneHot's may be floats).
    match &node.op {
        Op::Gather { axis } => gather(cx, ni, node, *axis),
        Op::GatherElements { axis } => gather_elements(cx, ni, node, *axis),
        Op::GatherNd { batch_dims } => gather_nd(cx, ni, node, *batch_dims),
        Op::ScatterElements { axis, reduction } => scatter_elements(cx, ni, node, *axis, *reduction),
        Op::ScatterNd { reduction } => scatter_nd(cx, ni, node, *reduction),
        Op::TensorScatter { axis, circular } => tensor_scatter(cx, ni, node, *axis, *circular),
        Op::OneHot { axis, depth } => one_hot(cx, ni, node, *axis, *depth),
        Op::Trilu { upper, k } => trilu(cx, ni, node, *upper, *k),
        Op::ReverseSequence { batch_axis, time_axis } => reverse_sequence(cx, ni, node, *batch_axis, *time_axis),
        _ => unreachable!("index family"),
    }
}

fn kernel(cx: &Ctx, entry: &'static str, kind: u32) -> Kernel {
    Kernel::new(Family::Index, entry, &[("KIND", kind), ("WG", cx.wg as u32)])
}

fn gather(cx: &mut Ctx, ni: usize, node: &Node, axis: usize) -> Result<()> {
    let (data, idx, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let d = cx.shape(data);
    let n_idx = cx.g.value(idx).numel();
    let inner: usize = d[axis + 1..].iter().product();
    let items = cx.g.value(y).numel();
    let (db, ib) = (cx.buf(node, data)?, cx.buf(node, idx)?);
    let p = Words::new().u(0, items).u(1, d[axis]).u(2, inner).u(3, n_idx).done();
    let groups = cx.groups(items);
    cx.push(ni, kernel(cx, "gather", 0), vec![(1, Buf::Value(y)), (2, db), (3, ib)], groups, p);
    Ok(())
}

/// Words 1..6: `dims` (rank 6), 7..12: `strides` of the data, 13: the axis in rank-6 terms,
/// 14: the data's axis length.
fn axis_words(cx: &Ctx, node: &Node, p: &mut Words, dims: &[usize], data: ValueId, axis: usize) -> Result<()> {
    let ds = cx.shape(data);
    let (d6, _) = rank6(node, dims, &istrides(dims))?;
    let (_, s6) = rank6(node, &ds, &istrides(&ds))?;
    for k in 0..6 {
        p.u(1 + k, d6[k]).i(7 + k, s6[k]);
    }
    p.u(13, 6 - ds.len() + axis).u(14, ds[axis]);
    Ok(())
}

fn gather_elements(cx: &mut Ctx, ni: usize, node: &Node, axis: usize) -> Result<()> {
    let (data, idx, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let items = cx.g.value(y).numel();
    let mut p = Words::new();
    p.u(0, items);
    axis_words(cx, node, &mut p, &cx.shape(idx), data, axis)?;
    let (db, ib) = (cx.buf(node, data)?, cx.buf(node, idx)?);
    let groups = cx.groups(items);
    cx.push(ni, kernel(cx, "gather_elements", 0), vec![(1, Buf::Value(y)), (2, db), (3, ib)], groups, p.done());
    Ok(())
}

/// Words 2: tuple length, 8..: the data dims the tuples index (from `first`), 24..: their
/// strides.
fn tuple_words(node: &Node, p: &mut Words, data: &[usize], first: usize, k: usize) -> Result<()> {
    if k > MAX_TUPLE {
        return Err(node_err(node, format!("index tuples of {k} components; the kernel takes up to {MAX_TUPLE}")));
    }
    let st = istrides(data);
    p.u(2, k);
    for u in 0..k {
        p.u(8 + u, data[first + u]).i(24 + u, st[first + u]);
    }
    Ok(())
}

fn gather_nd(cx: &mut Ctx, ni: usize, node: &Node, batch: usize) -> Result<()> {
    let (data, idx, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let (d, i) = (cx.shape(data), cx.shape(idx));
    let k = i[i.len() - 1];
    let items = cx.g.value(y).numel();
    let tuples_per_batch: usize = i[batch..i.len() - 1].iter().product();
    let mut p = Words::new();
    p.u(0, items).u(1, d[batch + k..].iter().product()).u(3, tuples_per_batch).u(4, d[batch..].iter().product());
    tuple_words(node, &mut p, &d, batch, k)?;
    let (db, ib) = (cx.buf(node, data)?, cx.buf(node, idx)?);
    let groups = cx.groups(items);
    cx.push(ni, kernel(cx, "gather_nd", 0), vec![(1, Buf::Value(y)), (2, db), (3, ib)], groups, p.done());
    Ok(())
}

/// The output starts as a copy of the data.
fn copy_data(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let (data, y) = (node.inputs[0], node.outputs[0]);
    let shape = cx.shape(data);
    let st = istrides(&shape);
    let src = cx.buf(node, data)?;
    cx.copy(ni, node, Buf::Value(y), src, &shape, &st, &st, 0, 0)
}

/// Words 60..62: integer words, their bits and signedness (for reductions).
fn int_words(cx: &Ctx, p: &mut Words, y: ValueId) {
    let t = cx.dtype(y);
    let (bits, signed) = int_bits(t);
    p.u(60, (class_of(t) == Class::Int) as usize).u(61, bits).u(62, signed);
}

/// After a reduction that computes float16/bfloat16 values in f32: their rounding (scatters
/// otherwise move values, which need none).
fn round_reduced(cx: &mut Ctx, ni: usize, y: ValueId, reduction: ScatterReduction) {
    let Some(mode) = round_mode(cx.dtype(y)).filter(|_| reduction.computes()) else { return };
    let n = cx.g.value(y).numel();
    let k = Kernel::new(Family::Convert, "round16", &[("WG", cx.wg as u32)]);
    let groups = cx.groups(n);
    cx.push(ni, k, vec![(9, Buf::Value(y))], groups, Words::new().u(0, n).u(1, mode).done());
}

fn scatter_elements(cx: &mut Ctx, ni: usize, node: &Node, axis: usize, r: ScatterReduction) -> Result<()> {
    let (data, idx, upd, y) = (node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]);
    copy_data(cx, ni, node)?;
    let u = cx.shape(upd);
    let n = cx.g.value(upd).numel();
    if n == 0 {
        return Ok(());
    }
    let lines = n / u[axis];
    let mut p = Words::new();
    p.u(0, lines);
    axis_words(cx, node, &mut p, &u, data, axis)?;
    int_words(cx, &mut p, y);
    let (ib, ub) = (cx.buf(node, idx)?, cx.buf(node, upd)?);
    let groups = cx.groups(lines);
    let k = kernel(cx, "scatter_elements", r.code());
    cx.push(ni, k, vec![(1, Buf::Value(y)), (3, ib), (4, ub)], groups, p.done());
    round_reduced(cx, ni, y, r);
    Ok(())
}

fn scatter_nd(cx: &mut Ctx, ni: usize, node: &Node, r: ScatterReduction) -> Result<()> {
    let (data, idx, upd, y) = (node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]);
    copy_data(cx, ni, node)?;
    let (d, i) = (cx.shape(data), cx.shape(idx));
    let k = i[i.len() - 1];
    let tuples = cx.g.value(idx).numel() / k;
    let slice: usize = d[k..].iter().product();
    if tuples == 0 || slice == 0 {
        return Ok(());
    }
    // Replacing (duplicate targets are undefined in ONNX) or constant tuples that are all
    // distinct: every updated element at once; else one invocation per slice element, the
    // tuples in order.
    let parallel =
        r == ScatterReduction::None || cx.g.value(idx).constant().is_some_and(|t| distinct_tuples(t, &d[..k]));
    let items = if parallel { tuples * slice } else { slice };
    let mut p = Words::new();
    p.u(0, items).u(1, slice).u(3, tuples).u(5, parallel as usize);
    tuple_words(node, &mut p, &d, 0, k)?;
    int_words(cx, &mut p, y);
    let (ib, ub) = (cx.buf(node, idx)?, cx.buf(node, upd)?);
    let groups = cx.groups(items);
    let kern = kernel(cx, "scatter_nd", r.code());
    cx.push(ni, kern, vec![(1, Buf::Value(y)), (3, ib), (4, ub)], groups, p.done());
    round_reduced(cx, ni, y, r);
    Ok(())
}

/// True when the index tuples (rows of `t`, indexing `dims`) name distinct targets.
fn distinct_tuples(t: &crate::Tensor, dims: &[usize]) -> bool {
    let k = dims.len();
    let norm: Vec<i64> =
        t.to_i64s().iter().enumerate().map(|(n, &i)| if i < 0 { i + dims[n % k] as i64 } else { i }).collect();
    let mut seen = std::collections::HashSet::new();
    norm.chunks(k).all(|tuple| seen.insert(tuple.to_vec()))
}

fn tensor_scatter(cx: &mut Ctx, ni: usize, node: &Node, axis: usize, circular: bool) -> Result<()> {
    let (past, upd, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let (s, u) = (cx.shape(past), cx.shape(upd));
    let items = cx.g.value(y).numel();
    let inner: usize = s[axis + 1..].iter().product();
    let per_batch: usize = s[1..].iter().product();
    let has_writes = node.inputs.len() == 3;
    let p = Words::new()
        .u(0, items)
        .u(1, s[axis])
        .u(2, u[axis])
        .u(3, inner)
        .u(4, per_batch)
        .u(5, circular as usize)
        .u(6, has_writes as usize)
        .done();
    let (pb, ub) = (cx.buf(node, past)?, cx.buf(node, upd)?);
    let wb = if has_writes { cx.buf(node, node.inputs[2])? } else { cx.zeros(format!("{}.no_writes", node.name), 4) };
    let groups = cx.groups(items);
    let k = kernel(cx, "tensor_scatter", 0);
    cx.push(ni, k, vec![(1, Buf::Value(y)), (2, pb), (4, ub), (5, wb)], groups, p);
    Ok(())
}

fn one_hot(cx: &mut Ctx, ni: usize, node: &Node, axis: usize, depth: usize) -> Result<()> {
    let (idx, values, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let items = cx.g.value(y).numel();
    let inner: usize = cx.shape(idx)[axis..].iter().product();
    let float_indices = class_of(cx.dtype(idx)) == Class::Float;
    let p = Words::new().u(0, items).u(1, depth).u(2, inner).u(3, float_indices as usize).done();
    let (ib, vb) = (cx.buf(node, idx)?, cx.buf(node, values)?);
    let groups = cx.groups(items);
    cx.push(ni, kernel(cx, "one_hot", 0), vec![(1, Buf::Value(y)), (2, vb), (3, ib)], groups, p);
    Ok(())
}

fn trilu(cx: &mut Ctx, ni: usize, node: &Node, upper: bool, k: i64) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let s = cx.shape(x);
    let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
    let items = cx.g.value(y).numel();
    // Diagonals beyond the matrix act as the nearest outside one.
    let k = k.clamp(-(rows as i64) - 1, cols as i64 + 1);
    let p = Words::new().u(0, items).u(1, rows).u(2, cols).i(3, k).u(4, upper as usize).done();
    let xb = cx.buf(node, x)?;
    let groups = cx.groups(items);
    cx.push(ni, kernel(cx, "trilu", 0), vec![(1, Buf::Value(y)), (2, xb)], groups, p);
    Ok(())
}

fn reverse_sequence(cx: &mut Ctx, ni: usize, node: &Node, batch_axis: usize, time_axis: usize) -> Result<()> {
    let (x, lens, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let s = cx.shape(x);
    let st = istrides(&s);
    let items = cx.g.value(y).numel();
    let p =
        Words::new().u(0, items).u(1, s[time_axis]).i(2, st[time_axis]).u(3, s[batch_axis]).i(4, st[batch_axis]).done();
    let (xb, lb) = (cx.buf(node, x)?, cx.buf(node, lens)?);
    let groups = cx.groups(items);
    cx.push(ni, kernel(cx, "reverse_sequence", 0), vec![(1, Buf::Value(y)), (2, xb), (5, lb)], groups, p);
    Ok(())
}
