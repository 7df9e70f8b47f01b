//! `poolpipe bench serving`: the serving path under load, on an embedded cluster on this
//! machine (the machinery of [`crate::commands::demo`]: classes profiled on the spot, controller and
//! frontend in this process, worker processes over QUIC) with a built-in model, driven through
//! the real KServe v2 HTTP API by `poolpipe load`'s generator ([`crate::commands::load`]).
//!
//! Three phases:
//!
//! - **(a) latency at concurrency 1**: p50 and p99 of one request at a time, against the
//!   model's own batch-1 compute (the workers' measure of these very requests) plus the
//!   transport (the frontend's mean non-compute time per batch in the same window). Goal:
//!   p50 <= 1.5 x (compute + transport). The ratio against the profile of the fastest planned
//!   pipeline (taken before the cluster started) is printed too.
//! - **(b) capacity and overload**: the goodput (successes within the SLO per second) of the
//!   best closed loop of a concurrency sweep is the capacity; then open-loop Poisson at 0.5x, 1.5x and 3x of it: goodput
//!   as a fraction of capacity (goal >= 0.9 at the loads at or above 1x), the answers by
//!   status, the p99 of the successes.
//! - **(c) optimistic profiles**: a second cluster planned and scheduled with every profiled
//!   time divided by `--optimistic` (`[controller] profile_scale`), so the frontend admits too
//!   much until its online correction learns the workers' real times. Poisson load at 0.8x of
//!   the true capacity from (b), attainment in 1-second windows (by issue time), the time after
//!   which every window holds >= 99% (goal: within 10 s), the correction ratios at the end,
//!   then the open-loop loads of (b) again.
//!
//! Must never: assert speed (ratios and goal marks are printed, never enforced), lose a
//! request from the counts (sent = successes + each HTTP status + transport errors), panic on
//! bad input.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::commands::demo::{ClusterArgs, DemoWorker, EmbeddedCluster};
use crate::commands::load::{LoadArgs, RequestSample, StepReport};

/// Goal of (a): p50 over compute + transport.
pub const LATENCY_GOAL: f64 = 1.5;
/// Goal of (b) and (c) at loads at or above capacity: goodput over capacity.
pub const GOODPUT_GOAL: f64 = 0.9;
/// Goal of (c): attainment of every window after convergence.
pub const ATTAINMENT_GOAL: f64 = 0.99;
/// Goal of (c): seconds to converge.
pub const CONVERGE_GOAL_S: f64 = 10.0;

/// `poolpipe bench serving`.
#[derive(clap::Args, Clone, Debug)]
pub struct ServingArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Measured time at concurrency 1 (a) [default: 10s; --quick: 3s].
    #[arg(long, value_parser = crate::commands::simulate::parse_duration)]
    pub latency_duration: Option<f64>,
    /// Measured time of each closed-loop capacity probe (b) [default: 5s; --quick: 2s].
    #[arg(long, value_parser = crate::commands::simulate::parse_duration)]
    pub capacity_duration: Option<f64>,
    /// Requests outstanding in the capacity probe [default: a sweep from twice the workers,
    /// doubling while the goodput grows by 5% or more, at most 5 probes].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Open-loop loads, as factors of the capacity, one step each.
    #[arg(long, value_delimiter = ',', default_value = "0.5,1.5,3")]
    pub loads: Vec<f64>,
    /// Measured time of each open-loop step [default: 15s; --quick: 3s].
    #[arg(long, value_parser = crate::commands::simulate::parse_duration)]
    pub duration: Option<f64>,
    /// (c): profiles this many times optimistic (the controller plans and schedules with every
    /// profiled time divided by it).
    #[arg(long, default_value_t = 2.0)]
    pub optimistic: f64,
    /// (c): the load of the convergence run, a factor of the true capacity.
    #[arg(long, default_value_t = 0.8)]
    pub converge_load: f64,
    /// (c): measured time of the convergence run [default: 20s; --quick: 6s].
    #[arg(long, value_parser = crate::commands::simulate::parse_duration)]
    pub converge_duration: Option<f64>,
    /// Skip phase (c).
    #[arg(long)]
    pub no_optimistic: bool,
    /// Every phase short (about a minute and a half on 2 cores), for tests and a first look.
    #[arg(long)]
    pub quick: bool,
    /// Seed of the arrivals and inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Folder for profiles, certificates and worker logs.
    #[arg(long, value_name = "DIR", default_value = "poolpipe-bench-serving")]
    pub out: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Durations of the phases, seconds, after --quick and the flags.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Durations {
    /// (a).
    pub latency_s: f64,
    /// Each capacity probe.
    pub capacity_s: f64,
    /// Each open-loop step.
    pub step_s: f64,
    /// (c)'s convergence run.
    pub converge_s: f64,
    /// Warm-up before (a), the probe and each step (none before the convergence run).
    pub warmup_s: f64,
}

/// Successes' latency, ms.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// What happened to the requests of one measured window.
#[derive(Clone, Debug, Serialize)]
pub struct Answers {
    /// Requests issued in the window.
    pub sent: u64,
    /// Answered 200.
    pub ok: u64,
    /// Of those, within the SLO.
    pub ok_within_slo: u64,
    /// Failed, by HTTP status (as text, e.g. "503").
    pub statuses: BTreeMap<String, u64>,
    /// Refused or reset connections, malformed answers, timeouts.
    pub transport_errors: u64,
    /// Successes per second.
    pub served_per_s: f64,
    /// Successes within the SLO per second.
    pub goodput_per_s: f64,
    /// Successes within the SLO over sent (0 when none was sent).
    pub attainment: f64,
    /// Latency of the successes (none without one).
    pub latency_ms: Option<Percentiles>,
    /// The distinct error messages, with counts (a sample: see [`crate::commands::load::MAX_MESSAGES`]).
    pub messages: BTreeMap<String, u64>,
}

/// What the frontend counted over a step (frames; the load's warm-up and its last answers
/// included, so these do not add up to the load's counts).
#[derive(Clone, Debug, Default, Serialize)]
pub struct FrontendCounts {
    /// Frames that arrived.
    pub arrived: u64,
    /// Refused at arrival (503), by reason.
    pub refused: BTreeMap<String, u64>,
    /// Answered after their deadline.
    pub late: u64,
    /// Dropped by the scheduler.
    pub dropped: u64,
    /// Failed.
    pub failed: u64,
    /// Mean time a frame queued at the frontend before its first dispatch, ms.
    pub queue_ms: Option<f64>,
    /// Mean compute of a batch (all its stages) as the workers reported it, ms.
    pub compute_ms: Option<f64>,
    /// Mean time of a batch from send to result not spent computing (transfers and waits
    /// at and between the workers), ms.
    pub transfer_ms: Option<f64>,
    /// Mean time a hop waited at its worker before the device started on it (part of
    /// `transfer_ms`), ms.
    pub worker_wait_ms: Option<f64>,
    /// Per worker (node id), the compute it reported over the window's wall time (1: busy
    /// all the time; warm-up included).
    pub worker_busy: BTreeMap<u32, f64>,
}

fn counts(
    before: &poolpipe_dataplane::FrontStats,
    after: &poolpipe_dataplane::FrontStats,
    wall_s: f64,
) -> FrontendCounts {
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    let mut refused = after.refused.clone();
    for (k, v) in refused.iter_mut() {
        *v = v.saturating_sub(before.refused.get(k).copied().unwrap_or(0));
    }
    refused.retain(|_, v| *v > 0);
    FrontendCounts {
        arrived: sum(&after.arrived_by_model).saturating_sub(sum(&before.arrived_by_model)),
        refused,
        late: after.late.saturating_sub(before.late),
        dropped: after.dropped.saturating_sub(before.dropped),
        failed: after.failed.saturating_sub(before.failed),
        queue_ms: mean_diff(&after.queue, &before.queue),
        compute_ms: mean_diff(&after.compute, &before.compute),
        transfer_ms: mean_diff(&after.transfer, &before.transfer),
        worker_wait_ms: mean_diff(&after.worker_wait, &before.worker_wait),
        worker_busy: worker_busy(before, after, wall_s),
    }
}

/// Per worker (node id), the compute it reported between `before` and `after` over `wall_s`.
fn worker_busy(
    before: &poolpipe_dataplane::FrontStats,
    after: &poolpipe_dataplane::FrontStats,
    wall_s: f64,
) -> BTreeMap<u32, f64> {
    after
        .compute_by_worker
        .iter()
        .map(|(&w, &s)| (w, (s - before.compute_by_worker.get(&w).copied().unwrap_or(0.0)) / wall_s.max(1e-9)))
        .collect()
}

/// (a): one request at a time.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyPhase {
    /// The answers.
    pub answers: Answers,
    /// The model's batch-1 compute, ms: its profile (measured in this run) summed along the
    /// fastest planned pipeline's stages.
    pub compute_ms: f64,
    /// The workers' reported compute per batch in this window, ms (mean).
    pub served_compute_ms: Option<f64>,
    /// Transport, ms: the frontend's mean time per batch from send to result not spent
    /// computing (transfers and waits between stages), in this window.
    pub transport_ms: Option<f64>,
    /// p50 / (the workers' compute of these very requests + transport): what the serving
    /// path adds to the model's own time (the goal's ratio).
    pub ratio: Option<f64>,
    /// p50 / (the profile's compute + transport): the same against the profile taken before
    /// the cluster started (one class at a time, so it moves with how busy the box is then).
    pub profile_ratio: Option<f64>,
    /// [`LATENCY_GOAL`].
    pub goal: f64,
    /// ratio <= goal.
    pub meets_goal: bool,
}

/// One closed-loop probe.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    /// Requests outstanding.
    pub concurrency: usize,
    /// The answers.
    pub answers: Answers,
    /// Per worker (node id), its reported compute over the probe's wall time.
    pub worker_busy: BTreeMap<u32, f64>,
}

/// The closed-loop capacity.
#[derive(Clone, Debug, Serialize)]
pub struct CapacityPhase {
    /// The probes, in order.
    pub probes: Vec<Probe>,
    /// The probe with the most goodput.
    pub best: usize,
    /// The capacity: the best probe's goodput, requests per second.
    pub capacity_per_s: f64,
}

/// One open-loop Poisson step.
#[derive(Clone, Debug, Serialize)]
pub struct LoadStep {
    /// Offered load over capacity.
    pub factor: f64,
    /// Offered requests per second.
    pub rate: f64,
    /// The answers.
    pub answers: Answers,
    /// Goodput over the capacity (may exceed 1: batches fill better under an open loop).
    pub goodput_of_capacity: f64,
    /// [`GOODPUT_GOAL`] when factor >= 1, else none (no goal below capacity).
    pub goal: Option<f64>,
    /// Whether the goal is met (none without a goal).
    pub meets_goal: Option<bool>,
    /// What the frontend counted.
    pub frontend: FrontendCounts,
}

/// One second of (c)'s convergence run, by issue time.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    /// Start, seconds after the load began.
    pub start_s: f64,
    /// Requests issued in it.
    pub sent: u64,
    /// Of those, successes within the SLO.
    pub good: u64,
    /// good / sent (1 when none was sent).
    pub attainment: f64,
}

/// A worker's profile correction, as the frontend keeps it.
pub use poolpipe_transport::control::NodeCorrection as Correction;

/// A Poisson run watched second by second (no warm-up: the first second is the load's).
#[derive(Clone, Debug, Serialize)]
pub struct WindowedRun {
    /// Load over the true capacity.
    pub factor: f64,
    /// Requests per second.
    pub rate: f64,
    /// The answers.
    pub answers: Answers,
    /// Attainment per second, by issue time.
    pub windows: Vec<Window>,
    /// Seconds after which every window holds [`ATTAINMENT_GOAL`] (none: the last did not).
    pub converged_after_s: Option<f64>,
    /// [`CONVERGE_GOAL_S`].
    pub goal_s: f64,
    /// converged_after_s <= goal_s.
    pub meets_goal: bool,
    /// Corrections at the end of the run.
    pub corrections: Vec<Correction>,
    /// The corrections every half second from the load's start.
    pub correction_series: Vec<CorrectionSample>,
    /// What the frontend counted.
    pub frontend: FrontendCounts,
}

/// (c): the cluster planned with optimistic profiles.
#[derive(Clone, Debug, Serialize)]
pub struct OptimisticPhase {
    /// Profiles this many times optimistic.
    pub optimistic: f64,
    /// `[controller] profile_scale` = 1 / optimistic.
    pub profile_scale: f64,
    /// Throughput the plan predicts, requests per second (from the scaled profiles).
    pub predicted_per_s: f64,
    /// The convergence run, from the cluster's first request.
    pub converge: WindowedRun,
    /// The open-loop steps of (b), at the same rates.
    pub loads: Vec<LoadStep>,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct ServingReport {
    /// Model.
    pub model: String,
    /// Per-frame input shape.
    pub input: Vec<usize>,
    /// SLO, ms.
    pub slo_ms: f64,
    /// Workers.
    pub workers: Vec<DemoWorker>,
    /// Whole-model batch-1 latency per class, ms (profiled in this run).
    pub whole_ms: BTreeMap<String, f64>,
    /// Throughput the true-profile plan predicts, requests per second.
    pub predicted_per_s: f64,
    /// Phase durations.
    pub durations: Durations,
    /// (a).
    pub latency: LatencyPhase,
    /// (b): the probe.
    pub capacity: CapacityPhase,
    /// (b): the open-loop steps.
    pub loads: Vec<LoadStep>,
    /// Corrections after (b), with the true profiles.
    pub corrections: Vec<Correction>,
    /// The convergence run of (c) on the cluster with the true profiles, after (b)'s probes
    /// (none when (c) is skipped): what the same load attains without the optimism.
    pub reference: Option<WindowedRun>,
    /// (c), unless skipped.
    pub optimistic: Option<OptimisticPhase>,
    /// Seconds the run took.
    pub seconds: f64,
}

fn durations(a: &ServingArgs) -> Durations {
    let q = a.quick;
    Durations {
        latency_s: a.latency_duration.unwrap_or(if q { 3.0 } else { 10.0 }),
        capacity_s: a.capacity_duration.unwrap_or(if q { 2.0 } else { 5.0 }),
        step_s: a.duration.unwrap_or(if q { 3.0 } else { 15.0 }),
        converge_s: a.converge_duration.unwrap_or(if q { 6.0 } else { 20.0 }),
        warmup_s: if q { 0.5 } else { 1.0 },
    }
}

fn check(a: &ServingArgs, d: &Durations) -> Result<()> {
    if !(1..=16).contains(&a.cluster.max_batch) {
        bail!("--max-batch {} is outside 1..=16", a.cluster.max_batch);
    }
    if !(1..=64).contains(&a.cluster.blocks) {
        bail!("--blocks {} is outside 1..=64", a.cluster.blocks);
    }
    if a.cluster.size == 0 {
        bail!("--size must be at least 1");
    }
    for (flag, v) in [
        ("--latency-duration", d.latency_s),
        ("--capacity-duration", d.capacity_s),
        ("--duration", d.step_s),
        ("--converge-duration", d.converge_s),
    ] {
        if !(0.5..=3600.0).contains(&v) {
            bail!("{flag} must be from 500ms to 1h");
        }
    }
    if a.loads.is_empty() || a.loads.iter().any(|f| !(f.is_finite() && *f > 0.0 && *f <= 100.0)) {
        bail!("--loads must list factors of the capacity in (0, 100], e.g. 0.5,1.5,3");
    }
    if !(a.optimistic.is_finite() && (0.05..=20.0).contains(&a.optimistic)) {
        bail!("--optimistic {} is outside 0.05..=20 (2: the profiles say twice the real speed)", a.optimistic);
    }
    if !(a.converge_load.is_finite() && a.converge_load > 0.0 && a.converge_load <= 100.0) {
        bail!("--converge-load {} must be a positive factor of the capacity", a.converge_load);
    }
    if let Some(s) = a.cluster.slo_ms
        && !(s.is_finite() && s > 0.0)
    {
        bail!("--slo-ms {s} must be a positive number of milliseconds");
    }
    if a.concurrency == Some(0) {
        bail!("--concurrency must be at least 1");
    }
    Ok(())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Sorts a measured window's requests into [`Answers`].
pub fn answers(requests: &[RequestSample], duration_s: f64, slo_ms: f64) -> Answers {
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut lat = vec![];
    let (mut transport_errors, mut good) = (0, 0);
    for r in requests {
        match r.status {
            200 => {
                lat.push(r.latency_ms);
                if r.latency_ms <= slo_ms {
                    good += 1;
                }
            }
            0 => transport_errors += 1,
            s => *statuses.entry(s.to_string()).or_default() += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    let sent = requests.len() as u64;
    let ok = lat.len() as u64;
    Answers {
        sent,
        ok,
        ok_within_slo: good,
        statuses,
        transport_errors,
        served_per_s: ok as f64 / duration_s,
        goodput_per_s: good as f64 / duration_s,
        attainment: if sent == 0 { 0.0 } else { good as f64 / sent as f64 },
        latency_ms: (!lat.is_empty()).then(|| Percentiles { p50: percentile(&lat, 0.5), p99: percentile(&lat, 0.99) }),
        messages: BTreeMap::new(),
    }
}

/// [`answers`] of a load step, with its error messages.
fn answers_of(step: &StepReport, duration_s: f64, slo_ms: f64) -> Answers {
    Answers { messages: step.error_messages.clone(), ..answers(&step.requests, duration_s, slo_ms) }
}

/// Attainment per `width`-second window of issue time over `[0, duration_s)`.
pub fn windows(requests: &[RequestSample], duration_s: f64, width: f64, slo_ms: f64) -> Vec<Window> {
    let n = (duration_s / width).ceil().max(1.0) as usize;
    let mut w: Vec<(u64, u64)> = vec![(0, 0); n];
    for r in requests {
        let i = ((r.issued_s / width).floor().max(0.0) as usize).min(n - 1);
        w[i].0 += 1;
        if r.status == 200 && r.latency_ms <= slo_ms {
            w[i].1 += 1;
        }
    }
    w.into_iter()
        .enumerate()
        .map(|(i, (sent, good))| Window {
            start_s: i as f64 * width,
            sent,
            good,
            attainment: if sent == 0 { 1.0 } else { good as f64 / sent as f64 },
        })
        .collect()
}

/// Start of the earliest window after which every window holds `goal` (none when the last
/// one does not).
pub fn converged_after(windows: &[Window], goal: f64) -> Option<f64> {
    let mut at = None;
    for w in windows.iter().rev() {
        if w.attainment >= goal {
            at = Some(w.start_s);
        } else {
            break;
        }
    }
    at
}

/// Every worker's correction under the current plan, in worker order.
fn corrections(cluster: &EmbeddedCluster) -> Result<Vec<Correction>> {
    Ok(corrections_of(&cluster.controller.frontend()?))
}

fn corrections_of(fe: &crate::serve::frontend::Frontend) -> Vec<Correction> {
    let mut v = fe.corrections();
    v.sort_by_key(|c| c.worker);
    v
}

/// The corrections in effect at one moment of a run.
#[derive(Clone, Debug, Serialize)]
pub struct CorrectionSample {
    /// Seconds after the load began.
    pub t_s: f64,
    /// Ratio of each worker (in worker order), 1 before enough reports.
    pub ratios: Vec<f64>,
}

/// Seconds between the samples of the corrections during a watched run.
const CORRECTION_EVERY_S: f64 = 0.5;

/// Drives one load step through the HTTP API.
#[allow(clippy::too_many_arguments)]
async fn drive(
    cluster: &EmbeddedCluster,
    model: &str,
    mode: &[&str],
    duration_s: f64,
    warmup_s: f64,
    slo_ms: f64,
    seed: u64,
    label: &str,
    progress: &indicatif::ProgressBar,
) -> Result<StepReport> {
    let mut args: LoadArgs = crate::commands::demo::load_args(
        &cluster.http_addr.to_string(),
        model,
        mode,
        &format!("{duration_s}s"),
        slo_ms,
    )?;
    args.warmup = warmup_s;
    args.seed = seed;
    args.timeout = (slo_ms / 1e3 * 5.0).max(10.0);
    tracing::info!(label, duration_s, "load step");
    let p = progress.clone();
    let label_owned = label.to_string();
    let report = crate::commands::load::run(&args, &move |m: &str| p.set_message(format!("{label_owned}: {m}")))
        .await
        .with_context(|| format!("{label}: the load generator failed"))?;
    progress.inc(1);
    report.steps.into_iter().next().context("the load ran one step")
}

fn open_step(step: &StepReport, factor: f64, rate: f64, d: f64, slo_ms: f64, capacity: f64) -> LoadStep {
    let answers = answers_of(step, d, slo_ms);
    let goodput_of_capacity = if capacity > 0.0 { answers.goodput_per_s / capacity } else { 0.0 };
    let goal = (factor >= 1.0).then_some(GOODPUT_GOAL);
    LoadStep {
        factor,
        rate,
        goodput_of_capacity,
        meets_goal: goal.map(|g| goodput_of_capacity >= g),
        goal,
        answers,
        frontend: FrontendCounts::default(),
    }
}

fn mean_diff(
    after: &crate::serve::frontend::http::Histogram,
    before: &crate::serve::frontend::http::Histogram,
) -> Option<f64> {
    let n = after.count.saturating_sub(before.count);
    (n > 0).then(|| (after.sum - before.sum) / n as f64 * 1e3)
}

/// Steps of the progress bar.
pub fn steps(a: &ServingArgs) -> u64 {
    let n = a.loads.len() as u64;
    let c = if a.no_optimistic { 0 } else { 3 + n };
    a.cluster.classes() as u64 + 3 + n + c
}

/// Runs the benchmark.
pub async fn run(a: ServingArgs, progress: &indicatif::ProgressBar) -> Result<ServingReport> {
    let started = Instant::now();
    let d = durations(&a);
    check(&a, &d)?;
    let workers = a.cluster.workers()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let out = a.out.canonicalize()?;
    let profiles = out.join("profiles");
    let (name, model_arg) = crate::commands::demo::model_name_and_arg(&a.cluster.model)?;
    let spec = a.cluster.spec(&name, &model_arg);

    // Profiles, measured now: the baseline of (a) and what the controller plans with.
    let whole_ms = crate::commands::demo::profile_classes(&spec, &workers, &profiles, progress).await?;
    let fastest = whole_ms.values().copied().fold(f64::INFINITY, f64::min);
    let slo_ms = a.cluster.slo_ms(fastest);

    // The cluster with the profiles as measured.
    let true_dir = out.join("true-profiles");
    std::fs::create_dir_all(&true_dir)?;
    progress.set_message("starting the cluster (profiles as measured)".to_string());
    let cfg = crate::commands::demo::cluster_config(&spec, &profiles, workers.len(), slo_ms);
    let cluster = EmbeddedCluster::start(cfg, &workers, &true_dir).await?;
    cluster
        .controller
        .wait_plan(1, Duration::from_secs(300))
        .await
        .with_context(|| format!("the cluster did not come up; the workers' logs are in {}", true_dir.display()))?;
    progress.inc(1);
    let plan = cluster.controller.plan().context("a plan is installed")?;
    let predicted_per_s: f64 = plan.models.iter().map(|m| m.throughput).sum();
    let compute_ms = pipeline_compute_ms(&profiles, &name, &plan)?;
    let input = crate::serve::frontend::http::Backend::models(&cluster.controller.frontend()?)
        .first()
        .and_then(|m| m.inputs.first())
        .map(|t| t.shape.clone())
        .unwrap_or_default();

    // (a) One request at a time.
    let before = cluster.controller.frontend()?.stats();
    let reqs = drive(
        &cluster,
        &name,
        &["--concurrency", "1"],
        d.latency_s,
        d.warmup_s,
        slo_ms,
        a.seed,
        "(a) concurrency 1",
        progress,
    )
    .await?;
    let after = cluster.controller.frontend()?.stats();
    let answers_a = answers_of(&reqs, d.latency_s, slo_ms);
    let transport_ms = mean_diff(&after.transfer, &before.transfer);
    let served_compute_ms = mean_diff(&after.compute, &before.compute);
    let transport = transport_ms.unwrap_or(0.0);
    let profile_ratio = answers_a.latency_ms.map(|l| l.p50 / (compute_ms + transport));
    let ratio = answers_a
        .latency_ms
        .map(|l| l.p50 / (served_compute_ms.filter(|c| *c > 0.0).unwrap_or(compute_ms) + transport));
    let latency = LatencyPhase {
        answers: answers_a,
        compute_ms,
        served_compute_ms,
        transport_ms,
        ratio,
        profile_ratio,
        goal: LATENCY_GOAL,
        meets_goal: ratio.is_some_and(|r| r <= LATENCY_GOAL),
    };

    // (b) Closed-loop capacity, then open-loop loads around it.
    let capacity = capacity(&cluster, &name, &a, &d, workers.len(), slo_ms, progress).await?;
    let capacity_per_s = capacity.capacity_per_s;
    if capacity_per_s <= 0.0 {
        let b = &capacity.probes[capacity.best].answers;
        bail!(
            "the cluster served nothing within the {slo_ms} ms SLO in the closed-loop probes ({} sent, {} ok): \
             give a larger --slo-ms or look at the workers' logs in {}",
            b.sent,
            b.ok,
            true_dir.display()
        );
    }
    let reference = if a.no_optimistic {
        None
    } else {
        Some(windowed(&cluster, &name, &a, &d, slo_ms, capacity_per_s, "(b) reference for (c)", progress).await?)
    };
    let loads = open_loads(&cluster, &name, &a, &d, slo_ms, capacity_per_s, "(b)", progress).await?;
    let corrections_true = corrections(&cluster)?;
    cluster.stop();

    // (c) The same cluster planned with optimistic profiles.
    let optimistic = if a.no_optimistic {
        None
    } else {
        let dir = out.join("optimistic-profiles");
        std::fs::create_dir_all(&dir)?;
        progress.set_message(format!("starting the cluster (profiles {}x optimistic)", a.optimistic));
        let mut cfg = crate::commands::demo::cluster_config(&spec, &profiles, workers.len(), slo_ms);
        cfg.controller.profile_scale = 1.0 / a.optimistic;
        let cluster = EmbeddedCluster::start(cfg, &workers, &dir).await?;
        cluster
            .controller
            .wait_plan(1, Duration::from_secs(300))
            .await
            .with_context(|| format!("the cluster did not come up; the workers' logs are in {}", dir.display()))?;
        progress.inc(1);
        let predicted: f64 = cluster.controller.plan().map_or(0.0, |p| p.models.iter().map(|m| m.throughput).sum());
        let converge = windowed(&cluster, &name, &a, &d, slo_ms, capacity_per_s, "(c) convergence", progress).await?;
        let loads = open_loads(&cluster, &name, &a, &d, slo_ms, capacity_per_s, "(c)", progress).await?;
        cluster.stop();
        Some(OptimisticPhase {
            optimistic: a.optimistic,
            profile_scale: 1.0 / a.optimistic,
            predicted_per_s: predicted,
            converge,
            loads,
        })
    };

    Ok(ServingReport {
        model: name,
        input,
        slo_ms,
        workers,
        whole_ms,
        predicted_per_s,
        durations: d,
        latency,
        capacity,
        loads,
        corrections: corrections_true,
        reference,
        optimistic,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Most closed-loop probes of the capacity sweep.
const MAX_PROBES: usize = 5;

/// The closed-loop capacity: `--concurrency`, or a sweep from twice the workers, doubling
/// while the goodput grows by 5% or more.
#[allow(clippy::too_many_arguments)]
async fn capacity(
    cluster: &EmbeddedCluster,
    name: &str,
    a: &ServingArgs,
    d: &Durations,
    workers: usize,
    slo_ms: f64,
    progress: &indicatif::ProgressBar,
) -> Result<CapacityPhase> {
    let mut probes: Vec<Probe> = vec![];
    let mut c = a.concurrency.unwrap_or(2 * workers).max(1);
    let mut best = 0;
    loop {
        if !probes.is_empty() {
            progress.inc_length(1);
        }
        let before = cluster.controller.frontend()?.stats();
        let began = std::time::Instant::now();
        let reqs = drive(
            cluster,
            name,
            &["--concurrency", &c.to_string()],
            d.capacity_s,
            d.warmup_s,
            slo_ms,
            a.seed.wrapping_add(1 + probes.len() as u64),
            &format!("(b) capacity, concurrency {c}"),
            progress,
        )
        .await?;
        let answers = answers_of(&reqs, d.capacity_s, slo_ms);
        let grew = probes.is_empty() || answers.goodput_per_s >= 1.05 * probes[best].answers.goodput_per_s;
        if answers.goodput_per_s > probes.get(best).map_or(f64::NEG_INFINITY, |p| p.answers.goodput_per_s) {
            best = probes.len();
        }
        let worker_busy = worker_busy(&before, &cluster.controller.frontend()?.stats(), began.elapsed().as_secs_f64());
        probes.push(Probe { concurrency: c, answers, worker_busy });
        if a.concurrency.is_some() || !grew || probes.len() >= MAX_PROBES {
            break;
        }
        c *= 2;
    }
    let capacity_per_s = probes[best].answers.goodput_per_s;
    Ok(CapacityPhase { probes, best, capacity_per_s })
}

/// Poisson at `--converge-load` x `capacity`, no warm-up, attainment per second.
#[allow(clippy::too_many_arguments)]
async fn windowed(
    cluster: &EmbeddedCluster,
    name: &str,
    a: &ServingArgs,
    d: &Durations,
    slo_ms: f64,
    capacity: f64,
    label: &str,
    progress: &indicatif::ProgressBar,
) -> Result<WindowedRun> {
    let rate = a.converge_load * capacity;
    let fe = cluster.controller.frontend()?;
    let before = fe.stats();
    let began = std::time::Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(CORRECTION_EVERY_S));
            let mut series = vec![];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let ratios = corrections_of(&fe).iter().map(|c| c.ratio).collect();
                series.push(CorrectionSample { t_s: t0.elapsed().as_secs_f64(), ratios });
            }
            series
        })
    };
    let reqs = drive(
        cluster,
        name,
        &["--rate", &rate.to_string()],
        d.converge_s,
        0.0,
        slo_ms,
        a.seed.wrapping_add(100),
        label,
        progress,
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let correction_series = poller.await.context("the correction sampler failed")?;
    let reqs = reqs?;
    let frontend = counts(&before, &cluster.controller.frontend()?.stats(), began.elapsed().as_secs_f64());
    let w = windows(&reqs.requests, d.converge_s, 1.0, slo_ms);
    let converged_after_s = converged_after(&w, ATTAINMENT_GOAL);
    Ok(WindowedRun {
        factor: a.converge_load,
        rate,
        answers: answers_of(&reqs, d.converge_s, slo_ms),
        windows: w,
        meets_goal: converged_after_s.is_some_and(|t| t <= CONVERGE_GOAL_S),
        converged_after_s,
        goal_s: CONVERGE_GOAL_S,
        corrections: corrections(cluster)?,
        correction_series,
        frontend,
    })
}

#[allow(clippy::too_many_arguments)]
async fn open_loads(
    cluster: &EmbeddedCluster,
    name: &str,
    a: &ServingArgs,
    d: &Durations,
    slo_ms: f64,
    capacity: f64,
    phase: &str,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<LoadStep>> {
    let mut loads = vec![];
    for (i, &f) in a.loads.iter().enumerate() {
        let rate = f * capacity;
        let before = cluster.controller.frontend()?.stats();
        let began = std::time::Instant::now();
        let reqs = drive(
            cluster,
            name,
            &["--rate", &rate.to_string()],
            d.step_s,
            d.warmup_s,
            slo_ms,
            a.seed.wrapping_add(10 + i as u64),
            &format!("{phase} {f}x capacity"),
            progress,
        )
        .await?;
        let mut step = open_step(&reqs, f, rate, d.step_s, slo_ms, capacity);
        step.frontend = counts(&before, &cluster.controller.frontend()?.stats(), began.elapsed().as_secs_f64());
        loads.push(step);
    }
    Ok(loads)
}

/// The model's batch-1 compute along the fastest planned pipeline, ms, from the profiles.
fn pipeline_compute_ms(profiles: &std::path::Path, model: &str, plan: &poolpipe_planner::plan::Plan) -> Result<f64> {
    let m = plan.models.iter().find(|m| m.name == model).context("the plan serves the model")?;
    let classes: Vec<String> = m
        .pipelines
        .iter()
        .flat_map(|p| p.partitions.iter().map(|s| s.class.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let prof = poolpipe_planner::profiles::load(profiles, &[model.to_string()], &classes)?;
    let prof = prof.first().context("the model's profiles")?;
    let mut best = f64::INFINITY;
    for p in &m.pipelines {
        let mut us = 0.0;
        for s in &p.partitions {
            let sh = prof.share(&s.class, 1).with_context(|| format!("no share-1 profile of class {}", s.class))?;
            us += sh
                .range_us(s.first_block..s.end_block, 1)
                .with_context(|| format!("no batch-1 profile of blocks {}..{}", s.first_block, s.end_block))?
                as f64;
        }
        best = best.min(us);
    }
    if !best.is_finite() {
        bail!("the plan has no pipeline for {model}");
    }
    Ok(best / 1e3)
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1}"))
}

fn mark(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn mix(a: &Answers) -> String {
    let mut parts = vec![format!("200 in SLO {}", a.ok_within_slo)];
    if a.ok > a.ok_within_slo {
        parts.push(format!("200 late {}", a.ok - a.ok_within_slo));
    }
    for (s, n) in &a.statuses {
        parts.push(format!("{s} {n}"));
    }
    if a.transport_errors > 0 {
        parts.push(format!("transport {}", a.transport_errors));
    }
    parts.join(", ")
}

fn load_table(loads: &[LoadStep]) -> String {
    let mut s =
        "  load   rate/s  sent  goodput/s  of capacity  goal      attainment  p99 ok ms  answers (frontend: refused, late frames; mean queue, transfer (of it waiting at workers) ms; workers busy)\n".to_string();
    for l in loads {
        let goal = match l.meets_goal {
            Some(m) => format!(">={:.1} {}", l.goal.unwrap_or(0.0), mark(m)),
            None => "-".into(),
        };
        s += &format!(
            "  {:<5} {:>7.1} {:>5} {:>10.1} {:>12.2}  {:<9} {:>9.1}%  {:>9}  {} ({}, {}; {}, {} ({}); {})\n",
            format!("{}x", l.factor),
            l.rate,
            l.answers.sent,
            l.answers.goodput_per_s,
            l.goodput_of_capacity,
            goal,
            l.answers.attainment * 100.0,
            ms(l.answers.latency_ms.map(|x| x.p99)),
            mix(&l.answers),
            l.frontend.refused.values().sum::<u64>(),
            l.frontend.late,
            ms(l.frontend.queue_ms),
            ms(l.frontend.transfer_ms),
            ms(l.frontend.worker_wait_ms),
            l.frontend.worker_busy.values().map(|b| format!("{b:.2}")).collect::<Vec<_>>().join("/")
        );
        for (m, n) in l.answers.messages.iter().filter(|(m, _)| !m.starts_with('(')).take(2) {
            let m: String = m.chars().take(110).collect();
            s += &format!("         {n} x {m}\n");
        }
    }
    s
}

fn windowed_text(what: &str, w: &WindowedRun) -> String {
    let per: Vec<String> = w.windows.iter().map(|w| format!("{:.0}%", w.attainment * 100.0)).collect();
    let series: Vec<String> = w
        .correction_series
        .iter()
        .filter(|c| [0.5, 1.0, 2.0, 5.0, 10.0].iter().any(|t| (c.t_s - t).abs() < 0.25))
        .map(|c| {
            let r: Vec<String> = c.ratios.iter().map(|r| format!("{r:.2}")).collect();
            format!("{:.1} s [{}]", c.t_s, r.join(" "))
        })
        .collect();
    format!(
        "      {what:<12} {} (all {:.1}%; >= {:.0}% from {}: goal within {:.0} s {})\n      {:<12} corrections: {}\n      {:<12} over time: {}\n",
        per.join(" "),
        w.answers.attainment * 100.0,
        ATTAINMENT_GOAL * 100.0,
        w.converged_after_s.map_or("never: the last second missed".into(), |t| format!("{t:.0} s on")),
        w.goal_s,
        mark(w.meets_goal),
        "",
        corr_text(&w.corrections),
        "",
        series.join(", ")
    )
}

fn corr_text(c: &[Correction]) -> String {
    if c.is_empty() {
        return "none reported".into();
    }
    c.iter()
        .map(|c| format!("worker {}: {:.2} ({} reports)", c.worker, c.ratio, c.reports))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report for people.
pub fn render(r: &ServingReport) -> String {
    let classes: Vec<String> = r.whole_ms.iter().map(|(c, ms)| format!("{c} {ms:.1} ms")).collect();
    let mut s = format!(
        "poolpipe bench serving: {} (frames {:?}), {} workers, SLO {:.0} ms, {:.0} s in all\n  whole model at batch 1: {}; the plan predicts {:.1}/s\n",
        r.model,
        r.input,
        r.workers.len(),
        r.slo_ms,
        r.seconds,
        classes.join(", "),
        r.predicted_per_s
    );
    let l = &r.latency;
    s += &format!(
        "\n(a) concurrency 1, {:.0} s: {} requests, p50 {} ms, p99 {} ms\n    compute {} ms (the workers' own, these requests; profile of the fastest pipeline {:.1} ms) + transport {} ms\n    p50 / (compute + transport) = {} (against the profile {}; goal <= {:.1}: {})\n",
        r.durations.latency_s,
        l.answers.sent,
        ms(l.answers.latency_ms.map(|x| x.p50)),
        ms(l.answers.latency_ms.map(|x| x.p99)),
        ms(l.served_compute_ms),
        l.compute_ms,
        ms(l.transport_ms),
        l.ratio.map_or("-".into(), |x| format!("{x:.2}")),
        l.profile_ratio.map_or("-".into(), |x| format!("{x:.2}")),
        l.goal,
        mark(l.meets_goal)
    );
    let c = &r.capacity;
    s += &format!(
        "\n(b) capacity: {:.1} requests/s within the SLO, the best closed loop of {:.0} s each:\n",
        c.capacity_per_s, r.durations.capacity_s
    );
    for (i, p) in c.probes.iter().enumerate() {
        s += &format!(
            "    concurrency {:>3}: goodput {:>7.1}/s, served {:>7.1}/s, p99 {} ms, workers busy {}{}\n",
            p.concurrency,
            p.answers.goodput_per_s,
            p.answers.served_per_s,
            ms(p.answers.latency_ms.map(|x| x.p99)),
            p.worker_busy.values().map(|b| format!("{b:.2}")).collect::<Vec<_>>().join("/"),
            if i == c.best { "  <- capacity" } else { "" }
        );
    }
    s += &format!("    open-loop Poisson, {:.0} s per load:\n", r.durations.step_s);
    s += &load_table(&r.loads);
    s += &format!("    profile corrections (profiles as measured): {}\n", corr_text(&r.corrections));
    match (&r.optimistic, &r.reference) {
        (Some(o), Some(reference)) => {
            s += &format!(
                "\n(c) profiles {}x optimistic (profile_scale {:.3}; the plan predicts {:.1}/s)\n    Poisson at {}x the true capacity ({:.1}/s) for {:.0} s, attainment per second:\n",
                o.optimistic,
                o.profile_scale,
                o.predicted_per_s,
                o.converge.factor,
                o.converge.rate,
                r.durations.converge_s,
            );
            s += &windowed_text("optimistic", &o.converge);
            s += &windowed_text("as measured", reference);
            s += "    open-loop Poisson, as in (b):\n";
            s += &load_table(&o.loads);
        }
        _ => s += "\n(c) skipped\n",
    }
    s
}

/// `poolpipe bench serving` from the command line: runs, then prints the report (or one JSON
/// object with `--json`).
pub fn command(a: ServingArgs) -> Result<()> {
    let bar = crate::commands::step_bar(steps(&a));
    let json = a.json;
    let report = crate::commands::tokio_main(run(a, &bar));
    bar.finish_and_clear();
    let report = report?;
    crate::commands::print_report(&report, json, render)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(issued_s: f64, latency_ms: f64, status: u16) -> RequestSample {
        RequestSample { issued_s, latency_ms, status }
    }

    #[test]
    fn answers_count_every_request_once() {
        let r = [req(0.1, 50.0, 200), req(0.2, 300.0, 200), req(0.3, 1.0, 503), req(0.4, 1.0, 503), req(1.5, 9.0, 0)];
        let a = answers(&r, 2.0, 200.0);
        assert_eq!((a.sent, a.ok, a.ok_within_slo, a.transport_errors), (5, 2, 1, 1));
        assert_eq!(a.statuses["503"], 2);
        assert_eq!(a.sent, a.ok + a.statuses.values().sum::<u64>() + a.transport_errors);
        assert_eq!(a.goodput_per_s, 0.5);
        assert_eq!(a.attainment, 0.2);
        let l = a.latency_ms.unwrap();
        assert_eq!((l.p50, l.p99), (50.0, 300.0));
        assert!(answers(&[], 1.0, 1.0).latency_ms.is_none());
    }

    #[test]
    fn convergence_is_the_start_of_the_last_good_run_of_windows() {
        let mut r = vec![req(0.5, 500.0, 200), req(0.6, 10.0, 200), req(1.2, 10.0, 503)];
        r.extend((0..10).map(|i| req(2.0 + i as f64 * 0.2, 10.0, 200)));
        let w = windows(&r, 5.0, 1.0, 100.0);
        assert_eq!(w.len(), 5);
        assert_eq!((w[0].sent, w[0].good), (2, 1));
        assert_eq!(w[1].attainment, 0.0);
        assert_eq!(w[4].sent, 0, "an empty window");
        assert_eq!(converged_after(&w, 0.99), Some(2.0));
        let late = [req(4.5, 500.0, 200)];
        assert_eq!(converged_after(&windows(&late, 5.0, 1.0, 100.0), 0.99), None);
    }

    #[test]
    fn bad_flags_are_errors() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: ServingArgs,
        }
        let parse = |extra: &[&str]| {
            let mut v = vec!["x"];
            v.extend(extra);
            <Cli as clap::Parser>::try_parse_from(v).unwrap().a
        };
        for bad in [
            &["--optimistic", "0"][..],
            &["--loads", "0,1"],
            &["--max-batch", "0"],
            &["--duration", "1ms"],
            &["--slo-ms=-1"],
            &["--concurrency", "0"],
        ] {
            let a = parse(bad);
            assert!(check(&a, &durations(&a)).is_err(), "{bad:?}");
        }
        let a = parse(&["--quick"]);
        check(&a, &durations(&a)).unwrap();
    }
}
