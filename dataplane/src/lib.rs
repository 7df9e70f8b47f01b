//! # poolpipe-dataplane
//!
//! The data plane of poolpipe as state machines without I/O, after quinn-proto: fed events
//! with their timestamps (microseconds on the caller's clock), they return actions. The
//! server drives them on a real clock, the simulator on a virtual one, tests with scripted
//! events, so all three run the same code.
//!
//! - [`scheduler`]: queues per model, [`Timeline`]s of workers and NIC links, probe and
//!   reserve, admission and the policy points (PPIPE.md, data plane);
//! - [`front`]: the frontend's request state machine (multi-frame requests as samples,
//!   deadlines, retries, plan generations and drains) over the plans' schedulers;
//! - [`correction`]: online correction of the profiles from workers' measured batch times,
//!   and of the waits from how late the batches that queued ended;
//! - [`layout`]: a plan placed on a fleet, as the scheduler sees it;
//! - [`catalog`]: the one place that turns policy names (native or WebAssembly) into
//!   schedulers;
//! - [`sim`]: the discrete-event simulator (`poolpipe simulate`, `poolpipe bench paper`);
//! - [`stats`]: the one percentile the project reports with; [`rng`]: the one seeded random
//!   source (simulator arrivals and jitter, `poolpipe load`'s arrivals and tensors).
//!
//! ## What it must never do
//! Read a clock, sleep, spawn a thread or task, or touch a socket: time comes with each event
//! and I/O is the caller's. Its dependencies hold no async runtime, network stack or HTTP
//! server (tests/no_io.rs checks Cargo.toml and the sources). It must never lose a request:
//! every request fed in ends in exactly one answer (outputs, a drop or a refusal).

pub mod catalog;
pub mod correction;
pub mod front;
pub mod layout;
pub mod rng;
pub mod scheduler;
pub mod sim;
pub mod stats;
pub mod timeline;

pub use catalog::{CatalogError, Policies, PolicySpec};
pub use correction::{Corrections, WorkerCorrection};
pub use front::{Action, Failure, Front, FrontStats, HopTiming};
pub use layout::Layout;
pub use scheduler::*;
pub use timeline::{Timeline, earliest_joint};
