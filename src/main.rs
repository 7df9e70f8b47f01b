//! The `poolpipe` command line.

use anyhow::Result;
use clap::{Parser, Subcommand};
use poolpipe::{bench, run};
use poolpipe_engine::gpu::{AdapterSelector, list_adapters};

#[derive(Parser)]
#[command(name = "poolpipe", version, about = "Pool-based pipeline-parallel CNN serving on mixed GPU fleets")]
struct Cli {
    /// Log filter (RUST_LOG overrides it), e.g. info or poolpipe_engine=debug. wgpu_hal is
    /// silent by default: probing the GL backend logs harmless EGL errors on headless machines.
    #[arg(long, global = true, default_value = "warn,wgpu_hal=off")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every GPU adapter wgpu finds (all backends), with its key limits.
    Devices {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a built-in model on one device, check it against the CPU reference, report speed.
    Run {
        /// Built-in model: resnet-mini, mobilenet-mini or segnet-mini.
        #[arg(long, default_value = "resnet-mini")]
        model: String,
        /// Frame height and width.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Frames per batch.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Adapter: an index from `poolpipe devices`, a name substring, vendor:NAME or type:cpu.
        #[arg(long, default_value = "default")]
        device: AdapterSelector,
        /// Timed runs after one warm-up.
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Skip the comparison with the CPU reference.
        #[arg(long)]
        no_check: bool,
        /// Seed of the weights and frames.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// GFLOP/s of conv and GEMM kernels on ResNet-50 / MobileNetV2 shapes, against naive
    /// one-output-per-invocation kernels measured in the same run.
    Kernels {
        /// Adapter (as for `run`).
        #[arg(long, default_value = "default")]
        device: AdapterSelector,
        /// Timed runs per kernel (median reported).
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Divide spatial sizes by this (e.g. 4 for a quick look on a CPU adapter).
        #[arg(long, default_value_t = 1)]
        scale_divisor: usize,
        /// Only shapes whose name or kind contains this text.
        #[arg(long)]
        only: Option<String>,
        /// Invocations per workgroup (both kernels).
        #[arg(long, default_value_t = 64)]
        workgroup_size: u32,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    match run_cli(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace for users.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: Cli) -> Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or(cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match cli.cmd {
        Cmd::Devices { json } => devices(json),
        Cmd::Run { model, size, batch, device, iters, no_check, seed, json } => {
            let opts = run::RunOptions { model, size, batch, device, iters, check: !no_check, seed };
            let report = run::run_model(&opts)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", run::render(&report));
            }
            Ok(())
        }
        Cmd::Bench { what: BenchCmd::Kernels { device, iters, scale_divisor, only, workgroup_size, json } } => {
            let report = bench::kernels(&device, iters, scale_divisor, only.as_deref(), workgroup_size)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", bench::render(&report));
            }
            Ok(())
        }
    }
}

fn devices(json: bool) -> Result<()> {
    let list = list_adapters();
    if list.is_empty() {
        return Err(poolpipe_engine::EngineError::NoAdapter.into());
    }
    if json {
        println!("{}", serde_json::json!({ "adapters": list }));
        return Ok(());
    }
    println!(
        "{:<3} {:<36} {:<8} {:<7} {:<13} {:>10} {:>10} {:>6}  driver",
        "#", "name", "vendor", "backend", "type", "max buffer", "max bind", "ts"
    );
    for a in &list {
        let mib = |b: u64| format!("{} MiB", b / (1024 * 1024));
        println!(
            "{:<3} {:<36} {:<8} {:<7} {:<13} {:>10} {:>10} {:>6}  {}",
            a.index,
            a.name,
            a.vendor,
            a.backend,
            a.device_type,
            mib(a.limits.max_buffer_size),
            mib(a.limits.max_storage_buffer_binding_size),
            if a.limits.timestamp_queries { "yes" } else { "no" },
            a.driver
        );
    }
    println!("\nselect one with --device INDEX | NAME | vendor:NAME | type:cpu (ts: GPU timestamp queries)");
    Ok(())
}
