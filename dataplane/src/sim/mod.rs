//! The discrete-event simulator: the data-plane [`Scheduler`](crate::Scheduler) driven on a virtual clock, with
//! workers whose latencies come from the profiles, so plans are evaluated at 100+ GPUs.
//!
//! - Time is virtual (microseconds, `f64`); events (arrivals, timers, stage completions) are
//!   ordered by time and then by creation, so a seed gives the same run every time.
//! - Arrivals per model at `rate x weight / sum of weights`: Poisson, bursty (Gamma-renewal
//!   with a coefficient of variation), or a trace of timestamps scaled to the rate (replayed
//!   from its start when it ends before the run), each request assigned to a model by weight.
//! - A dispatched batch runs as the hardware would: each transfer starts when its data is
//!   ready and both the sending server's uplink and the receiving server's downlink are free
//!   (contention between the GPUs of a server), each inference when its transfers are in and
//!   its worker is free, taking the profiled latency (times a log-normal factor when
//!   `jitter` > 0). Workers report their actual finish to the scheduler.
//! - Arrivals stop at `duration`; the run then drains until every request has been answered.
//! - Requests go through the frontend's state machine ([`crate::front::Front`]), as in the
//!   server: samples, admission, retries, batch failures, plan generations. A worker can be
//!   lost mid-run (`fail_worker`: its batches fail and are retried elsewhere) and the plan
//!   re-installed (`replan_at_s`: queued requests wait aside while the old plan drains).
//!
//! Metrics: attainment = (1 - dropped) x (1 - late) = requests answered within their SLO /
//! requests offered; latency percentiles of answered requests; utilisation per GPU class (busy
//! time of each vGPU x its share, over the class's GPUs x duration); batch sizes at dispatch.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use serde::Serialize;

use crate::catalog::{CatalogError, Policies};
use crate::front::{Action, Failure, Front, HopTiming, RequestKey, SendBatch};
use crate::rng::Rng;
use crate::stats::percentile;
use crate::timeline::{Timeline, earliest_joint};
use crate::{DataplaneError, Layout, SchedulerStats};

/// How requests arrive.
#[derive(Clone, Debug, PartialEq)]
pub enum Arrivals {
    /// Poisson: exponential gaps.
    Poisson,
    /// Gamma-renewal gaps with this coefficient of variation (1 = Poisson; the paper's bursty
    /// traces are above 1).
    Bursty {
        /// Coefficient of variation of the gaps.
        cv: f64,
    },
    /// Arrival times in seconds (sorted), scaled so their mean rate is the run's rate and
    /// replayed from the start when the run outlasts them.
    Trace(Vec<f64>),
}

impl Arrivals {
    /// A short name for reports.
    pub fn name(&self) -> String {
        match self {
            Arrivals::Poisson => "poisson".into(),
            Arrivals::Bursty { cv } => format!("bursty (cv {cv})"),
            Arrivals::Trace(t) => format!("trace ({} arrivals)", t.len()),
        }
    }
}

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Requests per second over all models.
    pub rate: f64,
    /// Seconds of arrivals.
    pub duration_s: f64,
    /// Arrival process.
    pub arrivals: Arrivals,
    /// Weight of each model (layout order); `None`: the plan's weights.
    pub weights: Option<Vec<f64>>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Coefficient of variation of inference times around the profile (0: exactly as
    /// profiled).
    pub jitter: f64,
    /// How much slower the workers really are than their profiles (1: as profiled; 2: the
    /// profiles are 2x optimistic).
    pub slowdown: f64,
    /// Workers report their measured times to the scheduler, which corrects the profiles
    /// ([`crate::correction`]).
    pub correct: bool,
    /// Share of each batch's time on a worker that the worker's own measure misses (0: it
    /// sees all; 0.5: it reports half): time spent waiting or sharing the machine outside
    /// what it times. The scheduler still learns the real time from the completions.
    pub unmeasured: f64,
    /// A worker lost during the run: its batches fail and are retried elsewhere once while
    /// their deadlines allow; nothing more is routed to it.
    pub fail_worker: Option<WorkerLoss>,
    /// Re-plan at this many seconds: the queued requests wait aside, the old plan's batches
    /// drain (retried under the new plan after [`DRAIN_TIMEOUT_US`]), then the plan is
    /// installed again as a new generation (the same placement, the lost worker kept out).
    pub replan_at_s: Option<f64>,
}

/// A worker lost during a simulated run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkerLoss {
    /// The worker (layout index, as `poolpipe simulate` lists them).
    pub worker: usize,
    /// When, seconds of simulated time.
    pub at_s: f64,
}

impl SimConfig {
    /// Poisson arrivals at `rate` for `duration_s`, split by `weights`, no jitter.
    pub fn poisson(rate: f64, duration_s: f64, weights: Vec<f64>, seed: u64) -> SimConfig {
        SimConfig {
            rate,
            duration_s,
            arrivals: Arrivals::Poisson,
            weights: Some(weights),
            seed,
            jitter: 0.0,
            slowdown: 1.0,
            correct: true,
            unmeasured: 0.0,
            fail_worker: None,
            replan_at_s: None,
        }
    }
}

/// Results of one model.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ModelReport {
    /// Model name.
    pub name: String,
    /// Requests offered.
    pub offered: u64,
    /// Requests dropped.
    pub dropped: u64,
    /// Requests refused at arrival.
    pub refused: u64,
    /// Requests failed (their batch failed twice, or ran out of time).
    pub failed: u64,
    /// Requests answered after their deadline.
    pub late: u64,
    /// Answered within SLO / offered.
    pub attainment: f64,
    /// 99th percentile latency of answered requests, ms.
    pub p99_ms: f64,
}

/// Results of a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SimReport {
    /// Batching policy.
    pub policy: String,
    /// Arrival process.
    pub arrivals: String,
    /// Offered rate, requests/s.
    pub rate: f64,
    /// Seconds of arrivals.
    pub duration_s: f64,
    /// Seed.
    pub seed: u64,
    /// Requests offered.
    pub offered: u64,
    /// Requests answered (in time or late).
    pub served: u64,
    /// Requests dropped by the scheduler.
    pub dropped: u64,
    /// Requests refused at arrival (they could not have met their deadline, or the queue
    /// was full).
    pub refused: u64,
    /// Requests failed: their batch failed twice or ran out of time (a lost worker), or the
    /// policy neither dispatched nor dropped them by their deadline plus grace.
    pub failed: u64,
    /// Requests retried after their batch failed (counted once each time).
    pub retried: u64,
    /// Plans installed (1, plus one per re-plan).
    pub plans: u64,
    /// Requests answered after their deadline.
    pub late: u64,
    /// Requests neither answered, dropped, refused nor failed when the run ended (must be 0).
    pub unfinished: u64,
    /// (1 - dropped) x (1 - late): answered within SLO / offered.
    pub attainment: f64,
    /// Requests answered within SLO per second of arrivals.
    pub throughput: f64,
    /// Median latency of answered requests, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Utilisation per GPU class: mean busy fraction of the class's GPUs in the fleet.
    pub utilisation: BTreeMap<String, f64>,
    /// Dispatches per batch size (first stages; per-pool routing: every stage).
    pub batch_sizes: BTreeMap<usize, u64>,
    /// Per model.
    pub models: Vec<ModelReport>,
    /// Scheduler counters.
    pub scheduler: SchedulerStats,
    /// Mean probes per dispatched batch.
    pub probes_per_batch: f64,
    /// Mean wall time inside the scheduler per dispatched batch, ns (the cost of reading the
    /// clock around each call, measured at the start, taken off).
    pub scheduler_ns_per_batch: f64,
    /// Wall seconds of the run.
    pub wall_seconds: f64,
    /// Simulated requests per wall second.
    pub requests_per_wall_second: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Arrival { model: usize },
    Timer,
    StageDone { wire: u64, stage: usize },
    Swap,
    FailWorker { worker: usize },
    Replan,
    DrainTimeout,
}

/// A hot swap during a run: at `at_s` seconds every model's batching policy is replaced
/// (between two decisions, with requests queued and in flight).
pub struct Swap {
    /// When, seconds of simulated time.
    pub at_s: f64,
    /// The new policies.
    pub policies: Policies,
}

#[derive(Clone, Copy, Debug)]
struct Event {
    time: f64,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    /// Reversed: the earliest event is the greatest (BinaryHeap is a max-heap).
    fn cmp(&self, o: &Self) -> Ordering {
        o.time.total_cmp(&self.time).then(o.seq.cmp(&self.seq))
    }
}

/// A request waiting for its answer.
struct Request {
    model: usize,
    arrival: f64,
    deadline: f64,
}

/// One hop of a batch on the simulated hardware.
struct HopRun {
    stage: usize,
    worker: usize,
    /// Its inference time as run.
    took: f64,
    /// From its arrival at the worker to the worker starting on it.
    wait: f64,
}

/// A batch on the simulated hardware.
struct Batch {
    last_stage: usize,
    hops: Vec<HopRun>,
}

/// Arrival times of one model, drawn lazily.
struct Source {
    rng: Rng,
    mean_gap_us: f64,
}

/// Errors of a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration cannot run.
    #[error("cannot simulate: {0}")]
    Config(String),
    /// The scheduler refused an event (a bug: the simulator only reports what it dispatched).
    #[error(transparent)]
    Scheduler(#[from] DataplaneError),
    /// A policy could not be instantiated for a plan or a swap.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// How long a re-plan waits for the old plan's batches before retrying them under the new
/// one, microseconds (the controller's default `drain_timeout_ms`).
pub const DRAIN_TIMEOUT_US: f64 = 5e6;

/// The event loop's state.
struct Sim {
    front: Front,
    layout: Layout,
    events: BinaryHeap<Event>,
    seq: u64,
    armed: Option<f64>,
    requests: HashMap<RequestKey, Request>,
    batches: HashMap<u64, Batch>,
    up: Vec<Timeline>,
    down: Vec<Timeline>,
    worker: Vec<Timeline>,
    busy: Vec<f64>,
    jitter: Rng,
    jitter_cv: f64,
    slowdown: f64,
    /// Share of a hop's time its worker's report leaves out.
    unmeasured: f64,
    horizon: f64,
    offered: Vec<u64>,
    latencies: Vec<Vec<f64>>,
    dropped: Vec<u64>,
    refused: Vec<u64>,
    failed: Vec<u64>,
    late: Vec<u64>,
    batch_sizes: BTreeMap<usize, u64>,
    sched_ns: u128,
    /// A re-plan is under way: the next plan is installed once the old one drains.
    replanning: bool,
}

impl Sim {
    fn push(&mut self, time: f64, kind: Kind) {
        self.seq += 1;
        self.events.push(Event { time, seq: self.seq, kind });
    }

    fn arm(&mut self) {
        if let Some(t) = self.front.next_timer()
            && self.armed.is_none_or(|a| t < a)
        {
            self.armed = Some(t);
            self.push(t, Kind::Timer);
        }
    }

    /// Carries out the state machine's actions: batches start running, answers are counted.
    fn apply(&mut self, now: f64) {
        while let Some(action) = self.front.poll_action() {
            match action {
                Action::Send(b) => self.run(now, b),
                Action::Answer { request, model, result } => {
                    let Some(r) = self.requests.remove(&request) else { continue };
                    match result {
                        Ok(()) => {
                            self.latencies[model].push(now - r.arrival);
                            if now > r.deadline + 1e-6 {
                                self.late[model] += 1;
                            }
                        }
                        Err(Failure::Dropped { .. }) => self.dropped[r.model] += 1,
                        Err(Failure::Refused(_)) => self.refused[r.model] += 1,
                        Err(_) => self.failed[r.model] += 1,
                    }
                }
                Action::BatchFailed { .. } | Action::PolicyError { .. } => {}
            }
        }
    }

    /// Runs a batch on the simulated hardware: each transfer when its data is ready and both
    /// links are free, each inference when its inputs are in and its worker is free.
    fn run(&mut self, now: f64, b: SendBatch) {
        let d = &b.dispatch;
        let n = b.samples.len();
        if d.hops.first().is_some_and(|h| h.stage == 0) || d.hops.len() == 1 {
            *self.batch_sizes.entry(n).or_default() += 1;
        }
        let mut ready = now;
        let mut hops = vec![];
        let mut done = vec![];
        for hop in &d.hops {
            let mut arrived = ready;
            for t in &hop.transfers {
                let (up, down) = (&mut self.up[t.from_server], &mut self.down[t.to_server]);
                up.prune(now);
                down.prune(now);
                let dur = t.end - t.start;
                let start = earliest_joint(up, down, arrived, dur);
                up.reserve(start, start + dur);
                down.reserve(start, start + dur);
                arrived = start + dur;
            }
            let w = hop.worker;
            let stage = &self.layout.models[d.model].pipelines[d.pipeline].stages[hop.stage];
            let took = stage.latency(n) * self.slowdown * self.jitter.unit_lognormal(self.jitter_cv);
            let timeline = &mut self.worker[w];
            timeline.prune(now);
            let start = timeline.earliest(arrived, took);
            hops.push(HopRun { stage: hop.stage, worker: w, took, wait: start - arrived });
            let end = start + took;
            timeline.reserve(start, end);
            let share = self.layout.workers[w].share as f64;
            self.busy[w] += (end.min(self.horizon) - start.min(self.horizon)).max(0.0) / share;
            done.push((end, hop.stage));
            ready = end;
        }
        let last_stage = d.hops.last().map_or(0, |h| h.stage);
        for (end, stage) in done {
            self.push(end, Kind::StageDone { wire: b.wire, stage });
        }
        self.batches.insert(b.wire, Batch { last_stage, hops });
    }

    /// A stage of a batch finished on its worker: the worker reports its time, and the last
    /// stage's result goes back to the frontend.
    fn stage_done(&mut self, now: f64, wire: u64, stage: usize) {
        let Some(b) = self.batches.get(&wire) else { return };
        if self.front.batch_len(wire).is_none() {
            // The batch failed (a worker on its route left): what still runs is lost.
            self.batches.remove(&wire);
            return;
        }
        let Some(h) = b.hops.iter().find(|h| h.stage == stage) else { return };
        let (worker, took, wait, last) = (h.worker, h.took, h.wait, stage == b.last_stage);
        let hop = HopTiming { compute_us: took * (1.0 - self.unmeasured), wait_us: Some(wait) };
        self.front.timing(now, worker as u32, wire, stage, hop);
        if last {
            self.batches.remove(&wire);
            self.front.result(now, wire);
        }
    }
}

/// Runs `policies` on `layout` under `cfg` and reports what happened.
pub fn simulate(layout: &Layout, policies: &Policies, cfg: &SimConfig) -> Result<SimReport, SimError> {
    simulate_with(layout, policies, cfg, None)
}

/// As [`simulate`], swapping the batching policies during the run.
pub fn simulate_with(
    layout: &Layout,
    policies: &Policies,
    cfg: &SimConfig,
    swap: Option<Swap>,
) -> Result<SimReport, SimError> {
    simulate_timed(layout, policies, cfg, swap, &|| 0)
}

/// As [`simulate_with`], reading `host_ns` (the host's monotonic clock, nanoseconds) around
/// each call into the data plane to report its cost ([`SimReport::scheduler_ns_per_batch`])
/// and the run's wall time. The simulated time never comes from it; with a clock that always
/// reads 0 those figures are 0.
pub fn simulate_timed(
    layout: &Layout,
    policies: &Policies,
    cfg: &SimConfig,
    swap: Option<Swap>,
    host_ns: &dyn Fn() -> u64,
) -> Result<SimReport, SimError> {
    let wall = host_ns();
    let layout = layout.clone();
    let models = layout.models.len();
    if models == 0 {
        return Err(SimError::Config("the plan serves no model".into()));
    }
    let weights = cfg.weights.clone().unwrap_or_else(|| layout.models.iter().map(|m| m.weight).collect());
    if weights.len() != models
        || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
        || weights.iter().sum::<f64>() <= 0.0
    {
        return Err(SimError::Config(format!("{} weights for {models} models, or a negative weight", weights.len())));
    }
    if !(cfg.rate.is_finite() && cfg.rate > 0.0 && cfg.duration_s.is_finite() && cfg.duration_s > 0.0) {
        return Err(SimError::Config(format!(
            "rate {} /s and duration {} s must be positive",
            cfg.rate, cfg.duration_s
        )));
    }
    if let Some(f) = &cfg.fail_worker
        && f.worker >= layout.workers.len()
    {
        return Err(SimError::Config(format!(
            "--fail-worker {}: the plan places {} workers (0..{})",
            f.worker,
            layout.workers.len(),
            layout.workers.len()
        )));
    }
    let total_weight: f64 = weights.iter().sum();
    let horizon = cfg.duration_s * 1e6;
    // Node ids are layout worker indices.
    let nodes: Vec<u32> = (0..layout.workers.len() as u32).collect();
    let mut front = Front::new(models, policies.clone());
    front.set_profile_correction(cfg.correct);
    front.install(0.0, &layout, nodes.clone())?;
    let policy = front.active().map_or_else(|| policies.name().to_string(), |(_, s, _)| s.policy_name());
    let mut sim = Sim {
        front,
        events: BinaryHeap::new(),
        seq: 0,
        armed: None,
        requests: HashMap::new(),
        batches: HashMap::new(),
        up: vec![Timeline::default(); layout.servers.len()],
        down: vec![Timeline::default(); layout.servers.len()],
        worker: vec![Timeline::default(); layout.workers.len()],
        busy: vec![0.0; layout.workers.len()],
        jitter: Rng::new(cfg.seed, u64::MAX),
        jitter_cv: cfg.jitter.max(0.0),
        slowdown: if cfg.slowdown.is_finite() && cfg.slowdown > 0.0 { cfg.slowdown } else { 1.0 },
        unmeasured: cfg.unmeasured.clamp(0.0, 0.99),
        horizon,
        offered: vec![0; models],
        latencies: vec![vec![]; models],
        dropped: vec![0; models],
        refused: vec![0; models],
        failed: vec![0; models],
        late: vec![0; models],
        batch_sizes: BTreeMap::new(),
        sched_ns: 0,
        replanning: false,
        layout,
    };
    // Arrivals: one lazy source per model, or a trace merged over models.
    let mut sources: Vec<Source> = vec![];
    let mut trace: Vec<(f64, usize)> = vec![];
    match &cfg.arrivals {
        Arrivals::Trace(times) => {
            if times.len() < 2 {
                return Err(SimError::Config("an arrival trace needs at least two timestamps".into()));
            }
            let span = times[times.len() - 1] - times[0];
            if span <= 0.0 {
                return Err(SimError::Config("the arrival trace's timestamps do not advance".into()));
            }
            let native_rate = (times.len() - 1) as f64 / span;
            let scale = native_rate / cfg.rate;
            // One replay of the trace lasts its span plus one mean gap, scaled.
            let period = (span + span / (times.len() - 1) as f64) * scale * 1e6;
            let mut rng = Rng::new(cfg.seed, 1 << 32);
            'replay: for k in 0.. {
                for &t in times {
                    let at = k as f64 * period + (t - times[0]) * scale * 1e6;
                    if at >= horizon {
                        break 'replay;
                    }
                    trace.push((at, rng.pick(&weights)));
                }
            }
            for &(at, model) in trace.iter().rev() {
                sim.push(at, Kind::Arrival { model });
            }
        }
        _ => {
            for (m, w) in weights.iter().enumerate() {
                let rate = cfg.rate * w / total_weight;
                let mean_gap_us = if rate > 0.0 { 1e6 / rate } else { f64::INFINITY };
                sources.push(Source { rng: Rng::new(cfg.seed, m as u64), mean_gap_us });
            }
            for (m, source) in sources.iter_mut().enumerate() {
                if let Some(t) = next_gap(source, &cfg.arrivals)
                    && t < horizon
                {
                    sim.push(t, Kind::Arrival { model: m });
                }
            }
        }
    }
    let mut swap = swap;
    if let Some(s) = &swap {
        sim.push(s.at_s * 1e6, Kind::Swap);
    }
    if let Some(f) = &cfg.fail_worker {
        sim.push(f.at_s * 1e6, Kind::FailWorker { worker: f.worker });
    }
    if let Some(at_s) = cfg.replan_at_s {
        sim.push(at_s * 1e6, Kind::Replan);
    }
    // What one pair of clock reads costs, taken off every measurement of the data plane.
    let clock_ns = {
        let t = host_ns();
        let mut sum = 0u128;
        for _ in 0..1000 {
            let a = host_ns();
            sum += u128::from(host_ns().saturating_sub(a));
        }
        std::hint::black_box(sum);
        u128::from(host_ns().saturating_sub(t)) / 1000 / 2
    };
    let mut measured = 0u128;
    while let Some(ev) = sim.events.pop() {
        let now = ev.time;
        let t0 = host_ns();
        match ev.kind {
            Kind::Arrival { model } => {
                sim.offered[model] += 1;
                let slo = sim.layout.models[model].slo_us;
                match sim.front.request(now, model, 1) {
                    Ok((key, _)) => {
                        sim.requests.insert(key, Request { model, arrival: now, deadline: now + slo });
                    }
                    Err(Failure::Refused(_)) => sim.refused[model] += 1,
                    Err(_) => sim.failed[model] += 1,
                }
            }
            Kind::Timer => {
                if sim.armed == Some(now) {
                    sim.armed = None;
                }
                sim.front.timer(now);
            }
            Kind::StageDone { wire, stage } => sim.stage_done(now, wire, stage),
            Kind::Swap => {
                if let Some(s) = swap.take() {
                    sim.front.swap_policy(now, s.policies)?;
                }
            }
            Kind::FailWorker { worker } => {
                sim.front.worker_down(now, worker as u32);
            }
            Kind::Replan => {
                sim.front.begin_switch();
                sim.replanning = true;
                sim.push(now + DRAIN_TIMEOUT_US, Kind::DrainTimeout);
            }
            Kind::DrainTimeout => {
                if sim.replanning {
                    sim.front.abandon_old(now);
                }
            }
        }
        if sim.replanning && (sim.front.drained() || ev.kind == Kind::DrainTimeout) {
            sim.replanning = false;
            let layout = sim.layout.clone();
            sim.front.install(now, &layout, nodes.clone())?;
        }
        sim.sched_ns += u128::from(host_ns().saturating_sub(t0));
        measured += 1;
        sim.apply(now);
        if let Kind::Arrival { model } = ev.kind
            && !sources.is_empty()
            && let Some(gap) = next_gap(&mut sources[model], &cfg.arrivals)
            && now + gap < horizon
        {
            sim.push(now + gap, Kind::Arrival { model });
        }
        sim.arm();
    }
    let layout = &sim.layout;
    let offered: u64 = sim.offered.iter().sum();
    let mut all: Vec<f64> = vec![];
    let mut model_reports = vec![];
    for (m, ml) in layout.models.iter().enumerate() {
        let lat = &mut sim.latencies[m];
        lat.sort_by(f64::total_cmp);
        let offered_m = sim.offered[m];
        let good = lat.len() as u64 - sim.late[m];
        model_reports.push(ModelReport {
            name: ml.name.clone(),
            offered: offered_m,
            dropped: sim.dropped[m],
            refused: sim.refused[m],
            failed: sim.failed[m],
            late: sim.late[m],
            attainment: if offered_m == 0 { 1.0 } else { good as f64 / offered_m as f64 },
            p99_ms: percentile(lat, 0.99) / 1e3,
        });
        all.extend_from_slice(lat);
    }
    all.sort_by(f64::total_cmp);
    let served = all.len() as u64;
    let dropped: u64 = sim.dropped.iter().sum();
    let refused: u64 = sim.refused.iter().sum();
    let failed: u64 = sim.failed.iter().sum();
    let late: u64 = sim.late.iter().sum();
    let unfinished = offered - served - dropped - refused - failed;
    let good = served - late;
    let utilisation = layout
        .classes
        .iter()
        .enumerate()
        .map(|(c, class)| {
            let busy: f64 = layout.workers.iter().zip(&sim.busy).filter(|(w, _)| w.class == c).map(|(_, b)| b).sum();
            (class.name.clone(), if class.gpus == 0 { 0.0 } else { (busy / (class.gpus as f64 * horizon)).max(0.0) })
        })
        .collect();
    let stats = sim.front.scheduler_stats();
    let front = sim.front.stats();
    let batches = stats.batches.max(1) as f64;
    let wall_seconds = host_ns().saturating_sub(wall) as f64 / 1e9;
    Ok(SimReport {
        policy,
        arrivals: cfg.arrivals.name(),
        rate: cfg.rate,
        duration_s: cfg.duration_s,
        seed: cfg.seed,
        offered,
        served,
        dropped,
        refused,
        failed,
        retried: front.retried,
        plans: sim.front.generation(),
        late,
        unfinished,
        attainment: if offered == 0 { 1.0 } else { good as f64 / offered as f64 },
        throughput: good as f64 / cfg.duration_s,
        p50_ms: percentile(&all, 0.5) / 1e3,
        p99_ms: percentile(&all, 0.99) / 1e3,
        utilisation,
        batch_sizes: sim.batch_sizes,
        models: model_reports,
        probes_per_batch: stats.probes as f64 / batches,
        scheduler_ns_per_batch: sim.sched_ns.saturating_sub(measured * clock_ns) as f64 / batches,
        scheduler: stats,
        wall_seconds,
        requests_per_wall_second: if wall_seconds > 0.0 { offered as f64 / wall_seconds } else { 0.0 },
    })
}

fn next_gap(source: &mut Source, arrivals: &Arrivals) -> Option<f64> {
    if !source.mean_gap_us.is_finite() {
        return None;
    }
    Some(match arrivals {
        Arrivals::Bursty { cv } if *cv > 0.0 => {
            let shape = 1.0 / (cv * cv);
            source.rng.gamma(shape, source.mean_gap_us / shape)
        }
        _ => source.rng.exponential(source.mean_gap_us),
    })
}
