//! The worker role (`poolpipe worker`): one wgpu device, registered with the controller over
//! QUIC, running the stage the controller assigns and forwarding batches along their routes.
//!
//! Life of a worker:
//! 1. it opens its device and binds its QUIC endpoint (the address peers send batches to);
//! 2. it dials the controller (with backoff) and sends `register`; the `welcome` gives its id;
//! 3. it answers `assign` messages on that connection: each replaces its stage (blocks
//!    `[0, 0]` release it), compiled before the `ack`, so an acknowledged worker is ready;
//! 4. it serves batch streams from the frontend and other workers, and after each batch sends
//!    `timing` (or `failed`, with the reason) to the controller;
//! 5. every heartbeat it sends `health`;
//! 6. when the controller's connection closes, it drops its stage and registers again (step 2,
//!    retrying until a controller answers), under the id the controller gives it then.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use poolpipe_engine::boundary::Precision;
use poolpipe_engine::gpu::{AdapterSelector, Device};
use poolpipe_transport::config::TransportConfig;
use poolpipe_transport::control::Control;
use poolpipe_transport::endpoint::{EndpointError, Node, call, recv, recv_control};
use poolpipe_transport::link::Link;
use poolpipe_transport::tls;

use crate::serve::spec::StageSpec;
use crate::serve::worker::{IN_FLIGHT, StageRunner, Worker};

/// How a worker starts.
#[derive(Clone)]
pub struct AgentOptions {
    /// The controller's address.
    pub controller: SocketAddr,
    /// The controller's certificate name.
    pub controller_name: String,
    /// Where this worker accepts batch streams.
    pub listen: SocketAddr,
    /// The address others reach it at (default: the bound address; required when listening on
    /// an unspecified address such as 0.0.0.0).
    pub advertise: Option<SocketAddr>,
    /// The device.
    pub device: AdapterSelector,
    /// GPU class label [default: from the class file, else derived from the adapter name].
    pub class: Option<String>,
    /// Class file (as for `poolpipe devices`).
    pub classes: Option<std::path::PathBuf>,
    /// Node name: its certificate's name.
    pub name: String,
    /// Its certificate and key.
    pub identity: tls::Identity,
    /// The cluster CA's certificate (PEM).
    pub ca_pem: String,
    /// Transport settings.
    pub transport: TransportConfig,
    /// Health report period.
    pub heartbeat: Duration,
}

/// Reads a node's identity and the cluster CA from a certificate folder, with errors that say
/// which command makes the missing file.
pub fn identity(certs: &std::path::Path, name: &str) -> Result<(tls::Identity, String)> {
    let id = tls::load(certs, name).with_context(|| {
        format!(
            "reading the certificate of '{name}' in {} (issue one with `poolpipe certs issue {name} --ca DIR --out {}`)",
            certs.display(),
            certs.display()
        )
    })?;
    let ca = std::fs::read_to_string(certs.join("ca.pem")).with_context(|| {
        format!("reading the cluster CA {} (copy ca.pem from the CA's folder)", certs.join("ca.pem").display())
    })?;
    Ok((id, ca))
}

pub use crate::serve::protocol::advertised;

struct State {
    id: u32,
    device: Device,
    node: Node,
    /// The current stage's worker (none before the first assignment or after a release).
    current: Mutex<Option<Arc<Worker>>>,
    /// Links by peer address, kept across assignments and registrations.
    links: Arc<Mutex<HashMap<SocketAddr, Link>>>,
    /// Graphs loaded, by (source, fingerprint), kept across registrations.
    graphs: Arc<Mutex<HashMap<String, Arc<poolpipe_engine::Model>>>>,
    epoch: Instant,
    in_flight: AtomicU32,
    busy_us: AtomicU64,
}

impl State {
    fn us(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.epoch).as_secs_f64() * 1e6
    }
}

/// Runs a worker until its task is dropped (the process stops). It registers with the
/// controller and serves; when the controller's connection ends (the controller restarted, the
/// network failed) it drops its stage and registers again, retrying until a controller
/// answers. Only the first registration is allowed to fail: an error then says why.
pub async fn run(o: AgentOptions) -> Result<()> {
    let (identity, ca) = (o.identity.clone(), o.ca_pem.clone());
    let selector = o.device.clone();
    let device = tokio::task::spawn_blocking(move || Device::open(&selector))
        .await
        .context("opening the device")?
        .with_context(|| format!("worker {}: opening device '{}'", o.name, o.device))?;
    let class = match &o.class {
        Some(c) => {
            crate::classes::validate(c)?;
            c.clone()
        }
        None => crate::classes::ClassConfig::load(o.classes.as_deref())?.label(device.adapter()).0,
    };
    let node = Node::bind_with(o.listen, &identity, &ca, o.transport.clone())
        .with_context(|| format!("worker {}: binding {}", o.name, o.listen))?;
    let data_addr = advertised(&node, o.advertise, &format!("worker {}", o.name))?;
    let ctrl = Link::new(&node, o.controller, &o.controller_name);
    let limits = o.transport.limits;
    let register = Control::Register {
        node: o.name.clone(),
        class: class.clone(),
        device: device.name().to_string(),
        data_addr: data_addr.to_string(),
    };
    // Kept across registrations: links to peers and the models loaded.
    let links: Arc<Mutex<HashMap<SocketAddr, Link>>> = Arc::default();
    let graphs: Arc<Mutex<HashMap<String, Arc<poolpipe_engine::Model>>>> = Arc::default();
    let live: Live = Arc::default();
    let accept = {
        let (live, node) = (live.clone(), node.clone());
        tokio::spawn(async move {
            while let Some(peer) = node.accept().await {
                tokio::spawn(serve_batches(live.clone(), peer, limits));
            }
        })
    };
    // The accept loop ends with the task that runs this worker.
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _accept = Abort(accept);
    let mut registered_once = false;
    loop {
        let attempt = async {
            let conn =
                ctrl.connection().await.with_context(|| format!("worker {}: reaching the controller", o.name))?;
            let id = match call(&conn, &register, &limits).await? {
                Control::Welcome { worker } => worker,
                Control::Refused { reason } => bail!("the controller refused worker {}: {reason}", o.name),
                other => bail!("the controller answered register with {}", other.kind()),
            };
            anyhow::Ok((conn, id))
        };
        let (conn, id) = match attempt.await {
            Ok(x) => x,
            Err(e) if !registered_once => {
                node.close();
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(name = %o.name, "registering again failed: {e:#}; retrying in {REREGISTER:?}");
                tokio::time::sleep(REREGISTER).await;
                continue;
            }
        };
        registered_once = true;
        tracing::info!(worker = id, name = %o.name, %class, device = device.name(), %data_addr, "registered");
        let state = Arc::new(State {
            id,
            device: device.clone(),
            node: node.clone(),
            current: Mutex::new(None),
            links: links.clone(),
            graphs: graphs.clone(),
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            busy_us: AtomicU64::new(0),
        });
        *live.lock().unwrap_or_else(|p| p.into_inner()) = Some((state.clone(), conn.clone()));
        let why = session(&o, state.clone(), conn, limits).await;
        *live.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *state.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Results go to the controller on a connection of their own: it went with the
        // controller, so drop it too rather than lose results until it times out.
        if let Some(l) = links.lock().unwrap_or_else(|p| p.into_inner()).get(&o.controller) {
            l.drop_connection("the controller's connection ended");
        }
        tracing::warn!(
            worker = id,
            name = %o.name,
            "the controller's connection ended ({why}); dropping the stage and registering again"
        );
    }
}

/// The registration serving now (its state and the controller's connection), if any.
type Live = Arc<Mutex<Option<(Arc<State>, quinn::Connection)>>>;

/// A controller whose endpoint sends nothing for this long (while health reports go out every
/// heartbeat) is taken for lost.
const CONTROLLER_SILENCE: Duration = Duration::from_secs(2);

/// Pause between attempts to register again after the controller's connection ended.
const REREGISTER: Duration = Duration::from_secs(1);

/// Serves one registration: the controller's assignments and health reports (batches are
/// served by the accept loop, for the registration in [`Live`]). Returns why it ended (the
/// controller's connection closed).
async fn session(
    o: &AgentOptions,
    state: Arc<State>,
    conn: quinn::Connection,
    limits: poolpipe_transport::frame::FrameLimits,
) -> String {
    let control = {
        let (state, conn) = (state.clone(), conn.clone());
        async move {
            loop {
                let (msg, reply) = match recv_control(&conn, &limits).await {
                    Ok(x) => x,
                    Err(EndpointError::Closed { reason, .. }) => return reason,
                    Err(e) => {
                        tracing::warn!("{e}");
                        continue;
                    }
                };
                let answer = match msg {
                    Control::Assign { worker, model, stage, blocks, spec } if worker == state.id => {
                        match assign(&state, model, stage, blocks, spec).await {
                            Ok(()) => Control::Ack,
                            Err(e) => {
                                tracing::error!(worker, model, stage, "assignment refused: {e:#}");
                                Control::Refused { reason: format!("worker {worker}: {e:#}") }
                            }
                        }
                    }
                    Control::Assign { worker, .. } => {
                        Control::Refused { reason: format!("this is worker {}, not {worker}", state.id) }
                    }
                    other => Control::Refused { reason: format!("a worker does not take '{}' messages", other.kind()) },
                };
                if let Err(e) = reply.send(&answer).await {
                    tracing::warn!("{e}");
                }
            }
        }
    };
    let heartbeat = {
        let (state, conn) = (state.clone(), conn.clone());
        async move {
            let mut seq = 0u64;
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(o.heartbeat).await;
                seq += 1;
                let busy = state.busy_us.swap(0, Ordering::Relaxed) as f64 / 1e6 / last.elapsed().as_secs_f64();
                last = Instant::now();
                let msg = Control::Health {
                    worker: state.id,
                    seq,
                    in_flight: state.in_flight.load(Ordering::Relaxed),
                    busy: busy.min(1.0),
                };
                // A controller that stopped answering, and whose endpoint sends nothing at all
                // (not even acknowledgements), is gone: drop its connection now rather than at
                // the transport's idle timeout. (A controller restarted on the same address
                // resets the old connection at once; see `Node::bind_with`.)
                let received = conn.stats().udp_rx.datagrams;
                match tokio::time::timeout(CONTROLLER_SILENCE, call(&conn, &msg, &limits)).await {
                    Ok(Err(e)) if conn.close_reason().is_some() => return e.to_string(),
                    Err(_) if conn.stats().udp_rx.datagrams == received => {
                        let why = format!("the controller sent nothing for {CONTROLLER_SILENCE:?}");
                        conn.close(0u32.into(), why.as_bytes());
                        return why;
                    }
                    _ => {}
                }
            }
        }
    };
    tokio::select! {
        why = control => why,
        why = heartbeat => why,
    }
}

/// Compiles and installs a new stage (or releases the worker).
async fn assign(state: &Arc<State>, model: u32, stage: u16, blocks: [u32; 2], spec: serde_json::Value) -> Result<()> {
    if blocks[0] == blocks[1] {
        *state.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        tracing::info!(worker = state.id, "released: no stage assigned");
        return Ok(());
    }
    let spec: StageSpec = serde_json::from_value(spec).context("the assignment's spec")?;
    let (first, end) = (blocks[0] as usize, blocks[1] as usize);
    if first >= end || end > spec.partition.len() {
        bail!("blocks [{first}, {end}) do not fit model {} of {} blocks", spec.name, spec.partition.len());
    }
    let key = format!("{:?}/{}", spec.source, spec.fingerprint);
    let cached = state.graphs.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
    let graph = match cached {
        Some(g) => g,
        None => {
            let source = spec.source.clone();
            // Loading and rewriting are CPU work: off the runtime threads.
            let (g, found) = tokio::task::spawn_blocking(move || -> Result<_> {
                let g = source.load()?;
                let found = crate::models::fingerprint(&*g.optimized(1)?);
                Ok((g, found))
            })
            .await??;
            if found != spec.fingerprint {
                bail!(
                    "model {} loaded from {} has fingerprint {found}, but the plan was cut on {}: give every node the same model file",
                    spec.name,
                    spec.source.model,
                    spec.fingerprint
                );
            }
            state.graphs.lock().unwrap_or_else(|p| p.into_inner()).insert(key, g.clone());
            g
        }
    };
    let (device, partition, max_batch) = (state.device.clone(), spec.partition.clone(), spec.max_batch.max(1));
    let runner = tokio::task::spawn_blocking(move || {
        StageRunner::new(&device, &graph, &partition, first..end, model, stage, Precision::F16, max_batch)
    })
    .await??;
    let mut peers = HashMap::new();
    {
        let mut links = state.links.lock().unwrap_or_else(|p| p.into_inner());
        for p in &spec.peers {
            let addr: SocketAddr =
                p.addr.parse().with_context(|| format!("peer {} has address '{}', not IP:PORT", p.id, p.addr))?;
            let link = links.entry(addr).or_insert_with(|| Link::new(&state.node, addr, &p.name)).clone();
            peers.insert(p.id, link);
        }
    }
    let worker = Worker::new(state.id, vec![runner], peers);
    *state.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(worker);
    tracing::info!(worker = state.id, model = %spec.name, stage, first, end, generation = spec.generation, "stage ready");
    Ok(())
}

/// Serves the batch streams of one peer connection; reports each batch to the controller.
async fn serve_batches(live: Live, conn: quinn::Connection, limits: poolpipe_transport::frame::FrameLimits) {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let frame = match recv(&conn, &limits).await {
            Ok(f) => f,
            Err(EndpointError::Closed { .. }) => return,
            Err(e) => {
                tracing::warn!("{e}");
                continue;
            }
        };
        // The registration serving now: a connection outlives the registration it began in.
        let Some((state, ctrl)) = live.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            tracing::warn!(batch = frame.header.batch, "a batch arrived while not registered; dropped");
            continue;
        };
        let arrived = Instant::now();
        tokio::spawn(async move {
            let h = &frame.header;
            let (model, batch, stage) = (h.model, h.batch, h.stage);
            let worker = state.current.lock().unwrap_or_else(|p| p.into_inner()).clone();
            state.in_flight.fetch_add(1, Ordering::Relaxed);
            let result = match worker {
                Some(w) => w.handle(frame).await.map_err(|e| e.to_string()),
                None => Err(format!("worker {} has no stage assigned", state.id)),
            };
            state.in_flight.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
            let msg = match result {
                Ok(done) => {
                    let us = done.end.saturating_duration_since(done.start).as_micros() as u64;
                    state.busy_us.fetch_add(us, Ordering::Relaxed);
                    Control::Timing {
                        worker: state.id,
                        model,
                        batch,
                        stage,
                        requests: done.requests as u32,
                        arrived_us: state.us(arrived),
                        start_us: state.us(done.start),
                        end_us: state.us(done.end),
                    }
                }
                Err(reason) => {
                    tracing::warn!(worker = state.id, batch, "{reason}");
                    Control::Failed { worker: state.id, model, batch, stage, reason }
                }
            };
            if let Err(e) = call(&ctrl, &msg, &limits).await {
                tracing::debug!(worker = state.id, batch, "report not delivered: {e}");
            }
        });
    }
}
