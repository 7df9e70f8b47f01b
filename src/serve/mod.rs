//! The serving cluster, one folder per role (the commands that start them are in
//! [`crate::commands`]; nothing here imports from there):
//!
//! - [`controller`]: `cluster.toml`, worker registration, planning for the live workers,
//!   stage assignment, failure detection and re-planning (the frontend runs in its process,
//!   or attaches from its own); [`controller::frontside`]: the controller's frontend,
//!   embedded or remote, and the plan handover;
//! - [`frontend`]: the I/O shell of the dataplane's request state machine on a real clock
//!   (batch frames along reserved routes, results matched to requests); [`frontend::attach`]:
//!   the separate frontend process (`poolpipe frontend`); [`frontend::http`]: the HTTP API
//!   (KServe v2 endpoints, image upload, `/metrics`, admin) over a [`frontend::http::Backend`];
//!   [`frontend::kserve`]: the KServe v2 inference request and response (JSON and binary
//!   tensors);
//! - [`worker`]: a stage worker: it runs its assigned stage on its wgpu device and forwards
//!   each batch to the next worker of the batch's reserved route, the last stage back to
//!   the frontend; [`worker::agent`]: the worker process (device, registration,
//!   assignments, reports);
//! - shared: [`protocol`], what the roles tell each other (model signatures, the remote
//!   frontend's specs, the frontend's route id); [`spec`], what an assignment tells a worker;
//!   [`wire`], engine boundary tensors to and from transport frames. The roles import these
//!   and never each other in a circle: the controller drives the frontend; the frontend and
//!   the worker import neither the controller nor each other.
//!
//! Must never: answer a request twice or not at all, or let one bad request or peer take
//! down the process.

pub mod controller;
pub mod frontend;
pub mod protocol;
pub mod spec;
pub mod wire;
pub mod worker;

/// Errors of the serving path; each names the batch, model, stage or peer it is about.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The engine refused or failed a stage.
    #[error("model {model} stage {stage}, batch {batch}: {source}")]
    Engine {
        /// Model id.
        model: u32,
        /// Stage index.
        stage: u16,
        /// Batch id.
        batch: u64,
        /// The engine's error.
        source: poolpipe_engine::EngineError,
    },
    /// A batch arrived for a stage this worker was not assigned.
    #[error("batch {batch} is for model {model} stage {stage}, which worker {worker} does not run")]
    NotAssigned {
        /// This worker.
        worker: u32,
        /// Model id.
        model: u32,
        /// Stage index.
        stage: u16,
        /// Batch id.
        batch: u64,
    },
    /// The route names a worker this worker has no address for.
    #[error("batch {batch}: the route's next worker {next} is unknown to worker {worker}")]
    UnknownPeer {
        /// This worker.
        worker: u32,
        /// The next worker.
        next: u32,
        /// Batch id.
        batch: u64,
    },
    /// A frame's tensors do not fit the stage.
    #[error("batch {batch}: {reason}")]
    Tensors {
        /// Batch id.
        batch: u64,
        /// What is wrong.
        reason: String,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] poolpipe_transport::endpoint::EndpointError),
}
