//! The controller's view of its frontend: embedded (the [`Frontend`] runs in the controller's
//! process, `[controller] frontend = "embedded"`) or remote (a `poolpipe frontend` process
//! attached over QUIC, `frontend = "remote"`), and what the two exchange at a plan change.
//!
//! The controller drives both the same way: `drain` before it re-assigns the workers,
//! `install` once every worker acknowledged its stage, `no_plan` when it cannot plan, and
//! `worker_up`/`worker_down` as workers come and go. The workers' `timing`, `failed` and
//! `health` reports reach the controller; it hands them to an embedded frontend and relays
//! them, unchanged, to a remote one. A remote frontend reports the frames that arrived per
//! model (`arrivals`) every second, which the controller's mix re-planning reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use poolpipe_transport::control::{Control, NodeCorrection};
use poolpipe_transport::endpoint::{Node, call};
use poolpipe_transport::frame::FrameLimits;
use poolpipe_transport::link::Link;

use crate::serve::frontend::Frontend;
use crate::serve::spec::Peer;

pub use crate::serve::protocol::{AttachedSpec, InstallSpec};

/// A remote frontend the controller has accepted.
#[derive(Clone)]
struct Attached {
    /// Counts attachments: a new frontend is a new key, so the controller re-plans.
    key: u64,
    conn: quinn::Connection,
    peer: Peer,
}

/// The controller's side of a remote frontend.
pub struct RemoteFront {
    limits: FrameLimits,
    attached: Mutex<Option<Attached>>,
    arrivals: Mutex<Vec<u64>>,
    corrections: Mutex<Vec<NodeCorrection>>,
    switching: AtomicBool,
    next_key: AtomicU64,
}

/// The frontend the controller drives.
pub enum Front {
    /// In the controller's process.
    Embedded(Frontend),
    /// A `poolpipe frontend` process (none until one attaches).
    Remote(RemoteFront),
}

/// How long the controller waits for a remote frontend's answer beyond the work asked.
const ANSWER: Duration = Duration::from_secs(10);

impl Front {
    /// A remote frontend slot, empty until a frontend attaches.
    pub fn remote(limits: FrameLimits) -> Front {
        Front::Remote(RemoteFront {
            limits,
            attached: Mutex::new(None),
            arrivals: Mutex::new(vec![]),
            corrections: Mutex::new(vec![]),
            switching: AtomicBool::new(false),
            next_key: AtomicU64::new(1),
        })
    }

    /// The embedded frontend, when there is one.
    pub fn embedded(&self) -> Option<&Frontend> {
        match self {
            Front::Embedded(f) => Some(f),
            Front::Remote(_) => None,
        }
    }

    /// The frontend as the last hop of routes, with a key that changes when another frontend
    /// attaches; none while no remote frontend is attached. `own` is the controller's own
    /// address and name, where an embedded frontend receives.
    pub fn peer(&self, own: Peer) -> Option<(u64, Peer)> {
        match self {
            Front::Embedded(_) => Some((0, own)),
            Front::Remote(r) => r.current().map(|a| (a.key, a.peer)),
        }
    }

    /// Takes a remote frontend's `attach` on connection `conn`. Refused when the frontend is
    /// embedded or another frontend is attached and connected.
    pub fn attach(&self, conn: &quinn::Connection, node: String, data_addr: &str) -> Result<u64, String> {
        let Front::Remote(r) = self else {
            return Err("this controller runs its frontend in its own process ([controller] frontend = \"embedded\"); set frontend = \"remote\" in cluster.toml to attach `poolpipe frontend`".into());
        };
        let addr: SocketAddr =
            data_addr.parse().map_err(|_| format!("data address '{data_addr}' is not IP:PORT (pass --advertise)"))?;
        let mut slot = r.attached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = slot.as_ref()
            && a.conn.close_reason().is_none()
        {
            return Err(format!(
                "frontend '{}' at {} is attached already: a cluster has one frontend (its scheduler owns the workers' reservations); stop it first",
                a.peer.name, a.peer.addr
            ));
        }
        let key = r.next_key.fetch_add(1, Ordering::Relaxed);
        *slot = Some(Attached {
            key,
            conn: conn.clone(),
            peer: Peer { id: crate::serve::protocol::FRONTEND, addr: addr.to_string(), name: node },
        });
        r.arrivals.lock().unwrap_or_else(|p| p.into_inner()).clear();
        r.switching.store(false, Ordering::Relaxed);
        Ok(key)
    }

    /// The remote frontend on `conn` left; true when it was the attached one.
    pub fn detach(&self, conn: &quinn::Connection) -> bool {
        let Front::Remote(r) = self else { return false };
        let mut slot = r.attached.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|a| a.conn.stable_id() == conn.stable_id()) {
            *slot = None;
            return true;
        }
        false
    }

    /// A remote frontend's `arrivals` report.
    pub fn arrivals(&self, by_model: Vec<u64>, corrections: Vec<NodeCorrection>) {
        if let Front::Remote(r) = self {
            *r.arrivals.lock().unwrap_or_else(|p| p.into_inner()) = by_model;
            *r.corrections.lock().unwrap_or_else(|p| p.into_inner()) = corrections;
        }
    }

    /// The workers' profile corrections under the current plan (a remote frontend's last
    /// report).
    pub fn corrections(&self) -> Vec<NodeCorrection> {
        match self {
            Front::Embedded(f) => f.corrections(),
            Front::Remote(r) => r.corrections.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Frames arrived per model (since the frontend started or attached).
    pub fn arrived(&self) -> Vec<u64> {
        match self {
            Front::Embedded(f) => f.stats().arrived_by_model,
            Front::Remote(r) => r.arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Whether a plan change is under way (requests wait for the next plan).
    pub fn is_switching(&self) -> bool {
        match self {
            Front::Embedded(f) => f.is_switching(),
            Front::Remote(r) => r.switching.load(Ordering::Relaxed),
        }
    }

    /// A worker registered.
    pub fn worker_up(&self, worker: u32) {
        match self {
            Front::Embedded(f) => f.worker_up(worker),
            Front::Remote(r) => r.tell(Control::WorkerUp { worker }),
        }
    }

    /// A worker left.
    pub fn worker_down(&self, worker: u32, reason: &str) {
        match self {
            Front::Embedded(f) => f.worker_down(worker),
            Front::Remote(r) => r.tell(Control::WorkerDown { worker, reason: reason.to_string() }),
        }
    }

    /// A worker's `timing`, `failed` or `health` report.
    pub fn report(&self, msg: Control) {
        match self {
            Front::Embedded(f) => f.report(&msg),
            Front::Remote(r) => r.tell(msg),
        }
    }

    /// The first step of a plan change: the plan in service takes no more batches and its
    /// batches finish (or fail, for retry, after `timeout`).
    pub async fn drain(&self, timeout: Duration) -> Result<()> {
        match self {
            Front::Embedded(f) => {
                f.drain(timeout).await;
                Ok(())
            }
            Front::Remote(r) => {
                r.switching.store(true, Ordering::Relaxed);
                let msg = Control::Drain { timeout_ms: timeout.as_millis() as u64 };
                r.ask(&msg, timeout + ANSWER).await
            }
        }
    }

    /// Serves the plan: `layout`, the worker id of each layout worker, and the workers'
    /// addresses. `node` is the controller's endpoint (the embedded frontend's links).
    pub async fn install(&self, generation: u64, spec: InstallSpec, node: &Node) -> Result<()> {
        match self {
            Front::Embedded(f) => {
                let mut links = HashMap::new();
                for p in &spec.peers {
                    let addr: SocketAddr = p.addr.parse()?;
                    links.insert(p.id, Link::new(node, addr, &p.name));
                }
                f.install(&spec.layout, spec.nodes, links)?;
                Ok(())
            }
            Front::Remote(r) => {
                let msg = Control::Install { generation, spec: serde_json::to_value(&spec)? };
                r.ask(&msg, ANSWER).await?;
                r.switching.store(false, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// No plan serves now: requests are answered 503 with `reason`.
    pub fn no_plan(&self, reason: String) {
        match self {
            Front::Embedded(f) => f.no_plan(reason),
            Front::Remote(r) => {
                r.switching.store(false, Ordering::Relaxed);
                r.tell(Control::NoPlan { reason });
            }
        }
    }
}

impl RemoteFront {
    fn current(&self) -> Option<Attached> {
        self.attached.lock().unwrap_or_else(|p| p.into_inner()).clone().filter(|a| a.conn.close_reason().is_none())
    }

    /// Sends `msg` to the attached frontend without waiting (dropped when none is attached).
    fn tell(&self, msg: Control) {
        let Some(a) = self.current() else { return };
        let limits = self.limits;
        tokio::spawn(async move {
            match tokio::time::timeout(ANSWER, call(&a.conn, &msg, &limits)).await {
                Ok(Ok(Control::Ack)) => {}
                Ok(Ok(Control::Refused { reason })) => {
                    tracing::warn!("the frontend refused '{}': {reason}", msg.kind())
                }
                Ok(Ok(other)) => tracing::warn!("the frontend answered '{}' with '{}'", msg.kind(), other.kind()),
                Ok(Err(e)) => tracing::debug!("'{}' not delivered to the frontend: {e}", msg.kind()),
                Err(_) => tracing::warn!("the frontend did not answer '{}' within {ANSWER:?}", msg.kind()),
            }
        });
    }

    /// Sends `msg` to the attached frontend and waits for its `ack`.
    async fn ask(&self, msg: &Control, timeout: Duration) -> Result<()> {
        let Some(a) = self.current() else {
            bail!("the frontend left; waiting for one to attach (`poolpipe frontend --controller ADDR`)")
        };
        match tokio::time::timeout(timeout, call(&a.conn, msg, &self.limits)).await {
            Ok(Ok(Control::Ack)) => Ok(()),
            Ok(Ok(Control::Refused { reason })) => bail!("the frontend refused '{}': {reason}", msg.kind()),
            Ok(Ok(other)) => bail!("the frontend answered '{}' with '{}'", msg.kind(), other.kind()),
            Ok(Err(e)) => bail!("frontend '{}': {e}", a.peer.name),
            Err(_) => bail!("frontend '{}' did not answer '{}' within {timeout:?}", a.peer.name, msg.kind()),
        }
    }
}
