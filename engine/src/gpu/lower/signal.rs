//! Lowering: signal processing and small numerical kernels. DFT and STFT run the `dft`
//! kernel (one output bin per invocation), Det the `det` kernel (one matrix per invocation,
//! eliminating in a scratch copy), LinearAttention the `linear_attention` kernel (one state
//! column per invocation, walking the sequence). Windows and mel filter banks never reach a device graph:
//! their sizes are their inputs' values (folded when constant, else a host step).

use super::{Buf, Ctx, Words, node_err};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::Op;

/// How the `dft` kernel walks its input and output.
struct Walk {
    outer: usize,
    len: usize,
    inner: usize,
    in_parts: usize,
    frames: usize,
    step: usize,
    count: usize,
    length: usize,
    bins: usize,
    out_parts: usize,
    inverse: bool,
    hermitian: bool,
}

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let s = cx.shape(x);
    match &node.op {
        Op::Dft(a) => {
            let xb = cx.buf(node, x)?;
            let walk = Walk {
                outer: s[..a.axis].iter().product(),
                len: s[a.axis],
                inner: s[a.axis + 1..s.len() - 1].iter().product(),
                in_parts: s[s.len() - 1],
                frames: 1,
                step: 0,
                count: a.length.min(s[a.axis]),
                length: a.length,
                bins: a.bins(),
                out_parts: a.out_parts(),
                inverse: a.inverse,
                hermitian: a.inverse && a.onesided,
            };
            dft(cx, ni, node, &walk, xb, None);
        }
        Op::Stft(a) => {
            let xb = cx.buf(node, x)?;
            let window = match node.inputs.get(1) {
                Some(&w) => Some(cx.buf(node, w)?),
                None => None,
            };
            let walk = Walk {
                outer: s[0],
                len: s[1],
                inner: 1,
                in_parts: s[2],
                frames: a.frames(s[1]),
                step: a.step,
                count: a.frame_length,
                length: a.frame_length,
                bins: a.bins(),
                out_parts: 2,
                inverse: false,
                hermitian: false,
            };
            dft(cx, ni, node, &walk, xb, window);
        }
        Op::Det => {
            let xb = cx.buf(node, x)?;
            let m = s[s.len() - 1];
            let count: usize = s[..s.len() - 2].iter().product();
            let work = cx.scratch(format!("{}.lu", node.name), (count * m * m * 4) as u64);
            let kernel = Kernel::new(Family::Signal, "det", &[("WG", cx.wg as u32)]);
            let groups = cx.groups(count);
            let p = Words::new().u(0, count).u(1, m).done();
            cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb), (4, work)], groups, p);
        }
        Op::LinearAttention(a) => {
            let (b, t) = (s[0], s[1]);
            let (dk, dv) = (s[2] / a.q_heads, cx.shape(node.inputs[2])[2] / a.kv_heads);
            let bufs: Vec<Buf> = node.inputs.iter().map(|&v| cx.buf(node, v)).collect::<Result<_>>()?;
            let mut next = 4;
            let decay = a.gated.then(|| {
                next += 1;
                (bufs[next - 1], cx.shape(node.inputs[next - 1])[2])
            });
            let beta = a.delta.then(|| (bufs[next], cx.shape(node.inputs[next])[2]));
            let items = b * a.kv_heads * dv;
            let mut p = Words::new();
            p.u(0, items).u(1, t).u(2, a.q_heads).u(3, a.kv_heads).u(4, dk).u(5, dv);
            // Decay per head (one value per token and head, checked first as ONNX does) or
            // per key value.
            let decay_width = decay.map_or(0, |d| if d.1 == a.kv_heads { 1 } else { dk });
            p.u(6, decay_width).u(7, beta.map_or(0, |d| d.1)).f(8, a.scale);
            let mut bindings = vec![(1, Buf::Value(y)), (4, Buf::Value(node.outputs[1]))];
            bindings.extend([(6, bufs[0]), (7, bufs[1]), (8, bufs[2]), (9, bufs[3])]);
            // Absent gates bind the query in their place (never read).
            bindings.push((10, decay.map_or(bufs[0], |d| d.0)));
            bindings.push((11, beta.map_or(bufs[0], |d| d.0)));
            let kernel = Kernel::new(Family::Signal, "linear_attention", &[("WG", cx.wg as u32)]);
            let groups = cx.groups(items);
            cx.push(ni, kernel, bindings, groups, p.done());
        }
        other => {
            return Err(node_err(
                node,
                format!(
                    "{} computes its output's shape from its input values; it never runs on the device",
                    other.name()
                ),
            ));
        }
    }
    Ok(())
}

fn dft(cx: &mut Ctx, ni: usize, node: &Node, w: &Walk, xb: Buf, window: Option<Buf>) {
    let items = w.outer * w.frames * w.bins * w.inner;
    let mode = w.hermitian as u32;
    let kernel = Kernel::new(Family::Signal, "dft", &[("MODE", mode), ("WG", cx.wg as u32)]);
    let mut p = Words::new();
    p.u(0, items).u(1, w.len).u(2, w.inner).u(3, w.in_parts).u(4, w.frames).u(5, w.step).u(6, w.count);
    p.u(7, w.length).u(8, w.bins).u(9, w.out_parts);
    p.f(10, if w.inverse { 1.0 } else { -1.0 }).f(11, if w.inverse { 1.0 / w.length as f32 } else { 1.0 });
    p.u(12, window.is_some() as usize);
    let groups = cx.groups(items);
    let table = twiddles(w.length);
    let tb = cx.constant(format!("{}.twiddles", node.name), table);
    // Without a window, the input stands in for it (never read).
    let bindings = vec![(1, Buf::Value(node.outputs[0])), (2, xb), (3, window.unwrap_or(xb)), (5, tb)];
    cx.push(ni, kernel, bindings, groups, p.done());
}

/// cos and sin of 2 pi r / n for r in 0..n, computed in f64 (so that the values the
/// symmetries make exact, such as sin(pi) = 0, are within an f32 rounding of it).
fn twiddles(n: usize) -> Vec<f32> {
    (0..n)
        .flat_map(|r| {
            let a = 2.0 * std::f64::consts::PI * r as f64 / n as f64;
            [a.cos() as f32, a.sin() as f32]
        })
        .collect()
}
