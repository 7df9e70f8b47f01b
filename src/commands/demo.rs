//! `poolpipe demo`: a heterogeneous cluster on this machine, end to end, in about a minute.
//!
//! 1. Each worker class is profiled on the spot (`poolpipe profile` in a child process with
//!    the class's environment: on a CPU-only box two lavapipe classes differ by
//!    `LP_NUM_THREADS`).
//! 2. The controller and frontend start in this process; each worker is a `poolpipe worker`
//!    child process with its own device, registered over QUIC with certificates made for the
//!    run.
//! 3. The controller plans (PPipe) and assigns the stages; a Poisson camera-frame load goes
//!    through the real KServe v2 endpoint (`poolpipe load`'s generator).
//! 4. The controller re-plans with the single-stage baseline (NP) and the same load runs
//!    again.
//! 5. The report: throughput, SLO attainment, latency percentiles, utilisation per class and
//!    the plans, on the terminal (or as JSON) and as an HTML page with SVG charts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use poolpipe_transport::config::TransportConfig;
use poolpipe_transport::tls;
use serde::Serialize;

use super::tokio_main;
use crate::serve::controller::{ClusterConfig, Controller, ControllerConfig, ModelConfig};
use crate::serve::spec::ModelSource;

/// `poolpipe demo`.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Measured time of each load (one for each plan).
    #[arg(long, default_value = "20s", value_parser = crate::commands::simulate::parse_duration)]
    pub duration: f64,
    /// Request rate [default: 80% of the PPipe plan's predicted throughput].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Folder for profiles, certificates, logs and the report.
    #[arg(long, value_name = "DIR", default_value = "poolpipe-demo")]
    pub out: PathBuf,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// The model and workers of an embedded cluster on this machine (`poolpipe demo`, `poolpipe
/// bench serving`).
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Model: a built-in name or an .onnx file.
    #[arg(long, default_value = "resnet-mini")]
    pub model: String,
    /// Frame size of built-in models.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Per-frame input shape of ONNX models with symbolic sizes, e.g. 3x224x224.
    #[arg(long)]
    pub input_shape: Option<crate::models::Shape>,
    /// Workers as CLASS=DEVICE[@THREADS] (THREADS sets LP_NUM_THREADS for lavapipe), one
    /// flag per worker [default: one lavapipe worker with 2 threads (class lp2t) and two with
    /// 1 thread (class lp1t)].
    #[arg(long = "worker", value_name = "CLASS=DEVICE[@THREADS]")]
    pub workers: Vec<String>,
    /// SLO, ms [default: 10x the whole model's batch-1 latency on the fastest class, at least
    /// 200 ms].
    #[arg(long)]
    pub slo_ms: Option<f64>,
    /// Blocks to cut the model into.
    #[arg(long, default_value_t = 4)]
    pub blocks: usize,
    /// Largest batch.
    #[arg(long, default_value_t = 4)]
    pub max_batch: usize,
}

impl ClusterArgs {
    /// The workers given, or the default three.
    pub fn workers(&self) -> Result<Vec<DemoWorker>> {
        if self.workers.is_empty() {
            return Ok(default_workers());
        }
        self.workers.iter().map(|w| parse_worker(w)).collect()
    }

    /// How many worker classes there are (each is profiled).
    pub fn classes(&self) -> usize {
        let classes: std::collections::BTreeSet<String> = if self.workers.is_empty() {
            ["lp2t", "lp1t"].iter().map(|s| s.to_string()).collect()
        } else {
            self.workers.iter().map(|w| w.split('=').next().unwrap_or_default().to_string()).collect()
        };
        classes.len()
    }

    /// What to profile and serve; `name` and `arg` from [`model_name_and_arg`].
    pub(crate) fn spec<'a>(&'a self, name: &'a str, arg: &'a str) -> ModelSpec<'a> {
        ModelSpec {
            name,
            arg,
            size: self.size,
            input_shape: self.input_shape.as_ref(),
            blocks: self.blocks,
            max_batch: self.max_batch,
        }
    }

    /// The SLO: `--slo-ms`, else 10x the fastest class's whole-model batch-1 latency, at
    /// least 200 ms.
    pub fn slo_ms(&self, fastest_ms: f64) -> f64 {
        self.slo_ms.unwrap_or((fastest_ms * 10.0).max(200.0).round())
    }
}

/// One worker of the demo.
#[derive(Clone, Debug, Serialize)]
pub struct DemoWorker {
    /// Class label.
    pub class: String,
    /// Adapter selector.
    pub device: String,
    /// LP_NUM_THREADS, when set.
    pub threads: Option<usize>,
}

pub(crate) fn parse_worker(s: &str) -> Result<DemoWorker> {
    let (class, rest) =
        s.split_once('=').with_context(|| format!("--worker '{s}': expected CLASS=DEVICE[@THREADS]"))?;
    let (device, threads) = match rest.split_once('@') {
        Some((d, t)) => {
            let t: usize = t.parse().with_context(|| format!("--worker '{s}': THREADS '{t}' is not a number"))?;
            (d, Some(t))
        }
        None => (rest, None),
    };
    if class.is_empty() || class.contains(['/', '\\', ' ']) {
        bail!("--worker '{s}': the class must be a plain label");
    }
    Ok(DemoWorker { class: class.into(), device: device.into(), threads })
}

/// One stage of a plan, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct PlanStage {
    /// Blocks `[first, end)`.
    pub blocks: [usize; 2],
    /// Class.
    pub class: String,
    /// Workers in its pool.
    pub workers: usize,
}

/// One pipeline of a plan.
#[derive(Clone, Debug, Serialize)]
pub struct PlanPipeline {
    /// Planned batch.
    pub batch: usize,
    /// Predicted requests per second.
    pub throughput: f64,
    /// Stages.
    pub stages: Vec<PlanStage>,
}

/// One run of the load under one plan.
#[derive(Clone, Debug, Serialize)]
pub struct DemoRun {
    /// Planner: ppipe or np.
    pub planner: String,
    /// Predicted throughput of the plan, requests per second.
    pub predicted: f64,
    /// Pipelines.
    pub pipelines: Vec<PlanPipeline>,
    /// What the load generator measured.
    pub load: crate::commands::load::StepReport,
    /// Busy fraction of each class's devices during the load.
    pub utilisation: BTreeMap<String, f64>,
    /// Batches sent, by size.
    pub batch_sizes: BTreeMap<usize, u64>,
    /// Frames dropped by the scheduler, late, failed.
    pub dropped: u64,
    /// Frames answered after their deadline.
    pub late: u64,
    /// Frames failed.
    pub failed: u64,
}

/// The demo's report.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    /// Model.
    pub model: String,
    /// Per-frame input shape.
    pub input: Vec<usize>,
    /// SLO, ms.
    pub slo_ms: f64,
    /// Offered rate, requests per second.
    pub rate: f64,
    /// What the cluster served in the closed-loop probe that set the rate, requests per
    /// second (none when --rate was given).
    pub capacity: Option<f64>,
    /// Workers.
    pub workers: Vec<DemoWorker>,
    /// Whole-model batch-1 latency per class, ms (measured).
    pub whole_ms: BTreeMap<String, f64>,
    /// The PPipe run, then the NP run.
    pub runs: Vec<DemoRun>,
    /// The HTML report written.
    pub html: PathBuf,
    /// Seconds the demo took.
    pub seconds: f64,
}

pub(crate) struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn exe() -> Result<PathBuf> {
    std::env::current_exe().context("finding the poolpipe binary")
}

/// The default workers: one lavapipe worker with 2 threads (class lp2t), two with 1 (lp1t).
pub(crate) fn default_workers() -> Vec<DemoWorker> {
    vec![
        DemoWorker { class: "lp2t".into(), device: "default".into(), threads: Some(2) },
        DemoWorker { class: "lp1t".into(), device: "default".into(), threads: Some(1) },
        DemoWorker { class: "lp1t".into(), device: "default".into(), threads: Some(1) },
    ]
}

/// The model's name in the API and the `model` argument workers and `profile` get (a built-in
/// name, or an ONNX file's absolute path).
pub(crate) fn model_name_and_arg(model: &str) -> Result<(String, String)> {
    if crate::models::is_model_file(model) {
        let name =
            Path::new(model).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        let arg = Path::new(model).canonicalize().with_context(|| format!("model file {model}"))?.display().to_string();
        Ok((name, arg))
    } else {
        Ok((model.to_string(), model.to_string()))
    }
}

/// What to profile and serve.
pub(crate) struct ModelSpec<'a> {
    /// API name.
    pub name: &'a str,
    /// Built-in name or ONNX path.
    pub arg: &'a str,
    /// Frame size of built-in models.
    pub size: usize,
    /// Per-frame input shape of ONNX models with symbolic sizes.
    pub input_shape: Option<&'a crate::models::Shape>,
    /// Blocks to cut the model into.
    pub blocks: usize,
    /// Largest batch.
    pub max_batch: usize,
}

/// Profiles each worker class on the spot (`poolpipe profile` in a child process with the
/// class's environment) into `profiles`; returns the whole model's batch-1 latency per class,
/// ms. One `progress` step per class.
pub(crate) async fn profile_classes(
    m: &ModelSpec<'_>,
    workers: &[DemoWorker],
    profiles: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<BTreeMap<String, f64>> {
    let mut classes: BTreeMap<String, DemoWorker> = BTreeMap::new();
    for w in workers {
        classes.entry(w.class.clone()).or_insert_with(|| w.clone());
    }
    let mut whole_ms = BTreeMap::new();
    for (class, w) in &classes {
        progress.set_message(format!("profiling {} on class {class} (device {})", m.name, w.device));
        let mut cmd = Command::new(exe()?);
        cmd.args(["profile", m.arg, "--name", m.name, "--out"])
            .arg(profiles)
            .args(["--class", class, "--device", &w.device, "--blocks", &m.blocks.to_string()])
            .args(["--batches", &format!("1..{}", m.max_batch), "--shares", "1", "--warmup", "1", "--iters", "3"])
            .args(["--size", &m.size.to_string(), "--json"]);
        if let Some(s) = m.input_shape {
            cmd.args(["--input-shape", &s.0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")]);
        }
        if let Some(t) = w.threads {
            cmd.env("LP_NUM_THREADS", t.to_string());
        }
        let o = tokio::task::spawn_blocking(move || cmd.output()).await??;
        if !o.status.success() {
            bail!("profiling class {class}: {}", String::from_utf8_lossy(&o.stderr).trim());
        }
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).context("reading the profile report")?;
        let us = r["whole_model_us"][0].as_f64().unwrap_or(0.0);
        whole_ms.insert(class.clone(), us / 1e3);
        progress.inc(1);
    }
    Ok(whole_ms)
}

/// The embedded cluster's configuration: PPipe planner and policy, loopback addresses.
pub(crate) fn cluster_config(m: &ModelSpec<'_>, profiles: &Path, workers: usize, slo_ms: f64) -> ClusterConfig {
    ClusterConfig {
        controller: ControllerConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            advertise: None,
            name: "controller".into(),
            http: ([127, 0, 0, 1], 0).into(),
            certs: None,
            profiles: profiles.to_path_buf(),
            planner: "ppipe".into(),
            policy: "ppipe".into(),
            workers,
            max_partitions: 2,
            max_batch: m.max_batch,
            bandwidth_gbps: 10.0,
            dead_after_ms: 2000,
            drain_timeout_ms: 5000,
            admin_token: None,
            reject_non_finite: true,
            mix_window_s: 30.0,
            mix_threshold: 0.0,
            // The runs compare fixed plans: no re-plan from the corrections mid-measurement.
            replan_correction: 0.0,
            max_queue: None,
            plan_time_limit_s: 10.0,
            profile_scale: 1.0,
            frontend: crate::serve::controller::FrontendMode::Embedded,
            limits: Default::default(),
        },
        model: vec![ModelConfig {
            name: m.name.to_string(),
            source: ModelSource {
                model: m.arg.to_string(),
                size: m.size,
                seed: 1,
                input_shape: m.input_shape.map(|s| s.0.clone()),
            },
            weight: 1.0,
            slo_ms,
        }],
        worker: vec![],
    }
}

/// A cluster on this machine: the controller and its frontend in this process (HTTP API on
/// loopback), each worker a `poolpipe worker` child process over QUIC.
pub(crate) struct EmbeddedCluster {
    /// The controller.
    pub controller: Controller,
    /// The KServe v2 HTTP API.
    pub http_addr: std::net::SocketAddr,
    server: Option<crate::serve::frontend::server::HttpServer>,
    children: Children,
}

impl EmbeddedCluster {
    /// Starts the controller with `cfg` (certificates made under `out/certs` for the run) and
    /// one worker process per entry of `workers` (logs in `out/worker-N.log`). Returns before
    /// the first plan: see [`Controller::wait_plan`].
    pub async fn start(cfg: ClusterConfig, workers: &[DemoWorker], out: &Path) -> Result<EmbeddedCluster> {
        cfg.validate()?;
        let certs = out.join("certs");
        std::fs::create_dir_all(&certs)?;
        let ca = tls::init_ca()?;
        std::fs::write(certs.join("ca.pem"), &ca.cert_pem)?;
        let controller =
            Controller::start(cfg, &tls::issue(&ca.key_pem, "controller")?, &ca.cert_pem, TransportConfig::default())
                .await?;
        let server = crate::serve::frontend::http::listen(
            controller.frontend()?,
            ([127, 0, 0, 1], 0).into(),
            Default::default(),
        )?;
        let http_addr = server.addr();
        let server = Some(server);
        let ctl_addr = controller.addr()?.to_string();
        let mut children = Children(vec![]);
        for (i, w) in workers.iter().enumerate() {
            let wname = format!("worker-{}", i + 1);
            tls::save(&certs, &wname, &tls::issue(&ca.key_pem, &wname)?)?;
            let log = std::fs::File::create(out.join(format!("{wname}.log")))?;
            let mut cmd = Command::new(exe()?);
            cmd.args(["worker", "--controller", &ctl_addr, "--name", &wname, "--class", &w.class])
                .args(["--device", &w.device])
                .arg("--certs")
                .arg(&certs)
                .env("RUST_LOG", "info,wgpu_hal=off")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            if let Some(t) = w.threads {
                cmd.env("LP_NUM_THREADS", t.to_string());
            }
            children.0.push(cmd.spawn().context("starting a worker process")?);
        }
        Ok(EmbeddedCluster { controller, http_addr, server, children })
    }

    /// Stops the controller, the HTTP API and the worker processes.
    pub fn stop(mut self) {
        self.controller.shutdown();
        drop(self.server.take());
        drop(self.children);
    }
}

/// Runs the demo.
pub async fn run(a: DemoArgs, progress: &indicatif::ProgressBar) -> Result<DemoReport> {
    let started = Instant::now();
    let workers = a.cluster.workers()?;
    if !(1..=16).contains(&a.cluster.max_batch) {
        bail!("--max-batch {} is outside 1..=16", a.cluster.max_batch);
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let out = a.out.canonicalize()?;
    let profiles = out.join("profiles");
    let (name, model_arg) = model_name_and_arg(&a.cluster.model)?;
    let spec = a.cluster.spec(&name, &model_arg);

    // 1. Profiles of each class, measured now.
    let whole_ms = profile_classes(&spec, &workers, &profiles, progress).await?;
    let fastest = whole_ms.values().copied().fold(f64::INFINITY, f64::min);
    let slo_ms = a.cluster.slo_ms(fastest);

    // 2. Certificates, the controller, the workers.
    progress.set_message("starting the controller and the workers".to_string());
    let cluster =
        EmbeddedCluster::start(cluster_config(&spec, &profiles, workers.len(), slo_ms), &workers, &out).await?;
    let controller = &cluster.controller;
    let http_addr = cluster.http_addr;

    // 3. and 4. The load under each plan.
    let mut runs = vec![];
    let mut rate = a.rate;
    let mut capacity = None;
    for (generation, planner) in [(1u64, "ppipe"), (2, "np")] {
        if planner != "ppipe" {
            progress.set_message("re-planning with the single-stage baseline (NP): draining, reassigning".to_string());
            controller.set_planner(planner)?;
        } else {
            progress.set_message(format!("waiting for {} workers to register and compile", workers.len()));
        }
        controller
            .wait_plan(generation, Duration::from_secs(300))
            .await
            .with_context(|| format!("the cluster did not come up; the workers' logs are in {}", out.display()))?;
        progress.inc(1);
        let plan = controller.plan().context("a plan is installed")?;
        let predicted: f64 = plan.models.iter().map(|m| m.throughput).sum();
        if rate.is_none() {
            // Profiles are measured one class at a time; workers sharing this machine's cores
            // run slower together. The rate is 70% of what the cluster serves in a short
            // closed-loop probe (at most 80% of the plan's prediction).
            progress.set_message("measuring the cluster's capacity (closed loop, 5 s)".to_string());
            let probe = load_args(
                &http_addr.to_string(),
                &name,
                &["--concurrency", &(2 * workers.len()).to_string()],
                "5s",
                slo_ms,
            )?;
            let r = crate::commands::load::run(&probe, &|_: &str| {}).await?;
            let served = r.steps.first().map_or(0.0, |s| s.throughput);
            capacity = Some(served);
            rate = Some((0.7 * served).min(0.8 * predicted).max(1.0));
        }
        let offered = rate.unwrap_or(1.0);
        let pipelines = plan.models[0]
            .pipelines
            .iter()
            .map(|p| PlanPipeline {
                batch: p.batch,
                throughput: p.throughput,
                stages: p
                    .partitions
                    .iter()
                    .map(|s| PlanStage {
                        blocks: [s.first_block, s.end_block],
                        class: s.class.clone(),
                        workers: s.vgpus,
                    })
                    .collect(),
            })
            .collect();
        progress.set_message(format!("{planner}: {offered:.1} frames/s for {:.0} s", a.duration));
        let before = controller.frontend()?.stats();
        let args = load_args(
            &http_addr.to_string(),
            &name,
            &["--rate", &offered.to_string()],
            &format!("{}s", a.duration),
            slo_ms,
        )?;
        let window = Instant::now();
        let p = progress.clone();
        let report =
            crate::commands::load::run(&args, &move |m: &str| p.set_message(format!("{planner}: {m}"))).await?;
        let seconds = window.elapsed().as_secs_f64();
        let after = controller.frontend()?.stats();
        progress.inc(1);
        let step = report.steps.into_iter().next().context("the load ran one step")?;
        // Utilisation per class: device seconds reported over the window, per worker.
        let views = controller.workers();
        let mut busy: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for v in &views {
            let e = busy.entry(v.class.clone()).or_default();
            let s = after.compute_by_worker.get(&v.id).copied().unwrap_or(0.0)
                - before.compute_by_worker.get(&v.id).copied().unwrap_or(0.0);
            e.0 += s;
            e.1 += 1;
        }
        let utilisation = busy.into_iter().map(|(c, (s, n))| (c, (s / (seconds * n as f64)).min(1.0))).collect();
        let mut batch_sizes = after.batch_sizes.clone();
        for (k, v) in &before.batch_sizes {
            if let Some(x) = batch_sizes.get_mut(k) {
                *x -= v;
            }
        }
        batch_sizes.retain(|_, v| *v > 0);
        runs.push(DemoRun {
            planner: planner.into(),
            predicted,
            pipelines,
            load: step,
            utilisation,
            batch_sizes,
            dropped: after.dropped - before.dropped,
            late: after.late - before.late,
            failed: after.failed - before.failed,
        });
    }
    let input = crate::serve::frontend::http::Backend::models(&controller.frontend()?)
        .first()
        .and_then(|m| m.inputs.first())
        .map(|t| t.shape.clone())
        .unwrap_or_default();
    cluster.stop();
    let html = out.join("report.html");
    let mut report = DemoReport {
        model: name,
        input,
        slo_ms,
        rate: rate.unwrap_or(0.0),
        capacity,
        workers,
        whole_ms,
        runs,
        html: html.clone(),
        seconds: 0.0,
    };
    report.seconds = started.elapsed().as_secs_f64();
    std::fs::write(&html, render_html(&report)).with_context(|| format!("writing {}", html.display()))?;
    Ok(report)
}

/// Load options as `poolpipe load` would parse them.
pub(crate) fn load_args(
    http: &str,
    model: &str,
    mode: &[&str],
    duration: &str,
    slo_ms: f64,
) -> Result<crate::commands::load::LoadArgs> {
    let mut argv: Vec<String> =
        vec!["load".into(), "--url".into(), format!("http://{http}"), "--model".into(), model.into()];
    argv.extend(mode.iter().map(|s| s.to_string()));
    argv.extend(["--duration".into(), duration.into(), "--warmup".into(), "1s".into(), "--binary".into()]);
    argv.extend(["--slo-ms".into(), slo_ms.to_string()]);
    Ok(LoadCli::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{e}"))?.args)
}

#[derive(Parser)]
struct LoadCli {
    #[command(flatten)]
    args: crate::commands::load::LoadArgs,
}

/// Steps of the demo's progress bar.
pub fn steps(a: &DemoArgs) -> u64 {
    a.cluster.classes() as u64 + 4
}

fn fmt_plan(r: &DemoRun) -> String {
    r.pipelines
        .iter()
        .map(|p| {
            let stages: Vec<String> = p
                .stages
                .iter()
                .map(|s| format!("blocks {}..{} on {} x{}", s.blocks[0], s.blocks[1], s.class, s.workers))
                .collect();
            format!("batch {}: {} ({:.1}/s)", p.batch, stages.join(" -> "), p.throughput)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The report for people.
pub fn render(r: &DemoReport) -> String {
    let mut s = format!(
        "poolpipe demo: {} (frames {:?}), SLO {:.0} ms, Poisson load at {:.1} frames/s, {} workers, {:.0} s in all\n",
        r.model,
        r.input,
        r.slo_ms,
        r.rate,
        r.workers.len(),
        r.seconds
    );
    if let Some(c) = r.capacity {
        s += &format!("  the rate is 70% of the {c:.1} frames/s the cluster served in a closed-loop probe\n");
    }
    for (c, ms) in &r.whole_ms {
        let n = r.workers.iter().filter(|w| &w.class == c).count();
        s += &format!("  class {c}: {n} worker(s), whole model at batch 1 {ms:.1} ms\n");
    }
    s += "\nplan    predicted/s  served/s  attainment   p50 ms   p90 ms   p99 ms  dropped  failed  utilisation\n";
    for run in &r.runs {
        let l = run.load.latency_ms.as_ref();
        let util: Vec<String> = run.utilisation.iter().map(|(c, u)| format!("{c} {:.0}%", u * 100.0)).collect();
        s += &format!(
            "{:<7} {:>11.1} {:>9.1} {:>10.1}% {:>8.1} {:>8.1} {:>8.1} {:>8} {:>7}  {}\n",
            run.planner,
            run.predicted,
            run.load.throughput,
            run.load.attainment * 100.0,
            l.map_or(f64::NAN, |l| l.p50),
            l.map_or(f64::NAN, |l| l.p90),
            l.map_or(f64::NAN, |l| l.p99),
            run.dropped,
            run.failed,
            util.join(", ")
        );
    }
    for run in &r.runs {
        s += &format!("\n{} plan: {}\n", run.planner, fmt_plan(run));
        let sizes: Vec<String> = run.batch_sizes.iter().map(|(b, n)| format!("{b}: {n}")).collect();
        s += &format!("  batches by size: {}\n", sizes.join(", "));
    }
    s += &format!("\nreport written to {}\n", r.html.display());
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A horizontal bar chart as SVG: one bar per (label, value).
fn bars(title: &str, unit: &str, rows: &[(String, f64)]) -> String {
    let max = rows.iter().map(|r| r.1).filter(|v| v.is_finite()).fold(0.0, f64::max).max(1e-9);
    let h = 30 + rows.len() * 28;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"520\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\
         <text x=\"0\" y=\"16\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 26 + i * 28;
        let w = if v.is_finite() { 300.0 * v / max } else { 0.0 };
        let color = if label.starts_with("ppipe") { "#2b6cb0" } else { "#a0aec0" };
        s += &format!(
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"110\" y=\"{y}\" width=\"{w:.1}\" height=\"20\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{}\">{v:.1} {}</text>",
            y + 15,
            esc(label),
            116.0 + w,
            y + 15,
            esc(unit)
        );
    }
    s + "</svg>"
}

/// The report as a self-contained HTML page with SVG charts.
pub fn render_html(r: &DemoReport) -> String {
    let per = |f: &dyn Fn(&DemoRun) -> f64| -> Vec<(String, f64)> {
        r.runs.iter().map(|x| (x.planner.clone(), f(x))).collect()
    };
    let mut body = format!("<h1>poolpipe demo</h1><pre>{}</pre>", esc(&render(r)));
    body += &bars("Served frames per second", "/s", &per(&|x| x.load.throughput));
    body += &bars("SLO attainment", "%", &per(&|x| x.load.attainment * 100.0));
    body += &bars("p99 latency", "ms", &per(&|x| x.load.latency_ms.as_ref().map_or(f64::NAN, |l| l.p99)));
    let mut util = vec![];
    for x in &r.runs {
        for (c, u) in &x.utilisation {
            util.push((format!("{} {c}", x.planner), u * 100.0));
        }
    }
    body += &bars("Utilisation per class", "%", &util);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>poolpipe demo: {}</title></head>\
         <body style=\"font-family:sans-serif;max-width:60em;margin:2em auto\">{body}</body></html>\n",
        esc(&r.model)
    )
}

/// Runs `poolpipe demo`.
pub fn command(a: DemoArgs) -> Result<()> {
    let bar = crate::commands::step_bar(steps(&a));
    let json = a.json;
    let report = tokio_main(async move { run(a, &bar).await.inspect(|_| bar.finish_and_clear()) })?;
    crate::commands::print_report(&report, json, render)
}
