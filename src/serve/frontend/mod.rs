//! The frontend's I/O shell: the request state machine of `poolpipe-dataplane`
//! ([`poolpipe_dataplane::front::Front`]) on a real clock, batches sent to the workers over
//! QUIC, results matched back to the HTTP requests.
//!
//! The state machine decides everything that is not I/O: samples of a multi-frame request,
//! admission, deadlines, retries, plan generations and drains (see its docs; the simulator
//! runs the same code). This shell keeps what it must not hold: each sample's tensors (its
//! input and, under per-pool routing, the output of its last stage), the links to the
//! workers, the HTTP answer channels, and a timer task that wakes the state machine at its
//! next timer. For each [`Action::Send`] it concatenates the samples' tensors into one batch
//! frame and sends it to the first hop's worker with the rest of the route (ending at the
//! frontend); each result frame is split back by sample.
//!
//! Every request is answered exactly once: with its outputs; with 503 when it is refused at
//! arrival, dropped by the scheduler or no plan serves its model; 504 when its batch ran out
//! of time or the policy neither dispatched nor dropped it by its deadline; or with an error
//! naming the batch and worker when its batch failed and could not be retried.

pub mod attach;
pub mod http;
pub mod kserve;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use poolpipe_dataplane::front::{Action, Failure, Front, RequestKey, SampleId, SendBatch};
use poolpipe_dataplane::{Admission, FrontStats, HopTiming, Layout, Policies, Refusal};
use poolpipe_transport::frame::{BatchHeader, Dtype, Frame, RequestRef, RouteHop, TensorInfo};
use poolpipe_transport::link::Link;
use poolpipe_transport::outbox::{OnError, Outbox};
use tokio::sync::{Notify, oneshot};

use crate::serve::frontend::http::{Backend, ModelMeta};
use crate::serve::frontend::kserve::{ApiError, InputTensor, OutputTensor};
use crate::serve::protocol::FRONTEND;

pub use poolpipe_dataplane::front::GRACE_US;

/// One tensor of one sample: its dims without the batch.
#[derive(Clone, Debug)]
struct Piece {
    name: String,
    dtype: Dtype,
    dims: Vec<u64>,
    bytes: Bytes,
}

type Answer = Result<Vec<OutputTensor>, ApiError>;

/// An HTTP request waiting for its answer.
struct Waiting {
    tx: oneshot::Sender<Answer>,
    samples: Vec<SampleId>,
    /// Each frame's outputs, as they come.
    outputs: Vec<Option<Vec<Piece>>>,
}

/// A sample's tensors: its input, and the output of its last stage under per-pool routing.
struct Tensors {
    input: Arc<Vec<Piece>>,
    current: Option<Arc<Vec<Piece>>>,
}

struct Shell {
    front: Front,
    /// Per node, its link with the batches waiting for it, earliest reserved start first.
    links: HashMap<u32, Outbox>,
    busy: BTreeMap<u32, f64>,
    waiting: HashMap<RequestKey, Waiting>,
    tensors: HashMap<SampleId, Tensors>,
}

struct Inner {
    shell: Mutex<Shell>,
    wake: Notify,
    epoch: Instant,
    models: Vec<ModelMeta>,
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

/// What a client sees for a request that ends without outputs.
fn failure_error(model: &str, failure: Failure) -> ApiError {
    match failure {
        Failure::Refused(r) => refusal_error(model, &r),
        Failure::Dropped { reason: Some(reason), .. } => unavailable(reason),
        Failure::Dropped { slo_us, queued, reason: None } => unavailable(format!(
            "model {model}: the request cannot meet its SLO of {:.0} ms any more (the scheduler dropped it with {queued} requests queued for the model); retry later or lower the rate",
            slo_us / 1e3
        )),
        Failure::NoPlan(reason) => unavailable(reason),
        Failure::BatchFailed { reason, timed_out } => ApiError {
            status: if timed_out { 504 } else { 503 },
            message: format!("model {model}: {reason}"),
            retry_after_s: None,
        },
        Failure::Stalled { policy } => ApiError {
            status: 504,
            message: format!(
                "model {model}: the request was neither dispatched nor dropped by its deadline (policy {policy}); retry later"
            ),
            retry_after_s: None,
        },
        Failure::BadResult(m) => ApiError { status: 500, message: format!("model {model}: {m}"), retry_after_s: None },
        Failure::Invalid(m) => ApiError { status: 400, message: format!("model {model}: {m}"), retry_after_s: None },
    }
}

impl Frontend {
    /// A frontend serving `models` (in the plans' model order).
    /// It answers 503 until a plan is installed. Spawns its timer task on the current tokio
    /// runtime.
    pub fn new(models: Vec<ModelMeta>, policies: Policies) -> Frontend {
        let mut front = Front::new(models.len(), policies);
        front.set_idle_wakeups(true);
        let inner = Arc::new(Inner {
            shell: Mutex::new(Shell {
                front,
                links: HashMap::new(),
                busy: BTreeMap::new(),
                waiting: HashMap::new(),
                tensors: HashMap::new(),
            }),
            wake: Notify::new(),
            epoch: Instant::now(),
            models,
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let next = inner.lock().front.next_timer();
                let sleep = match next {
                    Some(t) => Duration::from_secs_f64(((t - inner.now()) / 1e6).clamp(0.0, 0.25)),
                    None => Duration::from_millis(250),
                };
                let notified = inner.wake.notified();
                tokio::select! {
                    () = tokio::time::sleep(sleep) => {}
                    () = notified => {}
                }
                let now = inner.now();
                let mut shell = inner.lock();
                shell.front.timer(now);
                inner.pump(&mut shell, now);
            }
        });
        Frontend { inner }
    }

    /// Microseconds since the frontend started (the state machine's clock).
    pub fn now(&self) -> f64 {
        self.inner.now()
    }

    /// Counters so far.
    pub fn stats(&self) -> FrontStats {
        self.inner.lock().front.stats().clone()
    }

    /// Frames (samples) arrived per model, in plan order, since the frontend started.
    pub fn arrived(&self) -> Vec<u64> {
        let mut v = self.inner.lock().front.stats().arrived_by_model.clone();
        v.resize(self.inner.models.len(), 0);
        v
    }

    /// Each worker's profile correction under the current plan, by node id.
    pub fn corrections(&self) -> Vec<poolpipe_transport::control::NodeCorrection> {
        let shell = self.inner.lock();
        let Some((_, sched, nodes)) = shell.front.active() else { return vec![] };
        sched
            .corrections()
            .summary()
            .into_iter()
            .filter_map(|c| {
                let worker = *nodes.get(c.worker)?;
                Some(poolpipe_transport::control::NodeCorrection { worker, ratio: c.ratio, reports: c.reports })
            })
            .collect()
    }

    /// The busy fraction last reported by each worker.
    pub fn busy(&self) -> BTreeMap<u32, f64> {
        self.inner.lock().busy.clone()
    }

    /// Records a worker's health report.
    pub fn health(&self, worker: u32, busy: f64) {
        self.inner.lock().busy.insert(worker, busy);
    }

    /// Requests (frames) queued or in flight.
    pub fn outstanding(&self) -> usize {
        self.inner.lock().front.outstanding()
    }

    /// Starts a plan change: queued requests wait aside (new ones join them); in-flight
    /// batches of the current plan go on.
    pub fn begin_switch(&self) {
        self.inner.lock().front.begin_switch();
    }

    /// Whether a plan change is under way (requests wait aside for the next plan).
    pub fn is_switching(&self) -> bool {
        self.inner.lock().front.is_switching()
    }

    /// Whether the old plans' batches have all finished.
    pub fn drained(&self) -> bool {
        self.inner.lock().front.drained()
    }

    /// Fails what the old plans still have in flight (after a drain timeout): their samples
    /// are retried under the next plan.
    pub fn abandon_old(&self) {
        let now = self.now();
        let mut shell = self.inner.lock();
        shell.front.abandon_old(now);
        self.inner.pump(&mut shell, now);
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
        let now = self.now();
        let mut shell = self.inner.lock();
        for (node, link) in links {
            let fresh = shell.links.get(&node).is_none_or(|o| !o.link().same(&link));
            if fresh {
                shell.links.insert(node, Outbox::spawn(link, self.inner.send_errors()));
            }
        }
        let generation = shell.front.install(now, layout, nodes)?;
        self.inner.pump(&mut shell, now);
        drop(shell);
        self.inner.wake.notify_one();
        Ok(generation)
    }

    /// Sets the admission rules (queue limit per model, refusing what cannot meet its
    /// deadline) of the current plan's scheduler and of later ones.
    pub fn set_admission(&self, admission: Admission) {
        self.inner.lock().front.set_admission(admission);
    }

    /// Replaces the batching policy of every model, between two decisions: queued and
    /// in-flight requests stay where they are. Later plans use it too.
    pub fn swap_policy(&self, policies: Policies) -> anyhow::Result<String> {
        let name = policies.name().to_string();
        let now = self.now();
        let mut shell = self.inner.lock();
        shell.front.swap_policy(now, policies)?;
        self.inner.pump(&mut shell, now);
        drop(shell);
        self.inner.wake.notify_one();
        tracing::info!(policy = %name, "batching policy swapped");
        Ok(name)
    }

    /// No plan can serve the models now (`reason` says why): waiting requests are answered
    /// with 503 and the reason, and so are new ones until a plan is installed.
    pub fn no_plan(&self, reason: String) {
        let now = self.now();
        let mut shell = self.inner.lock();
        shell.front.no_plan(reason);
        self.inner.pump(&mut shell, now);
    }

    /// A worker (node id) left: nothing more is routed to it; its batches fail and their
    /// samples are retried while their deadlines allow.
    pub fn worker_down(&self, node: u32) {
        let now = self.now();
        let mut shell = self.inner.lock();
        shell.front.worker_down(now, node);
        shell.links.remove(&node);
        self.inner.pump(&mut shell, now);
    }

    /// A worker's `timing`, `failed` or `health` report (any other message is ignored).
    pub fn report(&self, msg: &poolpipe_transport::control::Control) {
        use poolpipe_transport::control::Control;
        match msg {
            Control::Timing { worker, batch, stage, arrived_us, start_us, end_us, .. } => {
                let hop = HopTiming {
                    compute_us: (end_us - start_us).max(0.0),
                    wait_us: Some((start_us - arrived_us).max(0.0)),
                };
                self.timing(*worker, *batch, *stage as usize, hop)
            }
            Control::Failed { worker, batch, reason, .. } => self.failed(*batch, *worker, reason),
            Control::Health { worker, busy, .. } => self.health(*worker, *busy),
            _ => {}
        }
    }

    /// Forgets which workers left and the links to them: a controller that restarted numbers
    /// its workers anew. Batches in flight keep their routes.
    pub fn forget_workers(&self) {
        let mut shell = self.inner.lock();
        shell.front.forget_workers();
        shell.links.clear();
    }

    /// A worker rejoined under its id (a new plan will route to it).
    pub fn worker_up(&self, node: u32) {
        self.inner.lock().front.worker_up(node);
    }

    /// Worker `worker` finished a stage of a batch (`timing`) in `compute_us` of device time.
    pub fn timing(&self, worker: u32, wire: u64, stage: usize, hop: HopTiming) {
        let now = self.now();
        let mut shell = self.inner.lock();
        shell.front.timing(now, worker, wire, stage, hop);
        self.inner.pump(&mut shell, now);
    }

    /// A worker could not run a batch (`failed`): its samples are retried once when their
    /// deadline allows, else answered with the reason.
    pub fn failed(&self, wire: u64, worker: u32, reason: &str) {
        let now = self.now();
        let mut shell = self.inner.lock();
        shell.front.failed(now, wire, worker, reason);
        self.inner.pump(&mut shell, now);
    }

    /// A batch frame came back to the frontend: the model's outputs, or a stage's outputs
    /// under per-pool routing.
    pub fn result(&self, frame: Frame) {
        let now = self.now();
        let mut shell = self.inner.lock();
        self.inner.result(&mut shell, now, frame);
        self.inner.pump(&mut shell, now);
        drop(shell);
        self.inner.wake.notify_one();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shell> {
        self.shell.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1e6
    }

    /// What an outbox calls when a batch could not be sent: the batch fails (and its samples
    /// are retried while their deadlines allow).
    fn send_errors(self: &Arc<Self>) -> OnError {
        let me = Arc::downgrade(self);
        Arc::new(move |wire, e| {
            if let Some(f) = me.upgrade() {
                let now = f.now();
                let mut shell = f.lock();
                shell.front.send_failed(now, wire, e.to_string());
                f.pump(&mut shell, now);
            }
        })
    }

    /// Carries out what the state machine asks for.
    fn pump(self: &Arc<Self>, shell: &mut Shell, now: f64) {
        while let Some(action) = shell.front.poll_action() {
            match action {
                Action::Send(batch) => self.send(shell, now, batch),
                Action::Answer { request, model, result } => {
                    let Some(w) = shell.waiting.remove(&request) else { continue };
                    for id in &w.samples {
                        shell.tensors.remove(id);
                    }
                    let meta = &self.models[model];
                    let answer = match result {
                        Ok(()) => deliver(w.outputs, meta),
                        Err(f) => Err(failure_error(&meta.name, f)),
                    };
                    let _ = w.tx.send(answer);
                }
                Action::BatchFailed { wire, reason } => tracing::warn!(batch = wire, "batch failed: {reason}"),
                Action::PolicyError { model, policy, reason } => {
                    tracing::error!(model = %self.models[model].name, %policy, "policy error: {reason}")
                }
            }
        }
    }

    fn send(self: &Arc<Self>, shell: &mut Shell, now: f64, b: SendBatch) {
        let d = &b.dispatch;
        // Concatenate the samples' tensors along the batch.
        let mut pieces: Vec<Arc<Vec<Piece>>> = vec![];
        let mut refs = vec![];
        for s in &b.samples {
            let Some(t) = shell.tensors.get(&s.id) else { continue };
            let current = match (&t.current, s.from_input) {
                (Some(c), false) => c.clone(),
                _ => t.input.clone(),
            };
            pieces.push(current);
            refs.push(RequestRef { id: s.id, deadline_us: s.deadline_us });
        }
        let n = refs.len() as u64;
        let count = pieces.first().map_or(0, |p| p.len());
        let mut tensors = vec![];
        let mut payloads = vec![];
        for i in 0..count {
            let first = &pieces[0][i];
            let mut buf = BytesMut::with_capacity(first.bytes.len() * pieces.len());
            for p in &pieces {
                if let Some(piece) = p.get(i) {
                    buf.extend_from_slice(&piece.bytes);
                }
            }
            let mut dims = vec![n];
            dims.extend(&first.dims);
            tensors.push(TensorInfo { name: first.name.clone(), dtype: first.dtype, dims });
            payloads.push(buf.freeze());
        }
        let mut route: Vec<RouteHop> =
            d.hops.iter().zip(&b.nodes).skip(1).map(|(h, &w)| RouteHop { stage: h.stage as u16, worker: w }).collect();
        let after = d.hops.last().map_or(0, |h| h.stage + 1);
        route.push(RouteHop { stage: after as u16, worker: FRONTEND });
        let header = BatchHeader {
            model: d.model as u32,
            batch: b.wire,
            stage: d.hops.first().map_or(0, |h| h.stage) as u16,
            requests: refs,
            route,
            tensors,
        };
        let first = b.nodes.first().copied().unwrap_or(0);
        let Some(outbox) = shell.links.get(&first) else {
            shell.front.send_failed(now, b.wire, format!("no link to worker {first}"));
            return;
        };
        // Each freed slot of the link goes to the batch reserved to start first there.
        let start = d.hops.first().map_or(now, |h| h.start);
        if outbox.push(start, header, payloads).is_err() {
            shell.front.send_failed(now, b.wire, format!("the sender to worker {first} has stopped"));
        }
    }

    fn result(self: &Arc<Self>, shell: &mut Shell, now: f64, frame: Frame) {
        let wire = frame.header.batch;
        let Some(n) = shell.front.batch_len(wire) else {
            tracing::debug!(batch = wire, "a result for a batch already answered (it was failed or timed out)");
            return;
        };
        // Split each tensor by sample.
        let mut per: Vec<Vec<Piece>> = vec![vec![]; n];
        for (t, p) in frame.header.tensors.iter().zip(&frame.payloads) {
            if t.dims.first().copied() != Some(n as u64) || p.len() % n.max(1) != 0 {
                let reason = format!("the result's tensor '{}' has shape {:?} for {n} requests", t.name, t.dims);
                shell.front.bad_result(now, wire, reason);
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
        let Some(delivered) = shell.front.result(now, wire) else { return };
        for (entry, pieces) in delivered.samples.into_iter().zip(per) {
            let Some((id, request, slot)) = entry else { continue };
            if delivered.completes {
                if let Some(w) = shell.waiting.get_mut(&request)
                    && let Some(o) = w.outputs.get_mut(slot)
                {
                    *o = Some(pieces);
                }
            } else if let Some(t) = shell.tensors.get_mut(&id) {
                t.current = Some(Arc::new(pieces));
            }
        }
    }
}

/// Concatenates a request's frames' outputs in the model's output order.
fn deliver(parts: Vec<Option<Vec<Piece>>>, meta: &ModelMeta) -> Answer {
    let n = parts.len();
    let mut outs = vec![];
    for o in &meta.outputs {
        let mut data = vec![];
        for p in &parts {
            let piece = p.as_ref().and_then(|p| p.iter().find(|x| x.name == o.name)).ok_or_else(|| ApiError {
                status: 500,
                message: format!("model {}: the last stage did not return output '{}'", meta.name, o.name),
                retry_after_s: None,
            })?;
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
    Ok(outs)
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
        let shell = self.inner.lock();
        let st = shell.front.stats();
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
            (
                "hop_worker_wait_seconds",
                "Time each hop waited at its worker between arriving and the device starting on it (reported).",
                &st.worker_wait,
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
        if let Some((_, sched, nodes)) = shell.front.active() {
            let layout = sched.layout();
            out +=
                "# HELP poolpipe_queue_depth Requests (frames) queued per model.\n# TYPE poolpipe_queue_depth gauge\n";
            for (m, ml) in layout.models.iter().enumerate() {
                out += &format!("poolpipe_queue_depth{{model=\"{}\"}} {}\n", ml.name, sched.queued_for(m));
            }
            out += "# HELP poolpipe_queue_overrun How much later than reserved a model's batches end lately, as a fraction of their reserved wait; probes and admission stretch waits by it.\n# TYPE poolpipe_queue_overrun gauge\n";
            for (m, ml) in layout.models.iter().enumerate() {
                out += &format!("poolpipe_queue_overrun{{model=\"{}\"}} {}\n", ml.name, sched.overrun(m));
            }
            out += "# HELP poolpipe_profile_correction Measured over profiled batch time per worker (trimmed mean of recent reports; 1 = as profiled).\n";
            out += "# TYPE poolpipe_profile_correction gauge\n";
            for c in sched.corrections().summary() {
                let node = nodes.get(c.worker).copied().unwrap_or(u32::MAX);
                out += &format!("poolpipe_profile_correction{{worker=\"{node}\"}} {}\n", c.ratio);
            }
        }
        out += "# HELP poolpipe_batches_total Batches sent, by size.\n# TYPE poolpipe_batches_total counter\n";
        for (size, n) in &st.batch_sizes {
            out += &format!("poolpipe_batches_total{{size=\"{size}\"}} {n}\n");
        }
        out += "# HELP poolpipe_worker_busy Busy fraction of each worker's device (last health report).\n";
        out += "# TYPE poolpipe_worker_busy gauge\n";
        for (w, b) in &shell.busy {
            out += &format!("poolpipe_worker_busy{{worker=\"{w}\"}} {b}\n");
        }
        out += &format!(
            "# HELP poolpipe_plan_generation Plan generation serving.\n# TYPE poolpipe_plan_generation gauge\npoolpipe_plan_generation {}\n",
            shell.front.active().map_or(0, |(generation, _, _)| generation)
        );
        out
    }

    fn model_parameters(&self, model: &str) -> Option<serde_json::Value> {
        let shell = self.inner.lock();
        let (generation, sched, nodes) = shell.front.active()?;
        let m = sched.layout().models.iter().position(|x| x.name == model)?;
        let corrections: Vec<serde_json::Value> = sched
            .corrections()
            .summary()
            .into_iter()
            .filter(|c| sched.layout().workers.get(c.worker).is_some_and(|w| w.model == m))
            .map(|c| {
                serde_json::json!({
                    "worker": nodes.get(c.worker).copied().unwrap_or(u32::MAX),
                    "reports": c.reports,
                    "ratio": c.ratio,
                    "by_batch": c.by_batch,
                })
            })
            .collect();
        Some(serde_json::json!({
            "plan_generation": generation,
            "queued": sched.queued_for(m),
            "queue_overrun": sched.overrun(m),
            "profile_correction": corrections,
        }))
    }

    fn ready(&self, _model: &str) -> bool {
        // During a plan change, requests wait for the next plan: the model still takes them.
        self.inner.lock().front.ready()
    }

    fn unready_reason(&self, _model: &str) -> Option<String> {
        Some(self.inner.lock().front.unready_reason())
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
            {
                let now = inner.now();
                let mut shell = inner.lock();
                let (key, ids) = shell.front.request(now, m, n).map_err(|f| failure_error(&model, f))?;
                for (slot, &id) in ids.iter().enumerate() {
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
                    shell.tensors.insert(id, Tensors { input: Arc::new(input), current: None });
                }
                shell.waiting.insert(key, Waiting { tx, samples: ids, outputs: vec![None; n] });
                inner.pump(&mut shell, now);
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
