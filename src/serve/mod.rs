//! The serving cluster: the controller, the frontend and the worker roles, the frontend's
//! HTTP API, and the KServe v2 messages.
//!
//! - [`controller`]: `cluster.toml`, worker registration, planning for the live workers,
//!   stage assignment, failure detection and re-planning (the frontend runs in its process,
//!   or attaches from its own);
//! - [`frontside`]: the controller's frontend, embedded or remote, and the plan handover;
//! - [`attach`]: the separate frontend process (`poolpipe frontend`);
//! - [`frontend`]: the data-plane scheduler on a real clock, batch frames along reserved
//!   routes, results matched to requests, retries and timeouts, the policy hot swap;
//! - [`agent`]: the worker process (device, registration, assignments, reports);
//! - [`worker`]: a stage worker: it runs its assigned stage on its wgpu device and forwards
//!   each batch to the next worker of the batch's reserved route, the last stage back to
//!   the frontend;
//! - [`spec`]: what an assignment tells a worker;
//! - [`http`]: the frontend's HTTP API (KServe v2 endpoints, image upload, `/metrics`, admin)
//!   over a [`http::Backend`];
//! - [`kserve`]: the KServe v2 inference request and response (JSON and binary tensors);
//! - [`wire`]: engine boundary tensors to and from transport frames.
//!
//! Must never: answer a request twice or not at all, or let one bad request or peer take
//! down the process.

pub mod agent;
pub mod attach;
pub mod controller;
pub mod frontend;
pub mod frontside;
pub mod http;
pub mod kserve;
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
