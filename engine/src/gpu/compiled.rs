//! Compiled graphs: buffers, bind groups and pipelines created once; runs that only upload
//! inputs, record dispatches and read outputs back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wgpu::util::DeviceExt;

use super::device::{Device, DeviceInner};
use super::kernels::{Family, Kernel};
use super::lower::{Buf, Dispatch, PARAM_WORDS, SizeFn, lower};
use crate::boundary::{Boundary, Precision};
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
    /// Names of graph inputs and outputs exchanged as packed fp16 (boundary tensors between
    /// stages, see [`crate::boundary`]): inputs are unpacked and outputs packed by kernels on
    /// the device, so only half the bytes cross the bus. Others are exchanged as fp32.
    pub f16_io: Vec<String>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { max_batch: 8, optimize: true, naive_kernels: false, workgroup_size: 64, f16_io: vec![] }
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
    /// Per graph input, then per graph output: the packed fp16 buffer when exchanged as fp16.
    packed_in: Vec<Option<usize>>,
    packed_out: Vec<Option<usize>>,
    packed: Vec<wgpu::Buffer>,
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
        let mut lowered = lower(&g, opts.max_batch, opts.naive_kernels, wg, max_binding)?;
        let (packed_in, packed_out, packed_words) = add_f16_conversions(&g, &mut lowered, &opts.f16_io, wg)?;
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
        let packed: Vec<wgpu::Buffer> = packed_words
            .iter()
            .map(|&per_sample| {
                let words = (per_sample * opts.max_batch).div_ceil(2) as u64;
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("packed fp16 boundary"),
                    size: ((words * 4).div_ceil(16) * 16).max(16),
                    usage,
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
                Buf::Packed(i) => &packed[i],
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
                        let (node, op) = match g.nodes().get(d.node) {
                            Some(n) => (n.name.clone(), n.op.name().to_string()),
                            None => ("boundary".to_string(), "fp16 conversion".to_string()),
                        };
                        return Err(EngineError::InvalidNode {
                            node,
                            op,
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
                        label: Some(g.nodes().get(d.node).map_or("fp16 conversion", |n| n.name.as_str())),
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
            packed_in,
            packed_out,
            packed,
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

    /// The precision each graph input is exchanged in ([`CompileOptions::f16_io`]).
    pub fn input_precisions(&self) -> Vec<Precision> {
        self.packed_in.iter().map(|p| if p.is_some() { Precision::F16 } else { Precision::F32 }).collect()
    }

    /// The precision each graph output is exchanged in.
    pub fn output_precisions(&self) -> Vec<Precision> {
        self.packed_out.iter().map(|p| if p.is_some() { Precision::F16 } else { Precision::F32 }).collect()
    }

    fn check_inputs(&self, shapes: &[&[usize]]) -> Result<usize> {
        let g = &self.graph;
        if shapes.len() != g.inputs().len() {
            return Err(EngineError::Input {
                graph: g.name.clone(),
                input: g.inputs().iter().map(|&i| g.value(i).name.clone()).collect::<Vec<_>>().join(", "),
                reason: format!("expected {} input tensors, got {}", g.inputs().len(), shapes.len()),
            });
        }
        let mut batch = None;
        for (&s, &v) in shapes.iter().zip(g.inputs()) {
            let val = g.value(v);
            let bad = |reason: String| EngineError::Input { graph: g.name.clone(), input: val.name.clone(), reason };
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
    /// Inputs and outputs exchanged as fp16 are rounded to fp16 on the way (on the CPU for
    /// inputs, on the device for outputs).
    pub fn run_timed(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, RunTiming)> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let b = self.check_inputs(&shapes)?;
        let g = &self.graph;
        let bytes: Vec<Vec<u8>> = inputs
            .iter()
            .zip(g.inputs())
            .zip(&self.packed_in)
            .map(|((t, &v), p)| match p {
                Some(_) => Boundary::from_tensor(&g.value(v).name, t, Precision::F16).bytes,
                None => bytemuck::cast_slice(t.data()).to_vec(),
            })
            .collect();
        let (raw, timing) = self.execute(b, &bytes)?;
        let g = &self.graph;
        let mut outputs = vec![];
        for ((bytes, &o), p) in raw.into_iter().zip(g.outputs()).zip(&self.packed_out) {
            let precision = if p.is_some() { Precision::F16 } else { Precision::F32 };
            let wire = Boundary { name: g.value(o).name.clone(), shape: g.value(o).shape_at(b), precision, bytes };
            outputs.push(wire.to_tensor()?);
        }
        Ok((outputs, timing))
    }

    /// Runs a batch on tensors in their wire form (what a stage receives from the previous
    /// one), in the order of the graph's inputs, each in the precision the graph was compiled
    /// to take ([`Self::input_precisions`]); returns the outputs in wire form, fp16 ones as
    /// the device packed them. The bytes are uploaded and read back as they are: no
    /// conversion on the CPU.
    pub fn run_boundary(&mut self, inputs: &[Boundary]) -> Result<(Vec<Boundary>, RunTiming)> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
        let b = self.check_inputs(&shapes)?;
        let g = &self.graph;
        for ((t, &v), want) in inputs.iter().zip(g.inputs()).zip(self.input_precisions()) {
            let name = &g.value(v).name;
            if &t.name != name {
                return Err(EngineError::Boundary {
                    tensor: t.name.clone(),
                    reason: format!("graph '{}' expects '{name}' at this position", g.name),
                });
            }
            if t.precision != want {
                return Err(EngineError::Boundary {
                    tensor: t.name.clone(),
                    reason: format!(
                        "sent as {} but stage '{}' was compiled to receive {want}; use the same boundary precision on both sides of the cut",
                        t.precision, g.name
                    ),
                });
            }
            t.validate()?;
        }
        let bytes: Vec<Vec<u8>> = inputs.iter().map(|t| t.bytes.clone()).collect();
        let (raw, timing) = self.execute(b, &bytes)?;
        let g = &self.graph;
        let outs = raw
            .into_iter()
            .zip(g.outputs())
            .zip(self.output_precisions())
            .map(|((bytes, &o), precision)| Boundary {
                name: g.value(o).name.clone(),
                shape: g.value(o).shape_at(b),
                precision,
                bytes,
            })
            .collect();
        Ok((outs, timing))
    }

    /// Uploads the inputs' bytes, runs every dispatch at batch `b` and reads the outputs'
    /// bytes back (fp16 outputs: exactly 2 bytes an element).
    fn execute(&mut self, b: usize, inputs: &[Vec<u8>]) -> Result<(Vec<Vec<u8>>, RunTiming)> {
        let start = Instant::now();
        let dev = &self.dev;
        let g = &self.graph;
        for (k, (bytes, &v)) in inputs.iter().zip(g.inputs()).enumerate() {
            let target = match self.packed_in[k] {
                Some(i) => &self.packed[i],
                None => &self.slots[self.slot_of[&v]],
            };
            if bytes.len() % 4 == 0 {
                dev.queue.write_buffer(target, 0, bytes);
            } else {
                // Buffer writes go in whole words: pad an odd fp16 count with a zero half.
                let mut padded = bytes.clone();
                padded.resize(bytes.len().next_multiple_of(4), 0);
                dev.queue.write_buffer(target, 0, &padded);
            }
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
        // (bytes to read, bytes that are the tensor)
        let mut sizes = vec![];
        for (k, &o) in g.outputs().iter().enumerate() {
            let n = (g.value(o).per_sample_len() * b) as u64;
            let (src, copy, used) = match self.packed_out[k] {
                Some(i) => (&self.packed[i], n.div_ceil(2) * 4, n * 2),
                None => (&self.slots[self.slot_of[&o]], n * 4, n * 4),
            };
            enc.copy_buffer_to_buffer(src, 0, &self.staging[k], 0, copy);
            sizes.push((copy, used));
        }
        dev.queue.submit([enc.finish()]);

        let mut maps = vec![];
        for (k, &(copy, _)) in sizes.iter().enumerate() {
            maps.push(map_read(&self.staging[k], copy));
        }
        let ts_map = self.timestamps.as_ref().map(|t| map_read(&t.readback, 16));
        dev.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| gpu_err(dev, format!("running graph '{}'", g.name), e))?;
        if let Some(e) = dev.take_uncaptured() {
            return Err(gpu_err(dev, format!("running graph '{}'", g.name), e));
        }
        let mut outputs = vec![];
        for (k, &(copy, used)) in sizes.iter().enumerate() {
            let mut data = read_mapped(dev, &self.staging[k], copy, &maps[k], &g.name)?;
            data.truncate(used as usize);
            outputs.push(data);
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

/// Adds the fp16 unpack dispatches (before everything) and pack dispatches (after
/// everything) for the graph inputs and outputs named in `names`. Returns, per input and per
/// output, the index of its packed buffer, and each packed buffer's elements per sample.
#[allow(clippy::type_complexity)]
fn add_f16_conversions(
    g: &Graph,
    lowered: &mut super::lower::Lowered,
    names: &[String],
    wg: u32,
) -> Result<(Vec<Option<usize>>, Vec<Option<usize>>, Vec<usize>)> {
    let mut per_sample = vec![];
    let find = |name: &str, list: &[ValueId]| list.iter().position(|&v| g.value(v).name == name);
    for name in names {
        if find(name, g.inputs()).is_none() && find(name, g.outputs()).is_none() {
            return Err(EngineError::InvalidGraph {
                graph: g.name.clone(),
                reason: format!(
                    "'{name}' is to be exchanged as fp16 but is neither an input nor an output of the graph; inputs: {}; outputs: {}",
                    names_of(g, g.inputs()),
                    names_of(g, g.outputs())
                ),
            });
        }
    }
    let wants = |v: ValueId| names.iter().any(|n| *n == g.value(v).name);
    let size = move |len: usize| -> SizeFn {
        Box::new(move |b| {
            let n = len * b;
            let groups = n.div_ceil(2).div_ceil(wg as usize) as u64;
            let mut p = vec![0u32; PARAM_WORDS];
            p[0] = n as u32;
            (groups, p)
        })
    };
    let mut front = vec![];
    let mut packed_in = vec![];
    for &v in g.inputs() {
        if wants(v) {
            let i = per_sample.len();
            per_sample.push(g.value(v).per_sample_len());
            front.push(Dispatch {
                node: usize::MAX,
                kernel: Kernel::new(Family::Convert, "unpack_f16", &[("WG", wg)]),
                bindings: vec![(1, Buf::Packed(i)), (2, Buf::Value(v))],
                size: size(g.value(v).per_sample_len()),
            });
            packed_in.push(Some(i));
        } else {
            packed_in.push(None);
        }
    }
    let mut packed_out = vec![];
    for &o in g.outputs() {
        if wants(o) {
            let i = per_sample.len();
            per_sample.push(g.value(o).per_sample_len());
            lowered.dispatches.push(Dispatch {
                node: usize::MAX,
                kernel: Kernel::new(Family::Convert, "pack_f16", &[("WG", wg)]),
                bindings: vec![(3, Buf::Value(o)), (4, Buf::Packed(i))],
                size: size(g.value(o).per_sample_len()),
            });
            packed_out.push(Some(i));
        } else {
            packed_out.push(None);
        }
    }
    front.append(&mut lowered.dispatches);
    lowered.dispatches = front;
    Ok((packed_in, packed_out, per_sample))
}

fn names_of(g: &Graph, list: &[ValueId]) -> String {
    list.iter().map(|&v| g.value(v).name.as_str()).collect::<Vec<_>>().join(", ")
}

type MapResult = std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>;

fn map_read(buf: &wgpu::Buffer, bytes: u64) -> MapResult {
    let (tx, rx) = std::sync::mpsc::channel();
    buf.map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
        let _ = tx.send(r);
    });
    rx
}

fn read_mapped(dev: &DeviceInner, buf: &wgpu::Buffer, bytes: u64, rx: &MapResult, graph: &str) -> Result<Vec<u8>> {
    let ctx = || format!("reading the outputs of graph '{graph}'");
    rx.recv().map_err(|e| gpu_err(dev, ctx(), e))?.map_err(|e| gpu_err(dev, ctx(), e))?;
    let data = {
        let view = buf.get_mapped_range(0..bytes).map_err(|e| gpu_err(dev, ctx(), e))?;
        view.to_vec()
    };
    buf.unmap();
    Ok(data)
}

fn dims_str(d: &[usize]) -> String {
    d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}
