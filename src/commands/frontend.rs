//! `poolpipe frontend`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use poolpipe_transport::config::TransportConfig;

use super::stop_signal;
use crate::serve::frontend::attach::{self, FrontendOptions};
use crate::serve::worker::agent::{self};

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

/// Runs `poolpipe frontend`.
pub fn command(a: FrontendArgs) -> Result<()> {
    super::tokio_main(frontend(a))
}
