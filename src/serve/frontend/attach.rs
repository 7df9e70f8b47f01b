//! The frontend role as its own process (`poolpipe frontend`): the KServe v2 API and the
//! scheduler, attached to a controller whose `[controller] frontend = "remote"`.
//!
//! Life of a frontend:
//! 1. it binds its QUIC endpoint (where the workers send the last hop of every route) and
//!    dials the controller; `attach` answers with the served models and the configured policy;
//! 2. it serves the HTTP API (503 until a plan is installed) and takes the controller's
//!    plan handover on that connection: `drain`, `install` (the layout, which worker runs
//!    each layout worker, the workers' addresses), `no_plan`, `worker_up`, `worker_down`, and
//!    the workers' relayed `timing`, `failed` and `health`;
//! 3. it sends `arrivals` every second (the controller's mix re-planning and the frontend's
//!    health);
//! 4. when the controller's connection ends, the requests it holds are answered (queued ones
//!    at once with 503, those in flight by their batch's result or failure), new ones get 503
//!    with the reason, and it re-attaches as soon as the controller is back. The HTTP API stays
//!    up throughout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use poolpipe_transport::config::TransportConfig;
use poolpipe_transport::control::Control;
use poolpipe_transport::endpoint::{EndpointError, Node, call, recv, recv_control};
use poolpipe_transport::link::Link;
use poolpipe_transport::tls;

use crate::serve::frontend::Frontend;
use crate::serve::frontend::http::ModelMeta;
use crate::serve::protocol::{AttachedSpec, InstallSpec};
use poolpipe_dataplane::{Policies, PolicySpec};

/// How a frontend starts.
#[derive(Clone)]
pub struct FrontendOptions {
    /// The controller's address.
    pub controller: SocketAddr,
    /// The controller's certificate name.
    pub controller_name: String,
    /// Where this frontend accepts results (QUIC).
    pub listen: SocketAddr,
    /// The address workers reach it at (default: the bound address).
    pub advertise: Option<SocketAddr>,
    /// HTTP address of the API.
    pub http: SocketAddr,
    /// Node name: its certificate's name.
    pub name: String,
    /// Its certificate and key.
    pub identity: tls::Identity,
    /// The cluster CA's certificate (PEM).
    pub ca_pem: String,
    /// Transport settings.
    pub transport: TransportConfig,
    /// Batching policy [default: the controller's].
    pub policy: Option<String>,
    /// Bearer token of the admin endpoints (off without one).
    pub admin_token: Option<String>,
    /// Period of `arrivals` reports.
    pub report_every: Duration,
}

/// What a started frontend tells its caller.
#[derive(Clone, Debug)]
pub struct Started {
    /// The bound HTTP address.
    pub http: SocketAddr,
    /// Where workers send results.
    pub data_addr: SocketAddr,
}

/// Runs a frontend until `stop` resolves (its endpoint then closes, so the controller and the
/// workers see it leave at once). Fails when the controller cannot be reached or refuses it
/// the first time; after that it re-attaches whenever the controller is back. `started` gets
/// the bound addresses once the API serves.
pub async fn run(
    o: FrontendOptions,
    started: Option<tokio::sync::oneshot::Sender<Started>>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let node = Node::bind_with(o.listen, &o.identity, &o.ca_pem, o.transport.clone())
        .with_context(|| format!("frontend {}: binding {}", o.name, o.listen))?;
    let r = tokio::select! {
        r = serve(&o, &node, started) => r,
        () = stop => Ok(()),
    };
    node.close();
    // Let the close reach the peers.
    tokio::time::sleep(Duration::from_millis(100)).await;
    r
}

async fn serve(o: &FrontendOptions, node: &Node, started: Option<tokio::sync::oneshot::Sender<Started>>) -> Result<()> {
    let data_addr = crate::serve::protocol::advertised(node, o.advertise, &format!("frontend {}", o.name))?;
    let ctrl = Link::new(node, o.controller, &o.controller_name);
    let limits = o.transport.limits;
    let mut serving: Option<(Frontend, Vec<ModelMeta>)> = None;
    // The HTTP server lives as long as this loop.
    let mut _server: Option<crate::serve::frontend::server::HttpServer> = None;
    let mut started = started;
    let links: Arc<Mutex<HashMap<SocketAddr, Link>>> = Arc::default();
    loop {
        let attached = async {
            let conn = ctrl.connection().await.context("reaching the controller")?;
            let hello = Control::Attach { node: o.name.clone(), data_addr: data_addr.to_string() };
            let spec = match call(&conn, &hello, &limits).await.context("attaching")? {
                Control::Attached { spec } => spec,
                Control::Refused { reason } => bail!("the controller refused frontend {}: {reason}", o.name),
                other => bail!("the controller answered attach with '{}'", other.kind()),
            };
            let spec: AttachedSpec = serde_json::from_value(spec).context("the controller's attached message")?;
            anyhow::Ok((conn, spec))
        }
        .await;
        let (conn, spec) = match (attached, &serving) {
            (Ok(x), _) => x,
            (Err(e), None) => return Err(e.context(format!("frontend {} at {}", o.name, o.controller))),
            (Err(e), Some(_)) => {
                tracing::warn!("re-attaching to the controller at {}: {e:#}; trying again", o.controller);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let frontend = match &serving {
            Some((f, models)) => {
                if *models != spec.models {
                    bail!(
                        "the controller at {} now serves other models ({}) than this frontend's API ({}): restart the frontend",
                        o.controller,
                        names(&spec.models),
                        names(models)
                    );
                }
                // A controller that restarted numbers its workers anew.
                f.forget_workers();
                f.clone()
            }
            None => {
                let policy = o.policy.clone().unwrap_or_else(|| spec.policy.clone());
                let policies = Policies::load(&PolicySpec::native(&policy))
                    .with_context(|| format!("the batching policy '{policy}' (pass --policy)"))?;
                let f = Frontend::new(spec.models.clone(), policies);
                f.set_admission(poolpipe_dataplane::Admission { max_queue: spec.max_queue, ..Default::default() });
                tokio::spawn(accept_results(node.clone(), f.clone(), limits));
                let server = crate::serve::frontend::http::listen(
                    f.clone(),
                    o.http,
                    crate::serve::frontend::http::HttpOptions {
                        admin_token: o.admin_token.clone(),
                        ..Default::default()
                    },
                )?;
                let http = server.addr();
                _server = Some(server);
                tracing::info!(%http, %data_addr, models = %names(&spec.models), "frontend serving");
                if let Some(tx) = started.take() {
                    let _ = tx.send(Started { http, data_addr });
                }
                serving = Some((f.clone(), spec.models.clone()));
                f
            }
        };
        tracing::info!(controller = %o.controller, "attached");
        let why = serve_controller(&frontend, &conn, node, &links, o.report_every, limits).await;
        tracing::warn!("the controller's connection ended ({why}); re-attaching");
        frontend.no_plan(format!("the cluster's controller is unreachable ({why}); the frontend is re-attaching"));
    }
}

fn names(models: &[ModelMeta]) -> String {
    models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Takes the workers' result frames.
async fn accept_results(node: Node, frontend: Frontend, limits: poolpipe_transport::frame::FrameLimits) {
    while let Some(conn) = node.accept().await {
        let frontend = frontend.clone();
        tokio::spawn(async move {
            loop {
                match recv(&conn, &limits).await {
                    Ok(frame) => frontend.result(frame),
                    Err(EndpointError::Closed { .. }) => return,
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        });
    }
}

/// Serves the controller's messages and sends `arrivals` until the connection ends; returns
/// why it ended.
async fn serve_controller(
    frontend: &Frontend,
    conn: &quinn::Connection,
    node: &Node,
    links: &Arc<Mutex<HashMap<SocketAddr, Link>>>,
    report_every: Duration,
    limits: poolpipe_transport::frame::FrameLimits,
) -> String {
    let control = async {
        loop {
            let (msg, reply) = match recv_control(conn, &limits).await {
                Ok(x) => x,
                Err(EndpointError::Closed { reason, .. }) => return reason,
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            };
            // Each exchange on its own task: a drain waits for batches whose reports come on
            // this connection too.
            let (frontend, node, links) = (frontend.clone(), node.clone(), links.clone());
            tokio::spawn(async move {
                let answer = handle(&frontend, msg, &node, &links).await;
                if let Err(e) = reply.send(&answer).await {
                    tracing::debug!("{e}");
                }
            });
        }
    };
    let report = async {
        loop {
            tokio::time::sleep(report_every).await;
            let msg = Control::Arrivals { by_model: frontend.arrived(), corrections: frontend.corrections() };
            if let Err(e) = call(conn, &msg, &limits).await
                && let Some(reason) = conn.close_reason()
            {
                return format!("{reason} ({e})");
            }
        }
    };
    tokio::select! {
        why = control => why,
        why = report => why,
    }
}

/// One message from the controller.
async fn handle(frontend: &Frontend, msg: Control, node: &Node, links: &Mutex<HashMap<SocketAddr, Link>>) -> Control {
    match msg {
        Control::Drain { timeout_ms } => {
            frontend.drain(Duration::from_millis(timeout_ms)).await;
            Control::Ack
        }
        Control::Install { generation, spec } => match install(frontend, spec, node, links) {
            Ok(local) => {
                tracing::info!(generation, local, "plan installed");
                Control::Ack
            }
            Err(e) => {
                tracing::error!(generation, "plan refused: {e:#}");
                Control::Refused { reason: format!("{e:#}") }
            }
        },
        Control::NoPlan { reason } => {
            tracing::warn!("no plan: {reason}");
            frontend.no_plan(reason);
            Control::Ack
        }
        Control::WorkerUp { worker } => {
            frontend.worker_up(worker);
            Control::Ack
        }
        Control::WorkerDown { worker, reason } => {
            tracing::warn!(worker, "worker gone ({reason}); routing around it");
            frontend.worker_down(worker);
            Control::Ack
        }
        ref report @ (Control::Timing { .. } | Control::Failed { .. } | Control::Health { .. }) => {
            frontend.report(report);
            Control::Ack
        }
        other => Control::Refused { reason: format!("a frontend does not take '{}' messages", other.kind()) },
    }
}

/// Installs a plan from an `install` spec, with links to its workers (kept across plans).
fn install(
    frontend: &Frontend,
    spec: serde_json::Value,
    node: &Node,
    links: &Mutex<HashMap<SocketAddr, Link>>,
) -> Result<u64> {
    let spec: InstallSpec = serde_json::from_value(spec).context("the install message's spec")?;
    let mut by_id = HashMap::new();
    let mut cache = links.lock().unwrap_or_else(|p| p.into_inner());
    for p in &spec.peers {
        let addr: SocketAddr =
            p.addr.parse().with_context(|| format!("worker {} has address '{}', not IP:PORT", p.id, p.addr))?;
        let link = cache.entry(addr).or_insert_with(|| Link::new(node, addr, &p.name)).clone();
        by_id.insert(p.id, link);
    }
    drop(cache);
    frontend.install(&spec.layout, spec.nodes, by_id)
}
