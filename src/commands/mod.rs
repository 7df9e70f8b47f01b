//! The commands of the `poolpipe` binary, one module per command (`poolpipe bench` has one
//! per benchmark under [`bench`]). Each defines its clap arguments and `command`, which
//! `main.rs` calls; what the serving roles need lives in [`crate::serve`], never here.

use std::path::Path;

use anyhow::{Context, Result};

use crate::serve::controller::ClusterConfig;

pub mod bench;
pub mod certs;
pub mod controller;
pub mod demo;
pub mod devices;
pub mod frontend;
pub mod inspect;
pub mod load;
pub mod plan;
pub mod profile;
pub mod run;
pub mod serve;
pub mod simulate;
pub mod worker;

/// Prints a command's report: one JSON object on stdout with `json`, else the table
/// `render` makes for people.
pub fn print_report<T: serde::Serialize>(report: &T, json: bool, render: impl FnOnce(&T) -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", render(report));
    }
    Ok(())
}

/// The progress bar of a long command made of steps (`demo`, `bench serving`): elapsed time,
/// steps done and what runs now, ticking while a step runs.
pub fn step_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:20}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Runs a cluster role on a multi-threaded tokio runtime.
pub fn tokio_main<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?.block_on(f)
}

pub(crate) fn certs_of(cfg: &ClusterConfig) -> Result<&Path> {
    cfg.controller.certs.as_deref().context(
        "[controller] certs is not set: name the folder with ca.pem and the controller's certificate (`poolpipe certs init`, `poolpipe certs issue controller`)",
    )
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
