//! `poolpipe serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use poolpipe_engine::gpu::AdapterSelector;
use poolpipe_transport::config::TransportConfig;
use poolpipe_transport::tls;

use super::stop_signal;
use crate::serve::controller::{ClusterConfig, Controller, FrontendMode, LocalWorker};
use crate::serve::worker::agent::{self, AgentOptions};

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
    let server = crate::serve::frontend::http::listen(c.frontend()?, http_addr, cfg.controller.http_options())?;
    let bound = server.addr();
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

/// Runs `poolpipe serve`.
pub fn command(a: ServeArgs) -> Result<()> {
    super::tokio_main(serve(a))
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
