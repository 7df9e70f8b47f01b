//! `poolpipe simulate`: a plan, its profiles, fleet and workload in; one simulated run or a
//! load-factor sweep out (tables, or one JSON object).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use poolpipe_dataplane::Layout;
use poolpipe_dataplane::sim::{Arrivals, SimConfig, SimReport, simulate_timed};
use poolpipe_planner::Plan;

/// Everything a simulation of one plan needs, loaded and checked.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The plan placed on the fleet.
    pub layout: Layout,
    /// Arrival weight of each model (layout order), from the workload.
    pub weights: Vec<f64>,
}

/// Reads a plan (JSON) written by `poolpipe plan`.
pub fn read_plan(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading plan {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("plan {} is not a plan written by `poolpipe plan --out`", path.display()))
}

/// Loads a plan with its profiles, fleet and workload, and places it on the fleet.
pub fn load(plan: &Path, profiles: &Path, fleet: &Path, workload: &Path) -> Result<Setup> {
    let plan = read_plan(plan)?;
    let fleet = poolpipe_planner::Fleet::load(fleet)?;
    let workload = poolpipe_planner::Workload::load(workload)?;
    setup(&plan, profiles, &fleet, &workload)
}

/// Places `plan` on `fleet`, with arrival weights from `workload`.
pub fn setup(
    plan: &Plan,
    profiles: &Path,
    fleet: &poolpipe_planner::Fleet,
    workload: &poolpipe_planner::Workload,
) -> Result<Setup> {
    let names: Vec<String> = plan.models.iter().map(|m| m.name.clone()).collect();
    let profs = poolpipe_planner::profiles::load(profiles, &names, &fleet.class_names())?;
    setup_with(plan, &profs, fleet, workload)
}

/// As [`setup`], with the profiles already loaded.
pub fn setup_with(
    plan: &Plan,
    profiles: &[poolpipe_planner::ModelProfile],
    fleet: &poolpipe_planner::Fleet,
    workload: &poolpipe_planner::Workload,
) -> Result<Setup> {
    if plan.models.is_empty() {
        bail!("the plan serves no model ({} unserved): nothing to simulate", plan.unserved.len());
    }
    for m in &workload.model {
        if !plan.models.iter().any(|p| p.name == m.name) {
            let why = plan.unserved.iter().find(|u| u.name == m.name).map_or_else(
                || "the plan was made for another workload".to_string(),
                |u| format!("the plan cannot serve it: {}", u.reason),
            );
            bail!("model '{}' of the workload is not in the plan: {why}", m.name);
        }
    }
    let weights = plan
        .models
        .iter()
        .map(|p| {
            workload.model.iter().find(|m| m.name == p.name).map(|m| m.weight).with_context(|| {
                format!(
                    "model '{}' of the plan is not in the workload: give the workload the plan was made for",
                    p.name
                )
            })
        })
        .collect::<Result<Vec<f64>>>()?;
    let layout = Layout::new(plan, profiles, fleet)?;
    Ok(Setup { layout, weights })
}

/// Parses a duration: `30s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim();
    let (num, scale) = if let Some(x) = t.strip_suffix("ms") {
        (x, 1e-3)
    } else if let Some(x) = t.strip_suffix('s') {
        (x, 1.0)
    } else if let Some(x) = t.strip_suffix('m') {
        (x, 60.0)
    } else {
        (t, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * scale),
        _ => Err(format!("'{s}' is not a positive duration like 30s, 500ms or 2m")),
    }
}

/// Parses `--fail-worker`: `[WORKER@]TIME` (worker 0 when omitted), e.g. `10s`, `3@10s`.
pub fn parse_worker_loss(s: &str) -> std::result::Result<poolpipe_dataplane::sim::WorkerLoss, String> {
    let (worker, at) = match s.split_once('@') {
        Some((w, at)) => {
            let w = w.trim().parse().map_err(|_| format!("'{w}' is not a worker index (e.g. 3@10s)"))?;
            (w, at)
        }
        None => (0, s),
    };
    Ok(poolpipe_dataplane::sim::WorkerLoss { worker, at_s: parse_duration(at)? })
}

/// Reads an arrival trace: one timestamp (seconds) a line, ascending; blank lines and lines
/// starting with '#' are skipped.
pub fn read_trace(path: &Path) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading arrival trace {}", path.display()))?;
    let mut out: Vec<f64> = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let t: f64 = line.parse().ok().filter(|t: &f64| t.is_finite()).with_context(|| {
            format!("arrival trace {} line {}: '{line}' is not a timestamp in seconds", path.display(), i + 1)
        })?;
        if out.last().is_some_and(|&p| t < p) {
            bail!(
                "arrival trace {} line {}: {t} is earlier than the line before; sort the trace",
                path.display(),
                i + 1
            );
        }
        out.push(t);
    }
    if out.len() < 2 {
        bail!("arrival trace {} has {} timestamps; it needs at least two", path.display(), out.len());
    }
    Ok(out)
}

pub use poolpipe_dataplane::catalog::{Policies, PolicySpec, scheduler};

/// One point of a sweep.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SweepPoint {
    /// Load factor.
    pub load_factor: f64,
    /// Offered rate, requests/s.
    pub rate: f64,
    /// Attainment reached.
    pub attainment: f64,
    /// Requests answered within SLO per second.
    pub throughput: f64,
}

/// A load-factor sweep.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sweep {
    /// Largest load factor on the grid reaching the target attainment (0 when none does).
    pub max_load_factor: f64,
    /// The rate of load factor 1.0, requests/s.
    pub reference_rate: f64,
    /// Attainment required.
    pub target: f64,
    /// Points run, from the highest load factor down.
    pub points: Vec<SweepPoint>,
    /// The full report at `max_load_factor` (or at the lowest point run when none passes).
    pub at_max: SimReport,
}

/// Options of a sweep.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Rate of load factor 1.0.
    pub reference_rate: f64,
    /// Grid step.
    pub step: f64,
    /// Highest load factor tried.
    pub max: f64,
    /// Attainment required.
    pub target: f64,
}

/// Runs load factors from `max` down in `step`s and stops at the first that reaches the
/// target: the largest load factor on the grid that does.
pub fn sweep(
    layout: &Layout,
    policies: &Policies,
    base: &SimConfig,
    o: &SweepOptions,
    progress: &indicatif::ProgressBar,
) -> Result<Sweep> {
    if !(o.step > 0.0 && o.max >= o.step && o.reference_rate > 0.0) {
        bail!("sweep: step {} and highest load factor {} must be positive (step <= highest)", o.step, o.max);
    }
    let steps = (o.max / o.step + 1e-9).floor() as usize;
    let mut points = vec![];
    let mut last = None;
    for i in (1..=steps).rev() {
        let lf = (i as f64 * o.step * 1e6).round() / 1e6;
        progress.set_message(format!("load factor {lf:.2}"));
        let cfg = SimConfig { rate: lf * o.reference_rate, ..base.clone() };
        let r = simulate_timed(layout, policies, &cfg, None, &crate::host_ns)?;
        progress.inc(1);
        points.push(SweepPoint { load_factor: lf, rate: cfg.rate, attainment: r.attainment, throughput: r.throughput });
        let pass = r.attainment >= o.target;
        last = Some(r);
        if pass {
            let at_max = last.expect("just set");
            return Ok(Sweep {
                max_load_factor: lf,
                reference_rate: o.reference_rate,
                target: o.target,
                points,
                at_max,
            });
        }
    }
    let at_max = last.context("sweep ran no point")?;
    Ok(Sweep { max_load_factor: 0.0, reference_rate: o.reference_rate, target: o.target, points, at_max })
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// A run as tables.
pub fn render(r: &SimReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "policy {}, {} arrivals at {:.1} req/s for {} s (seed {})",
        r.policy, r.arrivals, r.rate, r.duration_s, r.seed
    );
    let _ = writeln!(
        s,
        "offered {}  served {}  refused {}  dropped {}  failed {}  late {}  unfinished {}",
        r.offered, r.served, r.refused, r.dropped, r.failed, r.late, r.unfinished
    );
    if r.retried > 0 || r.plans > 1 {
        let _ = writeln!(s, "retried {} (batches lost with a worker or a plan change)  plans {}", r.retried, r.plans);
    }
    let _ = writeln!(s, "attainment {}  throughput {:.1} req/s within SLO", pct(r.attainment), r.throughput);
    let _ = writeln!(s, "latency p50 {:.2} ms  p99 {:.2} ms", r.p50_ms, r.p99_ms);
    let util: Vec<String> = r.utilisation.iter().map(|(c, u)| format!("{c} {}", pct(*u))).collect();
    let _ = writeln!(s, "utilisation {}", util.join("  "));
    let hist: Vec<String> = r.batch_sizes.iter().map(|(b, n)| format!("{b}:{n}")).collect();
    let _ = writeln!(s, "batch sizes {}", hist.join(" "));
    let _ = writeln!(
        s,
        "\n{:<48} {:>9} {:>8} {:>8} {:>8} {:>11} {:>9}",
        "model", "offered", "refused", "dropped", "late", "attainment", "p99 ms"
    );
    for m in &r.models {
        let _ = writeln!(
            s,
            "{:<48} {:>9} {:>8} {:>8} {:>8} {:>11} {:>9.2}",
            m.name,
            m.offered,
            m.refused,
            m.dropped,
            m.late,
            pct(m.attainment),
            m.p99_ms
        );
    }
    let _ = writeln!(
        s,
        "\nscheduler: {} batches, {:.2} probes and {:.0} ns per batch; {:.0} simulated requests per wall second",
        r.scheduler.batches, r.probes_per_batch, r.scheduler_ns_per_batch, r.requests_per_wall_second
    );
    s
}

/// A sweep as tables.
pub fn render_sweep(w: &Sweep) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "load factor 1.0 = {:.1} req/s; target attainment {}", w.reference_rate, pct(w.target));
    let _ = writeln!(s, "{:>11} {:>10} {:>11} {:>12}", "load factor", "req/s", "attainment", "in SLO /s");
    for p in &w.points {
        let _ =
            writeln!(s, "{:>11.2} {:>10.1} {:>11} {:>12.1}", p.load_factor, p.rate, pct(p.attainment), p.throughput);
    }
    let _ = writeln!(s, "\nmax load factor {:.2}\n", w.max_load_factor);
    s.push_str(&render(&w.at_max));
    s
}

/// The JSON of a run: the report, with the sweep's fields when there is one.
pub fn json(run: Option<&SimReport>, sweep: Option<&Sweep>) -> serde_json::Value {
    match (run, sweep) {
        (_, Some(w)) => {
            let mut v = serde_json::to_value(&w.at_max).expect("reports serialize");
            v["max_load_factor"] = serde_json::json!(w.max_load_factor);
            v["reference_rate"] = serde_json::json!(w.reference_rate);
            v["target"] = serde_json::json!(w.target);
            v["points"] = serde_json::to_value(&w.points).expect("points serialize");
            v
        }
        (Some(r), None) => serde_json::to_value(r).expect("reports serialize"),
        (None, None) => serde_json::json!({}),
    }
}

/// Arrival process from the CLI's words.
pub fn arrivals(kind: &str, cv: f64, trace: Option<&PathBuf>) -> Result<Arrivals> {
    match (kind, trace) {
        (_, Some(path)) => Ok(Arrivals::Trace(read_trace(path)?)),
        ("poisson", None) => Ok(Arrivals::Poisson),
        ("bursty", None) => {
            if !(cv.is_finite() && cv > 0.0) {
                bail!("--cv {cv} must be a positive coefficient of variation");
            }
            Ok(Arrivals::Bursty { cv })
        }
        (other, None) => bail!("--arrivals {other}: use poisson or bursty, or give --trace FILE"),
    }
}
/// Simulate a plan on its fleet: the data-plane scheduler on a virtual clock, with workers
/// that take the profiled latencies and NICs shared by the GPUs of a server. Prints SLO
/// attainment, throughput, latency, utilisation per class and batch sizes, for one load or
/// a load-factor sweep.
#[derive(clap::Args, Clone, Debug)]
pub struct SimulateArgs {
    /// Plan (JSON) written by `poolpipe plan --out`.
    #[arg(long, value_name = "FILE")]
    pub plan: std::path::PathBuf,
    /// Profile folder the plan was made from.
    #[arg(long, value_name = "DIR")]
    pub profiles: std::path::PathBuf,
    /// Fleet file the plan was made for.
    #[arg(long, value_name = "FILE")]
    pub fleet: std::path::PathBuf,
    /// Workload file: its weights split the arrivals between models.
    #[arg(long, value_name = "FILE")]
    pub workload: std::path::PathBuf,
    #[command(flatten)]
    pub sim: SimArgs,
}

/// Runs `poolpipe simulate`.
pub fn command(a: SimulateArgs) -> Result<()> {
    let SimulateArgs { plan, profiles, fleet, workload, sim } = a;
    simulate_cmd(&plan, &profiles, &fleet, &workload, &sim)
}

/// Simulation options of `simulate`.
#[derive(clap::Args, Clone, Debug)]
pub struct SimArgs {
    /// Batching policy: ppipe (reservations), reactive (per-pool, Nexus-style), triton
    /// (per-pool dynamic batching), a WebAssembly module (FILE.wasm or FILE.wat, ABI in
    /// policies/ABI.md) or a built-in guest (wasm:ppipe, wasm:reactive, wasm:triton).
    #[arg(long, default_value = "ppipe")]
    pub policy: String,
    /// Reservation policy: earliest-finish, a module, or wasm:earliest_finish / wasm:same_server.
    #[arg(long, default_value = "earliest-finish")]
    pub reservation: String,
    /// Configuration handed to WebAssembly policies' init, e.g. "max_queue_delay_us=2000".
    #[arg(long, default_value = "")]
    pub policy_config: String,
    /// Deadline of one WebAssembly policy call, ms.
    #[arg(long, default_value_t = 1.0)]
    pub policy_deadline_ms: f64,
    /// Memory cap of a WebAssembly policy, MiB.
    #[arg(long, default_value_t = 16)]
    pub policy_memory_mib: usize,
    /// Fuel per WebAssembly policy call (deterministic limit) [default: none].
    #[arg(long)]
    pub policy_fuel: Option<u64>,
    /// Swap in this batching policy (same forms as --policy) at --swap-at, without stopping.
    #[arg(long, requires = "swap_at", conflicts_with = "sweep")]
    pub swap_to: Option<String>,
    /// When to swap, e.g. 10s.
    #[arg(long, value_parser = crate::commands::simulate::parse_duration, requires = "swap_to")]
    pub swap_at: Option<f64>,
    /// Share of each batch's time the workers' own measure misses, 0..1 (waits and shared
    /// cores outside what they time): the scheduler must learn it from the completions.
    #[arg(long, default_value_t = 0.0)]
    pub unmeasured: f64,
    /// Lose a worker mid-run: [WORKER@]TIME, e.g. 10s or 3@10s (WORKER: its index in the
    /// plan's layout, default 0). Its batches fail and are retried elsewhere once while their
    /// deadlines allow; nothing more is routed to it.
    #[arg(long, value_name = "[WORKER@]TIME", value_parser = crate::commands::simulate::parse_worker_loss)]
    pub fail_worker: Option<poolpipe_dataplane::sim::WorkerLoss>,
    /// Re-plan at this time, e.g. 15s: queued requests wait aside while the old plan's
    /// batches drain, then the plan is installed again as a new generation.
    #[arg(long, value_name = "TIME", value_parser = crate::commands::simulate::parse_duration)]
    pub replan_at: Option<f64>,
    /// Offered load in requests/s over all models.
    #[arg(long, conflicts_with = "load_factor")]
    pub rate: Option<f64>,
    /// Offered load as a fraction of the plan's predicted throughput (or of the reference
    /// plan's) [default: 0.9 unless --rate is given].
    #[arg(long)]
    pub load_factor: Option<f64>,
    /// Simulated time of arrivals, e.g. 30s, 500ms, 2m.
    #[arg(long, default_value = "30s", value_parser = crate::commands::simulate::parse_duration)]
    pub duration: f64,
    /// Find the largest load factor (steps of --step, from --max-load-factor down) with
    /// attainment >= --target.
    #[arg(long, conflicts_with_all = ["rate", "load_factor"])]
    pub sweep: bool,
    /// Load-factor step of the sweep.
    #[arg(long, default_value_t = 0.05)]
    pub step: f64,
    /// Highest load factor of the sweep.
    #[arg(long, default_value_t = 1.0)]
    pub max_load_factor: f64,
    /// Attainment a sweep point must reach.
    #[arg(long, default_value_t = 0.99)]
    pub target: f64,
    /// Load factor 1.0 is this plan's predicted throughput instead (as the paper measures
    /// every system against PPipe's plan).
    #[arg(long, value_name = "FILE")]
    pub reference_plan: Option<std::path::PathBuf>,
    /// Arrival process: poisson or bursty (Gamma-renewal gaps with --cv).
    #[arg(long, default_value = "poisson")]
    pub arrivals: String,
    /// Coefficient of variation of bursty gaps.
    #[arg(long, default_value_t = 2.0)]
    pub cv: f64,
    /// Arrival trace: one timestamp in seconds a line, scaled to the offered rate; each
    /// request goes to a model drawn by weight.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<std::path::PathBuf>,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Coefficient of variation of inference times around the profiles (0: as profiled).
    #[arg(long, default_value_t = 0.0)]
    pub jitter: f64,
    /// The workers are this much slower than their profiles (2: the profiles are 2x
    /// optimistic), to see the scheduler correct them from measured times.
    #[arg(long, default_value_t = 1.0)]
    pub slowdown: f64,
    /// Do not correct the profiles from the workers' measured times.
    #[arg(long)]
    pub no_correction: bool,
    /// triton: maximum queue delay in ms [default: the plan's batch-build estimate].
    #[arg(long)]
    pub max_queue_delay_ms: Option<f64>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn simulate_cmd(
    plan: &std::path::Path,
    profiles: &std::path::Path,
    fleet: &std::path::Path,
    workload: &std::path::Path,
    a: &SimArgs,
) -> Result<()> {
    use crate::commands::simulate as s;
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
    if !(0.0..1.0).contains(&a.unmeasured) {
        anyhow::bail!("--unmeasured {} must be a share in [0, 1)", a.unmeasured);
    }
    if !(a.slowdown.is_finite() && a.slowdown > 0.0) {
        anyhow::bail!("--slowdown {} must be a positive factor (1: as profiled)", a.slowdown);
    }
    let base = poolpipe_dataplane::sim::SimConfig {
        rate: reference_rate,
        duration_s: a.duration,
        arrivals: s::arrivals(&a.arrivals, a.cv, a.trace.as_ref())?,
        weights: Some(setup.weights.clone()),
        seed: a.seed,
        jitter: a.jitter,
        slowdown: a.slowdown,
        correct: !a.no_correction,
        unmeasured: a.unmeasured,
        fail_worker: a.fail_worker,
        replan_at_s: a.replan_at,
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
        let pb = if a.json { indicatif::ProgressBar::hidden() } else { crate::progress(steps, "sweeping") };
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
    let cfg = poolpipe_dataplane::sim::SimConfig { rate, ..base };
    let swap = match (&a.swap_to, a.swap_at) {
        (Some(to), Some(at_s)) => Some(poolpipe_dataplane::sim::Swap { at_s, policies: s::Policies::load(&spec(to))? }),
        _ => None,
    };
    let r = poolpipe_dataplane::sim::simulate_timed(&setup.layout, &policies, &cfg, swap, &crate::host_ns)?;
    if a.json {
        println!("{}", s::json(Some(&r), None));
    } else {
        print!("{}", s::render(&r));
    }
    Ok(())
}
