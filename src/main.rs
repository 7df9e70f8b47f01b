//! The `poolpipe` command line: parses the arguments, sets up logging and hands each command
//! to its module in `poolpipe::commands`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use poolpipe::commands as c;

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
    /// List every GPU adapter wgpu finds (all backends), with its key limits and its device
    /// class label (from the class file, else derived from the adapter name).
    Devices(c::devices::DevicesArgs),
    /// Run a model (built-in or ONNX file) on one device: outputs, top-5 for classifiers,
    /// latency and throughput, optionally checked against the CPU reference or onnxruntime.
    Run(c::run::RunArgs),
    /// Show what a model holds: ops (and which are supported), parameters, and per layer at
    /// batch 1 the output type and shape, parameters and FLOPs, and the nodes that run on the
    /// host.
    Inspect(c::inspect::InspectArgs),
    /// Profile a model per block on one device class: latency of every block at every batch
    /// size and share, in the published PPipe format (block-latency/, cut-bytes/), with a
    /// manifest of how it was measured.
    Profile(c::profile::ProfileArgs),
    /// Plan a fleet: how each model of the workload is cut, which pool of which GPU class
    /// serves each partition, with how many (v)GPUs and at which batch size (PPipe's MILP, or
    /// the NP and DART-r baselines). Prints the plan and writes it as JSON.
    Plan(c::plan::PlanCmdArgs),
    /// Simulate a plan on its fleet: the data-plane scheduler on a virtual clock, with workers
    /// that take the profiled latencies and NICs shared by the GPUs of a server. Prints SLO
    /// attainment, throughput, latency, utilisation per class and batch sizes, for one load or
    /// a load-factor sweep.
    Simulate(c::simulate::SimulateArgs),
    /// The cluster's certificates for mutual TLS between nodes: a cluster CA, and node
    /// certificates signed by it (each node serves and connects with its own).
    Certs {
        #[command(subcommand)]
        what: c::certs::CertsCmd,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: c::bench::BenchCmd,
    },
    /// A worker: owns one device, registers with the controller over QUIC (mutual TLS), runs
    /// the stage it is assigned and forwards batches along their reserved routes.
    Worker(c::worker::WorkerArgs),
    /// The controller: registers workers, plans from the profiles, assigns stages, re-plans
    /// when workers join or leave or the mix moves; with its embedded frontend it serves the
    /// KServe v2 HTTP API too (frontend = "remote": a `poolpipe frontend` attaches instead).
    Controller(c::controller::ControllerArgs),
    /// The frontend as its own process: attaches to a controller (frontend = "remote"), runs
    /// the scheduler with the batching policy and serves the KServe v2 HTTP API, `/metrics`
    /// and the admin endpoint.
    Frontend(c::frontend::FrontendArgs),
    /// Every role in one process for a single box: the controller, the frontend and the
    /// workers listed in the config's [[worker]] entries.
    Serve(c::serve::ServeArgs),
    /// Load generator for a KServe v2 server (like perf_analyzer): open loop at a rate or
    /// closed loop at a concurrency, optionally a sweep; throughput, latency percentiles,
    /// attainment per step; CSV out.
    Load(c::load::LoadArgs),
    /// The whole system on this machine in about a minute: workers of two classes (lavapipe
    /// with different thread counts on a CPU-only box), profiles measured on the spot, a
    /// PPipe plan, a camera-frame load through the KServe v2 API and QUIC stages, then the
    /// same load on the single-stage (NP) plan; a report on the terminal and in HTML.
    Demo(c::demo::DemoArgs),
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.cmd {
        Cmd::Devices(a) => c::devices::command(a),
        Cmd::Run(a) => c::run::command(a),
        Cmd::Inspect(a) => c::inspect::command(a),
        Cmd::Profile(a) => c::profile::command(a),
        Cmd::Plan(a) => c::plan::command(a),
        Cmd::Simulate(a) => c::simulate::command(a),
        Cmd::Certs { what } => c::certs::command(what),
        Cmd::Bench { what } => c::bench::command(what),
        Cmd::Worker(a) => c::worker::command(a),
        Cmd::Controller(a) => c::controller::command(a),
        Cmd::Frontend(a) => c::frontend::command(a),
        Cmd::Serve(a) => c::serve::command(a),
        Cmd::Load(a) => c::load::command(a),
        Cmd::Demo(a) => c::demo::command(a),
    }
}
