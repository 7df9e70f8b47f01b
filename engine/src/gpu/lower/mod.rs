//! Lowering: each node of a static graph becomes zero or more dispatches of a specialised
//! kernel with its parameter words, one file per op family (mirroring `shaders/`). Reshapes
//! become aliases (no work); constants are uploaded in the device's word types, weights
//! packed into the layouts the kernels read.
//!
//! Every value lives on the device as 32-bit words: f32 for the float types (float16,
//! bfloat16, the float8 types and float4e2m1 are computed in f32 and rounded after each node
//! that makes them; float64 is computed in f32), i32 for every integer type (the 4- and 2-bit
//! ones wrapped to their range) and bool (0 or 1). int64 and uint32 values must fit in i32:
//! constants are checked here, inputs when they are uploaded. A constant 8-, 4- or 2-bit
//! tensor read only by `DequantizeLinear` is uploaded packed instead, several values a word
//! (see `quant.rs`).

mod conv;
mod convert;
mod elementwise;
mod index;
mod layout;
mod matmul;
mod norm;
mod pool;
mod quant;
mod recurrent;
mod reduce;
mod sample;
mod signal;

use std::collections::HashMap;

use super::kernels::{Family, Kernel};
use crate::error::{EngineError, Result};
use crate::graph::{Graph, Node, ValueId};
use crate::ops::*;
use crate::tensor::{DType, Tensor, strides};

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

/// One kernel launch.
pub(crate) struct Dispatch {
    /// Node it belongs to (index in the graph; `usize::MAX` for the conversions at the
    /// graph's edges).
    pub node: usize,
    /// Kernel to run.
    pub kernel: Kernel,
    /// (binding number, buffer).
    pub bindings: Vec<(u32, Buf)>,
    /// Workgroups (folded into a 2-D grid when above the device limit).
    pub groups: u64,
    /// Parameter words.
    pub params: Vec<u32>,
}

/// A lowered graph.
pub(crate) struct Lowered {
    pub dispatches: Vec<Dispatch>,
    /// Constant buffers: (name, 32-bit words).
    pub consts: Vec<(String, Vec<u32>)>,
    /// Scratch buffers: (name, bytes).
    pub scratch: Vec<(String, u64)>,
    /// Values that share the buffer of another value (reshapes).
    pub alias: HashMap<ValueId, ValueId>,
}

/// Parameter words of one dispatch (64 words, 256 bytes).
pub(crate) struct Words(Vec<u32>);

pub(crate) const PARAM_WORDS: usize = 64;

impl Words {
    pub fn new() -> Self {
        Words(vec![0; PARAM_WORDS])
    }
    pub fn u(&mut self, i: usize, v: usize) -> &mut Self {
        self.0[i] = v as u32;
        self
    }
    pub fn i(&mut self, i: usize, v: i64) -> &mut Self {
        self.0[i] = v as i32 as u32;
        self
    }
    pub fn f(&mut self, i: usize, v: f32) -> &mut Self {
        self.0[i] = v.to_bits();
        self
    }
    pub fn done(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.0)
    }
}

pub(crate) fn div_up(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// How a value's words are read on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// f32 words.
    Float,
    /// i32 words (integers and bools).
    Int,
}

pub(crate) fn class_of(d: DType) -> Class {
    if d.is_float() { Class::Float } else { Class::Int }
}

/// Bits and signedness (1 or 0) of an integer type's values in their 32-bit device words
/// (64- and 32-bit types are held as i32); a bool is 1 bit, unsigned.
pub(crate) fn int_bits(d: DType) -> (usize, usize) {
    match d {
        DType::Bool => (1, 0),
        DType::I2 => (2, 1),
        DType::U2 => (2, 0),
        DType::I4 => (4, 1),
        DType::U4 => (4, 0),
        DType::I8 => (8, 1),
        DType::U8 => (8, 0),
        DType::I16 => (16, 1),
        DType::U16 => (16, 0),
        _ => (32, 1),
    }
}

/// The rounding a narrow float type's values take after each operation (the `round16`
/// kernel's mode, also the `cast_*` kernels' target mode; `narrow_float` in convert.wgsl):
/// 1 float16, 2 bfloat16, 3 float8e4m3fn, 4 float8e4m3fnuz, 5 float8e5m2, 6 float8e5m2fnuz,
/// 7 float8e8m0, 8 float4e2m1.
pub(crate) fn round_mode(d: DType) -> Option<usize> {
    match d {
        DType::F16 => Some(1),
        DType::BF16 => Some(2),
        DType::F8E4M3FN => Some(3),
        DType::F8E4M3FNUZ => Some(4),
        DType::F8E5M2 => Some(5),
        DType::F8E5M2FNUZ => Some(6),
        DType::F8E8M0 => Some(7),
        DType::F4E2M1 => Some(8),
        _ => None,
    }
}

/// The device words of a tensor: f32 bits for floats, i32 for integers and bools; an integer
/// outside the i32 range is an error naming the tensor.
pub(crate) fn device_words(t: &Tensor, name: &str) -> std::result::Result<Vec<u32>, String> {
    if t.dtype().is_float() {
        return Ok(t.to_f32s().into_iter().map(f32::to_bits).collect());
    }
    let v = t.to_i64s();
    if let Some(&bad) = v.iter().find(|&&x| x < i32::MIN as i64 || x > i32::MAX as i64) {
        return Err(format!(
            "{} tensor '{name}' holds {bad}, outside the int32 range the device computes in (int64 values are \
             held as int32 on the GPU)",
            t.dtype()
        ));
    }
    Ok(v.into_iter().map(|x| x as i32 as u32).collect())
}

/// Lowering state.
pub(crate) struct Ctx<'a> {
    pub g: &'a Graph,
    pub out: Lowered,
    raw: HashMap<ValueId, usize>,
    pub wg: usize,
    pub naive: bool,
    pub max_binding: u64,
}

/// Lowers every node of `g`. `wg` is the workgroup size of 1-D kernels; `max_binding` the
/// device's largest storage binding in bytes (constant operands larger than it are split).
pub(crate) fn lower(g: &Graph, naive: bool, wg: u32, max_binding: u64) -> Result<Lowered> {
    let mut cx = Ctx {
        g,
        out: Lowered { dispatches: vec![], consts: vec![], scratch: vec![], alias: HashMap::new() },
        raw: HashMap::new(),
        wg: wg as usize,
        naive,
        max_binding,
    };
    for (i, node) in g.nodes().iter().enumerate() {
        // Kernels index with 32-bit integers.
        for &v in node.inputs.iter().chain(&node.outputs) {
            let n = g.value(v).numel();
            if n >= i32::MAX as usize / 4 {
                return Err(node_err(
                    node,
                    format!(
                        "tensor '{}' has {n} elements; kernels index up to 2^29 elements, use a smaller batch or input",
                        g.value(v).name
                    ),
                ));
            }
        }
        if node.outputs.iter().all(|&o| g.value(o).numel() == 0) {
            continue; // nothing to compute
        }
        cx.node(i, node)?;
        cx.round_16bit(i, node);
    }
    Ok(cx.out)
}

pub(crate) fn node_err(node: &Node, reason: String) -> EngineError {
    EngineError::InvalidNode { node: node.name.clone(), op: node.op.name().into(), reason }
}

/// Pads a shape and its strides on the left to rank 6.
pub(crate) fn rank6(node: &Node, shape: &[usize], strides: &[i64]) -> Result<([usize; 6], [i64; 6])> {
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

pub(crate) fn istrides(shape: &[usize]) -> Vec<i64> {
    strides(shape).into_iter().map(|s| s as i64).collect()
}

/// Strides of `s` aligned to the output shape `o`, 0 where `s` broadcasts.
pub(crate) fn bstrides(s: &[usize], o: &[usize]) -> Vec<i64> {
    let st = istrides(s);
    let off = o.len() - s.len();
    (0..o.len()).map(|i| if i < off || s[i - off] == 1 { 0 } else { st[i - off] }).collect()
}

/// A copy region with size-1 dimensions dropped and dimensions merged where both strides
/// run on contiguously (fewer dimensions to index, and ranks above 6 fit the kernel).
pub(crate) fn compact(region: &[usize], a: &[i64], b: &[i64]) -> (Vec<usize>, Vec<i64>, Vec<i64>) {
    let (mut d, mut sa, mut sb): (Vec<usize>, Vec<i64>, Vec<i64>) = (vec![], vec![], vec![]);
    for i in 0..region.len() {
        if region[i] == 1 {
            continue;
        }
        if let (Some(ld), Some(la), Some(lb)) = (d.last_mut(), sa.last_mut(), sb.last_mut())
            && *la == a[i] * region[i] as i64
            && *lb == b[i] * region[i] as i64
        {
            *ld *= region[i];
            *la = a[i];
            *lb = b[i];
            continue;
        }
        d.push(region[i]);
        sa.push(a[i]);
        sb.push(b[i]);
    }
    if d.is_empty() {
        return (vec![1], vec![0], vec![0]);
    }
    (d, sa, sb)
}

pub(crate) fn act_of(a: Option<Activation>) -> (u32, f32, f32) {
    a.map_or((0, 0.0, 0.0), |a| a.code())
}

impl Ctx<'_> {
    /// A constant buffer of raw words (at least 16 bytes).
    pub fn words(&mut self, name: String, mut data: Vec<u32>) -> Buf {
        while data.len() < 4 {
            data.push(0);
        }
        self.out.consts.push((name, data));
        Buf::Const(self.out.consts.len() - 1)
    }

    /// A constant buffer of floats.
    pub fn constant(&mut self, name: String, data: Vec<f32>) -> Buf {
        self.words(name, data.into_iter().map(f32::to_bits).collect())
    }

    /// An activation's buffer, or a constant uploaded in its device words (once).
    pub fn buf(&mut self, node: &Node, v: ValueId) -> Result<Buf> {
        let val = self.g.value(v);
        match val.constant() {
            None => Ok(Buf::Value(v)),
            Some(t) => {
                if let Some(&i) = self.raw.get(&v) {
                    return Ok(Buf::Const(i));
                }
                let words = device_words(t, &val.name).map_err(|e| node_err(node, e))?;
                let b = self.words(val.name.clone(), words);
                if let Buf::Const(i) = b {
                    self.raw.insert(v, i);
                }
                Ok(b)
            }
        }
    }

    pub fn zeros(&mut self, name: String, n: usize) -> Buf {
        self.words(name, vec![0; n])
    }

    /// A scratch buffer of `bytes`.
    pub fn scratch(&mut self, name: String, bytes: u64) -> Buf {
        self.out.scratch.push((name, bytes.max(16)));
        Buf::Scratch(self.out.scratch.len() - 1)
    }

    pub fn push(&mut self, node: usize, kernel: Kernel, bindings: Vec<(u32, Buf)>, groups: u64, params: Vec<u32>) {
        self.out.dispatches.push(Dispatch { node, kernel, bindings, groups, params });
    }

    /// Shape of a value.
    pub fn shape(&self, v: ValueId) -> Vec<usize> {
        self.g.value(v).shape.clone()
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.g.value(v).dtype
    }

    /// A 1-D kernel's workgroup count for `items` invocations.
    pub fn groups(&self, items: usize) -> u64 {
        div_up(items, self.wg) as u64
    }

    /// Makes `y` share the buffer of `x`.
    pub fn alias(&mut self, x: ValueId, y: ValueId) {
        let root = *self.out.alias.get(&x).unwrap_or(&x);
        self.out.alias.insert(y, root);
    }

    fn node(&mut self, ni: usize, node: &Node) -> Result<()> {
        match node.op.family() {
            OpFamily::Conv => conv::lower(self, ni, node),
            OpFamily::Matmul => matmul::lower(self, ni, node),
            OpFamily::Pool => pool::lower(self, ni, node),
            OpFamily::Elementwise => elementwise::lower(self, ni, node),
            OpFamily::Convert => convert::lower(self, ni, node),
            OpFamily::Reduce => reduce::lower(self, ni, node),
            OpFamily::Norm => norm::lower(self, ni, node),
            OpFamily::Layout => layout::lower(self, ni, node),
            OpFamily::Index => index::lower(self, ni, node),
            OpFamily::Host => Err(node_err(node, "host operations run on the CPU, never inside a device graph".into())),
            OpFamily::Sample => sample::lower(self, ni, node),
            OpFamily::Recurrent => recurrent::lower(self, ni, node),
            OpFamily::Quant => quant::lower(self, ni, node),
            OpFamily::Signal => signal::lower(self, ni, node),
        }
    }

    /// After a node computing float16 or bfloat16 values in f32: round them to their type.
    fn round_16bit(&mut self, ni: usize, node: &Node) {
        let moves_only = node.op.moves_values();
        if moves_only {
            return;
        }
        for &o in &node.outputs {
            let Some(mode) = round_mode(self.dtype(o)) else { continue };
            let n = self.g.value(o).numel();
            let kernel = Kernel::new(Family::Convert, "round16", &[("WG", self.wg as u32)]);
            let groups = self.groups(n);
            self.push(ni, kernel, vec![(9, Buf::Value(o))], groups, Words::new().u(0, n).u(1, mode).done());
        }
    }

    /// A strided copy of 32-bit words from `src` into `dst`: `region` dims, source and
    /// destination strides and offsets (elements).
    #[allow(clippy::too_many_arguments)]
    pub fn copy(
        &mut self,
        ni: usize,
        node: &Node,
        dst: Buf,
        src: Buf,
        region: &[usize],
        src_strides: &[i64],
        dst_strides: &[i64],
        src_off: i64,
        dst_off: i64,
    ) -> Result<()> {
        let (region, src_strides, dst_strides) = compact(region, src_strides, dst_strides);
        let (rd, rs) = rank6(node, &region, &src_strides)?;
        let (_, rds) = rank6(node, &region, &dst_strides)?;
        let items: usize = region.iter().product();
        if items == 0 {
            return Ok(());
        }
        let kernel = Kernel::new(Family::Layout, "strided_copy", &[("WG", self.wg as u32)]);
        let mut p = Words::new();
        p.u(0, items);
        for k in 0..6 {
            p.u(1 + k, rd[k]).i(7 + k, rs[k]).i(13 + k, rds[k]);
        }
        p.i(19, src_off).i(20, dst_off);
        let groups = self.groups(items);
        self.push(ni, kernel, vec![(1, dst), (2, src)], groups, p.done());
        Ok(())
    }

    /// A float copy of an integer value (an f32 scratch), for kernels that compute in
    /// floats (exact up to 2^24).
    pub fn as_float(&mut self, ni: usize, node: &Node, v: ValueId) -> Result<Buf> {
        let b = self.buf(node, v)?;
        let n = self.g.value(v).numel();
        Ok(self.int_to_float(ni, b, n, format!("{}.{}.as_float", node.name, self.g.value(v).name)))
    }

    /// Writes the f32 values of `src`, integers computed as floats, into the integer or bool
    /// value `y`: truncated and clamped to its type's range (so the empty maximum, -inf,
    /// becomes the type's minimum as in the reference).
    pub fn float_to_int(&mut self, ni: usize, src: Buf, y: ValueId) {
        let (bits, signed) = int_bits(self.dtype(y));
        // Saturating conversion (flag 2).
        let flag = 2;
        let n = self.g.value(y).numel();
        let kernel = Kernel::new(Family::Convert, "cast_f2i", &[("WG", self.wg as u32)]);
        let groups = self.groups(n);
        let p = Words::new().u(0, n).u(1, bits).u(2, signed).u(3, flag).done();
        self.push(ni, kernel, vec![(5, src), (8, Buf::Value(y))], groups, p);
    }

    /// A float copy of an integer buffer (an f32 scratch of `n` elements).
    fn int_to_float(&mut self, ni: usize, src: Buf, n: usize, name: String) -> Buf {
        let dst = self.scratch(name, (n * 4) as u64);
        let kernel = Kernel::new(Family::Convert, "cast_i2f", &[("WG", self.wg as u32)]);
        let groups = self.groups(n);
        self.push(ni, kernel, vec![(6, src), (7, dst)], groups, Words::new().u(0, n).done());
        dst
    }
}
