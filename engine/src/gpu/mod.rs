//! The wgpu executor: adapters, devices, compilation of static graphs into compute
//! pipelines, runs, and models compiled once per input signature.
//!
//! Layers, as in wgpu itself: the graph is already validated ([`crate::GraphBuilder`]);
//! `lower` picks a kernel per node and computes its parameters (one file per op family);
//! `compiled` holds the thin wgpu calls (buffers, bind groups, dispatches, read-back);
//! `program` caches compiled graphs per input signature and runs host steps between them.

mod compiled;
mod device;
pub mod kernels;
mod lower;
mod program;

pub use compiled::{CompileOptions, CompiledGraph, ConstPool, RunTiming};
pub use device::{AdapterDescription, AdapterSelector, Device, KeyLimits, list_adapters};
pub use program::{CompiledModel, DEFAULT_CACHE_BYTES, ModelRun, RunStats};

pub(crate) use compiled::wire_precision;
pub(crate) use program::ExecCache;
