//! The frontend's request state machine, without I/O: what the server's frontend and the
//! simulator both run between the clients and the [`Scheduler`]s of the plans.
//!
//! A client request of `n` frames ([`Front::request`]) becomes `n` *samples*, one scheduler
//! request each, and is answered ([`Action::Answer`]) once: when all its samples have their
//! outputs, or at its first failure. The caller feeds events with the time they happened
//! (microseconds on its clock) and carries out the [`Action`]s that come back
//! ([`Front::poll_action`]): send a batch ([`Action::Send`]), answer a request, log a failure.
//! It holds no tensors: the caller keeps each sample's tensors under its [`SampleId`] (the
//! input, and under per-pool routing the output of the last stage run).
//!
//! - **Plans.** Each installed plan has a generation and its own scheduler
//!   ([`Front::install`]). A plan change takes two steps: [`Front::begin_switch`] moves the
//!   queued samples aside and lets the old plan's batches finish ([`Front::drained`], or
//!   [`Front::abandon_old`] after a timeout, which retries them); `install` then starts the
//!   next plan with the waiting samples, each keeping its original deadline.
//! - **Faults.** A batch fails when its send fails ([`Front::send_failed`]), a worker reports
//!   `failed` ([`Front::failed`]), a worker on its route leaves ([`Front::worker_down`]) or no
//!   result comes by its deadline (or reserved finish) plus [`GRACE_US`] ([`Front::timer`]).
//!   Its samples are retried once when their deadline still allows; otherwise the request is
//!   answered with the failure (504 for a batch that ran out of time).
//! - **Deadlines.** A sample that no batch carries past its deadline plus the grace period
//!   (the policy neither dispatched nor dropped it) is answered [`Failure::Stalled`].
//! - **Wire ids.** A batch goes on the wire as [`wire_id`]`(generation, batch)`, so results of
//!   an old plan are told apart from the new plan's batches.
//!
//! Every sample ends exactly once, in the counters of [`FrontStats`]: completed (late or
//! not), dropped by the scheduler, refused at arrival or failed.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::catalog::{CatalogError, Policies};
use crate::stats::Histogram;
use crate::{
    Admission, BatchId, DataplaneError, Dispatch, Layout, Output, Refusal, RequestId, Scheduler, SchedulerStats,
};

/// Bits of a wire batch id below the plan generation.
pub const GEN_SHIFT: u32 = 40;

/// How long past its deadline (or reserved finish) a batch may take before it is failed, and
/// a queued sample before it is answered [`Failure::Stalled`], microseconds.
pub const GRACE_US: f64 = 2e6;

/// Batches answered before all their hops' timing reports came, kept at most.
const AWAITING_TIMING: usize = 4096;

/// A batch's id on the wire: its plan generation above [`GEN_SHIFT`] bits, its scheduler id
/// below.
pub fn wire_id(generation: u64, batch: BatchId) -> u64 {
    (generation << GEN_SHIFT) | batch
}

/// A client request (one or more frames), numbered by the state machine.
pub type RequestKey = u64;
/// One frame of a request: its id in the schedulers.
pub type SampleId = RequestId;

/// Why a request was not answered with outputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// Refused at arrival: it could not meet its deadline, or the queue was full.
    Refused(Refusal),
    /// The scheduler dropped a sample: it could no longer meet its SLO.
    Dropped {
        /// The model's SLO, microseconds.
        slo_us: f64,
        /// Samples queued for the model then.
        queued: usize,
        /// Why, when a plan change or loss caused it.
        reason: Option<String>,
    },
    /// No plan serves the models (why).
    NoPlan(String),
    /// A sample's batch failed and it could not be retried.
    BatchFailed {
        /// What happened (names the batch and worker).
        reason: String,
        /// The batch ran out of time (no result by its deadline plus grace), rather than a
        /// fault reported while there was time.
        timed_out: bool,
    },
    /// A sample was neither dispatched nor dropped by its deadline plus the grace period.
    Stalled {
        /// The batching policy's name.
        policy: String,
    },
    /// The caller found the result unusable (e.g. an output missing).
    BadResult(String),
    /// The request itself is invalid (no frames, an unknown model index).
    Invalid(String),
}

/// How a sample ended without outputs, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Dropped,
    Refused,
    Failed,
}

/// One sample of a batch to send.
#[derive(Clone, Debug, PartialEq)]
pub struct SendSample {
    /// The sample.
    pub id: SampleId,
    /// Its request.
    pub request: RequestKey,
    /// Its frame index in the request.
    pub slot: usize,
    /// Its deadline, microseconds.
    pub deadline_us: f64,
    /// It starts from its input (not from the output of a previous stage).
    pub from_input: bool,
}

/// A batch to send to its first hop's worker.
#[derive(Clone, Debug, PartialEq)]
pub struct SendBatch {
    /// Wire id ([`wire_id`]).
    pub wire: u64,
    /// Plan generation.
    pub generation: u64,
    /// The scheduler's dispatch (model, hops with their reservations, `completes`).
    pub dispatch: Dispatch,
    /// Node id of each hop's worker.
    pub nodes: Vec<u32>,
    /// The samples still waiting for an answer, in batch order.
    pub samples: Vec<SendSample>,
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send a batch; report a send failure with [`Front::send_failed`].
    Send(SendBatch),
    /// Answer a request: `Ok` when all its samples have their outputs (the caller
    /// concatenates them in slot order), else the first failure. The caller forgets the
    /// request's tensors.
    Answer {
        /// The request.
        request: RequestKey,
        /// Its model.
        model: usize,
        /// Outputs ready, or why not.
        result: Result<(), Failure>,
    },
    /// A batch failed (for the log); its samples were retried or answered.
    BatchFailed {
        /// Wire id.
        wire: u64,
        /// What happened.
        reason: String,
    },
    /// A policy failed; its model now runs the native twin (for the log).
    PolicyError {
        /// Model index.
        model: usize,
        /// The policy's name.
        policy: String,
        /// What it did wrong.
        reason: String,
    },
}

/// What a result frame carries for the caller ([`Front::result`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    /// The samples of the batch still waiting, in batch order, with their request and slot
    /// (`None` for a sample already answered: its part of the result is dropped).
    pub samples: Vec<Option<(SampleId, RequestKey, usize)>>,
    /// The batch ran the model's last stage: the tensors are outputs (else the next stage's
    /// inputs, kept under each sample id).
    pub completes: bool,
}

/// A worker's report of one hop it ran.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HopTiming {
    /// Device time, microseconds.
    pub compute_us: f64,
    /// Time from the hop's arrival at the worker to the device starting on it, microseconds
    /// (`None` where the worker does not say).
    pub wait_us: Option<f64>,
}

/// Counters for `/metrics` and reports.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FrontStats {
    /// Samples answered with outputs.
    pub completed: u64,
    /// Of those, answered after their deadline.
    pub late: u64,
    /// Samples dropped by the scheduler (refusals at arrival are counted in `refused`).
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
    /// Time each hop waited at its worker between arriving there and the device starting on
    /// it (reported by the worker; part of `transfer`).
    pub worker_wait: Histogram,
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

impl FrontStats {
    /// A batch's compute time (all its stages' reports) and its time from send to result.
    fn record_batch(&mut self, compute_us: f64, total_us: f64) {
        self.compute.observe(compute_us / 1e6);
        self.transfer.observe((total_us - compute_us).max(0.0) / 1e6);
    }
}

struct Request {
    model: usize,
    /// Samples not yet completed or failed.
    left: usize,
    /// Answered already (with its first failure).
    answered: bool,
    samples: Vec<SampleId>,
}

struct Sample {
    request: RequestKey,
    slot: usize,
    model: usize,
    /// Arrival, microseconds.
    arrival: f64,
    retries: u32,
    /// The batch (wire id) carrying it, while one does.
    batch: Option<u64>,
    /// Its next batch starts from its input.
    from_input: bool,
}

/// One hop of a batch in flight.
#[derive(Clone, Copy, Debug)]
struct HopState {
    stage: usize,
    /// Its node id.
    node: u32,
    /// Its completion was reported to the scheduler.
    reported: bool,
}

struct BatchState {
    generation: u64,
    batch: BatchId,
    model: usize,
    samples: Vec<SampleId>,
    hops: Vec<HopState>,
    completes: bool,
    sent_us: f64,
    fail_at_us: f64,
    compute_us: f64,
    /// Timing reports received (one per hop is due).
    timings: usize,
}

/// A batch answered before all its hops' timing reports came (they may travel another way
/// than the result): kept until they do, so its compute time is recorded whole.
struct AwaitingTiming {
    compute_us: f64,
    timings: usize,
    /// Hops of the batch (one timing report is due per hop).
    hops: usize,
    total_us: f64,
}

/// A scheduler with the plan generation it serves and where its workers are.
struct Plan {
    generation: u64,
    sched: Scheduler,
    /// Node id of each layout worker.
    nodes: Vec<u32>,
    /// Why the plan stopped serving, when no plan replaced it.
    reason: Option<String>,
}

/// The frontend's request state machine (see the module docs).
pub struct Front {
    policies: Policies,
    admission: Admission,
    idle_wakeups: bool,
    correct: bool,
    /// Counters of the schedulers of plans no longer kept.
    retired: SchedulerStats,
    models: usize,
    active: Option<Plan>,
    old: Vec<Plan>,
    held: Vec<SampleId>,
    requests: HashMap<RequestKey, Request>,
    samples: HashMap<SampleId, Sample>,
    batches: HashMap<u64, BatchState>,
    awaiting_timing: HashMap<u64, AwaitingTiming>,
    awaiting_order: VecDeque<u64>,
    next_sample: SampleId,
    next_request: RequestKey,
    down: HashSet<u32>,
    no_plan: String,
    switching: bool,
    generation: u64,
    stats: FrontStats,
    actions: VecDeque<Action>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("generation", &self.generation)
            .field("requests", &self.requests.len())
            .field("batches", &self.batches.len())
            .finish_non_exhaustive()
    }
}

impl Front {
    /// A state machine for `models` models (in the plans' model order) whose plans'
    /// schedulers use `policies`. It answers [`Failure::NoPlan`] until a plan is installed.
    pub fn new(models: usize, policies: Policies) -> Front {
        Front {
            policies,
            admission: Admission::default(),
            idle_wakeups: false,
            correct: true,
            retired: SchedulerStats::default(),
            models,
            active: None,
            old: vec![],
            held: vec![],
            requests: HashMap::new(),
            samples: HashMap::new(),
            batches: HashMap::new(),
            awaiting_timing: HashMap::new(),
            awaiting_order: VecDeque::new(),
            next_sample: 1,
            next_request: 1,
            down: HashSet::new(),
            no_plan: "the cluster has no plan yet: waiting for workers to register".into(),
            switching: false,
            generation: 0,
            stats: FrontStats { arrived_by_model: vec![0; models], ..FrontStats::default() },
            actions: VecDeque::new(),
        }
    }

    /// Asks every later plan's scheduler to wake queues whose policy idles when a worker
    /// frees by its timeline ([`Scheduler::set_idle_wakeups`]); a driver on a real clock
    /// needs it.
    pub fn set_idle_wakeups(&mut self, on: bool) {
        self.idle_wakeups = on;
    }

    /// With `on` (the default), workers' measured times correct the profiles
    /// ([`Scheduler::observe`]); off, timing reports only mark stages done.
    pub fn set_profile_correction(&mut self, on: bool) {
        self.correct = on;
        for a in self.active.iter_mut().chain(self.old.iter_mut()) {
            a.sched.set_learning(on);
        }
    }

    /// The counters of every plan's scheduler so far, replaced plans included.
    pub fn scheduler_stats(&self) -> SchedulerStats {
        let mut s = self.retired.clone();
        for a in self.active.iter().chain(&self.old) {
            s.absorb(a.sched.stats());
        }
        s
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Counters so far.
    pub fn stats(&self) -> &FrontStats {
        &self.stats
    }

    /// The batching policy's name.
    pub fn policy_name(&self) -> &str {
        self.policies.name()
    }

    /// The current plan's generation, scheduler and node ids, if a plan serves.
    pub fn active(&self) -> Option<(u64, &Scheduler, &[u32])> {
        self.active.as_ref().map(|a| (a.generation, &a.sched, a.nodes.as_slice()))
    }

    /// The latest plan generation installed (0 before the first).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Samples queued or in flight.
    pub fn outstanding(&self) -> usize {
        self.samples.len()
    }

    /// Requests not yet answered (or answered with a failure while some of their samples
    /// still ride a batch).
    pub fn open_requests(&self) -> usize {
        self.requests.len()
    }

    /// Whether a plan change is under way.
    pub fn is_switching(&self) -> bool {
        self.switching
    }

    /// Whether requests are taken (a plan serves, or one is being installed).
    pub fn ready(&self) -> bool {
        self.active.is_some() || (self.switching && self.generation > 0)
    }

    /// Why no plan serves, when none does.
    pub fn unready_reason(&self) -> String {
        if self.switching { "the first plan is being installed".into() } else { self.no_plan.clone() }
    }

    /// The earliest time at which [`Front::timer`] has work: a scheduler timer or a batch's
    /// failure time.
    pub fn next_timer(&self) -> Option<f64> {
        let timers = self.active.iter().chain(&self.old).filter_map(|a| a.sched.next_timer());
        let fail = self.batches.values().map(|b| b.fail_at_us);
        timers.chain(fail).min_by(f64::total_cmp)
    }

    fn plans_mut(&mut self) -> impl Iterator<Item = &mut Plan> {
        self.active.iter_mut().chain(self.old.iter_mut())
    }

    fn plan(&self, generation: u64) -> Option<&Plan> {
        self.active.iter().chain(&self.old).find(|a| a.generation == generation)
    }

    fn plan_mut(&mut self, generation: u64) -> Option<&mut Plan> {
        self.plans_mut().find(|a| a.generation == generation)
    }

    /// The SLO (microseconds) of `model` under plan `generation`; 0 when unknown.
    fn slo(&self, generation: u64, model: usize) -> f64 {
        self.plan(generation).and_then(|a| a.sched.layout().models.get(model)).map_or(0.0, |m| m.slo_us)
    }

    /// A request of `frames` frames for `model` arrived at `now`: its key and its samples'
    /// ids (frame order), or why it is refused at once (no plan, refused at admission). An
    /// `Ok` request is answered later by an [`Action::Answer`].
    pub fn request(&mut self, now: f64, model: usize, frames: usize) -> Result<(RequestKey, Vec<SampleId>), Failure> {
        if model >= self.models || frames == 0 {
            return Err(Failure::Invalid(format!(
                "a request of {frames} frames for model index {model} ({} models)",
                self.models
            )));
        }
        if self.active.is_none() && !self.switching {
            return Err(Failure::NoPlan(self.no_plan.clone()));
        }
        self.stats.arrived_by_model[model] += frames as u64;
        let ids: Vec<SampleId> = (0..frames as u64).map(|i| self.next_sample + i).collect();
        self.next_sample += frames as u64;
        // Admission: a request that cannot meet its deadline behind the queued ones, or finds
        // the queue full, is refused now, whole, not answered late. Admitted, all its frames
        // are queued before the policy decides, so they can ride one batch.
        let admitted = match self.active.as_mut() {
            Some(a) if !self.switching => match a.sched.arrive_request(now, model, &ids) {
                Ok(Ok(())) => true,
                Ok(Err(refusal)) => {
                    *self.stats.refused.entry(refusal.label().to_string()).or_default() += frames as u64;
                    self.pump(now);
                    return Err(Failure::Refused(refusal));
                }
                Err(e) => return Err(Failure::Invalid(e.to_string())),
            },
            _ => false,
        };
        let key = self.next_request;
        self.next_request += 1;
        self.requests.insert(key, Request { model, left: frames, answered: false, samples: ids.clone() });
        for (slot, &id) in ids.iter().enumerate() {
            self.samples.insert(
                id,
                Sample { request: key, slot, model, arrival: now, retries: 0, batch: None, from_input: true },
            );
        }
        if !admitted {
            self.held.extend(&ids);
        }
        self.pump(now);
        Ok((key, ids))
    }

    /// Timers due by `now`: the schedulers' timers, batches past their failure time, samples
    /// past their deadline that no batch carries.
    pub fn timer(&mut self, now: f64) {
        for a in self.plans_mut() {
            a.sched.timer(now);
        }
        let mut overdue: Vec<u64> =
            self.batches.iter().filter(|(_, b)| b.fail_at_us <= now).map(|(&id, _)| id).collect();
        overdue.sort_unstable();
        let slo: Vec<f64> = match self.active.iter().chain(&self.old).next() {
            Some(a) => a.sched.layout().models.iter().map(|m| m.slo_us).collect(),
            None => vec![],
        };
        let mut stale: Vec<SampleId> = self
            .samples
            .iter()
            .filter(|(_, s)| s.batch.is_none() && slo.get(s.model).is_some_and(|&slo| now > s.arrival + slo + GRACE_US))
            .map(|(&id, _)| id)
            .collect();
        stale.sort_unstable();
        for id in stale {
            for a in self.plans_mut() {
                a.sched.cancel(id);
            }
            self.held.retain(|&h| h != id);
            let policy = self.policies.name().to_string();
            self.fail_sample(id, Failure::Stalled { policy }, End::Failed);
        }
        for id in overdue {
            let b = &self.batches[&id];
            let pending: Vec<String> = b
                .hops
                .iter()
                .filter(|h| !h.reported)
                .map(|h| format!("stage {} on worker {}", h.stage, h.node))
                .collect();
            let reason = format!("batch {} got no result in time (waiting for {})", b.batch, pending.join(", "));
            self.fail_batch(now, id, reason, false);
        }
        self.pump(now);
    }

    /// Starts a plan change: queued samples wait aside (new ones join them); in-flight
    /// batches of the current plan go on.
    pub fn begin_switch(&mut self) {
        if let Some(mut a) = self.active.take() {
            let queued = a.sched.drain_queued();
            self.held.extend(queued.into_iter().map(|q| q.id));
            self.old.push(a);
        }
        self.switching = true;
    }

    /// Whether the old plans' batches have all finished.
    pub fn drained(&self) -> bool {
        self.old.iter().all(|a| a.sched.in_flight() == 0 && a.sched.queued() == 0)
    }

    /// Fails what the old plans still have in flight (after a drain timeout): their samples
    /// are retried under the next plan.
    pub fn abandon_old(&mut self, now: f64) {
        let mut ids: Vec<u64> = self
            .batches
            .iter()
            .filter(|(_, b)| self.active.as_ref().is_none_or(|a| a.generation != b.generation))
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            self.fail_batch(now, id, "the plan changed before it finished".into(), true);
        }
        for mut a in std::mem::take(&mut self.old) {
            let queued = a.sched.drain_queued();
            self.held.extend(queued.into_iter().map(|q| q.id));
            self.retired.absorb(a.sched.stats());
        }
        self.pump(now);
    }

    /// Installs a plan: `layout` with `nodes[w]` the node id running layout worker `w`.
    /// Samples waiting aside enter its scheduler with their deadlines. Returns its generation.
    pub fn install(&mut self, now: f64, layout: &Layout, nodes: Vec<u32>) -> Result<u64, CatalogError> {
        if nodes.len() != layout.workers.len() {
            return Err(CatalogError::Dataplane(DataplaneError::Layout {
                reason: format!("{} node ids for {} workers", nodes.len(), layout.workers.len()),
            }));
        }
        let mut sched = self.policies.scheduler(layout)?;
        sched.set_idle_wakeups(self.idle_wakeups);
        sched.set_learning(self.correct);
        sched.set_admission(self.admission.clone());
        self.generation += 1;
        let generation = self.generation;
        let (keep, done): (Vec<Plan>, Vec<Plan>) =
            std::mem::take(&mut self.old).into_iter().partition(|a| a.sched.in_flight() > 0);
        self.old = keep;
        for a in done {
            self.retired.absorb(a.sched.stats());
        }
        for (w, n) in nodes.iter().enumerate() {
            if self.down.contains(n) {
                sched.worker_down(now, w);
            }
        }
        self.switching = false;
        self.active = Some(Plan { generation, sched, nodes, reason: None });
        let held = std::mem::take(&mut self.held);
        self.requeue_many(now, &held);
        self.pump(now);
        Ok(generation)
    }

    /// Sets the admission rules of the current plan's scheduler and of later ones.
    pub fn set_admission(&mut self, admission: Admission) {
        if let Some(a) = self.active.as_mut() {
            a.sched.set_admission(admission.clone());
        }
        self.admission = admission;
    }

    /// Replaces the batching policy of every model between two decisions: queued and
    /// in-flight samples stay where they are. Later plans use it too.
    pub fn swap_policy(&mut self, now: f64, policies: Policies) -> Result<(), CatalogError> {
        if let Some(a) = self.active.as_mut() {
            let fresh = policies.batching(a.sched.layout())?;
            for (m, p) in fresh.into_iter().enumerate() {
                a.sched.set_batching_policy(m, p)?;
            }
            a.sched.timer(now);
        }
        self.policies = policies;
        self.pump(now);
        Ok(())
    }

    /// No plan can serve the models now (`reason` says why): waiting samples are answered
    /// [`Failure::NoPlan`], and so are new requests until a plan is installed.
    pub fn no_plan(&mut self, reason: String) {
        self.no_plan = reason.clone();
        self.switching = false;
        if let Some(mut a) = self.active.take() {
            let queued = a.sched.drain_queued();
            self.held.extend(queued.into_iter().map(|q| q.id));
            self.old.push(Plan { reason: Some(reason.clone()), ..a });
        }
        for id in std::mem::take(&mut self.held) {
            self.fail_sample(id, Failure::NoPlan(reason.clone()), End::Failed);
        }
    }

    /// A worker (node id) left: nothing more is routed to it; its batches fail and their
    /// samples are retried while their deadlines allow.
    pub fn worker_down(&mut self, now: f64, node: u32) {
        if !self.down.insert(node) {
            return;
        }
        for a in self.plans_mut() {
            for (w, &n) in a.nodes.iter().enumerate() {
                if n == node {
                    a.sched.worker_down(now, w);
                }
            }
        }
        let mut victims: Vec<u64> = self
            .batches
            .iter()
            .filter(|(_, b)| b.hops.iter().any(|h| h.node == node && !h.reported))
            .map(|(&id, _)| id)
            .collect();
        victims.sort_unstable();
        for id in victims {
            self.fail_batch(now, id, format!("worker {node} left"), true);
        }
        self.pump(now);
    }

    /// A worker rejoined under its id (a new plan will route to it).
    pub fn worker_up(&mut self, node: u32) {
        self.down.remove(&node);
    }

    /// Forgets which workers left: a controller that restarted numbers its workers anew.
    pub fn forget_workers(&mut self) {
        self.down.clear();
    }

    /// Worker `node` finished stage `stage` of batch `wire` (`hop`: its device time, and how
    /// long it waited at the worker).
    /// The measured time corrects the worker's profile; a stage before the last is reported
    /// done to the scheduler (the last one is done when its result arrives).
    pub fn timing(&mut self, now: f64, node: u32, wire: u64, stage: usize, hop: HopTiming) {
        let HopTiming { compute_us, wait_us } = hop;
        *self.stats.compute_by_worker.entry(node).or_default() += compute_us / 1e6;
        if let Some(w) = wait_us.filter(|w| w.is_finite() && *w >= 0.0) {
            self.stats.worker_wait.observe(w / 1e6);
        }
        let Some(b) = self.batches.get_mut(&wire) else {
            // Answered already: the report completes its compute time (metrics only).
            if let Some(w) = self.awaiting_timing.get_mut(&wire) {
                w.compute_us += compute_us;
                w.timings += 1;
                if w.timings >= w.hops
                    && let Some(w) = self.awaiting_timing.remove(&wire)
                {
                    self.awaiting_order.retain(|&x| x != wire);
                    self.stats.record_batch(w.compute_us, w.total_us);
                }
            }
            return;
        };
        b.compute_us += compute_us;
        b.timings += 1;
        let last = b.hops.len().saturating_sub(1);
        // The last hop is done when its result arrives (its tensors come with it).
        let done = match b.hops.iter().position(|h| h.stage == stage && !h.reported) {
            Some(h) if h < last => {
                b.hops[h].reported = true;
                true
            }
            _ => false,
        };
        let (generation, batch) = (b.generation, b.batch);
        let Some(a) = self.plan_mut(generation) else { return };
        // The measure corrects the worker's profile when the hop ends (with what the
        // scheduler saw of the worker's busy time).
        a.sched.observe_hop(batch, stage, compute_us);
        if done {
            let _ = a.sched.stage_done(now, batch, stage);
            self.pump(now);
        }
    }

    /// A worker could not run batch `wire` (`failed`): its samples are retried once when
    /// their deadline allows, else answered with the reason.
    pub fn failed(&mut self, now: f64, wire: u64, node: u32, reason: &str) {
        self.fail_batch(now, wire, format!("worker {node}: {reason}"), true);
        self.pump(now);
    }

    /// Sending batch `wire` failed (`reason`): as [`Front::failed`].
    pub fn send_failed(&mut self, now: f64, wire: u64, reason: String) {
        self.fail_batch(now, wire, reason, true);
        self.pump(now);
    }

    /// How many samples batch `wire` carries, while it is in flight (to check a result's
    /// shape before [`Front::result`]).
    pub fn batch_len(&self, wire: u64) -> Option<usize> {
        self.batches.get(&wire).map(|b| b.samples.len())
    }

    /// The result of batch `wire` is unusable (`reason`): the batch fails without retry.
    pub fn bad_result(&mut self, now: f64, wire: u64, reason: String) {
        self.fail_batch(now, wire, reason, false);
        self.pump(now);
    }

    /// A request cannot be answered with outputs after all (`failure`): it is answered so
    /// and its remaining samples are forgotten.
    pub fn fail_request(&mut self, now: f64, request: RequestKey, failure: Failure) {
        let Some(r) = self.requests.get(&request) else { return };
        for id in r.samples.clone() {
            if let Some(s) = self.samples.get(&id)
                && s.batch.is_none()
            {
                for a in self.plans_mut() {
                    a.sched.cancel(id);
                }
                self.held.retain(|&h| h != id);
            }
            self.fail_sample(id, failure.clone(), End::Failed);
        }
        self.pump(now);
    }

    /// Batch `wire` came back: its samples (see [`Delivered`]), or `None` for a batch no
    /// longer in flight (failed or timed out before; its result is dropped). For a batch that
    /// does not complete, the caller keeps each sample's tensors for its next stage; for one
    /// that does, the outputs, and the requests complete by [`Action::Answer`]s.
    pub fn result(&mut self, now: f64, wire: u64) -> Option<Delivered> {
        let b = self.batches.remove(&wire)?;
        let total_us = now - b.sent_us;
        self.stats.batches_done += 1;
        if b.timings >= b.hops.len() {
            self.stats.record_batch(b.compute_us, total_us);
        } else {
            if self.awaiting_order.len() >= AWAITING_TIMING
                && let Some(old) = self.awaiting_order.pop_front()
                && let Some(w) = self.awaiting_timing.remove(&old)
            {
                self.stats.record_batch(w.compute_us, w.total_us);
            }
            self.awaiting_order.push_back(wire);
            self.awaiting_timing.insert(
                wire,
                AwaitingTiming { compute_us: b.compute_us, timings: b.timings, hops: b.hops.len(), total_us },
            );
        }
        let slo = self.slo(b.generation, b.model);
        let delivered = Delivered {
            samples: b.samples.iter().map(|id| self.samples.get(id).map(|s| (*id, s.request, s.slot))).collect(),
            completes: b.completes,
        };
        if !b.completes {
            for id in &b.samples {
                if let Some(s) = self.samples.get_mut(id) {
                    s.batch = None;
                    s.from_input = false;
                }
            }
        }
        if let Some(a) = self.plan_mut(b.generation) {
            for h in &b.hops {
                if !h.reported {
                    let _ = a.sched.stage_done(now, b.batch, h.stage);
                }
            }
        }
        if b.completes {
            for id in &b.samples {
                let Some(s) = self.samples.remove(id) else { continue };
                self.stats.completed += 1;
                if now > s.arrival + slo {
                    self.stats.late += 1;
                }
                self.finish_sample(s.request, None);
            }
        }
        self.pump(now);
        Some(delivered)
    }

    /// One sample of `request` ended: with its outputs (`failure` none) or not.
    fn finish_sample(&mut self, request: RequestKey, failure: Option<Failure>) {
        let Some(r) = self.requests.get_mut(&request) else { return };
        r.left -= 1;
        let model = r.model;
        match failure {
            Some(f) if !r.answered => {
                r.answered = true;
                self.actions.push_back(Action::Answer { request, model, result: Err(f) });
            }
            None if r.left == 0 && !r.answered => {
                r.answered = true;
                self.actions.push_back(Action::Answer { request, model, result: Ok(()) });
            }
            _ => {}
        }
        if r.left == 0 {
            self.requests.remove(&request);
        }
    }

    /// A sample ends without outputs.
    fn fail_sample(&mut self, id: SampleId, failure: Failure, end: End) {
        let Some(s) = self.samples.remove(&id) else { return };
        match end {
            End::Dropped => self.stats.dropped += 1,
            End::Refused => {}
            End::Failed => self.stats.failed += 1,
        }
        self.finish_sample(s.request, Some(failure));
    }

    /// Puts a sample back in the current plan's queue (from its input), or aside when there
    /// is none.
    fn requeue(&mut self, now: f64, id: SampleId) {
        let Some(s) = self.samples.get_mut(&id) else { return };
        s.batch = None;
        s.from_input = true;
        let (model, arrival) = (s.model, s.arrival);
        match self.active.as_mut() {
            Some(a) => {
                if let Err(e) = a.sched.arrive_since(now, model, id, arrival) {
                    self.fail_sample(id, Failure::NoPlan(e.to_string()), End::Failed);
                }
            }
            None => self.held.push(id),
        }
    }

    /// [`Front::requeue`] for many samples: those of one model that arrived together (the
    /// frames of one request) enter the queue together, so they can ride one batch.
    fn requeue_many(&mut self, now: f64, ids: &[SampleId]) {
        let mut i = 0;
        while i < ids.len() {
            let Some(s) = self.samples.get(&ids[i]) else {
                i += 1;
                continue;
            };
            let key = (s.model, s.arrival);
            let mut j = i + 1;
            while j < ids.len() && self.samples.get(&ids[j]).is_some_and(|t| (t.model, t.arrival) == key) {
                j += 1;
            }
            for id in &ids[i..j] {
                if let Some(s) = self.samples.get_mut(id) {
                    s.batch = None;
                    s.from_input = true;
                }
            }
            match self.active.as_mut() {
                Some(a) => {
                    if let Err(e) = a.sched.arrive_all(now, key.0, &ids[i..j], key.1) {
                        for &id in &ids[i..j] {
                            self.fail_sample(id, Failure::NoPlan(e.to_string()), End::Failed);
                        }
                    }
                }
                None => self.held.extend(&ids[i..j]),
            }
            i = j;
        }
    }

    fn fail_batch(&mut self, now: f64, wire: u64, reason: String, retry: bool) {
        let Some(b) = self.batches.remove(&wire) else { return };
        if let Some(a) = self.plan_mut(b.generation) {
            let _ = a.sched.abort(now, b.batch);
        }
        self.actions.push_back(Action::BatchFailed { wire, reason: reason.clone() });
        let slo = self.slo(b.generation, b.model);
        for id in b.samples {
            let Some(s) = self.samples.get_mut(&id) else { continue };
            if retry && s.retries == 0 && now < s.arrival + slo {
                s.retries += 1;
                self.stats.retried += 1;
                self.requeue(now, id);
            } else {
                let failure = Failure::BatchFailed { reason: reason.clone(), timed_out: !retry };
                self.fail_sample(id, failure, End::Failed);
            }
        }
    }

    /// Carries out what the schedulers asked for.
    fn pump(&mut self, now: f64) {
        loop {
            let mut outs = vec![];
            for a in self.plans_mut() {
                let generation = a.generation;
                outs.extend(a.sched.take_outputs().map(|o| (generation, o)));
            }
            if outs.is_empty() {
                return;
            }
            for (generation, out) in outs {
                match out {
                    Output::Dispatch(d) => self.dispatch(now, generation, d),
                    Output::Drop { model, request } => {
                        let slo_us = self.slo(generation, model);
                        let reason =
                            self.old.iter().find(|a| a.generation == generation).and_then(|a| a.reason.clone());
                        let queued = self.plan(generation).map_or(0, |a| a.sched.queued_for(model));
                        self.fail_sample(request, Failure::Dropped { slo_us, queued, reason }, End::Dropped);
                    }
                    Output::Refuse { request, refusal, .. } => {
                        *self.stats.refused.entry(refusal.label().to_string()).or_default() += 1;
                        self.fail_sample(request, Failure::Refused(refusal), End::Refused);
                    }
                    Output::PolicyError { model, policy, reason } => {
                        self.stats.policy_errors += 1;
                        self.actions.push_back(Action::PolicyError { model, policy, reason });
                    }
                }
            }
        }
    }

    fn dispatch(&mut self, now: f64, generation: u64, d: Dispatch) {
        let Some(a) = self.plan(generation) else { return };
        let nodes: Vec<u32> = d.hops.iter().map(|h| a.nodes.get(h.worker).copied().unwrap_or(u32::MAX)).collect();
        let slo = a.sched.layout().models.get(d.model).map_or(0.0, |m| m.slo_us);
        let last_finish = d.hops.last().map_or(now, |h| h.finish);
        let wire = wire_id(generation, d.batch);
        let mut samples = vec![];
        let mut latest_deadline = now;
        for id in &d.requests {
            let Some(s) = self.samples.get_mut(id) else { continue };
            s.batch = Some(wire);
            let deadline_us = s.arrival + slo;
            latest_deadline = latest_deadline.max(deadline_us);
            if s.from_input {
                self.stats.queue.observe((now - s.arrival).max(0.0) / 1e6);
            }
            samples.push(SendSample {
                id: *id,
                request: s.request,
                slot: s.slot,
                deadline_us,
                from_input: s.from_input,
            });
        }
        if samples.is_empty() {
            // Every sample of the batch was answered already: nothing to send.
            if let Some(a) = self.plan_mut(generation) {
                let _ = a.sched.abort(now, d.batch);
            }
            return;
        }
        *self.stats.batch_sizes.entry(d.requests.len()).or_default() += 1;
        self.batches.insert(
            wire,
            BatchState {
                generation,
                batch: d.batch,
                model: d.model,
                samples: d.requests.clone(),
                hops: d
                    .hops
                    .iter()
                    .zip(&nodes)
                    .map(|(h, &node)| HopState { stage: h.stage, node, reported: false })
                    .collect(),
                completes: d.completes,
                sent_us: now,
                fail_at_us: latest_deadline.max(last_finish) + GRACE_US,
                compute_us: 0.0,
                timings: 0,
            },
        );
        self.actions.push_back(Action::Send(SendBatch { wire, generation, dispatch: d, nodes, samples }));
    }
}
