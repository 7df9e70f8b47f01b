//! Compiled graphs: buffers, bind groups and pipelines created once; runs that only upload
//! inputs, record dispatches and read outputs back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wgpu::util::DeviceExt;

use super::device::{Device, DeviceInner};
use super::lower::{Buf, PARAM_WORDS, lower};
use crate::error::{EngineError, Result};
use crate::graph::{Graph, ValueId};
use crate::tensor::Tensor;

/// How to compile a graph.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Largest batch a run may use; buffers are sized for it once.
    pub max_batch: usize,
    /// Fold batch norms and fuse activations first ([`crate::optimize`]).
    pub optimize: bool,
    /// Use the one-output-per-invocation baseline kernels for convolutions and Gemm (for
    /// benchmarks only).
    pub naive_kernels: bool,
    /// Invocations per workgroup of the 1-D kernels (default 64).
    pub workgroup_size: u32,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { max_batch: 8, optimize: true, naive_kernels: false, workgroup_size: 64 }
    }
}

/// Times of one run.
#[derive(Clone, Copy, Debug)]
pub struct RunTiming {
    /// Wall clock from upload to read-back.
    pub wall: Duration,
    /// GPU time of the kernels (timestamp queries), when the device has them.
    pub gpu: Option<Duration>,
}

struct BatchState {
    _params: wgpu::Buffer,
    bind_groups: Vec<wgpu::BindGroup>,
    workgroups: Vec<[u32; 2]>,
}

struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
}

/// A graph compiled for one device, runnable at any batch from 1 to its maximum.
pub struct CompiledGraph {
    dev: Arc<DeviceInner>,
    graph: Graph,
    max_batch: usize,
    slots: Vec<wgpu::Buffer>,
    slot_of: HashMap<ValueId, usize>,
    pipelines: Vec<Arc<wgpu::ComputePipeline>>,
    batches: Vec<BatchState>,
    staging: Vec<wgpu::Buffer>,
    timestamps: Option<Timestamps>,
    arena_bytes: u64,
    const_bytes: u64,
}

impl std::fmt::Debug for CompiledGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledGraph")
            .field("graph", &self.graph.name)
            .field("device", &self.dev.info.name)
            .field("max_batch", &self.max_batch)
            .field("dispatches", &self.pipelines.len())
            .finish()
    }
}

fn gpu_err(dev: &DeviceInner, context: impl Into<String>, e: impl std::fmt::Display) -> EngineError {
    EngineError::Gpu { device: dev.info.name.clone(), context: context.into(), message: e.to_string() }
}

impl Device {
    /// Compiles a graph (or a node range of one, see [`Graph::slice_nodes`]) for this device.
    pub fn compile(&self, graph: &Graph, opts: &CompileOptions) -> Result<CompiledGraph> {
        CompiledGraph::new(self.inner.clone(), graph, opts)
    }
}

impl CompiledGraph {
    fn new(dev: Arc<DeviceInner>, graph: &Graph, opts: &CompileOptions) -> Result<Self> {
        if opts.max_batch == 0 {
            return Err(EngineError::InvalidGraph {
                graph: graph.name.clone(),
                reason: "max_batch must be at least 1".into(),
            });
        }
        let wg = opts.workgroup_size.clamp(1, dev.limits.max_compute_invocations_per_workgroup);
        let g = if opts.optimize { crate::optimize(graph)? } else { graph.clone() };
        let max_binding = dev.limits.max_buffer_size.min(dev.limits.max_storage_buffer_binding_size);
        let lowered = lower(&g, opts.max_batch, opts.naive_kernels, wg, max_binding)?;
        let device = &dev.device;
        let root = |v: ValueId| *lowered.alias.get(&v).unwrap_or(&v);

        // Liveness of every buffer-owning value: first and last node that touches it.
        let mut last: HashMap<ValueId, usize> = HashMap::new();
        for (i, node) in g.nodes().iter().enumerate() {
            for &v in node.inputs.iter().chain(&node.outputs) {
                if g.value(v).is_batched() {
                    let e = last.entry(root(v)).or_insert(i);
                    *e = (*e).max(i);
                }
            }
        }
        for &o in g.outputs() {
            last.insert(root(o), usize::MAX);
        }
        for &i in g.inputs() {
            last.entry(root(i)).or_insert(usize::MAX);
        }
        // Greedy slot assignment in node order: a slot is reused once its value is dead.
        let bytes_of = |v: ValueId| ((g.value(v).per_sample_len() * opts.max_batch * 4) as u64).div_ceil(16) * 16;
        let mut slot_size: Vec<u64> = vec![];
        let mut slot_owner: Vec<(String, String)> = vec![]; // (node, tensor) of the largest value
        let mut slot_of: HashMap<ValueId, usize> = HashMap::new();
        let mut live: Vec<(usize, ValueId)> = vec![];
        let mut free: Vec<usize> = vec![];
        let mut assign = |v: ValueId, node: &str, free: &mut Vec<usize>, live: &mut Vec<(usize, ValueId)>| {
            let need = bytes_of(v);
            // Best fit among free slots, else the largest free one (grown), else a new slot.
            let pick = free
                .iter()
                .enumerate()
                .filter(|(_, s)| slot_size[**s] >= need)
                .min_by_key(|(_, s)| slot_size[**s])
                .map(|(i, _)| i)
                .or_else(|| free.iter().enumerate().max_by_key(|(_, s)| slot_size[**s]).map(|(i, _)| i));
            let slot = match pick {
                Some(i) => free.swap_remove(i),
                None => {
                    slot_size.push(0);
                    slot_owner.push((String::new(), String::new()));
                    slot_size.len() - 1
                }
            };
            if need > slot_size[slot] {
                slot_size[slot] = need;
                slot_owner[slot] = (node.to_string(), g.value(v).name.clone());
            }
            slot_of.insert(v, slot);
            live.push((slot, v));
        };
        for &i in g.inputs() {
            assign(i, "input", &mut free, &mut live);
        }
        for (i, node) in g.nodes().iter().enumerate() {
            live.retain(|&(s, v)| {
                if last[&v] < i {
                    free.push(s);
                    false
                } else {
                    true
                }
            });
            for &o in &node.outputs {
                if root(o) == o {
                    assign(o, &node.name, &mut free, &mut live);
                }
            }
        }
        for (&v, &r) in &lowered.alias {
            let s = slot_of[&root(r)];
            slot_of.insert(v, s);
        }

        // Device limits: a tensor must fit one buffer and one binding.
        let limit = dev.limits.max_buffer_size.min(dev.limits.max_storage_buffer_binding_size);
        for (s, &size) in slot_size.iter().enumerate() {
            if size > limit {
                return Err(EngineError::TensorTooLarge {
                    node: slot_owner[s].0.clone(),
                    tensor: slot_owner[s].1.clone(),
                    bytes: size,
                    batch: opts.max_batch,
                    device: dev.info.name.clone(),
                    limit,
                });
            }
        }
        for (name, data) in &lowered.consts {
            let size = (data.len() * 4) as u64;
            if size > limit {
                return Err(EngineError::TensorTooLarge {
                    node: name.split('.').next().unwrap_or(name).to_string(),
                    tensor: name.clone(),
                    bytes: size,
                    batch: opts.max_batch,
                    device: dev.info.name.clone(),
                    limit,
                });
            }
        }

        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let slots: Vec<wgpu::Buffer> = slot_size
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("arena slot {i}")),
                    size: size.max(16),
                    usage,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let consts: Vec<wgpu::Buffer> = lowered
            .consts
            .iter()
            .map(|(name, data)| {
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(name),
                    contents: bytemuck::cast_slice(data),
                    usage: wgpu::BufferUsages::STORAGE,
                })
            })
            .collect();
        let scratch: Vec<wgpu::Buffer> = lowered
            .scratch
            .iter()
            .map(|(name, size)| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(name),
                    size: (*size).max(16),
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let staging: Vec<wgpu::Buffer> = g
            .outputs()
            .iter()
            .map(|&o| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("read-back {}", g.value(o).name)),
                    size: bytes_of(o),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();

        let pipelines: Vec<Arc<wgpu::ComputePipeline>> =
            lowered.dispatches.iter().map(|d| dev.pipelines.get(device, &d.kernel)).collect();

        let resolve = |b: Buf| -> &wgpu::Buffer {
            match b {
                Buf::Value(v) => &slots[slot_of[&v]],
                Buf::Const(i) => &consts[i],
                Buf::Scratch(i) => &scratch[i],
            }
        };
        let max_groups = dev.limits.max_compute_workgroups_per_dimension as u64;
        let mut batches = vec![];
        for b in 1..=opts.max_batch {
            let n = lowered.dispatches.len().max(1);
            let mut words = vec![0u32; n * PARAM_WORDS];
            let mut workgroups = vec![];
            for (i, d) in lowered.dispatches.iter().enumerate() {
                let (groups, p) = (d.size)(b);
                words[i * PARAM_WORDS..(i + 1) * PARAM_WORDS].copy_from_slice(&p);
                let grid = if groups <= max_groups {
                    [groups as u32, 1]
                } else {
                    let y = groups.div_ceil(max_groups);
                    if y > max_groups {
                        return Err(EngineError::InvalidNode {
                            node: g.nodes()[d.node].name.clone(),
                            op: g.nodes()[d.node].op.name().into(),
                            reason: format!("needs {groups} workgroups, more than the device can launch"),
                        });
                    }
                    [max_groups as u32, y as u32]
                };
                workgroups.push(grid);
            }
            let params = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(&format!("params batch {b}")),
                contents: bytemuck::cast_slice(&words),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let bind_groups = lowered
                .dispatches
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params,
                            offset: (i * PARAM_WORDS * 4) as u64,
                            size: std::num::NonZeroU64::new((PARAM_WORDS * 4) as u64),
                        }),
                    }];
                    for &(binding, buf) in &d.bindings {
                        entries.push(wgpu::BindGroupEntry { binding, resource: resolve(buf).as_entire_binding() });
                    }
                    device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(&g.nodes()[d.node].name),
                        layout: &pipelines[i].get_bind_group_layout(0),
                        entries: &entries,
                    })
                })
                .collect();
            batches.push(BatchState { _params: params, bind_groups, workgroups });
        }

        let timestamps = dev.timestamps.then(|| Timestamps {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel time"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps read-back"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            period_ns: dev.queue.get_timestamp_period() as f64,
        });

        let verr = pollster::block_on(validation.pop());
        let merr = pollster::block_on(oom.pop());
        if let Some(e) = merr {
            return Err(EngineError::OutOfMemory {
                device: dev.info.name.clone(),
                what: format!("graph '{}' at max batch {} ({e})", g.name, opts.max_batch),
            });
        }
        if let Some(e) = verr {
            return Err(gpu_err(&dev, format!("compiling graph '{}'", g.name), e));
        }
        let arena_bytes = slot_size.iter().sum();
        let const_bytes = lowered.consts.iter().map(|(_, d)| d.len() as u64 * 4).sum();
        tracing::debug!(
            graph = %g.name, dispatches = pipelines.len(), slots = slots.len(), arena_bytes, const_bytes,
            "compiled"
        );
        Ok(CompiledGraph {
            dev,
            graph: g,
            max_batch: opts.max_batch,
            slots,
            slot_of,
            pipelines,
            batches,
            staging,
            timestamps,
            arena_bytes,
            const_bytes,
        })
    }

    /// The graph as compiled (after rewrites).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Largest batch a run may use.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Number of kernel launches per run.
    pub fn dispatch_count(&self) -> usize {
        self.pipelines.len()
    }

    /// Bytes of activation buffers (the arena) and of constants on the device.
    pub fn memory_bytes(&self) -> (u64, u64) {
        (self.arena_bytes, self.const_bytes)
    }

    /// Name of the device.
    pub fn device_name(&self) -> &str {
        &self.dev.info.name
    }

    /// Runs a batch: `inputs` in the order of the graph's inputs, each [batch, dims...].
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_timed(inputs).map(|(o, _)| o)
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<usize> {
        let g = &self.graph;
        if inputs.len() != g.inputs().len() {
            return Err(EngineError::Input {
                graph: g.name.clone(),
                input: g.inputs().iter().map(|&i| g.value(i).name.clone()).collect::<Vec<_>>().join(", "),
                reason: format!("expected {} input tensors, got {}", g.inputs().len(), inputs.len()),
            });
        }
        let mut batch = None;
        for (t, &v) in inputs.iter().zip(g.inputs()) {
            let val = g.value(v);
            let bad = |reason: String| EngineError::Input { graph: g.name.clone(), input: val.name.clone(), reason };
            let s = t.shape();
            if s.is_empty() || s[1..] != val.dims[..] {
                return Err(bad(format!("expected shape [batch, {}], got {s:?}", dims_str(&val.dims))));
            }
            if s[0] == 0 {
                return Err(bad("batch must be at least 1".into()));
            }
            if *batch.get_or_insert(s[0]) != s[0] {
                return Err(bad(format!("batch {} differs from the first input's {}", s[0], batch.unwrap())));
            }
        }
        let b = batch.expect("graphs have inputs");
        if b > self.max_batch {
            return Err(EngineError::BatchTooLarge { graph: g.name.clone(), batch: b, max: self.max_batch });
        }
        Ok(b)
    }

    /// Runs a batch and reports how long it took (GPU time when timestamps are available).
    pub fn run_timed(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, RunTiming)> {
        let b = self.check_inputs(inputs)?;
        let start = Instant::now();
        let dev = &self.dev;
        let g = &self.graph;
        for (t, &v) in inputs.iter().zip(g.inputs()) {
            dev.queue.write_buffer(&self.slots[self.slot_of[&v]], 0, bytemuck::cast_slice(t.data()));
        }
        let state = &self.batches[b - 1];
        let mut enc = dev.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(&g.name) });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&g.name),
                timestamp_writes: self.timestamps.as_ref().map(|t| wgpu::ComputePassTimestampWrites {
                    query_set: &t.set,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            for (i, p) in self.pipelines.iter().enumerate() {
                let [x, y] = state.workgroups[i];
                if x == 0 {
                    continue;
                }
                pass.set_pipeline(p);
                pass.set_bind_group(0, &state.bind_groups[i], &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
        if let Some(t) = &self.timestamps {
            enc.resolve_query_set(&t.set, 0..2, &t.resolve, 0);
            enc.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, 16);
        }
        let mut sizes = vec![];
        for (k, &o) in g.outputs().iter().enumerate() {
            let bytes = (g.value(o).per_sample_len() * b * 4) as u64;
            enc.copy_buffer_to_buffer(&self.slots[self.slot_of[&o]], 0, &self.staging[k], 0, bytes);
            sizes.push(bytes);
        }
        dev.queue.submit([enc.finish()]);

        let mut maps = vec![];
        for (k, &bytes) in sizes.iter().enumerate() {
            maps.push(map_read(&self.staging[k], bytes));
        }
        let ts_map = self.timestamps.as_ref().map(|t| map_read(&t.readback, 16));
        dev.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| gpu_err(dev, format!("running graph '{}'", g.name), e))?;
        if let Some(e) = dev.take_uncaptured() {
            return Err(gpu_err(dev, format!("running graph '{}'", g.name), e));
        }
        let mut outputs = vec![];
        for (k, &o) in g.outputs().iter().enumerate() {
            let data = read_mapped(dev, &self.staging[k], sizes[k], &maps[k], &g.name)?;
            outputs.push(Tensor::new(g.value(o).shape_at(b), data)?);
        }
        let gpu = match (&self.timestamps, ts_map) {
            (Some(t), Some(rx)) => {
                let ticks: Vec<u64> = {
                    rx.recv()
                        .map_err(|e| gpu_err(dev, "reading timestamps", e))?
                        .map_err(|e| gpu_err(dev, "reading timestamps", e))?;
                    let view = t.readback.get_mapped_range(..16).map_err(|e| gpu_err(dev, "reading timestamps", e))?;
                    bytemuck::cast_slice::<u8, u64>(&view).to_vec()
                };
                t.readback.unmap();
                let ns = ticks[1].saturating_sub(ticks[0]) as f64 * t.period_ns;
                Some(Duration::from_nanos(ns as u64))
            }
            _ => None,
        };
        Ok((outputs, RunTiming { wall: start.elapsed(), gpu }))
    }
}

type MapResult = std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>;

fn map_read(buf: &wgpu::Buffer, bytes: u64) -> MapResult {
    let (tx, rx) = std::sync::mpsc::channel();
    buf.map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
        let _ = tx.send(r);
    });
    rx
}

fn read_mapped(dev: &DeviceInner, buf: &wgpu::Buffer, bytes: u64, rx: &MapResult, graph: &str) -> Result<Vec<f32>> {
    let ctx = || format!("reading the outputs of graph '{graph}'");
    rx.recv().map_err(|e| gpu_err(dev, ctx(), e))?.map_err(|e| gpu_err(dev, ctx(), e))?;
    let data = {
        let view = buf.get_mapped_range(0..bytes).map_err(|e| gpu_err(dev, ctx(), e))?;
        bytemuck::cast_slice::<u8, f32>(&view).to_vec()
    };
    buf.unmap();
    Ok(data)
}

fn dims_str(d: &[usize]) -> String {
    d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}
