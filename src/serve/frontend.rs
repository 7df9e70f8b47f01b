//! The frontend's engine room: the data-plane scheduler on a real clock, batches sent to the
//! workers along their reserved routes, results matched back to the requests.
//!
//! A KServe request of batch n becomes n *samples*, one scheduler request each; the answer
//! goes back when all n have their outputs. For each `Dispatch` the frontend concatenates
//! the samples' tensors into one batch frame, sends it to the first hop's worker with the
//! rest of the route (ending at the frontend) and keeps the batch until its result comes
//! back. Per-pool policies dispatch one stage at a time: the stage's output comes back to the
//! frontend, which keeps each sample's tensors until the next stage's batch takes them.
//!
//! Every sample is answered exactly once: with its outputs; with 503 when the scheduler drops
//! it (it cannot meet its deadline) or no plan serves its model; or with an error naming the
//! batch and worker when its batch fails. A batch fails when its send fails, a worker
//! reports `failed`, its worker leaves (the driver retries its samples once when their
//! deadline still allows) or no result comes within its deadline plus a grace period.
//!
//! Plans change in two steps: [`Frontend::begin_switch`] moves the queued requests aside and
//! lets the old scheduler's in-flight batches finish ([`Frontend::drained`]); then
//! [`Frontend::install`] starts the new plan's scheduler with the waiting requests, each
//! keeping its original deadline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use poolpipe_transport::frame::{BatchHeader, Dtype, Frame, RequestRef, RouteHop, TensorInfo};
use poolpipe_transport::link::Link;
use tokio::sync::{Notify, oneshot};

use super::http::{Backend, Histogram, ModelMeta};
use super::kserve::{ApiError, InputTensor, OutputTensor};
use super::worker::FRONTEND;
use crate::dataplane::{Admission, BatchId, Layout, Output, Refusal, RequestId, Scheduler};
use crate::simulate::Policies;

/// Bits of a wire batch id below the plan generation.
const GEN_SHIFT: u32 = 40;

/// How long past its deadline (or reserved finish) a batch may take before it is failed.
pub const GRACE: Duration = Duration::from_secs(2);

/// One tensor of one sample: its dims without the batch.
#[derive(Clone, Debug)]
struct Piece {
    name: String,
    dtype: Dtype,
    dims: Vec<u64>,
    bytes: Bytes,
}

type Answer = Result<Vec<OutputTensor>, ApiError>;

/// One KServe request waiting for its samples.
struct Pending {
    tx: Mutex<Option<oneshot::Sender<Answer>>>,
    parts: Mutex<Vec<Option<Vec<Piece>>>>,
    left: AtomicUsize,
}

impl Pending {
    fn fail(&self, e: ApiError) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(Err(e));
        }
    }
}

struct Sample {
    model: usize,
    /// Arrival, microseconds on the frontend clock.
    arrival: f64,
    input: Arc<Vec<Piece>>,
    current: Arc<Vec<Piece>>,
    owner: Arc<Pending>,
    slot: usize,
    retries: u32,
    /// The batch (wire id) carrying it, while one does.
    batch: Option<u64>,
}

struct BatchState {
    generation: u64,
    batch: BatchId,
    model: usize,
    requests: Vec<RequestId>,
    hops: Vec<HopState>,
    completes: bool,
    sent_us: f64,
    fail_at: Instant,
    compute_us: f64,
    /// Timing reports received (one per hop is due).
    timings: usize,
}

/// A batch answered before all its hops' timing reports came (they travel through the
/// controller, the result straight from the last worker): kept until they do, so its compute
/// time is recorded whole.
struct AwaitingTiming {
    compute_us: f64,
    timings: usize,
    hops: Vec<HopState>,
    total_us: f64,
    generation: u64,
    requests: usize,
}

/// Batches awaiting timing reports kept at most (the oldest are recorded as they are).
const AWAITING_TIMING: usize = 4096;

/// One hop of a batch in flight.
#[derive(Clone, Copy, Debug)]
struct HopState {
    stage: usize,
    /// Layout worker (the scheduler's index).
    worker: usize,
    /// Its node id.
    node: u32,
    /// Its completion was reported to the scheduler.
    reported: bool,
}

/// A scheduler with the plan generation it serves and where its workers are.
struct Active {
    generation: u64,
    sched: Scheduler,
    /// Node id of each layout worker.
    nodes: Vec<u32>,
    /// Classes of the nodes (for utilisation).
    reason: Option<String>,
}

impl FrontStats {
    /// A batch's compute time (all its stages' reports) and its time from send to result.
    fn record_batch(&mut self, compute_us: f64, total_us: f64) {
        self.compute.observe(compute_us / 1e6);
        self.transfer.observe((total_us - compute_us).max(0.0) / 1e6);
    }
}

/// Counters for `/metrics` and reports.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FrontStats {
    /// Samples answered with outputs.
    pub completed: u64,
    /// Of those, answered after their deadline.
    pub late: u64,
    /// Samples dropped by the scheduler.
    pub dropped: u64,
    /// Samples failed (batch failures, no plan).
    pub failed: u64,
    /// Samples retried after their batch failed.
    pub retried: u64,
    /// Batches sent, by size.
    pub batch_sizes: BTreeMap<usize, u64>,
    /// Time each sample queued before its first dispatch.
    pub queue: Histogram,
    /// The workers' compute time of each batch whose result came back (all its stages).
    pub compute: Histogram,
    /// Time of each such batch from send to result not spent computing (transfers and
    /// waits between stages).
    pub transfer: Histogram,
    /// Batches whose result came back.
    pub batches_done: u64,
    /// Policy errors (the native policy took over).
    pub policy_errors: u64,
    /// Device seconds each worker (node id) reported computing.
    pub compute_by_worker: BTreeMap<u32, f64>,
    /// Frames (samples) that arrived, per model in plan order.
    pub arrived_by_model: Vec<u64>,
    /// Frames refused at arrival, by reason (`deadline`, `queue_full`, `too_slow`, `no_worker`).
    pub refused: BTreeMap<String, u64>,
}

struct Core {
    active: Option<Active>,
    old: Vec<Active>,
    held: Vec<RequestId>,
    samples: HashMap<RequestId, Sample>,
    batches: HashMap<u64, BatchState>,
    awaiting_timing: HashMap<u64, AwaitingTiming>,
    awaiting_order: std::collections::VecDeque<u64>,
    next_id: RequestId,
    links: HashMap<u32, Link>,
    down: HashSet<u32>,
    /// Why no plan serves the models (answered to requests while there is none).
    no_plan: String,
    /// A plan change is under way: requests wait aside for the next plan.
    switching: bool,
    generation: u64,
    stats: FrontStats,
    busy: BTreeMap<u32, f64>,
}

impl Core {
    /// Every scheduler: the current plan's, then those still draining.
    fn plans_mut(&mut self) -> impl Iterator<Item = &mut Active> {
        self.active.iter_mut().chain(self.old.iter_mut())
    }

    /// The scheduler of plan generation `generation`.
    fn plan(&self, generation: u64) -> Option<&Active> {
        self.active.iter().chain(&self.old).find(|a| a.generation == generation)
    }

    /// The scheduler of plan generation `generation`, to change.
    fn plan_mut(&mut self, generation: u64) -> Option<&mut Active> {
        self.plans_mut().find(|a| a.generation == generation)
    }

    /// The SLO (microseconds) of `model` under plan `generation`; 0 when unknown.
    fn slo(&self, generation: u64, model: usize) -> f64 {
        self.plan(generation).and_then(|a| a.sched.layout().models.get(model)).map_or(0.0, |m| m.slo_us)
    }
}

struct Inner {
    /// The policies every plan's scheduler is built with (swapped by the admin endpoint).
    policies: Mutex<Policies>,
    core: Mutex<Core>,
    wake: Notify,
    epoch: Instant,
    models: Vec<ModelMeta>,
    /// Admission rules of every plan's scheduler.
    admission: Mutex<Admission>,
}

/// The frontend: a [`Backend`] for the HTTP API. Cheap to clone.
#[derive(Clone)]
pub struct Frontend {
    inner: Arc<Inner>,
}

fn unavailable(message: String) -> ApiError {
    ApiError { status: 503, message, retry_after_s: None }
}

/// The answer to a request refused at arrival: 503 with `Retry-After`, or 400 for a request
/// larger than the queue itself (retrying cannot help).
fn refusal_error(model: &str, refusal: &Refusal) -> ApiError {
    if let Refusal::QueueFull { requested, limit, .. } = *refusal
        && requested > limit
    {
        return ApiError { status: 400, message: format!("model {model}: {refusal}"), retry_after_s: None };
    }
    let retry_after_s = (refusal.retry_after_us() / 1e6).ceil().max(1.0) as u64;
    ApiError {
        status: 503,
        message: format!(
            "model {model}: refused at arrival, the request cannot meet its SLO: {refusal}; retry after {retry_after_s} s or lower the rate"
        ),
        retry_after_s: Some(retry_after_s),
    }
}

fn wire_id(generation: u64, batch: BatchId) -> u64 {
    (generation << GEN_SHIFT) | batch
}

impl Frontend {
    /// A frontend serving `models` (in the plans' model order).
    /// It answers 503 until a plan is installed. Spawns its timer task on the current tokio
    /// runtime.
    pub fn new(models: Vec<ModelMeta>, policies: Policies) -> Frontend {
        let inner = Arc::new(Inner {
            policies: Mutex::new(policies),
            core: Mutex::new(Core {
                active: None,
                old: vec![],
                held: vec![],
                samples: HashMap::new(),
                batches: HashMap::new(),
                awaiting_timing: HashMap::new(),
                awaiting_order: Default::default(),
                next_id: 1,
                links: HashMap::new(),
                down: HashSet::new(),
                no_plan: "the cluster has no plan yet: waiting for workers to register".into(),
                switching: false,
                generation: 0,
                stats: FrontStats::default(),
                busy: BTreeMap::new(),
            }),
            wake: Notify::new(),
            epoch: Instant::now(),
            models,
            admission: Mutex::new(Admission::default()),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let next = {
                    let core = inner.core.lock().unwrap_or_else(|p| p.into_inner());
                    let timers = core.active.iter().chain(&core.old).filter_map(|a| a.sched.next_timer());
                    let fail = core.batches.values().map(|b| inner.us_at(b.fail_at));
                    timers.chain(fail).min_by(f64::total_cmp)
                };
                let sleep = match next {
                    Some(t) => Duration::from_secs_f64(((t - inner.now()) / 1e6).clamp(0.0, 0.25)),
                    None => Duration::from_millis(250),
                };
                let notified = inner.wake.notified();
                tokio::select! {
                    () = tokio::time::sleep(sleep) => {}
                    () = notified => {}
                }
                inner.tick();
            }
        });
        Frontend { inner }
    }

    /// Microseconds since the frontend started (the scheduler's clock).
    pub fn now(&self) -> f64 {
        self.inner.now()
    }

    /// Counters so far.
    pub fn stats(&self) -> FrontStats {
        self.inner.lock().stats.clone()
    }

    /// Frames (samples) arrived per model, in plan order, since the frontend started.
    pub fn arrived(&self) -> Vec<u64> {
        let mut v = self.inner.lock().stats.arrived_by_model.clone();
        v.resize(self.inner.models.len(), 0);
        v
    }

    /// The busy fraction last reported by each worker.
    pub fn busy(&self) -> BTreeMap<u32, f64> {
        self.inner.lock().busy.clone()
    }

    /// Records a worker's health report.
    pub fn health(&self, worker: u32, busy: f64) {
        self.inner.lock().busy.insert(worker, busy);
    }

    /// Requests queued or in flight.
    pub fn outstanding(&self) -> usize {
        self.inner.lock().samples.len()
    }

    /// Starts a plan change: queued requests wait aside (new ones join them); in-flight
    /// batches of the current plan go on.
    pub fn begin_switch(&self) {
        let mut core = self.inner.lock();
        if let Some(mut a) = core.active.take() {
            let queued = a.sched.drain_queued();
            core.held.extend(queued.into_iter().map(|(_, id, _)| id));
            core.old.push(a);
        }
        core.switching = true;
    }

    /// Whether a plan change is under way (requests wait aside for the next plan).
    pub fn is_switching(&self) -> bool {
        self.inner.lock().switching
    }

    /// Whether the old plans' batches have all finished.
    pub fn drained(&self) -> bool {
        let core = self.inner.lock();
        core.old.iter().all(|a| a.sched.in_flight() == 0 && a.sched.queued() == 0)
    }

    /// Fails what the old plans still have in flight (after a drain timeout): their samples
    /// are retried under the next plan.
    pub fn abandon_old(&self) {
        let now = self.now();
        let mut core = self.inner.lock();
        let ids: Vec<u64> = core
            .batches
            .iter()
            .filter(|(_, b)| core.active.as_ref().is_none_or(|a| a.generation != b.generation))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.inner.fail_batch(&mut core, now, id, "the plan changed before it finished".into(), true);
        }
        let mut old = std::mem::take(&mut core.old);
        for a in &mut old {
            let queued = a.sched.drain_queued();
            core.held.extend(queued.into_iter().map(|(_, id, _)| id));
        }
    }

    /// The first step of a plan change, whole: [`Frontend::begin_switch`], then waits up to
    /// `timeout` for the old plan's batches ([`Frontend::drained`]) and fails those still
    /// running ([`Frontend::abandon_old`]) so their samples are retried under the next plan.
    pub async fn drain(&self, timeout: Duration) {
        self.begin_switch();
        let until = Instant::now() + timeout;
        while !self.drained() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !self.drained() {
            tracing::warn!("the old plan's batches did not finish within {timeout:?}; retrying them");
            self.abandon_old();
        }
    }

    /// Installs a plan: `layout` with `nodes[w]` the node id running layout worker `w`, and
    /// links to every node. Requests waiting aside enter its scheduler with their deadlines.
    pub fn install(&self, layout: &Layout, nodes: Vec<u32>, links: HashMap<u32, Link>) -> anyhow::Result<u64> {
        let mut sched = self.inner.policies.lock().unwrap_or_else(|p| p.into_inner()).scheduler(layout)?;
        sched.set_idle_wakeups(true);
        sched.set_admission(self.inner.admission.lock().unwrap_or_else(|p| p.into_inner()).clone());
        let now = self.now();
        let mut core = self.inner.lock();
        core.generation += 1;
        let generation = core.generation;
        core.old.retain(|a| a.sched.in_flight() > 0);
        for (w, n) in nodes.iter().enumerate() {
            if core.down.contains(n) {
                sched.worker_down(now, w);
            }
        }
        core.links.extend(links);
        core.switching = false;
        core.active = Some(Active { generation, sched, nodes, reason: None });
        let held = std::mem::take(&mut core.held);
        for id in held {
            self.inner.requeue(&mut core, now, id);
        }
        self.inner.pump(&mut core, now);
        drop(core);
        self.inner.wake.notify_one();
        Ok(generation)
    }

    /// Sets the admission rules (queue limit per model, refusing what cannot meet its
    /// deadline) of the current plan's scheduler and of later ones.
    pub fn set_admission(&self, admission: Admission) {
        *self.inner.admission.lock().unwrap_or_else(|p| p.into_inner()) = admission.clone();
        if let Some(a) = self.inner.lock().active.as_mut() {
            a.sched.set_admission(admission);
        }
    }

    /// Replaces the batching policy of every model, between two decisions: queued and
    /// in-flight requests stay where they are. Later plans use it too.
    pub fn swap_policy(&self, policies: Policies) -> anyhow::Result<String> {
        let name = policies.name().to_string();
        let mut core = self.inner.lock();
        if let Some(a) = core.active.as_mut() {
            let fresh = policies.batching(a.sched.layout())?;
            for (m, p) in fresh.into_iter().enumerate() {
                a.sched.set_batching_policy(m, p)?;
            }
        }
        *self.inner.policies.lock().unwrap_or_else(|p| p.into_inner()) = policies;
        let now = self.inner.now();
        for a in core.active.iter_mut() {
            a.sched.timer(now);
        }
        self.inner.pump(&mut core, now);
        drop(core);
        self.inner.wake.notify_one();
        tracing::info!(policy = %name, "batching policy swapped");
        Ok(name)
    }

    /// No plan can serve the models now (`reason` says why): waiting requests are answered
    /// with 503 and the reason, and so are new ones until a plan is installed.
    pub fn no_plan(&self, reason: String) {
        let mut core = self.inner.lock();
        core.no_plan = reason.clone();
        core.switching = false;
        if let Some(a) = core.active.take() {
            let mut a = a;
            let queued = a.sched.drain_queued();
            core.held.extend(queued.into_iter().map(|(_, id, _)| id));
            core.old.push(Active { reason: Some(reason.clone()), ..a });
        }
        let held = std::mem::take(&mut core.held);
        for id in held {
            self.inner.answer_err(&mut core, id, unavailable(reason.clone()), false);
        }
    }

    /// A worker (node id) left: nothing more is routed to it; its batches fail and their
    /// samples are retried while their deadlines allow.
    pub fn worker_down(&self, node: u32) {
        let now = self.now();
        let mut core = self.inner.lock();
        if !core.down.insert(node) {
            return;
        }
        let mut victims = vec![];
        let core = &mut *core;
        for a in core.plans_mut() {
            for (w, &n) in a.nodes.iter().enumerate() {
                if n == node {
                    a.sched.worker_down(now, w);
                }
            }
        }
        for (&id, b) in &core.batches {
            if b.hops.iter().any(|h| h.node == node && !h.reported) {
                victims.push(id);
            }
        }
        for id in victims {
            self.inner.fail_batch(core, now, id, format!("worker {node} left"), true);
        }
        core.links.remove(&node);
        self.inner.pump(core, now);
    }

    /// A worker's `timing`, `failed` or `health` report (any other message is ignored).
    pub fn report(&self, msg: &poolpipe_transport::control::Control) {
        use poolpipe_transport::control::Control;
        match msg {
            Control::Timing { worker, batch, stage, start_us, end_us, .. } => {
                self.timing(*worker, *batch, *stage as usize, (end_us - start_us).max(0.0))
            }
            Control::Failed { worker, batch, reason, .. } => self.failed(*batch, *worker, reason),
            Control::Health { worker, busy, .. } => self.health(*worker, *busy),
            _ => {}
        }
    }

    /// Forgets which workers left and the links to them: a controller that restarted numbers
    /// its workers anew. Batches in flight keep their routes.
    pub fn forget_workers(&self) {
        let mut core = self.inner.lock();
        core.down.clear();
        core.links.clear();
    }

    /// A worker rejoined under its id (a new plan will route to it).
    pub fn worker_up(&self, node: u32) {
        self.inner.lock().down.remove(&node);
    }

    /// Worker `worker` finished a stage of a batch (`timing`) in `compute_us` of device time.
    pub fn timing(&self, worker: u32, wire: u64, stage: usize, compute_us: f64) {
        let now = self.now();
        let mut core = self.inner.lock();
        let core = &mut *core;
        *core.stats.compute_by_worker.entry(worker).or_default() += compute_us / 1e6;
        // The batch is in flight, or answered and waiting for its hops' timings.
        let (generation, requests, hop, done) = if let Some(b) = core.batches.get_mut(&wire) {
            b.compute_us += compute_us;
            b.timings += 1;
            let last = b.hops.len().saturating_sub(1);
            // The last hop is reported when its result arrives (its tensors come with it).
            let done = match b.hops.iter().position(|h| h.stage == stage && !h.reported) {
                Some(h) if h < last => {
                    b.hops[h].reported = true;
                    Some(b.batch)
                }
                _ => None,
            };
            (b.generation, b.requests.len(), b.hops.iter().find(|h| h.stage == stage).copied(), done)
        } else if let Some(w) = core.awaiting_timing.get_mut(&wire) {
            w.compute_us += compute_us;
            w.timings += 1;
            let found = (w.generation, w.requests, w.hops.iter().find(|h| h.stage == stage).copied(), None);
            if w.timings >= w.hops.len() {
                let w = core.awaiting_timing.remove(&wire).expect("present");
                core.stats.record_batch(w.compute_us, w.total_us);
            }
            found
        } else {
            return;
        };
        let Some(a) = core.plan_mut(generation) else { return };
        // The measured time corrects the worker's profile in the scheduler.
        if let Some(hop) = hop {
            a.sched.observe(hop.worker, requests, compute_us);
        }
        if let Some(batch) = done {
            let _ = a.sched.stage_done(now, batch, stage);
            self.inner.pump(core, now);
        }
    }

    /// A worker could not run a batch (`failed`): its samples are retried once when their
    /// deadline allows, else answered with the reason.
    pub fn failed(&self, wire: u64, worker: u32, reason: &str) {
        let now = self.now();
        let mut core = self.inner.lock();
        self.inner.fail_batch(&mut core, now, wire, format!("worker {worker}: {reason}"), true);
        self.inner.pump(&mut core, now);
    }

    /// A batch frame came back to the frontend: the model's outputs, or a stage's outputs
    /// under per-pool routing.
    pub fn result(&self, frame: Frame) {
        let now = self.now();
        let mut core = self.inner.lock();
        self.inner.result(&mut core, now, frame);
        self.inner.pump(&mut core, now);
        drop(core);
        self.inner.wake.notify_one();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1e6
    }

    fn us_at(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.epoch).as_secs_f64() * 1e6
    }

    fn tick(self: &Arc<Self>) {
        let now = self.now();
        let mut guard = self.lock();
        let core = &mut *guard;
        for a in core.plans_mut() {
            a.sched.timer(now);
        }
        let at = Instant::now();
        let overdue: Vec<u64> = core.batches.iter().filter(|(_, b)| b.fail_at <= at).map(|(&id, _)| id).collect();
        // Requests no batch carries, past their deadline plus the grace period: the policy
        // neither dispatched nor dropped them. They are answered now.
        let slo: Vec<f64> = match core.active.iter().chain(&core.old).next() {
            Some(a) => a.sched.layout().models.iter().map(|m| m.slo_us).collect(),
            None => vec![],
        };
        let grace = GRACE.as_secs_f64() * 1e6;
        let stale: Vec<RequestId> = core
            .samples
            .iter()
            .filter(|(_, s)| s.batch.is_none() && slo.get(s.model).is_some_and(|&slo| now > s.arrival + slo + grace))
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            for a in core.plans_mut() {
                a.sched.cancel(id);
            }
            core.held.retain(|&h| h != id);
            let model = core.samples.get(&id).map_or(0, |s| s.model);
            let message = format!(
                "model {}: the request was neither dispatched nor dropped by its deadline (policy {}); retry later",
                self.models[model].name,
                self.policies.lock().unwrap_or_else(|p| p.into_inner()).name()
            );
            self.answer_err(core, id, ApiError { status: 504, message, retry_after_s: None }, false);
        }
        for id in overdue {
            let b = &core.batches[&id];
            let pending: Vec<String> = b
                .hops
                .iter()
                .filter(|h| !h.reported)
                .map(|h| format!("stage {} on worker {}", h.stage, h.node))
                .collect();
            let reason = format!("batch {} got no result in time (waiting for {})", b.batch, pending.join(", "));
            self.fail_batch(core, now, id, reason, false);
        }
        self.pump(core, now);
    }

    /// Puts a sample back in the current plan's queue (from its input), or aside when there
    /// is none.
    fn requeue(self: &Arc<Self>, core: &mut Core, now: f64, id: RequestId) {
        let Some(s) = core.samples.get_mut(&id) else { return };
        s.current = s.input.clone();
        s.batch = None;
        let (model, arrival) = (s.model, s.arrival);
        match core.active.as_mut() {
            Some(a) => {
                if let Err(e) = a.sched.arrive_since(now, model, id, arrival) {
                    let e = unavailable(e.to_string());
                    self.answer_err(core, id, e, false);
                }
            }
            None => core.held.push(id),
        }
    }

    fn answer_err(&self, core: &mut Core, id: RequestId, e: ApiError, dropped: bool) {
        if let Some(s) = core.samples.remove(&id) {
            if dropped {
                core.stats.dropped += 1;
            } else {
                core.stats.failed += 1;
            }
            s.owner.fail(e);
        }
    }

    fn fail_batch(self: &Arc<Self>, core: &mut Core, now: f64, wire: u64, reason: String, retry: bool) {
        let Some(b) = core.batches.remove(&wire) else { return };
        if let Some(a) = core.plan_mut(b.generation) {
            let _ = a.sched.abort(now, b.batch);
        }
        tracing::warn!(batch = b.batch, generation = b.generation, "batch failed: {reason}");
        // The SLO of the batch's model under the plan that dispatched it.
        let slo = core.slo(b.generation, b.model);
        for id in b.requests {
            let Some(s) = core.samples.get_mut(&id) else { continue };
            if retry && s.retries == 0 && now < s.arrival + slo {
                s.retries += 1;
                core.stats.retried += 1;
                self.requeue(core, now, id);
            } else {
                let status = if retry { 503 } else { 504 };
                let e = ApiError {
                    status,
                    message: format!("model {}: {reason}", self.models[b.model].name),
                    retry_after_s: None,
                };
                self.answer_err(core, id, e, false);
            }
        }
    }

    /// Carries out what the schedulers asked for.
    fn pump(self: &Arc<Self>, core: &mut Core, now: f64) {
        let mut outs = vec![];
        for a in core.plans_mut() {
            let generation = a.generation;
            outs.extend(a.sched.take_outputs().map(|o| (generation, o)));
        }
        for (generation, out) in outs {
            match out {
                Output::Dispatch(d) => self.dispatch(core, now, generation, d),
                Output::Drop { model, request } => {
                    let slo = core.slo(generation, model);
                    let reason = core.old.iter().find(|a| a.generation == generation).and_then(|a| a.reason.clone());
                    let queued = core.plan(generation).map_or(0, |a| a.sched.queued_for(model));
                    let message = reason.unwrap_or_else(|| {
                        format!(
                            "model {}: the request cannot meet its SLO of {:.0} ms any more (the scheduler dropped it with {queued} requests queued for the model); retry later or lower the rate",
                            self.models[model].name,
                            slo / 1e3
                        )
                    });
                    self.answer_err(core, request, unavailable(message), true);
                }
                Output::Refuse { model, request, refusal } => {
                    *core.stats.refused.entry(refusal.label().to_string()).or_default() += 1;
                    let e = refusal_error(&self.models[model].name, &refusal);
                    self.answer_err(core, request, e, true);
                }
                Output::PolicyError { model, policy, reason } => {
                    core.stats.policy_errors += 1;
                    tracing::error!(model = %self.models[model].name, %policy, "policy error: {reason}");
                }
            }
        }
    }

    fn dispatch(self: &Arc<Self>, core: &mut Core, now: f64, generation: u64, d: crate::dataplane::Dispatch) {
        let Some(a) = core.plan(generation) else { return };
        let nodes: Vec<u32> = d.hops.iter().map(|h| a.nodes[h.worker]).collect();
        let slo = a.sched.layout().models[d.model].slo_us;
        let last_finish = d.hops.last().map_or(now, |h| h.finish);
        let wire = wire_id(generation, d.batch);
        // Concatenate the samples' tensors along the batch.
        let mut pieces: Vec<Vec<&Piece>> = vec![];
        let mut refs = vec![];
        let mut latest_deadline = now;
        let mut queued = vec![];
        for id in &d.requests {
            if let Some(s) = core.samples.get_mut(id) {
                s.batch = Some(wire);
            }
        }
        for id in &d.requests {
            let Some(s) = core.samples.get(id) else { continue };
            if pieces.is_empty() {
                pieces = vec![vec![]; s.current.len()];
            }
            for (i, p) in s.current.iter().enumerate() {
                if let Some(v) = pieces.get_mut(i) {
                    v.push(p);
                }
            }
            let deadline = s.arrival + slo;
            latest_deadline = latest_deadline.max(deadline);
            if Arc::ptr_eq(&s.current, &s.input) {
                queued.push(now - s.arrival);
            }
            refs.push(RequestRef { id: *id, deadline_us: deadline });
        }
        if refs.is_empty() {
            // Every sample of the batch was answered already: nothing to send.
            if let Some(a) = core.plan_mut(generation) {
                let _ = a.sched.abort(now, d.batch);
            }
            return;
        }
        let n = refs.len() as u64;
        let mut tensors = vec![];
        let mut payloads = vec![];
        for group in &pieces {
            let first = group[0];
            let mut buf = BytesMut::with_capacity(first.bytes.len() * group.len());
            for p in group {
                buf.extend_from_slice(&p.bytes);
            }
            let mut dims = vec![n];
            dims.extend(&first.dims);
            tensors.push(TensorInfo { name: first.name.clone(), dtype: first.dtype, dims });
            payloads.push(buf.freeze());
        }
        let mut route: Vec<RouteHop> =
            d.hops.iter().zip(&nodes).skip(1).map(|(h, &w)| RouteHop { stage: h.stage as u16, worker: w }).collect();
        let after = d.hops.last().map_or(0, |h| h.stage + 1);
        route.push(RouteHop { stage: after as u16, worker: FRONTEND });
        let header = BatchHeader {
            model: d.model as u32,
            batch: wire,
            stage: d.hops.first().map_or(0, |h| h.stage) as u16,
            requests: refs,
            route,
            tensors,
        };
        *core.stats.batch_sizes.entry(d.requests.len()).or_default() += 1;
        for q in queued {
            core.stats.queue.observe(q / 1e6);
        }
        let fail_at = self.epoch + Duration::from_secs_f64(latest_deadline.max(last_finish) / 1e6) + GRACE;
        core.batches.insert(
            wire,
            BatchState {
                generation,
                batch: d.batch,
                model: d.model,
                requests: d.requests.clone(),
                hops: d
                    .hops
                    .iter()
                    .zip(&nodes)
                    .map(|(h, &node)| HopState { stage: h.stage, worker: h.worker, node, reported: false })
                    .collect(),
                completes: d.completes,
                sent_us: now,
                fail_at,
                compute_us: 0.0,
                timings: 0,
            },
        );
        let Some(link) = nodes.first().and_then(|n| core.links.get(n)).cloned() else {
            let reason = format!("no link to worker {}", nodes.first().copied().unwrap_or(0));
            self.fail_batch(core, now, wire, reason, true);
            return;
        };
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            if let Err(e) = link.send(&header, &payloads).await
                && let Some(f) = me.upgrade()
            {
                let now = f.now();
                let mut core = f.lock();
                f.fail_batch(&mut core, now, header.batch, e.to_string(), true);
                f.pump(&mut core, now);
            }
        });
    }

    fn result(self: &Arc<Self>, core: &mut Core, now: f64, frame: Frame) {
        let wire = frame.header.batch;
        let Some(b) = core.batches.remove(&wire) else {
            tracing::debug!(batch = wire, "a result for a batch already answered (it was failed or timed out)");
            return;
        };
        let total_us = now - b.sent_us;
        // Split each tensor by request.
        let n = b.requests.len();
        let mut per: Vec<Vec<Piece>> = vec![vec![]; n];
        for (t, p) in frame.header.tensors.iter().zip(&frame.payloads) {
            if t.dims.first().copied() != Some(n as u64) || p.len() % n.max(1) != 0 {
                let reason = format!("the result's tensor '{}' has shape {:?} for {n} requests", t.name, t.dims);
                core.batches.insert(wire, b);
                self.fail_batch(core, now, wire, reason, false);
                return;
            }
            let each = p.len() / n;
            for (i, slot) in per.iter_mut().enumerate() {
                slot.push(Piece {
                    name: t.name.clone(),
                    dtype: t.dtype,
                    dims: t.dims[1..].to_vec(),
                    bytes: p.slice(i * each..(i + 1) * each),
                });
            }
        }
        core.stats.batches_done += 1;
        if b.timings >= b.hops.len() {
            core.stats.record_batch(b.compute_us, total_us);
        } else {
            if core.awaiting_order.len() >= AWAITING_TIMING
                && let Some(old) = core.awaiting_order.pop_front()
                && let Some(w) = core.awaiting_timing.remove(&old)
            {
                core.stats.record_batch(w.compute_us, w.total_us);
            }
            core.awaiting_order.push_back(wire);
            core.awaiting_timing.insert(
                wire,
                AwaitingTiming {
                    compute_us: b.compute_us,
                    timings: b.timings,
                    hops: b.hops.clone(),
                    total_us,
                    generation: b.generation,
                    requests: b.requests.len(),
                },
            );
        }
        let slo = core.slo(b.generation, b.model);
        if !b.completes {
            for (id, pieces) in b.requests.iter().zip(std::mem::take(&mut per)) {
                if let Some(s) = core.samples.get_mut(id) {
                    s.current = Arc::new(pieces);
                    s.batch = None;
                }
            }
        }
        if let Some(a) = core.plan_mut(b.generation) {
            for &HopState { stage, reported, .. } in &b.hops {
                if !reported {
                    let _ = a.sched.stage_done(now, b.batch, stage);
                }
            }
        }
        if !b.completes {
            return;
        }
        for (id, pieces) in b.requests.iter().zip(per) {
            let Some(s) = core.samples.remove(id) else { continue };
            core.stats.completed += 1;
            if now > s.arrival + slo {
                core.stats.late += 1;
            }
            let meta = &self.models[s.model];
            let outputs = meta.outputs.iter().map(|o| pieces.iter().find(|p| p.name == o.name).cloned()).collect();
            let Some(outputs) = outputs else {
                s.owner.fail(ApiError {
                    status: 500,
                    message: format!("model {}: the last stage did not return every output", meta.name),
                    retry_after_s: None,
                });
                continue;
            };
            s.owner.parts.lock().unwrap_or_else(|p| p.into_inner())[s.slot] = Some(outputs);
            if s.owner.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                deliver(&s.owner, meta);
            }
        }
    }
}

/// Concatenates a request's samples' outputs and answers it.
fn deliver(owner: &Pending, meta: &ModelMeta) {
    let parts = std::mem::take(&mut *owner.parts.lock().unwrap_or_else(|p| p.into_inner()));
    let n = parts.len();
    let mut outs = vec![];
    for (i, o) in meta.outputs.iter().enumerate() {
        let mut data = vec![];
        for p in parts.iter().flatten() {
            let piece = &p[i];
            match piece.dtype {
                Dtype::F32 => {
                    data.extend(piece.bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                }
                Dtype::F16 => data.extend(
                    piece
                        .bytes
                        .chunks_exact(2)
                        .map(|c| poolpipe_engine::boundary::f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
                ),
                // Served models have float outputs (checked when they load); integer words
                // are answered as their values.
                Dtype::I32 => data
                    .extend(piece.bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)),
            }
        }
        let mut shape = vec![n];
        shape.extend(&o.shape);
        outs.push(OutputTensor { name: o.name.clone(), shape, data });
    }
    if let Some(tx) = owner.tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = tx.send(Ok(outs));
    }
}

impl Backend for Frontend {
    fn models(&self) -> Vec<ModelMeta> {
        self.inner.models.clone()
    }

    fn set_policy(&self, body: &[u8]) -> Result<String, ApiError> {
        let bad = |message: String| ApiError { status: 400, message, retry_after_s: None };
        let policies = if body.starts_with(b"{") {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Named {
                policy: String,
            }
            let named: Named = serde_json::from_slice(body)
                .map_err(|e| bad(format!("expected {{\"policy\": NAME}} or a .wasm/.wat body: {e}")))?;
            if named.policy.ends_with(".wasm") || named.policy.ends_with(".wat") {
                return Err(bad("name a native policy or wasm:NAME; upload a module file as the body instead".into()));
            }
            Policies::native(&named.policy).map_err(|e| bad(format!("{e:#}")))?
        } else {
            Policies::from_wasm("uploaded.wasm", body, Default::default()).map_err(|e| bad(format!("{e:#}")))?
        };
        self.swap_policy(policies).map_err(|e| ApiError { status: 500, message: format!("{e:#}"), retry_after_s: None })
    }

    fn metrics_text(&self) -> String {
        let core = self.inner.lock();
        let st = &core.stats;
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: f64| {
            out += &format!("# HELP poolpipe_{name} {help}\n# TYPE poolpipe_{name} counter\npoolpipe_{name} {v}\n");
        };
        counter("frames_completed_total", "Frames (samples) answered with outputs.", st.completed as f64);
        counter("frames_late_total", "Frames answered after their deadline.", st.late as f64);
        counter("frames_dropped_total", "Frames dropped by the scheduler (SLO out of reach).", st.dropped as f64);
        counter("frames_admitted_total", "Frames admitted into a queue.", {
            let arrived: u64 = st.arrived_by_model.iter().sum();
            arrived.saturating_sub(st.refused.values().sum::<u64>()) as f64
        });
        counter("frames_failed_total", "Frames failed (batch failures, no plan).", st.failed as f64);
        counter("frames_retried_total", "Frames retried after their batch failed.", st.retried as f64);
        counter("policy_errors_total", "Invalid actions or failures of the batching policy.", st.policy_errors as f64);
        counter("batches_completed_total", "Batches whose result came back.", st.batches_done as f64);
        for (name, help, h) in [
            (
                "frame_queue_seconds",
                "Time each frame waited in its queue until a batch took it (again after a retry).",
                &st.queue,
            ),
            ("batch_compute_seconds", "Device time of each completed batch, all stages (reported).", &st.compute),
            (
                "batch_transfer_seconds",
                "Time of each completed batch from send to result not spent computing.",
                &st.transfer,
            ),
        ] {
            out += &format!("# HELP poolpipe_{name} {help}\n# TYPE poolpipe_{name} histogram\n");
            out += &h.render(&format!("poolpipe_{name}"), "");
        }
        out += "# HELP poolpipe_frames_refused_total Frames refused at arrival, by reason.\n";
        out += "# TYPE poolpipe_frames_refused_total counter\n";
        for reason in Refusal::LABELS {
            let n = st.refused.get(reason).copied().unwrap_or(0);
            out += &format!("poolpipe_frames_refused_total{{reason=\"{reason}\"}} {n}\n");
        }
        if let Some(a) = &core.active {
            let layout = a.sched.layout();
            out +=
                "# HELP poolpipe_queue_depth Requests (frames) queued per model.\n# TYPE poolpipe_queue_depth gauge\n";
            for (m, ml) in layout.models.iter().enumerate() {
                out += &format!("poolpipe_queue_depth{{model=\"{}\"}} {}\n", ml.name, a.sched.queued_for(m));
            }
            out += "# HELP poolpipe_profile_correction Measured over profiled batch time per worker (median of recent reports; 1 = as profiled).\n";
            out += "# TYPE poolpipe_profile_correction gauge\n";
            for c in a.sched.corrections().summary() {
                let node = a.nodes.get(c.worker).copied().unwrap_or(u32::MAX);
                out += &format!("poolpipe_profile_correction{{worker=\"{node}\"}} {}\n", c.ratio);
            }
        }
        out += "# HELP poolpipe_batches_total Batches sent, by size.\n# TYPE poolpipe_batches_total counter\n";
        for (size, n) in &st.batch_sizes {
            out += &format!("poolpipe_batches_total{{size=\"{size}\"}} {n}\n");
        }
        out += "# HELP poolpipe_worker_busy Busy fraction of each worker's device (last health report).\n";
        out += "# TYPE poolpipe_worker_busy gauge\n";
        for (w, b) in &core.busy {
            out += &format!("poolpipe_worker_busy{{worker=\"{w}\"}} {b}\n");
        }
        out += &format!(
            "# HELP poolpipe_plan_generation Plan generation serving.\n# TYPE poolpipe_plan_generation gauge\npoolpipe_plan_generation {}\n",
            core.active.as_ref().map_or(0, |a| a.generation)
        );
        out
    }

    fn model_parameters(&self, model: &str) -> Option<serde_json::Value> {
        let core = self.inner.lock();
        let a = core.active.as_ref()?;
        let m = a.sched.layout().models.iter().position(|x| x.name == model)?;
        let corrections: Vec<serde_json::Value> = a
            .sched
            .corrections()
            .summary()
            .into_iter()
            .filter(|c| a.sched.layout().workers.get(c.worker).is_some_and(|w| w.model == m))
            .map(|c| {
                serde_json::json!({
                    "worker": a.nodes.get(c.worker).copied().unwrap_or(u32::MAX),
                    "reports": c.reports,
                    "ratio": c.ratio,
                    "by_batch": c.by_batch.iter().map(|&(b, r)| serde_json::json!({"batch": b, "ratio": r})).collect::<Vec<_>>(),
                })
            })
            .collect();
        Some(serde_json::json!({
            "plan_generation": a.generation,
            "queued": a.sched.queued_for(m),
            "profile_correction": corrections,
        }))
    }

    fn ready(&self, _model: &str) -> bool {
        // During a plan change, requests wait for the next plan: the model still takes them.
        let core = self.inner.lock();
        core.active.is_some() || (core.switching && core.generation > 0)
    }

    fn unready_reason(&self, _model: &str) -> Option<String> {
        let core = self.inner.lock();
        Some(if core.switching { "the first plan is being installed".into() } else { core.no_plan.clone() })
    }

    fn infer(
        &self,
        model: &str,
        inputs: Vec<InputTensor>,
    ) -> impl std::future::Future<Output = Result<Vec<OutputTensor>, ApiError>> + Send {
        let inner = self.inner.clone();
        let model = model.to_string();
        async move {
            let m = inner.models.iter().position(|x| x.name == model).ok_or_else(|| ApiError {
                status: 404,
                message: format!("unknown model '{model}'"),
                retry_after_s: None,
            })?;
            let n = inputs.first().and_then(|t| t.shape.first().copied()).unwrap_or(0);
            if n == 0 {
                return Err(ApiError {
                    status: 400,
                    message: "the batch dimension must be at least 1".into(),
                    retry_after_s: None,
                });
            }
            let (tx, rx) = oneshot::channel();
            let owner = Arc::new(Pending {
                tx: Mutex::new(Some(tx)),
                parts: Mutex::new(vec![None; n]),
                left: AtomicUsize::new(n),
            });
            {
                let now = inner.now();
                let mut core = inner.lock();
                if core.active.is_none() && !core.switching {
                    return Err(unavailable(core.no_plan.clone()));
                }
                if core.stats.arrived_by_model.len() < inner.models.len() {
                    core.stats.arrived_by_model.resize(inner.models.len(), 0);
                }
                core.stats.arrived_by_model[m] += n as u64;
                // Admission: a request that cannot meet its deadline behind the queued ones,
                // or finds the queue full, is refused now, whole, not answered late.
                if !core.switching
                    && let Some(a) = core.active.as_mut()
                    && let Ok(Err(refusal)) = a.sched.admit(now, m, n)
                {
                    *core.stats.refused.entry(refusal.label().to_string()).or_default() += n as u64;
                    return Err(refusal_error(&model, &refusal));
                }
                for slot in 0..n {
                    let input: Vec<Piece> = inputs
                        .iter()
                        .map(|t| {
                            let per = t.data.len() / n;
                            let bytes: Vec<u8> =
                                t.data[slot * per..(slot + 1) * per].iter().flat_map(|x| x.to_le_bytes()).collect();
                            Piece {
                                name: t.name.clone(),
                                dtype: Dtype::F32,
                                dims: t.shape[1..].iter().map(|&d| d as u64).collect(),
                                bytes: Bytes::from(bytes),
                            }
                        })
                        .collect();
                    let input = Arc::new(input);
                    let id = core.next_id;
                    core.next_id += 1;
                    core.samples.insert(
                        id,
                        Sample {
                            model: m,
                            arrival: now,
                            current: input.clone(),
                            input,
                            owner: owner.clone(),
                            slot,
                            retries: 0,
                            batch: None,
                        },
                    );
                    inner.requeue(&mut core, now, id);
                }
                inner.pump(&mut core, now);
            }
            inner.wake.notify_one();
            match rx.await {
                Ok(answer) => answer,
                Err(_) => Err(ApiError {
                    status: 500,
                    message: "the request was lost (frontend shutting down)".into(),
                    retry_after_s: None,
                }),
            }
        }
    }
}
