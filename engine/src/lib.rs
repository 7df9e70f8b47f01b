//! # poolpipe-engine
//!
//! Runs CNN graphs on any GPU that wgpu reaches (Vulkan, Metal, DX12, GL), and on CPU-only
//! machines through Mesa's lavapipe. It holds:
//!
//! - the graph IR ([`Graph`], [`GraphBuilder`], [`Op`]): CNN operations with every shape
//!   checked when the graph is built; activations carry a batch chosen at run time;
//! - graph rewrites ([`optimize`]): batch norm folded into the preceding convolution,
//!   activations fused into the write-back of convolutions and matrix products;
//! - a CPU reference executor ([`reference::run`]) in plain Rust: slow, simple, the oracle of
//!   every kernel test;
//! - ONNX import ([`onnx::load`]): real models as users export them, checked against
//!   onnxruntime in the tests; [`onnx::summarize`] reads a file's structure without importing;
//! - tensor files ([`npy`]): `.npy` and `.npz` read and written;
//! - pre-partitioning ([`partition`]): M contiguous blocks balanced across device classes
//!   with the fewest bytes crossing the cuts;
//! - pipeline stages ([`stage`]): any block range as a graph of its own, its boundary
//!   tensors exchanged as fp16 (packed on the device, [`boundary`]) or fp32;
//! - profiling ([`profile`]): node, block and whole-graph latencies at every batch size,
//!   with k copies sharing the device for a share of 1/k (median after warm-up);
//! - built-in model builders ([`models`]) with seeded random weights;
//! - the wgpu executor ([`gpu`]): adapter listing and selection, compilation of a graph (or a
//!   contiguous node range of it, [`Graph::slice_nodes`]) into compute pipelines with a
//!   buffer arena sized once for the largest batch, and runs on a batch.
//!
//! The WGSL kernels live in the workspace's `shaders/` folder, one file per op family,
//! specialised by override constants and uniforms only.
//!
//! ```no_run
//! use poolpipe_engine::{gpu, GraphBuilder, ConvAttrs, Tensor, Rng};
//! let mut rng = Rng::new(7);
//! let mut g = GraphBuilder::new("demo");
//! let x = g.input("x", &[3, 16, 16]);
//! let w = g.constant("w", Tensor::random(vec![8, 3, 3, 3], &mut rng, -0.5, 0.5));
//! let y = g.conv("conv", x, w, None, ConvAttrs { pads: [1; 4], ..Default::default() })?;
//! g.output(y);
//! let graph = g.build()?;
//! let device = gpu::Device::open(&gpu::AdapterSelector::Default)?;
//! let mut compiled = device.compile(&graph, &gpu::CompileOptions { max_batch: 4, ..Default::default() })?;
//! let input = Tensor::random(vec![2, 3, 16, 16], &mut rng, -1.0, 1.0);
//! let out = compiled.run(&[input])?;
//! assert_eq!(out[0].shape(), &[2, 8, 16, 16]);
//! # Ok::<(), poolpipe_engine::EngineError>(())
//! ```
//!
//! ## What it must never do
//! It knows nothing of networking, plans, policies or clusters: it loads graphs, compiles
//! them for a device, runs and profiles them. It never panics on bad input: malformed graphs,
//! unsupported attributes, oversized batches and device errors are [`EngineError`]s that name
//! the node, tensor or device concerned. It never reads files other than those it is asked to
//! load.

mod error;
mod graph;
mod ops;
mod optimize;
mod tensor;

pub mod boundary;
pub mod gpu;
pub mod models;
pub mod npy;
pub mod onnx;
pub mod partition;
pub mod profile;
pub mod reference;
pub mod stage;

pub use error::{EngineError, Result};
pub use graph::{Graph, GraphBuilder, Node, Value, ValueId, ValueSource};
pub use ops::*;
pub use optimize::optimize;
pub use tensor::{Rng, Tensor, numel, strides};
