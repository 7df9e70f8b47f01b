//! The `poolpipe` command line.

use anyhow::Result;
use clap::{Parser, Subcommand};
use poolpipe::frames::Preset;
use poolpipe::{bench, inspect, run};
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
        /// --preset), a .npy tensor of one frame [C,H,W] or N frames [N,C,H,W], or a .npz
        /// with one array per model input. Random frames when absent.
        #[arg(long, value_name = "FILE")]
        input: Vec<std::path::PathBuf>,
        /// How image pixels become values.
        #[arg(long, value_enum, default_value = "imagenet")]
        preset: Preset,
        /// Per-frame input shape for ONNX models with symbolic sizes, e.g. 3x224x224 (taken
        /// from a .npy input when absent).
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
    /// Show what a model holds: ops (and which are supported), parameters, and per layer the
    /// output shape, parameters and FLOPs.
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
