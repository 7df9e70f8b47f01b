//! Convolutions: implicit-GEMM conv2d with a 4-channel x 4-pixel register tile (a 1x1 variant
//! with vec4 input loads, a depthwise kernel with 4 pixels per invocation) and transposed
//! convolution as a gather-form implicit GEMM, for 2-D and 1-D sweeps (1-D as 2-D with a unit
//! height); direct kernels over 3 spatial axes for 3-D (transposed) convolutions; Col2Im and
//! deformable convolution. Bias and activation in the write-back.

use super::{Buf, Ctx, Words, act_of, div_up};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::{Activation, Col2ImAttrs, ConvAttrs, ConvTransposeAttrs, DeformConvAttrs, Op, axes3, col2im_blocks};

/// Geometry of a 1-D or 2-D (transposed) convolution as a 2-D one, and the parameter words of
/// conv.wgsl's tiled kernels.
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

/// The last two of 1 or 2 per-axis values, `fill` for a missing height.
fn two(v: &[usize], fill: usize) -> [usize; 2] {
    let a = axes3(v, fill);
    [a[1], a[2]]
}

impl ConvGeom {
    /// From the input and output shapes, the weight shape and the attributes (1 or 2 spatial
    /// axes; pads begins then ends).
    #[allow(clippy::too_many_arguments)]
    fn new(
        x: &[usize],
        y: &[usize],
        w: &[usize],
        g: usize,
        stride: &[usize],
        pads: &[usize],
        dilation: &[usize],
        activation: Option<Activation>,
    ) -> Self {
        let (act, act_a, act_b) = act_of(activation);
        let [h, wd] = two(&x[2..], 1);
        let [oh, ow] = two(&y[2..], 1);
        let [kh, kw] = two(&w[2..], 1);
        ConvGeom {
            n: x[0],
            c: x[1],
            h,
            w: wd,
            m: y[1],
            oh,
            ow,
            kh,
            kw,
            g,
            stride: two(stride, 1),
            pads: two(&pads[..pads.len() / 2], 0),
            dilation: two(dilation, 1),
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

/// The parameter words of conv.wgsl's direct kernels (conv_direct, conv_transpose_direct):
/// any 1 to 3 spatial axes as 3.
struct DirectGeom<'a> {
    x: &'a [usize],
    y: &'a [usize],
    w: &'a [usize],
    groups: usize,
    stride: &'a [usize],
    pads: &'a [usize],
    dilation: &'a [usize],
    activation: Option<Activation>,
}

impl DirectGeom<'_> {
    fn words(&self) -> (usize, Vec<u32>) {
        let (c, m) = (self.x[1], self.y[1]);
        let items: usize = self.y.iter().product();
        let (_, a, b) = act_of(self.activation);
        let n = self.pads.len() / 2;
        let mut p = Words::new();
        p.u(0, items).u(1, c).u(2, m).u(3, c / self.groups).u(4, m / self.groups);
        let axes = [
            axes3(&self.x[2..], 1),
            axes3(&self.y[2..], 1),
            axes3(&self.w[2..], 1),
            axes3(self.stride, 1),
            axes3(&self.pads[..n], 0),
            axes3(self.dilation, 1),
        ];
        for (k, v) in axes.iter().enumerate() {
            for (j, &d) in v.iter().enumerate() {
                p.u(5 + 3 * k + j, d);
            }
        }
        p.f(23, a).f(24, b);
        (items, p.done())
    }
}

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    match &node.op {
        Op::Conv(a) => lower_conv(cx, ni, node, a),
        Op::ConvTranspose(a) => lower_conv_transpose(cx, ni, node, a),
        Op::DeformConv(a) => lower_deform_conv(cx, ni, node, a),
        Op::Col2Im(a) => lower_col2im(cx, ni, node, a),
        _ => unreachable!("conv family"),
    }
}

/// The shape of a (transposed) convolution's weight and, when it is a constant, its values.
/// Computed weights (a QDQ model's DequantizeLinear of int8 weights) are packed on the device.
fn weight(cx: &Ctx, node: &Node) -> (Vec<usize>, Option<Vec<f32>>) {
    let w = node.inputs[1];
    (cx.shape(w), cx.g.value(w).constant().map(|t| t.to_f32s()))
}

fn lower_conv(cx: &mut Ctx, ni: usize, node: &Node, a: &ConvAttrs) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let (ws, wdata) = weight(cx, node);
    let (xs, ys) = (cx.shape(x), cx.shape(y));
    if xs.len() == 5 {
        let geom = DirectGeom {
            x: &xs,
            y: &ys,
            w: &ws,
            groups: a.groups,
            stride: &a.stride,
            pads: &a.pads,
            dilation: &a.dilation,
            activation: a.activation,
        };
        return push_direct(cx, ni, node, "conv_direct", geom, wdata);
    }
    let geom = ConvGeom::new(&xs, &ys, &ws, a.groups, &a.stride, &a.pads, &a.dilation, a.activation);
    let (c, m, k) = (geom.c, geom.m, geom.k());
    let depthwise = geom.g > 1 && geom.cg() == 1 && m % c == 0;
    let pointwise = geom.kh == 1
        && geom.kw == 1
        && a.stride.iter().all(|&s| s == 1)
        && a.pads.iter().all(|&p| p == 0)
        && (geom.h * geom.w).is_multiple_of(4)
        && !depthwise;
    if cx.naive || depthwise {
        // Unpacked weights [M][CG][KH][KW]: the naive baseline and the depthwise kernel.
        let (family, entry) = if cx.naive { (Family::Naive, "naive_conv2d") } else { (Family::Conv, "depthwise") };
        let raw = match wdata {
            Some(d) => cx.constant(format!("{}.weight", node.name), d),
            None => cx.buf(node, node.inputs[1])?,
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

fn lower_conv_transpose(cx: &mut Ctx, ni: usize, node: &Node, a: &ConvTransposeAttrs) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let (ws, wdata) = weight(cx, node);
    let (xs, ys) = (cx.shape(x), cx.shape(y));
    if xs.len() == 5 {
        let geom = DirectGeom {
            x: &xs,
            y: &ys,
            w: &ws,
            groups: a.groups,
            stride: &a.stride,
            pads: &a.pads,
            dilation: &a.dilation,
            activation: a.activation,
        };
        return push_direct(cx, ni, node, "conv_transpose_direct", geom, wdata);
    }
    let geom = ConvGeom::new(&xs, &ys, &ws, a.groups, &a.stride, &a.pads, &a.dilation, a.activation);
    // w: [C][MG][KH][KW]; reduction index k = (ci*KH + ky)*KW + kx within the group.
    let (g, cg, mg, khw) = (geom.g, geom.cg(), geom.mg(), geom.kh * geom.kw);
    let wb = match wdata {
        Some(d) => packed_weight(cx, node, geom, |gi, ch, kk| d[((gi * cg + kk / khw) * mg + ch) * khw + kk % khw]),
        None => {
            let src = [cg * mg * khw, mg * khw, khw, 1];
            packed_on_device(cx, ni, node, geom, &[g, cg, mg, khw], &src, &[khw * cg, khw, 0, 1])?
        }
    };
    push_tiled_conv(cx, ni, node, geom, "conv_transpose", 2, wb)
}

/// Pushes a direct (one output per invocation) kernel over 3 spatial axes with unpacked
/// weights.
fn push_direct(
    cx: &mut Ctx,
    ni: usize,
    node: &Node,
    entry: &'static str,
    geom: DirectGeom,
    wdata: Option<Vec<f32>>,
) -> Result<()> {
    let raw = match wdata {
        Some(d) => cx.constant(format!("{}.weight", node.name), d),
        None => cx.buf(node, node.inputs[1])?,
    };
    let bias = conv_bias(cx, node, geom.y[1])?;
    let xb = cx.buf(node, node.inputs[0])?;
    let (act, _, _) = act_of(geom.activation);
    let kernel = Kernel::new(Family::Conv, entry, &[("ACT", act), ("WG", cx.wg as u32)]);
    let (items, words) = geom.words();
    let groups = cx.groups(items);
    cx.push(ni, kernel, vec![(1, Buf::Value(node.outputs[0])), (2, xb), (5, raw), (4, bias)], groups, words);
    Ok(())
}

fn lower_deform_conv(cx: &mut Ctx, ni: usize, node: &Node, a: &DeformConvAttrs) -> Result<()> {
    let (xs, ws, ys) = (cx.shape(node.inputs[0]), cx.shape(node.inputs[1]), cx.shape(node.outputs[0]));
    let bufs: Vec<Buf> = node.inputs.iter().map(|&v| cx.buf(node, v)).collect::<Result<_>>()?;
    let (xb, wb, ob, bb) = (bufs[0], bufs[1], bufs[2], bufs[3]);
    // Without a mask the offsets fill the mask's binding (never read).
    let mb = bufs.get(4).copied().unwrap_or(ob);
    let items: usize = ys.iter().product();
    let mut p = Words::new();
    p.u(0, items).u(1, xs[1]).u(2, xs[2]).u(3, xs[3]).u(4, ys[1]).u(5, ys[2]).u(6, ys[3]).u(7, ws[2]).u(8, ws[3]);
    p.u(9, a.stride[0]).u(10, a.stride[1]).u(11, a.pads[0]).u(12, a.pads[1]).u(13, a.dilation[0]);
    p.u(14, a.dilation[1]).u(15, xs[1] / a.groups).u(16, ys[1] / a.groups).u(17, a.offset_groups);
    p.u(18, usize::from(bufs.len() == 5));
    let kernel = Kernel::new(Family::Conv, "deform_conv", &[("WG", cx.wg as u32)]);
    let groups = cx.groups(items);
    let bindings = vec![(1, Buf::Value(node.outputs[0])), (2, xb), (5, wb), (4, bb), (7, ob), (8, mb)];
    cx.push(ni, kernel, bindings, groups, p.done());
    Ok(())
}

fn lower_col2im(cx: &mut Ctx, ni: usize, node: &Node, a: &Col2ImAttrs) -> Result<()> {
    let ys = cx.shape(node.outputs[0]);
    let blocks = col2im_blocks(a).map_err(|e| super::node_err(node, e))?;
    let xb = cx.buf(node, node.inputs[0])?;
    let items: usize = ys.iter().product();
    let n = a.image.len();
    let mut p = Words::new();
    p.u(0, items);
    let axes = [
        axes3(&a.image, 1),
        axes3(&blocks, 1),
        axes3(&a.block, 1),
        axes3(&a.stride, 1),
        axes3(&a.pads[..n], 0),
        axes3(&a.dilation, 1),
    ];
    for (k, v) in axes.iter().enumerate() {
        for (j, &d) in v.iter().enumerate() {
            p.u(2 + 3 * k + j, d);
        }
    }
    let kernel = Kernel::new(Family::Conv, "col2im", &[("WG", cx.wg as u32)]);
    let groups = cx.groups(items);
    cx.push(ni, kernel, vec![(1, Buf::Value(node.outputs[0])), (2, xb)], groups, p.done());
    Ok(())
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
