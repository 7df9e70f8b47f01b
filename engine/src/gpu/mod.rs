//! The wgpu executor: adapters, devices, compilation of graphs into compute pipelines, runs.
//!
//! Layers, as in wgpu itself: the graph is already validated ([`crate::GraphBuilder`]);
//! `lower` picks a kernel per node and computes its parameters for every batch size;
//! `compiled` holds the thin wgpu calls (buffers, bind groups, dispatches, read-back).

mod compiled;
mod device;
pub mod kernels;
mod lower;

pub use compiled::{CompileOptions, CompiledGraph, RunTiming};
pub use device::{AdapterDescription, AdapterSelector, Device, KeyLimits, list_adapters};
