//! The `poolpipe` command line.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use poolpipe::frames::Preset;
use poolpipe::{bench, inspect, plan, profile, run};
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
    /// List every GPU adapter wgpu finds (all backends), with its key limits and its device
    /// class label (from the class file, else derived from the adapter name).
    Devices {
        /// Class file (TOML, [[class]] tables with name, match and optional backend) [default:
        /// $POOLPIPE_CLASSES, else ~/.config/poolpipe/classes.toml when it exists].
        #[arg(long, value_name = "FILE")]
        classes: Option<std::path::PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a model (built-in or ONNX file) on one device: outputs, top-5 for classifiers,
    /// latency and throughput, optionally checked against the CPU reference or onnxruntime.
    Run {
        /// Built-in model (resnet-mini, mobilenet-mini, segnet-mini) or the path of an .onnx file.
        #[arg(value_name = "MODEL")]
        model_arg: Option<String>,
        /// Same as MODEL (kept for scripts).
        #[arg(long, conflicts_with = "model_arg")]
        model: Option<String>,
        /// Input file, repeatable: an image (PNG, JPEG, BMP, PNM; fitted and normalised per
        /// --preset), a tensor of one frame [C,H,W] or N frames [N,C,H,W] (.npy, or .pb: a
        /// serialised ONNX TensorProto) of the input's element type (float16/32/64, integers,
        /// bool; other float types convert), or a .npz with one array per model input.
        /// Random frames when absent.
        #[arg(long, value_name = "FILE")]
        input: Vec<std::path::PathBuf>,
        /// How image pixels become values.
        #[arg(long, value_enum, default_value = "imagenet")]
        preset: Preset,
        /// Per-frame input shape for ONNX models with symbolic sizes, e.g. 3x224x224 (taken
        /// from the input tensors when absent).
        #[arg(long, value_name = "CxHxW")]
        input_shape: Option<run::Shape>,
        /// Frame height and width of built-in models.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Frames per batch [default: the number of input frames, else 4 for built-in models
        /// and 1 for ONNX files]; a single input frame is repeated to fill it.
        #[arg(long)]
        batch: Option<usize>,
        /// Adapter: an index from `poolpipe devices`, a name substring, vendor:NAME or type:cpu.
        #[arg(long, default_value = "default")]
        device: AdapterSelector,
        /// Timed runs after one warm-up.
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Compare with the CPU reference (default for built-in models).
        #[arg(long, conflicts_with = "no_check")]
        check: bool,
        /// Skip the comparison with the CPU reference.
        #[arg(long)]
        no_check: bool,
        /// Also run onnxruntime (python3) on the same inputs and print the error.
        #[arg(long)]
        compare_ort: bool,
        /// Write the outputs: .npy (one output) or .npz (every output, by the model's names).
        #[arg(long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        /// Seed of built-in weights and random frames.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show what a model holds: ops (and which are supported), parameters, and per layer at
    /// batch 1 the output type and shape, parameters and FLOPs, and the nodes that run on the
    /// host.
    Inspect {
        /// An .onnx file or a built-in model name.
        model: String,
        /// Per-frame input shape for models with symbolic sizes, e.g. 3x224x224.
        #[arg(long, value_name = "CxHxW")]
        input_shape: Option<run::Shape>,
        /// Frame size of built-in models.
        #[arg(long, default_value_t = 224)]
        size: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Profile a model per block on one device class: latency of every block at every batch
    /// size and share, in the published PPipe format (block-latency/, cut-bytes/), with a
    /// manifest of how it was measured.
    Profile {
        /// An .onnx file or a built-in model name.
        model: String,
        /// Output folder (created; profiles of other models and classes in it are kept).
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
        /// Adapter (as for `run`).
        #[arg(long, default_value = "default")]
        device: AdapterSelector,
        /// Device class label in the file names [default: from the class file, else derived
        /// from the adapter name, as `poolpipe devices` shows].
        #[arg(long)]
        class: Option<String>,
        /// Class file (as for `devices`).
        #[arg(long, value_name = "FILE")]
        classes: Option<std::path::PathBuf>,
        /// Model name in the file names [default: the file stem or built-in name].
        #[arg(long)]
        name: Option<String>,
        /// Number of blocks M.
        #[arg(long, default_value_t = 10)]
        blocks: usize,
        /// Largest accepted deviation of a block's runtime share from 1/M, relative to 1/M
        /// (the best achievable balance is used when no split meets it).
        #[arg(long, default_value_t = 0.25)]
        tolerance: f64,
        /// Batch sizes at share 1: 1..B (share 1/k profiles batches 1..B/k, as published:
        /// 8, 4, 2, 2 columns for B = 8).
        #[arg(long, default_value = "1..8", value_name = "1..B")]
        batches: BatchRange,
        /// Shares: k copies of the block run on the device at once for share 1/k.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
        shares: Vec<usize>,
        /// Untimed runs before timing.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Timed runs per copy (the median is reported).
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// How runs are timed: GPU timestamps when the adapter has them (auto), or wall clock.
        #[arg(long, value_enum, default_value = "auto")]
        timing: poolpipe::profile::Timing,
        /// Precision of boundary tensors between blocks.
        #[arg(long, default_value = "fp16")]
        precision: poolpipe_engine::boundary::Precision,
        /// Recompute the blocks even when the folder has a partition of this model (block files
        /// of other classes that no longer match are renamed *.stale).
        #[arg(long)]
        repartition: bool,
        /// Per-frame input shape for ONNX models with symbolic sizes, e.g. 3x224x224.
        #[arg(long, value_name = "CxHxW")]
        input_shape: Option<run::Shape>,
        /// Frame size of built-in models.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Seed of built-in weights and random inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object (the manifest) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Plan a fleet: how each model of the workload is cut, which pool of which GPU class
    /// serves each partition, with how many (v)GPUs and at which batch size (PPipe's MILP, or
    /// the NP and DART-r baselines). Prints the plan and writes it as JSON.
    Plan {
        /// Profile folder in the ppipe-data format (block-latency/, cut-bytes/, optional
        /// slo-us.csv), e.g. ../shared/ppipe-data or the output of `poolpipe profile`.
        #[arg(long, value_name = "DIR")]
        profiles: std::path::PathBuf,
        /// Fleet file (TOML): bandwidth_gbps and [[class]] tables (name, count, gpus_per_server).
        #[arg(long, value_name = "FILE")]
        fleet: std::path::PathBuf,
        /// Workload file (TOML): [[model]] tables (name, weight, optional slo_ms).
        #[arg(long, value_name = "FILE")]
        workload: std::path::PathBuf,
        /// ppipe, np or dart-r.
        #[arg(long, default_value = "ppipe")]
        planner: poolpipe_planner::PlannerKind,
        /// Write the plan (JSON) here.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        #[command(flatten)]
        opts: PlanArgs,
        /// Print the plan as one JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Simulate a plan on its fleet: the data-plane scheduler on a virtual clock, with workers
    /// that take the profiled latencies and NICs shared by the GPUs of a server. Prints SLO
    /// attainment, throughput, latency, utilisation per class and batch sizes, for one load or
    /// a load-factor sweep.
    Simulate {
        /// Plan (JSON) written by `poolpipe plan --out`.
        #[arg(long, value_name = "FILE")]
        plan: std::path::PathBuf,
        /// Profile folder the plan was made from.
        #[arg(long, value_name = "DIR")]
        profiles: std::path::PathBuf,
        /// Fleet file the plan was made for.
        #[arg(long, value_name = "FILE")]
        fleet: std::path::PathBuf,
        /// Workload file: its weights split the arrivals between models.
        #[arg(long, value_name = "FILE")]
        workload: std::path::PathBuf,
        #[command(flatten)]
        sim: SimArgs,
    },
    /// The cluster's certificates for mutual TLS between nodes: a cluster CA, and node
    /// certificates signed by it (each node serves and connects with its own).
    Certs {
        #[command(subcommand)]
        what: CertsCmd,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// A worker: owns one device, registers with the controller over QUIC (mutual TLS), runs
    /// the stage it is assigned and forwards batches along their reserved routes.
    Worker(poolpipe::cluster::WorkerArgs),
    /// The controller: registers workers, plans from the profiles, assigns stages, re-plans
    /// when workers join or leave or the mix moves; with its embedded frontend it serves the
    /// KServe v2 HTTP API too (frontend = "remote": a `poolpipe frontend` attaches instead).
    Controller(poolpipe::cluster::ControllerArgs),
    /// The frontend as its own process: attaches to a controller (frontend = "remote"), runs
    /// the scheduler with the batching policy and serves the KServe v2 HTTP API, `/metrics`
    /// and the admin endpoint.
    Frontend(poolpipe::cluster::FrontendArgs),
    /// Every role in one process for a single box: the controller, the frontend and the
    /// workers listed in the config's [[worker]] entries.
    Serve(poolpipe::cluster::ServeArgs),
    /// Load generator for a KServe v2 server (like perf_analyzer): open loop at a rate or
    /// closed loop at a concurrency, optionally a sweep; throughput, latency percentiles,
    /// attainment per step; CSV out.
    Load(poolpipe::load::LoadArgs),
    /// The whole system on this machine in about a minute: workers of two classes (lavapipe
    /// with different thread counts on a CPU-only box), profiles measured on the spot, a
    /// PPipe plan, a camera-frame load through the KServe v2 API and QUIC stages, then the
    /// same load on the single-stage (NP) plan; a report on the terminal and in HTML.
    Demo(poolpipe::demo::DemoArgs),
}

/// Simulation options of `simulate`.
#[derive(Args, Clone)]
struct SimArgs {
    /// Batching policy: ppipe (reservations), reactive (per-pool, Nexus-style), triton
    /// (per-pool dynamic batching), a WebAssembly module (FILE.wasm or FILE.wat, ABI in
    /// policies/ABI.md) or a built-in guest (wasm:ppipe, wasm:reactive, wasm:triton).
    #[arg(long, default_value = "ppipe")]
    policy: String,
    /// Reservation policy: earliest-finish, a module, or wasm:earliest_finish / wasm:same_server.
    #[arg(long, default_value = "earliest-finish")]
    reservation: String,
    /// Configuration handed to WebAssembly policies' init, e.g. "max_queue_delay_us=2000".
    #[arg(long, default_value = "")]
    policy_config: String,
    /// Deadline of one WebAssembly policy call, ms.
    #[arg(long, default_value_t = 1.0)]
    policy_deadline_ms: f64,
    /// Memory cap of a WebAssembly policy, MiB.
    #[arg(long, default_value_t = 16)]
    policy_memory_mib: usize,
    /// Fuel per WebAssembly policy call (deterministic limit) [default: none].
    #[arg(long)]
    policy_fuel: Option<u64>,
    /// Swap in this batching policy (same forms as --policy) at --swap-at, without stopping.
    #[arg(long, requires = "swap_at", conflicts_with = "sweep")]
    swap_to: Option<String>,
    /// When to swap, e.g. 10s.
    #[arg(long, value_parser = poolpipe::simulate::parse_duration, requires = "swap_to")]
    swap_at: Option<f64>,
    /// Offered load in requests/s over all models.
    #[arg(long, conflicts_with = "load_factor")]
    rate: Option<f64>,
    /// Offered load as a fraction of the plan's predicted throughput (or of the reference
    /// plan's) [default: 0.9 unless --rate is given].
    #[arg(long)]
    load_factor: Option<f64>,
    /// Simulated time of arrivals, e.g. 30s, 500ms, 2m.
    #[arg(long, default_value = "30s", value_parser = poolpipe::simulate::parse_duration)]
    duration: f64,
    /// Find the largest load factor (steps of --step, from --max-load-factor down) with
    /// attainment >= --target.
    #[arg(long, conflicts_with_all = ["rate", "load_factor"])]
    sweep: bool,
    /// Load-factor step of the sweep.
    #[arg(long, default_value_t = 0.05)]
    step: f64,
    /// Highest load factor of the sweep.
    #[arg(long, default_value_t = 1.0)]
    max_load_factor: f64,
    /// Attainment a sweep point must reach.
    #[arg(long, default_value_t = 0.99)]
    target: f64,
    /// Load factor 1.0 is this plan's predicted throughput instead (as the paper measures
    /// every system against PPipe's plan).
    #[arg(long, value_name = "FILE")]
    reference_plan: Option<std::path::PathBuf>,
    /// Arrival process: poisson or bursty (Gamma-renewal gaps with --cv).
    #[arg(long, default_value = "poisson")]
    arrivals: String,
    /// Coefficient of variation of bursty gaps.
    #[arg(long, default_value_t = 2.0)]
    cv: f64,
    /// Arrival trace: one timestamp in seconds a line, scaled to the offered rate; each
    /// request goes to a model drawn by weight.
    #[arg(long, value_name = "FILE")]
    trace: Option<std::path::PathBuf>,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Coefficient of variation of inference times around the profiles (0: as profiled).
    #[arg(long, default_value_t = 0.0)]
    jitter: f64,
    /// The workers are this much slower than their profiles (2: the profiles are 2x
    /// optimistic), to see the scheduler correct them from measured times.
    #[arg(long, default_value_t = 1.0)]
    slowdown: f64,
    /// Do not correct the profiles from the workers' measured times.
    #[arg(long)]
    no_correction: bool,
    /// triton: maximum queue delay in ms [default: the plan's batch-build estimate].
    #[arg(long)]
    max_queue_delay_ms: Option<f64>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// The cases of `bench planner` and `bench paper`: profiles, fleets and workloads.
#[derive(Args, Clone)]
struct CaseArgs {
    /// Profile folder (the published profiles by default).
    #[arg(long, value_name = "DIR", default_value = "../shared/ppipe-data")]
    profiles: std::path::PathBuf,
    /// Fleet files [default: configs/fleets/hc1..hc4.toml].
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    fleets: Vec<std::path::PathBuf>,
    /// Workload files [default: configs/workloads/group1..6.toml; bench paper --quick: groups
    /// 1 and 3].
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    workloads: Vec<std::path::PathBuf>,
}

impl CaseArgs {
    /// The fleets and workloads given, or the paper's clusters and these groups.
    fn resolve(&self, groups: &[usize]) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
        let fleets = if self.fleets.is_empty() {
            (1..=4).map(|i| std::path::PathBuf::from(format!("configs/fleets/hc{i}.toml"))).collect()
        } else {
            self.fleets.clone()
        };
        let workloads = if self.workloads.is_empty() {
            groups.iter().map(|i| std::path::PathBuf::from(format!("configs/workloads/group{i}.toml"))).collect()
        } else {
            self.workloads.clone()
        };
        (fleets, workloads)
    }
}

/// Planner options shared by `plan` and `bench planner`.
#[derive(Args, Clone)]
struct PlanArgs {
    /// Most partitions per pipeline (1..=3).
    #[arg(long, default_value_t = 2)]
    max_partitions: usize,
    /// Shares a vGPU may have (k for 1/k of a GPU); a class uses those it has profiles for.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    shares: Vec<usize>,
    /// Largest batch at share 1/1, 1/2, 1/3, 1/4 ...
    #[arg(long, value_delimiter = ',', default_value = "8,4,2,2")]
    max_batch: Vec<usize>,
    /// Only these batch sizes (comma-separated; 1 must be among them) [default: all].
    #[arg(long, value_delimiter = ',')]
    batches: Option<Vec<usize>>,
    /// Planning margin, a fraction of the SLO.
    #[arg(long, default_value_t = 0.4)]
    margin: f64,
    /// Batch-build factor of the latency estimate.
    #[arg(long, default_value_t = 1.3)]
    batch_build_factor: f64,
    /// Time limit of each solver call, seconds.
    #[arg(long, default_value_t = 10.0)]
    time_limit: f64,
    /// Relative gap at which the search may stop.
    #[arg(long, default_value_t = 1e-4)]
    gap: f64,
    /// How the MILP is searched: auto (a short joint search, then the split search), joint
    /// (branch and bound on the whole MILP) or split (GPU splits between models).
    #[arg(long, default_value = "auto")]
    search: poolpipe_planner::Search,
}

impl PlanArgs {
    fn options(&self) -> Result<poolpipe_planner::PlanOptions> {
        if !(self.time_limit.is_finite() && self.time_limit > 0.0) {
            anyhow::bail!("--time-limit {} must be a positive number of seconds", self.time_limit);
        }
        Ok(poolpipe_planner::PlanOptions {
            max_partitions: self.max_partitions,
            shares: self.shares.clone(),
            max_batch_per_share: self.max_batch.clone(),
            batches: self.batches.clone(),
            margin: self.margin,
            batch_build_factor: self.batch_build_factor,
            time_limit: std::time::Duration::from_secs_f64(self.time_limit),
            mip_gap: self.gap,
            search: self.search,
        })
    }
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Create a cluster CA: DIR/ca.pem (give it to every node) and DIR/ca.key (keep it safe;
    /// only `certs issue` needs it).
    Init {
        /// Folder for ca.pem and ca.key.
        #[arg(long, value_name = "DIR", default_value = "certs")]
        out: std::path::PathBuf,
        /// Replace an existing CA (every node certificate it signed stops being accepted).
        #[arg(long)]
        force: bool,
    },
    /// Issue a node certificate signed by the cluster CA: OUT/NAME.pem and OUT/NAME.key.
    Issue {
        /// Node name, also its TLS name (letters, digits, '-', '.'), e.g. worker-1.
        name: String,
        /// Folder of the CA (ca.pem, ca.key).
        #[arg(long, value_name = "DIR", default_value = "certs")]
        ca: std::path::PathBuf,
        /// Folder for the node's files [default: the CA's folder].
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Replace an existing certificate of that name.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// The serving path under load on an embedded cluster on this machine: p50/p99 at
    /// concurrency 1 against the model's batch-1 compute plus transport, the closed-loop
    /// capacity and goodput under open-loop Poisson around it, then the same with profiles
    /// made optimistic, showing the online correction converge.
    Serving(poolpipe::servebench::ServingArgs),
    /// Tensors over QUIC (poolpipe's transport, mutual TLS) against TLS 1.3 over TCP and plain
    /// TCP on loopback, in one run: throughput and per-tensor latency for each size, and the
    /// QUIC / TLS-over-TCP ratio.
    Transport {
        /// Tensor sizes (binary units: 64K, 1M, 16MiB).
        #[arg(long, value_delimiter = ',', default_value = "64K,1M,4M,16M", value_parser = poolpipe::netbench::parse_size)]
        sizes: Vec<usize>,
        /// An eighth of the bytes (a few seconds).
        #[arg(long)]
        quick: bool,
        /// MiB sent per size and transport in the throughput phase [default: 512; --quick: 64].
        #[arg(long)]
        mib: Option<u64>,
        /// Throughput rounds per size; the legs take turns and each leg's median round counts.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Largest UDP payload QUIC's path MTU discovery probes for (loopback carries 65507;
        /// Ethernet 1452).
        #[arg(long, default_value_t = 65507)]
        max_udp_payload: u16,
        /// QUIC stream receive window, bytes (K/M suffixes).
        #[arg(long, value_parser = poolpipe::netbench::parse_size)]
        stream_window: Option<usize>,
        /// QUIC connection receive window, bytes (K/M suffixes).
        #[arg(long, value_parser = poolpipe::netbench::parse_size)]
        connection_window: Option<usize>,
        /// Batches in flight per peer.
        #[arg(long)]
        in_flight: Option<u32>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Each built-in WebAssembly policy against its native twin on the same simulated run of
    /// a 100-GPU cluster: scheduler wall time per decision and per dispatched batch, the ratio,
    /// and whether both decided the same.
    Policies {
        /// Profile folder.
        #[arg(long, value_name = "DIR", default_value = "../shared/ppipe-data")]
        profiles: std::path::PathBuf,
        /// Fleet.
        #[arg(long, value_name = "FILE", default_value = "configs/fleets/hc2.toml")]
        fleet: std::path::PathBuf,
        /// Workload.
        #[arg(long, value_name = "FILE", default_value = "configs/workloads/group3.toml")]
        workload: std::path::PathBuf,
        /// Offered load, a fraction of the PPipe plan's throughput.
        #[arg(long, default_value_t = 0.9)]
        load_factor: f64,
        /// Simulated time of each run.
        #[arg(long, default_value = "10s", value_parser = poolpipe::simulate::parse_duration)]
        duration: f64,
        /// Runs of each side (the fastest is kept).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The paper's simulation experiment: for each cluster x group, PPipe, NP and DART-r plans
    /// swept with the ppipe policy under Poisson and bursty arrivals (load factor 1.0 = PPipe's
    /// plan), plus the PPipe plan with reactive batching; gains and low-class utilisation next
    /// to the paper's, a CSV and an SVG chart.
    Paper {
        #[command(flatten)]
        cases: CaseArgs,
        /// A few minutes on 2 cores: groups 1 and 3 only and 5 s per point.
        #[arg(long)]
        quick: bool,
        /// Simulated time per sweep point [default: 30s; --quick: 5s].
        #[arg(long, value_parser = poolpipe::simulate::parse_duration)]
        duration: Option<f64>,
        /// Load-factor step.
        #[arg(long, default_value_t = 0.05)]
        step: f64,
        /// Coefficient of variation of bursty gaps.
        #[arg(long, default_value_t = 2.0)]
        cv: f64,
        /// Workload weights of the bursty runs (the paper's bursty mix).
        #[arg(long, value_delimiter = ',', default_value = "0.39,0.26,0.35")]
        bursty_weights: Vec<f64>,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Folder for paper.csv and paper.svg.
        #[arg(long, value_name = "DIR", default_value = "bench-paper")]
        out: std::path::PathBuf,
        #[command(flatten)]
        opts: PlanArgs,
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// The three planners (ppipe, np, dart-r) on every fleet x workload: objective, planning
    /// time and proven gap per case, then the ppipe/np and ppipe/dart-r objective ratios.
    Planner {
        #[command(flatten)]
        cases: CaseArgs,
        #[command(flatten)]
        opts: PlanArgs,
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
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

/// Runs a cluster role on a multi-threaded tokio runtime.
fn tokio_main<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?.block_on(f)
}

fn run_cli(cli: Cli) -> Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or(cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.cmd {
        Cmd::Devices { classes, json } => devices(classes.as_deref(), json),
        Cmd::Worker(a) => tokio_main(poolpipe::cluster::worker(a)),
        Cmd::Controller(a) => tokio_main(poolpipe::cluster::controller(a)),
        Cmd::Frontend(a) => tokio_main(poolpipe::cluster::frontend(a)),
        Cmd::Serve(a) => tokio_main(poolpipe::cluster::serve(a)),
        Cmd::Demo(a) => {
            let bar = indicatif::ProgressBar::new(poolpipe::demo::steps(&a));
            bar.set_style(
                indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:20}] {pos}/{len} {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let json = a.json;
            let report =
                tokio_main(async move { poolpipe::demo::run(a, &bar).await.inspect(|_| bar.finish_and_clear()) })?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", poolpipe::demo::render(&report));
            }
            Ok(())
        }
        Cmd::Load(a) => {
            let report = poolpipe::load::run_blocking(&a, a.json)?;
            if let Some(path) = &a.csv {
                poolpipe::load::write_csv(&report, path)?;
            }
            if a.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", poolpipe::load::render(&report));
            }
            Ok(())
        }
        Cmd::Profile {
            model,
            out,
            device,
            class,
            classes,
            name,
            blocks,
            tolerance,
            batches,
            shares,
            warmup,
            iters,
            timing,
            precision,
            repartition,
            input_shape,
            size,
            seed,
            json,
        } => {
            let opts = profile::ProfileOptions {
                model,
                name,
                size,
                input_shape: input_shape.map(|s| s.0),
                seed,
                device,
                class,
                classes,
                out,
                blocks,
                tolerance,
                max_batch: batches.0,
                shares,
                warmup,
                iters,
                timing,
                precision,
                repartition,
                progress: true,
            };
            let report = profile::profile(&opts)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", profile::render(&report));
            }
            Ok(())
        }
        Cmd::Run {
            model_arg,
            model,
            input,
            preset,
            input_shape,
            size,
            batch,
            device,
            iters,
            check,
            no_check,
            compare_ort,
            output,
            seed,
            json,
        } => {
            let opts = run::RunOptions {
                model: model_arg.or(model).unwrap_or_else(|| "resnet-mini".into()),
                size,
                input_shape: input_shape.map(|s| s.0),
                batch,
                device,
                iters,
                check: if check {
                    Some(true)
                } else if no_check {
                    Some(false)
                } else {
                    None
                },
                seed,
                inputs: input,
                preset,
                output,
                compare_ort,
            };
            let report = run::run_model(&opts)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", run::render(&report));
            }
            if !report.failures.is_empty() {
                anyhow::bail!("{} on {}", report.failures.join("; "), report.device);
            }
            Ok(())
        }
        Cmd::Inspect { model, input_shape, size, json } => {
            let report = inspect::inspect(&model, size, input_shape.as_ref().map(|s| s.0.as_slice()))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", inspect::render(&report));
            }
            Ok(())
        }
        Cmd::Plan { profiles, fleet, workload, planner, out, opts, json } => {
            let inputs = plan::load_inputs(&profiles, &fleet, &workload)?;
            let p = plan::plan(&inputs, planner, opts.options()?)?;
            if let Some(out) = &out {
                plan::write(&p, out)?;
            }
            if json {
                println!("{}", serde_json::to_string(&p)?);
            } else {
                print!("{}", plan::render(&p));
                if let Some(out) = &out {
                    println!("\nplan written to {}", out.display());
                }
            }
            Ok(())
        }
        Cmd::Certs { what: CertsCmd::Init { out, force } } => {
            use poolpipe_transport::tls;
            if out.join("ca.key").exists() && !force {
                anyhow::bail!(
                    "{} already holds a CA; keep it (node certificates depend on it) or pass --force to replace it",
                    out.display()
                );
            }
            let (cert, key) = tls::save(&out, "ca", &tls::init_ca()?)?;
            println!(
                "cluster CA written: {} (share with every node) and {} (keep private)",
                cert.display(),
                key.display()
            );
            Ok(())
        }
        Cmd::Certs { what: CertsCmd::Issue { name, ca, out, force } } => {
            use poolpipe_transport::tls;
            let out = out.unwrap_or_else(|| ca.clone());
            if out.join(format!("{name}.key")).exists() && !force {
                anyhow::bail!("{} already has a certificate for '{name}'; pass --force to replace it", out.display());
            }
            let ca_id = tls::load(&ca, "ca").with_context(|| {
                format!("reading the cluster CA in {} (create one with `poolpipe certs init --out DIR`)", ca.display())
            })?;
            let (cert, key) = tls::save(&out, &name, &tls::issue(&ca_id.key_pem, &name)?)?;
            println!("certificate of '{name}' written: {} and {}", cert.display(), key.display());
            Ok(())
        }
        Cmd::Simulate { plan, profiles, fleet, workload, sim } => {
            simulate_cmd(&plan, &profiles, &fleet, &workload, &sim)
        }
        Cmd::Bench { what: BenchCmd::Planner { cases, opts, json } } => {
            let (fleets, workloads) = cases.resolve(&[1, 2, 3, 4, 5, 6]);
            let report = plan::bench(&cases.profiles, &fleets, &workloads, &opts.options()?, !json)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", plan::render_bench(&report));
            }
            Ok(())
        }
        Cmd::Bench {
            what: BenchCmd::Paper { cases, quick, duration, step, cv, bursty_weights, seed, out, opts, json },
        } => {
            let groups: Vec<usize> = if quick { vec![1, 3] } else { (1..=6).collect() };
            let (fleets, workloads) = cases.resolve(&groups);
            if !(cv.is_finite() && cv > 0.0) {
                anyhow::bail!("--cv {cv} must be a positive coefficient of variation");
            }
            let o = poolpipe::paper::PaperOptions {
                profiles: cases.profiles,
                fleets,
                workloads,
                bursty_weights: Some(bursty_weights),
                cv,
                duration_s: duration.unwrap_or(if quick { 5.0 } else { 30.0 }),
                step,
                seed,
                plan: opts.options()?,
                out,
            };
            let report = poolpipe::paper::run(&o, !json)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", poolpipe::paper::render(&report));
            }
            Ok(())
        }
        Cmd::Bench { what: BenchCmd::Policies { profiles, fleet, workload, load_factor, duration, repeats, json } } => {
            let inputs = plan::load_inputs(&profiles, &fleet, &workload)?;
            let p = plan::plan(&inputs, poolpipe_planner::PlannerKind::Ppipe, Default::default())?;
            let setup = poolpipe::simulate::setup_with(&p, &inputs.profiles, &inputs.fleet, &inputs.workload)?;
            if !(load_factor.is_finite() && load_factor > 0.0) {
                anyhow::bail!("--load-factor {load_factor} must be positive");
            }
            let cfg = poolpipe::sim::SimConfig::poisson(
                load_factor * setup.layout.planned_rate(),
                duration,
                setup.weights.clone(),
                1,
            );
            let pb = if json {
                indicatif::ProgressBar::hidden()
            } else {
                poolpipe::progress(8 * repeats as u64, "policies")
            };
            let report = poolpipe::policybench::run(&setup, &cfg, repeats, &pb)?;
            pb.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", poolpipe::policybench::render(&report));
            }
            Ok(())
        }
        Cmd::Bench {
            what:
                BenchCmd::Transport {
                    sizes,
                    quick,
                    mib,
                    rounds,
                    max_udp_payload,
                    stream_window,
                    connection_window,
                    in_flight,
                    json,
                },
        } => {
            let mut o = if quick {
                poolpipe_transport::bench::BenchOptions::quick()
            } else {
                poolpipe_transport::bench::BenchOptions::default()
            };
            o.sizes = sizes;
            if rounds == 0 {
                anyhow::bail!("--rounds must be at least 1");
            }
            o.rounds = rounds;
            if let Some(m) = mib {
                if m == 0 {
                    anyhow::bail!("--mib must be at least 1");
                }
                o.latency_bytes = o.latency_bytes * m / (o.bytes_per_size >> 20);
                o.bytes_per_size = m << 20;
            }
            let c = &mut o.config;
            c.max_udp_payload = max_udp_payload;
            if let Some(w) = stream_window {
                c.stream_window = w as u64;
                c.connection_window = c.connection_window.max(w as u64);
            }
            if let Some(w) = connection_window {
                c.connection_window = w as u64;
            }
            if let Some(n) = in_flight {
                c.max_in_flight = n;
            }
            let report = poolpipe::netbench::bench(&o, json)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", poolpipe::netbench::render(&report));
            }
            Ok(())
        }
        Cmd::Bench { what: BenchCmd::Serving(a) } => poolpipe::servebench::main(a),
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

fn simulate_cmd(
    plan: &std::path::Path,
    profiles: &std::path::Path,
    fleet: &std::path::Path,
    workload: &std::path::Path,
    a: &SimArgs,
) -> Result<()> {
    use poolpipe::simulate as s;
    let setup = s::load(plan, profiles, fleet, workload)?;
    if !(a.jitter.is_finite() && a.jitter >= 0.0) {
        anyhow::bail!("--jitter {} must be 0 or a positive coefficient of variation", a.jitter);
    }
    let max_delay = match a.max_queue_delay_ms {
        Some(ms) if !(ms.is_finite() && ms >= 0.0) => anyhow::bail!("--max-queue-delay-ms {ms} must be >= 0"),
        Some(ms) => Some(ms * 1e3),
        None => None,
    };
    let reference_rate = match &a.reference_plan {
        Some(p) => {
            let r = s::read_plan(p)?;
            r.objective * r.models.iter().map(|m| m.weight).sum::<f64>()
        }
        None => setup.layout.planned_rate(),
    };
    if reference_rate.is_nan() || reference_rate <= 0.0 {
        anyhow::bail!("the plan predicts no throughput: load factors mean nothing; give --rate");
    }
    if !(a.slowdown.is_finite() && a.slowdown > 0.0) {
        anyhow::bail!("--slowdown {} must be a positive factor (1: as profiled)", a.slowdown);
    }
    let base = poolpipe::sim::SimConfig {
        rate: reference_rate,
        duration_s: a.duration,
        arrivals: s::arrivals(&a.arrivals, a.cv, a.trace.as_ref())?,
        weights: Some(setup.weights.clone()),
        seed: a.seed,
        jitter: a.jitter,
        slowdown: a.slowdown,
        correct: !a.no_correction,
    };
    if !(a.policy_deadline_ms.is_finite() && a.policy_deadline_ms > 0.0) {
        anyhow::bail!("--policy-deadline-ms {} must be positive", a.policy_deadline_ms);
    }
    let spec = |batching: &str| s::PolicySpec {
        batching: batching.to_string(),
        reservation: a.reservation.clone(),
        config: a.policy_config.clone().into_bytes(),
        max_queue_delay_us: max_delay,
        limits: poolpipe_policies::wasm::Limits {
            deadline: std::time::Duration::from_secs_f64(a.policy_deadline_ms / 1e3),
            memory_bytes: a.policy_memory_mib << 20,
            fuel: a.policy_fuel,
        },
    };
    let policies = s::Policies::load(&spec(&a.policy))?;
    if a.sweep {
        let steps = (a.max_load_factor / a.step).floor().max(1.0) as u64;
        let pb = if a.json { indicatif::ProgressBar::hidden() } else { poolpipe::progress(steps, "sweeping") };
        let o = s::SweepOptions { reference_rate, step: a.step, max: a.max_load_factor, target: a.target };
        let w = s::sweep(&setup.layout, &policies, &base, &o, &pb)?;
        pb.finish_and_clear();
        if a.json {
            println!("{}", s::json(None, Some(&w)));
        } else {
            print!("{}", s::render_sweep(&w));
        }
        return Ok(());
    }
    let rate = match (a.rate, a.load_factor) {
        (Some(r), _) => r,
        (None, lf) => lf.unwrap_or(0.9) * reference_rate,
    };
    if !(rate.is_finite() && rate > 0.0) {
        anyhow::bail!("the offered load must be a positive rate (got {rate} req/s)");
    }
    let cfg = poolpipe::sim::SimConfig { rate, ..base };
    let swap = match (&a.swap_to, a.swap_at) {
        (Some(to), Some(at_s)) => {
            Some(poolpipe::sim::Swap { at_s, batching: s::Policies::load(&spec(to))?.batching(&setup.layout)? })
        }
        _ => None,
    };
    let r = poolpipe::sim::simulate_with(policies.scheduler(&setup.layout)?, &cfg, swap)?;
    if a.json {
        println!("{}", s::json(Some(&r), None));
    } else {
        print!("{}", s::render(&r));
    }
    Ok(())
}

/// Batch sizes 1..B given as "1..B" or "B".
#[derive(Clone, Debug)]
struct BatchRange(usize);

impl std::str::FromStr for BatchRange {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}' is not a batch range like 1..8 (profiles have one column per batch size from 1)");
        let (start, end) = match s.split_once("..") {
            Some((a, b)) => (
                a.trim().parse::<usize>().map_err(|_| bad())?,
                b.trim_start_matches('=').trim().parse::<usize>().map_err(|_| bad())?,
            ),
            None => (1, s.trim().parse::<usize>().map_err(|_| bad())?),
        };
        if start != 1 || end == 0 {
            return Err(bad());
        }
        Ok(BatchRange(end))
    }
}

fn devices(classes: Option<&std::path::Path>, json: bool) -> Result<()> {
    let list = list_adapters();
    if list.is_empty() {
        return Err(poolpipe_engine::EngineError::NoAdapter.into());
    }
    let cfg = poolpipe::classes::ClassConfig::load(classes)?;
    let labels: Vec<_> = list.iter().map(|a| cfg.label(a)).collect();
    if json {
        let adapters: Vec<serde_json::Value> = list
            .iter()
            .zip(&labels)
            .map(|(a, (class, source))| {
                let mut v = serde_json::to_value(a).expect("adapter descriptions serialize");
                v["class"] = serde_json::json!(class);
                v["class_source"] = serde_json::json!(source);
                v
            })
            .collect();
        println!("{}", serde_json::json!({ "adapters": adapters, "class_file": cfg.path }));
        return Ok(());
    }
    println!(
        "{:<3} {:<36} {:<12} {:<8} {:<7} {:<13} {:>10} {:>10} {:>6}  driver",
        "#", "name", "class", "vendor", "backend", "type", "max buffer", "max bind", "ts"
    );
    for (a, (class, source)) in list.iter().zip(&labels) {
        let mib = |b: u64| format!("{} MiB", b / (1024 * 1024));
        let class = if *source == poolpipe::classes::LabelSource::Config { format!("{class}*") } else { class.clone() };
        println!(
            "{:<3} {:<36} {:<12} {:<8} {:<7} {:<13} {:>10} {:>10} {:>6}  {}",
            a.index,
            a.name,
            class,
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
    match &cfg.path {
        Some(p) => println!("class: * from {}, others derived from the adapter name", p.display()),
        None => println!("class: derived from the adapter name (set your own with a class file, see --help)"),
    }
    Ok(())
}
