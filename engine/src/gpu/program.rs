//! Models on a device: one compiled graph per input signature a model has been run with
//! (built lazily at the first run of each, cached under a memory budget, constants shared),
//! and the host steps between device graphs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::compiled::{CompileOptions, CompiledGraph, ConstPool};
use super::device::Device;
use crate::error::Result;
use crate::graph::Graph;
use crate::model::{HostTraffic, Model, run_segments};
use crate::tensor::{DType, Tensor};

/// Bytes of activation buffers a cache of compiled graphs keeps by default (1 GiB); the
/// least recently used graph beyond it is dropped (the one in use never is).
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

/// Compiled graphs by key, least recently used dropped beyond a byte budget.
pub(crate) struct ExecCache<K> {
    entries: Vec<(K, CompiledGraph, u64)>,
    tick: u64,
    budget: u64,
}

impl<K: PartialEq + Clone> ExecCache<K> {
    pub fn new(budget: u64) -> Self {
        ExecCache { entries: vec![], tick: 0, budget }
    }

    /// The compiled graph of `key`, compiled now by `compile` when absent (its compile time
    /// returned).
    pub fn get_or_compile(
        &mut self,
        key: &K,
        compile: impl FnOnce() -> Result<CompiledGraph>,
    ) -> Result<(&mut CompiledGraph, Option<Duration>)> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(i) = self.entries.iter().position(|(k, _, _)| k == key) {
            self.entries[i].2 = tick;
            return Ok((&mut self.entries[i].1, None));
        }
        let started = Instant::now();
        let c = compile()?;
        let took = started.elapsed();
        self.entries.push((key.clone(), c, tick));
        // Over budget: drop the least recently used others.
        while self.entries.len() > 1 && self.bytes() > self.budget {
            let (i, _) = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.2 != tick)
                .min_by_key(|(_, e)| e.2)
                .expect("more than one entry");
            let gone = self.entries.remove(i);
            tracing::debug!(graph = %gone.1.graph().name, "dropped a compiled graph from the cache (memory budget)");
        }
        let i = self.entries.iter().position(|(k, _, _)| k == key).expect("just added");
        Ok((&mut self.entries[i].1, Some(took)))
    }

    /// Activation bytes held.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|(_, c, _)| c.memory_bytes().0).sum()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// What one run of a compiled model did.
#[derive(Clone, Debug)]
pub struct ModelRun {
    /// The outputs, in signature order.
    pub outputs: Vec<Tensor>,
    /// Wall clock of the whole run (compiling included).
    pub wall: Duration,
    /// GPU time of the device graphs, when the device has timestamps.
    pub gpu: Option<Duration>,
    /// Time spent compiling graphs this run needed for the first time.
    pub compiled: Duration,
    /// Host steps run and the bytes that crossed for them.
    pub host: HostTraffic,
}

/// What the device graphs of the last run were.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    /// Nodes of the device graphs as specialised (constants folded).
    pub nodes: usize,
    /// Nodes after batch-norm folding and activation fusion.
    pub fused_nodes: usize,
    /// Kernel launches.
    pub dispatches: usize,
    /// Activation buffers of those graphs and the model's constants on the device, bytes.
    pub device_bytes: (u64, u64),
}

type Key = (String, Vec<(String, DType, Vec<usize>)>);

/// A model compiled for a device, one executable per input signature.
///
/// ```no_run
/// use std::sync::Arc;
/// use poolpipe_engine::{gpu, models, Tensor, Rng};
/// let model = Arc::new(models::builtin("resnet-mini", 32, 1)?);
/// let device = gpu::Device::open(&gpu::AdapterSelector::Default)?;
/// let mut compiled = gpu::CompiledModel::new(&device, model, gpu::CompileOptions::default());
/// let x = Tensor::random(vec![4, 3, 32, 32], &mut Rng::new(1), -1.0, 1.0);
/// let run = compiled.run_full(&[x])?;       // compiles batch 4 on first use
/// println!("compiled in {:?}", run.compiled);
/// # Ok::<(), poolpipe_engine::EngineError>(())
/// ```
pub struct CompiledModel {
    device: Device,
    model: Arc<Model>,
    opts: CompileOptions,
    cache: ExecCache<Key>,
    last: RunStats,
}

impl CompiledModel {
    /// A model ready to compile on `device` (nothing is compiled until it runs or is
    /// prepared). Constants are shared by every graph it compiles.
    pub fn new(device: &Device, model: Arc<Model>, mut opts: CompileOptions) -> Self {
        opts.constants.get_or_insert_with(ConstPool::default);
        CompiledModel {
            device: device.clone(),
            model,
            opts,
            cache: ExecCache::new(DEFAULT_CACHE_BYTES),
            last: RunStats::default(),
        }
    }

    /// Sets the activation memory the cache of compiled graphs may hold.
    pub fn with_cache_bytes(mut self, bytes: u64) -> Self {
        self.cache.budget = bytes;
        self
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The device graphs of the last run.
    pub fn last_run_stats(&self) -> RunStats {
        self.last
    }

    /// Compiled graphs held now.
    pub fn cached_graphs(&self) -> usize {
        self.cache.len()
    }

    /// Compiles the first device graph at a batch size now (not at the first run); returns
    /// the compile time (zero when it was compiled already).
    pub fn prepare(&mut self, batch: usize) -> Result<Duration> {
        let seg = self.model.first_segment(batch)?;
        let (_, took) = self.compiled(&seg.graph)?;
        Ok(took.unwrap_or_default())
    }

    fn compiled(&mut self, g: &Graph) -> Result<(&mut CompiledGraph, Option<Duration>)> {
        let key: Key = (
            g.name.clone(),
            g.inputs().iter().map(|&v| (g.value(v).name.clone(), g.value(v).dtype, g.value(v).shape.clone())).collect(),
        );
        let (device, opts) = (&self.device, &self.opts);
        self.cache.get_or_compile(&key, || device.compile(g, opts))
    }

    /// Runs the model on `inputs` (signature order).
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(self.run_full(inputs)?.outputs)
    }

    /// Runs the model and reports times, compilation and host traffic.
    pub fn run_full(&mut self, inputs: &[Tensor]) -> Result<ModelRun> {
        let start = Instant::now();
        let model = self.model.clone();
        let mut compiled = Duration::ZERO;
        let mut gpu: Option<Duration> = None;
        let mut stats = RunStats::default();
        let (outputs, host) = run_segments(&model, inputs, |g, ins| {
            let (c, took) = self.compiled(g)?;
            compiled += took.unwrap_or_default();
            stats.nodes += g.nodes().len();
            stats.fused_nodes += c.graph().nodes().len();
            stats.dispatches += c.dispatch_count();
            stats.device_bytes.0 += c.memory_bytes().0;
            let (outs, t) = c.run_borrowed(ins)?;
            if let Some(d) = t.gpu {
                *gpu.get_or_insert(Duration::ZERO) += d;
            }
            Ok(outs)
        })?;
        stats.device_bytes.1 = self.opts.constants.as_ref().map_or(0, |p| p.bytes());
        self.last = stats;
        Ok(ModelRun { outputs, wall: start.elapsed(), gpu, compiled, host })
    }
}
