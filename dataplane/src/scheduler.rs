//! The data-plane scheduler: queues per model, timelines per worker (vGPU) and per server NIC
//! link, and the policy points that decide batching and reservations (PPIPE.md, data plane).
//!
//! It is sans-IO, like a protocol state machine: the caller feeds it events with their
//! timestamps ([`Scheduler::arrive`], [`Scheduler::timer`], [`Scheduler::stage_done`]) and
//! takes back outputs ([`Output`]: dispatch this batch on this route, drop this request,
//! a policy failed) and the time of its next timer ([`Scheduler::next_timer`]). It owns no
//! clock, thread or socket: the simulator ([`crate::sim`]) drives it with a virtual clock, the
//! server with a real one, tests with scripted events.
//!
//! Every resource has a [`Timeline`] of reserved intervals: each worker, each server's uplink
//! and each server's downlink. (The reference keeps one "reserved until" time per resource;
//! intervals let a later reservation use a gap, which matters on busy NICs: a transfer
//! reserved for when its upstream stage finishes no longer blocks the link until then.)
//! `probe` walks a pipeline's stages; at each stage every worker of the pool is a
//! [`Candidate`] with its earliest transfer slot (the upstream server's uplink and this
//! server's downlink both free for the transfer) and then its earliest inference slot, and
//! the reservation policy picks one (default: earliest finish). Transfers between workers of
//! one server use no NIC and take no time. Workers report actual finish times
//! ([`Scheduler::stage_done`]): an early finish frees the rest of its interval and moves the
//! worker's later reservations up (a worker runs what it holds back to back), a late one
//! pushes them back by the delay.
//!
//! Admission ([`Admission`]): [`Scheduler::arrive`] refuses at once ([`Output::Refuse`]) a
//! request whose earliest finish behind the queued requests and the reservations is past its
//! deadline, or that finds its model's queue at its limit, instead of queuing work that would
//! be answered late. Workers' measured batch times ([`Scheduler::observe`]) correct the
//! profiles per worker and batch size ([`crate::correction`]): probes, reservations, admission and
//! the policies' `latency` and `throughput` use the corrected times. Every probe answers its
//! wait stretched by the model's recent overrun ([`Overrun`]: how much later than reserved
//! the batches that waited ended), so queues stop short of the deadlines by the jitter seen
//! lately.
//!
//! With [`Routing::Reserved`] policies (`ppipe`) a dispatch reserves the whole route and
//! later stages do not re-batch. With [`Routing::PerPool`] policies (`reactive`, `triton`) a
//! dispatch takes one stage: when it finishes, its requests join the queue of the next stage
//! of their pipeline, whose idle workers batch them again, pulling the tensors from the
//! upstream workers' servers.

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use poolpipe_policies::{
    Action, BatchingPolicy, Candidate, Probe, QueueHost, ReservationPolicy, Routing, native::earliest_finish,
};

use crate::correction::{Corrections, Overrun};
use crate::layout::{self, Layout};
use crate::timeline::{Timeline, earliest_joint};

/// Errors of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The plan cannot be placed on the fleet or does not match the profiles.
    #[error("cannot lay out the plan: {reason}")]
    Layout {
        /// What is wrong and what to do.
        reason: String,
    },
    /// An event names a model the plan does not serve.
    #[error("model index {model} is not served by the plan ({models} models)")]
    UnknownModel {
        /// The index given.
        model: usize,
        /// Models in the plan.
        models: usize,
    },
    /// A completion report for a batch or stage the scheduler has not dispatched.
    #[error("stage {stage} of batch {batch} is not in flight: a worker reported a batch the scheduler did not send")]
    UnknownBatch {
        /// Batch id.
        batch: u64,
        /// Stage index.
        stage: usize,
    },
}

/// A request id, chosen by the caller.
pub type RequestId = u64;
/// A batch id, chosen by the scheduler.
pub type BatchId = u64;

/// Tensors moving from one server to another ahead of a stage.
#[derive(Clone, Debug, PartialEq)]
pub struct Transfer {
    /// Sending server (uplink).
    pub from_server: usize,
    /// Receiving server (downlink).
    pub to_server: usize,
    /// Requests whose tensors move.
    pub requests: usize,
    /// Reserved start, microseconds.
    pub start: f64,
    /// Reserved end.
    pub end: f64,
}

/// One stage of a dispatched batch on one worker.
#[derive(Clone, Debug, PartialEq)]
pub struct Hop {
    /// Stage index in the pipeline.
    pub stage: usize,
    /// Worker (global index).
    pub worker: usize,
    /// Transfers into the worker before its inference (none for a first stage or from the
    /// same server).
    pub transfers: Vec<Transfer>,
    /// Reserved start of the inference.
    pub start: f64,
    /// Reserved finish.
    pub finish: f64,
}

/// A batch sent on its route.
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatch {
    /// Batch id (unique in this scheduler).
    pub batch: BatchId,
    /// Model index.
    pub model: usize,
    /// Pipeline index.
    pub pipeline: usize,
    /// The requests, in queue order.
    pub requests: Vec<RequestId>,
    /// The reserved hops, in stage order.
    pub hops: Vec<Hop>,
    /// Whether the last hop is the pipeline's last stage (the batch then completes there).
    pub completes: bool,
}

/// What the scheduler asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send a batch along its route.
    Dispatch(Dispatch),
    /// Answer a request with an error: it cannot meet its deadline.
    Drop {
        /// Model index.
        model: usize,
        /// The request.
        request: RequestId,
    },
    /// A request refused at its arrival ([`Scheduler::arrive`]): it never entered a queue.
    Refuse {
        /// Model index.
        model: usize,
        /// The request.
        request: RequestId,
        /// Why, and when to try again.
        refusal: Refusal,
    },
    /// A policy returned an invalid action; the model now runs the native policy of the same
    /// routing (`ppipe` or `reactive`).
    PolicyError {
        /// Model index.
        model: usize,
        /// The policy's name.
        policy: String,
        /// What it did wrong.
        reason: String,
    },
}

/// Why a request is refused at its arrival.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The model's queue holds its limit.
    QueueFull {
        /// Requests queued.
        queued: usize,
        /// Requests asking to enter together (the frames of one client request).
        requested: usize,
        /// The limit ([`Admission::max_queue`] or its default).
        limit: usize,
        /// Microseconds until the queue is likely to have room (the backlog's service time).
        retry_after_us: f64,
    },
    /// The earliest the request could finish, behind the requests queued and the batches
    /// reserved, is past its deadline.
    Deadline {
        /// Estimated finish, microseconds after arrival (its waits stretched by the model's
        /// recent overruns, [`Overrun`]).
        estimate_us: f64,
        /// The model's SLO, microseconds.
        slo_us: f64,
        /// Microseconds until the backlog has shrunk enough for a new request to make it.
        retry_after_us: f64,
    },
    /// Every pipeline of the model takes longer than its SLO even alone, by the measured
    /// times: the plan no longer fits the workers.
    TooSlow {
        /// The fastest pipeline's batch-1 latency as measured, microseconds.
        latency_us: f64,
        /// The model's SLO, microseconds.
        slo_us: f64,
        /// Microseconds after which to try again.
        retry_after_us: f64,
    },
    /// No lane can take the request at all: the workers of its stages are out of service.
    NoWorker {
        /// Microseconds after which to try again (the SLO: a re-plan may come by then).
        retry_after_us: f64,
    },
}

impl Refusal {
    /// Microseconds after which a retry is likely to be admitted.
    pub fn retry_after_us(&self) -> f64 {
        match self {
            Refusal::QueueFull { retry_after_us, .. }
            | Refusal::Deadline { retry_after_us, .. }
            | Refusal::TooSlow { retry_after_us, .. }
            | Refusal::NoWorker { retry_after_us } => *retry_after_us,
        }
    }

    /// Every [`Refusal::label`], for metrics that list each reason.
    pub const LABELS: [&'static str; 4] = ["deadline", "queue_full", "too_slow", "no_worker"];

    /// A short label (one of [`Refusal::LABELS`]) for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::QueueFull { .. } => "queue_full",
            Refusal::Deadline { .. } => "deadline",
            Refusal::TooSlow { .. } => "too_slow",
            Refusal::NoWorker { .. } => "no_worker",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::QueueFull { requested, limit, .. } if requested > limit => write!(
                f,
                "{requested} frames in one request can never fit the queue limit of {limit}: send at most {limit} a request, or raise max_queue"
            ),
            Refusal::QueueFull { queued, limit, .. } => {
                write!(f, "the queue holds {queued} requests, its limit of {limit}: the model is saturated")
            }
            Refusal::Deadline { estimate_us, slo_us, .. } => write!(
                f,
                "behind the requests already queued it would finish {:.0} ms after arrival, past its SLO of {:.0} ms: the model is saturated",
                estimate_us / 1e3,
                slo_us / 1e3
            ),
            Refusal::TooSlow { latency_us, slo_us, .. } => write!(
                f,
                "the model's fastest pipeline takes {:.0} ms alone as its workers measure, more than its SLO of {:.0} ms: the plan no longer fits the workers' speed",
                latency_us / 1e3,
                slo_us / 1e3
            ),
            Refusal::NoWorker { .. } => {
                write!(f, "no worker can take it: the workers of the model's stages are out of service")
            }
        }
    }
}

/// What is admitted at arrival ([`Scheduler::arrive`]). Requests re-entering a queue
/// ([`Scheduler::arrive_since`]: retries, plan changes) were admitted already and are never
/// refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Admission {
    /// Refuse a request whose estimated finish is past its deadline.
    pub deadline: bool,
    /// Most requests queued per model; `None`: twice what the model's lanes serve in one SLO
    /// at their planned batch sizes (at least [`Admission::MIN_QUEUE`]).
    pub max_queue: Option<usize>,
}

impl Admission {
    /// The smallest default queue limit.
    pub const MIN_QUEUE: usize = 64;
}

impl Default for Admission {
    fn default() -> Self {
        Admission { deadline: true, max_queue: None }
    }
}

/// Window of the arrival rate policies see, microseconds.
pub const RATE_WINDOW_US: f64 = 1e6;

/// How far past its deadline a sandboxed policy may leave the head of a queue undecided (or
/// wait) before it is taken for failed, microseconds, at most: the model's SLO when shorter.
/// Half the frontend's grace before a request is answered as stalled, so the native twin
/// answers first.
pub const LIVENESS_GRACE_US: f64 = 1e6;
/// Arrival times kept per queue for the rate (a faster stream's rate comes from the span of
/// the last ones).
const RATE_KEEP: usize = 8192;

/// Counters of the scheduler's work.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SchedulerStats {
    /// Policy decisions asked for.
    pub decisions: u64,
    /// Probes run.
    pub probes: u64,
    /// Batches dispatched (per-pool routing: one per stage).
    pub batches: u64,
    /// Requests dispatched (first stage only).
    pub dispatched_requests: u64,
    /// Requests dropped.
    pub dropped: u64,
    /// Requests refused at arrival.
    pub refused: u64,
    /// Invalid actions and failures of policies.
    pub policy_errors: u64,
    /// A digest of every decision's outcome (dispatched requests and routes, drops), equal
    /// for two runs exactly when they decided the same.
    pub digest: u64,
}

impl SchedulerStats {
    /// Adds the counters of another scheduler (a plan that was replaced) and mixes its digest
    /// in.
    pub fn absorb(&mut self, o: &SchedulerStats) {
        self.decisions += o.decisions;
        self.probes += o.probes;
        self.batches += o.batches;
        self.dispatched_requests += o.dispatched_requests;
        self.dropped += o.dropped;
        self.refused += o.refused;
        self.policy_errors += o.policy_errors;
        self.mix(o.digest);
    }

    fn mix(&mut self, x: u64) {
        self.digest = (self.digest ^ x).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5);
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    id: RequestId,
    arrival: f64,
    deadline: f64,
    enqueued: f64,
    looked: bool,
    /// Worker holding the request's tensors (per-pool stage queues), else `usize::MAX`.
    origin: usize,
}

#[derive(Debug)]
struct Queue {
    model: usize,
    /// (pipeline, first stage) of each lane.
    lanes: Vec<(usize, usize)>,
    entries: VecDeque<Entry>,
    timer: Option<f64>,
    /// When requests entered the queue, the last [`RATE_KEEP`] within [`RATE_WINDOW_US`].
    arrivals: VecDeque<f64>,
}

impl Queue {
    fn new(model: usize, lanes: Vec<(usize, usize)>) -> Queue {
        Queue { model, lanes, entries: VecDeque::new(), timer: None, arrivals: VecDeque::new() }
    }

    fn record_arrival(&mut self, now: f64) {
        while self.arrivals.front().is_some_and(|&t| t <= now - RATE_WINDOW_US) || self.arrivals.len() >= RATE_KEEP {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now);
    }

    /// Requests per second over the window ending at `now`.
    fn rate(&self, now: f64) -> f64 {
        let from = self.arrivals.partition_point(|&t| t <= now - RATE_WINDOW_US);
        let n = self.arrivals.len() - from;
        if n >= RATE_KEEP / 2 {
            // Many arrivals: the span they cover.
            let span = now - self.arrivals[from];
            if span > 0.0 {
                return n as f64 * 1e6 / span;
            }
        }
        n as f64 * 1e6 / RATE_WINDOW_US
    }
}

/// Timelines of every resource.
#[derive(Clone, Debug)]
struct Timelines {
    worker: Vec<Timeline>,
    up: Vec<Timeline>,
    down: Vec<Timeline>,
}

#[derive(Debug)]
struct InFlight {
    model: usize,
    pipeline: usize,
    /// How long it was reserved to wait for its workers at dispatch (the time to its last
    /// hop's reserved finish not spent in its hops).
    waits: f64,
    /// Its last hop's reserved finish at dispatch.
    planned: f64,
    entries: Vec<Entry>,
    /// Each hop's reservation.
    hops: Vec<Reserved>,
}

/// One hop of a batch in flight: its stage, worker and reserved interval.
#[derive(Clone, Copy, Debug)]
struct Reserved {
    stage: usize,
    worker: usize,
    start: f64,
    finish: f64,
    /// Time its input takes to travel from the previous hop's worker (its transfers).
    transfer: f64,
    /// The worker's own measure of the hop's compute, when it came before the hop's end.
    measured: Option<f64>,
}

/// A request taken out of its queue ([`Scheduler::drain_queued`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Queued {
    /// Model index.
    pub model: usize,
    /// The request.
    pub id: RequestId,
    /// When it arrived (its deadline is this plus the model's SLO).
    pub arrival: f64,
}

/// The policy's view of queue `q` of `model` at `now`, borrowing the scheduler's fields one by
/// one (so `self.batching` stays free for the policy's call).
macro_rules! host {
    ($s:ident, $q:expr, $model:expr, $now:expr) => {
        Host {
            now: $now,
            layout: &$s.layout,
            timelines: &$s.timelines,
            queue: &mut $s.queues[$q],
            routing: $s.routing[$model],
            reservation: &mut *$s.reservation,
            candidates: &mut $s.candidates,
            sources: &mut $s.sources,
            probes: &mut $s.stats.probes,
            memo: &mut $s.memo,
            by_server: &mut $s.by_server,
            server_mark: &mut $s.server_mark,
            generation: &mut $s.generation,
            reservation_error: &mut $s.reservation_error,
            corrections: &$s.corrections,
            overrun: $s.overrun[$model].ratio(),
        }
    };
}

/// The scheduler. See the module docs.
pub struct Scheduler {
    layout: Layout,
    timelines: Timelines,
    queues: Vec<Queue>,
    /// Queue feeding each worker's stage.
    feeds: Vec<usize>,
    /// Entry queue of each model.
    entry: Vec<usize>,
    /// Stage queue of (model, pipeline, stage >= 1), per-pool models only.
    stage_queues: HashMap<(usize, usize, usize), usize>,
    batching: Vec<Box<dyn BatchingPolicy>>,
    routing: Vec<Routing>,
    reservation: Box<dyn ReservationPolicy>,
    in_flight: HashMap<BatchId, InFlight, BuildHasherDefault<BatchHasher>>,
    next_batch: BatchId,
    out: Vec<Output>,
    stats: SchedulerStats,
    candidates: Vec<Candidate>,
    sources: Vec<(usize, usize)>,
    memo: Vec<Memo>,
    by_server: Vec<(u64, f64, f64)>,
    server_mark: Vec<u64>,
    generation: u64,
    reservation_error: Option<String>,
    /// Ask an idling queue again when a worker of its pool frees up (see
    /// [`Scheduler::set_idle_wakeups`]).
    wake_idle: bool,
    /// Hops dispatched on each worker and not yet reported done (batch, hop index).
    running: Vec<Vec<(BatchId, usize)>>,
    /// When each worker last reported a hop done.
    last_done: Vec<f64>,
    /// Learn each worker's service time from its completions (see `stage_done`).
    learn: bool,
    /// The earliest believed finish of those hops per worker (infinite when none).
    due: Vec<f64>,
    /// Workers of each model's pipelines (the ones its queues probe).
    model_workers: Vec<Vec<usize>>,
    corrections: Corrections,
    /// Per model, how its batches overran their reservations lately.
    overrun: Vec<Overrun>,
    admission: Admission,
    /// The memo of probes holds for the next decision (set by `arrive` after `admit`).
    keep_memo: bool,
    /// The queue and instant the memo's probes were made for by `admit`.
    memo_owner: Option<(usize, u64)>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler for `layout` with one batching policy per model (in layout order) and a
    /// reservation policy.
    pub fn new(
        layout: Layout,
        batching: Vec<Box<dyn BatchingPolicy>>,
        reservation: Box<dyn ReservationPolicy>,
    ) -> Result<Scheduler, DataplaneError> {
        if batching.len() != layout.models.len() {
            return Err(DataplaneError::Layout {
                reason: format!("{} batching policies for {} models", batching.len(), layout.models.len()),
            });
        }
        let routing: Vec<Routing> = batching.iter().map(|p| p.routing()).collect();
        let mut s = Scheduler {
            timelines: Timelines {
                worker: vec![Timeline::default(); layout.workers.len()],
                up: vec![Timeline::default(); layout.servers.len()],
                down: vec![Timeline::default(); layout.servers.len()],
            },
            queues: vec![],
            feeds: vec![0; layout.workers.len()],
            entry: vec![],
            stage_queues: HashMap::new(),
            batching,
            routing,
            reservation,
            in_flight: HashMap::default(),
            next_batch: 0,
            out: vec![],
            stats: SchedulerStats::default(),
            candidates: vec![],
            sources: vec![],
            memo: vec![],
            by_server: vec![(0, 0.0, 0.0); layout.servers.len()],
            server_mark: vec![0; layout.servers.len()],
            generation: 0,
            reservation_error: None,
            wake_idle: false,
            running: vec![vec![]; layout.workers.len()],
            last_done: vec![f64::NEG_INFINITY; layout.workers.len()],
            learn: true,
            due: vec![f64::INFINITY; layout.workers.len()],
            model_workers: vec![],
            corrections: Corrections::new(layout.workers.len()),
            overrun: vec![Overrun::default(); layout.models.len()],
            admission: Admission::default(),
            keep_memo: false,
            memo_owner: None,
            layout,
        };
        s.build_queues();
        Ok(s)
    }

    fn build_queues(&mut self) {
        for model in &self.layout.models {
            let mut ws: Vec<usize> =
                model.pipelines.iter().flat_map(|p| p.stages.iter().flat_map(|s| s.workers.iter().copied())).collect();
            ws.sort_unstable();
            ws.dedup();
            self.model_workers.push(ws);
        }
        for (m, model) in self.layout.models.iter().enumerate() {
            let lanes = (0..model.pipelines.len()).map(|p| (p, 0)).collect();
            let q = self.queues.len();
            self.queues.push(Queue::new(m, lanes));
            self.entry.push(q);
            for pl in &model.pipelines {
                for &w in &pl.stages[0].workers {
                    self.feeds[w] = q;
                }
            }
            // Stage queues exist for every model: per-pool policies use them, and a hot swap
            // between routings leaves requests there for the new policy.
            for (p, pl) in model.pipelines.iter().enumerate() {
                for (d, st) in pl.stages.iter().enumerate().skip(1) {
                    let q = self.queues.len();
                    self.queues.push(Queue::new(m, vec![(p, d)]));
                    self.stage_queues.insert((m, p, d), q);
                    for &w in &st.workers {
                        self.feeds[w] = q;
                    }
                }
            }
        }
    }

    /// The layout scheduled.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The batching policies' names, joined by '+' when models differ.
    pub fn policy_name(&self) -> String {
        let mut names: Vec<&str> = vec![];
        for p in &self.batching {
            if !names.contains(&p.name()) {
                names.push(p.name());
            }
        }
        names.join("+")
    }

    /// Work counters.
    pub fn stats(&self) -> &SchedulerStats {
        &self.stats
    }

    /// Requests waiting in queues.
    pub fn queued(&self) -> usize {
        self.queues.iter().map(|q| q.entries.len()).sum()
    }

    /// Batches dispatched and not yet reported finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Outputs produced since the last call, in order.
    pub fn take_outputs(&mut self) -> std::vec::Drain<'_, Output> {
        self.out.drain(..)
    }

    /// The earliest timer any queue waits for.
    pub fn next_timer(&self) -> Option<f64> {
        self.queues.iter().filter_map(|q| q.timer).min_by(f64::total_cmp)
    }

    /// A request for `model` arrived at `now`; its deadline is `now + SLO`. Under the
    /// [`Admission`] rules it may be refused at once ([`Output::Refuse`]) instead of queued.
    pub fn arrive(&mut self, now: f64, model: usize, id: RequestId) -> Result<(), DataplaneError> {
        if let Err(refusal) = self.arrive_request(now, model, &[id])? {
            self.out.push(Output::Refuse { model, request: id, refusal });
        }
        Ok(())
    }

    /// The frames `ids` of one client request arrived at `now`: admitted and queued together
    /// (see [`Scheduler::arrive_all`]), or refused together under the [`Admission`] rules
    /// (returned, with no [`Output`]).
    pub fn arrive_request(
        &mut self,
        now: f64,
        model: usize,
        ids: &[RequestId],
    ) -> Result<Result<(), Refusal>, DataplaneError> {
        // A stalled sandboxed policy would fill the queue and have every arrival refused.
        self.check_liveness(now);
        if let Err(refusal) = self.admit(now, model, ids.len())? {
            self.stats.refused += ids.len() as u64;
            for &id in ids {
                self.stats.mix(id ^ 0x7ef0);
            }
            return Ok(Err(refusal));
        }
        // The admission's probes (the entry queue's lanes, at this instant, on timelines
        // nothing has changed since) serve the first decision too.
        self.keep_memo = true;
        self.arrive_all(now, model, ids, now)?;
        Ok(Ok(()))
    }

    /// Whether `count` new requests for `model` arriving at `now` would be admitted (queued
    /// behind those waiting) under the [`Admission`] rules; changes nothing. A driver that
    /// takes requests of several samples asks once for all of them, then queues them with
    /// [`Scheduler::arrive_since`].
    pub fn admit(&mut self, now: f64, model: usize, count: usize) -> Result<Result<(), Refusal>, DataplaneError> {
        let models = self.layout.models.len();
        let slo = self.layout.models.get(model).ok_or(DataplaneError::UnknownModel { model, models })?.slo_us;
        let q = self.entry[model];
        self.catch_up_model(model, now);
        let ahead = self.queues[q].entries.len();
        let overrun = self.overrun[model].ratio();
        let (deadline_check, max_queue) = (self.admission.deadline, self.admission.max_queue);
        self.memo.clear();
        self.memo_owner = Some((q, now.to_bits()));
        let mut host = host!(self, q, model, now);
        // Lanes that can still serve a request within the SLO at all (measured times may
        // have put a pipeline's pure latency past it).
        let lanes: Vec<usize> = (0..host.lanes()).filter(|&l| host.latency(l, 1) <= slo).collect();
        if lanes.is_empty() && host.lanes() > 0 {
            let latency_us = (0..host.lanes()).map(|l| host.latency(l, 1)).fold(f64::INFINITY, f64::min);
            return Ok(Err(Refusal::TooSlow { latency_us, slo_us: slo, retry_after_us: slo.max(1e6) }));
        }
        // What those lanes serve per microsecond at their planned sizes, as corrected.
        let capacity: f64 = lanes.iter().map(|&l| host.throughput(l, host.planned_batch(l).max(1))).sum::<f64>() / 1e6;
        let backlog_us = |n: usize| if capacity > 0.0 { n as f64 / capacity } else { f64::INFINITY };
        let limit = max_queue.unwrap_or_else(|| {
            let serve = (2.0 * slo * capacity).ceil();
            if serve.is_finite() { (serve as usize).max(Admission::MIN_QUEUE) } else { Admission::MIN_QUEUE }
        });
        if ahead + count > limit {
            let retry_after_us = backlog_us(ahead + count - limit).min(slo.max(1e6));
            return Ok(Err(Refusal::QueueFull { queued: ahead, requested: count, limit, retry_after_us }));
        }
        if !deadline_check {
            return Ok(Ok(()));
        }
        // The earliest finish of the last of the new requests: the first batch each lane can
        // take now (probed on the reserved timelines), the rest of the backlog at the lanes'
        // planned throughput.
        let total = ahead + count;
        let mut first_wave = 0;
        let mut finish = f64::INFINITY;
        for &l in &lanes {
            let planned = host.planned_batch(l).max(1);
            first_wave += planned;
            let b = total.min(planned);
            let rest = match host.queue.lanes.get(l) {
                Some(&(p, d)) if host.routing == Routing::PerPool => {
                    host.layout.models[model].pipelines[p].latency_from(d, b)
                        - host.layout.models[model].pipelines[p].stages[d].latency(b)
                }
                _ => 0.0,
            };
            finish = finish.min(host.probe(l, b).finish + rest);
        }
        if !finish.is_finite() {
            return Ok(Err(Refusal::NoWorker { retry_after_us: slo.max(1e6) }));
        }
        // The backlog waits, stretched by the recent overruns as the probes' waits are.
        let estimate = finish + (1.0 + overrun) * backlog_us(total.saturating_sub(first_wave));
        if estimate > now + slo {
            // Room comes back once the part of the backlog that makes it late is served.
            let retry_after_us = (estimate - now - slo).max(0.0);
            return Ok(Err(Refusal::Deadline { estimate_us: estimate - now, slo_us: slo, retry_after_us }));
        }
        Ok(Ok(()))
    }

    /// Sets the admission rules (the default: refuse what cannot meet its deadline; a queue
    /// limit of twice what the lanes serve in one SLO).
    pub fn set_admission(&mut self, admission: Admission) {
        self.admission = admission;
    }

    /// Worker `worker` measured `measured_us` for one stage of a batch of `batch` requests:
    /// its ratio to the profile feeds the reservations from now on
    /// ([`crate::correction`]). Returns whether the report was used.
    pub fn observe(&mut self, worker: usize, batch: usize, measured_us: f64) -> bool {
        let Some(w) = self.layout.workers.get(worker) else { return false };
        let profiled = self.layout.models[w.model]
            .pipelines
            .get(w.pipeline)
            .and_then(|p| p.stages.get(w.stage))
            .map(|s| s.latency(batch));
        match profiled {
            Some(p) => self.corrections.report(worker, batch, measured_us, p),
            None => false,
        }
    }

    /// The worker's measure of a hop's compute (`stage` of `batch`), to be taken into the
    /// profile correction when the hop ends ([`Scheduler::stage_done`]). Returns whether the
    /// hop was still in flight (a report after the hop's end is for metrics only).
    pub fn observe_hop(&mut self, batch: BatchId, stage: usize, measured_us: f64) -> bool {
        let learn = self.learn;
        match self.in_flight.get_mut(&batch).and_then(|f| f.hops.iter_mut().find(|r| r.stage == stage)) {
            Some(r) if learn => {
                r.measured = Some(measured_us);
                true
            }
            _ => false,
        }
    }

    /// With `on` (the default), each hop's end corrects its worker's profile with the larger
    /// of the worker's measure and the time the worker was observed busy with it; off, the
    /// profiles stay as given (the simulator's `--no-correction`).
    pub fn set_learning(&mut self, on: bool) {
        self.learn = on;
    }

    /// The measured-to-profiled ratios so far.
    pub fn corrections(&self) -> &Corrections {
        &self.corrections
    }

    /// `model`'s overrun: the fraction its probes' waits are stretched by ([`Overrun`]); 0
    /// for an unknown model.
    pub fn overrun(&self, model: usize) -> f64 {
        self.overrun.get(model).map_or(0.0, Overrun::ratio)
    }

    /// Requests waiting in `model`'s queues (its entry queue and its stage queues).
    pub fn queued_for(&self, model: usize) -> usize {
        self.queues.iter().filter(|q| q.model == model).map(|q| q.entries.len()).sum()
    }

    /// Timers due at `now` fire.
    pub fn timer(&mut self, now: f64) {
        for q in 0..self.queues.len() {
            if self.queues[q].timer.is_some_and(|t| t <= now) {
                self.queues[q].timer = None;
                self.run_queue(q, now);
            }
        }
        self.check_liveness(now);
    }

    /// How far past its deadline a sandboxed policy may leave a request of `model`.
    fn liveness_grace(&self, model: usize) -> f64 {
        self.layout.models[model].slo_us.min(LIVENESS_GRACE_US)
    }

    /// The liveness rule of sandboxed policies: a queue whose head is [`LIVENESS_GRACE_US`]
    /// (or the SLO, when shorter) past its deadline is decided again; a policy that still leaves that head where it is
    /// has failed, and its native twin takes over (and drops what is too late).
    fn check_liveness(&mut self, now: f64) {
        for q in 0..self.queues.len() {
            let model = self.queues[q].model;
            let grace = self.liveness_grace(model);
            let stale = |s: &Self| {
                s.queues[q].entries.front().filter(|e| e.deadline + grace <= now).map(|e| (e.id, e.deadline))
            };
            if !self.batching[model].sandboxed() || stale(self).is_none() {
                continue;
            }
            self.run_queue(q, now);
            if let Some((id, deadline)) = stale(self)
                && self.batching[model].sandboxed()
            {
                self.policy_error(
                    model,
                    format!(
                        "left request {id} undecided {:.0} ms past its deadline (it neither dispatched nor dropped it)",
                        (now - deadline) / 1e3
                    ),
                );
                self.run_queue(q, now);
            }
        }
    }

    /// A worker finished `stage` of `batch` at `now` (its actual finish time).
    pub fn stage_done(&mut self, now: f64, batch: BatchId, stage: usize) -> Result<(), DataplaneError> {
        let unknown = DataplaneError::UnknownBatch { batch, stage };
        let flight = self.in_flight.get(&batch).ok_or(unknown)?;
        let Some(h) = flight.hops.iter().position(|r| r.stage == stage) else {
            return Err(DataplaneError::UnknownBatch { batch, stage });
        };
        let Reserved { worker, start, finish: reserved, measured, .. } = flight.hops[h];
        let last_hop = h + 1 == flight.hops.len();
        let (model, pipeline, requests) = (flight.model, flight.pipeline, flight.entries.len());
        // The time the worker was busy with the hop: from its believed start, or from its
        // previous completion when it was still busy then, to now. When the worker's own
        // measure covers less (its batches wait, or share the machine, in ways the measure
        // does not see), this is what the next reservations must plan with.
        if self.learn {
            let busy = now - self.last_done[worker].max(start);
            let sample = measured.map_or(busy, |m| m.max(busy));
            if sample > 0.0 {
                self.observe(worker, requests, sample);
            }
        }
        self.last_done[worker] = now;
        self.running[worker].retain(|&(b, i)| !(b == batch && i == h));
        // Feedback: the worker's timeline follows what actually happened (`reserved` is the
        // believed finish: pushed back already while the hop ran late, see `catch_up`).
        if now < reserved {
            self.timelines.worker[worker].correct(start, reserved, now);
            if let Some(r) = self.in_flight.get_mut(&batch).and_then(|f| f.hops.get_mut(h)) {
                r.finish = now;
            }
            self.pull_forward(worker, now);
            if let Some(next) = self.in_flight.get(&batch).and_then(|f| f.hops.get(h + 1)).map(|r| r.worker) {
                self.pull_forward(next, now);
                self.update_due(next);
            }
        } else if now > reserved {
            self.shift(worker, reserved, now - reserved);
        }
        self.update_due(worker);
        if last_hop {
            let flight = self.in_flight.remove(&batch).expect("present");
            if self.learn {
                self.overrun[model].report(flight.waits, flight.planned, now);
            }
            let next = (model, pipeline, stage + 1);
            if let Some(&q) = self.stage_queues.get(&next) {
                for e in flight.entries {
                    self.queues[q].record_arrival(now);
                    let entry = Entry { enqueued: now, looked: false, origin: worker, ..e };
                    let entries = &mut self.queues[q].entries;
                    let at = entries.partition_point(|x| x.deadline <= entry.deadline);
                    entries.insert(at, entry);
                }
                self.run_queue(q, now);
            }
        }
        // A worker is free: per-pool policies batch its queue now. Stage queues are asked under
        // any routing, so requests left there by a swap from per-pool batching never wait on
        // a policy that idles (an empty queue costs nothing).
        let feeding = self.feeds[worker];
        if self.routing[model] == Routing::PerPool || feeding != self.entry[model] {
            self.run_queue(feeding, now);
        }
        Ok(())
    }

    /// Shifts the intervals of `worker` that start at or after `from` by `delta` (a hop before
    /// them runs late), and the believed times of its hops in flight with them.
    fn shift(&mut self, worker: usize, from: f64, delta: f64) {
        self.timelines.worker[worker].push_back(from, delta);
        for &(b, i) in &self.running[worker] {
            if let Some(r) = self.in_flight.get_mut(&b).and_then(|f| f.hops.get_mut(i))
                && r.start >= from
            {
                r.start += delta;
                r.finish += delta;
            }
        }
    }

    /// A worker that is free earlier than reserved starts what it holds next at once (workers
    /// run the batches sent to them back to back, in order of reserved start): its hops not
    /// yet started move earlier to close the gap, in order, each no earlier than its input
    /// can be there. Without this the gap stays on the timeline though the worker never
    /// idles in it, and a batch reserved into it runs after the batches it was meant to
    /// precede, which then run late. The caller updates the worker's `due`.
    fn pull_forward(&mut self, worker: usize, now: f64) {
        let mut hops: Vec<(BatchId, usize, Reserved)> = self.running[worker]
            .iter()
            .filter_map(|&(b, i)| self.in_flight.get(&b).and_then(|f| f.hops.get(i)).map(|r| (b, i, *r)))
            .collect();
        hops.sort_by(|x, y| x.2.start.total_cmp(&y.2.start));
        let mut free = now;
        for (b, i, r) in hops {
            if r.start <= now {
                // Running (as believed): the worker is busy until its finish.
                free = free.max(r.finish);
                continue;
            }
            let ready = match i.checked_sub(1) {
                // A first hop's input was sent with the batch.
                None => now,
                Some(p) => match self.in_flight.get(&b).and_then(|f| f.hops.get(p)) {
                    Some(prev) => prev.finish + r.transfer,
                    None => r.start,
                },
            };
            let to = free.max(ready);
            let hop = self.in_flight.get_mut(&b).and_then(|f| f.hops.get_mut(i));
            match hop {
                Some(hop) if to < r.start && self.timelines.worker[worker].shift_one(r.start, r.finish, to) => {
                    hop.start = to;
                    hop.finish = to + (r.finish - r.start);
                    free = hop.finish;
                }
                _ => free = free.max(r.finish),
            }
        }
    }

    fn update_due(&mut self, worker: usize) {
        let in_flight = &self.in_flight;
        self.due[worker] = self.running[worker]
            .iter()
            .filter_map(|&(b, i)| in_flight.get(&b).and_then(|f| f.hops.get(i)).map(|r| r.finish))
            .fold(f64::INFINITY, f64::min);
    }

    /// A hop not reported by its believed finish is still running: the worker is busy until
    /// at least `now`, and what it has queued behind the hop moves back by as much. Without
    /// this a worker slower than its (corrected) profile, or one whose batches wait in places
    /// the profile does not see, looks free when its reservations end and is sent ever more
    /// work; with it, probes and admission see its real backlog (PPIPE.md, data plane:
    /// reservations follow the workers' reports).
    fn catch_up(&mut self, worker: usize, now: f64) {
        let due = self.due[worker];
        if due >= now || due.is_nan() {
            return;
        }
        let head = self.running[worker]
            .iter()
            .filter_map(|&(b, i)| self.in_flight.get(&b).and_then(|f| f.hops.get(i)).map(|r| (b, i, r.start, r.finish)))
            .min_by(|x, y| x.3.total_cmp(&y.3));
        let Some((b, i, start, finish)) = head else {
            self.due[worker] = f64::INFINITY;
            return;
        };
        let delta = now - finish;
        self.timelines.worker[worker].correct(start, finish, now);
        self.shift(worker, finish, delta);
        if let Some(r) = self.in_flight.get_mut(&b).and_then(|f| f.hops.get_mut(i)) {
            r.finish = now;
        }
        self.update_due(worker);
    }

    /// [`Scheduler::catch_up`] for every worker a model's queues probe.
    fn catch_up_model(&mut self, model: usize, now: f64) {
        for k in 0..self.model_workers[model].len() {
            let w = self.model_workers[model][k];
            if self.due[w] < now {
                self.catch_up(w, now);
            }
        }
    }

    /// Asks the queue's policy for decisions until it waits or idles.
    fn run_queue(&mut self, q: usize, now: f64) {
        let model = self.queues[q].model;
        self.catch_up_model(model, now);
        loop {
            if self.queues[q].entries.is_empty() {
                self.queues[q].timer = None;
                return;
            }
            self.stats.decisions += 1;
            // Probes made by `admit` for this queue at this instant serve the first decision
            // after `arrive` (no timeline has changed in between).
            if !(std::mem::take(&mut self.keep_memo) && self.memo_owner == Some((q, now.to_bits()))) {
                self.memo.clear();
            }
            self.memo_owner = None;
            let action = {
                let mut host = host!(self, q, model, now);
                self.batching[model].decide(&mut host)
            };
            self.check_reservation(model);
            let action = match action {
                Ok(a) => a,
                Err(e) => {
                    self.policy_error(model, format!("failed: {e}"));
                    continue;
                }
            };
            let queued = self.queues[q].entries.len();
            match action {
                Action::Dispatch { lane, batch } => {
                    if lane >= self.queues[q].lanes.len() || batch == 0 || batch > queued {
                        self.policy_error(model, format!("dispatch of {batch} on lane {lane} with {queued} queued"));
                        continue;
                    }
                    let (p, d) = self.queues[q].lanes[lane];
                    let stages = &self.layout.models[model].pipelines[p].stages;
                    let last = if self.routing[model] == Routing::Reserved { stages.len() } else { d + 1 };
                    if stages[d..last].iter().any(|s| batch > s.max_batch()) {
                        self.policy_error(model, format!("batch {batch} is larger than the profiled sizes"));
                        continue;
                    }
                    self.dispatch(q, lane, batch, now);
                }
                Action::Drop { count } => {
                    if count == 0 || count > queued {
                        self.policy_error(model, format!("drop of {count} with {queued} queued"));
                        continue;
                    }
                    for e in self.queues[q].entries.drain(..count) {
                        self.out.push(Output::Drop { model, request: e.id });
                        self.stats.mix(e.id ^ 0xd0d0);
                    }
                    self.stats.dropped += count as u64;
                }
                Action::Wait { until } => {
                    if until.is_nan() || until <= now {
                        self.policy_error(model, format!("wait until {until} at {now}: not in the future"));
                        continue;
                    }
                    let head = self.queues[q].entries.front().map_or(f64::INFINITY, |e| e.deadline);
                    if self.batching[model].sandboxed() && until > head + self.liveness_grace(model) {
                        self.policy_error(
                            model,
                            format!(
                                "wait until {until} at {now}: past the deadline of the request at the head of the queue ({head})"
                            ),
                        );
                        continue;
                    }
                    self.queues[q].timer = Some(until);
                    return;
                }
                Action::Idle => {
                    self.queues[q].timer = if self.wake_idle { self.pool_frees(q, now) } else { None };
                    return;
                }
            }
        }
    }

    /// A reservation policy that failed during the last call is replaced by earliest finish.
    fn check_reservation(&mut self, model: usize) {
        if let Some(reason) = self.reservation_error.take() {
            self.stats.policy_errors += 1;
            let policy = self.reservation.name().to_string();
            tracing::error!(%policy, "reservation policy {reason}; falling back to earliest finish");
            self.out.push(Output::PolicyError { model, policy, reason });
            self.reservation = Box::new(poolpipe_policies::native::EarliestFinish);
        }
    }

    /// Replaces the batching policy of `model` between two decisions (a hot swap). Queued and
    /// in-flight requests stay where they are: a request waiting in a per-pool stage queue is
    /// served by the new policy from that stage on.
    pub fn set_batching_policy(&mut self, model: usize, policy: Box<dyn BatchingPolicy>) -> Result<(), DataplaneError> {
        if model >= self.batching.len() {
            return Err(DataplaneError::UnknownModel { model, models: self.batching.len() });
        }
        self.routing[model] = policy.routing();
        self.batching[model] = policy;
        Ok(())
    }

    /// A request that arrived at `arrival` (before `now`) enters its model's queue now, with
    /// its deadline still `arrival + SLO`: a request moved from another scheduler (a plan
    /// change) or retried after its batch failed keeps the time it has left.
    pub fn arrive_since(&mut self, now: f64, model: usize, id: RequestId, arrival: f64) -> Result<(), DataplaneError> {
        self.arrive_all(now, model, &[id], arrival)
    }

    /// As [`Scheduler::arrive_since`] for several requests that arrived together (the frames
    /// of one client request): all are queued before the policy decides, so they can ride
    /// one batch.
    pub fn arrive_all(
        &mut self,
        now: f64,
        model: usize,
        ids: &[RequestId],
        arrival: f64,
    ) -> Result<(), DataplaneError> {
        let slo = self
            .layout
            .models
            .get(model)
            .ok_or(DataplaneError::UnknownModel { model, models: self.layout.models.len() })?
            .slo_us;
        let arrival = arrival.min(now);
        let q = self.entry[model];
        for &id in ids {
            let entry =
                Entry { id, arrival, deadline: arrival + slo, enqueued: now, looked: false, origin: usize::MAX };
            self.queues[q].record_arrival(now);
            let entries = &mut self.queues[q].entries;
            let at = entries.partition_point(|e| e.deadline <= entry.deadline);
            entries.insert(at, entry);
        }
        self.run_queue(q, now);
        Ok(())
    }

    /// A dispatched batch failed (a worker left, a send failed, no result came): forgets it
    /// and frees what is left of its reservations. Returns its model and requests, which
    /// the driver answers or retries; the scheduler holds nothing of them any more.
    pub fn abort(&mut self, now: f64, batch: BatchId) -> Result<(usize, Vec<RequestId>), DataplaneError> {
        let flight = self.in_flight.remove(&batch).ok_or(DataplaneError::UnknownBatch { batch, stage: 0 })?;
        for &Reserved { worker, start, finish, .. } in &flight.hops {
            if finish > now {
                self.timelines.worker[worker].correct(start, finish, now.max(start));
            }
            self.running[worker].retain(|&(b, _)| b != batch);
            self.update_due(worker);
        }
        let feeding: Vec<usize> = flight.hops.iter().map(|r| self.feeds[r.worker]).collect();
        for q in feeding {
            self.run_queue(q, now);
        }
        Ok((flight.model, flight.entries.iter().map(|e| e.id).collect()))
    }

    /// Takes a worker out of service from `now` (its process left): no later batch is
    /// reserved on it. Batches already on it are the driver's to [`abort`](Self::abort).
    pub fn worker_down(&mut self, now: f64, worker: usize) {
        if let Some(tl) = self.timelines.worker.get_mut(worker) {
            tl.prune(now);
            let start = tl.earliest(now, f64::INFINITY);
            tl.reserve(start, f64::INFINITY);
        }
    }

    /// Batches in flight that have a hop on `worker`.
    pub fn batches_on(&self, worker: usize) -> Vec<BatchId> {
        let mut v: Vec<BatchId> =
            self.in_flight.iter().filter(|(_, f)| f.hops.iter().any(|r| r.worker == worker)).map(|(&b, _)| b).collect();
        v.sort_unstable();
        v
    }

    /// Empties every queue: each queued request, for moving them to another scheduler (a
    /// plan change). In-flight batches stay.
    pub fn drain_queued(&mut self) -> Vec<Queued> {
        let mut out = vec![];
        for q in &mut self.queues {
            q.timer = None;
            out.extend(q.entries.drain(..).map(|e| Queued { model: q.model, id: e.id, arrival: e.arrival }));
        }
        out
    }

    /// With `on`, a queue whose policy idles with requests waiting is asked again when the
    /// first worker of its pool is free by its timeline. A driver on a real clock needs it:
    /// a report that comes early for a batch whose reservation was pushed back leaves the
    /// worker busy on its timeline with no event due at the end. The simulator's workers
    /// follow their reservations, so it runs without.
    pub fn set_idle_wakeups(&mut self, on: bool) {
        self.wake_idle = on;
    }

    /// When the first worker fed by queue `q` has nothing reserved any more (what policies
    /// see as idle), if after `now`.
    fn pool_frees(&self, q: usize, now: f64) -> Option<f64> {
        self.feeds
            .iter()
            .enumerate()
            .filter(|&(_, &f)| f == q)
            .map(|(w, _)| self.timelines.worker[w].intervals().iter().map(|iv| iv.1).fold(now, f64::max))
            .filter(|t| t.is_finite() && *t > now)
            .min_by(f64::total_cmp)
    }

    /// Takes a queued request out of its queue (its driver answered it another way).
    /// Returns whether it was queued.
    pub fn cancel(&mut self, request: RequestId) -> bool {
        for q in &mut self.queues {
            if let Some(i) = q.entries.iter().position(|e| e.id == request) {
                q.entries.remove(i);
                return true;
            }
        }
        false
    }

    /// Replaces the reservation policy between two decisions.
    pub fn set_reservation_policy(&mut self, policy: Box<dyn ReservationPolicy>) {
        self.reservation = policy;
    }

    fn policy_error(&mut self, model: usize, reason: String) {
        self.stats.policy_errors += 1;
        let policy = self.batching[model].name().to_string();
        tracing::error!(model = %self.layout.models[model].name, %policy, "{reason}; falling back to a native policy");
        self.out.push(Output::PolicyError { model, policy, reason });
        let name = if self.routing[model] == Routing::Reserved { "ppipe" } else { "reactive" };
        self.batching[model] = poolpipe_policies::native::batching(name).expect("built in");
        self.routing[model] = self.batching[model].routing();
    }

    fn dispatch(&mut self, q: usize, lane: usize, batch: usize, now: f64) {
        let (pipeline, first) = self.queues[q].lanes[lane];
        let model = self.queues[q].model;
        let mut hops = vec![];
        {
            let mut host = host!(self, q, model, now);
            let stages = host.pipeline(lane).map_or(0, |p| p.stages.len());
            let known = host.memo.iter().find(|m| m.lane == lane && m.batch == batch).map(|m| m.picks);
            // Reuse the workers the policy's probe picked (timelines have not changed since).
            let forced = known.filter(|p| stages - first <= MEMO_STAGES && p[0] != u32::MAX);
            host.route(lane, batch, Some(&mut hops), forced.as_ref());
        }
        self.check_reservation(model);
        for hop in &hops {
            let w = &mut self.timelines.worker[hop.worker];
            w.prune(now);
            w.reserve(hop.start, hop.finish);
            for t in &hop.transfers {
                for link in [&mut self.timelines.up[t.from_server], &mut self.timelines.down[t.to_server]] {
                    link.prune(now);
                    link.reserve(t.start, t.end);
                }
            }
        }
        let entries: Vec<Entry> = self.queues[q].entries.drain(..batch).collect();
        for e in &entries {
            self.stats.mix(e.id);
        }
        for h in &hops {
            self.stats.mix(h.worker as u64);
            self.stats.mix(h.start.to_bits());
            self.stats.mix(h.finish.to_bits());
        }
        let id = self.next_batch;
        self.next_batch += 1;
        self.stats.batches += 1;
        if first == 0 {
            self.stats.dispatched_requests += batch as u64;
        }
        let stages = self.layout.models[model].pipelines[pipeline].stages.len();
        let completes = hops.last().is_some_and(|h| h.stage + 1 == stages);
        self.in_flight.insert(
            id,
            InFlight {
                model,
                pipeline,
                waits: hops.last().map_or(0.0, |h| h.finish - now)
                    - hops.iter().map(|h| h.finish - h.start).sum::<f64>(),
                planned: hops.last().map_or(now, |h| h.finish),
                // Per-pool routing re-queues the requests at the next stage; an aborted batch
                // gives them back to the driver.
                entries: entries.clone(),
                hops: hops
                    .iter()
                    .map(|h| Reserved {
                        stage: h.stage,
                        worker: h.worker,
                        start: h.start,
                        finish: h.finish,
                        transfer: h.transfers.iter().map(|t| t.end - t.start).sum(),
                        measured: None,
                    })
                    .collect(),
            },
        );
        for (i, h) in hops.iter().enumerate() {
            self.running[h.worker].push((id, i));
            self.due[h.worker] = self.due[h.worker].min(h.finish);
        }
        self.out.push(Output::Dispatch(Dispatch {
            batch: id,
            model,
            pipeline,
            requests: entries.iter().map(|e| e.id).collect(),
            hops,
            completes,
        }));
    }
}

/// Batch ids are sequential: a multiplicative hash spreads them at no cost.
#[derive(Default)]
struct BatchHasher(u64);

impl Hasher for BatchHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A queue as its policy sees it.
struct Host<'a> {
    now: f64,
    layout: &'a Layout,
    timelines: &'a Timelines,
    queue: &'a mut Queue,
    routing: Routing,
    reservation: &'a mut dyn ReservationPolicy,
    candidates: &'a mut Vec<Candidate>,
    sources: &'a mut Vec<(usize, usize)>,
    probes: &'a mut u64,
    memo: &'a mut Vec<Memo>,
    /// Per server: (stamp, transfer start, transfer end) of the stage being probed.
    by_server: &'a mut Vec<(u64, f64, f64)>,
    /// Per server: the stamp of the last stage whose pool has a worker there.
    server_mark: &'a mut Vec<u64>,
    generation: &'a mut u64,
    reservation_error: &'a mut Option<String>,
    corrections: &'a Corrections,
    /// The model's overrun: waits are answered stretched by it ([`Overrun`]).
    overrun: f64,
}

/// Stages a memo remembers the picked workers of.
const MEMO_STAGES: usize = 4;
/// Picked worker (index in its stage's pool) per stage of a route; `u32::MAX` beyond.
type Picks = [u32; MEMO_STAGES];

/// A probe made during the current decision (timelines do not change within one), so repeated
/// probes and the dispatch that follows reuse it.
#[derive(Clone, Copy, Debug)]
struct Memo {
    lane: usize,
    batch: usize,
    finish: f64,
    pure: f64,
    picks: Picks,
}

impl Host<'_> {
    /// Probes `lane` at `batch`: the finish time and the pure latency. With `hops`, records
    /// the route.
    fn route(
        &mut self,
        lane: usize,
        batch: usize,
        mut hops: Option<&mut Vec<Hop>>,
        forced: Option<&Picks>,
    ) -> (f64, f64, Picks) {
        let mut picks: Picks = [u32::MAX; MEMO_STAGES];
        if forced.is_none() {
            *self.probes += 1;
        }
        let (p, from) = self.queue.lanes[lane];
        let pipeline = &self.layout.models[self.queue.model].pipelines[p];
        let to = if self.routing == Routing::Reserved { pipeline.stages.len() } else { from + 1 };
        let tl = self.timelines;
        let mut ready = self.now;
        let mut pure = 0.0;
        let mut prev_server = usize::MAX;
        // Where the batch's input tensors are: per-pool stage queues pull them from the
        // requests' upstream workers.
        self.sources.clear();
        if from > 0 {
            for e in self.queue.entries.iter().take(batch) {
                let server = self.layout.workers[e.origin].server;
                match self.sources.iter_mut().find(|(s, _)| *s == server) {
                    Some(x) => x.1 += 1,
                    None => self.sources.push((server, 1)),
                }
            }
        }
        for d in from..to {
            let st = &pipeline.stages[d];
            let lat = st.latency(batch);
            if !lat.is_finite() {
                return (f64::INFINITY, f64::INFINITY, picks);
            }
            if d > from {
                self.sources.clear();
                self.sources.push((prev_server, batch));
            }
            let per_request = st.input_us_per_request;
            if d > 0 {
                pure += per_request * batch as f64;
            }
            self.candidates.clear();
            let range = match forced {
                Some(f) => f[d - from] as usize..f[d - from] as usize + 1,
                None => 0..st.workers.len(),
            };
            *self.generation += 1;
            let stamp = *self.generation;
            // The next stage of the route: its input transfer time, and its servers marked
            // (an output that stays on a server crosses no NIC).
            let (out_us, mark) = match pipeline.stages.get(d + 1).filter(|_| d + 1 < to) {
                Some(next) => {
                    *self.generation += 1;
                    let mark = *self.generation;
                    for &sv in &next.servers {
                        self.server_mark[sv] = mark;
                    }
                    (next.input_us_per_request * batch as f64, mark)
                }
                None => (0.0, 0),
            };
            for i in range {
                let (w, server) = (st.workers[i], st.servers[i]);
                // The transfer depends on the receiving server only: once per server.
                let (first_start, arrived) = match self.by_server[server] {
                    (g, a, b) if g == stamp => (a, b),
                    _ => {
                        let (mut first_start, mut arrived) = (f64::INFINITY, ready);
                        for &(src, n) in self.sources.iter() {
                            if src == server {
                                continue;
                            }
                            let dur = per_request * n as f64;
                            let start = earliest_joint(&tl.up[src], &tl.down[server], arrived, dur);
                            first_start = first_start.min(start);
                            arrived = start + dur;
                        }
                        self.by_server[server] = (stamp, first_start, arrived);
                        (first_start, arrived)
                    }
                };
                let lat = lat * self.corrections.ratio(w, batch);
                let start = tl.worker[w].earliest(arrived, lat);
                let finish = start + lat;
                // When the output could leave this server for the next stage of the route.
                let output_ready = if out_us > 0.0 && self.server_mark[server] != mark {
                    tl.up[server].earliest(finish, out_us) + out_us
                } else {
                    finish
                };
                self.candidates.push(Candidate {
                    worker: i as u32,
                    transfer_start: first_start.min(arrived),
                    transfer_end: arrived,
                    start,
                    finish,
                    output_ready,
                    same_server: server == prev_server,
                });
            }
            let pick = if forced.is_some() {
                0
            } else if self.reservation_error.is_some() {
                earliest_finish(self.candidates)
            } else {
                match self.reservation.choose(self.candidates) {
                    Ok(i) if i < self.candidates.len() => i,
                    Ok(i) => {
                        *self.reservation_error = Some(format!("chose {i} of {} candidates", self.candidates.len()));
                        earliest_finish(self.candidates)
                    }
                    Err(e) => {
                        *self.reservation_error = Some(format!("failed: {e}"));
                        earliest_finish(self.candidates)
                    }
                }
            };
            let c = self.candidates[pick];
            pure += c.finish - c.start;
            if let Some(slot) = picks.get_mut(d - from) {
                *slot = c.worker;
            }
            let (w, server) = (st.workers[c.worker as usize], st.servers[c.worker as usize]);
            if let Some(hops) = hops.as_deref_mut() {
                let mut transfers = vec![];
                let mut arrived = ready;
                for &(src, n) in self.sources.iter() {
                    if src != server {
                        let dur = per_request * n as f64;
                        let start = earliest_joint(&tl.up[src], &tl.down[server], arrived, dur);
                        arrived = start + dur;
                        transfers.push(Transfer {
                            from_server: src,
                            to_server: server,
                            requests: n,
                            start,
                            end: arrived,
                        });
                    }
                }
                hops.push(Hop { stage: d, worker: w, transfers, start: c.start, finish: c.finish });
            }
            ready = c.finish;
            prev_server = server;
        }
        (ready, pure, picks)
    }
}

impl QueueHost for Host<'_> {
    fn now(&self) -> f64 {
        self.now
    }

    fn queue_len(&self) -> usize {
        self.queue.entries.len()
    }

    fn arrival(&self, i: usize) -> f64 {
        self.queue.entries.get(i).map_or(f64::NAN, |e| e.arrival)
    }

    fn enqueued(&self, i: usize) -> f64 {
        self.queue.entries.get(i).map_or(f64::NAN, |e| e.enqueued)
    }

    fn deadline(&self, i: usize) -> f64 {
        self.queue.entries.get(i).map_or(f64::NAN, |e| e.deadline)
    }

    fn first_look(&mut self) -> bool {
        match self.queue.entries.front_mut() {
            Some(e) => !std::mem::replace(&mut e.looked, true),
            None => false,
        }
    }

    fn lanes(&self) -> usize {
        self.queue.lanes.len()
    }

    fn planned_batch(&self, lane: usize) -> usize {
        self.pipeline(lane).map_or(0, |p| p.batch)
    }

    fn batch_build(&self, lane: usize) -> f64 {
        self.pipeline(lane).map_or(0.0, |p| p.batch_build_us)
    }

    fn latency(&self, lane: usize, batch: usize) -> f64 {
        let Some(&(p, from)) = self.queue.lanes.get(lane) else { return f64::INFINITY };
        let pipeline = &self.layout.models[self.queue.model].pipelines[p];
        if self.corrections.is_identity() {
            return pipeline.latency_from(from, batch);
        }
        // Each stage at its fastest worker's corrected speed (the best case of a route).
        pipeline.stages[from..]
            .iter()
            .enumerate()
            .map(|(i, st)| {
                let ratio = st.workers.iter().map(|&w| self.corrections.ratio(w, batch)).fold(f64::INFINITY, f64::min);
                let ratio = if ratio.is_finite() { ratio } else { 1.0 };
                st.latency(batch) * ratio + if i > 0 { st.input_us_per_request * batch as f64 } else { 0.0 }
            })
            .sum()
    }

    fn idle_workers(&self, lane: usize) -> usize {
        let Some(&(p, d)) = self.queue.lanes.get(lane) else { return 0 };
        let stage = &self.layout.models[self.queue.model].pipelines[p].stages[d];
        stage.workers.iter().filter(|&&w| self.timelines.worker[w].idle_from(self.now)).count()
    }

    fn probe(&mut self, lane: usize, batch: usize) -> Probe {
        if lane >= self.queue.lanes.len() || batch == 0 {
            return Probe { finish: f64::INFINITY, wait: f64::INFINITY };
        }
        let (finish, pure) = match self.memo.iter().find(|m| m.lane == lane && m.batch == batch) {
            Some(m) => (m.finish, m.pure),
            None => {
                let (finish, pure, picks) = self.route(lane, batch, None, None);
                self.memo.push(Memo { lane, batch, finish, pure, picks });
                (finish, pure)
            }
        };
        // The wait stretched by the recent overruns (see `Overrun`).
        let wait = (finish - self.now - pure).max(0.0) * (1.0 + self.overrun);
        Probe { finish: self.now + pure + wait, wait }
    }

    fn arrival_rate(&self) -> f64 {
        self.queue.rate(self.now)
    }

    fn throughput(&self, lane: usize, batch: usize) -> f64 {
        let Some(&(p, from)) = self.queue.lanes.get(lane) else { return 0.0 };
        let pipeline = &self.layout.models[self.queue.model].pipelines[p];
        let to = if self.routing == Routing::Reserved { pipeline.stages.len() } else { from + 1 };
        let mut slowest = f64::INFINITY;
        for st in &pipeline.stages[from..to] {
            let lat = st.latency(batch);
            if batch == 0 || !lat.is_finite() || lat <= 0.0 {
                return 0.0;
            }
            let per_us: f64 = st.workers.iter().map(|&w| batch as f64 / (lat * self.corrections.ratio(w, batch))).sum();
            slowest = slowest.min(per_us);
        }
        if slowest.is_finite() { slowest * 1e6 } else { 0.0 }
    }
}

impl Host<'_> {
    fn pipeline(&self, lane: usize) -> Option<&layout::PipelineLayout> {
        let &(p, _) = self.queue.lanes.get(lane)?;
        self.layout.models[self.queue.model].pipelines.get(p)
    }
}
