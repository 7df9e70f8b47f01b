//! Models: what a user loads (an ONNX file or a builder, e.g. a built-in model), and its
//! specialisation into static graphs. (A hand-built static graph compiles directly:
//! [`crate::gpu::Device::compile`].)
//!
//! A [`Model`] has a [`Signature`]: its inputs and outputs with element types and
//! dimensions, the first dimension of each input being the batch. It compiles to fully
//! static shapes for the input shapes it is given ([`Model::specialize`]): symbolic
//! dimensions are resolved, computed shapes (`Shape` -> arithmetic -> `Reshape`, ...) are
//! evaluated, and every node whose inputs are all constants is folded by the reference
//! executor. The result is a [`Segment`]: a device [`Graph`], then optionally a host step (an
//! operation whose output shape depends on the data, such as `NonZero` or
//! `NonMaxSuppression`), after which the rest of the model is specialised again once the
//! host step's outputs are known ([`Model::resume`]). Specialisations are cached by shape.
//!
//! ```
//! use poolpipe_engine::{model::Model, models, Tensor, Rng};
//! let model = models::builtin("resnet-mini", 32, 1)?;
//! let graph = model.graph(4)?;                       // the static graph at batch 4
//! assert_eq!(graph.value(graph.inputs()[0]).shape, vec![4, 3, 32, 32]);
//! let x = Tensor::random(vec![2, 3, 32, 32], &mut Rng::new(2), -1.0, 1.0);
//! let y = poolpipe_engine::reference::run_model(&model, &[x])?;  // on the CPU
//! assert_eq!(y[0].shape(), &[2, 10]);
//! # Ok::<(), poolpipe_engine::EngineError>(())
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{EngineError, Result};
use crate::graph::Graph;
use crate::ops::Op;
use crate::tensor::{DType, Tensor};

/// One dimension of a model input or output as the model declares it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Dim {
    /// The batch (the first dimension of each input), chosen at run time.
    Batch,
    /// A fixed size.
    Fixed(usize),
    /// A symbolic size other than the batch (resolved from the given input shape).
    Symbolic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Batch => f.write_str("N"),
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => f.write_str(s),
        }
    }
}

/// A model input or output: name, element type, dimensions.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TensorSpec {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Dimensions (empty when the model does not declare them, for outputs).
    pub dims: Vec<Dim>,
}

/// What a model takes and gives.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Signature {
    /// Inputs, in order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in order.
    pub outputs: Vec<TensorSpec>,
}

/// An argument of a host step.
#[derive(Clone, Debug)]
pub enum HostArg {
    /// A value computed earlier, by name.
    Value(String),
    /// A constant.
    Constant(Arc<Tensor>),
    /// An optional input left out.
    Absent,
}

/// An operation run on the host between two device graphs.
#[derive(Clone, Debug)]
pub struct HostStep {
    /// The node's name.
    pub node: String,
    /// The operation (evaluated by the reference executor).
    pub op: Op,
    /// Its inputs.
    pub inputs: Vec<HostArg>,
    /// Names of its outputs (as later nodes read them; empty for unused outputs).
    pub outputs: Vec<String>,
    /// Where the model continues.
    pub resume: Resume,
}

/// What the specialisation after a host step needs: where to go on and what is live there.
#[derive(Clone, Debug)]
pub struct Resume {
    /// Opaque position in the model's node list.
    pub(crate) at: usize,
    /// Values the rest of the model reads that are computed (device graph outputs and host
    /// step outputs), by name.
    pub live: Vec<String>,
    /// Constants the rest of the model reads, by name.
    pub(crate) constants: Arc<HashMap<String, Arc<Tensor>>>,
}

/// A specialised piece of a model: a device graph, then optionally a host step.
#[derive(Debug)]
pub struct Segment {
    /// The device graph. Its inputs and outputs are named as the model's values, so the
    /// caller moves tensors between segments by name; the last segment's outputs are the
    /// model outputs.
    pub graph: Graph,
    /// The host step after the graph, if any.
    pub host: Option<HostStep>,
}

/// A function from input shapes to a graph.
pub type Builder = dyn Fn(&[Vec<usize>]) -> Result<Graph> + Send + Sync;

enum Source {
    Onnx(Arc<crate::onnx::Parsed>),
    Built(Arc<Builder>),
}

/// Key of a cached specialisation: where it starts and the shapes of what it reads.
type Key = (usize, Vec<(String, DType, Vec<usize>)>);

/// Specialisations kept at most (each holds a graph sharing the model's constants).
const CACHE_ENTRIES: usize = 64;

/// Rewritten graphs kept at most ([`Model::optimized`]).
const OPTIMIZED_ENTRIES: usize = 2;

/// A loaded model, specialised on demand for the input shapes it is run with.
pub struct Model {
    name: String,
    source: Source,
    signature: Signature,
    /// Per-sample dimensions given by the user for inputs with symbolic dimensions.
    sample_dims: Vec<Vec<usize>>,
    cache: Mutex<Vec<(Key, Arc<Segment>)>>,
    /// Rewritten graphs ([`crate::optimize`]) by batch size, as [`Model::optimized`] gives them.
    optimized: Mutex<Vec<(usize, Arc<Graph>)>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("name", &self.name).field("signature", &self.signature).finish()
    }
}

impl Model {
    pub(crate) fn from_onnx(parsed: crate::onnx::Parsed, sample_dims: Vec<Vec<usize>>) -> Model {
        let signature = parsed.signature();
        Model {
            name: parsed.name.clone(),
            source: Source::Onnx(Arc::new(parsed)),
            signature,
            sample_dims,
            cache: Mutex::default(),
            optimized: Mutex::default(),
        }
    }

    /// A model from a builder: a function from the input shapes (batch first) to a graph.
    /// `signature` declares the inputs (the first dimension of each is the batch) and
    /// outputs.
    pub fn from_builder(name: &str, signature: Signature, build: Arc<Builder>) -> Model {
        Model {
            name: name.to_string(),
            source: Source::Built(build),
            signature,
            sample_dims: vec![],
            cache: Mutex::default(),
            optimized: Mutex::default(),
        }
    }

    /// A model from a function of the batch size to a graph whose inputs and outputs have
    /// the batch as their first dimension; the signature is read off the graph at batch 1.
    pub fn batched(name: &str, build: impl Fn(usize) -> Result<Graph> + Send + Sync + 'static) -> Result<Model> {
        let g1 = build(1)?;
        let spec = |v: crate::ValueId| {
            let val = g1.value(v);
            TensorSpec {
                name: val.name.clone(),
                dtype: val.dtype,
                dims: val
                    .shape
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if i == 0 { Dim::Batch } else { Dim::Fixed(d) })
                    .collect(),
            }
        };
        let signature = Signature {
            inputs: g1.inputs().iter().map(|&v| spec(v)).collect(),
            outputs: g1.outputs().iter().map(|&v| spec(v)).collect(),
        };
        let builder = move |shapes: &[Vec<usize>]| -> Result<Graph> {
            build(shapes.first().and_then(|s| s.first()).copied().unwrap_or(1))
        };
        Ok(Model::from_builder(name, signature, Arc::new(builder)))
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Inputs and outputs.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The full input shapes at a batch size: the batch first, fixed dimensions as declared,
    /// symbolic ones from the per-sample dimensions the model was loaded with.
    pub fn input_shapes(&self, batch: usize) -> Result<Vec<Vec<usize>>> {
        if batch == 0 {
            return Err(self.err("the batch must be at least 1".into()));
        }
        self.signature
            .inputs
            .iter()
            .enumerate()
            .map(|(k, spec)| {
                let given = self.sample_dims.get(k);
                let mut shape = vec![];
                for (i, d) in spec.dims.iter().enumerate() {
                    shape.push(match d {
                        Dim::Batch => batch,
                        Dim::Fixed(_) if i == 0 => batch,
                        Dim::Fixed(n) => given.and_then(|g| g.get(i - 1)).copied().unwrap_or(*n),
                        Dim::Symbolic(s) => *given.and_then(|g| g.get(i.wrapping_sub(1))).ok_or_else(|| {
                            self.err(format!(
                                "input '{}' has the symbolic dimension '{s}'; give the input shape (e.g. --input-shape 3x224x224)",
                                spec.name
                            ))
                        })?,
                    });
                }
                Ok(shape)
            })
            .collect()
    }

    fn err(&self, reason: String) -> EngineError {
        EngineError::Model { model: self.name.clone(), reason }
    }

    fn cached(&self, key: &Key) -> Option<Arc<Segment>> {
        let cache = self.cache.lock().expect("model cache poisoned");
        cache.iter().find(|(k, _)| k == key).map(|(_, s)| s.clone())
    }

    fn remember(&self, key: Key, seg: Arc<Segment>) {
        let mut cache = self.cache.lock().expect("model cache poisoned");
        if cache.len() >= CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push((key, seg));
    }

    /// The model specialised for these full input shapes (in signature order): its first
    /// segment.
    pub fn specialize(&self, shapes: &[Vec<usize>]) -> Result<Arc<Segment>> {
        if shapes.len() != self.signature.inputs.len() {
            return Err(self.err(format!(
                "takes {} input(s) ({}), got {} shape(s)",
                self.signature.inputs.len(),
                self.signature.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
                shapes.len()
            )));
        }
        for (spec, shape) in self.signature.inputs.iter().zip(shapes) {
            if !spec.dims.is_empty() && spec.dims.len() != shape.len() {
                return Err(EngineError::Input {
                    graph: self.name.clone(),
                    input: spec.name.clone(),
                    reason: format!(
                        "has {} dimensions ({}), the given shape {shape:?} has {}",
                        spec.dims.len(),
                        spec.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x "),
                        shape.len()
                    ),
                });
            }
            for (i, (d, &s)) in spec.dims.iter().zip(shape).enumerate() {
                if let Dim::Fixed(n) = d
                    && *n != s
                    && i != 0
                {
                    return Err(EngineError::Input {
                        graph: self.name.clone(),
                        input: spec.name.clone(),
                        reason: format!("dimension {i} is {n} in the model, the given shape {shape:?} has {s}"),
                    });
                }
            }
        }
        let key: Key = (
            0,
            self.signature.inputs.iter().zip(shapes).map(|(s, sh)| (s.name.clone(), s.dtype, sh.clone())).collect(),
        );
        if let Some(s) = self.cached(&key) {
            return Ok(s);
        }
        let seg = Arc::new(match &self.source {
            Source::Onnx(p) => crate::onnx::specialize(p, shapes)?,
            Source::Built(f) => Segment { graph: f(shapes)?, host: None },
        });
        self.remember(key, seg.clone());
        Ok(seg)
    }

    /// The rest of the model after a host step, specialised for the live values' types and
    /// shapes (`live`: name, type, shape of every value in `resume.live`).
    pub fn resume(&self, resume: &Resume, live: &[(String, DType, Vec<usize>)]) -> Result<Arc<Segment>> {
        let Source::Onnx(p) = &self.source else {
            return Err(self.err("only ONNX models have host steps".into()));
        };
        let key: Key = (resume.at, live.to_vec());
        if let Some(s) = self.cached(&key) {
            return Ok(s);
        }
        let seg = Arc::new(crate::onnx::resume(p, resume, live)?);
        self.remember(key, seg.clone());
        Ok(seg)
    }

    /// The static graph at a batch size, for models that run wholly on the device (what
    /// partitioning, pipeline stages and profiles need); a model with a host step is an
    /// error naming it.
    pub fn graph(&self, batch: usize) -> Result<Graph> {
        let seg = self.first_segment(batch)?;
        if let Some(h) = &seg.host {
            return Err(self.err(format!(
                "node '{}' ({}) has an output whose shape depends on the data, so it runs on the host between \
                 device graphs; partitioning, pipeline stages and profiles need a model that runs wholly on the \
                 device (run it with `poolpipe run`, or export the model without it, e.g. without the NMS)",
                h.node,
                h.op.name()
            )));
        }
        Ok(seg.graph.clone())
    }

    /// Every device graph and host step the model runs at a batch size whose host steps'
    /// outputs are unknown: the first segment (for reports; later segments depend on data).
    pub fn first_segment(&self, batch: usize) -> Result<Arc<Segment>> {
        self.specialize(&self.input_shapes(batch)?)
    }

    /// The rewritten graph at a batch size ([`crate::optimize`] of [`Model::graph`]): the
    /// graph partitions index and pipeline stages are cut from. The last two batch sizes asked
    /// for are kept (each holds its own folded weights), so a caller walking the batches once,
    /// or coming back to batch 1, rewrites each only once.
    pub fn optimized(&self, batch: usize) -> Result<Arc<Graph>> {
        {
            let mut cache = self.optimized.lock().expect("model cache poisoned");
            if let Some(i) = cache.iter().position(|(b, _)| *b == batch) {
                let hit = cache.remove(i);
                cache.push(hit.clone());
                return Ok(hit.1);
            }
        }
        let g = Arc::new(crate::optimize(&self.graph(batch)?)?);
        let mut cache = self.optimized.lock().expect("model cache poisoned");
        if cache.len() >= OPTIMIZED_ENTRIES {
            cache.remove(0);
        }
        cache.push((batch, g.clone()));
        Ok(g)
    }
}

impl Segment {
    /// Bytes the device graph's outputs take as device words (4 bytes an element): what is
    /// read back when a host step follows.
    pub fn output_bytes(&self) -> u64 {
        self.graph.outputs().iter().map(|&o| (self.graph.value(o).numel() * 4) as u64).sum()
    }
}

impl std::ops::Deref for Segment {
    type Target = Graph;
    fn deref(&self) -> &Graph {
        &self.graph
    }
}

/// What one run of a model did beyond its device graphs: the host steps and the bytes that
/// crossed between device and host for them.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HostTraffic {
    /// Host steps run, by node name and op.
    pub steps: Vec<(String, String)>,
    /// Bytes read back from the device for host steps and later segments.
    pub to_host: u64,
    /// Bytes uploaded to the device after host steps.
    pub to_device: u64,
}

/// Runs a model's segments and host steps with `run_graph` executing each device graph:
/// the loop shared by the CPU reference ([`crate::reference::run_model`]) and the GPU
/// executor. `inputs` are in signature order; returns the outputs in signature order.
pub fn run_segments(
    model: &Model,
    inputs: &[Tensor],
    mut run_graph: impl FnMut(&Graph, &[&Tensor]) -> Result<Vec<Tensor>>,
) -> Result<(Vec<Tensor>, HostTraffic)> {
    let sig = model.signature();
    if inputs.len() != sig.inputs.len() {
        return Err(EngineError::Input {
            graph: model.name().into(),
            input: sig.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
            reason: format!("expected {} input tensors, got {}", sig.inputs.len(), inputs.len()),
        });
    }
    for (spec, t) in sig.inputs.iter().zip(inputs) {
        if t.dtype() != spec.dtype {
            return Err(EngineError::Input {
                graph: model.name().into(),
                input: spec.name.clone(),
                reason: format!("expected element type {}, got {}", spec.dtype, t.dtype()),
            });
        }
    }
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let mut seg = model.specialize(&shapes)?;
    // The model's inputs are borrowed; what the graphs and host steps make is owned.
    let mut env: HashMap<String, Cow<Tensor>> =
        sig.inputs.iter().zip(inputs).map(|(s, t)| (s.name.clone(), Cow::Borrowed(t))).collect();
    let mut traffic = HostTraffic::default();
    let mut first = true;
    loop {
        let g = &seg.graph;
        let ins: Vec<&Tensor> = g
            .inputs()
            .iter()
            .map(|&v| {
                let name = &g.value(v).name;
                env.get(name).map(|t| t.as_ref()).ok_or_else(|| EngineError::InvalidGraph {
                    graph: g.name.clone(),
                    reason: format!("value '{name}' is needed but was not computed"),
                })
            })
            .collect::<Result<_>>()?;
        if !first {
            traffic.to_device += ins.iter().map(|t| (t.len() * 4) as u64).sum::<u64>();
        }
        let outs = run_graph(g, &ins)?;
        for (&o, t) in g.outputs().iter().zip(outs) {
            env.insert(g.value(o).name.clone(), Cow::Owned(t));
        }
        let Some(h) = &seg.host else { break };
        first = false;
        traffic.to_host += seg.output_bytes();
        let args: Vec<Option<&Tensor>> = h
            .inputs
            .iter()
            .map(|a| match a {
                HostArg::Value(n) => env.get(n).map(|t| Some(t.as_ref())).ok_or_else(|| EngineError::InvalidNode {
                    node: h.node.clone(),
                    op: h.op.name().into(),
                    reason: format!("input '{n}' was not computed"),
                }),
                HostArg::Constant(t) => Ok(Some(t.as_ref())),
                HostArg::Absent => Ok(None),
            })
            .collect::<Result<_>>()?;
        let present: Vec<&Tensor> = args.iter().flatten().copied().collect();
        if args.iter().skip(present.len()).any(Option::is_some) {
            return Err(EngineError::InvalidNode {
                node: h.node.clone(),
                op: h.op.name().into(),
                reason: "an optional input is left out before a given one; host steps take inputs in order".into(),
            });
        }
        let results = crate::reference::eval(&h.op, &present).map_err(|reason| EngineError::InvalidNode {
            node: h.node.clone(),
            op: h.op.name().into(),
            reason,
        })?;
        traffic.steps.push((h.node.clone(), h.op.name().to_string()));
        for (name, t) in h.outputs.iter().zip(results) {
            if !name.is_empty() {
                env.insert(name.clone(), Cow::Owned(t));
            }
        }
        let live: Vec<(String, DType, Vec<usize>)> = h
            .resume
            .live
            .iter()
            .map(|n| {
                env.get(n).map(|t| (n.clone(), t.dtype(), t.shape().to_vec())).ok_or_else(|| {
                    EngineError::InvalidGraph {
                        graph: model.name().into(),
                        reason: format!("value '{n}' is needed after host step '{}' but was not computed", h.node),
                    }
                })
            })
            .collect::<Result<_>>()?;
        seg = model.resume(&h.resume, &live)?;
    }
    let outs = sig
        .outputs
        .iter()
        .map(|o| {
            env.remove(&o.name).map(Cow::into_owned).ok_or_else(|| EngineError::InvalidGraph {
                graph: model.name().into(),
                reason: format!("output '{}' was not computed", o.name),
            })
        })
        .collect::<Result<_>>()?;
    Ok((outs, traffic))
}
