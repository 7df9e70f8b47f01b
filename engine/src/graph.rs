//! The graph IR: values (inputs, constants, node outputs) and nodes in topological order,
//! built through [`GraphBuilder`], which checks every node and infers its output shapes.
//!
//! Activations carry the batch as their first dimension; their shapes are stored without it
//! (per sample) because the batch is chosen at run time. Constants have fixed shapes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::ops::*;
use crate::tensor::{Tensor, numel};

/// Identifies a value (tensor) of a graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub(crate) usize);

impl ValueId {
    /// Index of the value in [`Graph::values`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// Where a value comes from.
#[derive(Clone, Debug)]
pub enum ValueSource {
    /// A graph input (batched).
    Input,
    /// A constant (weights), not batched.
    Constant(Arc<Tensor>),
    /// Output `1` of node `0`.
    Node(usize, usize),
}

/// A tensor of the graph.
#[derive(Clone, Debug)]
pub struct Value {
    /// Name (unique in the graph).
    pub name: String,
    /// Per-sample dimensions for batched values (the batch comes first at run time); the full
    /// shape for constants.
    pub dims: Vec<usize>,
    /// Where it comes from.
    pub source: ValueSource,
}

impl Value {
    /// True for activations, whose first dimension is the run-time batch.
    pub fn is_batched(&self) -> bool {
        !matches!(self.source, ValueSource::Constant(_))
    }

    /// The constant's data, if it is one.
    pub fn constant(&self) -> Option<&Arc<Tensor>> {
        match &self.source {
            ValueSource::Constant(t) => Some(t),
            _ => None,
        }
    }

    /// Full shape at a batch size (constants ignore the batch).
    pub fn shape_at(&self, batch: usize) -> Vec<usize> {
        if self.is_batched() {
            let mut s = Vec::with_capacity(self.dims.len() + 1);
            s.push(batch);
            s.extend_from_slice(&self.dims);
            s
        } else {
            self.dims.clone()
        }
    }

    /// Rank of the full tensor.
    pub fn rank(&self) -> usize {
        self.dims.len() + usize::from(self.is_batched())
    }

    /// Elements per sample (all elements for constants).
    pub fn per_sample_len(&self) -> usize {
        numel(&self.dims)
    }
}

/// An operation applied to values.
#[derive(Clone, Debug)]
pub struct Node {
    /// Name (unique in the graph), used in every error about the node.
    pub name: String,
    /// The operation and its attributes.
    pub op: Op,
    /// Input values in the operation's order.
    pub inputs: Vec<ValueId>,
    /// Output values.
    pub outputs: Vec<ValueId>,
}

/// A checked CNN graph: nodes in topological order, every shape known.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Name of the graph (the model).
    pub name: String,
    pub(crate) values: Vec<Value>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) inputs: Vec<ValueId>,
    pub(crate) outputs: Vec<ValueId>,
}

impl Graph {
    /// All values.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// One value.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0]
    }

    /// Nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Graph inputs (batched).
    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    /// Graph outputs.
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    /// Finds a value by name.
    pub fn find(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name).map(ValueId)
    }

    /// Multiply-accumulate count of one sample (convolutions and matrix products only), for
    /// reports.
    pub fn macs_per_sample(&self) -> u64 {
        (0..self.nodes.len()).map(|i| self.node_macs(i)).sum()
    }

    /// Multiply-accumulates of node `i` per sample (0 for operations other than convolutions
    /// and matrix products).
    pub fn node_macs(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        let out = self.value(n.outputs[0]);
        match &n.op {
            Op::Conv(_) => {
                let w = &self.value(n.inputs[1]).dims;
                (numel(&out.dims) * w[1] * w[2] * w[3]) as u64
            }
            Op::ConvTranspose(_) => {
                let w = &self.value(n.inputs[1]).dims;
                let x = &self.value(n.inputs[0]).dims;
                (numel(x) * w[1] * w[2] * w[3]) as u64
            }
            Op::Gemm(_) | Op::MatMul { .. } => {
                let a = self.value(n.inputs[0]);
                let k = *a.dims.last().unwrap_or(&1);
                (numel(&out.dims) * k) as u64
            }
            _ => 0,
        }
    }

    /// The sub-graph of the nodes `range` (in topological order) as a graph of its own: its
    /// inputs are the activations its nodes read from outside the range, its outputs the
    /// values they produce that are used after the range or are outputs of the whole graph.
    /// Values keep their names, so a stage's outputs feed the next stage's inputs by name.
    pub fn slice_nodes(&self, range: std::ops::Range<usize>) -> Result<Graph> {
        if range.start >= range.end || range.end > self.nodes.len() {
            return Err(EngineError::InvalidGraph {
                graph: self.name.clone(),
                reason: format!(
                    "node range {}..{} is empty or outside 0..{}",
                    range.start,
                    range.end,
                    self.nodes.len()
                ),
            });
        }
        let inside: HashSet<usize> = range.clone().collect();
        let mut b = GraphBuilder::new(&format!("{}[{}..{}]", self.name, range.start, range.end));
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        for ni in range.clone() {
            let node = &self.nodes[ni];
            for &v in &node.inputs {
                if map.contains_key(&v) {
                    continue;
                }
                let val = self.value(v);
                let new = match &val.source {
                    ValueSource::Constant(t) => b.constant_arc(&val.name, t.clone()),
                    ValueSource::Input => b.input(&val.name, &val.dims),
                    ValueSource::Node(p, _) if !inside.contains(p) => b.input(&val.name, &val.dims),
                    ValueSource::Node(..) => unreachable!("topological order"),
                };
                map.insert(v, new);
            }
            let ins: Vec<ValueId> = node.inputs.iter().map(|v| map[v]).collect();
            let names: Vec<&str> = node.outputs.iter().map(|&o| self.value(o).name.as_str()).collect();
            let outs = b.add_node_named_outputs(&node.name, node.op.clone(), ins, &names)?;
            for (o, n) in node.outputs.iter().zip(outs) {
                map.insert(*o, n);
            }
        }
        let mut used_after: HashSet<ValueId> = self.outputs.iter().copied().collect();
        for node in &self.nodes[range.end..] {
            used_after.extend(node.inputs.iter().copied());
        }
        for ni in range {
            for o in &self.nodes[ni].outputs {
                if used_after.contains(o) {
                    b.output(map[o]);
                }
            }
        }
        b.build()
    }
}

/// Builds a [`Graph`] node by node, checking each one.
///
/// ```
/// use poolpipe_engine::{GraphBuilder, ConvAttrs, Activation, Tensor, Rng};
/// let mut rng = Rng::new(1);
/// let mut g = GraphBuilder::new("tiny");
/// let x = g.input("x", &[3, 8, 8]);
/// let w = g.constant("w", Tensor::random(vec![4, 3, 3, 3], &mut rng, -1.0, 1.0));
/// let y = g.conv("conv", x, w, None, ConvAttrs { pads: [1; 4], ..Default::default() }).unwrap();
/// let y = g.unary("relu", y, Activation::Relu).unwrap();
/// g.output(y);
/// let graph = g.build().unwrap();
/// assert_eq!(graph.value(graph.outputs()[0]).dims, vec![4, 8, 8]);
/// ```
#[derive(Debug)]
pub struct GraphBuilder {
    g: Graph,
    names: HashSet<String>,
}

impl GraphBuilder {
    /// A new, empty graph.
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            g: Graph { name: name.to_string(), values: vec![], nodes: vec![], inputs: vec![], outputs: vec![] },
            names: HashSet::new(),
        }
    }

    fn unique(&mut self, base: &str) -> String {
        let base = if base.is_empty() { "v" } else { base };
        if self.names.insert(base.to_string()) {
            return base.to_string();
        }
        for i in 1.. {
            let n = format!("{base}_{i}");
            if self.names.insert(n.clone()) {
                return n;
            }
        }
        unreachable!()
    }

    fn push_value(&mut self, name: &str, dims: Vec<usize>, source: ValueSource) -> ValueId {
        let name = self.unique(name);
        self.g.values.push(Value { name, dims, source });
        ValueId(self.g.values.len() - 1)
    }

    /// A batched graph input with per-sample dimensions `dims` (e.g. `[3, 224, 224]`).
    pub fn input(&mut self, name: &str, dims: &[usize]) -> ValueId {
        let id = self.push_value(name, dims.to_vec(), ValueSource::Input);
        self.g.inputs.push(id);
        id
    }

    /// A constant tensor (weights).
    pub fn constant(&mut self, name: &str, t: Tensor) -> ValueId {
        self.constant_arc(name, Arc::new(t))
    }

    /// A constant tensor shared with another graph.
    pub fn constant_arc(&mut self, name: &str, t: Arc<Tensor>) -> ValueId {
        let dims = t.shape().to_vec();
        self.push_value(name, dims, ValueSource::Constant(t))
    }

    /// Marks a value as a graph output.
    pub fn output(&mut self, v: ValueId) {
        if !self.g.outputs.contains(&v) {
            self.g.outputs.push(v);
        }
    }

    /// Shape of a value added so far (per sample for activations).
    pub fn dims(&self, v: ValueId) -> &[usize] {
        &self.g.values[v.0].dims
    }

    /// Adds a node with one output; returns the output.
    pub fn add(&mut self, name: &str, op: Op, inputs: Vec<ValueId>) -> Result<ValueId> {
        Ok(self.add_multi(name, op, inputs)?[0])
    }

    /// Adds a node with any number of outputs (Split); returns them.
    pub fn add_multi(&mut self, name: &str, op: Op, inputs: Vec<ValueId>) -> Result<Vec<ValueId>> {
        let node_name = self.node_name(name, &op);
        let outs = infer(&self.g, &node_name, &op, &inputs)?;
        let names: Vec<String> = if outs.len() == 1 {
            vec![node_name.clone()]
        } else {
            (0..outs.len()).map(|i| format!("{node_name}:{i}")).collect()
        };
        self.finish_node(node_name, op, inputs, outs, &names)
    }

    pub(crate) fn add_node_named_outputs(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<ValueId>,
        out_names: &[&str],
    ) -> Result<Vec<ValueId>> {
        let node_name = self.node_name(name, &op);
        let outs = infer(&self.g, &node_name, &op, &inputs)?;
        let names: Vec<String> = out_names.iter().map(|s| s.to_string()).collect();
        self.finish_node(node_name, op, inputs, outs, &names)
    }

    /// Renames a value (e.g. to a model file's output name); a different value holding that
    /// name already is renamed to a fresh one, so names stay unique.
    pub(crate) fn rename(&mut self, v: ValueId, name: &str) {
        if self.g.values[v.0].name == name {
            return;
        }
        if let Some(other) = self.g.values.iter().position(|x| x.name == name) {
            let fresh = self.unique(name);
            self.g.values[other].name = fresh;
        }
        self.names.insert(name.to_string());
        self.g.values[v.0].name = name.to_string();
    }

    fn node_name(&mut self, name: &str, op: &Op) -> String {
        if name.is_empty() { format!("{}_{}", op.name(), self.g.nodes.len()) } else { name.to_string() }
    }

    fn finish_node(
        &mut self,
        node_name: String,
        op: Op,
        inputs: Vec<ValueId>,
        outs: Vec<Vec<usize>>,
        names: &[String],
    ) -> Result<Vec<ValueId>> {
        let idx = self.g.nodes.len();
        let ids: Vec<ValueId> = outs
            .into_iter()
            .enumerate()
            .map(|(i, dims)| self.push_value(&names[i], dims, ValueSource::Node(idx, i)))
            .collect();
        self.g.nodes.push(Node { name: node_name, op, inputs, outputs: ids.clone() });
        Ok(ids)
    }

    /// Convolution (`bias` optional).
    pub fn conv(
        &mut self,
        name: &str,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
        attrs: ConvAttrs,
    ) -> Result<ValueId> {
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.add(name, Op::Conv(attrs), ins)
    }

    /// Transposed convolution (`bias` optional).
    pub fn conv_transpose(
        &mut self,
        name: &str,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
        attrs: ConvTransposeAttrs,
    ) -> Result<ValueId> {
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.add(name, Op::ConvTranspose(attrs), ins)
    }

    /// Gemm (`c` optional).
    pub fn gemm(
        &mut self,
        name: &str,
        a: ValueId,
        b: ValueId,
        c: Option<ValueId>,
        attrs: GemmAttrs,
    ) -> Result<ValueId> {
        let mut ins = vec![a, b];
        ins.extend(c);
        self.add(name, Op::Gemm(attrs), ins)
    }

    /// Batched matrix multiply.
    pub fn matmul(&mut self, name: &str, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.add(name, Op::MatMul { activation: None }, vec![a, b])
    }

    /// Elementwise binary op.
    pub fn binary(&mut self, name: &str, op: BinaryOp, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.add(name, Op::Binary { op, activation: None }, vec![a, b])
    }

    /// Elementwise activation.
    pub fn unary(&mut self, name: &str, x: ValueId, act: Activation) -> Result<ValueId> {
        self.add(name, Op::Unary(act), vec![x])
    }

    /// Max/average pooling.
    pub fn pool(&mut self, name: &str, x: ValueId, attrs: PoolAttrs) -> Result<ValueId> {
        self.add(name, Op::Pool(attrs), vec![x])
    }

    /// Global pooling.
    pub fn global_pool(&mut self, name: &str, x: ValueId, kind: PoolKind) -> Result<ValueId> {
        self.add(name, Op::GlobalPool(kind), vec![x])
    }

    /// Reshape to per-sample dims (batch kept).
    pub fn reshape(&mut self, name: &str, x: ValueId, dims: &[usize]) -> Result<ValueId> {
        self.add(name, Op::Reshape { shape: dims.to_vec() }, vec![x])
    }

    /// Flatten to [N, rest] (ONNX Flatten with axis 1; other axes would mix in the batch).
    pub fn flatten(&mut self, name: &str, x: ValueId, axis: usize) -> Result<ValueId> {
        let dims = self.dims(x).to_vec();
        if axis != 1 {
            return Err(EngineError::InvalidNode {
                node: name.to_string(),
                op: "Flatten".into(),
                reason: format!("axis {axis} would merge the batch with other dimensions; only axis 1 is supported"),
            });
        }
        self.add(name, Op::Reshape { shape: vec![numel(&dims)] }, vec![x])
    }

    /// Removes size-1 axes (full-tensor axes, never 0).
    pub fn squeeze(&mut self, name: &str, x: ValueId, axes: &[usize]) -> Result<ValueId> {
        let dims = self.dims(x).to_vec();
        let bad = |reason: String| EngineError::InvalidNode { node: name.to_string(), op: "Squeeze".into(), reason };
        let mut keep = vec![];
        for (i, &d) in dims.iter().enumerate() {
            let axis = i + 1;
            if axes.contains(&axis) {
                if d != 1 {
                    return Err(bad(format!("axis {axis} has size {d}, not 1")));
                }
            } else {
                keep.push(d);
            }
        }
        if axes.iter().any(|&a| a == 0 || a > dims.len()) {
            return Err(bad(format!("axes {axes:?} must lie in 1..={} (axis 0 is the batch)", dims.len())));
        }
        self.add(name, Op::Reshape { shape: keep }, vec![x])
    }

    /// Inserts size-1 axes at the given positions of the output (never 0).
    pub fn unsqueeze(&mut self, name: &str, x: ValueId, axes: &[usize]) -> Result<ValueId> {
        let dims = self.dims(x).to_vec();
        let out_rank = dims.len() + 1 + axes.len();
        let distinct: HashSet<usize> = axes.iter().copied().collect();
        if distinct.len() != axes.len() || axes.iter().any(|&a| a == 0 || a >= out_rank) {
            return Err(EngineError::InvalidNode {
                node: name.to_string(),
                op: "Unsqueeze".into(),
                reason: format!("axes {axes:?} must be distinct and lie in 1..{out_rank} (axis 0 is the batch)"),
            });
        }
        let mut out = vec![];
        let mut it = dims.iter();
        for axis in 1..out_rank {
            if axes.contains(&axis) {
                out.push(1);
            } else {
                out.push(*it.next().unwrap());
            }
        }
        self.add(name, Op::Reshape { shape: out }, vec![x])
    }

    /// Finishes the graph; errors when it has no outputs.
    pub fn build(self) -> Result<Graph> {
        if self.g.outputs.is_empty() {
            return Err(EngineError::InvalidGraph { graph: self.g.name, reason: "the graph has no outputs".into() });
        }
        if self.g.inputs.is_empty() {
            return Err(EngineError::InvalidGraph { graph: self.g.name, reason: "the graph has no inputs".into() });
        }
        for &o in &self.g.outputs {
            if !self.g.values[o.0].is_batched() {
                return Err(EngineError::InvalidGraph {
                    graph: self.g.name.clone(),
                    reason: format!("output '{}' is a constant", self.g.values[o.0].name),
                });
            }
        }
        Ok(self.g)
    }
}

/// Marks the batch dimension in symbolic shapes.
pub(crate) const BATCH: usize = usize::MAX;

/// Full symbolic shape: batched values get [BATCH, dims...].
pub(crate) fn sym_shape(v: &Value) -> Vec<usize> {
    if v.is_batched() {
        let mut s = vec![BATCH];
        s.extend_from_slice(&v.dims);
        s
    } else {
        v.dims.clone()
    }
}

/// Numpy broadcast of symbolic shapes; the batch may only meet the batch or 1.
pub(crate) fn broadcast(a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            let show = |s: &[usize]| {
                s.iter()
                    .map(|&d| if d == BATCH { "N".to_string() } else { d.to_string() })
                    .collect::<Vec<_>>()
                    .join("x")
            };
            return Err(format!("shapes {} and {} do not broadcast", show(a), show(b)));
        };
    }
    Ok(out)
}

fn per_sample(node: &str, op: &Op, sym: Vec<usize>) -> Result<Vec<usize>> {
    if sym.first() != Some(&BATCH) || sym[1..].contains(&BATCH) {
        return Err(EngineError::InvalidNode {
            node: node.to_string(),
            op: op.name().into(),
            reason: "the result would not keep the batch as its first dimension (broadcasting across the batch is not supported)".into(),
        });
    }
    Ok(sym[1..].to_vec())
}

fn conv_out(len: usize, pad: usize, k: usize, d: usize, s: usize) -> Option<usize> {
    let eff = d * (k - 1) + 1;
    (len + pad).checked_sub(eff).map(|v| v / s + 1)
}

/// Output length of a pooling window sweep (ceil mode as PyTorch/onnxruntime: the last
/// window must start inside the input or the left padding).
pub(crate) fn pool_out(len: usize, pb: usize, pe: usize, k: usize, d: usize, s: usize, ceil: bool) -> Option<usize> {
    let eff = d * (k - 1) + 1;
    let span = (len + pb + pe).checked_sub(eff)?;
    let mut out = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
    if ceil && (out - 1) * s >= len + pb {
        out -= 1;
    }
    Some(out)
}

/// Normalised slice of one axis: (start, step, length) with ONNX clamping.
pub(crate) fn slice_axis(dim: usize, start: i64, end: i64, step: i64) -> (i64, i64, usize) {
    // i128 arithmetic: ONNX uses i64::MAX / i64::MIN as "to the end" markers.
    let d = dim as i128;
    let norm = |v: i64| if v < 0 { v as i128 + d } else { v as i128 };
    let (s, e, st) = (norm(start), norm(end), step as i128);
    let (s, len) = if st > 0 {
        let s = s.clamp(0, d);
        let e = e.clamp(0, d);
        (s, if e > s { (e - s + st - 1) / st } else { 0 })
    } else {
        let s = s.clamp(-1, d - 1);
        let e = e.clamp(-1, d - 1);
        (s, if s > e { (s - e + (-st) - 1) / (-st) } else { 0 })
    };
    // A step beyond the dimension takes one element; keep it small for index arithmetic.
    let st = st.clamp(-d.max(1), d.max(1));
    (s as i64, st as i64, len as usize)
}

/// Checks a node and infers the per-sample dims of its outputs.
fn infer(g: &Graph, node: &str, op: &Op, inputs: &[ValueId]) -> Result<Vec<Vec<usize>>> {
    let err = |reason: String| EngineError::InvalidNode { node: node.to_string(), op: op.name().into(), reason };
    for &i in inputs {
        if i.0 >= g.values.len() {
            return Err(err(format!("input value #{} does not exist in this graph", i.0)));
        }
    }
    let v = |i: usize| &g.values[inputs[i].0];
    let arity = |lo: usize, hi: usize| -> Result<()> {
        if inputs.len() < lo || inputs.len() > hi {
            Err(err(format!("takes {lo}..={hi} inputs, got {}", inputs.len())))
        } else {
            Ok(())
        }
    };
    let need_batched = |i: usize, what: &str| -> Result<()> {
        if v(i).is_batched() {
            Ok(())
        } else {
            Err(err(format!("{what} must be an activation, not the constant '{}'", v(i).name)))
        }
    };
    let need_const = |i: usize, what: &str| -> Result<()> {
        if v(i).is_batched() {
            Err(err(format!(
                "{what} ('{}') must be a constant (weights computed at run time are not supported)",
                v(i).name
            )))
        } else {
            Ok(())
        }
    };
    let need_rank = |i: usize, rank: usize, what: &str| -> Result<()> {
        if v(i).rank() != rank {
            Err(err(format!("{what} '{}' must have rank {rank}, has shape {:?}", v(i).name, sym_show(v(i)))))
        } else {
            Ok(())
        }
    };
    let check_axis = |axis: usize, rank: usize| -> Result<()> {
        if axis == 0 {
            Err(err("axis 0 is the batch, which is chosen at run time; operating across it is not supported".into()))
        } else if axis >= rank {
            Err(err(format!("axis {axis} is out of range for rank {rank}")))
        } else {
            Ok(())
        }
    };
    let positive = |vals: &[usize], what: &str| -> Result<()> {
        if vals.contains(&0) { Err(err(format!("{what} must be >= 1, got {vals:?}"))) } else { Ok(()) }
    };

    match op {
        Op::Conv(a) => {
            arity(2, 3)?;
            need_batched(0, "input")?;
            need_rank(0, 4, "input")?;
            need_const(1, "weight")?;
            need_rank(1, 4, "weight")?;
            positive(&a.stride, "stride")?;
            positive(&a.dilation, "dilation")?;
            positive(&[a.groups], "groups")?;
            let x = &v(0).dims;
            let w = &v(1).dims;
            positive(w, "weight dimensions")?;
            if x[0] % a.groups != 0 || w[0] % a.groups != 0 {
                return Err(err(format!(
                    "groups {} must divide input channels {} and output channels {}",
                    a.groups, x[0], w[0]
                )));
            }
            if w[1] * a.groups != x[0] {
                return Err(err(format!(
                    "weight {:?} expects {} input channels ({} per group x {} groups), input has {}",
                    w,
                    w[1] * a.groups,
                    w[1],
                    a.groups,
                    x[0]
                )));
            }
            if inputs.len() == 3 {
                need_const(2, "bias")?;
                if v(2).dims != [w[0]] {
                    return Err(err(format!("bias must have shape [{}], has {:?}", w[0], v(2).dims)));
                }
            }
            let oh = conv_out(x[1], a.pads[0] + a.pads[2], w[2], a.dilation[0], a.stride[0]);
            let ow = conv_out(x[2], a.pads[1] + a.pads[3], w[3], a.dilation[1], a.stride[1]);
            match (oh, ow) {
                (Some(oh), Some(ow)) => Ok(vec![vec![w[0], oh, ow]]),
                _ => Err(err(format!(
                    "kernel {}x{} (dilation {:?}) is larger than the padded input {}x{}",
                    w[2],
                    w[3],
                    a.dilation,
                    x[1] + a.pads[0] + a.pads[2],
                    x[2] + a.pads[1] + a.pads[3]
                ))),
            }
        }
        Op::ConvTranspose(a) => {
            arity(2, 3)?;
            need_batched(0, "input")?;
            need_rank(0, 4, "input")?;
            need_const(1, "weight")?;
            need_rank(1, 4, "weight")?;
            positive(&a.stride, "stride")?;
            positive(&a.dilation, "dilation")?;
            positive(&[a.groups], "groups")?;
            let x = &v(0).dims;
            let w = &v(1).dims;
            positive(w, "weight dimensions")?;
            if w[0] != x[0] || x[0] % a.groups != 0 {
                return Err(err(format!(
                    "weight {:?} must have {} (input channels) rows divisible by groups {}",
                    w, x[0], a.groups
                )));
            }
            let m = w[1] * a.groups;
            if inputs.len() == 3 {
                need_const(2, "bias")?;
                if v(2).dims != [m] {
                    return Err(err(format!("bias must have shape [{m}], has {:?}", v(2).dims)));
                }
            }
            for i in 0..2 {
                if a.output_padding[i] >= a.stride[i].max(a.dilation[i]) {
                    return Err(err(format!(
                        "output_padding {:?} must be smaller than stride or dilation",
                        a.output_padding
                    )));
                }
            }
            let out = |i: usize| -> Option<usize> {
                ((x[1 + i] - 1) * a.stride[i] + a.dilation[i] * (w[2 + i] - 1) + 1 + a.output_padding[i])
                    .checked_sub(a.pads[i] + a.pads[i + 2])
                    .filter(|&v| v > 0)
            };
            match (out(0), out(1)) {
                (Some(oh), Some(ow)) => Ok(vec![vec![m, oh, ow]]),
                _ => Err(err(format!("padding {:?} leaves an empty output", a.pads))),
            }
        }
        Op::Gemm(a) => {
            arity(2, 3)?;
            need_batched(0, "A")?;
            need_rank(0, 2, "A")?;
            need_const(1, "B")?;
            need_rank(1, 2, "B")?;
            if a.trans_a {
                return Err(err("trans_a on a batched A would mix the batch into the product; not supported".into()));
            }
            let k = v(0).dims[0];
            let b = &v(1).dims;
            let (bk, m) = if a.trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
            if bk != k {
                return Err(err(format!("A has {k} columns but B{} has {bk} rows", if a.trans_b { "^T" } else { "" })));
            }
            if inputs.len() == 3 {
                let c = sym_shape(v(2));
                let out = broadcast(&[BATCH, m], &c).map_err(|e| err(format!("C: {e}")))?;
                if out != [BATCH, m] {
                    return Err(err(format!("C {:?} must broadcast to [N, {m}]", sym_show(v(2)))));
                }
            }
            Ok(vec![vec![m]])
        }
        Op::MatMul { .. } => {
            arity(2, 2)?;
            let (a, b) = (sym_shape(v(0)), sym_shape(v(1)));
            if a.len() < 2 || b.len() < 2 {
                return Err(err("1-D operands are not supported; reshape them to 2-D".into()));
            }
            let (ka, kb) = (a[a.len() - 1], b[b.len() - 2]);
            if ka != kb || ka == BATCH {
                return Err(err(format!("inner dimensions differ: A {:?} x B {:?}", sym_show(v(0)), sym_show(v(1)))));
            }
            let mut out = broadcast(&a[..a.len() - 2], &b[..b.len() - 2]).map_err(err)?;
            out.push(a[a.len() - 2]);
            out.push(b[b.len() - 1]);
            // [N, K] x [K, M]: the batch is the row dimension, which is fine.
            let rows_are_batch = out.len() == 2 && out[0] == BATCH && !b.contains(&BATCH);
            if out[out.len() - 2..].contains(&BATCH) && !rows_are_batch {
                return Err(err("the batch would end up in a matrix dimension".into()));
            }
            Ok(vec![per_sample(node, op, out)?])
        }
        Op::Pool(a) => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            need_rank(0, 4, "input")?;
            positive(&a.kernel, "kernel")?;
            positive(&a.stride, "stride")?;
            positive(&a.dilation, "dilation")?;
            if a.kind == PoolKind::Average && a.dilation != [1, 1] {
                return Err(err("average pooling with dilation is not supported".into()));
            }
            for i in 0..2 {
                // As PyTorch: a window never lies wholly in the padding.
                let half = (a.dilation[i] * (a.kernel[i] - 1)).div_ceil(2);
                if a.pads[i] > half || a.pads[i + 2] > half {
                    return Err(err(format!(
                        "padding {:?} must be at most half the (dilated) window {:?}",
                        a.pads, a.kernel
                    )));
                }
            }
            let x = &v(0).dims;
            let oh = pool_out(x[1], a.pads[0], a.pads[2], a.kernel[0], a.dilation[0], a.stride[0], a.ceil_mode);
            let ow = pool_out(x[2], a.pads[1], a.pads[3], a.kernel[1], a.dilation[1], a.stride[1], a.ceil_mode);
            match (oh, ow) {
                (Some(oh), Some(ow)) => Ok(vec![vec![x[0], oh, ow]]),
                _ => Err(err(format!("window {:?} is larger than the padded input", a.kernel))),
            }
        }
        Op::GlobalPool(_) => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            let x = &v(0).dims;
            if x.len() < 2 {
                return Err(err(format!("input must be [N, C, spatial...], has {:?}", sym_show(v(0)))));
            }
            let mut out = vec![x[0]];
            out.extend(std::iter::repeat_n(1, x.len() - 1));
            Ok(vec![out])
        }
        Op::Binary { .. } => {
            arity(2, 2)?;
            let out = broadcast(&sym_shape(v(0)), &sym_shape(v(1))).map_err(err)?;
            Ok(vec![per_sample(node, op, out)?])
        }
        Op::Unary(_) => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            Ok(vec![v(0).dims.clone()])
        }
        Op::Softmax { axis } => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            check_axis(*axis, v(0).rank())?;
            Ok(vec![v(0).dims.clone()])
        }
        Op::LayerNorm { axis, epsilon } => {
            arity(2, 3)?;
            need_batched(0, "input")?;
            check_axis(*axis, v(0).rank())?;
            if epsilon.is_nan() || *epsilon < 0.0 {
                return Err(err(format!("epsilon must be >= 0, got {epsilon}")));
            }
            let norm = &v(0).dims[axis - 1..];
            for i in 1..inputs.len() {
                need_const(i, if i == 1 { "scale" } else { "bias" })?;
                let b = broadcast(norm, &v(i).dims).map_err(err)?;
                if b != norm {
                    return Err(err(format!(
                        "{} {:?} must broadcast to the normalised shape {:?}",
                        if i == 1 { "scale" } else { "bias" },
                        v(i).dims,
                        norm
                    )));
                }
            }
            Ok(vec![v(0).dims.clone()])
        }
        Op::BatchNorm { epsilon } => {
            arity(5, 5)?;
            need_batched(0, "input")?;
            if v(0).rank() < 2 {
                return Err(err("input must have a channel axis".into()));
            }
            if epsilon.is_nan() || *epsilon < 0.0 {
                return Err(err(format!("epsilon must be >= 0, got {epsilon}")));
            }
            let c = v(0).dims[0];
            for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
                need_const(i, what)?;
                if v(i).dims != [c] {
                    return Err(err(format!("{what} must have shape [{c}], has {:?}", v(i).dims)));
                }
            }
            Ok(vec![v(0).dims.clone()])
        }
        Op::Concat { axis } => {
            if inputs.is_empty() {
                return Err(err("takes at least one input".into()));
            }
            let rank = v(0).rank();
            check_axis(*axis, rank)?;
            let mut out = v(0).dims.clone();
            out[axis - 1] = 0;
            for i in 0..inputs.len() {
                need_batched(i, "every input")?;
                let d = &v(i).dims;
                if d.len() != out.len() || d.iter().zip(&out).enumerate().any(|(j, (a, b))| j != axis - 1 && a != b) {
                    return Err(err(format!(
                        "input '{}' {:?} does not match {:?} outside axis {axis}",
                        v(i).name,
                        sym_show(v(i)),
                        sym_show(v(0))
                    )));
                }
                out[axis - 1] += d[axis - 1];
            }
            Ok(vec![out])
        }
        Op::Split { axis, sizes } => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            check_axis(*axis, v(0).rank())?;
            let d = v(0).dims[axis - 1];
            if sizes.is_empty() || sizes.iter().sum::<usize>() != d {
                return Err(err(format!("sizes {sizes:?} must add up to {d}, the length of axis {axis}")));
            }
            Ok(sizes
                .iter()
                .map(|&s| {
                    let mut o = v(0).dims.clone();
                    o[axis - 1] = s;
                    o
                })
                .collect())
        }
        Op::Slice { axes, starts, ends, steps } => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
                return Err(err("axes, starts, ends and steps must have the same length".into()));
            }
            let mut out = v(0).dims.clone();
            let mut seen = HashSet::new();
            for i in 0..axes.len() {
                check_axis(axes[i], v(0).rank())?;
                if !seen.insert(axes[i]) {
                    return Err(err(format!("axis {} appears twice", axes[i])));
                }
                if steps[i] == 0 {
                    return Err(err("step 0 is not allowed".into()));
                }
                let (_, _, len) = slice_axis(out[axes[i] - 1], starts[i], ends[i], steps[i]);
                out[axes[i] - 1] = len;
            }
            if out.contains(&0) {
                return Err(err(format!("the slice is empty (output {out:?})")));
            }
            Ok(vec![out])
        }
        Op::Reshape { shape } => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            if numel(shape) != v(0).per_sample_len() {
                return Err(err(format!(
                    "cannot reshape {:?} ({} elements per sample) to [N, {}]",
                    sym_show(v(0)),
                    v(0).per_sample_len(),
                    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            Ok(vec![shape.clone()])
        }
        Op::Transpose { perm } => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            let r = v(0).rank();
            let mut sorted = perm.clone();
            sorted.sort();
            if sorted != (0..r).collect::<Vec<_>>() {
                return Err(err(format!("perm {perm:?} is not a permutation of 0..{r}")));
            }
            if perm[0] != 0 {
                return Err(err(format!("perm {perm:?} moves the batch axis; it must stay first")));
            }
            Ok(vec![perm[1..].iter().map(|&p| v(0).dims[p - 1]).collect()])
        }
        Op::Pad { pads, mode } => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            let r = v(0).rank();
            if pads.len() != r {
                return Err(err(format!("needs {r} (begin, end) pairs, got {}", pads.len())));
            }
            if pads[0] != (0, 0) {
                return Err(err("padding the batch axis is not supported".into()));
            }
            let mut out = v(0).dims.clone();
            for i in 1..r {
                let d = out[i - 1];
                if *mode == PadMode::Reflect && (pads[i].0 >= d || pads[i].1 >= d) {
                    return Err(err(format!("reflect padding {:?} must be smaller than axis {i} ({d})", pads[i])));
                }
                out[i - 1] = d + pads[i].0 + pads[i].1;
            }
            Ok(vec![out])
        }
        Op::Resize(a) => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            need_rank(0, 4, "input")?;
            positive(&a.out_hw, "output size")?;
            if a.scales.iter().any(|s| s.is_nan() || *s <= 0.0) {
                return Err(err(format!("scales {:?} must be positive", a.scales)));
            }
            if a.coord == CoordMode::TfHalfPixelForNn && a.mode == ResizeMode::Linear {
                return Err(err("tf_half_pixel_for_nn applies to nearest mode only".into()));
            }
            Ok(vec![vec![v(0).dims[0], a.out_hw[0], a.out_hw[1]]])
        }
        Op::ReduceMean { axes, keepdims } => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            if axes.is_empty() {
                return Err(err("needs at least one axis".into()));
            }
            let mut seen = HashSet::new();
            for &a in axes {
                check_axis(a, v(0).rank())?;
                if !seen.insert(a) {
                    return Err(err(format!("axis {a} appears twice")));
                }
            }
            let mut out = vec![];
            for (i, &d) in v(0).dims.iter().enumerate() {
                if axes.contains(&(i + 1)) {
                    if *keepdims {
                        out.push(1);
                    }
                } else {
                    out.push(d);
                }
            }
            Ok(vec![out])
        }
        Op::Lrn(a) => {
            arity(1, 1)?;
            need_batched(0, "input")?;
            if v(0).rank() < 3 {
                return Err(err("input must be [N, C, spatial...]".into()));
            }
            positive(&[a.size], "size")?;
            Ok(vec![v(0).dims.clone()])
        }
    }
}

fn sym_show(v: &Value) -> Vec<String> {
    sym_shape(v).iter().map(|&d| if d == BATCH { "N".to_string() } else { d.to_string() }).collect()
}
