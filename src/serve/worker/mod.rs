//! A stage worker: runs its assigned stages on its wgpu device and forwards each batch to the
//! next worker of the batch's reserved route.
//!
//! A batch frame names its model, its stage and the rest of its route (PROTOCOL.md). The
//! worker runs the stage, and sends the tensors crossing the stage's last cut to the route's
//! next hop, with that hop removed from the route. The last hop of every route is the
//! frontend ([`FRONTEND`]), which receives the model's outputs. The device runs one batch at a
//! time; a worker holds at most [`IN_FLIGHT`] received batches (run or waiting to run), and
//! the transport holds senders back beyond that.

pub mod agent;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use poolpipe_engine::boundary::{Boundary, Precision};
use poolpipe_engine::gpu::Device;
use poolpipe_engine::partition::Partition;
use poolpipe_engine::stage::{CompiledStage, Stage};
use poolpipe_engine::{EngineError, Model};
use poolpipe_transport::endpoint::{EndpointError, recv};
use poolpipe_transport::frame::{BatchHeader, Frame, FrameLimits};
use poolpipe_transport::link::Link;

use crate::serve::ServeError;
use crate::serve::wire::{from_wire, to_wire};

pub use crate::serve::protocol::FRONTEND;

/// Batches a worker holds at once (one running, the others received and waiting).
pub const IN_FLIGHT: usize = 2;

/// One assigned stage, compiled for the worker's device at every batch size it serves.
pub struct StageRunner {
    model: u32,
    index: u16,
    compiled: CompiledStage,
}

impl StageRunner {
    /// Cuts blocks `blocks` of `graph` (as partitioned by `partition`), compiles them on
    /// `device` for every batch 1..=`max_batch` (before the stage serves, so no batch waits
    /// for a compile), as stage `index` of model `model`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device: &Device,
        graph: &Arc<Model>,
        partition: &Partition,
        blocks: Range<usize>,
        model: u32,
        index: u16,
        precision: Precision,
        max_batch: usize,
    ) -> Result<StageRunner, EngineError> {
        let stage = Stage::new(graph, partition, blocks, precision)?;
        let mut compiled = CompiledStage::new(device, stage, max_batch);
        for b in 1..=max_batch {
            compiled.prepare(b)?;
        }
        Ok(StageRunner { model, index, compiled })
    }

    /// Runs the stage on a frame's tensors; returns every tensor crossing its last cut.
    pub fn run(&mut self, frame: &Frame) -> Result<Vec<Boundary>, ServeError> {
        let h = &frame.header;
        let engine = |source| ServeError::Engine { model: h.model, stage: h.stage, batch: h.batch, source };
        let received = from_wire(frame).map_err(|reason| ServeError::Tensors { batch: h.batch, reason })?;
        let stage = self.compiled.stage();
        let inputs = stage.order(&received).map_err(engine)?;
        let batch = h.requests.len().max(1);
        let (outputs, _) = self.compiled.run_boundary(batch, &inputs).map_err(engine)?;
        self.compiled.stage().forward(&received, outputs).map_err(engine)
    }
}

/// What became of a batch a worker ran.
#[derive(Debug, Clone, Copy)]
pub struct Handled {
    /// The worker it was sent to.
    pub next: u32,
    /// When the device started on it.
    pub start: Instant,
    /// When the device finished it.
    pub end: Instant,
    /// Requests in it.
    pub requests: usize,
}

/// A worker: its stages and the links to the workers (and frontend) it forwards to.
pub struct Worker {
    id: u32,
    runners: Mutex<HashMap<(u32, u16), StageRunner>>,
    peers: HashMap<u32, Link>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Worker {
    /// A worker with id `id` running `runners`, forwarding over `peers` (worker id to link;
    /// [`FRONTEND`] for the frontend).
    pub fn new(id: u32, runners: Vec<StageRunner>, peers: HashMap<u32, Link>) -> Arc<Worker> {
        let runners = runners.into_iter().map(|r| ((r.model, r.index), r)).collect();
        Arc::new(Worker {
            id,
            runners: Mutex::new(runners),
            peers,
            slots: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
        })
    }

    /// Runs one received batch and forwards it to the next hop of its route; says where it
    /// went and when the device ran it. Every error names the batch.
    pub async fn handle(self: &Arc<Self>, frame: Frame) -> Result<Handled, ServeError> {
        let h = &frame.header;
        let (model, stage, batch) = (h.model, h.stage, h.batch);
        let next = *h.route.first().ok_or_else(|| ServeError::Tensors {
            batch,
            reason: "the route is empty: every route ends with the frontend".into(),
        })?;
        let link = self.peers.get(&next.worker).ok_or(ServeError::UnknownPeer {
            worker: self.id,
            next: next.worker,
            batch,
        })?;
        let me = self.clone();
        let (out, frame, start, end) = tokio::task::spawn_blocking(move || {
            let mut runners = me.runners.lock().unwrap_or_else(|p| p.into_inner());
            let runner = runners.get_mut(&(model, stage)).ok_or(ServeError::NotAssigned {
                worker: me.id,
                model,
                stage,
                batch,
            })?;
            let start = Instant::now();
            runner.run(&frame).map(|out| (out, frame, start, Instant::now()))
        })
        .await
        .map_err(|e| ServeError::Tensors { batch, reason: format!("the stage task failed: {e}") })??;
        let (tensors, payloads) = to_wire(out);
        let h = frame.header;
        let header = BatchHeader {
            model,
            batch,
            stage: next.stage,
            requests: h.requests,
            route: h.route[1..].to_vec(),
            tensors,
        };
        link.send(&header, &payloads).await?;
        Ok(Handled { next: next.worker, start, end, requests: header.requests.len() })
    }

    /// This worker's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The stages this worker runs: (model, stage index).
    pub fn stages(&self) -> Vec<(u32, u16)> {
        let mut v: Vec<(u32, u16)> = self.runners.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Serves one connection until it closes: each batch received is run and forwarded
    /// while the next is received (at most [`IN_FLIGHT`] held); failures are logged with the
    /// batch.
    pub async fn serve(self: Arc<Self>, conn: quinn::Connection, limits: FrameLimits) {
        loop {
            let Ok(permit) = self.slots.clone().acquire_owned().await else { return };
            match recv(&conn, &limits).await {
                Ok(frame) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let batch = frame.header.batch;
                        if let Err(e) = me.handle(frame).await {
                            tracing::warn!(worker = me.id, batch, "{e}");
                        }
                        drop(permit);
                    });
                }
                Err(EndpointError::Closed { .. }) => return,
                Err(e) => tracing::warn!(worker = self.id, "{e}"),
            }
        }
    }
}
