//! Indexing: gather along an axis.

use super::{Buf, Class, Ctx, Words, class_of, node_err};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::Op;

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let Op::Gather { axis } = node.op else { unreachable!("index family") };
    let (data, idx, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    if class_of(cx.dtype(idx)) != Class::Int {
        return Err(node_err(node, "indices must be integers".into()));
    }
    let d = cx.shape(data);
    let n_idx = cx.g.value(idx).numel();
    let inner: usize = d[axis + 1..].iter().product();
    let items = cx.g.value(y).numel();
    let (db, ib) = (cx.buf(node, data)?, cx.buf(node, idx)?);
    let kernel = Kernel::new(Family::Index, "gather", &[("WG", cx.wg as u32)]);
    let p = Words::new().u(0, items).u(1, d[axis]).u(2, inner).u(3, n_idx).done();
    let groups = cx.groups(items);
    cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, db), (3, ib)], groups, p);
    Ok(())
}
