//! # poolpipe-policies
//!
//! The wasmtime host for scheduling policies: batching policies (what to dispatch, when, at
//! which batch size, what to drop) and reservation policies (which worker of a pool takes a
//! stage) loaded as WebAssembly modules, so operators swap them without recompiling; plus the
//! built-in guests and the ABI they implement.
//!
//! Status: empty. Policies are the subject of their own issue; nothing here pretends to run
//! one.
//!
//! ## What it must never do
//! A policy that traps, runs past its time budget or asks for too much memory is unloaded and
//! the scheduler falls back to its native policy, with an error logged; it never takes the
//! process down. The host never gives a guest access to files, sockets or the wall clock.
