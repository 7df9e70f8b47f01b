//! Convolutions: implicit-GEMM conv2d with a 4-channel x 4-pixel register tile (a 1x1 variant
//! with vec4 input loads, a depthwise kernel with 4 pixels per invocation) and transposed
//! convolution as a gather-form implicit GEMM; bias and activation in the write-back.

use super::{Buf, Ctx, Words, act_of, div_up};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::{Activation, Op};

/// Geometry of a (transposed) convolution and the parameter words of conv.wgsl.
#[derive(Clone, Copy)]
struct ConvGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    m: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    g: usize,
    stride: [usize; 2],
    pads: [usize; 2],
    dilation: [usize; 2],
    act: u32,
    act_a: f32,
    act_b: f32,
}

impl ConvGeom {
    /// From the input and output shapes, the weight shape and the attributes.
    #[allow(clippy::too_many_arguments)]
    fn new(
        x: &[usize],
        y: &[usize],
        w: &[usize],
        g: usize,
        stride: [usize; 2],
        pads: [usize; 4],
        dilation: [usize; 2],
        activation: Option<Activation>,
    ) -> Self {
        let (act, act_a, act_b) = act_of(activation);
        ConvGeom {
            n: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            m: y[1],
            oh: y[2],
            ow: y[3],
            kh: w[2],
            kw: w[3],
            g,
            stride,
            pads: [pads[0], pads[1]],
            dilation,
            act,
            act_a,
            act_b,
        }
    }
    fn cg(&self) -> usize {
        self.c / self.g
    }
    fn mg(&self) -> usize {
        self.m / self.g
    }
    fn mq(&self) -> usize {
        div_up(self.mg(), 4)
    }
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn words(&self, items: usize) -> Vec<u32> {
        let mut p = Words::new();
        p.u(0, self.n).u(1, self.c).u(2, self.h).u(3, self.w).u(4, self.m).u(5, self.oh).u(6, self.ow);
        p.u(7, self.kh).u(8, self.kw).u(9, self.stride[0]).u(10, self.stride[1]).u(11, self.pads[0]);
        p.u(12, self.pads[1]).u(13, self.dilation[0]).u(14, self.dilation[1]).u(15, self.g).u(16, self.cg());
        p.u(17, self.mg()).u(18, self.mq()).u(19, self.k()).u(20, items).f(21, self.act_a).f(22, self.act_b);
        p.u(23, div_up(self.oh * self.ow, 4)).u(24, self.m / self.c).u(25, div_up(self.ow, 4));
        p.done()
    }
}

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    // Weights computed on the device (a QDQ model's DequantizeLinear of int8 weights) are
    // packed by strided copies at run time; constant ones now.
    let w = node.inputs[1];
    let wdata = cx.g.value(w).constant().map(|t| t.to_f32s());
    let (groups, stride, pads, dilation, activation) = match &node.op {
        Op::Conv(a) => (a.groups, a.stride, a.pads, a.dilation, a.activation),
        Op::ConvTranspose(a) => (a.groups, a.stride, a.pads, a.dilation, a.activation),
        _ => unreachable!("conv family"),
    };
    let geom = ConvGeom::new(&cx.shape(x), &cx.shape(y), &cx.shape(w), groups, stride, pads, dilation, activation);
    match &node.op {
        Op::Conv(_) => {
            let (c, m, k) = (geom.c, geom.m, geom.k());
            let depthwise = geom.g > 1 && geom.cg() == 1 && m % c == 0;
            let pointwise = geom.kh == 1
                && geom.kw == 1
                && stride == [1, 1]
                && pads == [0; 4]
                && (geom.h * geom.w).is_multiple_of(4)
                && !depthwise;
            if cx.naive || depthwise {
                // Unpacked weights [M][CG][KH][KW]: the naive baseline and the depthwise kernel.
                let (family, entry) =
                    if cx.naive { (Family::Naive, "naive_conv2d") } else { (Family::Conv, "depthwise") };
                let raw = match wdata {
                    Some(d) => cx.constant(format!("{}.weight", node.name), d),
                    None => cx.buf(node, w)?,
                };
                let bias = conv_bias(cx, node, m)?;
                let xb = cx.buf(node, x)?;
                let kernel = Kernel::new(family, entry, &[("ACT", geom.act), ("WG", cx.wg as u32)]);
                let per_row = if cx.naive { geom.ow } else { div_up(geom.ow, 4) };
                let items = geom.n * m * geom.oh * per_row;
                let groups = cx.groups(items);
                cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb), (5, raw), (4, bias)], groups, geom.words(items));
                return Ok(());
            }
            let (g, mg) = (geom.g, geom.mg());
            let (entry, xbind) = if pointwise { ("conv1x1", 6) } else { ("conv2d", 2) };
            let wb = match wdata {
                Some(d) => packed_weight(cx, node, geom, |gi, ch, kk| d[(gi * mg + ch) * k + kk]),
                // w: [G][MG][K] to the packed [G][K][MQ*4].
                None => packed_on_device(cx, ni, node, geom, &[g, mg, k], &[mg * k, k, 1], &[k, 0, 1])?,
            };
            push_tiled_conv(cx, ni, node, geom, entry, xbind, wb)
        }
        Op::ConvTranspose(_) => {
            // w: [C][MG][KH][KW]; reduction index k = (ci*KH + ky)*KW + kx within the group.
            let (g, cg, mg, khw) = (geom.g, geom.cg(), geom.mg(), geom.kh * geom.kw);
            let wb = match wdata {
                Some(d) => {
                    packed_weight(cx, node, geom, |gi, ch, kk| d[((gi * cg + kk / khw) * mg + ch) * khw + kk % khw])
                }
                None => {
                    let src = [cg * mg * khw, mg * khw, khw, 1];
                    packed_on_device(cx, ni, node, geom, &[g, cg, mg, khw], &src, &[khw * cg, khw, 0, 1])?
                }
            };
            push_tiled_conv(cx, ni, node, geom, "conv_transpose", 2, wb)
        }
        _ => unreachable!("conv family"),
    }
}

/// The bias buffer of a (transposed) convolution: its constant, its device value, or zeros.
fn conv_bias(cx: &mut Ctx, node: &Node, m: usize) -> Result<Buf> {
    match node.inputs.get(2) {
        Some(&b) => match cx.g.value(b).constant() {
            Some(t) => {
                let data = t.to_f32s();
                Ok(cx.constant(format!("{}.bias", node.name), data))
            }
            None => cx.buf(node, b),
        },
        None => Ok(cx.zeros(format!("{}.bias", node.name), m)),
    }
}

/// Constant weights packed for the tiled kernels' vec4 loads: vec4 (g*K + k)*MQ + mq holds
/// channels g*MG + mq*4 + 0..3 at reduction index k; `weight(g, ch, k)` reads the original
/// layout.
fn packed_weight(cx: &mut Ctx, node: &Node, geom: ConvGeom, weight: impl Fn(usize, usize, usize) -> f32) -> Buf {
    let (g, k, mq) = (geom.g, geom.k(), geom.mq());
    let mut packed = vec![0.0f32; g * k * mq * 4];
    for gi in 0..g {
        for ch in 0..geom.mg() {
            for kk in 0..k {
                packed[((gi * k + kk) * mq + ch / 4) * 4 + ch % 4] = weight(gi, ch, kk);
            }
        }
    }
    cx.constant(format!("{}.packed_weight", node.name), packed)
}

/// Weights computed on the device packed into the layout of [`packed_weight`] by a strided
/// copy into a scratch buffer (zero-initialised, so channels past MG stay 0) before each run.
/// `region` walks the weight in its own order with `src` strides; `dst` gives each region
/// dimension's destination stride in units of the packed reduction row (MQ*4 values; the
/// output-channel dimension, marked 0, has stride 1).
fn packed_on_device(
    cx: &mut Ctx,
    ni: usize,
    node: &Node,
    geom: ConvGeom,
    region: &[usize],
    src: &[usize],
    dst: &[usize],
) -> Result<Buf> {
    let (g, k, row) = (geom.g, geom.k(), geom.mq() * 4);
    let packed = cx.scratch(format!("{}.packed_weight", node.name), (g * k * row * 4) as u64);
    let w = cx.buf(node, node.inputs[1])?;
    let src: Vec<i64> = src.iter().map(|&s| s as i64).collect();
    let dst: Vec<i64> = dst.iter().map(|&s| if s == 0 { 1 } else { (s * row) as i64 }).collect();
    cx.copy(ni, node, packed, w, region, &src, &dst, 0, 0)?;
    Ok(packed)
}

/// Pushes a tiled conv-family dispatch (4 output channels x 4 pixels per invocation) reading
/// weights packed by [`packed_weight`] or [`packed_on_device`].
fn push_tiled_conv(
    cx: &mut Ctx,
    ni: usize,
    node: &Node,
    geom: ConvGeom,
    entry: &'static str,
    x_binding: u32,
    wb: Buf,
) -> Result<()> {
    let (g, mq) = (geom.g, geom.mq());
    let bias = conv_bias(cx, node, geom.m)?;
    let xb = cx.buf(node, node.inputs[0])?;
    let kernel = Kernel::new(Family::Conv, entry, &[("ACT", geom.act), ("WG", cx.wg as u32)]);
    let bindings = vec![(1, Buf::Value(node.outputs[0])), (x_binding, xb), (3, wb), (4, bias)];
    let items = geom.n * g * mq * div_up(geom.oh * geom.ow, 4);
    let groups = cx.groups(items);
    cx.push(ni, kernel, bindings, groups, geom.words(items));
    Ok(())
}
