//! Pipeline stages: a range of blocks of a partitioned model, as a graph of its own whose
//! boundary tensors travel in a chosen precision.
//!
//! Stage `[i, j)` runs the nodes of blocks `i..j` ([`crate::partition::Partition`]) of the
//! model's optimised graph. Its inputs are the tensors crossing cut `i` (skip connections
//! included), its outputs those crossing cut `j`, named as in the model so consecutive stages
//! connect by name. Float tensors that are the model's own inputs (frames) or outputs
//! (results) stay fp32; every other float boundary tensor is exchanged in the stage's
//! [`Precision`] (fp16 by default), packed and unpacked by kernels on the device; integer and
//! bool tensors travel as int32 words. The graph is specialised per batch size
//! ([`Stage::graph`]); [`CompiledStage`] compiles it on a device for each batch it runs.
//!
//! ```no_run
//! use std::sync::Arc;
//! use poolpipe_engine::{gpu, models, partition, stage, boundary::Precision, Rng, Tensor};
//! let model = Arc::new(models::builtin("resnet-mini", 32, 1)?);
//! let graph = model.optimized(1)?;
//! let costs = vec![partition::estimate_costs(&graph)];
//! let split = partition::partition(&graph, &costs, &partition::PartitionOptions { blocks: 4, tolerance: 0.5 })?;
//! let device = gpu::Device::open(&gpu::AdapterSelector::Default)?;
//! let first = stage::Stage::new(&model, &split, 0..2, Precision::F16)?;
//! let second = stage::Stage::new(&model, &split, 2..4, Precision::F16)?;
//! let mut a = stage::CompiledStage::new(&device, first.clone(), 4);
//! let mut b = stage::CompiledStage::new(&device, second.clone(), 4);
//! let x = Tensor::random(vec![2, 3, 32, 32], &mut Rng::new(1), -1.0, 1.0);
//! let x = poolpipe_engine::boundary::Boundary::from_tensor("frames", &x, Precision::F32);
//! let (mid, _) = a.run_boundary(2, &[x])?;         // fp16 bytes, ready for the wire
//! let mid = first.forward(&[], mid)?;               // plus tensors passing over the stage
//! let (out, _) = b.run_boundary(2, &second.order(&mid)?)?;
//! # Ok::<(), poolpipe_engine::EngineError>(())
//! ```

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::boundary::{Boundary, Precision};
use crate::error::{EngineError, Result};
use crate::gpu::{CompileOptions, ConstPool, Device, ExecCache, RunTiming, wire_precision};
use crate::graph::{Graph, ValueSource};
use crate::model::Model;
use crate::partition::Partition;

/// Blocks `[first, last)` of a partitioned model, ready to compile.
#[derive(Clone, Debug)]
pub struct Stage {
    /// The model the stage is cut from.
    pub model: Arc<Model>,
    /// Block range.
    pub blocks: Range<usize>,
    /// Node range in the model's optimised graph.
    pub nodes: Range<usize>,
    /// The stage's graph at batch 1 (inputs: tensors crossing the first cut; outputs:
    /// tensors crossing the last).
    pub graph: Graph,
    /// Precision of each input of `graph`, in order.
    pub input_precisions: Vec<Precision>,
    /// Precision of each output of `graph`, in order.
    pub output_precisions: Vec<Precision>,
    /// Tensors crossing both the first and the last cut of the stage (skip connections over
    /// it, model outputs produced earlier): received and sent on unchanged
    /// ([`Stage::forward`]), so the next stage gets every tensor crossing its first cut.
    pub pass_through: Vec<String>,
}

impl Stage {
    /// Cuts blocks `blocks` out of `model` (whose optimised graph at batch 1 `partition` was
    /// computed on); float boundary tensors in `precision`, the model's own inputs and
    /// outputs in fp32.
    pub fn new(model: &Arc<Model>, partition: &Partition, blocks: Range<usize>, precision: Precision) -> Result<Stage> {
        let graph = model.optimized(1)?;
        let m = partition.len();
        let n = graph.nodes().len();
        if partition.bounds.last() != Some(&n) {
            return Err(EngineError::InvalidGraph {
                graph: graph.name.clone(),
                reason: format!(
                    "the partition covers {} nodes but the graph has {n}; partition the same (optimized) graph the stages are cut from",
                    partition.bounds.last().copied().unwrap_or(0)
                ),
            });
        }
        if blocks.start >= blocks.end || blocks.end > m {
            return Err(EngineError::InvalidGraph {
                graph: graph.name.clone(),
                reason: format!("block range {}..{} is empty or outside 0..{m}", blocks.start, blocks.end),
            });
        }
        let nodes = partition.bounds[blocks.start]..partition.bounds[blocks.end];
        let sub = graph.slice_nodes(nodes.clone())?;
        let model_io: HashSet<&str> =
            graph.inputs().iter().chain(graph.outputs()).map(|&v| graph.value(v).name.as_str()).collect();
        let prec = |v: crate::ValueId| -> Precision {
            let val = sub.value(v);
            wire_precision(val.dtype, precision == Precision::F16 && !model_io.contains(val.name.as_str()))
        };
        let input_precisions = sub.inputs().iter().map(|&v| prec(v)).collect();
        let output_precisions = sub.outputs().iter().map(|&v| prec(v)).collect();
        // A value crosses cut p when it exists before p (input, or produced before node p) and
        // is read at or after node p (or is a model output).
        let mut last_use = vec![None::<usize>; graph.values().len()];
        for (j, node) in graph.nodes().iter().enumerate() {
            for v in &node.inputs {
                last_use[v.index()] = Some(j);
            }
        }
        for v in graph.outputs() {
            last_use[v.index()] = Some(n);
        }
        let pass_through = graph
            .values()
            .iter()
            .enumerate()
            .filter(|(i, v)| {
                let first = match v.source {
                    ValueSource::Input => 0,
                    ValueSource::Node(k, _) => k + 1,
                    ValueSource::Constant(_) => return false,
                };
                first <= nodes.start && last_use[*i].is_some_and(|l| l >= nodes.end)
            })
            .map(|(_, v)| v.name.clone())
            .collect();
        Ok(Stage { model: model.clone(), graph: sub, blocks, nodes, input_precisions, output_precisions, pass_through })
    }

    /// The stage's graph specialised at a batch size.
    pub fn graph(&self, batch: usize) -> Result<Graph> {
        if batch == 1 {
            return Ok(self.graph.clone());
        }
        let full = self.model.optimized(batch)?;
        let g = full.slice_nodes(self.nodes.clone())?;
        let names = |g: &Graph, ids: &[crate::ValueId]| -> Vec<String> {
            ids.iter().map(|&v| g.value(v).name.clone()).collect()
        };
        if names(&g, g.inputs()) != names(&self.graph, self.graph.inputs())
            || names(&g, g.outputs()) != names(&self.graph, self.graph.outputs())
        {
            return Err(EngineError::InvalidGraph {
                graph: g.name.clone(),
                reason: format!(
                    "the stage's boundary differs at batch {batch} from batch 1; the model's structure depends on the batch, so it cannot be cut into stages"
                ),
            });
        }
        Ok(g)
    }

    /// Compile options for this stage: the fp16 boundary tensors named; no second rewrite
    /// (the stage's graph is cut from the rewritten model).
    pub fn compile_options(&self) -> CompileOptions {
        let g = &self.graph;
        let ins = g.inputs().iter().zip(&self.input_precisions);
        let outs = g.outputs().iter().zip(&self.output_precisions);
        let f16_io =
            ins.chain(outs).filter(|(_, p)| **p == Precision::F16).map(|(&v, _)| g.value(v).name.clone()).collect();
        CompileOptions { f16_io, optimize: false, ..Default::default() }
    }

    /// Names of the stage's inputs, in order.
    pub fn input_names(&self) -> Vec<&str> {
        self.graph.inputs().iter().map(|&v| self.graph.value(v).name.as_str()).collect()
    }

    /// Picks this stage's inputs, in order, from tensors received (by name; extra tensors,
    /// e.g. skip connections bound for a later stage, are ignored).
    pub fn order(&self, available: &[Boundary]) -> Result<Vec<Boundary>> {
        self.input_names()
            .into_iter()
            .map(|name| {
                available.iter().find(|b| b.name == name).cloned().ok_or_else(|| EngineError::Boundary {
                    tensor: name.to_string(),
                    reason: format!(
                        "stage '{}' needs it but it was not received (got: {})",
                        self.graph.name,
                        available.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                })
            })
            .collect()
    }

    /// Everything this stage sends on: its outputs, then the pass-through tensors taken from
    /// what it received. Together they are exactly the tensors crossing its last cut.
    pub fn forward(&self, received: &[Boundary], mut produced: Vec<Boundary>) -> Result<Vec<Boundary>> {
        for name in &self.pass_through {
            let t = received.iter().find(|b| &b.name == name).ok_or_else(|| EngineError::Boundary {
                tensor: name.clone(),
                reason: format!("stage '{}' must pass it on to later stages but did not receive it", self.graph.name),
            })?;
            produced.push(t.clone());
        }
        Ok(produced)
    }
}

/// A stage compiled on a device, one compiled graph per batch size it runs (built on first
/// use or by [`CompiledStage::prepare`], weights shared), batches up to `max_batch`.
pub struct CompiledStage {
    device: Device,
    stage: Stage,
    opts: CompileOptions,
    max_batch: usize,
    cache: ExecCache<usize>,
}

impl CompiledStage {
    /// A stage ready to compile on `device` for batches 1..=`max_batch`.
    pub fn new(device: &Device, stage: Stage, max_batch: usize) -> Self {
        let mut opts = stage.compile_options();
        opts.constants = Some(ConstPool::default());
        CompiledStage {
            device: device.clone(),
            stage,
            opts,
            max_batch: max_batch.max(1),
            cache: ExecCache::new(crate::gpu::DEFAULT_CACHE_BYTES),
        }
    }

    /// The stage.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// Largest batch it runs.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn compiled(&mut self, batch: usize) -> Result<(&mut crate::gpu::CompiledGraph, Option<Duration>)> {
        if batch == 0 || batch > self.max_batch {
            return Err(EngineError::BatchTooLarge {
                graph: self.stage.graph.name.clone(),
                batch,
                max: self.max_batch,
            });
        }
        let (device, opts, stage) = (&self.device, &self.opts, &self.stage);
        self.cache.get_or_compile(&batch, || device.compile(&stage.graph(batch)?, opts))
    }

    /// Compiles the graph of a batch size now; returns the compile time (zero when it was
    /// compiled already).
    pub fn prepare(&mut self, batch: usize) -> Result<Duration> {
        Ok(self.compiled(batch)?.1.unwrap_or_default())
    }

    /// Runs a batch of `batch` samples on tensors in their wire form, in the order of the
    /// stage's inputs ([`Stage::order`]).
    pub fn run_boundary(&mut self, batch: usize, inputs: &[Boundary]) -> Result<(Vec<Boundary>, RunTiming)> {
        self.compiled(batch)?.0.run_boundary(inputs)
    }
}
