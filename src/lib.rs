//! # poolpipe
//!
//! Pool-based pipeline-parallel serving of CNN video analytics on GPU fleets that mix vendors
//! and generations (after PPipe, USENIX ATC'25). This package is the `poolpipe` binary and the
//! library behind it; today it holds the command-line front ends of the engine:
//!
//! - [`bench`]: kernel benchmarks (`poolpipe bench kernels`), each measured against a naive
//!   baseline in the same run;
//! - [`run`]: one model (built-in or ONNX file) on one device (`poolpipe run`), checked
//!   against the CPU reference and/or onnxruntime ([`oracle`]);
//! - [`inspect`]: what a model holds, layer by layer (`poolpipe inspect`);
//! - [`profile`]: per-block latency profiles of a model on one device class, in the
//!   published PPipe format (`poolpipe profile`); [`classes`]: device class labels;
//! - [`plan`]: `poolpipe plan` and `poolpipe bench planner`, the front end of
//!   `poolpipe-planner` (tables, plan JSON, the 24 published cases);
//! - [`frames`]: images and tensor files as model inputs (resize, crop, normalisation presets);
//! - [`dataplane`]: the data-plane scheduler, a sans-IO state machine (queues, timelines of
//!   workers and NIC links, probe and reserve, the policy points);
//! - [`sim`]: the discrete-event simulator that drives the scheduler on a virtual clock;
//!   [`simulate`]: `poolpipe simulate` (runs and load-factor sweeps); [`paper`]: `poolpipe
//!   bench paper`, the paper's experiment; [`policybench`]: `poolpipe bench policies`, each
//!   WebAssembly policy against its native twin;
//! - [`servebench`]: `poolpipe bench serving`, the serving path under load on an embedded
//!   cluster (latency at concurrency 1, capacity, overload, profile correction).
//!
//! The cluster roles (controller, worker, frontend) arrive here with their issues; the engine,
//! planner, policies and transport live in their own crates (see ARCHITECTURE.md).
//!
//! ## What it must never do
//! No GPU code here: kernels and their execution belong to `poolpipe-engine`. The scheduler
//! never reads the wall clock, sleeps or does I/O: time comes with each event it is fed.

pub mod bench;
pub mod classes;
pub mod cluster;
pub mod dataplane;
pub mod demo;
pub mod frames;
pub mod inspect;
pub mod load;
pub mod netbench;
pub mod oracle;
pub mod paper;
pub mod plan;
pub mod policybench;
pub mod profile;
pub mod run;
pub mod serve;
pub mod servebench;
pub mod sim;
pub mod simulate;

/// A progress bar on stderr for `len` steps (hidden when stderr is not a terminal).
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg:<40} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
