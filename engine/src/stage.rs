//! Pipeline stages: a range of blocks of a partitioned graph, as a graph of its own whose
//! boundary tensors travel in a chosen precision.
//!
//! Stage `[i, j)` runs the nodes of blocks `i..j` ([`crate::partition::Partition`]). Its
//! inputs are the tensors crossing cut `i` (skip connections included), its outputs those
//! crossing cut `j`, named as in the model so consecutive stages connect by name. Tensors
//! that are the model's own inputs (frames) or outputs (results) stay fp32; every other
//! boundary tensor is exchanged in the stage's [`Precision`] (fp16 by default), packed and
//! unpacked by kernels on the device.
//!
//! ```no_run
//! use poolpipe_engine::{gpu, models, partition, stage, boundary::Precision, Rng, Tensor};
//! let graph = poolpipe_engine::optimize(&models::builtin("resnet-mini", 32, 1)?)?;
//! let costs = vec![partition::estimate_costs(&graph)];
//! let split = partition::partition(&graph, &costs, &partition::PartitionOptions { blocks: 4, tolerance: 0.5 })?;
//! let device = gpu::Device::open(&gpu::AdapterSelector::Default)?;
//! let first = stage::Stage::new(&graph, &split, 0..2, Precision::F16)?;
//! let second = stage::Stage::new(&graph, &split, 2..4, Precision::F16)?;
//! let mut a = device.compile(&first.graph, &first.compile_options(4))?;
//! let mut b = device.compile(&second.graph, &second.compile_options(4))?;
//! let x = Tensor::random(vec![2, 3, 32, 32], &mut Rng::new(1), -1.0, 1.0);
//! let x = poolpipe_engine::boundary::Boundary::from_tensor("frames", &x, Precision::F32);
//! let (mid, _) = a.run_boundary(&[x])?;          // fp16 bytes, ready for the wire
//! let mid = first.forward(&[], mid)?;               // plus tensors passing over the stage
//! let (out, _) = b.run_boundary(&second.order(&mid)?)?;
//! # Ok::<(), poolpipe_engine::EngineError>(())
//! ```

use std::collections::HashSet;
use std::ops::Range;

use crate::boundary::{Boundary, Precision};
use crate::error::{EngineError, Result};
use crate::gpu::CompileOptions;
use crate::graph::{Graph, ValueSource};
use crate::partition::Partition;

/// Blocks `[first, last)` of a partitioned graph, ready to compile.
#[derive(Clone, Debug)]
pub struct Stage {
    /// The stage's own graph (inputs: tensors crossing the first cut; outputs: tensors
    /// crossing the last).
    pub graph: Graph,
    /// Block range.
    pub blocks: Range<usize>,
    /// Node range in the partitioned graph.
    pub nodes: Range<usize>,
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
    /// Cuts blocks `blocks` out of `graph` (the graph `partition` was computed on);
    /// boundary tensors in `precision`, the model's own inputs and outputs in fp32.
    pub fn new(graph: &Graph, partition: &Partition, blocks: Range<usize>, precision: Precision) -> Result<Stage> {
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
        let prec = |name: &str| if model_io.contains(name) { Precision::F32 } else { precision };
        let input_precisions = sub.inputs().iter().map(|&v| prec(&sub.value(v).name)).collect();
        let output_precisions = sub.outputs().iter().map(|&v| prec(&sub.value(v).name)).collect();
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
        Ok(Stage { graph: sub, blocks, nodes, input_precisions, output_precisions, pass_through })
    }

    /// Compile options for this stage at a maximum batch: the fp16 boundary tensors named.
    pub fn compile_options(&self, max_batch: usize) -> CompileOptions {
        let g = &self.graph;
        let ins = g.inputs().iter().zip(&self.input_precisions);
        let outs = g.outputs().iter().zip(&self.output_precisions);
        let f16_io =
            ins.chain(outs).filter(|(_, p)| **p == Precision::F16).map(|(&v, _)| g.value(v).name.clone()).collect();
        CompileOptions { max_batch, f16_io, ..Default::default() }
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
