//! ONNX import: a `.onnx` file (opsets 7 to 23) becomes a checked [`Graph`].
//!
//! Initializers, `Constant` nodes and tensor attributes become constants; external data files
//! are read from beside the model. Shape subgraphs (`Shape`, `Gather`, `Unsqueeze`, `Concat`,
//! arithmetic on constants feeding `Reshape`) are folded at import, the batch dimension of a
//! `Shape` being carried symbolically. `Dropout` and `Identity` disappear, `Sum` becomes a chain
//! of `Add`s; batch norms are folded into convolutions later by [`crate::optimize`]. The first
//! dimension of every graph input is the batch, whatever the file says (a symbolic name or the
//! batch of the export); symbolic spatial dimensions come from [`ImportOptions::input_dims`].
//!
//! Every unsupported operation of a model is reported at once, with the nodes that use it.

mod proto;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;

use crate::error::{EngineError, Result};
use crate::graph::{Graph, GraphBuilder, ValueId};
use crate::ops::*;
use crate::tensor::{Tensor, numel};
use proto::{AttributeProto, DimValue, NodeProto, TensorProto, data_type};

/// Options of an import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Per-sample dimensions (without the batch) of the model's inputs, in input order, used
    /// where the file gives symbolic or no dimensions (e.g. `[3, 224, 224]`).
    pub input_dims: Vec<Vec<usize>>,
}

/// Operation types the importer maps (default ONNX domain).
pub const SUPPORTED_OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Erf",
    "Flatten",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LRN",
    "LayerNormalization",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Upsample",
];

/// Marks the run-time batch inside folded shape values.
const BATCH: i64 = i64::MIN + 7;

/// What a model file holds, read without importing it (works for unsupported models too).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelSummary {
    /// IR version of the file.
    pub ir_version: i64,
    /// Opset of the default domain.
    pub opset: i64,
    /// Producer and its version.
    pub producer: String,
    /// Graph inputs (initializers excluded) with their dimensions (names for symbolic ones).
    pub inputs: Vec<(String, Vec<String>)>,
    /// Graph outputs.
    pub outputs: Vec<String>,
    /// Each op type with its node count and whether the importer supports it.
    pub ops: Vec<(String, usize, bool)>,
    /// Values held in initializers.
    pub parameters: u64,
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
    let inits: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|v| !inits.contains(v.name.as_str()))
        .map(|v| {
            let dims = v
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
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
            (v.name.clone(), dims)
        })
        .collect();
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    for n in &graph.node {
        let op = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}::{}", n.domain, n.op_type)
        };
        *ops.entry(op).or_default() += 1;
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
                let ok = SUPPORTED_OPS.contains(&op.as_str());
                (op, c, ok)
            })
            .collect(),
        parameters: graph.initializer.iter().map(|t| t.dims.iter().product::<i64>().max(0) as u64).sum(),
    })
}

/// Loads a model file.
pub fn load(path: &Path, opts: &ImportOptions) -> Result<Graph> {
    let model = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| EngineError::Model { model: model.clone(), reason: format!("cannot read the file: {e}") })?;
    load_bytes(&bytes, &model, path.parent(), opts)
}

/// Loads a model from bytes; `base_dir` is where external data files are looked up.
pub fn load_bytes(bytes: &[u8], model: &str, base_dir: Option<&Path>, opts: &ImportOptions) -> Result<Graph> {
    let err = |reason: String| EngineError::Model { model: model.to_string(), reason };
    let proto = proto::ModelProto::decode(bytes)
        .map_err(|e| err(format!("not a valid ONNX file (truncated or corrupt protobuf: {e})")))?;
    let Some(graph) = proto.graph.as_ref() else {
        return Err(err("the file holds no graph (is it an ONNX model?)".into()));
    };
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(if proto.ir_version > 0 && proto.ir_version < 3 { 1 } else { 0 });
    if !(7..=23).contains(&opset) {
        return Err(err(format!(
            "opset {opset} of the default domain is outside the supported 7..=23; re-export the model with an opset in that range"
        )));
    }
    // Every unsupported op, with its nodes, in one error.
    let mut unsupported: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        let default_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        if !default_domain || !SUPPORTED_OPS.contains(&n.op_type.as_str()) {
            let op = if default_domain { n.op_type.clone() } else { format!("{}::{}", n.domain, n.op_type) };
            unsupported.entry(op).or_default().push(node_name(n, i));
        }
    }
    if !unsupported.is_empty() {
        let ops = unsupported
            .iter()
            .map(|(op, nodes)| {
                let shown: Vec<&str> = nodes.iter().take(5).map(String::as_str).collect();
                let more = if nodes.len() > 5 { format!(" and {} more", nodes.len() - 5) } else { String::new() };
                format!("{op} (nodes {}{more})", shown.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(EngineError::UnsupportedOps { model: model.to_string(), ops });
    }

    let name = if graph.name.is_empty() {
        Path::new(model).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| model.to_string())
    } else {
        graph.name.clone()
    };
    let mut im = Importer {
        model: model.to_string(),
        opset,
        base_dir: base_dir.map(Path::to_path_buf),
        b: GraphBuilder::new(&name),
        env: HashMap::new(),
        consts: HashMap::new(),
        exported_batch: None,
    };
    for t in &graph.initializer {
        let v = im.tensor(t)?;
        im.env.insert(t.name.clone(), v);
    }
    let mut k = 0;
    for vi in &graph.input {
        if im.env.contains_key(&vi.name) {
            continue; // an initializer listed as an input (old exporters)
        }
        let dims = im.input_dims(vi, opts.input_dims.get(k))?;
        k += 1;
        let id = im.b.input(&vi.name, &dims);
        im.env.insert(vi.name.clone(), Val::Act(id));
    }
    for (i, n) in graph.node.iter().enumerate() {
        im.node(n, &node_name(n, i))?;
    }
    let mut named = std::collections::HashSet::new();
    for o in &graph.output {
        match im.env.get(&o.name) {
            Some(Val::Act(id)) => {
                // Outputs carry the file's names (written to .npz by them, matched by them).
                let id = *id;
                if named.insert(id) {
                    im.b.rename(id, &o.name);
                }
                im.b.output(id)
            }
            Some(_) => return Err(err(format!("output '{}' is a constant; nothing to compute", o.name))),
            None => return Err(err(format!("output '{}' is produced by no node", o.name))),
        }
    }
    im.b.build()
}

/// Inputs an op cannot do without (later ones are optional or absent in the opset).
fn min_inputs(op: &str, opset: i64) -> usize {
    match op {
        "Constant" => 0,
        "BatchNormalization" => 5,
        "Slice" if opset >= 10 => 3,
        "Reshape" if opset >= 5 => 2,
        "Upsample" if opset >= 9 => 2,
        "Add" | "Sub" | "Mul" | "Div" | "Gemm" | "MatMul" | "Conv" | "ConvTranspose" | "LayerNormalization"
        | "Gather" => 2,
        _ => 1,
    }
}

fn node_name(n: &NodeProto, i: usize) -> String {
    if n.name.is_empty() { format!("{}_{i}", n.op_type) } else { n.name.clone() }
}

/// A value during import: an activation of the graph, or a constant known at import time.
#[derive(Clone, Debug)]
enum Val {
    Act(ValueId),
    F(Arc<Tensor>),
    /// Integer constant (shapes, indices, axes); may hold BATCH.
    I(Vec<usize>, Vec<i64>),
}

struct Importer {
    model: String,
    opset: i64,
    base_dir: Option<PathBuf>,
    b: GraphBuilder,
    env: HashMap<String, Val>,
    /// Float constants already added to the graph, by name.
    consts: HashMap<String, ValueId>,
    exported_batch: Option<i64>,
}

/// Attribute access for one node.
struct Attrs<'a>(HashMap<&'a str, &'a AttributeProto>);

impl<'a> Attrs<'a> {
    fn new(n: &'a NodeProto) -> Self {
        Attrs(n.attribute.iter().map(|a| (a.name.as_str(), a)).collect())
    }
    fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
    fn i(&self, k: &str, d: i64) -> i64 {
        self.0.get(k).map_or(d, |a| a.i)
    }
    fn f(&self, k: &str, d: f32) -> f32 {
        self.0.get(k).map_or(d, |a| a.f)
    }
    fn ints(&self, k: &str) -> Option<Vec<i64>> {
        self.0.get(k).map(|a| a.ints.clone())
    }
    fn s(&self, k: &str, d: &str) -> String {
        self.0.get(k).map_or(d.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }
    fn get(&self, k: &str) -> Option<&'a AttributeProto> {
        self.0.get(k).copied()
    }
}

fn norm_axis(axis: i64, rank: usize) -> std::result::Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 { Err(format!("axis {axis} is out of range for rank {rank}")) } else { Ok(a as usize) }
}

fn to_usize(v: &[i64], what: &str) -> std::result::Result<Vec<usize>, String> {
    v.iter().map(|&x| usize::try_from(x).map_err(|_| format!("{what} {v:?} must be non-negative"))).collect()
}

impl Importer {
    fn model_err(&self, reason: String) -> EngineError {
        EngineError::Model { model: self.model.clone(), reason }
    }

    fn input_dims(&mut self, vi: &proto::ValueInfoProto, given: Option<&Vec<usize>>) -> Result<Vec<usize>> {
        let shape = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
        let Some(tt) = shape else {
            return Err(self.model_err(format!("input '{}' is not a tensor", vi.name)));
        };
        if tt.elem_type != data_type::FLOAT {
            return Err(self.model_err(format!(
                "input '{}' has element type {}; only float32 inputs are supported",
                vi.name, tt.elem_type
            )));
        }
        let dims: Vec<Option<i64>> = tt
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(DimValue::Value(v)) if *v > 0 => Some(*v),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(Some(b)) = dims.first() {
            self.exported_batch = Some(*b);
        }
        let rest = &dims[dims.len().min(1)..];
        if let Some(g) = given {
            if !rest.is_empty() && g.len() != rest.len() {
                return Err(self.model_err(format!(
                    "input '{}' has {} dimensions after the batch, the given input shape {g:?} has {}",
                    vi.name,
                    rest.len(),
                    g.len()
                )));
            }
            for (i, (&r, &gv)) in rest.iter().zip(g).enumerate() {
                if let Some(r) = r
                    && r as usize != gv
                {
                    return Err(self.model_err(format!(
                        "input '{}' dimension {} is {r} in the model, the given input shape says {gv}",
                        vi.name,
                        i + 1
                    )));
                }
            }
            return Ok(g.clone());
        }
        let known: Vec<usize> = rest.iter().flatten().map(|&d| d as usize).collect();
        if given.is_none() && checked_numel(&known).is_none() {
            return Err(self.model_err(format!("input '{}' has a shape {known:?} too large to run", vi.name)));
        }
        if dims.is_empty() || rest.iter().any(Option::is_none) {
            return Err(self.model_err(format!(
                "input '{}' has symbolic or unknown dimensions after the batch ({:?}); give the input shape, e.g. 3x224x224",
                vi.name, dims
            )));
        }
        Ok(rest.iter().map(|d| d.unwrap() as usize).collect())
    }

    /// A TensorProto as a constant.
    fn tensor(&self, t: &TensorProto) -> Result<Val> {
        let name = &t.name;
        let bad = |r: String| self.model_err(format!("tensor '{name}': {r}"));
        let dims = to_usize(&t.dims, "dims").map_err(bad)?;
        let n = checked_numel(&dims).ok_or_else(|| bad(format!("shape {dims:?} is too large")))?;
        let raw: std::borrow::Cow<[u8]> = if t.data_location == 1 || !t.external_data.is_empty() {
            std::borrow::Cow::Owned(self.external(t)?)
        } else {
            std::borrow::Cow::Borrowed(&t.raw_data)
        };
        let has_raw = !raw.is_empty();
        let check = |len: usize| -> Result<()> {
            if len != n {
                Err(bad(format!("holds {len} values, its shape {dims:?} needs {n} (truncated or corrupt)")))
            } else {
                Ok(())
            }
        };
        let floats = |v: Vec<f32>| -> Result<Val> {
            check(v.len())?;
            Ok(Val::F(Arc::new(Tensor::new(dims.clone(), v)?)))
        };
        let ints = |v: Vec<i64>| -> Result<Val> {
            check(v.len())?;
            Ok(Val::I(dims.clone(), v))
        };
        let chunks = |size: usize| -> Result<std::slice::ChunksExact<'_, u8>> {
            if raw.len() != n * size {
                return Err(bad(format!(
                    "raw data has {} bytes, its shape {dims:?} needs {} (truncated or corrupt)",
                    raw.len(),
                    n * size
                )));
            }
            Ok(raw.chunks_exact(size))
        };
        match t.data_type {
            data_type::FLOAT if has_raw => {
                floats(chunks(4)?.map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
            }
            data_type::FLOAT => floats(t.float_data.clone()),
            data_type::DOUBLE if has_raw => {
                floats(chunks(8)?.map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect())
            }
            data_type::DOUBLE => floats(t.double_data.iter().map(|&d| d as f32).collect()),
            data_type::FLOAT16 if has_raw => {
                floats(chunks(2)?.map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect())
            }
            data_type::FLOAT16 => floats(t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect()),
            data_type::INT64 if has_raw => {
                ints(chunks(8)?.map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
            }
            data_type::INT64 => ints(t.int64_data.clone()),
            data_type::INT32 if has_raw => {
                ints(chunks(4)?.map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect())
            }
            data_type::INT32 | data_type::BOOL | data_type::UINT8 | data_type::INT8 if !has_raw => {
                ints(t.int32_data.iter().map(|&v| v as i64).collect())
            }
            data_type::BOOL | data_type::UINT8 => ints(chunks(1)?.map(|c| c[0] as i64).collect()),
            data_type::INT8 => ints(chunks(1)?.map(|c| c[0] as i8 as i64).collect()),
            other => {
                Err(bad(format!("element type {other} is not supported (float, double, float16 and integers are)")))
            }
        }
    }

    fn external(&self, t: &TensorProto) -> Result<Vec<u8>> {
        let kv: HashMap<&str, &str> = t.external_data.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
        let bad = |r: String| self.model_err(format!("tensor '{}': {r}", t.name));
        let Some(loc) = kv.get("location") else {
            return Err(bad("external data without a location".into()));
        };
        let rel = Path::new(loc);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(bad(format!("external data location '{loc}' must be a relative path beside the model")));
        }
        let path = self.base_dir.clone().unwrap_or_default().join(rel);
        let data = std::fs::read(&path).map_err(|e| {
            bad(format!(
                "cannot read its external data file '{}': {e}; keep the data file beside the model",
                path.display()
            ))
        })?;
        let offset: usize = kv.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let length: Option<usize> = kv.get("length").and_then(|v| v.parse().ok());
        let end = length.map_or(data.len(), |l| offset.saturating_add(l));
        if offset > data.len() || end > data.len() {
            return Err(bad(format!(
                "external data range {offset}..{end} lies outside '{}' ({} bytes)",
                path.display(),
                data.len()
            )));
        }
        Ok(data[offset..end].to_vec())
    }

    /// The graph value of an input: activations as they are, float constants added once.
    fn value(&mut self, name: &str, node: &str, op: &str) -> Result<ValueId> {
        match self.env.get(name).cloned() {
            Some(Val::Act(id)) => Ok(id),
            Some(Val::F(t)) => Ok(*self.consts.entry(name.to_string()).or_insert_with(|| self.b.constant_arc(name, t))),
            Some(Val::I(shape, v)) => {
                if v.contains(&BATCH) {
                    return Err(node_err(node, op, format!("input '{name}' carries the run-time batch as data")));
                }
                let t = Arc::new(Tensor::new(shape, v.iter().map(|&x| x as f32).collect())?);
                Ok(*self.consts.entry(name.to_string()).or_insert_with(|| self.b.constant_arc(name, t)))
            }
            None => Err(node_err(node, op, format!("input '{name}' is produced by no earlier node"))),
        }
    }

    fn val(&self, name: &str, node: &str, op: &str) -> Result<Val> {
        self.env
            .get(name)
            .cloned()
            .ok_or_else(|| node_err(node, op, format!("input '{name}' is produced by no earlier node")))
    }

    fn ints_of(&self, n: &NodeProto, k: usize, node: &str) -> Result<Option<Vec<i64>>> {
        match n.input.get(k).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => match self.val(name, node, &n.op_type)? {
                Val::I(_, v) => Ok(Some(v)),
                Val::F(t) => Ok(Some(t.data().iter().map(|&x| x as i64).collect())),
                Val::Act(_) => Err(node_err(
                    node,
                    &n.op_type,
                    format!(
                        "input '{name}' must be known when the model is loaded (a constant), but it is computed at run time"
                    ),
                )),
            },
        }
    }

    fn floats_of(&self, n: &NodeProto, k: usize, node: &str) -> Result<Option<Vec<f32>>> {
        match n.input.get(k).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => match self.val(name, node, &n.op_type)? {
                Val::F(t) => Ok(Some(t.data().to_vec())),
                Val::I(_, v) => Ok(Some(v.iter().map(|&x| x as f32).collect())),
                Val::Act(_) => Err(node_err(node, &n.op_type, format!("input '{name}' must be a constant"))),
            },
        }
    }

    /// Per-sample dims of an activation.
    fn dims(&self, id: ValueId) -> Vec<usize> {
        self.b.dims(id).to_vec()
    }

    fn set(&mut self, n: &NodeProto, k: usize, v: Val) {
        if let Some(o) = n.output.get(k) {
            self.env.insert(o.clone(), v);
        }
    }

    fn node(&mut self, n: &NodeProto, name: &str) -> Result<()> {
        let op = n.op_type.as_str();
        let a = Attrs::new(n);
        let inputs: Vec<Option<Val>> = n
            .input
            .iter()
            .map(|s| if s.is_empty() { Ok(None) } else { self.val(s, name, op).map(Some) })
            .collect::<Result<_>>()?;
        let need = min_inputs(op, self.opset);
        if let Some(missing) = (0..need).find(|&k| inputs.get(k).is_none_or(Option::is_none)) {
            return Err(node_err(
                name,
                op,
                format!(
                    "needs at least {need} input(s), input {missing} is missing; the file is malformed, re-export it"
                ),
            ));
        }
        if n.output.first().is_none_or(String::is_empty) {
            return Err(node_err(name, op, String::from("has no output; the file is malformed, re-export it")));
        }
        let all_const = !inputs.is_empty() && inputs.iter().flatten().all(|v| !matches!(v, Val::Act(_)));
        if all_const
            && op != "Constant"
            && let Some(v) = self.fold(n, name, &a, &inputs)?
        {
            self.set(n, 0, v);
            return Ok(());
        }
        let e = |r: String| node_err(name, op, r);
        let x = || n.input.first().map(String::as_str).unwrap_or("");
        let out = match op {
            "Constant" => {
                let v = if let Some(t) = a.get("value").and_then(|t| t.t.as_ref()) {
                    self.tensor(t)?
                } else if a.has("value_float") {
                    Val::F(Arc::new(Tensor::new(vec![], vec![a.f("value_float", 0.0)])?))
                } else if let Some(fs) = a.get("value_floats") {
                    Val::F(Arc::new(Tensor::new(vec![fs.floats.len()], fs.floats.clone())?))
                } else if a.has("value_int") {
                    Val::I(vec![], vec![a.i("value_int", 0)])
                } else if let Some(is) = a.ints("value_ints") {
                    Val::I(vec![is.len()], is)
                } else {
                    return Err(e("needs a value, value_float(s) or value_int(s) attribute".into()));
                };
                self.set(n, 0, v);
                return Ok(());
            }
            "Identity" | "Dropout" | "Cast" => {
                // Dropout's mask output is left undefined: a node that reads it gets an error
                // naming the missing value.
                if op == "Cast" && a.i("to", data_type::FLOAT as i64) != data_type::FLOAT as i64 {
                    return Err(e("casting an activation to a non-float type is not supported".into()));
                }
                let v = self.val(x(), name, op)?;
                self.set(n, 0, v);
                return Ok(());
            }
            "Shape" => {
                let id = self.value(x(), name, op)?;
                let mut s: Vec<i64> = vec![BATCH];
                s.extend(self.dims(id).iter().map(|&d| d as i64));
                let r = s.len() as i64;
                let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let (st, en) = (clampi(a.i("start", 0)), clampi(a.i("end", r)));
                let v = s[st..en.max(st)].to_vec();
                self.set(n, 0, Val::I(vec![v.len()], v));
                return Ok(());
            }
            "Conv" => self.conv(n, name, &a)?,
            "ConvTranspose" => self.conv_transpose(n, name, &a)?,
            "Gemm" => {
                let ia = self.value(x(), name, op)?;
                let ib = self.value(&n.input[1], name, op)?;
                let c = match n.input.get(2).filter(|s| !s.is_empty()) {
                    Some(c) => Some(self.value(c, name, op)?),
                    None => None,
                };
                let attrs = GemmAttrs {
                    alpha: a.f("alpha", 1.0),
                    beta: a.f("beta", 1.0),
                    trans_a: a.i("transA", 0) != 0,
                    trans_b: a.i("transB", 0) != 0,
                    activation: None,
                };
                self.b.gemm(name, ia, ib, c, attrs)?
            }
            "MatMul" => {
                let ia = self.value(x(), name, op)?;
                let ib = self.value(&n.input[1], name, op)?;
                self.b.matmul(name, ia, ib)?
            }
            "MaxPool" | "AveragePool" => {
                if n.output.len() > 1 && !n.output[1].is_empty() {
                    return Err(e("the indices output of MaxPool is not supported".into()));
                }
                let id = self.value(x(), name, op)?;
                let d = self.dims(id);
                if d.len() != 3 {
                    return Err(e(format!("only 2-D pooling is supported; the input is [N, {d:?}]")));
                }
                let kernel = two(a.ints("kernel_shape").unwrap_or_default(), "kernel_shape").map_err(e)?;
                let stride = two(a.ints("strides").unwrap_or(vec![1, 1]), "strides").map_err(e)?;
                let dilation = two(a.ints("dilations").unwrap_or(vec![1, 1]), "dilations").map_err(e)?;
                let pads = self.pads(&a, &d[1..], kernel, stride, dilation).map_err(e)?;
                let kind = if op == "MaxPool" { PoolKind::Max } else { PoolKind::Average };
                let attrs = PoolAttrs {
                    kind,
                    kernel,
                    stride,
                    pads,
                    dilation,
                    ceil_mode: a.i("ceil_mode", 0) != 0,
                    count_include_pad: a.i("count_include_pad", 0) != 0,
                };
                self.b.pool(name, id, attrs)?
            }
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let id = self.value(x(), name, op)?;
                let kind = if op == "GlobalMaxPool" { PoolKind::Max } else { PoolKind::Average };
                self.b.global_pool(name, id, kind)?
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let ia = self.value(x(), name, op)?;
                let ib = self.value(&n.input[1], name, op)?;
                let bop = match op {
                    "Add" => BinaryOp::Add,
                    "Sub" => BinaryOp::Sub,
                    "Mul" => BinaryOp::Mul,
                    _ => BinaryOp::Div,
                };
                self.b.binary(name, bop, ia, ib)?
            }
            "Sum" => {
                let mut acc = self.value(x(), name, op)?;
                for (k, s) in n.input.iter().enumerate().skip(1) {
                    let v = self.value(s, name, op)?;
                    let step = if k + 1 == n.input.len() { name.to_string() } else { format!("{name}.add{k}") };
                    acc = self.b.binary(&step, BinaryOp::Add, acc, v)?;
                }
                if n.input.len() == 1 {
                    self.set(n, 0, Val::Act(acc));
                    return Ok(());
                }
                acc
            }
            "Relu" | "LeakyRelu" | "Clip" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "Gelu" | "Erf" => {
                let act = match op {
                    "Relu" => Activation::Relu,
                    "LeakyRelu" => Activation::LeakyRelu { alpha: a.f("alpha", 0.01) },
                    "Clip" => {
                        let (lo, hi) = if self.opset < 11 {
                            (a.f("min", f32::MIN), a.f("max", f32::MAX))
                        } else {
                            let lo = self.floats_of(n, 1, name)?.and_then(|v| v.first().copied()).unwrap_or(f32::MIN);
                            let hi = self.floats_of(n, 2, name)?.and_then(|v| v.first().copied()).unwrap_or(f32::MAX);
                            (lo, hi)
                        };
                        Activation::Clip { min: lo, max: hi }
                    }
                    "Sigmoid" => Activation::Sigmoid,
                    "HardSigmoid" => Activation::HardSigmoid { alpha: a.f("alpha", 0.2), beta: a.f("beta", 0.5) },
                    "HardSwish" => Activation::HardSwish,
                    "Tanh" => Activation::Tanh,
                    "Erf" => Activation::Erf,
                    _ => match a.s("approximate", "none").as_str() {
                        "none" => Activation::Gelu { tanh_approx: false },
                        "tanh" => Activation::Gelu { tanh_approx: true },
                        other => return Err(e(format!("approximate='{other}' is not one of none, tanh"))),
                    },
                };
                let id = self.value(x(), name, op)?;
                self.b.unary(name, id, act)?
            }
            "Softmax" => {
                let id = self.value(x(), name, op)?;
                let rank = self.dims(id).len() + 1;
                let default = if self.opset < 13 { 1 } else { -1 };
                let axis = norm_axis(a.i("axis", default), rank).map_err(e)?;
                if self.opset < 13 && axis + 1 != rank {
                    // Softmax before opset 13 normalises over all axes from `axis` on.
                    let d = self.dims(id);
                    let inner: usize = d[axis - 1..].iter().product();
                    let mut flat = d[..axis - 1].to_vec();
                    flat.push(inner);
                    let f = self.b.reshape(&format!("{name}.flatten"), id, &flat)?;
                    let s = self.b.add(&format!("{name}.softmax"), Op::Softmax { axis }, vec![f])?;
                    self.b.reshape(name, s, &d)?
                } else {
                    self.b.add(name, Op::Softmax { axis }, vec![id])?
                }
            }
            "LayerNormalization" => {
                let id = self.value(x(), name, op)?;
                let rank = self.dims(id).len() + 1;
                let axis = norm_axis(a.i("axis", -1), rank).map_err(e)?;
                let mut ins = vec![id, self.value(&n.input[1], name, op)?];
                if let Some(bias) = n.input.get(2).filter(|s| !s.is_empty()) {
                    ins.push(self.value(bias, name, op)?);
                }
                if n.output.iter().skip(1).any(|o| !o.is_empty()) {
                    return Err(e("the mean / inverse std-dev outputs are not supported (training only)".into()));
                }
                self.b.add(name, Op::LayerNorm { axis, epsilon: a.f("epsilon", 1e-5) }, ins)?
            }
            "BatchNormalization" => {
                if n.output.iter().skip(1).any(|o| !o.is_empty()) || a.i("training_mode", 0) != 0 {
                    return Err(e("training-mode batch normalisation is not supported".into()));
                }
                let mut ins = vec![];
                for s in n.input.iter().take(5) {
                    ins.push(self.value(s, name, op)?);
                }
                self.b.add(name, Op::BatchNorm { epsilon: a.f("epsilon", 1e-5) }, ins)?
            }
            "LRN" => {
                let id = self.value(x(), name, op)?;
                let size = a.i("size", 0);
                if size <= 0 {
                    return Err(e("size must be a positive integer".into()));
                }
                let attrs = LrnAttrs {
                    size: size as usize,
                    alpha: a.f("alpha", 1e-4),
                    beta: a.f("beta", 0.75),
                    bias: a.f("bias", 1.0),
                };
                self.b.add(name, Op::Lrn(attrs), vec![id])?
            }
            "Concat" => {
                let mut ins = vec![];
                for s in &n.input {
                    ins.push(self.value(s, name, op)?);
                }
                let rank = self.dims(ins[0]).len() + 1;
                let axis = norm_axis(a.i("axis", 0), rank).map_err(e)?;
                self.b.add(name, Op::Concat { axis }, ins)?
            }
            "Split" => {
                let id = self.value(x(), name, op)?;
                let d = self.dims(id);
                let axis = norm_axis(a.i("axis", 0), d.len() + 1).map_err(e)?;
                if axis == 0 {
                    return Err(e("splitting the batch axis is not supported".into()));
                }
                let len = d[axis - 1];
                let split = if self.opset < 13 { a.ints("split") } else { self.ints_of(n, 1, name)? };
                let sizes = match split {
                    Some(s) if !s.is_empty() => to_usize(&s, "split").map_err(e)?,
                    _ => {
                        let parts = if a.has("num_outputs") { a.i("num_outputs", 1) as usize } else { n.output.len() };
                        if parts == 0 {
                            return Err(e("no outputs".into()));
                        }
                        let chunk = len.div_ceil(parts);
                        (0..parts).map(|i| chunk.min(len.saturating_sub(i * chunk))).collect()
                    }
                };
                let outs = self.b.add_multi(name, Op::Split { axis, sizes }, vec![id])?;
                for (k, o) in outs.into_iter().enumerate() {
                    self.set(n, k, Val::Act(o));
                }
                return Ok(());
            }
            "Slice" => {
                let id = self.value(x(), name, op)?;
                let rank = self.dims(id).len() + 1;
                let (starts, ends, axes, steps) = if self.opset < 10 {
                    (a.ints("starts").unwrap_or_default(), a.ints("ends").unwrap_or_default(), a.ints("axes"), None)
                } else {
                    (
                        self.ints_of(n, 1, name)?.unwrap_or_default(),
                        self.ints_of(n, 2, name)?.unwrap_or_default(),
                        self.ints_of(n, 3, name)?,
                        self.ints_of(n, 4, name)?,
                    )
                };
                let axes: Vec<usize> = match axes {
                    Some(ax) => {
                        ax.iter().map(|&x| norm_axis(x, rank)).collect::<std::result::Result<_, _>>().map_err(e)?
                    }
                    None => (0..starts.len()).collect(),
                };
                let steps = steps.unwrap_or_else(|| vec![1; axes.len()]);
                // A slice of the batch axis that keeps it whole is no slice.
                let mut keep = vec![];
                for i in 0..axes.len() {
                    if axes[i] == 0 {
                        if starts[i] == 0 && ends[i] >= i32::MAX as i64 && steps[i] == 1 {
                            continue;
                        }
                        return Err(e("slicing the batch axis is not supported".into()));
                    }
                    keep.push(i);
                }
                let pick = |v: &Vec<i64>| keep.iter().map(|&i| v[i]).collect::<Vec<i64>>();
                let op = Op::Slice {
                    axes: keep.iter().map(|&i| axes[i]).collect(),
                    starts: pick(&starts),
                    ends: pick(&ends),
                    steps: pick(&steps),
                };
                self.b.add(name, op, vec![id])?
            }
            "Reshape" => {
                let id = self.value(x(), name, op)?;
                let target = if self.opset < 5 { a.ints("shape") } else { self.ints_of(n, 1, name)? };
                let target = target.ok_or_else(|| e("needs a target shape".into()))?;
                let dims = self.reshape_dims(&self.dims(id), &target, a.i("allowzero", 0) != 0).map_err(e)?;
                self.b.reshape(name, id, &dims)?
            }
            "Flatten" => {
                let id = self.value(x(), name, op)?;
                let rank = self.dims(id).len() + 1;
                let axis = norm_axis(a.i("axis", 1), rank + 1).map_err(e)?;
                self.b.flatten(name, id, axis)?
            }
            "Transpose" => {
                let id = self.value(x(), name, op)?;
                let rank = self.dims(id).len() + 1;
                let perm = match a.ints("perm") {
                    Some(p) => to_usize(&p, "perm").map_err(e)?,
                    None => (0..rank).rev().collect(),
                };
                self.b.add(name, Op::Transpose { perm }, vec![id])?
            }
            "Squeeze" | "Unsqueeze" => {
                let id = self.value(x(), name, op)?;
                let rank = self.dims(id).len() + 1;
                let axes = if self.opset < 13 { a.ints("axes") } else { self.ints_of(n, 1, name)? };
                if op == "Squeeze" {
                    let axes: Vec<usize> = match axes {
                        Some(ax) => {
                            ax.iter().map(|&x| norm_axis(x, rank)).collect::<std::result::Result<_, _>>().map_err(e)?
                        }
                        None => {
                            self.dims(id).iter().enumerate().filter(|(_, d)| **d == 1).map(|(i, _)| i + 1).collect()
                        }
                    };
                    self.b.squeeze(name, id, &axes)?
                } else {
                    let ax = axes.ok_or_else(|| e("needs axes".into()))?;
                    let out_rank = rank + ax.len();
                    let axes: Vec<usize> =
                        ax.iter().map(|&x| norm_axis(x, out_rank)).collect::<std::result::Result<_, _>>().map_err(e)?;
                    self.b.unsqueeze(name, id, &axes)?
                }
            }
            "Pad" => {
                let id = self.value(x(), name, op)?;
                let rank = self.dims(id).len() + 1;
                let mode = a.s("mode", "constant");
                let (pads, value, axes) = if self.opset < 11 {
                    (a.ints("pads").unwrap_or_default(), a.f("value", 0.0), None)
                } else {
                    let v = self.floats_of(n, 2, name)?.and_then(|v| v.first().copied()).unwrap_or(0.0);
                    (self.ints_of(n, 1, name)?.unwrap_or_default(), v, self.ints_of(n, 3, name)?)
                };
                let axes: Vec<usize> = match axes {
                    Some(ax) => {
                        ax.iter().map(|&x| norm_axis(x, rank)).collect::<std::result::Result<_, _>>().map_err(e)?
                    }
                    None => (0..rank).collect(),
                };
                if pads.len() != 2 * axes.len() {
                    return Err(e(format!("pads {pads:?} must hold a begin and an end per padded axis")));
                }
                if pads.iter().any(|&p| p < 0) {
                    return Err(e("negative pads (cropping) are not supported".into()));
                }
                let mut pp = vec![(0usize, 0usize); rank];
                for (i, &ax) in axes.iter().enumerate() {
                    pp[ax] = (pads[i] as usize, pads[i + axes.len()] as usize);
                }
                let mode = match mode.as_str() {
                    "constant" => PadMode::Constant(value),
                    "reflect" => PadMode::Reflect,
                    "edge" => PadMode::Edge,
                    other => return Err(e(format!("mode '{other}' is not supported (constant, reflect, edge are)"))),
                };
                self.b.add(name, Op::Pad { pads: pp, mode }, vec![id])?
            }
            "Resize" | "Upsample" => self.resize(n, name, &a)?,
            "ReduceMean" => {
                let id = self.value(x(), name, op)?;
                let rank = self.dims(id).len() + 1;
                let axes = if self.opset < 18 { a.ints("axes") } else { self.ints_of(n, 1, name)? };
                let axes: Vec<usize> = match axes {
                    Some(ax) if !ax.is_empty() => {
                        ax.iter().map(|&x| norm_axis(x, rank)).collect::<std::result::Result<_, _>>().map_err(e)?
                    }
                    _ if a.i("noop_with_empty_axes", 0) != 0 => {
                        let v = self.val(x(), name, op)?;
                        self.set(n, 0, v);
                        return Ok(());
                    }
                    _ => (0..rank).collect(),
                };
                self.b.add(name, Op::ReduceMean { axes, keepdims: a.i("keepdims", 1) != 0 }, vec![id])?
            }
            _ => {
                return Err(e(format!(
                    "{op} applies only to constants here (it is folded at import), but an input is computed at run time"
                )));
            }
        };
        self.set(n, 0, Val::Act(out));
        Ok(())
    }

    /// Explicit pads [top, left, bottom, right] from `pads` or `auto_pad`.
    fn pads(
        &self,
        a: &Attrs,
        spatial: &[usize],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> std::result::Result<[usize; 4], String> {
        match a.s("auto_pad", "NOTSET").as_str() {
            "NOTSET" => {
                let p = a.ints("pads").unwrap_or(vec![0; 4]);
                if p.len() != 4 || p.iter().any(|&v| v < 0) {
                    return Err(format!("pads {p:?} must be 4 non-negative values for 2-D"));
                }
                Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
            }
            "VALID" => Ok([0; 4]),
            mode @ ("SAME_UPPER" | "SAME_LOWER") => {
                let mut out = [0usize; 4];
                for i in 0..2 {
                    let o = spatial[i].div_ceil(stride[i]);
                    let eff = dilation[i] * (kernel[i] - 1) + 1;
                    let total = ((o - 1) * stride[i] + eff).saturating_sub(spatial[i]);
                    let (small, big) = (total / 2, total - total / 2);
                    if mode == "SAME_UPPER" {
                        out[i] = small;
                        out[i + 2] = big;
                    } else {
                        out[i] = big;
                        out[i + 2] = small;
                    }
                }
                Ok(out)
            }
            other => Err(format!("auto_pad '{other}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")),
        }
    }

    fn conv(&mut self, n: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let op = "Conv";
        let e = |r: String| node_err(name, op, r);
        let x = self.value(&n.input[0], name, op)?;
        let w = self.value(&n.input[1], name, op)?;
        let d = self.dims(x);
        let wd = self.b.dims(w).to_vec();
        if d.len() != 3 || wd.len() != 4 {
            return Err(e(format!("only 2-D convolution is supported (input [N, {d:?}], weight {wd:?})")));
        }
        let kernel = [wd[2], wd[3]];
        let stride = two(a.ints("strides").unwrap_or(vec![1, 1]), "strides").map_err(e)?;
        let dilation = two(a.ints("dilations").unwrap_or(vec![1, 1]), "dilations").map_err(e)?;
        let pads = self.pads(a, &d[1..], kernel, stride, dilation).map_err(e)?;
        let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(s) => Some(self.value(s, name, op)?),
            None => None,
        };
        let groups = usize::try_from(a.i("group", 1)).map_err(|_| e("group must be positive".into()))?;
        self.b.conv(name, x, w, bias, ConvAttrs { stride, pads, dilation, groups, activation: None })
    }

    fn conv_transpose(&mut self, n: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let op = "ConvTranspose";
        let e = |r: String| node_err(name, op, r);
        let x = self.value(&n.input[0], name, op)?;
        let w = self.value(&n.input[1], name, op)?;
        let d = self.dims(x);
        let wd = self.b.dims(w).to_vec();
        if d.len() != 3 || wd.len() != 4 {
            return Err(e("only 2-D transposed convolution is supported".into()));
        }
        let stride = two(a.ints("strides").unwrap_or(vec![1, 1]), "strides").map_err(e)?;
        let dilation = two(a.ints("dilations").unwrap_or(vec![1, 1]), "dilations").map_err(e)?;
        let mut output_padding = two(a.ints("output_padding").unwrap_or(vec![0, 0]), "output_padding").map_err(e)?;
        let mut pads = [0usize; 4];
        let auto = a.s("auto_pad", "NOTSET");
        let full_len = |i: usize, op: usize| (d[1 + i] - 1) * stride[i] + dilation[i] * (wd[2 + i] - 1) + 1 + op;
        let full = [full_len(0, output_padding[0]), full_len(1, output_padding[1])];
        if let Some(os) = a.ints("output_shape") {
            let os = &os[os.len().saturating_sub(2)..];
            for i in 0..2 {
                let total = full[i] as i64 - os[i];
                if total < 0 {
                    output_padding[i] += (-total) as usize;
                    continue;
                }
                let t = total as usize;
                let (small, big) = (t / 2, t - t / 2);
                if auto == "SAME_UPPER" {
                    pads[i] = small;
                    pads[i + 2] = big;
                } else {
                    pads[i] = big;
                    pads[i + 2] = small;
                }
            }
        } else if auto == "SAME_UPPER" || auto == "SAME_LOWER" {
            for i in 0..2 {
                let t = full[i].saturating_sub(d[1 + i] * stride[i]);
                let (small, big) = (t / 2, t - t / 2);
                if auto == "SAME_UPPER" {
                    pads[i] = small;
                    pads[i + 2] = big;
                } else {
                    pads[i] = big;
                    pads[i + 2] = small;
                }
            }
        } else if auto == "NOTSET" {
            let p = a.ints("pads").unwrap_or(vec![0; 4]);
            if p.len() != 4 || p.iter().any(|&v| v < 0) {
                return Err(e(format!("pads {p:?} must be 4 non-negative values")));
            }
            pads = [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize];
        }
        let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(s) => Some(self.value(s, name, op)?),
            None => None,
        };
        let groups = usize::try_from(a.i("group", 1)).map_err(|_| e("group must be positive".into()))?;
        let attrs = ConvTransposeAttrs { stride, pads, dilation, output_padding, groups, activation: None };
        self.b.conv_transpose(name, x, w, bias, attrs)
    }

    fn resize(&mut self, n: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let op = n.op_type.as_str();
        let e = |r: String| node_err(name, op, r);
        let x = self.value(&n.input[0], name, op)?;
        let d = self.dims(x);
        if d.len() != 3 {
            return Err(e(format!("only 4-D [N, C, H, W] resizing is supported, the input is [N, {d:?}]")));
        }
        let (scales, sizes) = if op == "Upsample" {
            let s =
                if self.opset < 9 { a.get("scales").map(|s| s.floats.clone()) } else { self.floats_of(n, 1, name)? };
            (s, None)
        } else if self.opset < 11 {
            (self.floats_of(n, 1, name)?, None)
        } else {
            (self.floats_of(n, 2, name)?.filter(|v| !v.is_empty()), self.ints_of(n, 3, name)?.filter(|v| !v.is_empty()))
        };
        let (out_hw, sc) = match (scales, sizes) {
            (_, Some(sz)) => {
                if sz.len() != 4 || sz[1] != d[0] as i64 {
                    return Err(e(format!("sizes {sz:?} must be [N, {}, H, W]", d[0])));
                }
                let (h, w) = (sz[2] as usize, sz[3] as usize);
                ([h, w], [h as f32 / d[1] as f32, w as f32 / d[2] as f32])
            }
            (Some(s), None) => {
                if s.len() != 4 || s[0] != 1.0 || s[1] != 1.0 {
                    return Err(e(format!("scales {s:?} must be [1, 1, sh, sw] (only spatial resizing is supported)")));
                }
                ([(d[1] as f32 * s[2]).floor() as usize, (d[2] as f32 * s[3]).floor() as usize], [s[2], s[3]])
            }
            (None, None) => return Err(e("needs scales or sizes".into())),
        };
        let mode = a.s("mode", "nearest");
        let default_coord = if op == "Upsample" || self.opset < 11 { "asymmetric" } else { "half_pixel" };
        let coord = match a.s("coordinate_transformation_mode", default_coord).as_str() {
            "half_pixel" => CoordMode::HalfPixel,
            "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
            "align_corners" => CoordMode::AlignCorners,
            "asymmetric" => CoordMode::Asymmetric,
            "tf_half_pixel_for_nn" => CoordMode::TfHalfPixelForNn,
            other => return Err(e(format!("coordinate_transformation_mode '{other}' is not supported"))),
        };
        let nearest_default = if op == "Upsample" || self.opset < 11 { "floor" } else { "round_prefer_floor" };
        let rmode = match mode.as_str() {
            "nearest" => ResizeMode::Nearest(match a.s("nearest_mode", nearest_default).as_str() {
                "round_prefer_floor" => NearestMode::RoundPreferFloor,
                "round_prefer_ceil" => NearestMode::RoundPreferCeil,
                "floor" => NearestMode::Floor,
                "ceil" => NearestMode::Ceil,
                other => return Err(e(format!("nearest_mode '{other}' is not supported"))),
            }),
            "linear" | "bilinear" => ResizeMode::Linear,
            other => return Err(e(format!("mode '{other}' is not supported (nearest and linear are)"))),
        };
        if a.i("antialias", 0) != 0 {
            return Err(e("antialias is not supported".into()));
        }
        let attrs = ResizeAttrs { mode: rmode, coord, out_hw, scales: sc };
        self.b.add(name, Op::Resize(attrs), vec![x])
    }

    /// Per-sample dims of a Reshape target; its first entry must stand for the batch.
    fn reshape_dims(
        &self,
        input: &[usize],
        target: &[i64],
        allowzero: bool,
    ) -> std::result::Result<Vec<usize>, String> {
        if target.is_empty() {
            return Err("reshaping to a scalar would drop the batch".into());
        }
        let first = target[0];
        let batch_ok =
            first == BATCH || first == -1 || (first == 0 && !allowzero) || Some(first) == self.exported_batch;
        if !batch_ok {
            return Err(format!(
                "target shape {} does not keep the batch first (its first entry must be the batch, 0, -1 or the exported batch)",
                show(target)
            ));
        }
        let per = numel(input);
        let mut out: Vec<i64> = vec![];
        for (i, &t) in target[1..].iter().enumerate() {
            out.push(if t == 0 && !allowzero {
                *input.get(i).ok_or_else(|| format!("target {} copies a dimension the input lacks", show(target)))?
                    as i64
            } else if t == BATCH {
                return Err("the batch may only be the first dimension of a reshape".into());
            } else {
                t
            });
        }
        let known: i64 = out.iter().filter(|&&v| v != -1).product();
        let unknown = out.iter().filter(|&&v| v == -1).count();
        if unknown > 1 || known <= 0 && unknown == 1 {
            return Err(format!("target shape {} is ambiguous", show(target)));
        }
        if unknown == 1 {
            if per as i64 % known != 0 {
                return Err(format!("cannot reshape [N, {input:?}] to {}", show(target)));
            }
            let fill = per as i64 / known;
            for v in out.iter_mut().filter(|v| **v == -1) {
                *v = fill;
            }
        }
        if out.iter().any(|&v| v < 0) {
            return Err(format!("target shape {} has negative entries", show(target)));
        }
        let dims: Vec<usize> = out.iter().map(|&v| v as usize).collect();
        if first == -1 && numel(&dims) != per {
            return Err(format!("target shape {} would change the batch", show(target)));
        }
        Ok(dims)
    }

    /// Folds a node whose inputs are all constants. None when the op is not foldable.
    fn fold(&mut self, n: &NodeProto, name: &str, a: &Attrs, ins: &[Option<Val>]) -> Result<Option<Val>> {
        let op = n.op_type.as_str();
        let e = |r: String| node_err(name, op, r);
        let ints = |v: &Option<Val>| -> Option<(Vec<usize>, Vec<i64>)> {
            match v {
                Some(Val::I(s, d)) => Some((s.clone(), d.clone())),
                _ => None,
            }
        };
        let first = ins.first().cloned().flatten();
        Ok(match op {
            "Identity" | "Dropout" => first,
            "Cast" => match first {
                Some(Val::I(s, d)) if a.i("to", 1) == data_type::FLOAT as i64 => {
                    if d.contains(&BATCH) {
                        return Err(e("cannot cast the run-time batch to float".into()));
                    }
                    Some(Val::F(Arc::new(Tensor::new(s, d.iter().map(|&v| v as f32).collect())?)))
                }
                Some(Val::F(t)) if a.i("to", 1) != data_type::FLOAT as i64 => {
                    Some(Val::I(t.shape().to_vec(), t.data().iter().map(|&v| v as i64).collect()))
                }
                other => other,
            },
            "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
                let (shape, data): (Vec<usize>, Val) = match &first {
                    Some(Val::I(s, _)) => (s.clone(), first.clone().unwrap()),
                    Some(Val::F(t)) => (t.shape().to_vec(), first.clone().unwrap()),
                    _ => return Ok(None),
                };
                let new_shape: Vec<usize> = match op {
                    "Reshape" => {
                        let t = if self.opset < 5 {
                            a.ints("shape").unwrap_or_default()
                        } else {
                            ints(&ins[1]).map(|x| x.1).unwrap_or_default()
                        };
                        let mut out: Vec<i64> = t
                            .iter()
                            .enumerate()
                            .map(|(i, &v)| if v == 0 { shape.get(i).map_or(0, |&d| d as i64) } else { v })
                            .collect();
                        let known: i64 = out.iter().filter(|&&v| v != -1).product();
                        if out.contains(&-1) && known > 0 {
                            let fill = numel(&shape) as i64 / known;
                            out.iter_mut().filter(|v| **v == -1).for_each(|v| *v = fill);
                        }
                        to_usize(&out, "shape").map_err(e)?
                    }
                    "Flatten" => {
                        let axis = norm_axis(a.i("axis", 1), shape.len() + 1).map_err(e)?;
                        vec![numel(&shape[..axis]), numel(&shape[axis..])]
                    }
                    _ => {
                        let axes = if self.opset < 13 {
                            a.ints("axes")
                        } else {
                            ints(&ins.get(1).cloned().flatten()).map(|x| x.1)
                        };
                        if op == "Squeeze" {
                            let rank = shape.len();
                            let axes: Vec<usize> = match axes {
                                Some(ax) => ax
                                    .iter()
                                    .map(|&x| norm_axis(x, rank))
                                    .collect::<std::result::Result<_, _>>()
                                    .map_err(e)?,
                                None => (0..rank).filter(|&i| shape[i] == 1).collect(),
                            };
                            shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
                        } else {
                            let ax = axes.unwrap_or_default();
                            let out_rank = shape.len() + ax.len();
                            let axes: Vec<usize> = ax
                                .iter()
                                .map(|&x| norm_axis(x, out_rank))
                                .collect::<std::result::Result<_, _>>()
                                .map_err(e)?;
                            let mut it = shape.iter();
                            (0..out_rank)
                                .map(|i| if axes.contains(&i) { 1 } else { *it.next().unwrap_or(&1) })
                                .collect()
                        }
                    }
                };
                if numel(&new_shape) != numel(&shape) {
                    return Err(e(format!("cannot reshape constant {shape:?} to {new_shape:?}")));
                }
                Some(match data {
                    Val::I(_, d) => Val::I(new_shape, d),
                    Val::F(t) => Val::F(Arc::new(t.as_ref().clone().reshaped(new_shape)?)),
                    Val::Act(_) => unreachable!(),
                })
            }
            "Concat" => {
                let mut all = vec![];
                for v in ins.iter().flatten() {
                    match v {
                        Val::I(s, d) if s.len() <= 1 => all.extend_from_slice(d),
                        _ => return Ok(None),
                    }
                }
                Some(Val::I(vec![all.len()], all))
            }
            "Gather" => {
                let Some((is, idx)) = ints(&ins[1]) else { return Ok(None) };
                let axis = a.i("axis", 0);
                match &first {
                    Some(Val::I(s, d)) if s.len() <= 1 && axis == 0 => {
                        let len = d.len() as i64;
                        let mut out = vec![];
                        for &i in &idx {
                            let j = if i < 0 { i + len } else { i };
                            if j < 0 || j >= len {
                                return Err(e(format!("index {i} is out of range for {len} values")));
                            }
                            out.push(d[j as usize]);
                        }
                        Some(Val::I(is, out))
                    }
                    _ => return Ok(None),
                }
            }
            "Slice" => {
                // 1-D integer constants (shape vectors).
                let Some((s, d)) = ints(&first) else { return Ok(None) };
                if s.len() != 1 {
                    return Ok(None);
                }
                let (starts, ends, axes, steps) = if self.opset < 10 {
                    (a.ints("starts").unwrap_or_default(), a.ints("ends").unwrap_or_default(), a.ints("axes"), None)
                } else {
                    let get = |k: usize| ins.get(k).cloned().flatten().and_then(|v| ints(&Some(v)).map(|x| x.1));
                    (get(1).unwrap_or_default(), get(2).unwrap_or_default(), get(3), get(4))
                };
                if starts.len() != 1 || axes.is_some_and(|ax| ax != [0] && ax != [-1]) {
                    return Err(e("slicing a shape vector needs one start/end on axis 0".into()));
                }
                let step = steps.and_then(|v| v.first().copied()).unwrap_or(1);
                if step == 0 {
                    return Err(e("step 0 is not allowed".into()));
                }
                let (st, step, len) = crate::graph::slice_axis(d.len(), starts[0], ends[0], step);
                let v: Vec<i64> = (0..len).map(|i| d[(st + i as i64 * step) as usize]).collect();
                Some(Val::I(vec![v.len()], v))
            }
            "Shape" => return Ok(None),
            "ConstantOfShape" => {
                let Some((_, shape)) = ints(&first) else { return Ok(None) };
                if shape.contains(&BATCH) {
                    return Err(e("a constant with the run-time batch as a dimension is not supported".into()));
                }
                let shape = to_usize(&shape, "shape").map_err(e)?;
                if checked_numel(&shape).is_none() {
                    return Err(e(format!("shape {shape:?} is too large")));
                }
                let val = a.get("value").and_then(|t| t.t.as_ref()).map(|t| self.tensor(t)).transpose()?;
                match val {
                    Some(Val::I(_, d)) => {
                        Some(Val::I(shape.clone(), vec![d.first().copied().unwrap_or(0); numel(&shape)]))
                    }
                    Some(Val::F(t)) => Some(Val::F(Arc::new(Tensor::new(
                        shape.clone(),
                        vec![t.data().first().copied().unwrap_or(0.0); numel(&shape)],
                    )?))),
                    _ => Some(Val::F(Arc::new(Tensor::zeros(shape)))),
                }
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let (Some(x), Some(y)) = (&ins[0], &ins[1]) else { return Ok(None) };
                Some(fold_binary(op, x, y).map_err(e)?)
            }
            "Sqrt" => match first {
                Some(Val::F(t)) => Some(Val::F(Arc::new(Tensor::new(
                    t.shape().to_vec(),
                    t.data().iter().map(|v| v.sqrt()).collect(),
                )?))),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        })
    }
}

/// Element count of a shape, or None above 2^30 elements (4 GiB of f32): larger constants
/// or inputs are refused rather than allocated.
fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= 1 << 30)
}

fn node_err(node: &str, op: &str, reason: impl Into<String>) -> EngineError {
    EngineError::InvalidNode { node: node.to_string(), op: op.to_string(), reason: reason.into() }
}

fn show(t: &[i64]) -> String {
    let parts: Vec<String> = t.iter().map(|&v| if v == BATCH { "N".to_string() } else { v.to_string() }).collect();
    format!("[{}]", parts.join(", "))
}

fn two(v: Vec<i64>, what: &str) -> std::result::Result<[usize; 2], String> {
    if v.len() != 2 || v.iter().any(|&x| x <= 0) {
        return Err(format!("{what} {v:?} must be 2 positive values (only 2-D is supported)"));
    }
    Ok([v[0] as usize, v[1] as usize])
}

/// Elementwise arithmetic on two constants with numpy broadcasting.
fn fold_binary(op: &str, x: &Val, y: &Val) -> std::result::Result<Val, String> {
    let (xs, ys) = (shape_of(x), shape_of(y));
    let r = xs.len().max(ys.len());
    let pad = |s: &[usize]| [vec![1; r - s.len()], s.to_vec()].concat();
    let (xp, yp) = (pad(&xs), pad(&ys));
    let mut out = vec![0; r];
    for i in 0..r {
        out[i] = if xp[i] == yp[i] || yp[i] == 1 {
            xp[i]
        } else if xp[i] == 1 {
            yp[i]
        } else {
            return Err(format!("constant shapes {xs:?} and {ys:?} do not broadcast"));
        };
    }
    let idx = |s: &[usize], flat: usize| -> usize {
        let mut rem = flat;
        let mut k = 0;
        let mut stride = 1;
        for i in (0..r).rev() {
            let c = rem % out[i];
            rem /= out[i];
            if s[i] != 1 {
                k += c * stride;
            }
            stride *= s[i];
        }
        k
    };
    let n = numel(&out);
    match (x, y) {
        (Val::I(_, a), Val::I(_, b)) => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let (p, q) = (a[idx(&xp, i)], b[idx(&yp, i)]);
                if p == BATCH || q == BATCH {
                    return Err("arithmetic on the run-time batch is not supported".into());
                }
                v.push(match op {
                    "Add" => p.wrapping_add(q),
                    "Sub" => p.wrapping_sub(q),
                    "Mul" => p.wrapping_mul(q),
                    _ => {
                        if q == 0 {
                            return Err("integer division by zero".into());
                        }
                        p.div_euclid(q)
                    }
                });
            }
            Ok(Val::I(out, v))
        }
        _ => {
            let (a, b) = (floats(x)?, floats(y)?);
            let v = (0..n)
                .map(|i| {
                    let (p, q) = (a[idx(&xp, i)], b[idx(&yp, i)]);
                    match op {
                        "Add" => p + q,
                        "Sub" => p - q,
                        "Mul" => p * q,
                        _ => p / q,
                    }
                })
                .collect();
            Ok(Val::F(Arc::new(Tensor::new(out, v).map_err(|e| e.to_string())?)))
        }
    }
}

fn shape_of(v: &Val) -> Vec<usize> {
    match v {
        Val::I(s, _) => s.clone(),
        Val::F(t) => t.shape().to_vec(),
        Val::Act(_) => vec![],
    }
}

fn floats(v: &Val) -> std::result::Result<Vec<f32>, String> {
    match v {
        Val::F(t) => Ok(t.data().to_vec()),
        Val::I(_, d) if !d.contains(&BATCH) => Ok(d.iter().map(|&x| x as f32).collect()),
        _ => Err("arithmetic on the run-time batch is not supported".into()),
    }
}

/// IEEE half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: normalise
            let shift = f.leading_zeros() - 21;
            let f = (f << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (f << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::proto::*;
    use super::*;

    fn value_info(name: &str, dims: &[DimValue]) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: data_type::FLOAT,
                    shape: Some(TensorShapeProto {
                        dim: dims.iter().map(|d| Dimension { value: Some(d.clone()) }).collect(),
                    }),
                }),
            }),
        }
    }

    fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: name.into(),
            op_type: op.into(),
            domain: String::new(),
            attribute: vec![],
        }
    }

    fn weight(name: &str, dims: &[i64], raw: Vec<u8>) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type: data_type::FLOAT,
            name: name.into(),
            raw_data: raw,
            ..Default::default()
        }
    }

    /// x [N, 2, 4, 4] -> Conv(w [3, 2, 1, 1]) -> Relu -> Reshape(Shape-derived [N, -1]) -> y
    fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>) -> Vec<u8> {
        let m = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            producer_name: "test".into(),
            producer_version: String::new(),
            graph: Some(GraphProto {
                node: nodes,
                name: "tiny".into(),
                initializer: inits,
                input: vec![value_info(
                    "x",
                    &[DimValue::Param("N".into()), DimValue::Value(2), DimValue::Value(4), DimValue::Value(4)],
                )],
                output: vec![value_info("y", &[])],
                value_info: vec![],
            }),
        };
        m.encode_to_vec()
    }

    fn tiny() -> Vec<u8> {
        let w: Vec<u8> = (0..6).flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes()).collect();
        let zero: Vec<u8> = 0i64.to_le_bytes().to_vec();
        let minus1: Vec<u8> = (-1i64).to_le_bytes().to_vec();
        let int = |name: &str, raw: Vec<u8>, dims: &[i64]| TensorProto {
            dims: dims.to_vec(),
            data_type: data_type::INT64,
            name: name.into(),
            raw_data: raw,
            ..Default::default()
        };
        model(
            vec![
                node("Conv", "conv", &["x", "w"], &["c"]),
                node("Relu", "relu", &["c"], &["r"]),
                node("Shape", "shape", &["r"], &["s"]),
                node("Gather", "gather", &["s", "zero"], &["n"]),
                node("Unsqueeze", "unsq", &["n", "axes0"], &["n1"]),
                node("Concat", "cat", &["n1", "minus1"], &["target"]),
                node("Reshape", "flat", &["r", "target"], &["y"]),
            ],
            vec![
                weight("w", &[3, 2, 1, 1], w),
                int("zero", zero.clone(), &[]),
                int("axes0", zero, &[1]),
                int("minus1", minus1, &[1]),
            ],
        )
    }

    #[test]
    fn imports_and_folds_a_shape_subgraph() {
        let g = load_bytes(&tiny(), "tiny.onnx", None, &ImportOptions::default()).unwrap();
        let ops: Vec<&str> = g.nodes().iter().map(|n| n.op.name()).collect();
        assert_eq!(ops, ["Conv", "Relu", "Reshape"], "Shape/Gather/Unsqueeze/Concat fold away");
        assert_eq!(g.value(g.outputs()[0]).dims, vec![48]);
        let x = Tensor::new(vec![2, 2, 4, 4], (0..64).map(|i| i as f32 / 64.0).collect()).unwrap();
        let y = crate::reference::run(&g, &[x]).unwrap();
        assert_eq!(y[0].shape(), &[2, 48]);
    }

    #[test]
    fn corrupt_and_truncated_files_are_errors() {
        let e = load_bytes(b"\x08\x01\x12\xff\xff", "bad.onnx", None, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("bad.onnx") && e.contains("not a valid ONNX file"), "{e}");
        let bytes = tiny();
        for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            // Never a panic: an error, or (rarely) a shorter valid message.
            let _ = load_bytes(&bytes[..cut], "cut.onnx", None, &Default::default());
        }
        let short = model(vec![node("Relu", "relu", &["x"], &["y"])], vec![weight("w", &[3, 2, 1, 1], vec![0; 7])]);
        let e = load_bytes(&short, "short.onnx", None, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("'w'") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn every_unsupported_op_is_listed_with_its_nodes() {
        let bytes = model(
            vec![
                node("Relu", "ok", &["x"], &["a"]),
                node("NonMaxSuppression", "nms1", &["a"], &["b"]),
                node("TopK", "topk", &["b"], &["c"]),
                node("NonMaxSuppression", "nms2", &["c"], &["y"]),
            ],
            vec![],
        );
        let e = load_bytes(&bytes, "det.onnx", None, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("NonMaxSuppression (nodes nms1, nms2)") && e.contains("TopK (nodes topk)"), "{e}");
        assert!(!e.contains("Relu"), "{e}");
    }

    #[test]
    fn missing_external_data_names_the_file() {
        let mut w = weight("w", &[3, 2, 1, 1], vec![]);
        w.data_location = 1;
        w.external_data = vec![StringStringEntryProto { key: "location".into(), value: "weights.bin".into() }];
        let bytes = model(vec![node("Conv", "conv", &["x", "w"], &["y"])], vec![w]);
        // A directory of this process alone, absent at first (temp dirs outlive runs).
        let dir = std::env::temp_dir().join(format!("poolpipe-ext-data-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let e = load_bytes(&bytes, "ext.onnx", Some(&dir), &Default::default()).unwrap_err().to_string();
        assert!(e.contains("weights.bin") && e.contains("beside the model"), "{e}");
        // With the file present, it loads.
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        std::fs::write(dir.join("weights.bin"), data).unwrap();
        let g = load_bytes(&bytes, "ext.onnx", Some(&dir), &Default::default()).unwrap();
        assert_eq!(g.value(g.outputs()[0]).dims, vec![3, 4, 4]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every supported op with too few, empty or extra inputs, and without outputs: an error
    /// or a graph, never a panic.
    #[test]
    fn every_op_with_any_arity_is_an_error_not_a_panic() {
        let w: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let arities: [&[&str]; 7] =
            [&[], &[""], &["x"], &["", "w"], &["x", ""], &["x", "w"], &["x", "w", "w", "w", "w", "w"]];
        for op in SUPPORTED_OPS {
            for ins in arities {
                for outs in [&["y"][..], &[], &[""]] {
                    let bytes = model(vec![node(op, "n", ins, outs)], vec![weight("w", &[3, 2, 1, 1], w.clone())]);
                    // Either result is fine; reaching here without a panic is the test.
                    let r = load_bytes(&bytes, "arity.onnx", None, &Default::default());
                    if ins.len() < min_inputs(op, 13) || ins.first() == Some(&"") && *op != "Constant" {
                        assert!(r.is_err(), "{op} with inputs {ins:?} loaded");
                    }
                }
            }
        }
        let bytes = model(vec![node("Add", "add", &["x"], &["y"])], vec![]);
        let e = load_bytes(&bytes, "a.onnx", None, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("'add' (Add)") && e.contains("input 1 is missing"), "{e}");
    }

    #[test]
    fn symbolic_spatial_dims_come_from_the_options() {
        let mut m = ModelProto::decode(tiny().as_slice()).unwrap();
        let gr = m.graph.as_mut().unwrap();
        gr.input[0] = value_info(
            "x",
            &[
                DimValue::Param("N".into()),
                DimValue::Value(2),
                DimValue::Param("H".into()),
                DimValue::Param("W".into()),
            ],
        );
        let bytes = m.encode_to_vec();
        let e = load_bytes(&bytes, "sym.onnx", None, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("symbolic") && e.contains("input shape"), "{e}");
        let opts = ImportOptions { input_dims: vec![vec![2, 6, 5]] };
        let g = load_bytes(&bytes, "sym.onnx", None, &opts).unwrap();
        assert_eq!(g.value(g.outputs()[0]).dims, vec![90]);
        let bad = ImportOptions { input_dims: vec![vec![3, 6, 5]] };
        let e = load_bytes(&bytes, "sym.onnx", None, &bad).unwrap_err().to_string();
        assert!(e.contains("dimension 1 is 2"), "{e}");
    }

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}
