//! Compiled graphs: buffers, bind groups and pipelines created once for a static graph; runs
//! that only upload inputs, record dispatches and read outputs back.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wgpu::util::DeviceExt;

use super::device::{Device, DeviceInner};
use super::kernels::{Family, Kernel};
use super::lower::{Buf, Class, Dispatch, PARAM_WORDS, Words, class_of, device_words, lower};
use crate::boundary::{Boundary, Precision};
use crate::error::{EngineError, Result};
use crate::graph::{Graph, ValueId, ValueSource};
use crate::tensor::{DType, Tensor};

/// Device buffers of constants shared by the compiled graphs of one model (one graph per
/// batch size): a weight is uploaded once, whatever the batch. Keyed by the device, the
/// constant's name, length and content hash (a pool used with several devices keeps each
/// device's buffers apart).
#[derive(Clone, Default)]
pub struct ConstPool {
    /// Each buffer with the device it lives on: holding the device keeps its address, part
    /// of the key, from being reused by another device while the entry exists.
    buffers: Arc<Mutex<HashMap<ConstKey, PooledConst>>>,
}

/// A pooled constant: the device it lives on, and its buffer.
type PooledConst = (Arc<DeviceInner>, Arc<wgpu::Buffer>);

/// (device address, constant name, length, content hash).
type ConstKey = (usize, String, usize, u64);

impl std::fmt::Debug for ConstPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.buffers.lock().map(|b| b.len()).unwrap_or(0);
        f.debug_struct("ConstPool").field("buffers", &n).finish()
    }
}

impl ConstPool {
    fn get_or_upload(&self, dev: &Arc<DeviceInner>, name: &str, words: &[u32]) -> Arc<wgpu::Buffer> {
        // FNV-1a over the words: cheap, and a collision also needs the same name and length.
        let hash = words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &w| (h ^ w as u64).wrapping_mul(0x100_0000_01b3));
        let key = (Arc::as_ptr(dev) as usize, name.to_string(), words.len(), hash);
        let mut map = self.buffers.lock().expect("constant pool poisoned");
        map.entry(key).or_insert_with(|| (dev.clone(), Arc::new(upload(&dev.device, name, words)))).1.clone()
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.buffers.lock().map(|b| b.values().map(|(_, x)| x.size()).sum()).unwrap_or(0)
    }
}

fn upload(device: &wgpu::Device, name: &str, words: &[u32]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(name),
        contents: bytemuck::cast_slice(words),
        usage: wgpu::BufferUsages::STORAGE,
    })
}

/// How to compile a graph.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Fold batch norms and fuse activations first ([`crate::optimize`]).
    pub optimize: bool,
    /// Use the one-output-per-invocation baseline kernels for convolutions and Gemm (for
    /// benchmarks only).
    pub naive_kernels: bool,
    /// Invocations per workgroup of the 1-D kernels (default 64).
    pub workgroup_size: u32,
    /// Names of graph inputs and outputs exchanged as packed fp16 (boundary tensors between
    /// stages, see [`crate::boundary`]): inputs are unpacked and outputs packed by kernels on
    /// the device, so only half the bytes cross the bus. Other float tensors are exchanged as
    /// fp32, integer and bool ones as int32 words.
    pub f16_io: Vec<String>,
    /// Constant buffers shared with other graphs of the same model (see [`ConstPool`]).
    pub constants: Option<ConstPool>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { optimize: true, naive_kernels: false, workgroup_size: 64, f16_io: vec![], constants: None }
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

struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
}

/// Where a graph output comes from.
enum OutSource {
    /// A device buffer (computed, or an input passed through), read back.
    Buffer { slot: usize, staging: wgpu::Buffer },
    /// A constant known at compile time (taken from the graph).
    Constant,
}

/// A static graph compiled for one device.
pub struct CompiledGraph {
    dev: Arc<DeviceInner>,
    graph: Graph,
    slots: Vec<wgpu::Buffer>,
    slot_of: HashMap<ValueId, usize>,
    pipelines: Vec<Arc<wgpu::ComputePipeline>>,
    _params: wgpu::Buffer,
    _consts: Vec<Arc<wgpu::Buffer>>,
    bind_groups: Vec<wgpu::BindGroup>,
    workgroups: Vec<[u32; 2]>,
    outputs: Vec<OutSource>,
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
            .field("dispatches", &self.pipelines.len())
            .finish()
    }
}

fn gpu_err(dev: &DeviceInner, context: impl Into<String>, e: impl std::fmt::Display) -> EngineError {
    EngineError::Gpu { device: dev.info.name.clone(), context: context.into(), message: e.to_string() }
}

impl Device {
    /// Compiles a static graph (or a node range of one, see [`Graph::slice_nodes`]) for this
    /// device.
    pub fn compile(&self, graph: &Graph, opts: &CompileOptions) -> Result<CompiledGraph> {
        CompiledGraph::new(self.inner.clone(), graph, opts)
    }
}

/// Bytes of a value's device buffer (32-bit words, at least 16 bytes).
fn bytes_of(g: &Graph, v: ValueId) -> u64 {
    ((g.value(v).numel() * 4) as u64).div_ceil(16).max(1) * 16
}

impl CompiledGraph {
    fn new(dev: Arc<DeviceInner>, graph: &Graph, opts: &CompileOptions) -> Result<Self> {
        let wg = opts.workgroup_size.clamp(1, dev.limits.max_compute_invocations_per_workgroup);
        let g = if opts.optimize { crate::optimize(graph)? } else { graph.clone() };
        let max_binding = dev.limits.max_buffer_size.min(dev.limits.max_storage_buffer_binding_size);
        let mut lowered = lower(&g, opts.naive_kernels, wg, max_binding)?;
        let (packed_in, packed_out, packed_len) = add_f16_conversions(&g, &mut lowered, &opts.f16_io, wg)?;
        let device = &dev.device;
        let root = |v: ValueId| *lowered.alias.get(&v).unwrap_or(&v);

        // Liveness of every buffer-owning value: first and last node that touches it.
        let mut last: HashMap<ValueId, usize> = HashMap::new();
        for (i, node) in g.nodes().iter().enumerate() {
            for &v in node.inputs.iter().chain(&node.outputs) {
                if g.value(v).is_activation() {
                    let e = last.entry(root(v)).or_insert(i);
                    *e = (*e).max(i);
                }
            }
        }
        for &o in g.outputs() {
            if g.value(o).is_activation() {
                last.insert(root(o), usize::MAX);
            }
        }
        for &i in g.inputs() {
            last.entry(root(i)).or_insert(usize::MAX);
        }
        // Greedy slot assignment in node order: a slot is reused once its value is dead.
        let mut slot_size: Vec<u64> = vec![];
        let mut slot_owner: Vec<(String, String)> = vec![]; // (node, tensor) of the largest value
        let mut slot_of: HashMap<ValueId, usize> = HashMap::new();
        let mut live: Vec<(usize, ValueId)> = vec![];
        let mut free: Vec<usize> = vec![];
        let mut assign = |v: ValueId, node: &str, free: &mut Vec<usize>, live: &mut Vec<(usize, ValueId)>| {
            let need = bytes_of(&g, v);
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
                if last.get(&v).is_some_and(|&l| l < i) {
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
        let limit = max_binding;
        let too_large = |node: String, tensor: String, bytes: u64| EngineError::TensorTooLarge {
            node,
            tensor,
            bytes,
            device: dev.info.name.clone(),
            limit,
        };
        for (s, &size) in slot_size.iter().enumerate() {
            if size > limit {
                return Err(too_large(slot_owner[s].0.clone(), slot_owner[s].1.clone(), size));
            }
        }
        for (name, data) in &lowered.consts {
            let size = (data.len() * 4) as u64;
            if size > limit {
                return Err(too_large(name.split('.').next().unwrap_or(name).to_string(), name.clone(), size));
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
        let consts: Vec<Arc<wgpu::Buffer>> = lowered
            .consts
            .iter()
            .map(|(name, data)| match &opts.constants {
                Some(pool) => pool.get_or_upload(&dev, name, data),
                None => Arc::new(upload(device, name, data)),
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
        let packed: Vec<wgpu::Buffer> = packed_len
            .iter()
            .map(|&n| {
                let words = n.div_ceil(2) as u64;
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("packed fp16 boundary"),
                    size: ((words * 4).div_ceil(16) * 16).max(16),
                    usage,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let outputs: Vec<OutSource> = g
            .outputs()
            .iter()
            .map(|&o| match &g.value(o).source {
                ValueSource::Constant(_) => OutSource::Constant,
                _ => OutSource::Buffer {
                    slot: slot_of[&o],
                    staging: device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(&format!("read-back {}", g.value(o).name)),
                        size: bytes_of(&g, o),
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    }),
                },
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
        let n = lowered.dispatches.len().max(1);
        let mut words = vec![0u32; n * PARAM_WORDS];
        let mut workgroups = vec![];
        for (i, d) in lowered.dispatches.iter().enumerate() {
            words[i * PARAM_WORDS..(i + 1) * PARAM_WORDS].copy_from_slice(&d.params);
            let groups = d.groups;
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
            label: Some("params"),
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
                what: format!("graph '{}' ({e})", g.name),
            });
        }
        if let Some(e) = verr {
            return Err(gpu_err(&dev, format!("compiling graph '{}'", g.name), e));
        }
        let arena_bytes = slot_size.iter().sum();
        let const_bytes = consts.iter().map(|b| b.size()).sum();
        tracing::debug!(
            graph = %g.name, dispatches = pipelines.len(), slots = slots.len(), arena_bytes, const_bytes,
            "compiled"
        );
        Ok(CompiledGraph {
            dev,
            graph: g,
            slots,
            slot_of,
            pipelines,
            _params: params,
            _consts: consts,
            bind_groups,
            workgroups,
            outputs,
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

    /// The precision each graph input is exchanged in: fp16 for those in
    /// [`CompileOptions::f16_io`], fp32 for other floats, int32 words for integers and bools.
    pub fn input_precisions(&self) -> Vec<Precision> {
        let g = &self.graph;
        g.inputs().iter().zip(&self.packed_in).map(|(&v, p)| wire_precision(g.value(v).dtype, p.is_some())).collect()
    }

    /// The precision each graph output is exchanged in.
    pub fn output_precisions(&self) -> Vec<Precision> {
        let g = &self.graph;
        g.outputs().iter().zip(&self.packed_out).map(|(&v, p)| wire_precision(g.value(v).dtype, p.is_some())).collect()
    }

    fn input_error(&self, input: &str, reason: String) -> EngineError {
        EngineError::Input { graph: self.graph.name.clone(), input: input.to_string(), reason }
    }

    fn check_shapes(&self, shapes: &[&[usize]]) -> Result<()> {
        let g = &self.graph;
        if shapes.len() != g.inputs().len() {
            let names: Vec<String> = g.inputs().iter().map(|&i| g.value(i).name.clone()).collect();
            return Err(self.input_error(
                &names.join(", "),
                format!("expected {} input tensors, got {}", g.inputs().len(), shapes.len()),
            ));
        }
        for (&s, &v) in shapes.iter().zip(g.inputs()) {
            let val = g.value(v);
            if s != val.shape.as_slice() {
                return Err(self.input_error(&val.name, format!("expected shape {:?}, got {s:?}", val.shape)));
            }
        }
        Ok(())
    }

    /// Runs the graph: `inputs` in the order of the graph's inputs, each of the graph's type
    /// and shape.
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_timed(inputs).map(|(o, _)| o)
    }

    /// Runs the graph and reports how long it took (GPU time when timestamps are available).
    /// Inputs and outputs exchanged as fp16 are rounded to fp16 on the way (on the CPU for
    /// inputs, on the device for outputs).
    pub fn run_timed(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, RunTiming)> {
        self.run_borrowed(inputs)
    }

    /// [`Self::run_timed`] on tensors owned or borrowed (as the model runner holds them).
    pub(crate) fn run_borrowed<T: Borrow<Tensor>>(&mut self, inputs: &[T]) -> Result<(Vec<Tensor>, RunTiming)> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.borrow().shape()).collect();
        self.check_shapes(&shapes)?;
        let g = &self.graph;
        let mut bytes: Vec<Cow<[u8]>> = vec![];
        for ((t, &v), p) in inputs.iter().zip(g.inputs()).zip(&self.packed_in) {
            let t = t.borrow();
            let val = g.value(v);
            if t.dtype() != val.dtype {
                return Err(
                    self.input_error(&val.name, format!("expected element type {}, got {}", val.dtype, t.dtype()))
                );
            }
            bytes.push(match (p, t.as_f32()) {
                (Some(_), _) => Cow::Owned(Boundary::from_tensor(&val.name, t, Precision::F16).bytes),
                // f32 values are the device words as they are.
                (None, Some(v)) => Cow::Borrowed(bytemuck::cast_slice(v)),
                (None, None) => {
                    let w = device_words(t, &val.name).map_err(|e| self.input_error(&val.name, e))?;
                    Cow::Owned(bytemuck::cast_slice(&w).to_vec())
                }
            });
        }
        let (raw, timing) = self.execute(&bytes)?;
        let g = &self.graph;
        let mut outputs = vec![];
        for ((bytes, &o), p) in raw.into_iter().zip(g.outputs()).zip(&self.packed_out) {
            let val = g.value(o);
            outputs.push(match bytes {
                None => val.constant().expect("constant output").as_ref().clone(),
                Some(bytes) => {
                    let wire = Boundary {
                        name: val.name.clone(),
                        shape: val.shape.clone(),
                        precision: wire_precision(val.dtype, p.is_some()),
                        bytes,
                    };
                    wire.to_tensor_as(val.dtype)?
                }
            });
        }
        Ok((outputs, timing))
    }

    /// Runs the graph on tensors in their wire form (what a stage receives from the previous
    /// one), in the order of the graph's inputs, each in the precision the graph was compiled
    /// to take ([`Self::input_precisions`]); returns the outputs in wire form, fp16 ones as
    /// the device packed them. The bytes are uploaded and read back as they are: no
    /// conversion on the CPU.
    pub fn run_boundary(&mut self, inputs: &[Boundary]) -> Result<(Vec<Boundary>, RunTiming)> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
        self.check_shapes(&shapes)?;
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
        let bytes: Vec<Cow<[u8]>> = inputs.iter().map(|t| Cow::Borrowed(t.bytes.as_slice())).collect();
        let (raw, timing) = self.execute(&bytes)?;
        let g = &self.graph;
        let outs = raw
            .into_iter()
            .zip(g.outputs())
            .zip(self.output_precisions())
            .map(|((bytes, &o), precision)| {
                let val = g.value(o);
                match bytes {
                    Some(bytes) => Boundary { name: val.name.clone(), shape: val.shape.clone(), precision, bytes },
                    None => Boundary::from_tensor(&val.name, val.constant().expect("constant output"), precision),
                }
            })
            .collect();
        Ok((outs, timing))
    }

    /// Uploads the inputs' bytes, runs every dispatch and reads the outputs' bytes back
    /// (None for constant outputs; fp16 outputs: exactly 2 bytes an element).
    fn execute(&mut self, inputs: &[Cow<[u8]>]) -> Result<(Vec<Option<Vec<u8>>>, RunTiming)> {
        let start = Instant::now();
        let dev = &self.dev;
        let g = &self.graph;
        for (k, (bytes, &v)) in inputs.iter().zip(g.inputs()).enumerate() {
            if bytes.is_empty() {
                continue;
            }
            let target = match self.packed_in[k] {
                Some(i) => &self.packed[i],
                None => &self.slots[self.slot_of[&v]],
            };
            if bytes.len() % 4 == 0 {
                dev.queue.write_buffer(target, 0, bytes);
            } else {
                // Buffer writes go in whole words: pad an odd fp16 count with a zero half.
                let mut padded = bytes.to_vec();
                padded.resize(bytes.len().next_multiple_of(4), 0);
                dev.queue.write_buffer(target, 0, &padded);
            }
        }
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
                let [x, y] = self.workgroups[i];
                if x == 0 {
                    continue;
                }
                pass.set_pipeline(p);
                pass.set_bind_group(0, &self.bind_groups[i], &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
        if let Some(t) = &self.timestamps {
            enc.resolve_query_set(&t.set, 0..2, &t.resolve, 0);
            enc.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, 16);
        }
        // (bytes to read, bytes that are the tensor) per output read back.
        let mut sizes = vec![];
        for (k, (&o, src)) in g.outputs().iter().zip(&self.outputs).enumerate() {
            let OutSource::Buffer { slot, staging } = src else {
                sizes.push(None);
                continue;
            };
            let n = g.value(o).numel() as u64;
            let (buf, copy, used) = match self.packed_out[k] {
                Some(i) => (&self.packed[i], n.div_ceil(2) * 4, n * 2),
                None => (&self.slots[*slot], n * 4, n * 4),
            };
            if copy > 0 {
                enc.copy_buffer_to_buffer(buf, 0, staging, 0, copy);
            }
            sizes.push(Some((copy, used)));
        }
        dev.queue.submit([enc.finish()]);

        let mut maps = vec![];
        for (src, size) in self.outputs.iter().zip(&sizes) {
            maps.push(match (src, size) {
                (OutSource::Buffer { staging, .. }, Some((copy, _))) if *copy > 0 => Some(map_read(staging, *copy)),
                _ => None,
            });
        }
        let ts_map = self.timestamps.as_ref().map(|t| map_read(&t.readback, 16));
        dev.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| gpu_err(dev, format!("running graph '{}'", g.name), e))?;
        if let Some(e) = dev.take_uncaptured() {
            return Err(gpu_err(dev, format!("running graph '{}'", g.name), e));
        }
        let mut outputs = vec![];
        for ((src, size), rx) in self.outputs.iter().zip(&sizes).zip(&maps) {
            outputs.push(match (src, size, rx) {
                (OutSource::Buffer { staging, .. }, Some((copy, used)), Some(rx)) => {
                    let mut data = read_mapped(dev, staging, *copy, rx, &g.name)?;
                    data.truncate(*used as usize);
                    Some(data)
                }
                (OutSource::Buffer { .. }, _, _) => Some(vec![]),
                (OutSource::Constant, _, _) => None,
            });
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

/// The wire precision of a tensor of type `dtype`.
pub(crate) fn wire_precision(dtype: DType, packed: bool) -> Precision {
    match class_of(dtype) {
        Class::Int => Precision::I32,
        Class::Float if packed => Precision::F16,
        Class::Float => Precision::F32,
    }
}

/// Adds the fp16 unpack dispatches (before everything) and pack dispatches (after
/// everything) for the graph inputs and outputs named in `names` (float, non-constant ones).
/// Returns, per input and per output, the index of its packed buffer, and each packed
/// buffer's element count.
#[allow(clippy::type_complexity)]
fn add_f16_conversions(
    g: &Graph,
    lowered: &mut super::lower::Lowered,
    names: &[String],
    wg: u32,
) -> Result<(Vec<Option<usize>>, Vec<Option<usize>>, Vec<usize>)> {
    let mut lens = vec![];
    let find = |name: &str, list: &[ValueId]| list.iter().position(|&v| g.value(v).name == name);
    for name in names {
        let v =
            find(name, g.inputs()).map(|i| g.inputs()[i]).or_else(|| find(name, g.outputs()).map(|i| g.outputs()[i]));
        let Some(v) = v else {
            return Err(EngineError::InvalidGraph {
                graph: g.name.clone(),
                reason: format!(
                    "'{name}' is to be exchanged as fp16 but is neither an input nor an output of the graph; inputs: {}; outputs: {}",
                    names_of(g, g.inputs()),
                    names_of(g, g.outputs())
                ),
            });
        };
        if !g.value(v).dtype.is_float() {
            return Err(EngineError::InvalidGraph {
                graph: g.name.clone(),
                reason: format!("'{name}' is a {} tensor; only float tensors are exchanged as fp16", g.value(v).dtype),
            });
        }
    }
    let wants = |v: ValueId| names.iter().any(|n| *n == g.value(v).name) && g.value(v).is_activation();
    let params = |n: usize| Words::new().u(0, n).done();
    let groups = |n: usize| n.div_ceil(2).div_ceil(wg as usize) as u64;
    let mut front = vec![];
    let mut packed_in = vec![];
    for &v in g.inputs() {
        if wants(v) {
            let i = lens.len();
            let n = g.value(v).numel();
            lens.push(n);
            front.push(Dispatch {
                node: usize::MAX,
                kernel: Kernel::new(Family::Convert, "unpack_f16", &[("WG", wg)]),
                bindings: vec![(1, Buf::Packed(i)), (2, Buf::Value(v))],
                groups: groups(n),
                params: params(n),
            });
            packed_in.push(Some(i));
        } else {
            packed_in.push(None);
        }
    }
    let mut packed_out = vec![];
    for &o in g.outputs() {
        if wants(o) {
            let i = lens.len();
            let n = g.value(o).numel();
            lens.push(n);
            lowered.dispatches.push(Dispatch {
                node: usize::MAX,
                kernel: Kernel::new(Family::Convert, "pack_f16", &[("WG", wg)]),
                bindings: vec![(3, Buf::Value(o)), (4, Buf::Packed(i))],
                groups: groups(n),
                params: params(n),
            });
            packed_out.push(Some(i));
        } else {
            packed_out.push(None);
        }
    }
    front.append(&mut lowered.dispatches);
    lowered.dispatches = front;
    Ok((packed_in, packed_out, lens))
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
