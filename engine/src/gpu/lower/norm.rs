//! Per-channel normalisations: batch norm as a kernel (when it could not be folded into a
//! convolution) and local response normalisation.

use super::{Buf, Ctx, Words};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::Op;

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let d = cx.shape(x);
    let (ch, inner, total) = (d[1], d[2..].iter().product::<usize>(), d.iter().product::<usize>());
    let xb = cx.buf(node, x)?;
    let groups = cx.groups(total);
    match &node.op {
        Op::BatchNorm { epsilon } => {
            let c = |i: usize| cx.g.value(node.inputs[i]).constant().expect("checked").to_f32s();
            let (scale, bias, mean, var) = (c(1), c(2), c(3), c(4));
            let s: Vec<f32> =
                (0..scale.len()).map(|i| (scale[i] as f64 / (var[i] as f64 + *epsilon as f64).sqrt()) as f32).collect();
            let shift: Vec<f32> =
                (0..s.len()).map(|i| (bias[i] as f64 - mean[i] as f64 * s[i] as f64) as f32).collect();
            let sb = cx.constant(format!("{}.scale", node.name), s);
            let hb = cx.constant(format!("{}.shift", node.name), shift);
            let kernel = Kernel::new(Family::Norm, "batch_norm", &[("WG", cx.wg as u32)]);
            let p = Words::new().u(0, total).u(1, ch).u(2, inner).done();
            cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb), (3, sb), (4, hb)], groups, p);
        }
        Op::Lrn(a) => {
            let kernel = Kernel::new(Family::Norm, "lrn", &[("WG", cx.wg as u32)]);
            let mut p = Words::new();
            p.u(0, total).u(1, ch).u(2, inner).u(3, a.size).f(4, a.alpha).f(5, a.beta).f(6, a.bias);
            cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb)], groups, p.done());
        }
        _ => unreachable!("norm family"),
    }
    Ok(())
}
