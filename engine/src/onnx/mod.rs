//! ONNX import: a `.onnx` file (default-domain opsets 7 to 28, IR versions up to 14) becomes a
//! [`Model`], specialised into static graphs for the input shapes it is run with.
//!
//! Loading ([`load`]) reads the file once: initializers, external data and tensor attributes
//! become typed tensors, and every op type is checked, so one error lists every unsupported
//! op with its nodes. Specialising walks the nodes with every shape known: each node is
//! mapped to IR operations by its op family's file in `ops/` (`conv`, `matmul`, `pool`,
//! `elementwise`, `reduce`, `norm`, `layout`, `index`, `convert`, `host`, `sample`,
//! `recurrent`, `quant`, `signal`, `shape`, and the ops built from others: `attention`,
//! `einsum`, `loss`, `training`), which also handles the per-opset differences of its ops; any node whose inputs are all constants is
//! evaluated by the reference executor and replaced by its result (constant folding), so
//! shape computations (`Shape` -> arithmetic -> `Reshape`) disappear. A host operation
//! (data-dependent output shape) ends the device graph; the walk resumes after it once its
//! outputs are known. The first dimension of every input is the batch; a model exported at a
//! fixed batch runs at any batch (a `Reshape` target that repeats the exported batch follows
//! the run's batch).
//!
//! Every error names the model, node and op it is about; untrusted bytes never panic.

mod ops;
mod parse;
mod proto;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use prost::Message;

use crate::error::{EngineError, Result};
use crate::graph::{GraphBuilder, ValueId};
use crate::model::{HostArg, HostStep, Model, Resume, Segment};
use crate::ops::Op;
use crate::tensor::{DType, Tensor};
use proto::{AttributeProto, DimValue, NodeProto};

pub(crate) use parse::Parsed;
pub use parse::{MAX_IR_VERSION, MAX_OPSET, MIN_OPSET};
pub(crate) use parse::{decode_le, encode_le};

/// Options of an import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Per-sample dimensions (without the batch) of the model's inputs, in input order, used
    /// where the file gives symbolic or no dimensions (e.g. `[3, 224, 224]`).
    pub input_dims: Vec<Vec<usize>>,
}

/// Operation types the importer maps (default ONNX domain), sorted.
pub fn supported_ops() -> Vec<&'static str> {
    let mut v = ops::SUPPORTED.to_vec();
    v.sort_unstable();
    v
}

/// What a model file holds, read without importing it (works for unsupported models too).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelSummary {
    /// IR version of the file.
    pub ir_version: i64,
    /// Opset of the default domain.
    pub opset: i64,
    /// Producer and its version.
    pub producer: String,
    /// Graph inputs (initializers excluded) with their element types and dimensions (names
    /// for symbolic ones).
    pub inputs: Vec<(String, String, Vec<String>)>,
    /// Graph outputs.
    pub outputs: Vec<String>,
    /// Each op type with its node count and whether the importer supports it.
    pub ops: Vec<(String, usize, bool)>,
    /// Values held in initializers and in `Constant` nodes.
    pub parameters: u64,
    /// Nodes of op types that run on the host when their inputs come from the data: (node,
    /// op).
    pub host_capable: Vec<(String, String)>,
}

/// Reads a model file's structure without importing it.
pub fn summarize(path: &Path) -> Result<ModelSummary> {
    let model = path.display().to_string();
    let err = |reason: String| EngineError::Model { model: model.clone(), reason };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read the file: {e}")))?;
    let proto = proto::ModelProto::decode(bytes.as_slice())
        .map_err(|e| err(format!("not a valid ONNX file (truncated or corrupt protobuf: {e})")))?;
    let graph = proto.graph.ok_or_else(|| err("the file holds no graph".into()))?;
    let opset =
        proto.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(0, |o| o.version);
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|v| !inits.contains(v.name.as_str()))
        .map(|v| {
            let tt = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
            let dtype = tt.map_or("?".to_string(), |t| DType::onnx_name(t.elem_type));
            let dims = tt
                .and_then(|t| t.shape.as_ref())
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(DimValue::Value(v)) => v.to_string(),
                            Some(DimValue::Param(p)) => p.clone(),
                            None => "?".into(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (v.name.clone(), dtype, dims)
        })
        .collect();
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    let mut constant_values = 0u64;
    let mut host_capable = vec![];
    for (i, n) in graph.node.iter().enumerate() {
        if matches!(
            n.op_type.as_str(),
            "NonZero"
                | "NonMaxSuppression"
                | "Unique"
                | "TopK"
                | "Range"
                | "ConstantOfShape"
                | "Compress"
                | "HannWindow"
                | "HammingWindow"
                | "BlackmanWindow"
                | "MelWeightMatrix"
        ) && (n.domain.is_empty() || n.domain == "ai.onnx")
        {
            host_capable.push((parse::node_name(n, i), n.op_type.clone()));
        }
        let default = n.domain.is_empty() || n.domain == "ai.onnx";
        let op = if default { n.op_type.clone() } else { format!("{}::{}", n.domain, n.op_type) };
        *ops.entry(op).or_default() += 1;
        if default && n.op_type == "Constant" {
            for a in &n.attribute {
                constant_values += match a.name.as_str() {
                    "value" => a.t.as_ref().map_or(0, |t| t.dims.iter().product::<i64>().max(0) as u64),
                    "value_floats" => a.floats.len() as u64,
                    "value_ints" => a.ints.len() as u64,
                    "value_float" | "value_int" => 1,
                    _ => 0,
                };
            }
        }
    }
    Ok(ModelSummary {
        ir_version: proto.ir_version,
        opset,
        producer: format!("{} {}", proto.producer_name, proto.producer_version).trim().to_string(),
        inputs,
        outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
        ops: ops
            .into_iter()
            .map(|(op, c)| {
                let ok = ops::supported(&op)
                    || op
                        .split_once("::")
                        .is_some_and(|(d, t)| d == ops::training::DOMAIN && ops::training::OPS.contains(&t));
                (op, c, ok)
            })
            .collect(),
        parameters: graph.initializer.iter().map(|t| t.dims.iter().product::<i64>().max(0) as u64).sum::<u64>()
            + constant_values,
        host_capable,
    })
}

/// Reads a serialised ONNX `TensorProto` file (`.pb`, the format of ONNX's test data).
pub fn read_tensor(path: &Path) -> Result<Tensor> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| EngineError::Model { model: name.clone(), reason: format!("cannot read the file: {e}") })?;
    parse::tensor_from_bytes(&bytes, &name)
}

/// Loads a model file.
pub fn load(path: &Path, opts: &ImportOptions) -> Result<Model> {
    let model = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| EngineError::Model { model: model.clone(), reason: format!("cannot read the file: {e}") })?;
    load_bytes(&bytes, &model, path.parent(), opts)
}

/// Loads a model from bytes; `base_dir` is where external data files are looked up.
pub fn load_bytes(bytes: &[u8], model: &str, base_dir: Option<&Path>, opts: &ImportOptions) -> Result<Model> {
    let parsed = parse::parse(bytes, model, base_dir)?;
    let m = Model::from_onnx(parsed, opts.input_dims.clone());
    // Check the given dimensions against the file now, not at the first run.
    for (k, (spec, given)) in m.signature().inputs.iter().zip(&opts.input_dims).enumerate() {
        let rest = &spec.dims[spec.dims.len().min(1)..];
        if !rest.is_empty() && given.len() != rest.len() {
            return Err(EngineError::Model {
                model: model.to_string(),
                reason: format!(
                    "input '{}' has {} dimensions after the batch, the given input shape {given:?} has {}",
                    spec.name,
                    rest.len(),
                    given.len()
                ),
            });
        }
        for (i, (d, &g)) in rest.iter().zip(given).enumerate() {
            if let crate::model::Dim::Fixed(n) = d
                && *n != g
            {
                return Err(EngineError::Model {
                    model: model.to_string(),
                    reason: format!(
                        "input '{}' (#{k}) dimension {} is {n} in the model, the given input shape says {g}",
                        spec.name,
                        i + 1
                    ),
                });
            }
        }
    }
    Ok(m)
}

/// A value during specialisation: computed on the device, or known now.
#[derive(Clone, Debug)]
pub(crate) enum V {
    Act(ValueId),
    Const(Arc<Tensor>),
}

/// A host operation the walk stopped at.
struct Split {
    node: String,
    op: Op,
    inputs: Vec<Option<V>>,
    outputs: Vec<String>,
}

/// The state of one specialisation walk.
pub(crate) struct Importer<'p> {
    p: &'p Parsed,
    b: GraphBuilder,
    env: HashMap<String, V>,
    /// Constants already added to the graph, by tensor identity.
    added: HashMap<*const Tensor, ValueId>,
    /// Names of constants known by name (initializers, Constant nodes), by tensor identity.
    const_names: HashMap<*const Tensor, String>,
    /// (batch the file fixes, batch of this run), when they differ.
    pub(crate) batch_change: Option<(usize, usize)>,
    split: Option<Split>,
}

/// Specialises a model for full input shapes.
pub(crate) fn specialize(p: &Parsed, shapes: &[Vec<usize>]) -> Result<Segment> {
    let mut im = Importer::new(p);
    for (decl, shape) in p.inputs.iter().zip(shapes) {
        let dtype = decl.dtype.unwrap_or(DType::F32);
        let id = im.b.input_typed(&decl.name, dtype, shape);
        im.env.insert(decl.name.clone(), V::Act(id));
    }
    if let (Some(exported), Some(run)) = (p.exported_batch(), shapes.first().and_then(|s| s.first()))
        && exported != *run
    {
        im.batch_change = Some((exported, *run));
    }
    im.walk(0)
}

/// Specialises the rest of a model after a host step.
pub(crate) fn resume(p: &Parsed, r: &Resume, live: &[(String, DType, Vec<usize>)]) -> Result<Segment> {
    let mut im = Importer::new(p);
    for (name, t) in r.constants.iter() {
        im.env.insert(name.clone(), V::Const(t.clone()));
        im.const_names.insert(Arc::as_ptr(t), name.clone());
    }
    for (name, dtype, shape) in live {
        let id = im.b.input_typed(name, *dtype, shape);
        im.env.insert(name.clone(), V::Act(id));
    }
    im.walk(r.at)
}

impl<'p> Importer<'p> {
    fn new(p: &'p Parsed) -> Self {
        let mut im = Importer {
            p,
            b: GraphBuilder::new(&p.name),
            env: HashMap::new(),
            added: HashMap::new(),
            const_names: HashMap::new(),
            batch_change: None,
            split: None,
        };
        for (name, t) in &p.initializers {
            im.env.insert(name.clone(), V::Const(t.clone()));
            im.const_names.insert(Arc::as_ptr(t), name.clone());
        }
        im
    }

    fn model_err(&self, reason: String) -> EngineError {
        EngineError::Model { model: self.p.model.clone(), reason }
    }

    /// Maps nodes from `start` on; stops after a host operation.
    fn walk(mut self, start: usize) -> Result<Segment> {
        let nodes = &self.p.nodes;
        for (i, n) in nodes.iter().enumerate().skip(start) {
            let name = parse::node_name(n, i);
            self.node(i, n, &name)?;
            if let Some(split) = self.split.take() {
                return self.finish_at_host(i + 1, split);
            }
        }
        self.finish()
    }

    fn node(&mut self, index: usize, n: &'p NodeProto, name: &str) -> Result<()> {
        let op = n.op_type.as_str();
        let err = |r: String| node_err(name, op, r);
        let mut inputs = vec![];
        for s in &n.input {
            if s.is_empty() {
                inputs.push(None);
            } else {
                let v = self
                    .env
                    .get(s)
                    .cloned()
                    .ok_or_else(|| err(format!("input '{s}' is produced by no earlier node")))?;
                inputs.push(Some(v));
            }
        }
        let need = ops::min_inputs(op, self.p.opset);
        if let Some(missing) = (0..need).find(|&k| inputs.get(k).is_none_or(Option::is_none)) {
            return Err(err(format!(
                "needs at least {need} input(s), input {missing} is missing; the file is malformed, re-export it"
            )));
        }
        // Recurrent layers may leave Y unnamed and keep only their final states.
        let optional_first = matches!(op, "LSTM" | "GRU" | "RNN");
        let named = if optional_first {
            n.output.iter().any(|s| !s.is_empty())
        } else {
            n.output.first().is_some_and(|s| !s.is_empty())
        };
        if !named && op != "Constant" {
            return Err(err("has no output; the file is malformed, re-export it".into()));
        }
        let mut cx = Ctx { im: self, index, n, name: name.to_string(), inputs, attrs: Attrs::new(n), added: 0 };
        ops::map(&mut cx)
    }

    /// Every value the nodes from `from` on read, and the model's outputs.
    fn live_from(&self, from: usize) -> HashSet<&'p str> {
        let mut live: HashSet<&str> = self.p.outputs.iter().map(|o| o.name.as_str()).collect();
        for n in &self.p.nodes[from..] {
            live.extend(n.input.iter().filter(|s| !s.is_empty()).map(String::as_str));
        }
        live
    }

    /// Ends the device graph before a host step: its outputs are the computed values read
    /// later (the step's inputs included), named as the model names them.
    fn finish_at_host(mut self, at: usize, split: Split) -> Result<Segment> {
        let mut live: Vec<&str> = self.live_from(at).into_iter().collect();
        live.sort_unstable();
        let mut host_inputs = vec![];
        let mut step_reads: Vec<String> = vec![];
        for v in &split.inputs {
            host_inputs.push(match v {
                None => HostArg::Absent,
                Some(V::Const(t)) => HostArg::Constant(t.clone()),
                Some(V::Act(id)) => {
                    let name = self.env_name_of(*id).unwrap_or_else(|| self.b.value(*id).name.clone());
                    step_reads.push(name.clone());
                    HostArg::Value(name)
                }
            });
        }
        let mut constants = HashMap::new();
        let mut computed: Vec<String> = vec![];
        for name in live.iter().map(|s| s.to_string()).chain(step_reads.iter().cloned()) {
            match self.env.get(&name).cloned() {
                Some(V::Act(id)) if !computed.contains(&name) => {
                    self.export(id, &name);
                    computed.push(name);
                }
                Some(V::Const(t)) => {
                    constants.insert(name, t);
                }
                _ => {}
            }
        }
        let host_outputs: Vec<String> = split.outputs.clone();
        let mut resume_live: Vec<String> = computed.iter().filter(|n| live.contains(&n.as_str())).cloned().collect();
        for o in &host_outputs {
            if !o.is_empty() && live.contains(&o.as_str()) && !resume_live.contains(o) {
                resume_live.push(o.clone());
            }
        }
        let graph = self.b.build_allow_empty()?;
        Ok(Segment {
            graph,
            host: Some(HostStep {
                node: split.node,
                op: split.op,
                inputs: host_inputs,
                outputs: host_outputs,
                resume: Resume { at, live: resume_live, constants: Arc::new(constants) },
            }),
        })
    }

    /// The name under which the walk's environment knows a computed value.
    fn env_name_of(&self, id: ValueId) -> Option<String> {
        let mut names: Vec<&String> =
            self.env.iter().filter(|(_, v)| matches!(v, V::Act(x) if *x == id)).map(|(k, _)| k).collect();
        names.sort();
        names.first().map(|s| s.to_string())
    }

    /// Makes a computed value an output of the graph under `name`.
    fn export(&mut self, id: ValueId, name: &str) {
        let is_input = matches!(self.b.value(id).source, crate::graph::ValueSource::Input);
        let out = if self.b.value(id).name == name {
            id
        } else if is_input || self.b.is_output(id) {
            // An input (or a value already output under another name) keeps its name: the
            // output is a copy of it.
            let shape = self.b.shape(id).to_vec();
            match self.b.add_node_named_outputs(&format!("{name}.copy"), Op::Reshape { shape }, vec![id], &[name]) {
                Ok(v) => v[0],
                Err(_) => id,
            }
        } else {
            self.b.rename(id, name);
            id
        };
        self.b.output(out);
    }

    /// Ends the last device graph: its outputs are the model's outputs, by name.
    fn finish(mut self) -> Result<Segment> {
        let outputs: Vec<String> = self.p.outputs.iter().map(|o| o.name.clone()).collect();
        for name in &outputs {
            match self.env.get(name).cloned() {
                Some(V::Act(id)) => self.export(id, name),
                Some(V::Const(t)) => {
                    let id = self.b.constant_arc(name, t);
                    self.b.rename(id, name);
                    self.b.output(id);
                }
                None => return Err(self.model_err(format!("output '{name}' is produced by no node"))),
            }
        }
        Ok(Segment { graph: self.b.build()?, host: None })
    }

    /// The graph value of a V (constants added once).
    fn value_id(&mut self, v: &V, fallback: &str) -> ValueId {
        match v {
            V::Act(id) => *id,
            V::Const(t) => {
                let key = Arc::as_ptr(t);
                if let Some(&id) = self.added.get(&key) {
                    return id;
                }
                let name = self.const_names.get(&key).cloned().unwrap_or_else(|| fallback.to_string());
                let id = self.b.constant_arc(&name, t.clone());
                self.added.insert(key, id);
                id
            }
        }
    }
}

/// Attribute access for one node.
pub(crate) struct Attrs<'a>(HashMap<&'a str, &'a AttributeProto>);

impl<'a> Attrs<'a> {
    pub(crate) fn new(n: &'a NodeProto) -> Self {
        Attrs(n.attribute.iter().map(|a| (a.name.as_str(), a)).collect())
    }
    pub fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
    pub fn i(&self, k: &str, d: i64) -> i64 {
        self.0.get(k).map_or(d, |a| a.i)
    }
    pub fn f(&self, k: &str, d: f32) -> f32 {
        self.0.get(k).map_or(d, |a| a.f)
    }
    pub fn ints(&self, k: &str) -> Option<Vec<i64>> {
        self.0.get(k).map(|a| a.ints.clone())
    }
    pub fn floats(&self, k: &str) -> Option<Vec<f32>> {
        self.0.get(k).map(|a| a.floats.clone())
    }
    pub fn s(&self, k: &str, d: &str) -> String {
        self.0.get(k).map_or(d.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }
    pub fn get(&self, k: &str) -> Option<&'a AttributeProto> {
        self.0.get(k).copied()
    }
}

pub(crate) fn node_err(node: &str, op: &str, reason: impl Into<String>) -> EngineError {
    EngineError::InvalidNode { node: node.to_string(), op: op.to_string(), reason: reason.into() }
}

/// What an op family's mapping sees of the node it maps.
pub(crate) struct Ctx<'a, 'p> {
    im: &'a mut Importer<'p>,
    /// The node's index in the model.
    index: usize,
    pub n: &'p NodeProto,
    pub name: String,
    inputs: Vec<Option<V>>,
    pub attrs: Attrs<'p>,
    added: usize,
}

impl Ctx<'_, '_> {
    /// The op type.
    pub fn op(&self) -> &str {
        &self.n.op_type
    }

    /// The model's default-domain opset.
    pub fn opset(&self) -> i64 {
        self.im.p.opset
    }

    /// An error about this node.
    pub fn err(&self, reason: impl Into<String>) -> EngineError {
        node_err(&self.name, &self.n.op_type, reason)
    }

    /// Number of inputs listed (absent optional ones included).
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// Input `k`, None when absent.
    pub fn input(&self, k: usize) -> Option<V> {
        self.inputs.get(k).cloned().flatten()
    }

    /// Input `k`, which must be present.
    pub fn need(&self, k: usize) -> Result<V> {
        self.input(k).ok_or_else(|| self.err(format!("input {k} is missing")))
    }

    /// Every present input, in order.
    pub fn present(&self) -> Vec<V> {
        self.inputs.iter().flatten().cloned().collect()
    }

    /// Input `k` as a constant: it must be known when the model is compiled (a constant, or
    /// computed from constants and shapes).
    pub fn const_input(&self, k: usize, what: &str) -> Result<Option<Arc<Tensor>>> {
        match self.input(k) {
            None => Ok(None),
            Some(V::Const(t)) => Ok(Some(t)),
            Some(V::Act(id)) => Err(self.err(format!(
                "{what} ('{}') is computed from the input data at run time, but poolpipe needs it when the model is \
                 compiled (it must depend only on constants and shapes)",
                self.im.b.value(id).name
            ))),
        }
    }

    /// Input `k` as integers known at compile time.
    pub fn ints(&self, k: usize, what: &str) -> Result<Option<Vec<i64>>> {
        Ok(self.const_input(k, what)?.map(|t| t.to_i64s()))
    }

    /// Input `k` as floats known at compile time.
    pub fn floats(&self, k: usize, what: &str) -> Result<Option<Vec<f64>>> {
        Ok(self.const_input(k, what)?.map(|t| t.to_f64s()))
    }

    /// Shape of a value.
    pub fn shape(&self, v: &V) -> Vec<usize> {
        match v {
            V::Act(id) => self.im.b.shape(*id).to_vec(),
            V::Const(t) => t.shape().to_vec(),
        }
    }

    /// Element type of a value.
    pub fn dtype(&self, v: &V) -> DType {
        match v {
            V::Act(id) => self.im.b.dtype(*id),
            V::Const(t) => t.dtype(),
        }
    }

    /// Rank of a value.
    pub fn rank(&self, v: &V) -> usize {
        self.shape(v).len()
    }

    /// (batch the file fixes, batch of this run) when they differ.
    pub fn batch_change(&self) -> Option<(usize, usize)> {
        self.im.batch_change
    }

    /// A constant value.
    pub fn constant(&self, t: Tensor) -> V {
        V::Const(Arc::new(t))
    }

    /// The node's `value` tensor attribute (Constant, ConstantOfShape), decoded at load.
    pub fn value_attr(&self) -> Option<Arc<Tensor>> {
        self.im.p.node_values[self.index].clone()
    }

    /// Sets output `k` of the node.
    pub fn set(&mut self, k: usize, v: V) {
        if let Some(o) = self.n.output.get(k).filter(|s| !s.is_empty()) {
            if let V::Const(t) = &v {
                self.im.const_names.entry(Arc::as_ptr(t)).or_insert_with(|| o.clone());
            }
            self.im.env.insert(o.clone(), v);
        }
    }

    /// True when output `k` is used (listed and named).
    pub fn wants_output(&self, k: usize) -> bool {
        self.n.output.get(k).is_some_and(|s| !s.is_empty())
    }

    fn next_name(&mut self) -> String {
        let name = if self.added == 0 { self.name.clone() } else { format!("{}/{}", self.name, self.added) };
        self.added += 1;
        name
    }

    /// Adds an operation: evaluated now by the reference executor when every input is a
    /// constant, else added to the device graph.
    pub fn add(&mut self, op: Op, inputs: &[V]) -> Result<Vec<V>> {
        let name = self.next_name();
        if inputs.iter().all(|v| matches!(v, V::Const(_))) {
            return self.fold(&name, op, inputs);
        }
        let ids: Vec<ValueId> =
            inputs.iter().enumerate().map(|(k, v)| self.im.value_id(v, &format!("{name}.in{k}"))).collect();
        let outs = self.im.b.add_multi(&name, op, ids)?;
        Ok(outs.into_iter().map(V::Act).collect())
    }

    /// A binary operation without activation ([`Ctx::add1`]).
    pub fn binary(&mut self, op: crate::ops::BinaryOp, a: V, b: V) -> Result<V> {
        self.add1(Op::Binary { op, activation: None }, &[a, b])
    }

    /// [`Ctx::add`] for a one-output operation.
    pub fn add1(&mut self, op: Op, inputs: &[V]) -> Result<V> {
        Ok(self.add(op, inputs)?.remove(0))
    }

    fn fold(&mut self, name: &str, op: Op, inputs: &[V]) -> Result<Vec<V>> {
        let ts: Vec<Arc<Tensor>> =
            inputs.iter().map(|v| if let V::Const(t) = v { t.clone() } else { unreachable!("all constant") }).collect();
        let err = |r: String| node_err(name, op.name(), r);
        if !op.is_host() {
            let ins: Vec<crate::ops::In> = ts
                .iter()
                .map(|t| crate::ops::In {
                    name: "constant",
                    dtype: t.dtype(),
                    shape: t.shape(),
                    konst: Some(t.as_ref()),
                })
                .collect();
            let outs = crate::ops::infer(&op, &ins).map_err(err)?;
            for (_, s) in &outs {
                if s.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > 1 << 28) {
                    return Err(err(format!(
                        "folding this node at compile time would make a constant of shape {s:?}, more than 2^28 elements"
                    )));
                }
            }
        }
        let refs: Vec<&Tensor> = ts.iter().map(|t| t.as_ref()).collect();
        let results = crate::reference::eval(&op, &refs).map_err(err)?;
        Ok(results.into_iter().map(|t| V::Const(Arc::new(t))).collect())
    }

    /// A host operation: folded when its inputs are constants; else the device graph ends
    /// here and the operation runs on the host, its outputs named as the node's.
    pub fn host(&mut self, op: Op, inputs: Vec<Option<V>>) -> Result<()> {
        let present: Vec<V> = inputs.iter().flatten().cloned().collect();
        if present.iter().all(|v| matches!(v, V::Const(_))) {
            let name = self.next_name();
            let outs = self.fold(&name, op, &present)?;
            for (k, v) in outs.into_iter().enumerate() {
                self.set(k, v);
            }
            return Ok(());
        }
        self.im.split = Some(Split { node: self.name.clone(), op, inputs, outputs: self.n.output.clone() });
        Ok(())
    }
}
