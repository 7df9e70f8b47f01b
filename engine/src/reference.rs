//! CPU reference executor: runs a [`Graph`] node by node in plain Rust, with straightforward
//! loops and sums accumulated in f64. It is slow and simple on purpose: it is the oracle
//! against which every GPU kernel is tested.
//!
//! Every tensor is held at its full shape: `[batch, dims...]` for activations, its own shape
//! for constants. Axes are full-tensor axes (axis 0 is the batch), as in [`Op`]. Each op
//! computes its output shape from its inputs and attributes on its own; [`run`] then checks
//! it against the shape the graph inferred, so the reference also cross-checks shape
//! inference. Intermediate values are dropped after their last use.

use crate::error::{EngineError, Result};
use crate::graph::{Graph, Node, pool_out, slice_axis};
use crate::ops::*;
use crate::tensor::{Tensor, numel, strides};

/// Runs the whole graph on the CPU. `inputs` are in the order of `graph.inputs()`, each with
/// its full shape [batch, dims...]; all inputs must share the same batch >= 1.
/// Returns the outputs in the order of `graph.outputs()`.
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let batch = check_inputs(graph, inputs)?;
    let n_values = graph.values().len();

    // Values that must survive: graph outputs. Others are dropped after their last use.
    let mut is_output = vec![false; n_values];
    for &o in graph.outputs() {
        is_output[o.index()] = true;
    }
    let mut last_use: Vec<Option<usize>> = vec![None; n_values];
    for (i, node) in graph.nodes().iter().enumerate() {
        for v in node.inputs.iter().chain(&node.outputs) {
            last_use[v.index()] = Some(i);
        }
    }

    let mut env: Vec<Option<Tensor>> = vec![None; n_values];
    for (&id, t) in graph.inputs().iter().zip(inputs) {
        env[id.index()] = Some(t.clone());
    }

    for (i, node) in graph.nodes().iter().enumerate() {
        let results = {
            let ins = node.inputs.iter().map(|&v| fetch(graph, &env, v.index())).collect::<Result<Vec<&Tensor>>>()?;
            eval_node(node, &ins).map_err(|reason| node_error(node, reason))?
        };
        if results.len() != node.outputs.len() {
            return Err(node_error(
                node,
                format!("the reference produced {} outputs, the node has {}", results.len(), node.outputs.len()),
            ));
        }
        for (k, (&o, t)) in node.outputs.iter().zip(results).enumerate() {
            let expected = graph.value(o).shape_at(batch);
            if t.shape() != expected.as_slice() {
                return Err(node_error(
                    node,
                    format!(
                        "output {k} computed by the reference has shape {:?}, but the graph \
                         infers {expected:?} (a bug in shape inference or in the reference)",
                        t.shape()
                    ),
                ));
            }
            env[o.index()] = Some(t);
        }
        for v in node.inputs.iter().chain(&node.outputs) {
            if last_use[v.index()] == Some(i) && !is_output[v.index()] {
                env[v.index()] = None;
            }
        }
    }

    graph.outputs().iter().map(|&o| fetch(graph, &env, o.index()).cloned()).collect()
}

/// Checks the inputs given to [`run`] and returns their common batch.
fn check_inputs(graph: &Graph, inputs: &[Tensor]) -> Result<usize> {
    let ids = graph.inputs();
    let input_error = |input: &str, reason: String| EngineError::Input {
        graph: graph.name.clone(),
        input: input.to_string(),
        reason,
    };
    if inputs.len() != ids.len() {
        let names: Vec<&str> = ids.iter().map(|&i| graph.value(i).name.as_str()).collect();
        let input = names.get(inputs.len()).copied().unwrap_or("(extra input)");
        return Err(input_error(
            input,
            format!("the graph takes {} input(s) ({}), got {}", ids.len(), names.join(", "), inputs.len()),
        ));
    }
    let mut batch: Option<(usize, &str)> = None;
    for (&id, t) in ids.iter().zip(inputs) {
        let v = graph.value(id);
        let s = t.shape();
        if s.len() != v.dims.len() + 1 || s[1..] != v.dims[..] {
            let dims: Vec<String> = v.dims.iter().map(|d| d.to_string()).collect();
            return Err(input_error(&v.name, format!("expected shape [batch, {}], got {s:?}", dims.join(", "))));
        }
        if s[0] == 0 {
            return Err(input_error(&v.name, "batch 0: the batch must be at least 1".into()));
        }
        match batch {
            None => batch = Some((s[0], &v.name)),
            Some((b, first)) if b != s[0] => {
                return Err(input_error(
                    &v.name,
                    format!(
                        "batch {} differs from batch {b} of input '{first}'; all inputs must \
                         share the same batch",
                        s[0]
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    batch.map(|(b, _)| b).ok_or_else(|| EngineError::InvalidGraph {
        graph: graph.name.clone(),
        reason: "the graph has no inputs, so the batch is unknown".into(),
    })
}

/// The tensor of a value: a constant of the graph or a value computed so far.
fn fetch<'a>(graph: &'a Graph, env: &'a [Option<Tensor>], v: usize) -> Result<&'a Tensor> {
    let value = &graph.values()[v];
    if let Some(c) = value.constant() {
        return Ok(c);
    }
    env[v].as_ref().ok_or_else(|| EngineError::InvalidGraph {
        graph: graph.name.clone(),
        reason: format!("value '{}' is read before it is computed or after it was dropped", value.name),
    })
}

fn node_error(node: &Node, reason: String) -> EngineError {
    EngineError::InvalidNode { node: node.name.clone(), op: node.op.name().into(), reason }
}

/// Result of one op; the error is a reason, wrapped with the node's name by [`run`].
type OpResult<T> = std::result::Result<T, String>;

/// Evaluates one node on its input tensors.
fn eval_node(node: &Node, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let arity = |lo: usize, hi: usize| -> OpResult<()> {
        if ins.len() < lo || ins.len() > hi {
            Err(format!("takes {lo}..={hi} inputs, got {}", ins.len()))
        } else {
            Ok(())
        }
    };
    let opt = |i: usize| ins.get(i).copied();
    let out = match &node.op {
        Op::Conv(a) => {
            arity(2, 3)?;
            conv(ins[0], ins[1], opt(2), a)?
        }
        Op::ConvTranspose(a) => {
            arity(2, 3)?;
            conv_transpose(ins[0], ins[1], opt(2), a)?
        }
        Op::Gemm(a) => {
            arity(2, 3)?;
            gemm(ins[0], ins[1], opt(2), a)?
        }
        Op::MatMul { activation } => {
            arity(2, 2)?;
            matmul(ins[0], ins[1], *activation)?
        }
        Op::Pool(a) => {
            arity(1, 1)?;
            pool(ins[0], a)?
        }
        Op::GlobalPool(kind) => {
            arity(1, 1)?;
            global_pool(ins[0], *kind)?
        }
        Op::Binary { op, activation } => {
            arity(2, 2)?;
            let t = binary(ins[0], ins[1], *op)?;
            let data = t.data().iter().map(|&v| activate(*activation, v)).collect();
            tensor(t.shape().to_vec(), data)?
        }
        Op::Unary(act) => {
            arity(1, 1)?;
            let data = ins[0].data().iter().map(|&v| act.apply(v)).collect();
            tensor(ins[0].shape().to_vec(), data)?
        }
        Op::Softmax { axis } => {
            arity(1, 1)?;
            softmax(ins[0], *axis)?
        }
        Op::LayerNorm { axis, epsilon } => {
            arity(2, 3)?;
            layer_norm(ins[0], ins[1], opt(2), *axis, *epsilon)?
        }
        Op::BatchNorm { epsilon } => {
            arity(5, 5)?;
            batch_norm(ins[0], [ins[1], ins[2], ins[3], ins[4]], *epsilon)?
        }
        Op::Concat { axis } => {
            arity(1, usize::MAX)?;
            concat(ins, *axis)?
        }
        Op::Split { axis, sizes } => {
            arity(1, 1)?;
            return split(ins[0], *axis, sizes);
        }
        Op::Slice { axes, starts, ends, steps } => {
            arity(1, 1)?;
            slice(ins[0], axes, starts, ends, steps)?
        }
        Op::Reshape { shape } => {
            arity(1, 1)?;
            let x = ins[0];
            let batch = *x.shape().first().ok_or("input has rank 0, no batch axis")?;
            let mut full = vec![batch];
            full.extend_from_slice(shape);
            if numel(&full) != x.len() {
                return Err(format!("cannot reshape {:?} to {full:?}", x.shape()));
            }
            tensor(full, x.data().to_vec())?
        }
        Op::Transpose { perm } => {
            arity(1, 1)?;
            transpose(ins[0], perm)?
        }
        Op::Pad { pads, mode } => {
            arity(1, 1)?;
            pad(ins[0], pads, *mode)?
        }
        Op::Resize(a) => {
            arity(1, 1)?;
            resize(ins[0], a)?
        }
        Op::ReduceMean { axes, keepdims } => {
            arity(1, 1)?;
            reduce_mean(ins[0], axes, *keepdims)?
        }
        Op::Lrn(a) => {
            arity(1, 1)?;
            lrn(ins[0], a)?
        }
    };
    Ok(vec![out])
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn tensor(shape: Vec<usize>, data: Vec<f32>) -> OpResult<Tensor> {
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

fn activate(act: Option<Activation>, v: f32) -> f32 {
    act.map_or(v, |a| a.apply(v))
}

/// The four dimensions of a rank-4 tensor.
fn dims4(t: &Tensor, what: &str) -> OpResult<[usize; 4]> {
    match *t.shape() {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(format!("{what} must have rank 4, has shape {:?}", t.shape())),
    }
}

fn check_axis(axis: usize, rank: usize) -> OpResult<()> {
    if axis < rank { Ok(()) } else { Err(format!("axis {axis} is out of range for rank {rank}")) }
}

/// Calls `f` with every multi-index of `shape`, in row-major order (once for rank 0, never
/// for an empty shape).
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0; shape.len()];
    loop {
        f(&idx);
        let mut axis = shape.len();
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            idx[axis] += 1;
            if idx[axis] < shape[axis] {
                break;
            }
            idx[axis] = 0;
        }
    }
}

/// Numpy broadcast of two concrete shapes.
fn broadcast_shapes(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let r = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= r { s[i + s.len() - r] } else { 1 }
    };
    (0..r)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// For each element of `out` (row-major), the flat index of the element of a tensor of shape
/// `input` that numpy broadcasting maps to it.
fn broadcast_map(input: &[usize], out: &[usize]) -> OpResult<Vec<usize>> {
    let bad = || format!("shape {input:?} does not broadcast to {out:?}");
    if input.len() > out.len() {
        return Err(bad());
    }
    let offset = out.len() - input.len();
    let in_strides = strides(input);
    // Stride per output axis: 0 for axes the input lacks or has with size 1.
    let mut s = vec![0; out.len()];
    for (i, &d) in input.iter().enumerate() {
        if d == out[offset + i] {
            s[offset + i] = in_strides[i];
        } else if d != 1 {
            return Err(bad());
        }
    }
    let mut map = Vec::with_capacity(numel(out));
    for_each_index(out, |idx| map.push(idx.iter().zip(&s).map(|(i, s)| i * s).sum()));
    Ok(map)
}

/// Gathers a tensor of the same rank as `x`: output element `idx` reads the input element at
/// `(tables[0][idx[0]], tables[1][idx[1]], ...)`, or is `fill` where a table entry is None.
/// The output shape is the lengths of the tables.
fn gather_axes(x: &Tensor, tables: &[Vec<Option<usize>>], fill: f32) -> OpResult<Tensor> {
    let shape = x.shape();
    if tables.len() != shape.len() {
        return Err(format!("{} index tables for rank {}", tables.len(), shape.len()));
    }
    for (t, &d) in tables.iter().zip(shape) {
        if t.iter().flatten().any(|&i| i >= d) {
            return Err(format!("source index out of range for a dimension of {d}"));
        }
    }
    let st = strides(shape);
    let out_shape: Vec<usize> = tables.iter().map(|t| t.len()).collect();
    let mut data = Vec::with_capacity(numel(&out_shape));
    for_each_index(&out_shape, |idx| {
        let mut flat = 0;
        for (axis, &i) in idx.iter().enumerate() {
            match tables[axis][i] {
                Some(src) => flat += src * st[axis],
                None => {
                    data.push(fill);
                    return;
                }
            }
        }
        data.push(x.data()[flat]);
    });
    tensor(out_shape, data)
}

/// Identity index table of a dimension.
fn identity(d: usize) -> Vec<Option<usize>> {
    (0..d).map(Some).collect()
}

/// Output length of a convolution sweep.
fn conv_len(len: usize, pb: usize, pe: usize, k: usize, d: usize, s: usize) -> OpResult<usize> {
    if k == 0 || d == 0 || s == 0 {
        return Err(format!("kernel {k}, dilation {d} and stride {s} must be >= 1"));
    }
    let eff = d * (k - 1) + 1;
    (len + pb + pe)
        .checked_sub(eff)
        .map(|span| span / s + 1)
        .ok_or_else(|| format!("window {eff} is larger than the padded input {}", len + pb + pe))
}

// ---------------------------------------------------------------------------------------------
// Convolutions and matrix products
// ---------------------------------------------------------------------------------------------

/// out[n][m][oy][ox] = bias[m] + sum over the channels c of m's group and the taps (ky, kx) of
/// x[n][c][oy*s - pad_top + ky*d][ox*s - pad_left + kx*d] * w[m][c - group start][ky][kx],
/// taps outside the input reading zero; then the activation.
fn conv(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, a: &ConvAttrs) -> OpResult<Tensor> {
    let [n, c, h, wd] = dims4(x, "input")?;
    let [m, cg, kh, kw] = dims4(w, "weight")?;
    let g = a.groups;
    if g == 0 || c % g != 0 || m % g != 0 || cg * g != c {
        return Err(format!("groups {g} do not fit input channels {c} and weight {:?}", w.shape()));
    }
    if let Some(b) = bias
        && b.shape() != [m]
    {
        return Err(format!("bias must have shape [{m}], has {:?}", b.shape()));
    }
    let (sh, sw) = (a.stride[0], a.stride[1]);
    let (dh, dw) = (a.dilation[0], a.dilation[1]);
    let (pt, pl) = (a.pads[0] as isize, a.pads[1] as isize);
    let oh = conv_len(h, a.pads[0], a.pads[2], kh, dh, sh)?;
    let ow = conv_len(wd, a.pads[1], a.pads[3], kw, dw, sw)?;
    let mg = m / g;
    let (xd, wdat) = (x.data(), w.data());
    let mut out = Vec::with_capacity(n * m * oh * ow);
    for ni in 0..n {
        for mi in 0..m {
            let group = mi / mg;
            let b = bias.map_or(0.0, |b| b.data()[mi] as f64);
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b;
                    for ci in 0..cg {
                        let cin = group * cg + ci;
                        for ky in 0..kh {
                            let iy = (oy * sh + ky * dh) as isize - pt;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * sw + kx * dw) as isize - pl;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let xv = xd[((ni * c + cin) * h + iy as usize) * wd + ix as usize];
                                let wv = wdat[((mi * cg + ci) * kh + ky) * kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out.push(activate(a.activation, acc as f32));
                }
            }
        }
    }
    tensor(vec![n, m, oh, ow], out)
}

/// Scatter formulation: every input pixel x[n][c][iy][ix] and tap (ky, kx) adds
/// x * w[c][mo][ky][kx] into out[n][group*Mg + mo][iy*s - pad_top + ky*d][ix*s - pad_left +
/// kx*d] when that lies inside the output; then bias and activation.
fn conv_transpose(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, a: &ConvTransposeAttrs) -> OpResult<Tensor> {
    let [n, c, h, wd] = dims4(x, "input")?;
    let [wc, mg, kh, kw] = dims4(w, "weight")?;
    let g = a.groups;
    if g == 0 || wc != c || c % g != 0 {
        return Err(format!("weight {:?} does not fit {c} input channels in {g} groups", w.shape()));
    }
    let m = mg * g;
    if let Some(b) = bias
        && b.shape() != [m]
    {
        return Err(format!("bias must have shape [{m}], has {:?}", b.shape()));
    }
    let cg = c / g;
    let out_len = |i: usize, len: usize, k: usize| -> OpResult<usize> {
        let full = (len as i64 - 1) * a.stride[i] as i64
            + a.dilation[i] as i64 * (k as i64 - 1)
            + 1
            + a.output_padding[i] as i64
            - (a.pads[i] + a.pads[i + 2]) as i64;
        if full > 0 { Ok(full as usize) } else { Err(format!("padding {:?} leaves an empty output", a.pads)) }
    };
    let oh = out_len(0, h, kh)?;
    let ow = out_len(1, wd, kw)?;
    let (sh, sw) = (a.stride[0] as isize, a.stride[1] as isize);
    let (dh, dw) = (a.dilation[0] as isize, a.dilation[1] as isize);
    let (pt, pl) = (a.pads[0] as isize, a.pads[1] as isize);
    let (xd, wdat) = (x.data(), w.data());
    let mut acc = vec![0f64; n * m * oh * ow];
    for ni in 0..n {
        for ci in 0..c {
            let group = ci / cg;
            for mo in 0..mg {
                let mi = group * mg + mo;
                for iy in 0..h {
                    for ix in 0..wd {
                        let xv = xd[((ni * c + ci) * h + iy) * wd + ix] as f64;
                        for ky in 0..kh {
                            let oy = iy as isize * sh - pt + ky as isize * dh;
                            if oy < 0 || oy >= oh as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ox = ix as isize * sw - pl + kx as isize * dw;
                                if ox < 0 || ox >= ow as isize {
                                    continue;
                                }
                                let wv = wdat[((ci * mg + mo) * kh + ky) * kw + kx] as f64;
                                acc[((ni * m + mi) * oh + oy as usize) * ow + ox as usize] += xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    let plane = oh * ow;
    let out = acc
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let b = bias.map_or(0.0, |b| b.data()[(i / plane) % m] as f64);
            activate(a.activation, (v + b) as f32)
        })
        .collect();
    tensor(vec![n, m, oh, ow], out)
}

/// Y[i][j] = alpha * sum_k A[i][k] * B'[k][j] + beta * C[i][j] (C broadcast to [N, M]).
fn gemm(a: &Tensor, b: &Tensor, c: Option<&Tensor>, attrs: &GemmAttrs) -> OpResult<Tensor> {
    if attrs.trans_a {
        return Err("trans_a is not supported".into());
    }
    let [n, k] = *a.shape() else {
        return Err(format!("A must have rank 2, has shape {:?}", a.shape()));
    };
    let [b0, b1] = *b.shape() else {
        return Err(format!("B must have rank 2, has shape {:?}", b.shape()));
    };
    let (bk, m) = if attrs.trans_b { (b1, b0) } else { (b0, b1) };
    if bk != k {
        return Err(format!("A {:?} and B {:?} do not multiply", a.shape(), b.shape()));
    }
    let c_map = match c {
        Some(c) => Some((c.data(), broadcast_map(c.shape(), &[n, m])?)),
        None => None,
    };
    let (ad, bd) = (a.data(), b.data());
    let mut out = Vec::with_capacity(n * m);
    for i in 0..n {
        for j in 0..m {
            let mut acc = 0f64;
            for kk in 0..k {
                let bv = if attrs.trans_b { bd[j * k + kk] } else { bd[kk * m + j] };
                acc += ad[i * k + kk] as f64 * bv as f64;
            }
            let mut y = attrs.alpha as f64 * acc;
            if let Some((cd, map)) = &c_map {
                y += attrs.beta as f64 * cd[map[i * m + j]] as f64;
            }
            out.push(activate(attrs.activation, y as f32));
        }
    }
    tensor(vec![n, m], out)
}

/// Numpy matmul of rank >= 2 operands, the leading dimensions broadcast.
fn matmul(a: &Tensor, b: &Tensor, act: Option<Activation>) -> OpResult<Tensor> {
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() < 2 || sb.len() < 2 {
        return Err(format!("operands must have rank >= 2, have {sa:?} and {sb:?}"));
    }
    let (ra, rb) = (sa.len(), sb.len());
    let (p, k, q) = (sa[ra - 2], sa[ra - 1], sb[rb - 1]);
    if sb[rb - 2] != k {
        return Err(format!("inner dimensions differ: {sa:?} x {sb:?}"));
    }
    let out_batch = broadcast_shapes(&sa[..ra - 2], &sb[..rb - 2])?;
    let a_map = broadcast_map(&sa[..ra - 2], &out_batch)?;
    let b_map = broadcast_map(&sb[..rb - 2], &out_batch)?;
    let (ad, bd) = (a.data(), b.data());
    let mut out = Vec::with_capacity(a_map.len() * p * q);
    for (&ia, &ib) in a_map.iter().zip(&b_map) {
        let (a_off, b_off) = (ia * p * k, ib * k * q);
        for i in 0..p {
            for j in 0..q {
                let mut acc = 0f64;
                for kk in 0..k {
                    acc += ad[a_off + i * k + kk] as f64 * bd[b_off + kk * q + j] as f64;
                }
                out.push(activate(act, acc as f32));
            }
        }
    }
    let mut shape = out_batch;
    shape.extend([p, q]);
    tensor(shape, out)
}

// ---------------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------------

/// Max pooling takes the largest in-bounds tap (padding taps are ignored; a window with no
/// in-bounds tap gives f32::MIN, like onnxruntime). Average pooling follows PyTorch: the
/// window is cut at the end of the padding, its size there is the count_include_pad divisor,
/// and the sum runs over the part inside the input, whose size is the other divisor.
fn pool(x: &Tensor, a: &PoolAttrs) -> OpResult<Tensor> {
    let [n, c, h, w] = dims4(x, "input")?;
    let [kh, kw] = a.kernel;
    let [sh, sw] = a.stride;
    let [dh, dw] = a.dilation;
    let [pt, pl, pb, pr] = a.pads;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || dh == 0 || dw == 0 {
        return Err("kernel, stride and dilation must be >= 1".into());
    }
    if a.kind == PoolKind::Average && a.dilation != [1, 1] {
        return Err("average pooling with dilation is not supported".into());
    }
    let too_big = || format!("window {:?} is larger than the padded input", a.kernel);
    let oh = pool_out(h, pt, pb, kh, dh, sh, a.ceil_mode).ok_or_else(too_big)?;
    let ow = pool_out(w, pl, pr, kw, dw, sw, a.ceil_mode).ok_or_else(too_big)?;
    let (hi, wi) = (h as i64, w as i64);
    let xd = x.data();
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        let xp = &xd[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            let hstart = (oy * sh) as i64 - pt as i64;
            for ox in 0..ow {
                let wstart = (ox * sw) as i64 - pl as i64;
                let v = match a.kind {
                    PoolKind::Max => {
                        let mut best: Option<f32> = None;
                        for ky in 0..kh {
                            let iy = hstart + (ky * dh) as i64;
                            if iy < 0 || iy >= hi {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = wstart + (kx * dw) as i64;
                                if ix < 0 || ix >= wi {
                                    continue;
                                }
                                let xv = xp[iy as usize * w + ix as usize];
                                best = Some(best.map_or(xv, |b| b.max(xv)));
                            }
                        }
                        best.unwrap_or(f32::MIN)
                    }
                    PoolKind::Average => {
                        let hend = (hstart + kh as i64).min(hi + pb as i64);
                        let wend = (wstart + kw as i64).min(wi + pr as i64);
                        let pool_size = (hend - hstart) * (wend - wstart);
                        let (hs, he) = (hstart.max(0), hend.min(hi));
                        let (ws, we) = (wstart.max(0), wend.min(wi));
                        let mut sum = 0f64;
                        for iy in hs..he {
                            for ix in ws..we {
                                sum += xp[iy as usize * w + ix as usize] as f64;
                            }
                        }
                        let inside = (he - hs).max(0) * (we - ws).max(0);
                        let divisor = if a.count_include_pad { pool_size } else { inside };
                        if divisor > 0 { (sum / divisor as f64) as f32 } else { 0.0 }
                    }
                };
                out.push(v);
            }
        }
    }
    tensor(vec![n, c, oh, ow], out)
}

/// Max or mean over all spatial dimensions of [N, C, spatial...] to [N, C, 1, ...].
fn global_pool(x: &Tensor, kind: PoolKind) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 3 {
        return Err(format!("input must be [N, C, spatial...], has shape {s:?}"));
    }
    let inner = numel(&s[2..]);
    let out: Vec<f32> = x
        .data()
        .chunks(inner.max(1))
        .map(|plane| match kind {
            PoolKind::Max => plane.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            PoolKind::Average => (plane.iter().map(|&v| v as f64).sum::<f64>() / plane.len() as f64) as f32,
        })
        .collect();
    let mut shape = vec![s[0], s[1]];
    shape.extend(std::iter::repeat_n(1, s.len() - 2));
    tensor(shape, out)
}

// ---------------------------------------------------------------------------------------------
// Elementwise and normalisations
// ---------------------------------------------------------------------------------------------

fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> OpResult<Tensor> {
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    let a_map = broadcast_map(a.shape(), &shape)?;
    let b_map = broadcast_map(b.shape(), &shape)?;
    let data = a_map.iter().zip(&b_map).map(|(&i, &j)| op.apply(a.data()[i], b.data()[j])).collect();
    tensor(shape, data)
}

/// (outer, len, inner) of a tensor around one axis.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (numel(&shape[..axis]), shape[axis], numel(&shape[axis + 1..]))
}

/// exp(x - max) / sum exp(x - max) along the axis.
fn softmax(x: &Tensor, axis: usize) -> OpResult<Tensor> {
    check_axis(axis, x.shape().len())?;
    let (outer, len, inner) = split_at_axis(x.shape(), axis);
    let xd = x.data();
    let mut out = vec![0f32; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let max = (0..len).map(|j| xd[at(j)] as f64).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..len).map(|j| (xd[at(j)] as f64 - max).exp()).sum();
            for j in 0..len {
                out[at(j)] = ((xd[at(j)] as f64 - max).exp() / sum) as f32;
            }
        }
    }
    tensor(x.shape().to_vec(), out)
}

/// Normalises over the axes `axis..rank` (mean and biased variance), then scale and bias
/// broadcast to the normalised shape.
fn layer_norm(x: &Tensor, scale: &Tensor, bias: Option<&Tensor>, axis: usize, eps: f32) -> OpResult<Tensor> {
    let s = x.shape();
    check_axis(axis, s.len())?;
    let norm_shape = &s[axis..];
    let len = numel(norm_shape);
    let scale_map = broadcast_map(scale.shape(), norm_shape)?;
    let bias_map = match bias {
        Some(b) => Some((b.data(), broadcast_map(b.shape(), norm_shape)?)),
        None => None,
    };
    let mut out = Vec::with_capacity(x.len());
    for row in x.data().chunks(len.max(1)) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, &v) in row.iter().enumerate() {
            let mut y = (v as f64 - mean) * inv * scale.data()[scale_map[j]] as f64;
            if let Some((bd, map)) = &bias_map {
                y += bd[map[j]] as f64;
            }
            out.push(y as f32);
        }
    }
    tensor(s.to_vec(), out)
}

/// y = (x - mean[c]) / sqrt(var[c] + eps) * scale[c] + bias[c], channel c on axis 1.
fn batch_norm(x: &Tensor, params: [&Tensor; 4], eps: f32) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(format!("input must have a channel axis, has shape {s:?}"));
    }
    let (_, c, inner) = split_at_axis(s, 1);
    for (p, what) in params.iter().zip(["scale", "bias", "mean", "var"]) {
        if p.shape() != [c] {
            return Err(format!("{what} must have shape [{c}], has {:?}", p.shape()));
        }
    }
    let [scale, bias, mean, var] = params.map(|p| p.data());
    let mut out = Vec::with_capacity(x.len());
    for (i, &v) in x.data().iter().enumerate() {
        let ch = (i / inner.max(1)) % c;
        let y =
            (v as f64 - mean[ch] as f64) / (var[ch] as f64 + eps as f64).sqrt() * scale[ch] as f64 + bias[ch] as f64;
        out.push(y as f32);
    }
    tensor(s.to_vec(), out)
}

/// y = x / (bias + alpha / size * sum of x^2 over the channels [c - (size-1)/2, c +
/// ceil((size-1)/2)] clipped to the tensor)^beta.
fn lrn(x: &Tensor, a: &LrnAttrs) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 3 {
        return Err(format!("input must be [N, C, spatial...], has shape {s:?}"));
    }
    if a.size == 0 {
        return Err("size must be >= 1".into());
    }
    let (n, c, inner) = split_at_axis(s, 1);
    let (before, after) = ((a.size - 1) / 2, a.size / 2);
    let xd = x.data();
    let mut out = Vec::with_capacity(x.len());
    for ni in 0..n {
        for ci in 0..c {
            let (lo, hi) = (ci.saturating_sub(before), (ci + after).min(c - 1));
            for i in 0..inner {
                let at = |ch: usize| (ni * c + ch) * inner + i;
                let sq: f64 = (lo..=hi).map(|ch| (xd[at(ch)] as f64).powi(2)).sum();
                let denom = (a.bias as f64 + a.alpha as f64 / a.size as f64 * sq).powf(a.beta as f64);
                out.push((xd[at(ci)] as f64 / denom) as f32);
            }
        }
    }
    tensor(s.to_vec(), out)
}

// ---------------------------------------------------------------------------------------------
// Data movement
// ---------------------------------------------------------------------------------------------

fn concat(ins: &[&Tensor], axis: usize) -> OpResult<Tensor> {
    let first = ins.first().ok_or("takes at least one input")?.shape();
    check_axis(axis, first.len())?;
    let mut shape = first.to_vec();
    shape[axis] = 0;
    for t in ins {
        let s = t.shape();
        if s.len() != first.len() || (0..s.len()).any(|i| i != axis && s[i] != first[i]) {
            return Err(format!("{s:?} does not match {first:?} outside axis {axis}"));
        }
        shape[axis] += s[axis];
    }
    let (outer, _, inner) = split_at_axis(first, axis);
    let mut out = Vec::with_capacity(numel(&shape));
    for o in 0..outer {
        for t in ins {
            let chunk = t.shape()[axis] * inner;
            out.extend_from_slice(&t.data()[o * chunk..(o + 1) * chunk]);
        }
    }
    tensor(shape, out)
}

fn split(x: &Tensor, axis: usize, sizes: &[usize]) -> OpResult<Vec<Tensor>> {
    let s = x.shape();
    check_axis(axis, s.len())?;
    if sizes.iter().sum::<usize>() != s[axis] {
        return Err(format!("sizes {sizes:?} do not add up to {}, the length of axis {axis}", s[axis]));
    }
    let (outer, len, inner) = split_at_axis(s, axis);
    let mut start = 0;
    let mut outs = vec![];
    for &size in sizes {
        let mut data = Vec::with_capacity(outer * size * inner);
        for o in 0..outer {
            let base = (o * len + start) * inner;
            data.extend_from_slice(&x.data()[base..base + size * inner]);
        }
        let mut shape = s.to_vec();
        shape[axis] = size;
        outs.push(tensor(shape, data)?);
        start += size;
    }
    Ok(outs)
}

/// Element i of a sliced axis reads start + i * step, as normalised by `slice_axis`.
fn slice(x: &Tensor, axes: &[usize], starts: &[i64], ends: &[i64], steps: &[i64]) -> OpResult<Tensor> {
    let s = x.shape();
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
        return Err("axes, starts, ends and steps must have the same length".into());
    }
    let mut tables: Vec<Option<Vec<Option<usize>>>> = vec![None; s.len()];
    for (i, &axis) in axes.iter().enumerate() {
        check_axis(axis, s.len())?;
        if tables[axis].is_some() {
            return Err(format!("axis {axis} appears twice"));
        }
        if steps[i] == 0 {
            return Err("step 0 is not allowed".into());
        }
        let (start, step, len) = slice_axis(s[axis], starts[i], ends[i], steps[i]);
        let table = (0..len as i64)
            .map(|j| {
                let src = start + j * step;
                if src >= 0 && src < s[axis] as i64 { Ok(Some(src as usize)) } else { Err(src) }
            })
            .collect::<std::result::Result<Vec<_>, i64>>()
            .map_err(|src| format!("slice of axis {axis} reads index {src}, outside 0..{}", s[axis]))?;
        tables[axis] = Some(table);
    }
    let tables: Vec<Vec<Option<usize>>> =
        tables.into_iter().zip(s).map(|(t, &d)| t.unwrap_or_else(|| identity(d))).collect();
    gather_axes(x, &tables, 0.0)
}

/// Output axis i is input axis perm[i].
fn transpose(x: &Tensor, perm: &[usize]) -> OpResult<Tensor> {
    let s = x.shape();
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if sorted != (0..s.len()).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of 0..{}", s.len()));
    }
    let in_strides = strides(s);
    let out_shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let mut out = Vec::with_capacity(x.len());
    for_each_index(&out_shape, |idx| {
        let flat: usize = idx.iter().zip(perm).map(|(&i, &p)| i * in_strides[p]).sum();
        out.push(x.data()[flat]);
    });
    tensor(out_shape, out)
}

/// Source index of padded position `j` (relative to the first input element) on an axis of
/// length `d`, or None for constant padding.
fn pad_source(j: i64, d: usize, mode: PadMode) -> Option<usize> {
    let d = d as i64;
    if (0..d).contains(&j) {
        return Some(j as usize);
    }
    match mode {
        PadMode::Constant(_) => None,
        PadMode::Edge => Some(j.clamp(0, d - 1) as usize),
        PadMode::Reflect => {
            if d == 1 {
                return Some(0);
            }
            // Mirror without repeating the edge: the pattern 0, 1, .., d-1, d-2, .., 1 repeats.
            let period = 2 * (d - 1);
            let m = j.rem_euclid(period);
            Some(if m < d { m } else { period - m } as usize)
        }
    }
}

fn pad(x: &Tensor, pads: &[(usize, usize)], mode: PadMode) -> OpResult<Tensor> {
    let s = x.shape();
    if pads.len() != s.len() {
        return Err(format!("needs {} (begin, end) pairs, got {}", s.len(), pads.len()));
    }
    let tables: Vec<Vec<Option<usize>>> = s
        .iter()
        .zip(pads)
        .map(|(&d, &(begin, end))| (0..d + begin + end).map(|o| pad_source(o as i64 - begin as i64, d, mode)).collect())
        .collect();
    let fill = if let PadMode::Constant(v) = mode { v } else { 0.0 };
    gather_axes(x, &tables, fill)
}

/// Source coordinate of output coordinate `x_out` (ONNX coordinate_transformation_mode),
/// computed in f32 like onnxruntime and the shaders.
fn source_coord(mode: CoordMode, x_out: usize, scale: f32, in_len: usize, out_len: usize) -> f32 {
    let x = x_out as f32;
    match mode {
        CoordMode::HalfPixel => (x + 0.5) / scale - 0.5,
        CoordMode::PytorchHalfPixel => {
            if out_len > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordMode::AlignCorners => {
            if out_len > 1 {
                x * (in_len - 1) as f32 / (out_len - 1) as f32
            } else {
                0.0
            }
        }
        CoordMode::Asymmetric => x / scale,
        CoordMode::TfHalfPixelForNn => (x + 0.5) / scale,
    }
}

/// Nearest source index of each output position of one axis.
fn nearest_table(nm: NearestMode, coord: CoordMode, scale: f32, in_len: usize, out_len: usize) -> Vec<Option<usize>> {
    (0..out_len)
        .map(|o| {
            let x = source_coord(coord, o, scale, in_len, out_len);
            let r = match nm {
                NearestMode::RoundPreferFloor => (x - 0.5).ceil(),
                NearestMode::RoundPreferCeil => (x + 0.5).floor(),
                NearestMode::Floor => x.floor(),
                NearestMode::Ceil => x.ceil(),
            };
            Some((r as i64).clamp(0, in_len as i64 - 1) as usize)
        })
        .collect()
}

/// (i0, i1, fraction) of each output position of one axis for linear interpolation.
fn linear_table(coord: CoordMode, scale: f32, in_len: usize, out_len: usize) -> Vec<(usize, usize, f64)> {
    (0..out_len)
        .map(|o| {
            let x = source_coord(coord, o, scale, in_len, out_len).clamp(0.0, (in_len - 1) as f32);
            let i0 = x.floor() as usize;
            let i1 = (i0 + 1).min(in_len - 1);
            (i0, i1, (x - i0 as f32) as f64)
        })
        .collect()
}

fn resize(x: &Tensor, a: &ResizeAttrs) -> OpResult<Tensor> {
    let [n, c, h, w] = dims4(x, "input")?;
    let [oh, ow] = a.out_hw;
    if h == 0 || w == 0 || oh == 0 || ow == 0 {
        return Err("input and output sizes must be >= 1".into());
    }
    if !(a.scales[0] > 0.0 && a.scales[1] > 0.0) {
        return Err(format!("scales {:?} must be positive", a.scales));
    }
    match a.mode {
        ResizeMode::Nearest(nm) => {
            let tables = [
                identity(n),
                identity(c),
                nearest_table(nm, a.coord, a.scales[0], h, oh),
                nearest_table(nm, a.coord, a.scales[1], w, ow),
            ];
            gather_axes(x, &tables, 0.0)
        }
        ResizeMode::Linear => {
            let ty = linear_table(a.coord, a.scales[0], h, oh);
            let tx = linear_table(a.coord, a.scales[1], w, ow);
            let mut out = Vec::with_capacity(n * c * oh * ow);
            for plane in x.data().chunks(h * w) {
                let at = |y: usize, x: usize| plane[y * w + x] as f64;
                for &(y0, y1, fy) in &ty {
                    for &(x0, x1, fx) in &tx {
                        let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                        let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                        out.push((top * (1.0 - fy) + bottom * fy) as f32);
                    }
                }
            }
            tensor(vec![n, c, oh, ow], out)
        }
    }
}

/// Mean over the axes; reduced axes become 1 (keepdims) or disappear.
fn reduce_mean(x: &Tensor, axes: &[usize], keepdims: bool) -> OpResult<Tensor> {
    let s = x.shape();
    let mut reduced = vec![false; s.len()];
    for &axis in axes {
        check_axis(axis, s.len())?;
        if reduced[axis] {
            return Err(format!("axis {axis} appears twice"));
        }
        reduced[axis] = true;
    }
    let kept_shape: Vec<usize> = s.iter().zip(&reduced).map(|(&d, &r)| if r { 1 } else { d }).collect();
    let kept_strides = strides(&kept_shape);
    let mut sums = vec![0f64; numel(&kept_shape)];
    let mut i = 0;
    for_each_index(s, |idx| {
        let o: usize = (0..s.len()).filter(|&a| !reduced[a]).map(|a| idx[a] * kept_strides[a]).sum();
        sums[o] += x.data()[i] as f64;
        i += 1;
    });
    let count = x.len() / sums.len().max(1);
    let out = sums.iter().map(|&v| (v / count.max(1) as f64) as f32).collect();
    let shape =
        if keepdims { kept_shape } else { s.iter().zip(&reduced).filter(|&(_, &r)| !r).map(|(&d, _)| d).collect() };
    tensor(shape, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::tensor::Rng;

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), data.to_vec()).unwrap()
    }

    fn seq(shape: &[usize]) -> Tensor {
        let n = numel(shape);
        t(shape, &(1..=n).map(|v| v as f32).collect::<Vec<_>>())
    }

    #[track_caller]
    fn assert_close(got: &Tensor, shape: &[usize], expected: &[f32], tol: f32) {
        assert_eq!(got.shape(), shape, "shape");
        assert_eq!(got.len(), expected.len(), "length");
        for (i, (g, e)) in got.data().iter().zip(expected).enumerate() {
            assert!((g - e).abs() <= tol, "element {i}: got {g}, expected {e}\n got {:?}", got.data());
        }
    }

    /// Builds a one-input graph with `f`, runs it on `x` and returns its single output.
    fn run1(x: &Tensor, f: impl FnOnce(&mut GraphBuilder, ValueId) -> ValueId) -> Tensor {
        let mut g = GraphBuilder::new("test");
        let xi = g.input("x", &x.shape()[1..]);
        let y = f(&mut g, xi);
        g.output(y);
        let graph = g.build().unwrap();
        let mut out = run(&graph, std::slice::from_ref(x)).unwrap();
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    use crate::graph::ValueId;

    fn conv1(x: &Tensor, w: Tensor, bias: Option<Tensor>, attrs: ConvAttrs) -> Tensor {
        run1(x, |g, xi| {
            let wi = g.constant("w", w);
            let bi = bias.map(|b| g.constant("b", b));
            g.conv("conv", xi, wi, bi, attrs).unwrap()
        })
    }

    // ----- convolution -----------------------------------------------------------------------

    #[test]
    fn conv_known_kernel() {
        // x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,2],[3,4]]:
        // out[i][j] = x[i][j] + 2 x[i][j+1] + 3 x[i+1][j] + 4 x[i+1][j+1].
        let x = seq(&[1, 1, 3, 3]);
        let y = conv1(&x, t(&[1, 1, 2, 2], &[1., 2., 3., 4.]), Some(t(&[1], &[0.5])), ConvAttrs::default());
        assert_close(&y, &[1, 1, 2, 2], &[37.5, 47.5, 67.5, 77.5], 0.0);
    }

    #[test]
    fn conv_padding_stride_dilation_activation() {
        let x = seq(&[1, 1, 3, 3]);
        let ones = t(&[1, 1, 3, 3], &[1.0; 9]);
        // Pad 1, all-ones kernel: sums of the 3x3 neighbourhoods.
        let y = conv1(&x, ones.clone(), None, ConvAttrs { pads: [1; 4], ..Default::default() });
        assert_close(&y, &[1, 1, 3, 3], &[12., 21., 16., 27., 45., 33., 24., 39., 28.], 0.0);
        // Same with stride 2: the corners only.
        let y = conv1(&x, ones.clone(), None, ConvAttrs { pads: [1; 4], stride: [2, 2], ..Default::default() });
        assert_close(&y, &[1, 1, 2, 2], &[12., 16., 24., 28.], 0.0);
        // Asymmetric padding: top 1 only, left 0 / right 1 -> 2x2 outputs ... (H 3+1-3+1 = 2, W 3+1-3+1 = 2).
        let y = conv1(&x, ones.clone(), None, ConvAttrs { pads: [1, 0, 0, 1], ..Default::default() });
        // (0,0): rows 0..2 cols 0..3 = 1+2+3+4+5+6 = 21; (0,1): rows 0..2 cols 1..3 (+pad) = 2+3+5+6 = 16
        // (1,0): rows 0..3 cols 0..3 = 45; (1,1): cols 1..3 = 2+3+5+6+8+9 = 33
        assert_close(&y, &[1, 1, 2, 2], &[21., 16., 45., 33.], 0.0);
        // Dilation 2 with a 2x2 kernel of ones: the four corners, 1+3+7+9.
        let y = conv1(&x, t(&[1, 1, 2, 2], &[1.0; 4]), None, ConvAttrs { dilation: [2, 2], ..Default::default() });
        assert_close(&y, &[1, 1, 1, 1], &[20.], 0.0);
        // Bias then fused activation: sums - 30 clipped to [0, 6].
        let y = conv1(
            &x,
            ones,
            Some(t(&[1], &[-30.0])),
            ConvAttrs { pads: [1; 4], activation: Some(Activation::Clip { min: 0.0, max: 6.0 }), ..Default::default() },
        );
        assert_close(&y, &[1, 1, 3, 3], &[0., 0., 0., 0., 6., 3., 0., 6., 0.], 0.0);
    }

    #[test]
    fn conv_multi_channel_sum() {
        // 2 input channels, 2 output channels, 1x1 kernels: out[m] = sum_c w[m][c] x[c].
        let x = t(&[1, 2, 1, 2], &[1., 2., 10., 20.]);
        let w = t(&[2, 2, 1, 1], &[1., 1., 2., -1.]);
        let y = conv1(&x, w, Some(t(&[2], &[0., 100.])), ConvAttrs::default());
        assert_close(&y, &[1, 2, 1, 2], &[11., 22., 92., 84.], 0.0);
    }

    /// Channels [lo, hi) of an NCHW tensor.
    fn channels(x: &Tensor, lo: usize, hi: usize) -> Tensor {
        let [n, c, h, w] = *x.shape() else { panic!() };
        let mut d = vec![];
        for ni in 0..n {
            d.extend_from_slice(&x.data()[(ni * c + lo) * h * w..(ni * c + hi) * h * w]);
        }
        t(&[n, hi - lo, h, w], &d)
    }

    /// Concatenation of NCHW tensors along channels.
    fn cat_channels(parts: &[Tensor]) -> Tensor {
        let n = parts[0].shape()[0];
        let (h, w) = (parts[0].shape()[2], parts[0].shape()[3]);
        let c: usize = parts.iter().map(|p| p.shape()[1]).sum();
        let mut d = vec![];
        for ni in 0..n {
            for p in parts {
                let pc = p.shape()[1];
                d.extend_from_slice(&p.data()[ni * pc * h * w..(ni + 1) * pc * h * w]);
            }
        }
        t(&[n, c, h, w], &d)
    }

    #[test]
    fn grouped_conv_equals_separate_convs() {
        let mut rng = Rng::new(3);
        let x = Tensor::random(vec![2, 4, 6, 5], &mut rng, -1.0, 1.0);
        let w = Tensor::random(vec![6, 2, 3, 3], &mut rng, -1.0, 1.0);
        let b = Tensor::random(vec![6], &mut rng, -1.0, 1.0);
        let attrs = ConvAttrs { pads: [1, 0, 2, 1], stride: [2, 1], groups: 2, ..Default::default() };
        let grouped = conv1(&x, w.clone(), Some(b.clone()), attrs.clone());
        let single = ConvAttrs { groups: 1, ..attrs };
        let parts: Vec<Tensor> = (0..2)
            .map(|g| {
                let wg = t(&[3, 2, 3, 3], &w.data()[g * 54..(g + 1) * 54]);
                let bg = t(&[3], &b.data()[g * 3..(g + 1) * 3]);
                conv1(&channels(&x, 2 * g, 2 * g + 2), wg, Some(bg), single.clone())
            })
            .collect();
        let expected = cat_channels(&parts);
        assert_eq!(grouped.shape(), &[2, 6, 4, 4]);
        assert!(grouped.max_abs_diff(&expected) < 1e-6, "{}", grouped.max_abs_diff(&expected));
    }

    #[test]
    fn depthwise_conv() {
        // Channel 0: ones (neighbourhood sums); channel 1: centre 2 (doubles);
        // channel 2: top-left 1 (out[i][j] = x[i-1][j-1], 0 outside).
        let x = t(&[1, 3, 3, 3], &(0..27).map(|v| (v % 9 + 1) as f32).collect::<Vec<_>>());
        let mut w = vec![1.0; 9];
        w.extend([0., 0., 0., 0., 2., 0., 0., 0., 0.]);
        w.extend([1., 0., 0., 0., 0., 0., 0., 0., 0.]);
        let y = conv1(&x, t(&[3, 1, 3, 3], &w), None, ConvAttrs { pads: [1; 4], groups: 3, ..Default::default() });
        #[rustfmt::skip]
        let expected = [
            12., 21., 16., 27., 45., 33., 24., 39., 28.,
            2., 4., 6., 8., 10., 12., 14., 16., 18.,
            0., 0., 0., 0., 1., 2., 0., 4., 5.,
        ];
        assert_close(&y, &[1, 3, 3, 3], &expected, 0.0);
    }

    /// Direct (gather) formula of a transposed convolution: out[n][m][oy][ox] = bias[m] + sum
    /// over c in m's group, ky, kx with oy + pad_top - ky*d = iy*s (iy inside) of x * w.
    fn conv_transpose_gather(
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        a: &ConvTransposeAttrs,
        oh: usize,
        ow: usize,
    ) -> Tensor {
        let [n, c, h, wd] = *x.shape() else { panic!() };
        let [_, mg, kh, kw] = *w.shape() else { panic!() };
        let g = a.groups;
        let (cg, m) = (c / g, mg * g);
        let mut out = vec![];
        for ni in 0..n {
            for mi in 0..m {
                let (group, mo) = (mi / mg, mi % mg);
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b.data()[mi] as f64;
                        for ci in group * cg..(group + 1) * cg {
                            for ky in 0..kh {
                                let ty = oy as i64 + a.pads[0] as i64 - (ky * a.dilation[0]) as i64;
                                if ty < 0 || ty % a.stride[0] as i64 != 0 || ty / a.stride[0] as i64 >= h as i64 {
                                    continue;
                                }
                                let iy = (ty / a.stride[0] as i64) as usize;
                                for kx in 0..kw {
                                    let tx = ox as i64 + a.pads[1] as i64 - (kx * a.dilation[1]) as i64;
                                    if tx < 0 || tx % a.stride[1] as i64 != 0 || tx / a.stride[1] as i64 >= wd as i64 {
                                        continue;
                                    }
                                    let ix = (tx / a.stride[1] as i64) as usize;
                                    let xv = x.data()[((ni * c + ci) * h + iy) * wd + ix] as f64;
                                    let wv = w.data()[((ci * mg + mo) * kh + ky) * kw + kx] as f64;
                                    acc += xv * wv;
                                }
                            }
                        }
                        out.push(acc as f32);
                    }
                }
            }
        }
        t(&[n, m, oh, ow], &out)
    }

    fn conv_t1(x: &Tensor, w: Tensor, bias: Option<Tensor>, attrs: ConvTransposeAttrs) -> Tensor {
        run1(x, |g, xi| {
            let wi = g.constant("w", w);
            let bi = bias.map(|b| g.constant("b", b));
            g.conv_transpose("convt", xi, wi, bi, attrs).unwrap()
        })
    }

    #[test]
    fn conv_transpose_hand_computed() {
        // Stride 2, 2x2 kernel of ones: each input pixel becomes a 2x2 block; output_padding 1
        // adds a zero row and column.
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let attrs = ConvTransposeAttrs { stride: [2, 2], output_padding: [1, 1], ..Default::default() };
        let y = conv_t1(&x, t(&[1, 1, 2, 2], &[1.0; 4]), None, attrs);
        #[rustfmt::skip]
        let expected = [
            1., 1., 2., 2., 0.,
            1., 1., 2., 2., 0.,
            3., 3., 4., 4., 0.,
            3., 3., 4., 4., 0.,
            0., 0., 0., 0., 0.,
        ];
        assert_close(&y, &[1, 1, 5, 5], &expected, 0.0);
        // Stride 1, 2x2 kernel [[1,2],[3,4]] on [[1,2],[3,4]]: full correlation sum.
        // out[0][0] = 1*1; out[0][1] = 2*1 + 1*2; out[0][2] = 2*2; out[1][0] = 3*1 + 1*3;
        // out[1][1] = 4*1 + 3*2 + 2*3 + 1*4 = 20; out[1][2] = 4*2 + 2*4 = 16; out[2][0] = 3*3;
        // out[2][1] = 4*3 + 3*4 = 24; out[2][2] = 16.
        let y = conv_t1(&x, t(&[1, 1, 2, 2], &[1., 2., 3., 4.]), Some(t(&[1], &[1.0])), ConvTransposeAttrs::default());
        assert_close(&y, &[1, 1, 3, 3], &[2., 5., 5., 7., 21., 17., 10., 25., 17.], 0.0);
    }

    #[test]
    fn conv_transpose_matches_gather_formula() {
        let mut rng = Rng::new(11);
        let cases = [
            ConvTransposeAttrs { stride: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 1], ..Default::default() },
            ConvTransposeAttrs {
                stride: [2, 3],
                pads: [0, 1, 2, 0],
                output_padding: [1, 2],
                groups: 2,
                ..Default::default()
            },
            ConvTransposeAttrs {
                stride: [2, 1],
                dilation: [2, 2],
                pads: [1, 0, 0, 1],
                output_padding: [0, 1],
                groups: 2,
                activation: Some(Activation::LeakyRelu { alpha: 0.1 }),
            },
        ];
        for attrs in cases {
            let x = Tensor::random(vec![2, 4, 3, 4], &mut rng, -1.0, 1.0);
            let w = Tensor::random(vec![4, 3, 3, 2], &mut rng, -1.0, 1.0);
            let m = 3 * attrs.groups;
            let b = Tensor::random(vec![m], &mut rng, -1.0, 1.0);
            let y = conv_t1(&x, w.clone(), Some(b.clone()), attrs.clone());
            let oh = 2 * attrs.stride[0] + attrs.dilation[0] * 2 + 1 + attrs.output_padding[0]
                - attrs.pads[0]
                - attrs.pads[2];
            let ow =
                3 * attrs.stride[1] + attrs.dilation[1] + 1 + attrs.output_padding[1] - attrs.pads[1] - attrs.pads[3];
            let mut expected = conv_transpose_gather(&x, &w, &b, &attrs, oh, ow);
            if let Some(act) = attrs.activation {
                expected.data_mut().iter_mut().for_each(|v| *v = act.apply(*v));
            }
            assert_eq!(y.shape(), expected.shape(), "{attrs:?}");
            assert!(y.max_abs_diff(&expected) < 1e-5, "{attrs:?}: {}", y.max_abs_diff(&expected));
        }
    }

    // ----- gemm and matmul -------------------------------------------------------------------

    #[test]
    fn gemm_trans_b_alpha_beta() {
        // A = [[1,2],[3,4]], B^T with B = [[1,0],[0,1],[1,1]]: A B^T = [[1,2,3],[3,4,7]];
        // alpha 2 and beta 0.5 with C = [1,2,3]: [[2.5,5,7.5],[6.5,9,15.5]].
        let a = t(&[2, 2], &[1., 2., 3., 4.]);
        let y = run1(&a, |g, ai| {
            let b = g.constant("b", t(&[3, 2], &[1., 0., 0., 1., 1., 1.]));
            let c = g.constant("c", t(&[3], &[1., 2., 3.]));
            let attrs = GemmAttrs { alpha: 2.0, beta: 0.5, trans_b: true, ..Default::default() };
            g.gemm("gemm", ai, b, Some(c), attrs).unwrap()
        });
        assert_close(&y, &[2, 3], &[2.5, 5., 7.5, 6.5, 9., 15.5], 0.0);
        // No transpose, C of shape [1, 1], ReLU: A B with B = [[1,-1],[1,-1]] -> [[3,-3],[7,-7]].
        let y = run1(&a, |g, ai| {
            let b = g.constant("b", t(&[2, 2], &[1., -1., 1., -1.]));
            let c = g.constant("c", t(&[1, 1], &[1.]));
            let attrs = GemmAttrs { activation: Some(Activation::Relu), ..Default::default() };
            g.gemm("gemm", ai, b, Some(c), attrs).unwrap()
        });
        assert_close(&y, &[2, 2], &[4., 0., 8., 0.], 0.0);
    }

    #[test]
    fn gemm_batched_c() {
        // C is an activation [N, 1] (per-row offsets).
        let mut g = GraphBuilder::new("gemm_c");
        let a = g.input("a", &[2]);
        let c = g.input("c", &[1]);
        let b = g.constant("b", t(&[2, 3], &[1., 2., 3., 4., 5., 6.]));
        let y = g.gemm("gemm", a, b, Some(c), GemmAttrs { beta: 10.0, ..Default::default() }).unwrap();
        g.output(y);
        let graph = g.build().unwrap();
        let out = run(&graph, &[t(&[2, 2], &[1., 0., 0., 1.]), t(&[2, 1], &[1., 2.])]).unwrap();
        assert_close(&out[0], &[2, 3], &[11., 12., 13., 24., 25., 26.], 0.0);
    }

    #[test]
    fn matmul_broadcast_constant_b() {
        // [N,2,3] x [3,4]: B = [I | ones], so A B = [A | row sums].
        let a = t(&[2, 2, 3], &[1., 2., 3., 4., 5., 6., -1., 0., 1., 2., 2., 2.]);
        let y = run1(&a, |g, ai| {
            let b = g.constant("b", t(&[3, 4], &[1., 0., 0., 1., 0., 1., 0., 1., 0., 0., 1., 1.]));
            g.matmul("mm", ai, b).unwrap()
        });
        #[rustfmt::skip]
        let expected = [1., 2., 3., 6., 4., 5., 6., 15., -1., 0., 1., 0., 2., 2., 2., 6.];
        assert_close(&y, &[2, 2, 4], &expected, 0.0);
    }

    #[test]
    fn matmul_leading_broadcast_batched_operands_activation() {
        // Constant A [2, 2, 2] = [I, swap] x batched B [N, 1, 2, 2]: batch dims [2] and [N, 1]
        // broadcast to [N, 2]; out[n][0] = B[n], out[n][1] = B[n] with its rows swapped.
        let b = t(&[2, 1, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let y = run1(&b, |g, bi| {
            let a = g.constant("a", t(&[2, 2, 2], &[1., 0., 0., 1., 0., 1., 1., 0.]));
            g.matmul("mm", a, bi).unwrap()
        });
        #[rustfmt::skip]
        let expected = [1., 2., 3., 4., 3., 4., 1., 2., 5., 6., 7., 8., 7., 8., 5., 6.];
        assert_close(&y, &[2, 2, 2, 2], &expected, 0.0);

        // Both operands batched, [N,1,3] x [N,3,2], with a fused ReLU.
        let mut g = GraphBuilder::new("mm2");
        let a = g.input("a", &[1, 3]);
        let bi = g.input("b", &[3, 2]);
        let y = g.add("mm", Op::MatMul { activation: Some(Activation::Relu) }, vec![a, bi]).unwrap();
        g.output(y);
        let graph = g.build().unwrap();
        let av = t(&[2, 1, 3], &[1., 2., 3., 1., 1., 1.]);
        let bv = t(&[2, 3, 2], &[1., -1., 1., -1., 1., -1., 1., 2., 3., 4., 5., 6.]);
        let out = run(&graph, &[av, bv]).unwrap();
        // Sample 0: [6, -6] -> [6, 0]; sample 1: [9, 12].
        assert_close(&out[0], &[2, 1, 2], &[6., 0., 9., 12.], 0.0);
    }

    // ----- pooling ---------------------------------------------------------------------------

    fn pool1(x: &Tensor, attrs: PoolAttrs) -> Tensor {
        run1(x, |g, xi| g.pool("pool", xi, attrs).unwrap())
    }

    #[test]
    fn average_pool_ceil_mode_count_include_pad() {
        // x[i][j] = 4i + j + 1 on 4x4, kernel 3, stride 2, pads 1, ceil mode: 3x3 outputs.
        // Row windows (and column windows) before clipping: [-1,2), [1,4), [3,5) (cut at
        // H + pad = 5), sizes 3, 3, 2; inside the input: {0,1}, {1,2,3}, {3}.
        let x = seq(&[1, 1, 4, 4]);
        let attrs = PoolAttrs { pads: [1; 4], ceil_mode: true, ..PoolAttrs::new(PoolKind::Average, [3, 3], [2, 2]) };
        let sums = [14., 30., 12., 57., 99., 36., 27., 45., 16.];
        let inside = [4., 6., 2., 6., 9., 3., 2., 3., 1.];
        let padded = [9., 9., 6., 9., 9., 6., 6., 6., 4.];
        let y = pool1(&x, attrs.clone());
        let expected: Vec<f32> = sums.iter().zip(&inside).map(|(s, d)| s / d).collect();
        assert_close(&y, &[1, 1, 3, 3], &expected, 1e-6);
        let y = pool1(&x, PoolAttrs { count_include_pad: true, ..attrs.clone() });
        let expected: Vec<f32> = sums.iter().zip(&padded).map(|(s, d)| s / d).collect();
        assert_close(&y, &[1, 1, 3, 3], &expected, 1e-6);
        // Without ceil mode the last window row/column is dropped.
        let y = pool1(&x, PoolAttrs { ceil_mode: false, count_include_pad: true, ..attrs });
        assert_close(&y, &[1, 1, 2, 2], &[14. / 9., 30. / 9., 57. / 9., 11.], 1e-6);
    }

    #[test]
    fn max_pool_ceil_dilation_and_padding() {
        let x = seq(&[1, 1, 4, 4]);
        let attrs = PoolAttrs { pads: [1; 4], ceil_mode: true, ..PoolAttrs::new(PoolKind::Max, [3, 3], [2, 2]) };
        // The largest element of each clipped window is its bottom-right one.
        let y = pool1(&x, attrs);
        assert_close(&y, &[1, 1, 3, 3], &[6., 8., 8., 14., 16., 16., 14., 16., 16.], 0.0);
        // Dilation 2, kernel 2: taps (i, j), (i, j+2), (i+2, j), (i+2, j+2).
        let x = t(&[1, 1, 4, 4], &[3., 1., 4., 1., 5., 9., 2., 6., 5., 3., 5., 8., 9., 7., 9., 3.]);
        let y = pool1(&x, PoolAttrs { dilation: [2, 2], ..PoolAttrs::new(PoolKind::Max, [2, 2], [1, 1]) });
        assert_close(&y, &[1, 1, 2, 2], &[5., 8., 9., 9.], 0.0);
        // Padding taps are ignored, not zero: all-negative input.
        let x = t(&[1, 1, 2, 2], &[-1., -2., -3., -4.]);
        let y = pool1(&x, PoolAttrs { pads: [1; 4], ..PoolAttrs::new(PoolKind::Max, [2, 2], [1, 1]) });
        assert_close(&y, &[1, 1, 3, 3], &[-1., -1., -2., -1., -1., -2., -3., -3., -4.], 0.0);
        // Asymmetric padding on an average pool (count_include_pad false): pads top 1 only.
        let x = seq(&[1, 1, 2, 2]);
        let y = pool1(&x, PoolAttrs { pads: [1, 0, 0, 0], ..PoolAttrs::new(PoolKind::Average, [2, 2], [1, 1]) });
        // Windows rows [-1,1) and [0,2), cols [0,2): means of {1,2} and {1,2,3,4}.
        assert_close(&y, &[1, 1, 2, 1], &[1.5, 2.5], 0.0);
    }

    #[test]
    fn global_pools() {
        let x = t(&[1, 2, 2, 2], &[1., 2., 3., 4., -1., -5., -2., -3.]);
        let y = run1(&x, |g, xi| g.global_pool("gp", xi, PoolKind::Average).unwrap());
        assert_close(&y, &[1, 2, 1, 1], &[2.5, -2.75], 0.0);
        let y = run1(&x, |g, xi| g.global_pool("gp", xi, PoolKind::Max).unwrap());
        assert_close(&y, &[1, 2, 1, 1], &[4., -1.], 0.0);
        // Rank 3: [N, C, L].
        let x = t(&[1, 2, 3], &[1., 2., 6., 0., 0., 3.]);
        let y = run1(&x, |g, xi| g.global_pool("gp", xi, PoolKind::Average).unwrap());
        assert_close(&y, &[1, 2, 1], &[3., 1.], 0.0);
    }

    // ----- elementwise -----------------------------------------------------------------------

    #[test]
    fn binary_broadcasting() {
        // [N,2,1] * [1,3] -> [N,2,3].
        let x = t(&[1, 2, 1], &[2., 3.]);
        let y = run1(&x, |g, xi| {
            let c = g.constant("c", t(&[1, 3], &[1., 10., 100.]));
            g.binary("mul", BinaryOp::Mul, xi, c).unwrap()
        });
        assert_close(&y, &[1, 2, 3], &[2., 20., 200., 3., 30., 300.], 0.0);
        // Constant first: [3] - [N,3].
        let x = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let y = run1(&x, |g, xi| {
            let c = g.constant("c", t(&[3], &[10., 20., 30.]));
            g.binary("sub", BinaryOp::Sub, c, xi).unwrap()
        });
        assert_close(&y, &[2, 3], &[9., 18., 27., 6., 15., 24.], 0.0);
        // Two activations, [N,2,2] / [N,1,2], and Add of a value with itself.
        let mut g = GraphBuilder::new("bin");
        let a = g.input("a", &[2, 2]);
        let b = g.input("b", &[1, 2]);
        let d = g.binary("div", BinaryOp::Div, a, b).unwrap();
        let s = g.binary("add", BinaryOp::Add, d, d).unwrap();
        g.output(s);
        let graph = g.build().unwrap();
        let out = run(&graph, &[t(&[1, 2, 2], &[1., 2., 3., 4.]), t(&[1, 1, 2], &[2., 4.])]).unwrap();
        assert_close(&out[0], &[1, 2, 2], &[1., 1., 3., 2.], 0.0);
    }

    #[test]
    fn unary_uses_activation() {
        let x = t(&[1, 4], &[-2., -0.5, 0.5, 8.]);
        let y = run1(&x, |g, xi| g.unary("relu6", xi, Activation::Clip { min: 0.0, max: 6.0 }).unwrap());
        assert_close(&y, &[1, 4], &[0., 0., 0.5, 6.], 0.0);
        let y = run1(&x, |g, xi| g.unary("sig", xi, Activation::Sigmoid).unwrap());
        let expected: Vec<f32> = x.data().iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect();
        assert_close(&y, &[1, 4], &expected, 1e-6);
    }

    #[test]
    fn softmax_values_and_axis() {
        let x = t(&[1, 3], &[1., 2., 3.]);
        let y = run1(&x, |g, xi| g.add("sm", Op::Softmax { axis: 1 }, vec![xi]).unwrap());
        assert_close(&y, &[1, 3], &[0.09003057, 0.24472847, 0.66524096], 1e-6);
        // Large values do not overflow (max subtracted).
        let x = t(&[1, 2], &[1000., 1000.]);
        let y = run1(&x, |g, xi| g.add("sm", Op::Softmax { axis: 1 }, vec![xi]).unwrap());
        assert_close(&y, &[1, 2], &[0.5, 0.5], 0.0);
        // Axis 1 of [1, 2, 2]: over columns. Column [0, ln 3]: [1/4, 3/4].
        let x = t(&[1, 2, 2], &[0., 5., 3f32.ln(), 5.]);
        let y = run1(&x, |g, xi| g.add("sm", Op::Softmax { axis: 1 }, vec![xi]).unwrap());
        assert_close(&y, &[1, 2, 2], &[0.25, 0.5, 0.75, 0.5], 1e-6);
    }

    #[test]
    fn layer_norm_last_axis_and_two_axes() {
        let x = t(&[1, 2, 2], &[1., 2., 3., 4.]);
        // Last axis: each row normalises to [-1, 1]; scale [2, 3], bias [0.5, -0.5].
        let y = run1(&x, |g, xi| {
            let s = g.constant("s", t(&[2], &[2., 3.]));
            let b = g.constant("b", t(&[2], &[0.5, -0.5]));
            g.add("ln", Op::LayerNorm { axis: 2, epsilon: 0.0 }, vec![xi, s, b]).unwrap()
        });
        assert_close(&y, &[1, 2, 2], &[-1.5, 2.5, -1.5, 2.5], 1e-6);
        // Axes 1..3: mean 2.5, variance 1.25; scale [1, 2] broadcast over the last axis.
        let y = run1(&x, |g, xi| {
            let s = g.constant("s", t(&[2], &[1., 2.]));
            g.add("ln", Op::LayerNorm { axis: 1, epsilon: 0.0 }, vec![xi, s]).unwrap()
        });
        let r = 1.25f32.sqrt();
        assert_close(&y, &[1, 2, 2], &[-1.5 / r, -1.0 / r, 0.5 / r, 3.0 / r], 1e-6);
        // Epsilon counts: variance 0.25 + 0.75 = 1 -> (x - mean) unscaled.
        let y = run1(&x, |g, xi| {
            let s = g.constant("s", t(&[1], &[1.]));
            g.add("ln", Op::LayerNorm { axis: 2, epsilon: 0.75 }, vec![xi, s]).unwrap()
        });
        assert_close(&y, &[1, 2, 2], &[-0.5, 0.5, -0.5, 0.5], 1e-6);
    }

    #[test]
    fn batch_norm_per_channel() {
        // Channel 0: (x - 1) / 2 * 2 + 1 = x; channel 1: (x - 3) / 0.5 * 0.25 + 10.
        let x = t(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
        let y = run1(&x, |g, xi| {
            let ins = [[2., 0.25], [1., 10.], [1., 3.], [4., 0.25]]
                .iter()
                .zip(["scale", "bias", "mean", "var"])
                .map(|(v, n)| g.constant(n, t(&[2], v)))
                .collect::<Vec<_>>();
            g.add("bn", Op::BatchNorm { epsilon: 0.0 }, [vec![xi], ins].concat()).unwrap()
        });
        assert_close(&y, &[1, 2, 1, 2], &[1., 2., 10., 10.5], 1e-6);
    }

    #[test]
    fn lrn_windows() {
        let x = t(&[1, 3, 1, 1], &[1., 2., 3.]);
        // Size 3 (channels c-1..=c+1), alpha/size = 1, bias 1, beta 1.
        let y = run1(&x, |g, xi| {
            g.add("lrn", Op::Lrn(LrnAttrs { size: 3, alpha: 3.0, beta: 1.0, bias: 1.0 }), vec![xi]).unwrap()
        });
        assert_close(&y, &[1, 3, 1, 1], &[1. / 6., 2. / 15., 3. / 14.], 1e-6);
        // Size 2 (channels c..=c+1), alpha/size = 1, bias 1, beta 0.5.
        let y = run1(&x, |g, xi| {
            g.add("lrn", Op::Lrn(LrnAttrs { size: 2, alpha: 2.0, beta: 0.5, bias: 1.0 }), vec![xi]).unwrap()
        });
        let expected = [1. / 6f32.sqrt(), 2. / 14f32.sqrt(), 3. / 10f32.sqrt()];
        assert_close(&y, &[1, 3, 1, 1], &expected, 1e-6);
    }

    // ----- data movement ---------------------------------------------------------------------

    #[test]
    fn concat_and_split() {
        let mut g = GraphBuilder::new("cs");
        let a = g.input("a", &[2, 1]);
        let b = g.input("b", &[2, 2]);
        let c = g.add("cat", Op::Concat { axis: 2 }, vec![a, b]).unwrap();
        let parts = g.add_multi("split", Op::Split { axis: 1, sizes: vec![1, 1] }, vec![c]).unwrap();
        g.output(c);
        g.output(parts[1]);
        g.output(parts[0]);
        let graph = g.build().unwrap();
        let out = run(&graph, &[t(&[1, 2, 1], &[1., 4.]), t(&[1, 2, 2], &[2., 3., 5., 6.])]).unwrap();
        assert_eq!(out.len(), 3);
        assert_close(&out[0], &[1, 2, 3], &[1., 2., 3., 4., 5., 6.], 0.0);
        assert_close(&out[1], &[1, 1, 3], &[4., 5., 6.], 0.0);
        assert_close(&out[2], &[1, 1, 3], &[1., 2., 3.], 0.0);
        // Split of the last axis into uneven pieces, batch 2.
        let x = seq(&[2, 2, 3]);
        let mut g = GraphBuilder::new("split");
        let xi = g.input("x", &[2, 3]);
        let parts = g.add_multi("split", Op::Split { axis: 2, sizes: vec![2, 1] }, vec![xi]).unwrap();
        g.output(parts[0]);
        g.output(parts[1]);
        let out = run(&g.build().unwrap(), &[x]).unwrap();
        assert_close(&out[0], &[2, 2, 2], &[1., 2., 4., 5., 7., 8., 10., 11.], 0.0);
        assert_close(&out[1], &[2, 2, 1], &[3., 6., 9., 12.], 0.0);
    }

    fn slice1(x: &Tensor, axes: &[usize], starts: &[i64], ends: &[i64], steps: &[i64]) -> Tensor {
        run1(x, |g, xi| {
            let op =
                Op::Slice { axes: axes.to_vec(), starts: starts.to_vec(), ends: ends.to_vec(), steps: steps.to_vec() };
            g.add("slice", op, vec![xi]).unwrap()
        })
    }

    #[test]
    fn slices() {
        let x = t(&[1, 5], &[0., 1., 2., 3., 4.]);
        assert_close(&slice1(&x, &[1], &[1], &[4], &[1]), &[1, 3], &[1., 2., 3.], 0.0);
        assert_close(&slice1(&x, &[1], &[0], &[i64::MAX], &[2]), &[1, 3], &[0., 2., 4.], 0.0);
        // Negative step: from the last element backwards by 2, end before the start.
        assert_close(&slice1(&x, &[1], &[-1], &[-6], &[-2]), &[1, 3], &[4., 2., 0.], 0.0);
        assert_close(&slice1(&x, &[1], &[3], &[0], &[-1]), &[1, 3], &[3., 2., 1.], 0.0);
        assert_close(&slice1(&x, &[1], &[i64::MAX], &[i64::MIN], &[-1]), &[1, 5], &[4., 3., 2., 1., 0.], 0.0);
        // Two axes of a [1, 3, 4] tensor: rows 2..0 backwards, columns 1..4 step 2.
        let x = seq(&[1, 3, 4]);
        let y = slice1(&x, &[2, 1], &[1, 2], &[4, 0], &[2, -1]);
        assert_close(&y, &[1, 2, 2], &[10., 12., 6., 8.], 0.0);
    }

    #[test]
    fn reshape_flatten_transpose() {
        let x = seq(&[2, 2, 3]);
        let y = run1(&x, |g, xi| g.flatten("flat", xi, 1).unwrap());
        assert_close(&y, &[2, 6], x.data(), 0.0);
        let y = run1(&x, |g, xi| g.reshape("r", xi, &[3, 1, 2]).unwrap());
        assert_close(&y, &[2, 3, 1, 2], x.data(), 0.0);
        let y = run1(&x, |g, xi| g.add("tr", Op::Transpose { perm: vec![0, 2, 1] }, vec![xi]).unwrap());
        assert_close(&y, &[2, 3, 2], &[1., 4., 2., 5., 3., 6., 7., 10., 8., 11., 9., 12.], 0.0);
        // Rank 4, perm [0, 3, 1, 2] (NCHW -> NWCH): out[0][w][c][h] = x[0][c][h][w].
        let x = seq(&[1, 2, 1, 3]);
        let y = run1(&x, |g, xi| g.add("tr", Op::Transpose { perm: vec![0, 3, 1, 2] }, vec![xi]).unwrap());
        assert_close(&y, &[1, 3, 2, 1], &[1., 4., 2., 5., 3., 6.], 0.0);
    }

    fn pad1(x: &Tensor, pads: Vec<(usize, usize)>, mode: PadMode) -> Tensor {
        run1(x, |g, xi| g.add("pad", Op::Pad { pads, mode }, vec![xi]).unwrap())
    }

    #[test]
    fn pad_modes() {
        let x = t(&[1, 3], &[1., 2., 3.]);
        let pads = vec![(0, 0), (2, 2)];
        assert_close(&pad1(&x, pads.clone(), PadMode::Reflect), &[1, 7], &[3., 2., 1., 2., 3., 2., 1.], 0.0);
        assert_close(&pad1(&x, pads.clone(), PadMode::Edge), &[1, 7], &[1., 1., 1., 2., 3., 3., 3.], 0.0);
        assert_close(&pad1(&x, pads, PadMode::Constant(9.0)), &[1, 7], &[9., 9., 1., 2., 3., 9., 9.], 0.0);
        // Two axes: [[1,2],[3,4]] padded (1, 0) rows and (0, 1) columns.
        let x = seq(&[1, 2, 2]);
        let pads = vec![(0, 0), (1, 0), (0, 1)];
        assert_close(&pad1(&x, pads.clone(), PadMode::Reflect), &[1, 3, 3], &[3., 4., 3., 1., 2., 1., 3., 4., 3.], 0.0);
        assert_close(&pad1(&x, pads.clone(), PadMode::Edge), &[1, 3, 3], &[1., 2., 2., 1., 2., 2., 3., 4., 4.], 0.0);
        assert_close(
            &pad1(&x, pads, PadMode::Constant(-1.0)),
            &[1, 3, 3],
            &[-1., -1., -1., 1., 2., -1., 3., 4., -1.],
            0.0,
        );
    }

    fn resize1(x: &Tensor, mode: ResizeMode, coord: CoordMode, out_hw: [usize; 2], scales: [f32; 2]) -> Tensor {
        run1(x, |g, xi| g.add("resize", Op::Resize(ResizeAttrs { mode, coord, out_hw, scales }), vec![xi]).unwrap())
    }

    #[test]
    fn resize_nearest() {
        // Batch 2, 2 channels: the same index pattern on every plane.
        let x = seq(&[2, 2, 2, 2]);
        let y = resize1(&x, ResizeMode::Nearest(NearestMode::Floor), CoordMode::Asymmetric, [4, 4], [2.0, 2.0]);
        let plane = |a: f32, b: f32, c: f32, d: f32| vec![a, a, b, b, a, a, b, b, c, c, d, d, c, c, d, d];
        let expected: Vec<f32> = (0..4)
            .flat_map(|p| {
                let o = 4.0 * p as f32;
                plane(o + 1., o + 2., o + 3., o + 4.)
            })
            .collect();
        assert_close(&y, &[2, 2, 4, 4], &expected, 0.0);

        // One row [10, 20] to width 4. Asymmetric, scale 2: x_in = 0, .5, 1, 1.5.
        let x = t(&[1, 1, 1, 2], &[10., 20.]);
        let r = |nm, coord| resize1(&x, ResizeMode::Nearest(nm), coord, [1, 4], [1.0, 2.0]);
        use CoordMode::*;
        use NearestMode::*;
        assert_close(&r(RoundPreferFloor, Asymmetric), &[1, 1, 1, 4], &[10., 10., 20., 20.], 0.0);
        assert_close(&r(RoundPreferCeil, Asymmetric), &[1, 1, 1, 4], &[10., 20., 20., 20.], 0.0);
        assert_close(&r(Floor, Asymmetric), &[1, 1, 1, 4], &[10., 10., 20., 20.], 0.0);
        assert_close(&r(Ceil, Asymmetric), &[1, 1, 1, 4], &[10., 20., 20., 20.], 0.0);
        // tf_half_pixel_for_nn: x_in = .25, .75, 1.25, 1.75.
        assert_close(&r(RoundPreferFloor, TfHalfPixelForNn), &[1, 1, 1, 4], &[10., 20., 20., 20.], 0.0);
        assert_close(&r(Floor, TfHalfPixelForNn), &[1, 1, 1, 4], &[10., 10., 20., 20.], 0.0);
        assert_close(&r(Ceil, TfHalfPixelForNn), &[1, 1, 1, 4], &[20., 20., 20., 20.], 0.0);
        // half_pixel: x_in = -.25, .25, .75, 1.25 (negative clamps to 0).
        assert_close(&r(RoundPreferCeil, HalfPixel), &[1, 1, 1, 4], &[10., 10., 20., 20.], 0.0);
        assert_close(&r(Ceil, HalfPixel), &[1, 1, 1, 4], &[10., 20., 20., 20.], 0.0);
        // align_corners, 2 -> 4: x_in = 0, 1/3, 2/3, 1.
        assert_close(&r(RoundPreferFloor, AlignCorners), &[1, 1, 1, 4], &[10., 10., 20., 20.], 0.0);
    }

    #[test]
    fn resize_bilinear() {
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        // align_corners: x_in = 0, 1/3, 2/3, 1 on both axes; out[i][j] = 1 + j/3 + 2i/3.
        let y = resize1(&x, ResizeMode::Linear, CoordMode::AlignCorners, [4, 4], [2.0, 2.0]);
        let expected: Vec<f32> = (0..16).map(|k| 1.0 + (k % 4) as f32 / 3.0 + 2.0 * (k / 4) as f32 / 3.0).collect();
        assert_close(&y, &[1, 1, 4, 4], &expected, 1e-6);
        // half_pixel: x_in = -.25, .25, .75, 1.25 clamped -> fractions 0, .25, .75, 1.
        let y = resize1(&x, ResizeMode::Linear, CoordMode::HalfPixel, [4, 4], [2.0, 2.0]);
        let f = [0.0, 0.25, 0.75, 1.0];
        let expected: Vec<f32> = (0..16).map(|k| 1.0 + f[k % 4] + 2.0 * f[k / 4]).collect();
        assert_close(&y, &[1, 1, 4, 4], &expected, 1e-6);
        // Down to 1x1: half_pixel reads (0.5, 0.5), the mean; pytorch_half_pixel reads (0, 0).
        let y = resize1(&x, ResizeMode::Linear, CoordMode::HalfPixel, [1, 1], [0.5, 0.5]);
        assert_close(&y, &[1, 1, 1, 1], &[2.5], 1e-6);
        let y = resize1(&x, ResizeMode::Linear, CoordMode::PytorchHalfPixel, [1, 1], [0.5, 0.5]);
        assert_close(&y, &[1, 1, 1, 1], &[1.0], 0.0);
        // Asymmetric 2 -> 3 along w only, scale 1.5: x_in = 0, 2/3, 4/3 (clamped to 1).
        let y = resize1(&x, ResizeMode::Linear, CoordMode::Asymmetric, [2, 3], [1.0, 1.5]);
        assert_close(&y, &[1, 1, 2, 3], &[1., 1. + 2. / 3., 2., 3., 3. + 2. / 3., 4.], 1e-6);
    }

    #[test]
    fn reduce_mean_axes() {
        let x = seq(&[1, 2, 3]);
        let rm = |axes: Vec<usize>, keepdims| {
            run1(&x, |g, xi| g.add("rm", Op::ReduceMean { axes, keepdims }, vec![xi]).unwrap())
        };
        assert_close(&rm(vec![2], true), &[1, 2, 1], &[2., 5.], 0.0);
        assert_close(&rm(vec![1], false), &[1, 3], &[2.5, 3.5, 4.5], 0.0);
        assert_close(&rm(vec![2, 1], false), &[1], &[3.5], 0.0);
        assert_close(&rm(vec![1, 2], true), &[1, 1, 1], &[3.5], 0.0);
    }

    // ----- whole graphs, batches, errors -----------------------------------------------------

    /// A small CNN with a branch and a shared value: conv -> relu -> (maxpool, avgpool) ->
    /// add -> flatten -> gemm -> softmax, plus the relu output itself as a second output.
    fn small_cnn(rng: &mut Rng) -> Graph {
        let mut g = GraphBuilder::new("cnn");
        let x = g.input("x", &[3, 6, 6]);
        let w = g.constant("w", Tensor::random(vec![4, 3, 3, 3], rng, -0.5, 0.5));
        let b = g.constant("b", Tensor::random(vec![4], rng, -0.5, 0.5));
        let y = g.conv("conv", x, w, Some(b), ConvAttrs { pads: [1; 4], ..Default::default() }).unwrap();
        let r = g.unary("relu", y, Activation::Relu).unwrap();
        let p1 = g.pool("max", r, PoolAttrs::new(PoolKind::Max, [2, 2], [2, 2])).unwrap();
        let p2 = g.pool("avg", r, PoolAttrs::new(PoolKind::Average, [2, 2], [2, 2])).unwrap();
        let s = g.binary("sum", BinaryOp::Add, p1, p2).unwrap();
        let f = g.flatten("flat", s, 1).unwrap();
        let fw = g.constant("fw", Tensor::random(vec![5, 36], rng, -0.5, 0.5));
        let fc = g.gemm("fc", f, fw, None, GemmAttrs { trans_b: true, ..Default::default() }).unwrap();
        let sm = g.add("softmax", Op::Softmax { axis: 1 }, vec![fc]).unwrap();
        g.output(sm);
        g.output(r);
        g.build().unwrap()
    }

    #[test]
    fn batch_samples_are_independent() {
        let mut rng = Rng::new(5);
        let graph = small_cnn(&mut rng);
        let x = Tensor::random(vec![3, 3, 6, 6], &mut rng, -1.0, 1.0);
        let all = run(&graph, std::slice::from_ref(&x)).unwrap();
        assert_eq!(all[0].shape(), &[3, 5]);
        assert_eq!(all[1].shape(), &[3, 4, 6, 6]);
        let per = 3 * 6 * 6;
        for n in 0..3 {
            let xn = t(&[1, 3, 6, 6], &x.data()[n * per..(n + 1) * per]);
            let one = run(&graph, &[xn]).unwrap();
            for (full, single) in all.iter().zip(&one) {
                let len = single.len();
                assert_eq!(&full.data()[n * len..(n + 1) * len], single.data(), "sample {n}");
            }
        }
        // Softmax rows sum to 1.
        for row in all[0].data().chunks(5) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn input_passed_through_as_output() {
        let mut g = GraphBuilder::new("id");
        let x = g.input("x", &[2]);
        let y = g.unary("neg", x, Activation::LeakyRelu { alpha: -1.0 }).unwrap();
        g.output(x);
        g.output(y);
        let graph = g.build().unwrap();
        let out = run(&graph, &[t(&[1, 2], &[-3., 4.])]).unwrap();
        assert_close(&out[0], &[1, 2], &[-3., 4.], 0.0);
        assert_close(&out[1], &[1, 2], &[3., 4.], 0.0);
    }

    fn two_input_graph() -> Graph {
        let mut g = GraphBuilder::new("two");
        let a = g.input("a", &[2, 3]);
        let b = g.input("b", &[1, 3]);
        let y = g.binary("add", BinaryOp::Add, a, b).unwrap();
        g.output(y);
        g.build().unwrap()
    }

    #[track_caller]
    fn expect_input_error(r: Result<Vec<Tensor>>, name: &str, needle: &str) {
        match r {
            Err(EngineError::Input { graph, input, reason }) => {
                assert_eq!(graph, "two");
                assert_eq!(input, name);
                assert!(reason.contains(needle), "reason '{reason}' lacks '{needle}'");
            }
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    #[test]
    fn input_errors() {
        let graph = two_input_graph();
        let a = Tensor::zeros(vec![2, 2, 3]);
        let b = Tensor::zeros(vec![2, 1, 3]);
        assert!(run(&graph, &[a.clone(), b.clone()]).is_ok());
        // Wrong number of inputs.
        expect_input_error(run(&graph, std::slice::from_ref(&a)), "b", "takes 2 input(s)");
        expect_input_error(run(&graph, &[]), "a", "got 0");
        let three = [a.clone(), b.clone(), b.clone()];
        expect_input_error(run(&graph, &three), "(extra input)", "got 3");
        // Wrong shape: per-sample dims, rank, missing batch.
        let wrong = [Tensor::zeros(vec![2, 3, 2]), b.clone()];
        expect_input_error(run(&graph, &wrong), "a", "expected shape [batch, 2, 3]");
        let wrong = [Tensor::zeros(vec![2, 3]), b.clone()];
        expect_input_error(run(&graph, &wrong), "a", "got [2, 3]");
        let wrong = [a.clone(), Tensor::zeros(vec![1, 3])];
        expect_input_error(run(&graph, &wrong), "b", "expected shape [batch, 1, 3]");
        // Batch 0.
        let empty = [Tensor::zeros(vec![0, 2, 3]), Tensor::zeros(vec![0, 1, 3])];
        expect_input_error(run(&graph, &empty), "a", "batch 0");
        // Inconsistent batches.
        let mixed = [a, Tensor::zeros(vec![3, 1, 3])];
        expect_input_error(run(&graph, &mixed), "b", "differs from batch 2");
    }

    #[test]
    fn helpers() {
        // broadcast_map: [2, 1] into [3, 2, 2].
        assert_eq!(broadcast_map(&[2, 1], &[3, 2, 2]).unwrap(), vec![0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]);
        assert!(broadcast_map(&[3], &[2]).is_err());
        assert!(broadcast_map(&[1, 2], &[2]).is_err());
        assert_eq!(broadcast_shapes(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert!(broadcast_shapes(&[2], &[3]).is_err());
        // Reflection repeats with period 2(d-1); edge clamps.
        let r: Vec<usize> = (-4..7).map(|j| pad_source(j, 3, PadMode::Reflect).unwrap()).collect();
        assert_eq!(r, vec![0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2]);
        assert_eq!(pad_source(-1, 1, PadMode::Reflect), Some(0));
        assert_eq!(pad_source(5, 3, PadMode::Edge), Some(2));
        assert_eq!(pad_source(3, 3, PadMode::Constant(0.0)), None);
        let mut seen = vec![];
        for_each_index(&[2, 3], |i| seen.push(i.to_vec()));
        assert_eq!(seen.len(), 6);
        assert_eq!(seen[4], vec![1, 1]);
    }
}
