//! # poolpipe-engine
//!
//! Runs CNN models on any GPU that wgpu reaches (Vulkan, Metal, DX12, GL), and on CPU-only
//! machines through Mesa's lavapipe. It holds:
//!
//! - typed tensors ([`Tensor`], [`DType`]: float32/16/64, bfloat16, integers, bool);
//! - models ([`Model`], [`model`]): what a user loads, specialised for the input shapes it
//!   runs with into fully static graphs (the batch an ordinary dimension, computed shapes
//!   evaluated, constants folded), with host steps for operations whose output shape depends
//!   on the data;
//! - the graph IR ([`Graph`], [`GraphBuilder`], [`Op`]): operations with ONNX semantics, one
//!   file per op family, every type and shape checked when the graph is built;
//! - graph rewrites ([`optimize`]): batch norm folded into the preceding convolution,
//!   activations fused into the write-back of convolutions and matrix products;
//! - a CPU reference executor ([`reference::run`], [`reference::run_model`]) in plain Rust:
//!   slow, simple, the oracle of every kernel test, the constant folder and the host
//!   executor;
//! - ONNX import ([`onnx::load`]): real models as users export them (opsets 7 to 28),
//!   checked against onnxruntime and ONNX's node cases in the tests; [`onnx::summarize`]
//!   reads a file's structure without importing;
//! - tensor files ([`npy`]): `.npy` and `.npz` read and written, every element type;
//! - pre-partitioning ([`partition`]): M contiguous blocks balanced across device classes
//!   with the fewest bytes crossing the cuts;
//! - pipeline stages ([`stage`]): any block range as a graph of its own, its boundary
//!   tensors exchanged as fp16 (packed on the device, [`boundary`]), fp32 or int32;
//! - profiling ([`profile`]): node, block and whole-model latencies at every batch size,
//!   with k copies sharing the device for a share of 1/k (median after warm-up);
//! - built-in model builders ([`models`]) with seeded random weights;
//! - the wgpu executor ([`gpu`]): adapter listing and selection, compilation of a static
//!   graph (or a node range of one, [`Graph::slice_nodes`]) into compute pipelines, runs, and
//!   [`gpu::CompiledModel`]: a model compiled once per input signature it runs with.
//!
//! The WGSL kernels live in the workspace's `shaders/` folder, one file per op family,
//! specialised by override constants and uniforms only.
//!
//! ```no_run
//! use poolpipe_engine::{gpu, GraphBuilder, ConvAttrs, Tensor, Rng};
//! let mut rng = Rng::new(7);
//! let mut g = GraphBuilder::new("demo");
//! let x = g.input("x", &[2, 3, 16, 16]);
//! let w = g.constant("w", Tensor::random(vec![8, 3, 3, 3], &mut rng, -0.5, 0.5));
//! let y = g.conv("conv", x, w, None, ConvAttrs { pads: vec![1; 4], ..Default::default() })?;
//! g.output(y);
//! let graph = g.build()?;
//! let device = gpu::Device::open(&gpu::AdapterSelector::Default)?;
//! let mut compiled = device.compile(&graph, &gpu::CompileOptions::default())?;
//! let input = Tensor::random(vec![2, 3, 16, 16], &mut rng, -1.0, 1.0);
//! let out = compiled.run(&[input])?;
//! assert_eq!(out[0].shape(), &[2, 8, 16, 16]);
//! # Ok::<(), poolpipe_engine::EngineError>(())
//! ```
//!
//! ## What it must never do
//! It knows nothing of networking, plans, policies or clusters: it loads models, compiles
//! them for a device, runs and profiles them. It never panics on bad input: malformed
//! models, unsupported operations or attributes, inputs of the wrong shape or type, values
//! outside what the device computes in, and device errors are [`EngineError`]s that name the
//! node, tensor or device concerned. It never reads files other than those it is asked to
//! load.

mod error;
mod graph;
mod half;
mod ops;
mod optimize;
mod tensor;

pub mod boundary;
pub mod gpu;
pub mod model;
pub mod models;
pub mod npy;
pub mod onnx;
pub mod partition;
pub mod profile;
pub mod reference;
pub mod stage;

pub use error::{EngineError, Result};
pub use graph::{Graph, GraphBuilder, Node, Value, ValueId, ValueSource};
pub use half::round_f16;
pub use model::{Model, Segment, Signature};
pub use ops::*;
pub use optimize::optimize;
pub use tensor::{DType, Rng, Tensor, numel, strides};
