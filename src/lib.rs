//! # poolpipe
//!
//! Pool-based pipeline-parallel serving of CNN video analytics on GPU fleets that mix vendors
//! and generations (after PPipe, USENIX ATC'25). This package is the `poolpipe` binary and the
//! library behind it:
//!
//! - [`commands`]: one module per command (`devices`, `run`, `inspect`, `profile`, `plan`,
//!   `simulate`, `certs`, `bench` with one module per benchmark, `worker`, `controller`,
//!   `frontend`, `serve`, `load`, `demo`); `main.rs` only parses and dispatches;
//! - [`serve`]: the serving roles, one folder each (controller, frontend with the HTTP API,
//!   worker);
//! - what commands and roles share: [`models`] (model loading, the partition file and
//!   fingerprint), [`frames`] (images and tensor files as model inputs), [`classes`] (device
//!   class labels), [`oracle`] (onnxruntime as a reference).
//!
//! The engine, planner, policies, data plane (scheduler, request state machine, simulator)
//! and transport live in their own crates (see ARCHITECTURE.md).
//!
//! ## What it must never do
//! No GPU code here: kernels and their execution belong to `poolpipe-engine`; no scheduling
//! decision either: those belong to `poolpipe-dataplane`, which reads no clock (its caller
//! passes the time with each event). Nothing under [`serve`] imports from [`commands`].

pub mod classes;
pub mod commands;
pub mod frames;
pub mod models;
pub mod oracle;
pub mod serve;

/// The host's monotonic clock in nanoseconds since its first read: what the simulator times
/// the scheduler with (`poolpipe_dataplane::sim::simulate_timed`; the data plane reads no clock
/// of its own).
pub fn host_ns() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
}

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
