//! `poolpipe worker`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use poolpipe_engine::gpu::AdapterSelector;
use poolpipe_transport::config::TransportConfig;

use crate::serve::worker::agent::{self, AgentOptions};

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

/// Runs `poolpipe worker`.
pub fn command(a: WorkerArgs) -> Result<()> {
    super::tokio_main(worker(a))
}
