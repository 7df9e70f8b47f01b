//! The graph IR: values (inputs, constants, node outputs) and nodes in topological order,
//! built through [`GraphBuilder`], which checks every node and infers its output types and
//! shapes.
//!
//! A graph is fully static: every value has an element type and a concrete shape, the batch
//! included (a model is specialised into one graph per batch size, see
//! [`crate::model::Model`]). Graph outputs may be constants or graph inputs (a model whose
//! output is known at compile time, or passes an input through).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::ops::*;
use crate::tensor::{DType, Tensor, numel};

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
    /// A graph input.
    Input,
    /// A constant (weights, folded values).
    Constant(Arc<Tensor>),
    /// Output `1` of node `0`.
    Node(usize, usize),
}

/// A tensor of the graph.
#[derive(Clone, Debug)]
pub struct Value {
    /// Name (unique in the graph).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape (static, batch included).
    pub shape: Vec<usize>,
    /// Where it comes from.
    pub source: ValueSource,
}

impl Value {
    /// True for values computed at run time (graph inputs and node outputs).
    pub fn is_activation(&self) -> bool {
        !matches!(self.source, ValueSource::Constant(_))
    }

    /// The constant's data, if it is one.
    pub fn constant(&self) -> Option<&Arc<Tensor>> {
        match &self.source {
            ValueSource::Constant(t) => Some(t),
            _ => None,
        }
    }

    /// Rank of the tensor.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
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

/// A checked graph: nodes in topological order, every type and shape known.
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

    /// Graph inputs.
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

    /// Multiply-accumulate count of the whole graph (convolutions and matrix products only),
    /// for reports; for a graph specialised at batch 1 it is the count per frame.
    pub fn macs(&self) -> u64 {
        (0..self.nodes.len()).map(|i| self.node_macs(i)).sum()
    }

    /// Multiply-accumulates of node `i` (0 for operations other than convolutions and
    /// matrix products).
    pub fn node_macs(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        let out = self.value(n.outputs[0]);
        match &n.op {
            Op::Conv(_) | Op::DeformConv(_) => {
                let w = &self.value(n.inputs[1]).shape;
                (out.numel() * numel(&w[1..])) as u64
            }
            Op::ConvTranspose(_) => {
                let w = &self.value(n.inputs[1]).shape;
                let x = &self.value(n.inputs[0]).shape;
                (numel(x) * numel(&w[1..])) as u64
            }
            Op::Gemm(a) => {
                let s = &self.value(n.inputs[0]).shape;
                let k = if a.trans_a { s[0] } else { s[1] };
                (out.numel() * k) as u64
            }
            Op::MatMul { .. } => {
                let a = self.value(n.inputs[0]);
                let k = *a.shape.last().unwrap_or(&1);
                (out.numel() * k) as u64
            }
            Op::Recurrent(a) => {
                // X [T, N, I] (or [N, T, I]): every step multiplies the input and the state by
                // the gates' weights, in every direction.
                let x = &self.value(n.inputs[0]).shape;
                let steps_by_batch = x[0] * x[1];
                let per_step = a.cell.gates() * a.hidden_size * (x[2] + a.hidden_size);
                (steps_by_batch * a.direction.count() * per_step) as u64
            }
            _ => 0,
        }
    }

    /// Parameters: the elements of every constant the nodes read.
    pub fn parameters(&self) -> u64 {
        self.values.iter().filter_map(|v| v.constant()).map(|t| t.len() as u64).sum()
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
                    ValueSource::Input => b.input_typed(&val.name, val.dtype, &val.shape),
                    ValueSource::Node(p, _) if !inside.contains(p) => b.input_typed(&val.name, val.dtype, &val.shape),
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
/// let x = g.input("x", &[2, 3, 8, 8]);
/// let w = g.constant("w", Tensor::random(vec![4, 3, 3, 3], &mut rng, -1.0, 1.0));
/// let y = g.conv("conv", x, w, None, ConvAttrs { pads: vec![1; 4], ..Default::default() }).unwrap();
/// let y = g.unary("relu", y, Activation::Relu).unwrap();
/// g.output(y);
/// let graph = g.build().unwrap();
/// assert_eq!(graph.value(graph.outputs()[0]).shape, vec![2, 4, 8, 8]);
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

    fn push_value(&mut self, name: &str, dtype: DType, shape: Vec<usize>, source: ValueSource) -> ValueId {
        let name = self.unique(name);
        self.g.values.push(Value { name, dtype, shape, source });
        ValueId(self.g.values.len() - 1)
    }

    /// A float32 graph input of the given (full) shape, e.g. `[batch, 3, 224, 224]`.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> ValueId {
        self.input_typed(name, DType::F32, shape)
    }

    /// A graph input of any element type.
    pub fn input_typed(&mut self, name: &str, dtype: DType, shape: &[usize]) -> ValueId {
        let id = self.push_value(name, dtype, shape.to_vec(), ValueSource::Input);
        self.g.inputs.push(id);
        id
    }

    /// A constant tensor (weights).
    pub fn constant(&mut self, name: &str, t: Tensor) -> ValueId {
        self.constant_arc(name, Arc::new(t))
    }

    /// A constant tensor shared with another graph.
    pub fn constant_arc(&mut self, name: &str, t: Arc<Tensor>) -> ValueId {
        let shape = t.shape().to_vec();
        let dtype = t.dtype();
        self.push_value(name, dtype, shape, ValueSource::Constant(t))
    }

    /// Marks a value as a graph output.
    pub fn output(&mut self, v: ValueId) {
        if !self.g.outputs.contains(&v) {
            self.g.outputs.push(v);
        }
    }

    /// A value added so far.
    pub fn value(&self, v: ValueId) -> &Value {
        &self.g.values[v.0]
    }

    /// Shape of a value added so far.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.g.values[v.0].shape
    }

    /// Element type of a value added so far.
    pub fn dtype(&self, v: ValueId) -> DType {
        self.g.values[v.0].dtype
    }

    /// Adds a node with one output; returns the output.
    pub fn add(&mut self, name: &str, op: Op, inputs: Vec<ValueId>) -> Result<ValueId> {
        Ok(self.add_multi(name, op, inputs)?[0])
    }

    /// Adds a node with any number of outputs (Split); returns them.
    pub fn add_multi(&mut self, name: &str, op: Op, inputs: Vec<ValueId>) -> Result<Vec<ValueId>> {
        let node_name = self.node_name(name, &op);
        let outs = self.infer(&node_name, &op, &inputs)?;
        let names: Vec<String> = if outs.len() == 1 {
            vec![node_name.clone()]
        } else {
            (0..outs.len()).map(|i| format!("{node_name}:{i}")).collect()
        };
        self.finish_node(node_name, op, inputs, outs, &names)
    }

    /// Adds a node whose outputs take the given names (made unique when taken).
    pub(crate) fn add_node_named_outputs(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<ValueId>,
        out_names: &[&str],
    ) -> Result<Vec<ValueId>> {
        let node_name = self.node_name(name, &op);
        let outs = self.infer(&node_name, &op, &inputs)?;
        let names: Vec<String> = out_names.iter().map(|s| s.to_string()).collect();
        if names.len() != outs.len() {
            return Err(EngineError::InvalidNode {
                node: node_name,
                op: op.name().into(),
                reason: format!("has {} outputs, {} names were given", outs.len(), names.len()),
            });
        }
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

    /// Types and shapes of a node's outputs, checking the node.
    fn infer(&self, node: &str, op: &Op, inputs: &[ValueId]) -> Result<Vec<(DType, Vec<usize>)>> {
        let err = |reason: String| EngineError::InvalidNode { node: node.to_string(), op: op.name().into(), reason };
        if let Some(i) = inputs.iter().find(|i| i.0 >= self.g.values.len()) {
            return Err(err(format!("input value #{} does not exist in this graph", i.0)));
        }
        let ins: Vec<In> = inputs
            .iter()
            .map(|&i| {
                let v = &self.g.values[i.0];
                In { name: &v.name, dtype: v.dtype, shape: &v.shape, konst: v.constant().map(|t| t.as_ref()) }
            })
            .collect();
        let outs = crate::ops::infer(op, &ins).map_err(err)?;
        for (_, s) in &outs {
            if s.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none_or(|n| n > 1 << 31) {
                return Err(err(format!("output shape {s:?} is too large (more than 2^31 elements)")));
            }
        }
        Ok(outs)
    }

    fn finish_node(
        &mut self,
        node_name: String,
        op: Op,
        inputs: Vec<ValueId>,
        outs: Vec<(DType, Vec<usize>)>,
        names: &[String],
    ) -> Result<Vec<ValueId>> {
        let idx = self.g.nodes.len();
        let ids: Vec<ValueId> = outs
            .into_iter()
            .enumerate()
            .map(|(i, (dtype, shape))| self.push_value(&names[i], dtype, shape, ValueSource::Node(idx, i)))
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

    /// Reshape to a full shape.
    pub fn reshape(&mut self, name: &str, x: ValueId, shape: &[usize]) -> Result<ValueId> {
        self.add(name, Op::Reshape { shape: shape.to_vec() }, vec![x])
    }

    /// Flatten to 2-D at `axis` (ONNX Flatten): [prod(dims[..axis]), prod(dims[axis..])].
    pub fn flatten(&mut self, name: &str, x: ValueId, axis: usize) -> Result<ValueId> {
        let dims = self.shape(x).to_vec();
        if axis > dims.len() {
            return Err(EngineError::InvalidNode {
                node: name.to_string(),
                op: "Flatten".into(),
                reason: format!("axis {axis} is out of range for rank {}", dims.len()),
            });
        }
        self.reshape(name, x, &[numel(&dims[..axis]), numel(&dims[axis..])])
    }

    /// Removes size-1 axes.
    pub fn squeeze(&mut self, name: &str, x: ValueId, axes: &[usize]) -> Result<ValueId> {
        let dims = self.shape(x).to_vec();
        let bad = |reason: String| EngineError::InvalidNode { node: name.to_string(), op: "Squeeze".into(), reason };
        if let Some(a) = axes.iter().find(|&&a| a >= dims.len()) {
            return Err(bad(format!("axis {a} is out of range for rank {}", dims.len())));
        }
        let mut keep = vec![];
        for (i, &d) in dims.iter().enumerate() {
            if axes.contains(&i) {
                if d != 1 {
                    return Err(bad(format!("axis {i} has size {d}, not 1")));
                }
            } else {
                keep.push(d);
            }
        }
        self.reshape(name, x, &keep)
    }

    /// Inserts size-1 axes at the given positions of the output.
    pub fn unsqueeze(&mut self, name: &str, x: ValueId, axes: &[usize]) -> Result<ValueId> {
        let dims = self.shape(x).to_vec();
        let out_rank = dims.len() + axes.len();
        let distinct: HashSet<usize> = axes.iter().copied().collect();
        if distinct.len() != axes.len() || axes.iter().any(|&a| a >= out_rank) {
            return Err(EngineError::InvalidNode {
                node: name.to_string(),
                op: "Unsqueeze".into(),
                reason: format!("axes {axes:?} must be distinct and lie in 0..{out_rank}"),
            });
        }
        let mut out = vec![];
        let mut it = dims.iter();
        for axis in 0..out_rank {
            if axes.contains(&axis) {
                out.push(1);
            } else {
                out.push(*it.next().expect("counted"));
            }
        }
        self.reshape(name, x, &out)
    }

    /// True when a value is marked as a graph output.
    pub fn is_output(&self, v: ValueId) -> bool {
        self.g.outputs.contains(&v)
    }

    /// Finishes a graph that may have no outputs (a device graph before a host step that
    /// reads only constants).
    pub(crate) fn build_allow_empty(self) -> Result<Graph> {
        Ok(self.g)
    }

    /// Finishes the graph; errors when it has no outputs.
    pub fn build(self) -> Result<Graph> {
        if self.g.outputs.is_empty() {
            return Err(EngineError::InvalidGraph { graph: self.g.name, reason: "the graph has no outputs".into() });
        }
        Ok(self.g)
    }
}
