//! # poolpipe-planner
//!
//! The control plane's planner (PPipe's MILP, solved in pure Rust with microlp): from
//! per-block latency profiles, a fleet of GPU classes and a workload, it decides how each
//! model is cut into partitions, which pool of which GPU class serves each partition, with how
//! many (v)GPUs and at which batch size; with the NP and DART-r baselines.
//!
//! Status: empty. The planner is the subject of its own issue; nothing here pretends to plan.
//!
//! ## What it must never do
//! It is pure: data in (profiles, fleet, workload, SLOs, options), plan out (serde JSON). No
//! I/O besides reading and writing those files, no GPU, no network, no clock.
