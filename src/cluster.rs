//! The cluster commands: `poolpipe worker`, `poolpipe controller`, `poolpipe frontend` and
//! `poolpipe serve` (the roles of [`crate::serve`] with their flags, certificates and HTTP
//! server).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use poolpipe_engine::gpu::AdapterSelector;
use poolpipe_transport::config::TransportConfig;
use poolpipe_transport::tls;

use crate::serve::agent::{self, AgentOptions};
use crate::serve::attach::{self, FrontendOptions};
use crate::serve::controller::{ClusterConfig, Controller, FrontendMode, LocalWorker};
use crate::serve::frontend::Frontend;
use crate::serve::http::{HttpOptions, router};

/// `poolpipe worker`.
#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    /// The controller's QUIC address (its `listen` in cluster.toml).
    #[arg(long, value_name = "IP:PORT")]
    pub controller: SocketAddr,
    /// The controller's certificate name.
    #[arg(long, default_value = "controller")]
    pub controller_name: String,
    /// This worker's name: its certificate's name (CERTS/NAME.pem and NAME.key).
    #[arg(long)]
    pub name: String,
    /// GPU class label; the controller's profile folder must have profiles of this class
    /// [default: from the class file, else derived from the adapter name, as `poolpipe
    /// devices` shows].
    #[arg(long)]
    pub class: Option<String>,
    /// Class file (as for `poolpipe devices`).
    #[arg(long, value_name = "FILE")]
    pub classes: Option<PathBuf>,
    /// Adapter (as for `poolpipe devices`).
    #[arg(long, default_value = "default")]
    pub device: AdapterSelector,
    /// Address to accept batch streams on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Address peers reach this worker at [default: the bound address].
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// Folder with ca.pem and this worker's NAME.pem / NAME.key.
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub certs: PathBuf,
}

/// `poolpipe frontend`.
#[derive(clap::Args, Clone, Debug)]
pub struct FrontendArgs {
    /// The controller's QUIC address (its `listen` in cluster.toml, with frontend = "remote").
    #[arg(long, value_name = "IP:PORT")]
    pub controller: SocketAddr,
    /// The controller's certificate name.
    #[arg(long, default_value = "controller")]
    pub controller_name: String,
    /// This frontend's name: its certificate's name (CERTS/NAME.pem and NAME.key).
    #[arg(long, default_value = "frontend")]
    pub name: String,
    /// HTTP address of the KServe v2 API.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub http: SocketAddr,
    /// Address to accept the workers' results on (QUIC).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Address workers reach this frontend at [default: the bound address].
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// Folder with ca.pem and this frontend's NAME.pem / NAME.key.
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub certs: PathBuf,
    /// Batching policy: ppipe, reactive, triton, a .wasm/.wat file or wasm:NAME [default:
    /// the controller's `policy`].
    #[arg(long)]
    pub policy: Option<String>,
    /// File holding the bearer token of the admin endpoints (policy swap); they are off
    /// without one.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

/// `poolpipe controller`.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerArgs {
    /// Cluster configuration (see docs/deploy.md).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// HTTP address of the KServe v2 API [default: the config's].
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// QUIC address for workers [default: the config's].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// `poolpipe serve`.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Cluster configuration with [[worker]] entries for this machine's adapters.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// HTTP address of the KServe v2 API [default: the config's].
    #[arg(long)]
    pub http: Option<SocketAddr>,
}

/// Runs a worker until the process stops (it registers again whenever the controller goes away).
pub async fn worker(a: WorkerArgs) -> Result<()> {
    let (identity, ca_pem) = agent::identity(&a.certs, &a.name)?;
    agent::run(AgentOptions {
        controller: a.controller,
        controller_name: a.controller_name,
        listen: a.listen,
        advertise: a.advertise,
        device: a.device,
        class: a.class,
        classes: a.classes,
        name: a.name,
        identity,
        ca_pem,
        transport: TransportConfig::default(),
        heartbeat: Duration::from_millis(200),
    })
    .await
}

/// Serves the HTTP API of `frontend` on `addr` until the task ends; returns the bound
/// address.
pub async fn http(
    frontend: Frontend,
    addr: SocketAddr,
    admin_token: Option<String>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the HTTP API on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = router(frontend, HttpOptions { admin_token, ..HttpOptions::default() });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the HTTP API stopped: {e}");
        }
    });
    Ok((bound, task))
}

fn certs_of(cfg: &ClusterConfig) -> Result<&Path> {
    cfg.controller.certs.as_deref().context(
        "[controller] certs is not set: name the folder with ca.pem and the controller's certificate (`poolpipe certs init`, `poolpipe certs issue controller`)",
    )
}

/// Runs a frontend attached to a controller until Ctrl-C.
pub async fn frontend(a: FrontendArgs) -> Result<()> {
    let (identity, ca_pem) = agent::identity(&a.certs, &a.name)?;
    let admin_token = match &a.admin_token_file {
        Some(f) => {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("reading the admin token file {}", f.display()))?
                .trim()
                .to_string();
            if t.is_empty() {
                bail!("the admin token file {} is empty: put the bearer token in it", f.display());
            }
            Some(t)
        }
        None => None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let o = FrontendOptions {
        controller: a.controller,
        controller_name: a.controller_name,
        listen: a.listen,
        advertise: a.advertise,
        http: a.http,
        name: a.name,
        identity,
        ca_pem,
        transport: TransportConfig::default(),
        policy: a.policy,
        admin_token,
        report_every: Duration::from_secs(1),
    };
    let run = tokio::spawn(attach::run(o, Some(tx), async {
        stop_signal().await;
        eprintln!("frontend: stopping");
    }));
    if let Ok(s) = rx.await {
        eprintln!("frontend: KServe v2 API at http://{}; workers send results to {} (QUIC)", s.http, s.data_addr);
    }
    run.await.context("the frontend task")?
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM (what systemd sends on stop).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => tracing::warn!("cannot watch SIGTERM ({e}); stopping on Ctrl-C only"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs the controller (and its embedded frontend) until Ctrl-C.
pub async fn controller(a: ControllerArgs) -> Result<()> {
    let mut cfg = ClusterConfig::load(&a.config)?;
    if let Some(h) = a.http {
        if cfg.controller.frontend == FrontendMode::Remote {
            bail!(
                "--http {h}: this controller's frontend is remote (frontend = \"remote\"), so it serves no HTTP; pass --http to `poolpipe frontend`"
            );
        }
        cfg.controller.http = h;
    }
    if let Some(l) = a.listen {
        cfg.controller.listen = l;
    }
    let (identity, ca) = agent::identity(certs_of(&cfg)?, &cfg.controller.name)?;
    let (http_addr, token) = (cfg.controller.http, cfg.controller.admin_token.clone());
    let c = Controller::start(cfg, &identity, &ca, TransportConfig::default()).await?;
    let _task = match c.frontend_mode() {
        FrontendMode::Embedded => {
            let (bound, task) = http(c.frontend()?, http_addr, token).await?;
            eprintln!("controller: workers register at {} (QUIC); KServe v2 API at http://{bound}", c.addr()?);
            Some(task)
        }
        FrontendMode::Remote => {
            eprintln!(
                "controller: workers register and the frontend attaches at {} (QUIC); start `poolpipe frontend --controller {}`",
                c.addr()?,
                c.addr()?
            );
            None
        }
    };
    stop_signal().await;
    eprintln!("controller: stopping");
    c.shutdown();
    // Let the close reach the workers and the frontend.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// The workers of `poolpipe serve` when the config lists none: one per local adapter, with
/// its class from the class file or the adapter name. A GPU that wgpu lists under several
/// backends counts once, and CPU adapters (lavapipe) only on a machine without a GPU.
pub fn local_workers() -> Result<Vec<LocalWorker>> {
    let list = poolpipe_engine::gpu::list_adapters();
    if list.is_empty() {
        return Err(poolpipe_engine::EngineError::NoAdapter.into());
    }
    let gpus = list.iter().any(|a| a.device_type != "Cpu");
    let mut seen = std::collections::HashSet::new();
    Ok(list
        .iter()
        .filter(|a| !gpus || a.device_type != "Cpu")
        .filter(|a| seen.insert(a.name.clone()))
        .map(|a| LocalWorker { device: a.index.to_string(), class: None, count: 1 })
        .collect())
}

/// Everything in one process: the controller, the frontend and one worker per `[[worker]]`
/// (each with its own device; without entries, one per local adapter), over QUIC on loopback
/// with a CA made for the run.
pub async fn serve(a: ServeArgs) -> Result<()> {
    let mut cfg = ClusterConfig::load(&a.config)?;
    if let Some(h) = a.http {
        cfg.controller.http = h;
    }
    if cfg.worker.is_empty() {
        cfg.worker = local_workers()?;
        eprintln!("serve: no [[worker]] entries; one worker per local adapter: {} workers", cfg.worker.len());
    }
    let total: usize = cfg.worker.iter().map(|w| w.count).sum();
    cfg.controller.workers = total;
    cfg.controller.listen = ([127, 0, 0, 1], 0).into();
    // Every role runs here, the frontend too.
    cfg.controller.frontend = FrontendMode::Embedded;
    let ca = tls::init_ca()?;
    let http_addr = cfg.controller.http;
    let workers = cfg.worker.clone();
    let c = Controller::start(
        cfg.clone(),
        &tls::issue(&ca.key_pem, &cfg.controller.name)?,
        &ca.cert_pem,
        TransportConfig::default(),
    )
    .await?;
    let controller_addr = c.addr()?;
    let mut n = 0;
    for w in &workers {
        let device: AdapterSelector = w.device.parse().map_err(|e| anyhow::anyhow!("[[worker]] device: {e}"))?;
        for _ in 0..w.count {
            n += 1;
            let name = format!("worker-{n}");
            let o = AgentOptions {
                controller: controller_addr,
                controller_name: cfg.controller.name.clone(),
                listen: ([127, 0, 0, 1], 0).into(),
                advertise: None,
                device: device.clone(),
                class: w.class.clone(),
                classes: None,
                identity: tls::issue(&ca.key_pem, &name)?,
                name,
                ca_pem: ca.cert_pem.clone(),
                transport: TransportConfig::default(),
                heartbeat: Duration::from_millis(200),
            };
            tokio::spawn(async move {
                if let Err(e) = agent::run(o).await {
                    tracing::error!("{e:#}");
                }
            });
        }
    }
    let (bound, _task) = http(c.frontend()?, http_addr, cfg.controller.admin_token.clone()).await?;
    eprintln!("serve: {total} workers starting; KServe v2 API at http://{bound}");
    let generation = c.wait_plan(1, Duration::from_secs(300)).await?;
    eprintln!("serve: plan {generation} ready");
    for w in c.workers() {
        if let Some(s) = &w.stage {
            eprintln!(
                "  worker {} ({}, {}): {} stage {}, blocks {}..{}",
                w.id, w.class, w.device, s.model, s.stage, s.first_block, s.end_block
            );
        } else {
            eprintln!("  worker {} ({}, {}): idle", w.id, w.class, w.device);
        }
    }
    stop_signal().await;
    c.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn serve_without_worker_entries_takes_each_adapter_once() {
        let list = poolpipe_engine::gpu::list_adapters();
        let workers = super::local_workers().expect("an adapter (lavapipe)");
        assert!(!workers.is_empty());
        let gpu = list.iter().any(|a| a.device_type != "Cpu");
        let mut names = std::collections::HashSet::new();
        for w in &workers {
            assert_eq!((w.count, w.class.as_deref()), (1, None));
            let a = &list[w.device.parse::<usize>().expect("an adapter index")];
            assert!(names.insert(a.name.clone()), "{} twice", a.name);
            assert!(!gpu || a.device_type != "Cpu", "a CPU adapter next to a GPU: {}", a.name);
        }
    }
}
