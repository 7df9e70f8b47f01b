//! # poolpipe-policies
//!
//! Scheduling policies of the data plane and the interface they decide through. The scheduler
//! (`poolpipe::dataplane`) asks two policy points:
//!
//! - a **batching policy** ([`BatchingPolicy`]): for one queue of requests, what to do now:
//!   dispatch a batch of the first `n` requests on a lane, wait until a time, drop requests
//!   from the head, or nothing until the next event;
//! - a **reservation policy** ([`ReservationPolicy`]): which worker of a pool takes one stage
//!   of a batch, given every candidate's earliest transfer and inference slots.
//!
//! Both see only plain data: the queue through [`QueueHost`] (lengths, arrival and deadline
//! times, lanes with their planned batch sizes, `probe`, the clock) and the candidates as a
//! slice of [`Candidate`]. That is what lets the same decisions come from a WebAssembly module
//! (the ABI mirrors these calls one to one) or from the native policies of [`native`]:
//! `ppipe` (reservation-based adaptive batching, PPIPE.md), `reactive` (per-pool batching
//! without reservations) and `triton` (per-pool dynamic batching with a maximum queue delay),
//! and the default reservation policy, earliest finish.
//!
//! ```
//! use poolpipe_policies::{Candidate, ReservationPolicy, native::EarliestFinish};
//! let c = |worker, finish| Candidate {
//!     worker, transfer_start: 0.0, transfer_end: 0.0, start: 0.0, finish, output_ready: finish, same_server: false,
//! };
//! let mut policy = EarliestFinish;
//! assert_eq!(policy.choose(&[c(0, 9.0), c(1, 4.0), c(2, 4.0)]), Ok(1));
//! ```
//!
//! Times are microseconds on the clock the scheduler is handed, as `f64`.
//!
//! [`wasm`] runs policies written as WebAssembly modules (ABI v2, and v1 modules as they are;
//! `policies/ABI.md`, C header
//! `policies/include/poolpipe_policy.h`) under a sandbox; [`guests`] embeds the built-in
//! guests (the native policies written again in C, plus `same_server`, a reservation policy
//! that keeps consecutive stages on one server when that costs no time).
//!
//! ## What it must never do
//! A policy never reads the wall clock, files or sockets: everything it knows comes through
//! its host (the only clock here is the sandbox's deadline ticker, which stops runaway guests
//! and never feeds a decision). A guest that traps, runs past its deadline, asks for too much
//! memory or breaks the ABI gets a [`PolicyFailure`]; it never takes the process down. A guest
//! is also held to a liveness rule by the scheduler ([`BatchingPolicy::sandboxed`]): leaving
//! the head of a queue undecided past its deadline (by the SLO, at most 1 s), or waiting beyond
//! it, fails it like a trap.

pub mod guests;
pub mod native;
pub mod wasm;

/// How a batching policy moves batches through a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// The whole route (one worker per stage, transfers included) is reserved when the batch
    /// is dispatched; later stages do not re-batch (PPIPE.md).
    Reserved,
    /// Each pool batches its own queue: a dispatch takes one stage on one worker, and the
    /// requests then wait in the next stage's queue (Nexus- and Triton-style serving).
    PerPool,
}

/// What a batching policy wants done with its queue now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Dispatch the first `batch` requests of the queue on `lane`.
    Dispatch {
        /// Lane index (`0..QueueHost::lanes()`).
        lane: usize,
        /// Requests in the batch, `1..=queue_len`.
        batch: usize,
    },
    /// Ask again at `until` (a timer) or at the next arrival, whichever comes first.
    Wait {
        /// Clock time of the timer, microseconds.
        until: f64,
    },
    /// Drop the first `count` requests: they cannot meet their deadline.
    Drop {
        /// Requests to drop, `1..=queue_len`.
        count: usize,
    },
    /// Nothing to do until the next event (an arrival, or a worker of a lane becoming free).
    Idle,
}

/// The result of probing a lane at a batch size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    /// When the batch would leave the lane's last stage (reserved routing) or the lane's stage
    /// (per-pool routing), microseconds.
    pub finish: f64,
    /// Time the batch would spend waiting for workers and links on the way: `finish - now`
    /// minus the pure compute and transfer time.
    pub wait: f64,
}

/// One worker that could take a stage of a batch, with its earliest slots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Index of the worker within its pool (the stage's workers, in plan order).
    pub worker: u32,
    /// Start of the transfer of the batch's input tensors to this worker (equal to
    /// `transfer_end` when nothing crosses a NIC).
    pub transfer_start: f64,
    /// End of that transfer.
    pub transfer_end: f64,
    /// Start of the inference.
    pub start: f64,
    /// End of the inference.
    pub finish: f64,
    /// When the stage's output could have left the worker's server (ABI v2): the end of the
    /// earliest slot on its server's uplink after `finish` for the next stage's input
    /// transfer; `finish` itself for a route's last stage or when the next stage has a worker
    /// on the same server (no NIC crossed).
    pub output_ready: f64,
    /// Whether this worker sits on the same server as the previous stage's worker.
    pub same_server: bool,
}

/// What a batching policy may ask about its queue and its lanes. The scheduler implements it;
/// for a WebAssembly policy the same calls are the host imports.
///
/// Requests are indexed from the head (`0`), in deadline order.
pub trait QueueHost {
    /// The current time, microseconds.
    fn now(&self) -> f64;
    /// Requests waiting in this queue.
    fn queue_len(&self) -> usize;
    /// When request `i` entered the system.
    fn arrival(&self, i: usize) -> f64;
    /// When request `i` entered this queue (later than `arrival` in a per-pool stage queue).
    fn enqueued(&self, i: usize) -> f64;
    /// Deadline of request `i` (arrival + SLO).
    fn deadline(&self, i: usize) -> f64;
    /// Whether this is the first time a policy looks at the current head; marks it looked.
    fn first_look(&mut self) -> bool;
    /// Lanes this queue feeds: the model's pipelines for a model's queue, one lane (the next
    /// stage) for a per-pool stage queue.
    fn lanes(&self) -> usize;
    /// Batch size the plan gives a lane.
    fn planned_batch(&self, lane: usize) -> usize;
    /// The plan's estimate of the time to build a batch on a lane, microseconds.
    fn batch_build(&self, lane: usize) -> f64;
    /// Compute and transfer time of a batch from this queue to the end of the pipeline,
    /// without any waiting, microseconds (each stage at its fastest worker's speed, as
    /// corrected by measured times).
    fn latency(&self, lane: usize, batch: usize) -> f64;
    /// Workers of the lane's (first) stage that are free now.
    fn idle_workers(&self, lane: usize) -> usize;
    /// Earliest finish of a batch of `batch` requests on `lane` if dispatched now. Batches
    /// above the lane's profiled maximum probe as infinitely late.
    fn probe(&mut self, lane: usize, batch: usize) -> Probe;
    /// Requests per second that entered this queue over the last second (ABI v2): the load
    /// the queue sees.
    fn arrival_rate(&self) -> f64;
    /// Requests per second the lane sustains with every worker busy on batches of `batch`
    /// (its slowest stage, by the profiles as corrected by measured times; ABI v2). 0 for a
    /// batch size the lane has no profile for.
    fn throughput(&self, lane: usize, batch: usize) -> f64;
}

/// Why a policy could not decide (it trapped, ran past its deadline, asked for too much
/// memory, or broke the ABI). The scheduler unloads the policy and falls back to a native one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyFailure(pub String);

/// A batching policy: what to do with one queue now.
pub trait BatchingPolicy: Send {
    /// The policy's name (for logs and reports).
    fn name(&self) -> &str;
    /// How its batches move through a pipeline.
    fn routing(&self) -> Routing;
    /// One decision. The scheduler applies it and asks again until the policy waits or idles;
    /// it does not ask about an empty queue (that decision is always idle).
    fn decide(&mut self, host: &mut dyn QueueHost) -> Result<Action, PolicyFailure>;
    /// Whether the policy is untrusted code (a WebAssembly guest): the scheduler then holds it
    /// to the liveness rule (a request left undecided, or waited for, past its deadline fails
    /// the policy, which the native twin replaces).
    fn sandboxed(&self) -> bool {
        false
    }
}

/// A reservation policy: which candidate takes a stage.
pub trait ReservationPolicy: Send {
    /// The policy's name.
    fn name(&self) -> &str;
    /// Index into `candidates` (never empty) of the chosen worker.
    fn choose(&mut self, candidates: &[Candidate]) -> Result<usize, PolicyFailure>;
}
