//! Lowering: each node of a graph becomes zero or more dispatches of a specialised kernel,
//! with its parameter words computed for any batch size. Reshapes become aliases (no work);
//! constant weights are packed here into the layouts the kernels read.

use std::collections::HashMap;

use super::kernels::{Family, Kernel};
use crate::error::{EngineError, Result};
use crate::graph::{Graph, Node, ValueId, broadcast, pool_out, slice_axis, sym_shape};
use crate::ops::*;
use crate::tensor::{numel, strides};

/// A buffer a dispatch binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Buf {
    /// The buffer of an activation (after resolving aliases).
    Value(ValueId),
    /// A constant buffer, index into [`Lowered::consts`].
    Const(usize),
    /// A scratch buffer, index into [`Lowered::scratch`].
    Scratch(usize),
    /// The packed fp16 buffer of a graph input or output exchanged as fp16 (index into the
    /// compiled graph's packed buffers).
    Packed(usize),
}

/// Workgroup count and parameter words of a dispatch at a batch size.
pub(crate) type SizeFn = Box<dyn Fn(usize) -> (u64, Vec<u32>) + Send + Sync>;

/// One kernel launch.
pub(crate) struct Dispatch {
    /// Node it belongs to (index in the graph; `usize::MAX` for the fp16 conversions at the
    /// graph's edges).
    pub node: usize,
    /// Kernel to run.
    pub kernel: Kernel,
    /// (binding number, buffer).
    pub bindings: Vec<(u32, Buf)>,
    /// Workgroups and parameters per batch.
    pub size: SizeFn,
}

/// A lowered graph.
pub(crate) struct Lowered {
    pub dispatches: Vec<Dispatch>,
    /// Constant buffers: (name, values).
    pub consts: Vec<(String, Vec<f32>)>,
    /// Scratch buffers: (name, bytes at the maximum batch).
    pub scratch: Vec<(String, u64)>,
    /// Values that share the buffer of another value (reshapes).
    pub alias: HashMap<ValueId, ValueId>,
}

/// Parameter words of one dispatch (64 words, 256 bytes).
pub(crate) struct Words(Vec<u32>);

pub(crate) const PARAM_WORDS: usize = 64;

impl Words {
    fn new() -> Self {
        Words(vec![0; PARAM_WORDS])
    }
    fn u(&mut self, i: usize, v: usize) -> &mut Self {
        self.0[i] = v as u32;
        self
    }
    fn i(&mut self, i: usize, v: i64) -> &mut Self {
        self.0[i] = v as i32 as u32;
        self
    }
    fn f(&mut self, i: usize, v: f32) -> &mut Self {
        self.0[i] = v.to_bits();
        self
    }
    fn done(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.0)
    }
}

fn div_up(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// A product with a constant B: sizes, scaling, bias broadcasting and activation.
#[derive(Clone, Copy)]
struct Dense {
    kdim: usize,
    n: usize,
    trans_b: bool,
    alpha: f32,
    beta: f32,
    has_bias: bool,
    c_sm: usize,
    c_sn: usize,
    act: u32,
    fa: f32,
    fb: f32,
}

/// Geometry of a (transposed) convolution and the parameter words of conv.wgsl.
#[derive(Clone, Copy)]
struct ConvGeom {
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
    /// From per-sample input/output dims, the weight shape and the attributes.
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
            c: x[0],
            h: x[1],
            w: x[2],
            m: y[0],
            oh: y[1],
            ow: y[2],
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
    fn words(&self, b: usize, items: usize) -> Vec<u32> {
        let mut p = Words::new();
        p.u(0, b).u(1, self.c).u(2, self.h).u(3, self.w).u(4, self.m).u(5, self.oh).u(6, self.ow);
        p.u(7, self.kh).u(8, self.kw).u(9, self.stride[0]).u(10, self.stride[1]).u(11, self.pads[0]);
        p.u(12, self.pads[1]).u(13, self.dilation[0]).u(14, self.dilation[1]).u(15, self.g).u(16, self.cg());
        p.u(17, self.mg()).u(18, self.mq()).u(19, self.k()).u(20, items).f(21, self.act_a).f(22, self.act_b);
        p.u(23, div_up(self.oh * self.ow, 4)).u(24, self.m / self.c).u(25, div_up(self.ow, 4));
        p.done()
    }
}

struct Ctx<'a> {
    g: &'a Graph,
    out: Lowered,
    raw: HashMap<ValueId, usize>,
    wg: usize,
    naive: bool,
    max_batch: usize,
    max_binding: u64,
}

/// Lowers every node of `g`. `wg` is the workgroup size of 1-D kernels.
/// `max_binding` is the device's largest storage binding, in bytes: constant operands larger
/// than it are split.
pub(crate) fn lower(g: &Graph, max_batch: usize, naive: bool, wg: u32, max_binding: u64) -> Result<Lowered> {
    let mut cx = Ctx {
        g,
        out: Lowered { dispatches: vec![], consts: vec![], scratch: vec![], alias: HashMap::new() },
        raw: HashMap::new(),
        wg: wg as usize,
        naive,
        max_batch,
        max_binding,
    };
    for (i, node) in g.nodes().iter().enumerate() {
        // Kernels index with 32-bit integers.
        for &v in node.inputs.iter().chain(&node.outputs) {
            let val = g.value(v);
            let n = if val.is_batched() { val.per_sample_len() * max_batch } else { val.per_sample_len() };
            if n >= i32::MAX as usize / 4 {
                return Err(node_err(
                    node,
                    format!(
                        "tensor '{}' has {n} elements at batch {max_batch}; kernels index up to 2^29 elements, use a smaller batch or input",
                        val.name
                    ),
                ));
            }
        }
        cx.node(i, node)?;
    }
    Ok(cx.out)
}

fn node_err(node: &Node, reason: String) -> EngineError {
    EngineError::InvalidNode { node: node.name.clone(), op: node.op.name().into(), reason }
}

/// Pads a shape and its strides on the left to rank 6.
fn rank6(node: &Node, shape: &[usize], strides: &[i64]) -> Result<([usize; 6], [i64; 6])> {
    if shape.len() > 6 {
        return Err(node_err(node, format!("rank {} is above the supported 6", shape.len())));
    }
    let mut d = [1usize; 6];
    let mut s = [0i64; 6];
    let off = 6 - shape.len();
    d[off..].copy_from_slice(shape);
    s[off..].copy_from_slice(&strides[..shape.len()]);
    Ok((d, s))
}

fn istrides(shape: &[usize]) -> Vec<i64> {
    strides(shape).into_iter().map(|s| s as i64).collect()
}

fn act_of(a: Option<Activation>) -> (u32, f32, f32) {
    a.map_or((0, 0.0, 0.0), |a| a.code())
}

impl Ctx<'_> {
    fn constant(&mut self, name: String, data: Vec<f32>) -> Buf {
        // Bindings need at least 16 bytes.
        let mut data = data;
        while data.len() < 4 {
            data.push(0.0);
        }
        self.out.consts.push((name, data));
        Buf::Const(self.out.consts.len() - 1)
    }

    /// An activation's buffer, or a constant uploaded as it is.
    fn buf(&mut self, v: ValueId) -> Buf {
        let val = self.g.value(v);
        match val.constant() {
            None => Buf::Value(v),
            Some(t) => {
                if let Some(&i) = self.raw.get(&v) {
                    return Buf::Const(i);
                }
                let b = self.constant(val.name.clone(), t.data().to_vec());
                if let Buf::Const(i) = b {
                    self.raw.insert(v, i);
                }
                b
            }
        }
    }

    fn zeros(&mut self, name: String, n: usize) -> Buf {
        self.constant(name, vec![0.0; n])
    }

    fn push(&mut self, node: usize, kernel: Kernel, bindings: Vec<(u32, Buf)>, size: SizeFn) {
        self.out.dispatches.push(Dispatch { node, kernel, bindings, size });
    }

    fn dims(&self, v: ValueId) -> Vec<usize> {
        self.g.value(v).dims.clone()
    }

    /// Full shape of a value at batch `b` (constants: their shape).
    fn shape_fn(&self, v: ValueId) -> impl Fn(usize) -> Vec<usize> + Send + Sync + 'static {
        let val = self.g.value(v).clone();
        move |b| val.shape_at(b)
    }

    fn node(&mut self, ni: usize, node: &Node) -> Result<()> {
        let wg = self.wg;
        let x = node.inputs[0];
        let y = node.outputs[0];
        match &node.op {
            Op::Conv(a) => self.conv(ni, node, a),
            Op::ConvTranspose(a) => self.conv_transpose(ni, node, a),
            Op::Gemm(a) => self.gemm(ni, node, a),
            Op::MatMul { activation } => self.matmul(ni, node, *activation),
            Op::Pool(a) => {
                let d = self.dims(x);
                let (c, h, w) = (d[0], d[1], d[2]);
                let oh = pool_out(h, a.pads[0], a.pads[2], a.kernel[0], a.dilation[0], a.stride[0], a.ceil_mode)
                    .expect("checked");
                let ow = pool_out(w, a.pads[1], a.pads[3], a.kernel[1], a.dilation[1], a.stride[1], a.ceil_mode)
                    .expect("checked");
                let a = a.clone();
                let kind = u32::from(a.kind == PoolKind::Average);
                let kernel = Kernel::new(Family::Pool, "pool2d", &[("KIND", kind), ("WG", wg as u32)]);
                let xb = self.buf(x);
                self.push(
                    ni,
                    kernel,
                    vec![(1, Buf::Value(y)), (2, xb)],
                    Box::new(move |b| {
                        let items = b * c * oh * ow;
                        let mut p = Words::new();
                        p.u(0, items).u(1, c).u(2, h).u(3, w).u(4, oh).u(5, ow).u(6, a.kernel[0]).u(7, a.kernel[1]);
                        p.u(8, a.stride[0]).u(9, a.stride[1]).u(10, a.pads[0]).u(11, a.pads[1]).u(12, a.pads[2]);
                        p.u(13, a.pads[3])
                            .u(14, a.dilation[0])
                            .u(15, a.dilation[1])
                            .u(16, a.count_include_pad as usize);
                        (div_up(items, wg) as u64, p.done())
                    }),
                );
                Ok(())
            }
            Op::GlobalPool(kind) => {
                let rank = self.g.value(x).rank();
                let axes: Vec<usize> = (2..rank).collect();
                self.reduce(ni, node, &axes, u32::from(*kind == PoolKind::Max))
            }
            Op::ReduceMean { axes, .. } => self.reduce(ni, node, axes, 0),
            Op::Binary { op, activation } => self.binary(ni, node, *op, *activation),
            Op::Unary(act) => {
                let (code, fa, fb) = act.code();
                let kernel = Kernel::new(Family::Elementwise, "unary", &[("ACT", code), ("WG", wg as u32)]);
                let per = self.g.value(x).per_sample_len();
                let xb = self.buf(x);
                self.push(
                    ni,
                    kernel,
                    vec![(1, Buf::Value(y)), (2, xb)],
                    Box::new(move |b| {
                        let items = b * per;
                        (div_up(div_up(items, 4), wg) as u64, Words::new().u(0, items).f(1, fa).f(2, fb).done())
                    }),
                );
                Ok(())
            }
            Op::Softmax { axis } => {
                let d = self.dims(x);
                let l = d[axis - 1];
                let inner = numel(&d[*axis..]);
                let per = numel(&d);
                let kernel = Kernel::new(Family::Reduce, "softmax", &[("WG", 64)]);
                let xb = self.buf(x);
                self.push(
                    ni,
                    kernel,
                    vec![(1, Buf::Value(y)), (2, xb)],
                    Box::new(move |b| {
                        let rows = b * per / l;
                        (rows as u64, Words::new().u(0, rows).u(1, l).u(2, inner).done())
                    }),
                );
                Ok(())
            }
            Op::LayerNorm { axis, epsilon } => {
                let d = self.dims(x);
                let norm = d[axis - 1..].to_vec();
                let l = numel(&norm);
                let per = numel(&d);
                let expand = |t: &crate::Tensor| -> Vec<f32> {
                    // Broadcast scale/bias to the normalised shape.
                    let full = broadcast(&norm, t.shape()).expect("checked");
                    debug_assert_eq!(full, norm);
                    let ts = strides(t.shape());
                    let off = norm.len() - t.shape().len();
                    (0..l)
                        .map(|i| {
                            let mut rem = i;
                            let mut idx = 0;
                            for dd in (0..norm.len()).rev() {
                                let c = rem % norm[dd];
                                rem /= norm[dd];
                                if dd >= off && t.shape()[dd - off] != 1 {
                                    idx += c * ts[dd - off];
                                }
                            }
                            t.data()[idx]
                        })
                        .collect()
                };
                let scale = expand(self.g.value(node.inputs[1]).constant().expect("checked"));
                let sb = self.constant(format!("{}.scale", node.name), scale);
                let has_bias = node.inputs.len() == 3;
                let bb = if has_bias {
                    let bias = expand(self.g.value(node.inputs[2]).constant().expect("checked"));
                    self.constant(format!("{}.bias", node.name), bias)
                } else {
                    self.zeros(format!("{}.bias", node.name), 4)
                };
                let eps = *epsilon;
                let kernel = Kernel::new(Family::Reduce, "layer_norm", &[("WG", 64)]);
                let xb = self.buf(x);
                self.push(
                    ni,
                    kernel,
                    vec![(1, Buf::Value(y)), (2, xb), (3, sb), (4, bb)],
                    Box::new(move |b| {
                        let rows = b * per / l;
                        (rows as u64, Words::new().u(0, rows).u(1, l).f(2, eps).u(3, has_bias as usize).done())
                    }),
                );
                Ok(())
            }
            Op::BatchNorm { epsilon } => {
                let c = |i: usize| self.g.value(node.inputs[i]).constant().expect("checked").clone();
                let (scale, bias, mean, var) = (c(1), c(2), c(3), c(4));
                let s: Vec<f32> = (0..scale.len())
                    .map(|i| (scale.data()[i] as f64 / (var.data()[i] as f64 + *epsilon as f64).sqrt()) as f32)
                    .collect();
                let shift: Vec<f32> = (0..s.len())
                    .map(|i| (bias.data()[i] as f64 - mean.data()[i] as f64 * s[i] as f64) as f32)
                    .collect();
                let d = self.dims(x);
                let (ch, inner, per) = (d[0], numel(&d[1..]), numel(&d));
                let sb = self.constant(format!("{}.scale", node.name), s);
                let hb = self.constant(format!("{}.shift", node.name), shift);
                let kernel = Kernel::new(Family::Norm, "batch_norm", &[("WG", wg as u32)]);
                let xb = self.buf(x);
                self.push(
                    ni,
                    kernel,
                    vec![(1, Buf::Value(y)), (2, xb), (3, sb), (4, hb)],
                    Box::new(move |b| {
                        let items = b * per;
                        (div_up(items, wg) as u64, Words::new().u(0, items).u(1, ch).u(2, inner).done())
                    }),
                );
                Ok(())
            }
            Op::Lrn(a) => {
                let d = self.dims(x);
                let (ch, inner, per) = (d[0], numel(&d[1..]), numel(&d));
                let a = a.clone();
                let kernel = Kernel::new(Family::Norm, "lrn", &[("WG", wg as u32)]);
                let xb = self.buf(x);
                self.push(
                    ni,
                    kernel,
                    vec![(1, Buf::Value(y)), (2, xb)],
                    Box::new(move |b| {
                        let items = b * per;
                        let mut p = Words::new();
                        p.u(0, items).u(1, ch).u(2, inner).u(3, a.size).f(4, a.alpha).f(5, a.beta).f(6, a.bias);
                        (div_up(items, wg) as u64, p.done())
                    }),
                );
                Ok(())
            }
            Op::Reshape { .. } => {
                let root = *self.out.alias.get(&x).unwrap_or(&x);
                self.out.alias.insert(y, root);
                Ok(())
            }
            Op::Concat { axis } => {
                let axis = *axis;
                let mut offset = 0;
                let out_shape = self.shape_fn(y);
                for &inp in &node.inputs {
                    let in_shape = self.shape_fn(inp);
                    let off = offset;
                    offset += self.g.value(inp).dims[axis - 1];
                    let os = out_shape(1);
                    rank6(node, &os, &istrides(&os))?;
                    let src = self.buf(inp);
                    let os_fn = self.shape_fn(y);
                    self.copy(
                        ni,
                        Buf::Value(y),
                        src,
                        Box::new(move |b| {
                            let region = in_shape(b);
                            let o = os_fn(b);
                            let dst = istrides(&o);
                            (region.clone(), istrides(&region), dst.clone(), 0, off as i64 * dst[axis])
                        }),
                    )?;
                }
                Ok(())
            }
            Op::Split { axis, sizes } => {
                // Output k is the slice [offset_k, offset_k + size_k) of the axis.
                let rank = self.g.value(x).rank();
                let mut offset = 0i64;
                for (k, &o) in node.outputs.iter().enumerate() {
                    let mut start = vec![0i64; rank];
                    start[*axis] = offset;
                    offset += sizes[k] as i64;
                    self.slice_copy(ni, x, o, start, vec![1; rank])?;
                }
                Ok(())
            }
            Op::Slice { axes, starts, ends, steps } => {
                let d = self.dims(x);
                let mut start = vec![0i64; d.len() + 1];
                let mut step = vec![1i64; d.len() + 1];
                for i in 0..axes.len() {
                    let (s, st, _) = slice_axis(d[axes[i] - 1], starts[i], ends[i], steps[i]);
                    start[axes[i]] = s;
                    step[axes[i]] = st;
                }
                self.slice_copy(ni, x, y, start, step)
            }
            Op::Transpose { perm } => {
                let perm = perm.clone();
                let in_shape = self.shape_fn(x);
                let out_shape = self.shape_fn(y);
                let src = self.buf(x);
                self.copy(
                    ni,
                    Buf::Value(y),
                    src,
                    Box::new(move |b| {
                        let region = out_shape(b);
                        let is = istrides(&in_shape(b));
                        let src: Vec<i64> = perm.iter().map(|&p| is[p]).collect();
                        (region.clone(), src, istrides(&region), 0, 0)
                    }),
                )
            }
            Op::Pad { pads, mode } => {
                let (mode_code, value) = match mode {
                    PadMode::Constant(v) => (0, *v),
                    PadMode::Reflect => (1, 0.0),
                    PadMode::Edge => (2, 0.0),
                };
                let in_shape = self.shape_fn(x);
                let out_shape = self.shape_fn(y);
                rank6(node, &out_shape(1), &istrides(&out_shape(1)))?;
                let begins: Vec<i64> = pads.iter().map(|p| p.0 as i64).collect();
                let kernel = Kernel::new(Family::Layout, "pad", &[("MODE", mode_code), ("WG", wg as u32)]);
                let xb = self.buf(x);
                let n = node.clone();
                self.push(
                    ni,
                    kernel,
                    vec![(1, Buf::Value(y)), (2, xb)],
                    Box::new(move |b| {
                        let os = out_shape(b);
                        let is = in_shape(b);
                        let (od, _) = rank6(&n, &os, &istrides(&os)).expect("rank checked");
                        let (id, ist) = rank6(&n, &is, &istrides(&is)).expect("rank checked");
                        let (_, pb) = rank6(&n, &is, &begins).expect("rank checked");
                        let items = numel(&os);
                        let mut p = Words::new();
                        p.u(0, items);
                        for k in 0..6 {
                            p.u(1 + k, od[k]).u(7 + k, id[k]).i(13 + k, pb[k]).i(19 + k, ist[k]);
                        }
                        p.f(25, value);
                        (div_up(items, wg) as u64, p.done())
                    }),
                );
                Ok(())
            }
            Op::Resize(a) => {
                let d = self.dims(x);
                let (c, h, w) = (d[0], d[1], d[2]);
                let a = a.clone();
                let (linear, nearest) = match a.mode {
                    ResizeMode::Linear => (1, 0),
                    ResizeMode::Nearest(m) => (
                        0,
                        match m {
                            NearestMode::RoundPreferFloor => 0,
                            NearestMode::RoundPreferCeil => 1,
                            NearestMode::Floor => 2,
                            NearestMode::Ceil => 3,
                        },
                    ),
                };
                let coord = match a.coord {
                    CoordMode::HalfPixel => 0,
                    CoordMode::PytorchHalfPixel => 1,
                    CoordMode::AlignCorners => 2,
                    CoordMode::Asymmetric => 3,
                    CoordMode::TfHalfPixelForNn => 4,
                };
                let kernel = Kernel::new(Family::Layout, "resize", &[("WG", wg as u32)]);
                let xb = self.buf(x);
                self.push(
                    ni,
                    kernel,
                    vec![(1, Buf::Value(y)), (2, xb)],
                    Box::new(move |b| {
                        let items = b * c * a.out_hw[0] * a.out_hw[1];
                        let mut p = Words::new();
                        p.u(0, items).u(1, h).u(2, w).u(3, a.out_hw[0]).u(4, a.out_hw[1]).u(5, linear).u(6, nearest);
                        p.u(7, coord).f(8, a.scales[0]).f(9, a.scales[1]);
                        (div_up(items, wg) as u64, p.done())
                    }),
                );
                Ok(())
            }
        }
    }

    /// A strided copy from `src` into `dst`; the closure gives, per batch, the region's dims,
    /// source strides, destination strides, source offset and destination offset.
    #[allow(clippy::type_complexity)]
    fn copy(
        &mut self,
        ni: usize,
        dst: Buf,
        src: Buf,
        f: Box<dyn Fn(usize) -> (Vec<usize>, Vec<i64>, Vec<i64>, i64, i64) + Send + Sync>,
    ) -> Result<()> {
        let node = self.g.nodes()[ni].clone();
        let (region, ..) = f(1);
        rank6(&node, &region, &istrides(&region))?;
        let wg = self.wg;
        let kernel = Kernel::new(Family::Layout, "strided_copy", &[("WG", wg as u32)]);
        self.push(
            ni,
            kernel,
            vec![(1, dst), (2, src)],
            Box::new(move |b| {
                let (region, ss, ds, so, dof) = f(b);
                let (rd, rs) = rank6(&node, &region, &ss).expect("rank checked");
                let (_, rds) = rank6(&node, &region, &ds).expect("rank checked");
                let items = numel(&region);
                let mut p = Words::new();
                p.u(0, items);
                for k in 0..6 {
                    p.u(1 + k, rd[k]).i(7 + k, rs[k]).i(13 + k, rds[k]);
                }
                p.i(19, so).i(20, dof);
                (div_up(items, wg) as u64, p.done())
            }),
        );
        Ok(())
    }

    /// Copies the strided view of `x` starting at `start` with `step` per axis into `y`
    /// (whose shape is the view's).
    fn slice_copy(&mut self, ni: usize, x: ValueId, y: ValueId, start: Vec<i64>, step: Vec<i64>) -> Result<()> {
        let in_shape = self.shape_fn(x);
        let out_shape = self.shape_fn(y);
        let src = self.buf(x);
        self.copy(
            ni,
            Buf::Value(y),
            src,
            Box::new(move |b| {
                let region = out_shape(b);
                let is = istrides(&in_shape(b));
                let src: Vec<i64> = is.iter().zip(&step).map(|(s, t)| s * t).collect();
                let off: i64 = is.iter().zip(&start).map(|(s, t)| s * t).sum();
                (region.clone(), src, istrides(&region), off, 0)
            }),
        )
    }

    fn reduce(&mut self, ni: usize, node: &Node, axes: &[usize], kind: u32) -> Result<()> {
        let x = node.inputs[0];
        let y = node.outputs[0];
        let in_shape = self.shape_fn(x);
        let axes = axes.to_vec();
        let s1 = in_shape(1);
        if s1.len() > 6 {
            return Err(node_err(node, format!("rank {} is above the supported 6", s1.len())));
        }
        let kernel = Kernel::new(Family::Reduce, "reduce", &[("KIND", kind), ("WG", 64)]);
        let xb = self.buf(x);
        let n = node.clone();
        self.push(
            ni,
            kernel,
            vec![(1, Buf::Value(y)), (2, xb)],
            Box::new(move |b| {
                let s = in_shape(b);
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
                let rows = numel(&kd);
                let l = numel(&rd);
                let (kd6, ks6) = rank6(&n, &kd, &ks).expect("rank checked");
                let (rd6, rs6) = rank6(&n, &rd, &rs).expect("rank checked");
                let mut p = Words::new();
                p.u(0, rows).u(1, l);
                for k in 0..6 {
                    p.u(2 + k, kd6[k]).i(8 + k, ks6[k]).u(14 + k, rd6[k]).i(20 + k, rs6[k]);
                }
                (rows as u64, p.done())
            }),
        );
        Ok(())
    }

    fn binary(&mut self, ni: usize, node: &Node, op: BinaryOp, activation: Option<Activation>) -> Result<()> {
        let (a, bv, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
        let sa = self.shape_fn(a);
        let sb = self.shape_fn(bv);
        let so = self.shape_fn(y);
        rank6(node, &so(1), &istrides(&so(1)))?;
        let wg = self.wg;
        let (act, fa, fb) = act_of(activation);
        let kernel = Kernel::new(Family::Elementwise, "binary", &[("OP", op.code()), ("ACT", act), ("WG", wg as u32)]);
        let (ab, bb) = (self.buf(a), self.buf(bv));
        let n = node.clone();
        self.push(
            ni,
            kernel,
            vec![(1, Buf::Value(y)), (2, ab), (3, bb)],
            Box::new(move |b| {
                let (a, bs, o) = (sa(b), sb(b), so(b));
                let bstr = |s: &[usize]| -> Vec<i64> {
                    // strides of `s` aligned to the output, 0 where it broadcasts
                    let st = istrides(s);
                    let off = o.len() - s.len();
                    (0..o.len()).map(|i| if i < off || s[i - off] == 1 { 0 } else { st[i - off] }).collect()
                };
                let (od, _) = rank6(&n, &o, &istrides(&o)).expect("rank checked");
                let (_, a6) = rank6(&n, &o, &bstr(&a)).expect("rank checked");
                let (_, b6) = rank6(&n, &o, &bstr(&bs)).expect("rank checked");
                let items = numel(&o);
                let same = a == o && bs == o;
                let mut p = Words::new();
                p.u(0, items);
                for k in 0..6 {
                    p.u(1 + k, od[k]).i(7 + k, a6[k]).i(13 + k, b6[k]);
                }
                p.f(19, fa).f(20, fb).u(21, same as usize);
                (div_up(div_up(items, 4), wg) as u64, p.done())
            }),
        );
        Ok(())
    }

    /// The bias buffer of a (transposed) convolution: its constant, or zeros.
    fn conv_bias(&mut self, node: &Node, m: usize) -> Buf {
        match node.inputs.get(2) {
            Some(&b) => self.buf(b),
            None => self.zeros(format!("{}.bias", node.name), m),
        }
    }

    /// Pushes a tiled conv-family dispatch (4 output channels x 4 pixels per invocation) with
    /// weights packed for vec4 loads: vec4 (g*K + k)*MQ + mq holds channels g*MG + mq*4 + 0..3
    /// at reduction index k; `weight(g, ch, k)` reads the original layout.
    fn push_tiled_conv(
        &mut self,
        ni: usize,
        node: &Node,
        geom: ConvGeom,
        entry: &'static str,
        x_binding: u32,
        weight: impl Fn(usize, usize, usize) -> f32,
    ) {
        let (g, k, mq) = (geom.g, geom.k(), geom.mq());
        let mut packed = vec![0.0f32; g * k * mq * 4];
        for gi in 0..g {
            for ch in 0..geom.mg() {
                for kk in 0..k {
                    packed[((gi * k + kk) * mq + ch / 4) * 4 + ch % 4] = weight(gi, ch, kk);
                }
            }
        }
        let wb = self.constant(format!("{}.packed_weight", node.name), packed);
        let bias = self.conv_bias(node, geom.m);
        let xb = self.buf(node.inputs[0]);
        let wg = self.wg;
        let kernel = Kernel::new(Family::Conv, entry, &[("ACT", geom.act), ("WG", wg as u32)]);
        let bindings = vec![(1, Buf::Value(node.outputs[0])), (x_binding, xb), (3, wb), (4, bias)];
        self.push(
            ni,
            kernel,
            bindings,
            Box::new(move |b| {
                let items = b * g * mq * div_up(geom.oh * geom.ow, 4);
                (div_up(items, wg) as u64, geom.words(b, items))
            }),
        );
    }

    fn conv(&mut self, ni: usize, node: &Node, a: &ConvAttrs) -> Result<()> {
        let (x, y) = (node.inputs[0], node.outputs[0]);
        let wt = self.g.value(node.inputs[1]).constant().expect("checked").clone();
        let geom = ConvGeom::new(
            &self.dims(x),
            &self.dims(y),
            wt.shape(),
            a.groups,
            a.stride,
            a.pads,
            a.dilation,
            a.activation,
        );
        let (c, m, k) = (geom.c, geom.m, geom.k());
        let depthwise = geom.g > 1 && geom.cg() == 1 && m % c == 0;
        let pointwise = geom.kh == 1
            && geom.kw == 1
            && a.stride == [1, 1]
            && a.pads == [0; 4]
            && (geom.h * geom.w).is_multiple_of(4)
            && !depthwise;
        if self.naive || depthwise {
            // Unpacked weights [M][CG][KH][KW]: the naive baseline and the depthwise kernel.
            let (family, entry) =
                if self.naive { (Family::Naive, "naive_conv2d") } else { (Family::Conv, "depthwise") };
            let wg = self.wg;
            let raw = self.buf(node.inputs[1]);
            let bias = self.conv_bias(node, m);
            let xb = self.buf(x);
            let naive = self.naive;
            let kernel = Kernel::new(family, entry, &[("ACT", geom.act), ("WG", wg as u32)]);
            self.push(
                ni,
                kernel,
                vec![(1, Buf::Value(y)), (2, xb), (5, raw), (4, bias)],
                Box::new(move |b| {
                    let per_row = if naive { geom.ow } else { div_up(geom.ow, 4) };
                    let items = b * m * geom.oh * per_row;
                    (div_up(items, wg) as u64, geom.words(b, items))
                }),
            );
            return Ok(());
        }
        let mg = geom.mg();
        let w = wt.data();
        let (entry, xbind) = if pointwise { ("conv1x1", 6) } else { ("conv2d", 2) };
        self.push_tiled_conv(ni, node, geom, entry, xbind, |gi, ch, kk| w[(gi * mg + ch) * k + kk]);
        Ok(())
    }

    fn conv_transpose(&mut self, ni: usize, node: &Node, a: &ConvTransposeAttrs) -> Result<()> {
        let (x, y) = (node.inputs[0], node.outputs[0]);
        let wt = self.g.value(node.inputs[1]).constant().expect("checked").clone();
        let geom = ConvGeom::new(
            &self.dims(x),
            &self.dims(y),
            wt.shape(),
            a.groups,
            a.stride,
            a.pads,
            a.dilation,
            a.activation,
        );
        // w: [C][MG][KH][KW]; reduction index k = (ci*KH + ky)*KW + kx within the group.
        let (cg, mg, khw) = (geom.cg(), geom.mg(), geom.kh * geom.kw);
        let w = wt.data();
        self.push_tiled_conv(ni, node, geom, "conv_transpose", 2, |gi, ch, kk| {
            w[((gi * cg + kk / khw) * mg + ch) * khw + kk % khw]
        });
        Ok(())
    }

    /// Packs a constant B [batch..][K][N] (or its transpose) into vec4 rows.
    fn pack_const_b(&mut self, name: String, data: &[f32], mats: usize, kdim: usize, n: usize, trans: bool) -> Buf {
        let nq = div_up(n, 4);
        let mut packed = vec![0.0f32; mats * kdim * nq * 4];
        for mat in 0..mats {
            for kk in 0..kdim {
                for j in 0..n {
                    let src = if trans { mat * n * kdim + j * kdim + kk } else { mat * kdim * n + kk * n + j };
                    packed[(mat * kdim + kk) * nq * 4 + j] = data[src];
                }
            }
        }
        self.constant(name, packed)
    }

    fn gemm(&mut self, ni: usize, node: &Node, a: &GemmAttrs) -> Result<()> {
        let (x, y) = (node.inputs[0], node.outputs[0]);
        let kdim = self.dims(x)[0];
        let n = self.dims(y)[0];
        let bt = self.g.value(node.inputs[1]).constant().expect("checked").clone();
        let (act, fa, fb) = act_of(a.activation);
        let xb = self.buf(x);
        let wg = self.wg;
        // C broadcast to [batch, N]: strides of a row and of a column (0 where it broadcasts).
        let (cbuf, c_sm, c_sn) = match node.inputs.get(2) {
            Some(&cv) => {
                let s = sym_shape(self.g.value(cv));
                let (rows, cols) = match s.len() {
                    0 => (1, 1),
                    1 => (1, s[0]),
                    _ => (s[s.len() - 2], s[s.len() - 1]),
                };
                let c_sn = usize::from(cols != 1);
                let c_sm = if rows == 1 { 0 } else { cols };
                (Some(self.buf(cv)), c_sm, c_sn)
            }
            None => (None, 0, 0),
        };
        if self.naive {
            if cbuf.is_some() && (c_sm != 0 || a.beta != 1.0) || a.alpha != 1.0 {
                return Err(node_err(
                    node,
                    "the naive baseline kernel only supports alpha = beta = 1 and a per-column C".into(),
                ));
            }
            let raw = self.buf(node.inputs[1]);
            let bias = match cbuf {
                Some(b) if c_sn == 1 => b,
                _ => self.zeros(format!("{}.bias", node.name), n),
            };
            let (sbk, sbn) = if a.trans_b { (1, kdim) } else { (n, 1) };
            let kernel = Kernel::new(Family::Naive, "naive_matmul", &[("ACT", act), ("WG", wg as u32)]);
            self.push(
                ni,
                kernel,
                vec![(1, Buf::Value(y)), (2, xb), (5, raw), (4, bias)],
                Box::new(move |b| {
                    let items = b * n;
                    let mut p = Words::new();
                    p.u(0, b).u(1, n).u(2, kdim).u(3, kdim).u(4, 1).u(5, sbk).u(6, sbn).u(7, items);
                    (div_up(items, wg) as u64, p.done())
                }),
            );
            return Ok(());
        }
        let has_bias = cbuf.is_some();
        let cb = match cbuf {
            Some(b) => b,
            None => self.zeros(format!("{}.c", node.name), 4),
        };
        let dense =
            Dense { kdim, n, trans_b: a.trans_b, alpha: a.alpha, beta: a.beta, has_bias, c_sm, c_sn, act, fa, fb };
        self.push_dense(ni, node, xb, bt.data(), cb, dense, Box::new(|b| b));
        Ok(())
    }

    /// A product with a constant 2-D B ([K, N], or [N, K] when `trans_b`) as matmul
    /// dispatches over column chunks, each chunk's packed B within the device's binding limit.
    /// `rows` gives the rows of A (all leading dimensions folded) at a batch.
    #[allow(clippy::too_many_arguments)]
    fn push_dense(
        &mut self,
        ni: usize,
        node: &Node,
        a: Buf,
        b: &[f32],
        c: Buf,
        d: Dense,
        rows: Box<dyn Fn(usize) -> usize + Send + Sync>,
    ) {
        let rows: std::sync::Arc<dyn Fn(usize) -> usize + Send + Sync> = rows.into();
        let wg = self.wg;
        // Columns per chunk: a multiple of 4 whose packed rows fit one binding.
        let per_col = (d.kdim * 4) as u64;
        let fit = ((self.max_binding / per_col) as usize / 4 * 4).max(4);
        let chunks = d.n.div_ceil(fit);
        let kernel = Kernel::new(Family::Matmul, "matmul", &[("ACT", d.act), ("WG", wg as u32)]);
        for ci in 0..chunks {
            let n0 = ci * fit;
            let w = fit.min(d.n - n0);
            // Columns n0..n0+w of B' = B or B^T, packed as [K][w].
            let cols: Vec<f32> = (0..d.kdim)
                .flat_map(|k| (n0..n0 + w).map(move |j| if d.trans_b { b[j * d.kdim + k] } else { b[k * d.n + j] }))
                .collect();
            let name =
                if chunks == 1 { format!("{}.packed_b", node.name) } else { format!("{}.packed_b{ci}", node.name) };
            let bb = self.pack_const_b(name, &cols, 1, d.kdim, w, false);
            let rows = rows.clone();
            self.push(
                ni,
                kernel.clone(),
                vec![(1, Buf::Value(node.outputs[0])), (2, a), (3, bb), (4, c)],
                Box::new(move |b| {
                    let m = rows(b);
                    let (mq, nq) = (div_up(m, 4), div_up(w, 4));
                    let items = mq * nq;
                    let mut p = Words::new();
                    p.u(0, m).u(1, w).u(2, d.kdim).u(3, nq).u(4, d.kdim).u(5, 1).u(6, 1).u(7, 1).u(8, 1).u(9, 1);
                    p.f(18, d.alpha).f(19, d.beta).u(20, d.has_bias as usize).u(21, d.c_sm).u(22, d.c_sn);
                    p.f(27, d.fa).f(28, d.fb).u(29, items).u(30, mq).u(31, d.n).u(32, n0);
                    (div_up(items, wg) as u64, p.done())
                }),
            );
        }
    }

    fn matmul(&mut self, ni: usize, node: &Node, activation: Option<Activation>) -> Result<()> {
        let (av, bv, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
        let (act, fa, fb) = act_of(activation);
        let wg = self.wg;
        let sa = self.shape_fn(av);
        let sb = self.shape_fn(bv);
        let sb1 = sb(1);
        let (kdim, n) = (sb1[sb1.len() - 2], sb1[sb1.len() - 1]);
        let nq = div_up(n, 4);
        let b_const = self.g.value(bv).constant().cloned();
        let ab = self.buf(av);
        let kernel = Kernel::new(Family::Matmul, "matmul", &[("ACT", act), ("WG", wg as u32)]);
        let zero = self.zeros(format!("{}.c", node.name), 4);

        // Constant 2-D B: every leading dimension of A folds into the rows.
        if let (Some(bt), 2) = (&b_const, sb1.len()) {
            let dense = Dense {
                kdim,
                n,
                trans_b: false,
                alpha: 1.0,
                beta: 0.0,
                has_bias: false,
                c_sm: 0,
                c_sn: 0,
                act,
                fa,
                fb,
            };
            self.push_dense(
                ni,
                node,
                ab,
                bt.data(),
                zero,
                dense,
                Box::new(move |b| {
                    let s = sa(b);
                    numel(&s[..s.len() - 1])
                }),
            );
            return Ok(());
        }

        let out_batch_rank = self.g.value(y).rank() - 2;
        if out_batch_rank > 4 {
            return Err(node_err(node, format!("{out_batch_rank} batch dimensions; at most 4 are supported")));
        }
        // B into the packed layout: constant at compile time, activation by a pack_b dispatch.
        let b_mats_max = numel(&sb(self.max_batch)[..sb1.len() - 2]);
        let bbuf = match &b_const {
            Some(bt) => {
                let mats = numel(&sb1[..sb1.len() - 2]);
                self.pack_const_b(format!("{}.packed_b", node.name), bt.data(), mats, kdim, n, false)
            }
            None => {
                self.out.scratch.push((format!("{}.packed_b", node.name), (b_mats_max * kdim * nq * 16) as u64));
                let scratch = Buf::Scratch(self.out.scratch.len() - 1);
                let src = self.buf(bv);
                let sbf = self.shape_fn(bv);
                let pk = Kernel::new(Family::Matmul, "pack_b", &[("WG", wg as u32)]);
                self.push(
                    ni,
                    pk,
                    vec![(7, scratch), (2, src)],
                    Box::new(move |b| {
                        let s = sbf(b);
                        let mats = numel(&s[..s.len() - 2]);
                        let items = mats * kdim * nq;
                        let mut p = Words::new();
                        p.u(0, kdim).u(1, n).u(2, nq).u(3, n).u(4, 1).u(5, kdim * n).u(6, items);
                        (div_up(items, wg) as u64, p.done())
                    }),
                );
                scratch
            }
        };
        self.push(
            ni,
            kernel,
            vec![(1, Buf::Value(y)), (2, ab), (3, bbuf), (4, zero)],
            Box::new(move |b| {
                let (a, bs) = (sa(b), sb(b));
                let m = a[a.len() - 2];
                let out_b = {
                    let mut o = vec![];
                    let (ab_, bb_) = (&a[..a.len() - 2], &bs[..bs.len() - 2]);
                    let r = ab_.len().max(bb_.len());
                    for i in 0..r {
                        let da = if i + ab_.len() >= r { ab_[i + ab_.len() - r] } else { 1 };
                        let db = if i + bb_.len() >= r { bb_[i + bb_.len() - r] } else { 1 };
                        o.push(da.max(db));
                    }
                    o
                };
                // Per-batch-dim offsets of A (elements) and packed B (vec4s); 0 where broadcast.
                let offsets = |dims: &[usize], mat: usize| -> Vec<usize> {
                    let off = out_b.len() - dims.len();
                    let mut st = vec![0; out_b.len()];
                    let mut acc = mat;
                    for i in (0..dims.len()).rev() {
                        st[off + i] = if dims[i] == 1 { 0 } else { acc };
                        acc *= dims[i];
                    }
                    st
                };
                let a_st = offsets(&a[..a.len() - 2], m * kdim);
                let b_st = offsets(&bs[..bs.len() - 2], kdim * nq);
                let pad = 4 - out_b.len();
                let mut d4 = [1usize; 4];
                let (mut a4, mut b4) = ([0usize; 4], [0usize; 4]);
                d4[pad..].copy_from_slice(&out_b);
                a4[pad..].copy_from_slice(&a_st);
                b4[pad..].copy_from_slice(&b_st);
                let mats = numel(&out_b);
                let mq = div_up(m, 4);
                let items = mats * mq * nq;
                let mut p = Words::new();
                p.u(0, m).u(1, n).u(2, kdim).u(3, nq).u(4, kdim).u(5, 1).u(6, mats).u(7, d4[1]).u(8, d4[2]).u(9, d4[3]);
                for i in 0..4 {
                    p.u(10 + i, a4[i]).u(14 + i, b4[i]);
                }
                p.f(18, 1.0).f(19, 0.0).f(27, fa).f(28, fb).u(29, items).u(30, mq).u(31, n).u(32, 0);
                (div_up(items, wg) as u64, p.done())
            }),
        );
        Ok(())
    }
}
