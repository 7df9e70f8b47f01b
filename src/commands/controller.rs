//! `poolpipe controller`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use poolpipe_transport::config::TransportConfig;

use super::{certs_of, stop_signal};
use crate::serve::controller::{ClusterConfig, Controller, FrontendMode};
use crate::serve::worker::agent::{self};

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
    let (http_addr, http_options) = (cfg.controller.http, cfg.controller.http_options());
    let c = Controller::start(cfg, &identity, &ca, TransportConfig::default()).await?;
    let _task = match c.frontend_mode() {
        FrontendMode::Embedded => {
            let server = crate::serve::frontend::http::listen(c.frontend()?, http_addr, http_options)?;
            eprintln!(
                "controller: workers register at {} (QUIC); KServe v2 API at http://{}",
                c.addr()?,
                server.addr()
            );
            Some(server)
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

/// Runs `poolpipe controller`.
pub fn command(a: ControllerArgs) -> Result<()> {
    super::tokio_main(controller(a))
}
