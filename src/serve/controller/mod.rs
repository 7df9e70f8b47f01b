//! The controller role (`poolpipe controller`, and the head of `poolpipe serve`): it holds the
//! cluster configuration, registers workers over QUIC, plans from the profiles for the
//! workers it has, assigns each worker its stage, and re-plans when workers join or leave.
//! The frontend (the KServe API and the scheduler) runs in the same process and shares the
//! controller's QUIC endpoint (`frontend = "embedded"`, the default), or runs as its own
//! process, `poolpipe frontend`, that attaches over QUIC (`frontend = "remote"`; see
//! [`crate::serve::controller::frontside`]). Workers send their reports to the controller, which relays them to
//! a remote frontend, and their results to the frontend's address.
//!
//! The controller also re-plans when the models' arrival mix (counted by the frontend over
//! `mix_window_s`) moves more than `mix_threshold` from the plan's weights: the observed
//! shares become the weights.
//!
//! A plan change drains: queued requests wait aside, the old plan's batches finish (up to
//! `drain_timeout_ms`, after which they are retried), the workers get their new stages and
//! acknowledge them compiled, and only then does the new plan take requests. A worker is
//! declared gone when its connection closes or it misses health reports for
//! `dead_after_ms`; its batches fail over at once and nothing more is routed to it.

pub mod frontside;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use poolpipe_planner::config::{Fleet, GpuClass, Workload, WorkloadModel};
use poolpipe_planner::plan::Plan;
use poolpipe_planner::{Inputs, PlanOptions, Planner, PlannerKind};
use poolpipe_transport::config::TransportConfig;
use poolpipe_transport::control::Control;
use poolpipe_transport::endpoint::{EndpointError, Node, call, recv, recv_control};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::models::PartitionFile;
use crate::serve::controller::frontside::{AttachedSpec, Front, InstallSpec};
use crate::serve::frontend::Frontend;
use crate::serve::frontend::http::{ModelMeta, TensorMeta};
use crate::serve::protocol::FRONTEND;
use crate::serve::spec::{ModelSource, Peer, StageSpec};
use poolpipe_dataplane::Layout;
use poolpipe_dataplane::{Policies, PolicySpec};

/// Multiplies every profiled block time by `scale` (`[controller] profile_scale`), at least
/// 1 µs each; 1 changes nothing.
pub fn scale_profiles(profiles: &mut [poolpipe_planner::profiles::ModelProfile], scale: f64) {
    if scale == 1.0 {
        return;
    }
    for p in profiles {
        for shares in p.classes.values_mut() {
            for sh in shares {
                for us in sh.us.iter_mut().flat_map(|b| b.iter_mut()) {
                    *us = ((*us as f64 * scale).round() as u64).max(1);
                }
            }
        }
    }
}

/// Multiplies the block times of each class in `scale` by its factor (the classes' learned
/// corrections), rounded, at least 1 µs.
pub fn scale_classes(profiles: &mut [poolpipe_planner::profiles::ModelProfile], scale: &BTreeMap<String, f64>) {
    for p in profiles {
        for (class, shares) in p.classes.iter_mut() {
            let Some(&f) = scale.get(class) else { continue };
            for sh in shares {
                for us in sh.us.iter_mut().flat_map(|b| b.iter_mut()) {
                    *us = ((*us as f64 * f).round() as u64).max(1);
                }
            }
        }
    }
}

/// `cluster.toml`: the controller's settings and the models served.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The controller.
    pub controller: ControllerConfig,
    /// The models served (the workload).
    pub model: Vec<ModelConfig>,
    /// Workers `poolpipe serve` starts in its own process (ignored by `controller`); without
    /// any, one per local adapter.
    #[serde(default)]
    pub worker: Vec<LocalWorker>,
}

/// `[controller]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// QUIC address workers register at and send results to.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The address workers reach it at (default: `listen`).
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// Its certificate name.
    #[serde(default = "default_name")]
    pub name: String,
    /// HTTP address of the KServe v2 API.
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// Folder with ca.pem and the controller's NAME.pem / NAME.key (relative paths are
    /// relative to the config file); `poolpipe serve` makes its own when absent.
    #[serde(default)]
    pub certs: Option<PathBuf>,
    /// Profile folder (`poolpipe profile` output, with partitions/), relative to the file.
    pub profiles: PathBuf,
    /// Planner: ppipe, np or dart-r.
    #[serde(default = "default_planner")]
    pub planner: String,
    /// Batching policy: ppipe, reactive, triton, a .wasm/.wat file or wasm:NAME.
    #[serde(default = "default_policy")]
    pub policy: String,
    /// Plan once this many workers have registered.
    #[serde(default = "one")]
    pub workers: usize,
    /// Most partitions per pipeline (1..=3).
    #[serde(default = "two")]
    pub max_partitions: usize,
    /// Largest batch the planner may use.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// NIC bandwidth between workers, Gbit/s.
    #[serde(default = "default_bandwidth")]
    pub bandwidth_gbps: f64,
    /// A worker silent this long is gone.
    #[serde(default = "default_dead_after")]
    pub dead_after_ms: u64,
    /// Longest wait for the old plan's batches at a plan change.
    #[serde(default = "default_drain")]
    pub drain_timeout_ms: u64,
    /// Bearer token of the HTTP admin endpoints (policy swap); they are off without one.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Refuse inference inputs holding NaN or an infinity with 400 naming the tensor (JSON
    /// numbers beyond f32, like `1e39`, included). Default true.
    #[serde(default = "default_true")]
    pub reject_non_finite: bool,
    /// Window over which the controller compares the served models' arrival mix with the
    /// plan's weights, seconds.
    #[serde(default = "default_mix_window")]
    pub mix_window_s: f64,
    /// Re-plan when a model's share of the arrivals moves this far (absolute, 0..1) from its
    /// share of the plan's weights; 0 turns mix re-planning off.
    #[serde(default = "default_mix_threshold")]
    pub mix_threshold: f64,
    /// Re-plan when the profile correction of a GPU class (the median over its workers of
    /// measured over profiled batch time, once each has a full window of reports) is off by
    /// more than this (0.5: below 1/1.5 or above 1.5); the new plan scales that class's
    /// profiles by it. 0 turns it off.
    #[serde(default = "default_replan_correction")]
    pub replan_correction: f64,
    /// Most requests (frames) queued per model at the frontend; more are refused at arrival
    /// with 503 and `Retry-After`. Default: twice what the model's pipelines serve in one SLO
    /// at their planned batch sizes, at least 64.
    #[serde(default)]
    pub max_queue: Option<usize>,
    /// Solver time limit per plan, seconds.
    #[serde(default = "default_time_limit")]
    pub plan_time_limit_s: f64,
    /// Factor applied to every profiled time the controller plans and schedules with
    /// (1 = as measured; 0.5 = profiles twice optimistic). An experiment knob for the online
    /// profile correction (`poolpipe bench serving`): workers' measured times are not scaled,
    /// so the correction sees measured / scaled.
    #[serde(default = "unit")]
    pub profile_scale: f64,
    /// Where the frontend runs: "embedded" (in the controller's process, serving `http`) or
    /// "remote" (a `poolpipe frontend` process attaches; the controller serves no HTTP).
    #[serde(default)]
    pub frontend: FrontendMode,
    /// `[controller.limits]`: what the HTTP API takes from a client.
    #[serde(default)]
    pub limits: HttpLimits,
}

/// `[controller.limits]`: the HTTP API's limits (docs/deploy.md, "Limits and hardening").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Largest body of a binary tensor request, an image or a policy upload, bytes.
    pub max_body_bytes: usize,
    /// Largest JSON inference request, bytes (never above `max_body_bytes`).
    pub max_json_body_bytes: usize,
    /// Memory budget of the requests in flight, bytes (each holds three times its body).
    pub max_in_flight_bytes: usize,
    /// Most open connections; 0 picks three quarters of the descriptor limit, less a reserve.
    pub max_connections: usize,
    /// Longest time from a request's first byte to the end of its head, milliseconds.
    pub header_timeout_ms: u64,
    /// Longest time to receive a request's body, milliseconds.
    pub body_timeout_ms: u64,
    /// A connection with no request in flight this long is closed, milliseconds.
    pub idle_timeout_ms: u64,
    /// Threads of the HTTP server's own runtime.
    pub threads: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        let o = crate::serve::frontend::http::HttpOptions::default();
        HttpLimits {
            max_body_bytes: o.max_body,
            max_json_body_bytes: o.max_json_body,
            max_in_flight_bytes: o.max_in_flight_bytes,
            max_connections: o.server.max_connections,
            header_timeout_ms: o.server.header_timeout.as_millis() as u64,
            body_timeout_ms: o.body_timeout.as_millis() as u64,
            idle_timeout_ms: o.server.idle_timeout.as_millis() as u64,
            threads: o.server.threads,
        }
    }
}

/// Where the frontend runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontendMode {
    /// In the controller's process.
    #[default]
    Embedded,
    /// In a `poolpipe frontend` process that attaches to the controller.
    Remote,
}

/// `[[model]]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Name in the API and in the profile files.
    pub name: String,
    /// Where the model comes from (`model`, `size`, `seed`, `input_shape`).
    #[serde(flatten)]
    pub source: ModelSource,
    /// Share of the requests.
    #[serde(default = "unit")]
    pub weight: f64,
    /// SLO, milliseconds.
    pub slo_ms: f64,
}

/// `[[worker]]` of `poolpipe serve`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalWorker {
    /// Adapter (as for `poolpipe devices`).
    #[serde(default = "default_device")]
    pub device: String,
    /// GPU class label (must have profiles) [default: from the class file, else derived
    /// from the adapter name, as `poolpipe devices` shows].
    #[serde(default)]
    pub class: Option<String>,
    /// Workers on that adapter.
    #[serde(default = "one")]
    pub count: usize,
}

fn default_listen() -> SocketAddr {
    ([127, 0, 0, 1], 7400).into()
}
fn default_true() -> bool {
    true
}

impl ControllerConfig {
    /// The HTTP API's options from this section.
    pub fn http_options(&self) -> crate::serve::frontend::http::HttpOptions {
        let l = &self.limits;
        crate::serve::frontend::http::HttpOptions {
            max_body: l.max_body_bytes,
            max_json_body: l.max_json_body_bytes,
            max_in_flight_bytes: l.max_in_flight_bytes,
            body_timeout: Duration::from_millis(l.body_timeout_ms),
            admin_token: self.admin_token.clone(),
            reject_non_finite: self.reject_non_finite,
            server: crate::serve::frontend::server::ServerLimits {
                max_connections: l.max_connections,
                header_timeout: Duration::from_millis(l.header_timeout_ms),
                idle_timeout: Duration::from_millis(l.idle_timeout_ms),
                threads: l.threads,
            },
        }
    }
}
fn default_http() -> SocketAddr {
    ([127, 0, 0, 1], 8000).into()
}
fn default_name() -> String {
    "controller".into()
}
fn default_planner() -> String {
    "ppipe".into()
}
/// The frontend's admission rules for a configured queue limit.
pub fn admission(max_queue: Option<usize>) -> poolpipe_dataplane::Admission {
    poolpipe_dataplane::Admission { max_queue, ..Default::default() }
}

fn default_policy() -> String {
    "ppipe".into()
}
fn default_device() -> String {
    "default".into()
}
fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn unit() -> f64 {
    1.0
}
fn default_max_batch() -> usize {
    8
}
fn default_bandwidth() -> f64 {
    10.0
}
fn default_dead_after() -> u64 {
    1000
}
fn default_drain() -> u64 {
    3000
}
fn default_time_limit() -> f64 {
    10.0
}
fn default_mix_window() -> f64 {
    30.0
}
fn default_mix_threshold() -> f64 {
    0.2
}
fn default_replan_correction() -> f64 {
    0.5
}

/// Reports a worker needs under a plan before its correction counts for a re-plan (a full
/// median window).
pub const CORRECTION_MIN_REPORTS: u64 = 15;

/// How often the controller looks at the workers' profile corrections.
const CORRECTION_CHECK: Duration = Duration::from_secs(5);

/// The factors to re-plan with when some classes' profiles are off: `by_class` holds each
/// class's workers' (ratio, reports). A class counts when at least one of its workers has
/// `min_reports`; its factor is the median ratio of those workers. Returns the classes whose
/// factor is off by more than `threshold` (above `1 + threshold` or below
/// `1 / (1 + threshold)`), and none when no class is (or `threshold` is 0).
pub fn correction_shift(
    by_class: &BTreeMap<String, Vec<(f64, u64)>>,
    threshold: f64,
    min_reports: u64,
) -> Option<BTreeMap<String, f64>> {
    if threshold <= 0.0 {
        return None;
    }
    let mut out = BTreeMap::new();
    for (class, workers) in by_class {
        let mut ratios: Vec<f64> =
            workers.iter().filter(|(r, n)| *n >= min_reports && r.is_finite() && *r > 0.0).map(|(r, _)| *r).collect();
        if ratios.is_empty() {
            continue;
        }
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        if median > 1.0 + threshold || median < 1.0 / (1.0 + threshold) {
            out.insert(class.clone(), median);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Frames a mix window needs before the controller trusts its shares.
pub const MIX_MIN_FRAMES: u64 = 50;

/// The weights to re-plan with when the arrival mix moved: `planned` are the weights of the
/// plan in service, `arrived` the frames per model in the last window. Returns the observed
/// shares (each at least 1%, so no model loses its pipelines) when some model's share moved
/// more than `threshold`, and none otherwise or with fewer than `min_frames` frames.
pub fn mix_shift(planned: &[f64], arrived: &[u64], threshold: f64, min_frames: u64) -> Option<Vec<f64>> {
    let total: u64 = arrived.iter().sum();
    let weight: f64 = planned.iter().sum();
    if threshold <= 0.0 || total < min_frames || planned.len() != arrived.len() || planned.len() < 2 || weight <= 0.0 {
        return None;
    }
    let observed: Vec<f64> = arrived.iter().map(|&a| a as f64 / total as f64).collect();
    let moved = planned.iter().zip(&observed).any(|(p, o)| (p / weight - o).abs() > threshold);
    moved.then(|| observed.iter().map(|o| o.max(0.01)).collect())
}

impl ClusterConfig {
    /// Reads and checks `cluster.toml`; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<ClusterConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut c: ClusterConfig = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [c.controller.certs.as_mut(), Some(&mut c.controller.profiles)].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for m in &mut c.model {
            if crate::models::is_model_file(&m.source.model) && Path::new(&m.source.model).is_relative() {
                m.source.model = base.join(&m.source.model).to_string_lossy().into_owned();
            }
        }
        c.validate().with_context(|| format!("{}", path.display()))?;
        Ok(c)
    }

    /// Checks values a plan depends on.
    pub fn validate(&self) -> Result<()> {
        let c = &self.controller;
        if self.model.is_empty() {
            bail!("no [[model]]: name at least one model to serve");
        }
        for m in &self.model {
            if !(m.slo_ms.is_finite() && m.slo_ms > 0.0) {
                bail!("model {}: slo_ms = {} must be a positive number of milliseconds", m.name, m.slo_ms);
            }
            if !(m.weight.is_finite() && m.weight > 0.0) {
                bail!("model {}: weight = {} must be positive", m.name, m.weight);
            }
        }
        c.planner.parse::<PlannerKind>().map_err(|e| anyhow::anyhow!("[controller] planner: {e}"))?;
        if c.workers == 0 {
            bail!("[controller] workers = 0: the controller plans once this many workers registered; give at least 1");
        }
        if !(1..=3).contains(&c.max_partitions) {
            bail!("[controller] max_partitions = {} is outside 1..=3", c.max_partitions);
        }
        if c.max_batch == 0 || c.max_batch > 64 {
            bail!("[controller] max_batch = {} is outside 1..=64", c.max_batch);
        }
        if !(c.mix_window_s.is_finite() && c.mix_window_s >= 1.0) {
            bail!("[controller] mix_window_s = {} must be at least 1 second", c.mix_window_s);
        }
        if !(c.replan_correction.is_finite() && (0.0..=10.0).contains(&c.replan_correction)) {
            bail!(
                "[controller] replan_correction = {} must be in 0..10 (0 turns correction re-planning off; 0.5: re-plan when a class is 1.5x off)",
                c.replan_correction
            );
        }
        if !(0.0..1.0).contains(&c.mix_threshold) {
            bail!("[controller] mix_threshold = {} must be in 0..1 (0 turns mix re-planning off)", c.mix_threshold);
        }
        if !(c.profile_scale.is_finite() && (0.01..=100.0).contains(&c.profile_scale)) {
            bail!(
                "[controller] profile_scale = {} is outside 0.01..=100 (1 plans with the profiles as measured)",
                c.profile_scale
            );
        }
        let l = &c.limits;
        for (key, v, least) in [
            ("max_body_bytes", l.max_body_bytes as u64, 1024),
            ("max_json_body_bytes", l.max_json_body_bytes as u64, 1024),
            ("max_in_flight_bytes", l.max_in_flight_bytes as u64, 1 << 20),
            ("header_timeout_ms", l.header_timeout_ms, 100),
            ("body_timeout_ms", l.body_timeout_ms, 100),
            ("idle_timeout_ms", l.idle_timeout_ms, 100),
            ("threads", l.threads as u64, 1),
        ] {
            if v < least {
                bail!("[controller.limits] {key} = {v} is under {least}; raise it (or leave it out for the default)");
            }
        }
        if l.max_in_flight_bytes < l.max_body_bytes {
            bail!(
                "[controller.limits] max_in_flight_bytes = {} is below max_body_bytes = {}: the largest request would never fit; raise it to at least three times max_body_bytes",
                l.max_in_flight_bytes,
                l.max_body_bytes
            );
        }
        if c.max_queue == Some(0) {
            bail!(
                "[controller] max_queue = 0 would refuse every request: give at least 1, or leave it out for the default"
            );
        }
        if c.dead_after_ms < 100 {
            bail!(
                "[controller] dead_after_ms = {} is under 100 ms: workers report health every 200 ms",
                c.dead_after_ms
            );
        }
        for w in &self.worker {
            if w.count == 0 {
                bail!("[[worker]] on device {}: count = 0", w.device);
            }
        }
        Ok(())
    }
}

/// A registered worker.
#[derive(Clone, Debug)]
struct Registered {
    name: String,
    class: String,
    device: String,
    addr: SocketAddr,
    conn: quinn::Connection,
    last_seen: Instant,
    alive: bool,
}

/// What a worker is doing, for reports.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerView {
    /// Id in routes.
    pub id: u32,
    /// Node name.
    pub name: String,
    /// GPU class.
    pub class: String,
    /// Device, in words.
    pub device: String,
    /// Still registered and reporting.
    pub alive: bool,
    /// Its stage under the current plan.
    pub stage: Option<StageView>,
}

/// A worker's stage under the current plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageView {
    /// The model's name.
    pub model: String,
    /// Stage index in its pipeline.
    pub stage: usize,
    /// Its first block.
    pub first_block: usize,
    /// One past its last block.
    pub end_block: usize,
}

/// A served model as the controller loaded it.
struct Served {
    config: ModelConfig,
    partition: PartitionFile,
}

struct State {
    workers: BTreeMap<u32, Registered>,
    next_id: u32,
    plan: Option<Plan>,
    /// Layout worker -> node, and each node's stage, under the current plan.
    stages: HashMap<u32, StageView>,
    generation: u64,
    planned_once: bool,
    last_error: Option<String>,
    /// The live workers, planner override and frontend the current plan was made for.
    planned_for: (Vec<u32>, Option<String>, Option<u64>),
    /// Weights from the observed arrival mix, replacing the config's.
    weights: Option<Vec<f64>>,
    /// The weights the current plan was made with.
    planned_weights: Vec<f64>,
    /// Factors on each class's profiled times learned from the workers' corrections
    /// (cumulative over re-plans).
    class_scale: BTreeMap<String, f64>,
    /// The factors the current plan was made with.
    planned_scale: BTreeMap<String, f64>,
}

struct Inner {
    cfg: ClusterConfig,
    node: Node,
    frontend: Front,
    /// The served models' signatures (what a remote frontend is told on attaching).
    metas: Vec<ModelMeta>,
    served: Vec<Served>,
    state: Mutex<State>,
    replan: Notify,
    planned: tokio::sync::watch::Sender<u64>,
    /// A planner chosen at run time over the config's.
    planner_override: Mutex<Option<String>>,
    /// Shutting down: workers leaving are expected.
    stopping: std::sync::atomic::AtomicBool,
}

/// The controller. Cheap to clone.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

/// Loads a model's signature and checks it against the partition the profiles were cut on.
fn load_served(cfg: &ModelConfig, profiles: &Path) -> Result<(Served, ModelMeta)> {
    let path = profiles.join("partitions").join(format!("{}.json", cfg.name));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "model {}: reading its partition {} (profile the model first: `poolpipe profile {} --name {} --out {}`)",
            cfg.name,
            path.display(),
            cfg.source.model,
            cfg.name,
            profiles.display()
        )
    })?;
    let partition: PartitionFile = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let model = cfg.source.load().with_context(|| format!("model {}", cfg.name))?;
    let g = model.optimized(1).with_context(|| format!("model {}", cfg.name))?;
    let found = crate::models::fingerprint(&g);
    if found != partition.fingerprint {
        bail!(
            "model {}: {} was profiled on a different graph (fingerprint {} there, {found} here): re-run `poolpipe profile` on this model",
            cfg.name,
            profiles.display(),
            partition.fingerprint
        );
    }
    // Per-sample shapes: the batch-1 graph's without the batch. Serving takes float32 inputs
    // and gives float outputs (the HTTP API's tensors are FP32).
    for &v in g.inputs().iter().chain(g.outputs()) {
        let val = g.value(v);
        if val.dtype != poolpipe_engine::DType::F32 || val.shape.first() != Some(&1) {
            bail!(
                "model {}: {} '{}' is {} {:?} at batch 1; serving needs float32 inputs and outputs whose first dimension is the batch (run such models with `poolpipe run`)",
                cfg.name,
                if g.inputs().contains(&v) { "input" } else { "output" },
                val.name,
                val.dtype,
                val.shape
            );
        }
    }
    let meta = |ids: &[poolpipe_engine::ValueId]| {
        ids.iter()
            .map(|&i| TensorMeta { name: g.value(i).name.clone(), shape: g.value(i).shape[1..].to_vec() })
            .collect()
    };
    let m = ModelMeta { name: cfg.name.clone(), inputs: meta(g.inputs()), outputs: meta(g.outputs()) };
    Ok((Served { config: cfg.clone(), partition }, m))
}

impl Controller {
    /// Binds the QUIC endpoint, loads the models and starts registering workers. The frontend
    /// it returns serves the HTTP API (see [`crate::serve::frontend::http::router`]).
    pub async fn start(
        cfg: ClusterConfig,
        identity: &poolpipe_transport::tls::Identity,
        ca: &str,
        transport: TransportConfig,
    ) -> Result<Controller> {
        let c = &cfg.controller;
        let mut served = vec![];
        let mut metas = vec![];
        for m in &cfg.model {
            let (s, meta) = load_served(m, &c.profiles)?;
            served.push(s);
            metas.push(meta);
        }
        let node = Node::bind_with(c.listen, identity, ca, transport.clone())
            .with_context(|| format!("controller: binding {}", c.listen))?;
        let frontend = match c.frontend {
            FrontendMode::Embedded => {
                let policies = Policies::load(&PolicySpec::native(&c.policy)).context("[controller] policy")?;
                let f = Frontend::new(metas.clone(), policies);
                f.set_admission(admission(c.max_queue));
                Front::Embedded(f)
            }
            FrontendMode::Remote => Front::remote(transport.limits),
        };
        let (planned, _) = tokio::sync::watch::channel(0);
        let inner = Arc::new(Inner {
            cfg,
            node: node.clone(),
            frontend,
            metas,
            served,
            state: Mutex::new(State {
                workers: BTreeMap::new(),
                next_id: 1,
                plan: None,
                stages: HashMap::new(),
                generation: 0,
                planned_once: false,
                last_error: None,
                planned_for: (vec![], None, None),
                weights: None,
                planned_weights: vec![],
                class_scale: BTreeMap::new(),
                planned_scale: BTreeMap::new(),
            }),
            replan: Notify::new(),
            planned,
            planner_override: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(conn) = node.accept().await {
                let Some(inner) = weak.upgrade() else { return };
                tokio::spawn(serve_conn(inner, conn));
            }
        });
        tokio::spawn(planner_loop(Arc::downgrade(&inner)));
        tokio::spawn(watchdog(Arc::downgrade(&inner)));
        tokio::spawn(mix_watch(Arc::downgrade(&inner)));
        tokio::spawn(correction_watch(Arc::downgrade(&inner)));
        Ok(Controller { inner })
    }

    /// The embedded frontend (the HTTP API's backend); an error when the frontend is remote.
    pub fn frontend(&self) -> Result<Frontend> {
        match self.inner.frontend.embedded() {
            Some(f) => Ok(f.clone()),
            None => bail!(
                "the frontend is a separate process (frontend = \"remote\"): its API is served by `poolpipe frontend`"
            ),
        }
    }

    /// Where the frontend runs.
    pub fn frontend_mode(&self) -> FrontendMode {
        self.inner.cfg.controller.frontend
    }

    /// The QUIC address workers register at.
    pub fn addr(&self) -> Result<SocketAddr> {
        Ok(self.inner.cfg.controller.advertise.unwrap_or(self.inner.node.local_addr()?))
    }

    /// The current plan, when there is one.
    pub fn plan(&self) -> Option<Plan> {
        self.inner.lock().plan.clone()
    }

    /// Why the last planning attempt failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.inner.lock().last_error.clone()
    }

    /// Registered workers and their stages.
    pub fn workers(&self) -> Vec<WorkerView> {
        let s = self.inner.lock();
        s.workers
            .iter()
            .map(|(&id, w)| WorkerView {
                id,
                name: w.name.clone(),
                class: w.class.clone(),
                device: w.device.clone(),
                alive: w.alive,
                stage: s.stages.get(&id).cloned(),
            })
            .collect()
    }

    /// Waits until plan generation `generation` or a later one is serving.
    pub async fn wait_plan(&self, generation: u64, timeout: Duration) -> Result<u64> {
        let mut rx = self.inner.planned.subscribe();
        let r = tokio::time::timeout(timeout, rx.wait_for(|&g| g >= generation)).await;
        match r {
            Ok(Ok(g)) => Ok(*g),
            _ => bail!(
                "no plan (generation {generation}) within {timeout:?}: {}",
                self.last_error().unwrap_or_else(|| "waiting for workers to register".into())
            ),
        }
    }

    /// Re-plans with another planner (e.g. `np` for a single-stage comparison).
    pub fn set_planner(&self, planner: &str) -> Result<()> {
        planner.parse::<PlannerKind>().map_err(|e| anyhow::anyhow!(e))?;
        self.inner.lock().last_error = None;
        *self.inner.planner_override.lock().unwrap_or_else(|p| p.into_inner()) = Some(planner.to_string());
        self.inner.replan.notify_one();
        Ok(())
    }

    /// The layout's planned throughput (requests per second over all models) under the
    /// current plan.
    pub fn planned_rate(&self) -> Option<f64> {
        let s = self.inner.lock();
        let plan = s.plan.as_ref()?;
        Some(plan.models.iter().map(|m| m.throughput).sum())
    }

    /// Stops the cluster: workers leaving from now on are expected (no re-plan), and the
    /// endpoint closes.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        self.inner.node.close();
    }

    /// Closes the endpoint: workers see the controller leave.
    pub fn close(&self) {
        self.inner.node.close();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The frontend as the last hop of routes (key, peer); none while a remote frontend is
    /// not attached.
    fn front_peer(&self) -> Option<(u64, Peer)> {
        let own = Peer {
            id: FRONTEND,
            addr: self.cfg.controller.advertise.or_else(|| self.node.local_addr().ok())?.to_string(),
            name: self.cfg.controller.name.clone(),
        };
        self.frontend.peer(own)
    }

    /// The weights to plan with: the observed mix when it moved, else the config's.
    fn weights(&self, s: &State) -> Vec<f64> {
        s.weights.clone().unwrap_or_else(|| self.served.iter().map(|m| m.config.weight).collect())
    }

    fn worker_gone(&self, id: u32, why: &str) {
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let was_alive = {
            let mut s = self.lock();
            match s.workers.get_mut(&id) {
                Some(w) if w.alive => {
                    w.alive = false;
                    w.conn.close(0u32.into(), b"declared gone");
                    true
                }
                _ => false,
            }
        };
        if was_alive {
            tracing::warn!(worker = id, "worker gone ({why}); routing around it and re-planning");
            self.frontend.worker_down(id, why);
            self.replan.notify_one();
        }
    }
}

/// Serves one connection: control exchanges (registration, reports) and batch results.
async fn serve_conn(inner: Arc<Inner>, conn: quinn::Connection) {
    let limits = inner.node.config().limits;
    let results = {
        let (conn, frontend) = (conn.clone(), inner.frontend.embedded().cloned());
        tokio::spawn(async move {
            loop {
                match recv(&conn, &limits).await {
                    Ok(frame) => match &frontend {
                        Some(f) => f.result(frame),
                        None => tracing::warn!(
                            batch = frame.header.batch,
                            "a result came to the controller, but the frontend is remote; discarded"
                        ),
                    },
                    Err(EndpointError::Closed { .. }) => return,
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        })
    };
    let mut registered: Option<u32> = None;
    loop {
        let (msg, reply) = match recv_control(&conn, &limits).await {
            Ok(x) => x,
            Err(EndpointError::Closed { reason, .. }) => {
                if let Some(id) = registered {
                    inner.worker_gone(id, &format!("connection closed: {reason}"));
                }
                if inner.frontend.detach(&conn) && !inner.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!("the frontend left ({reason}); the workers keep their stages until one attaches");
                    inner.replan.notify_one();
                }
                results.abort();
                return;
            }
            Err(e) => {
                tracing::warn!("{e}");
                continue;
            }
        };
        let answer = match msg {
            Control::Register { node, class, device, data_addr } => {
                match register(&inner, &conn, node, class, device, &data_addr) {
                    Ok(id) => {
                        registered = Some(id);
                        Control::Welcome { worker: id }
                    }
                    Err(reason) => Control::Refused { reason },
                }
            }
            Control::Health { worker, .. } => {
                if let Some(w) = inner.lock().workers.get_mut(&worker) {
                    w.last_seen = Instant::now();
                }
                inner.frontend.report(msg);
                Control::Ack
            }
            Control::Timing { .. } | Control::Failed { .. } => {
                inner.frontend.report(msg);
                Control::Ack
            }
            Control::Attach { node, data_addr } => match inner.frontend.attach(&conn, node.clone(), &data_addr) {
                Ok(key) => {
                    tracing::info!(%node, %data_addr, attachment = key, "frontend attached; re-planning");
                    inner.replan.notify_one();
                    let spec = AttachedSpec {
                        models: inner.metas.clone(),
                        policy: inner.cfg.controller.policy.clone(),
                        max_queue: inner.cfg.controller.max_queue,
                    };
                    match serde_json::to_value(&spec) {
                        Ok(spec) => Control::Attached { spec },
                        Err(e) => {
                            Control::Refused { reason: format!("the controller could not describe its models: {e}") }
                        }
                    }
                }
                Err(reason) => {
                    tracing::warn!(%node, "frontend refused: {reason}");
                    Control::Refused { reason }
                }
            },
            Control::Arrivals { by_model, corrections } => {
                inner.frontend.arrivals(by_model, corrections);
                Control::Ack
            }
            other => Control::Refused { reason: format!("the controller does not take '{}' messages", other.kind()) },
        };
        let _ = reply.send(&answer).await;
    }
}

fn register(
    inner: &Arc<Inner>,
    conn: &quinn::Connection,
    name: String,
    class: String,
    device: String,
    data_addr: &str,
) -> std::result::Result<u32, String> {
    // A worker registers under its certificate's name, and not under the controller's:
    // any certificate of the cluster CA must not pass for another node.
    let controller = &inner.cfg.controller.name;
    match poolpipe_transport::endpoint::peer_name(conn) {
        Some(cert) if cert == name && &cert != controller => {}
        Some(cert) if &cert == controller => {
            return Err(format!(
                "the certificate of '{cert}' is the controller's own: a worker registers with a certificate of its own (`poolpipe certs issue WORKER-NAME`)"
            ));
        }
        Some(cert) => {
            return Err(format!(
                "registers as '{name}' with the certificate of '{cert}': a worker registers under its certificate's name (start it with --name {cert}, or issue a certificate for '{name}' with `poolpipe certs issue {name}`)"
            ));
        }
        None => return Err(format!("registers as '{name}' with a certificate that names no node")),
    }
    let addr: SocketAddr =
        data_addr.parse().map_err(|_| format!("data address '{data_addr}' is not IP:PORT (pass --advertise)"))?;
    let dir = &inner.cfg.controller.profiles;
    let missing: Vec<&str> = inner
        .served
        .iter()
        .filter(|s| !dir.join("block-latency").join(format!("{}-{class}-1.csv", s.config.name)).is_file())
        .map(|s| s.config.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "class '{class}' has no profile for {} in {}: profile it on this worker's device (`poolpipe profile MODEL --class {class} --out DIR`) or register with a profiled class",
            missing.join(", "),
            dir.display()
        ));
    }
    let mut s = inner.lock();
    if s.workers.values().any(|w| w.alive && w.name == name) {
        return Err(format!("a worker named '{name}' is already registered; give each worker its own name"));
    }
    let id = s.next_id;
    s.next_id += 1;
    s.workers.insert(
        id,
        Registered {
            name: name.clone(),
            class,
            device,
            addr,
            conn: conn.clone(),
            last_seen: Instant::now(),
            alive: true,
        },
    );
    drop(s);
    tracing::info!(worker = id, %name, %addr, "worker registered");
    inner.frontend.worker_up(id);
    inner.replan.notify_one();
    Ok(id)
}

/// Declares workers gone when their health reports stop.
async fn watchdog(weak: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(inner) = weak.upgrade() else { return };
        let limit = Duration::from_millis(inner.cfg.controller.dead_after_ms);
        let silent: Vec<u32> = inner
            .lock()
            .workers
            .iter()
            .filter(|(_, w)| w.alive && w.last_seen.elapsed() > limit)
            .map(|(&id, _)| id)
            .collect();
        for id in silent {
            inner.worker_gone(id, &format!("no health report for {limit:?}"));
        }
    }
}

/// Re-plans when the models' arrival mix moves away from the plan's weights.
async fn mix_watch(weak: std::sync::Weak<Inner>) {
    let mut last: Vec<u64> = vec![];
    loop {
        let Some(window) = weak.upgrade().map(|i| i.cfg.controller.mix_window_s) else { return };
        tokio::time::sleep(Duration::from_secs_f64(window)).await;
        let Some(inner) = weak.upgrade() else { return };
        let now = inner.frontend.arrived();
        // A frontend that attached anew counts from zero: that window says nothing.
        let delta: Vec<u64> =
            now.iter().enumerate().map(|(i, &n)| n.saturating_sub(last.get(i).copied().unwrap_or(0))).collect();
        last = now;
        let planned = {
            let s = inner.lock();
            if s.plan.is_none() {
                continue;
            }
            s.planned_weights.clone()
        };
        if let Some(weights) = mix_shift(&planned, &delta, inner.cfg.controller.mix_threshold, MIX_MIN_FRAMES) {
            tracing::info!(?planned, observed = ?weights, "the arrival mix moved; re-planning with the observed weights");
            inner.lock().weights = Some(weights);
            inner.replan.notify_one();
        }
    }
}

/// Re-plans when a class's profiles are off by more than `replan_correction`, with that
/// class's profiled times scaled by its measured ratio.
async fn correction_watch(weak: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(CORRECTION_CHECK).await;
        let Some(inner) = weak.upgrade() else { return };
        let threshold = inner.cfg.controller.replan_correction;
        if threshold <= 0.0 || inner.frontend.is_switching() {
            continue;
        }
        let corrections = inner.frontend.corrections();
        let mut by_class: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
        {
            let s = inner.lock();
            if s.plan.is_none() {
                continue;
            }
            for c in &corrections {
                if let Some(w) = s.workers.get(&c.worker) {
                    by_class.entry(w.class.clone()).or_default().push((c.ratio, c.reports));
                }
            }
        }
        let Some(shift) = correction_shift(&by_class, threshold, CORRECTION_MIN_REPORTS) else { continue };
        let mut s = inner.lock();
        for (class, factor) in &shift {
            let before = s.class_scale.get(class).copied().unwrap_or(1.0);
            let after = before * factor;
            tracing::warn!(
                %class,
                measured_over_profiled = factor,
                workers = by_class.get(class).map_or(0, Vec::len),
                threshold,
                scale_before = before,
                scale_after = after,
                "the class's profiles are off; re-planning with corrected profiles"
            );
            s.class_scale.insert(class.clone(), after);
        }
        drop(s);
        inner.replan.notify_one();
    }
}

/// Plans whenever the set of workers changes (after a short settling time).
async fn planner_loop(weak: std::sync::Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let waiter = inner.clone();
        drop(inner);
        waiter.replan.notified().await;
        drop(waiter);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(inner) = weak.upgrade() else { return };
        let front = inner.front_peer().map(|(key, _)| key);
        let (alive, planned_once, unchanged) = {
            let s = inner.lock();
            let ids: Vec<u32> = s.workers.iter().filter(|(_, w)| w.alive).map(|(&id, _)| id).collect();
            let planner = inner.planner_override.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let weights = inner.weights(&s);
            let unchanged = s.plan.is_some()
                && s.planned_for == (ids.clone(), planner, front)
                && s.planned_weights == weights
                && s.planned_scale == s.class_scale;
            (ids.len(), s.planned_once, unchanged)
        };
        if unchanged {
            continue;
        }
        if front.is_none() {
            let why = "no frontend is attached: start `poolpipe frontend --controller ADDR` (frontend = \"remote\")";
            tracing::info!("{why}; planning once one attaches");
            inner.lock().last_error = Some(why.into());
            continue;
        }
        if !planned_once && alive < inner.cfg.controller.workers {
            tracing::info!(
                "{alive} of {} workers registered; waiting for the rest to plan",
                inner.cfg.controller.workers
            );
            continue;
        }
        if let Err(e) = replan(&inner).await {
            let reason = format!("no plan: {e:#}");
            inner.lock().last_error = Some(reason.clone());
            if planned_once && !inner.frontend.is_switching() {
                // The plan in service routes around the workers that left; keep it.
                tracing::error!("re-planning failed; the current plan keeps serving: {reason}");
            } else {
                tracing::error!("{reason}");
                inner.frontend.no_plan(reason);
            }
        }
    }
}

/// Makes a plan for the live workers, drains, assigns and installs it.
async fn replan(inner: &Arc<Inner>) -> Result<()> {
    let c = &inner.cfg.controller;
    let workers: Vec<(u32, Registered)> =
        inner.lock().workers.iter().filter(|(_, w)| w.alive).map(|(&id, w)| (id, w.clone())).collect();
    if workers.is_empty() {
        bail!("no worker is registered");
    }
    let mut per_class: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (id, w) in &workers {
        per_class.entry(w.class.clone()).or_default().push(*id);
    }
    let fleet = Fleet {
        bandwidth_gbps: c.bandwidth_gbps,
        class: per_class
            .iter()
            .map(|(name, ids)| GpuClass {
                name: name.clone(),
                count: ids.len() as u32,
                gpus_per_server: 1,
                shares: Some(vec![1]),
            })
            .collect(),
    };
    let weights = inner.weights(&inner.lock());
    let workload = Workload {
        reference_class: per_class.keys().next().cloned().unwrap_or_default(),
        model: inner
            .served
            .iter()
            .zip(&weights)
            .map(|(s, &weight)| WorkloadModel { name: s.config.name.clone(), weight, slo_ms: Some(s.config.slo_ms) })
            .collect(),
    };
    let names = workload.model_names();
    let classes = fleet.class_names();
    let mut profiles = poolpipe_planner::profiles::load(&c.profiles, &names, &classes)?;
    scale_profiles(&mut profiles, c.profile_scale);
    let class_scale = inner.lock().class_scale.clone();
    scale_classes(&mut profiles, &class_scale);
    for (s, p) in inner.served.iter().zip(&profiles) {
        if p.blocks != s.partition.partition.len() {
            bail!(
                "model {}: the profiles have {} blocks but partitions/{}.json has {}: re-run `poolpipe profile`",
                s.config.name,
                p.blocks,
                s.config.name,
                s.partition.partition.len()
            );
        }
    }
    let inputs = Inputs::new(fleet.clone(), workload, profiles)?;
    let planner_override = inner.planner_override.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let kind: PlannerKind = planner_override
        .clone()
        .unwrap_or_else(|| c.planner.clone())
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let options = PlanOptions {
        max_partitions: c.max_partitions,
        shares: vec![1],
        max_batch_per_share: vec![c.max_batch],
        time_limit: Duration::from_secs_f64(c.plan_time_limit_s),
        ..PlanOptions::default()
    };
    let started = Instant::now();
    let plan = {
        let inputs = inputs.clone();
        tokio::task::spawn_blocking(move || -> Result<Plan> { Ok(Planner::new(&inputs, options)?.plan(kind)?) })
            .await??
    };
    let layout = Layout::new(&plan, &inputs.profiles, &fleet)?;
    tracing::info!(
        planner = kind.name(),
        seconds = started.elapsed().as_secs_f64(),
        objective = plan.objective,
        "planned"
    );
    // Layout GPUs of each class, in order, are that class's workers in id order.
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    let gpu_node: Vec<u32> = layout
        .gpus
        .iter()
        .map(|g| {
            let k = taken.entry(g.class).or_default();
            let id = per_class[&layout.classes[g.class].name][*k];
            *k += 1;
            id
        })
        .collect();
    let nodes: Vec<u32> = layout.workers.iter().map(|w| gpu_node[w.gpu]).collect();
    let (front_key, front) = inner.front_peer().context("the frontend left; planning once one attaches")?;
    let workers_peers: Vec<Peer> =
        workers.iter().map(|(id, w)| Peer { id: *id, addr: w.addr.to_string(), name: w.name.clone() }).collect();
    let mut peers = workers_peers.clone();
    peers.push(front);

    // Drain the old plan.
    inner.frontend.drain(Duration::from_millis(c.drain_timeout_ms)).await?;
    let generation = inner.lock().generation + 1;
    // Assign every worker its stage (or release it), all at once; each answers when compiled.
    let mut stages: HashMap<u32, StageView> = HashMap::new();
    let mut messages: HashMap<u32, Control> = HashMap::new();
    for (w, lw) in layout.workers.iter().enumerate() {
        let node = nodes[w];
        let m = &layout.models[lw.model];
        let st = &m.pipelines[lw.pipeline].stages[lw.stage];
        let s = &inner.served[lw.model];
        let spec = StageSpec {
            generation,
            name: s.config.name.clone(),
            source: s.config.source.clone(),
            partition: s.partition.partition.clone(),
            fingerprint: s.partition.fingerprint.clone(),
            max_batch: st.max_batch(),
            peers: peers.clone(),
        };
        if messages.contains_key(&node) {
            bail!("worker {node} got two stages: the cluster runs one stage per worker (share 1)");
        }
        stages.insert(
            node,
            StageView {
                model: s.config.name.clone(),
                stage: lw.stage,
                first_block: st.first_block,
                end_block: st.end_block,
            },
        );
        messages.insert(
            node,
            Control::Assign {
                worker: node,
                model: lw.model as u32,
                stage: lw.stage as u16,
                blocks: [st.first_block as u32, st.end_block as u32],
                spec: serde_json::to_value(&spec)?,
            },
        );
    }
    let limits = inner.node.config().limits;
    let mut calls = vec![];
    for (id, w) in &workers {
        let msg = messages.remove(id).unwrap_or(Control::Assign {
            worker: *id,
            model: 0,
            stage: 0,
            blocks: [0, 0],
            spec: serde_json::Value::Null,
        });
        let (conn, id) = (w.conn.clone(), *id);
        calls.push(tokio::spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(120), call(&conn, &msg, &limits)).await;
            (id, r)
        }));
    }
    let mut refused = vec![];
    for c in calls {
        let (id, r) = c.await?;
        match r {
            Ok(Ok(Control::Ack)) => {}
            Ok(Ok(Control::Refused { reason })) => refused.push(format!("worker {id}: {reason}")),
            Ok(Ok(other)) => refused.push(format!("worker {id} answered {}", other.kind())),
            Ok(Err(e)) => refused.push(format!("worker {id}: {e}")),
            Err(_) => refused.push(format!("worker {id}: no answer within 120 s")),
        }
    }
    if !refused.is_empty() {
        bail!("the assignment failed: {}", refused.join("; "));
    }
    let spec = InstallSpec { layout, nodes, peers: workers_peers };
    inner.frontend.install(generation, spec, &inner.node).await?;
    let installed = generation;
    {
        let mut s = inner.lock();
        s.generation = installed;
        s.plan = Some(plan);
        s.stages = stages;
        s.planned_once = true;
        s.last_error = None;
        s.planned_for = (workers.iter().map(|(id, _)| *id).collect(), planner_override, Some(front_key));
        s.planned_weights = weights;
        s.planned_scale = class_scale;
    }
    let _ = inner.planned.send(installed);
    tracing::info!(generation = installed, "plan installed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_and_http_limits_are_checked() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cluster.toml");
        let c = ClusterConfig::load(&path).unwrap();
        let o = c.controller.http_options();
        assert_eq!((o.max_body, o.max_json_body, o.server.threads), (64 << 20, 16 << 20, 2));
        let text = std::fs::read_to_string(&path).unwrap();
        let with = |line: &str| {
            let t = text.replace("[controller.limits]\n", &format!("[controller.limits]\n{line}\n"));
            toml::from_str::<ClusterConfig>(&t)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map(|_| c).map_err(|e| e.to_string()))
        };
        let c = with("max_json_body_bytes = 1048576\nheader_timeout_ms = 2000").unwrap();
        let o = c.controller.http_options();
        assert_eq!((o.max_json_body, o.server.header_timeout), (1 << 20, Duration::from_secs(2)));
        let e = with("body_timeout_ms = 5").unwrap_err();
        assert!(e.contains("body_timeout_ms = 5 is under 100"), "{e}");
        let e = with("max_in_flight_bytes = 2097152").unwrap_err();
        assert!(e.contains("max_in_flight_bytes") && e.contains("max_body_bytes"), "{e}");
        let e = with("max_conections = 5").unwrap_err();
        assert!(e.contains("max_conections"), "{e}");
    }

    #[test]
    fn a_moved_mix_gives_the_observed_weights() {
        // Planned 1:1, observed 3:1 over enough frames: 0.75 is 0.25 away from 0.5.
        assert_eq!(mix_shift(&[1.0, 1.0], &[75, 25], 0.2, 50), Some(vec![0.75, 0.25]));
        // Within the threshold, too few frames, one model, or the check turned off: no change.
        assert_eq!(mix_shift(&[1.0, 1.0], &[60, 40], 0.2, 50), None);
        assert_eq!(mix_shift(&[1.0, 1.0], &[30, 10], 0.2, 50), None);
        assert_eq!(mix_shift(&[1.0], &[100], 0.2, 50), None);
        assert_eq!(mix_shift(&[1.0, 1.0], &[75, 25], 0.0, 50), None);
        // A model nobody asks for keeps a floor, so it keeps a pipeline.
        assert_eq!(mix_shift(&[2.0, 1.0, 1.0], &[0, 50, 50], 0.2, 50), Some(vec![0.01, 0.5, 0.5]));
    }

    #[test]
    fn profile_scale_multiplies_every_block_time() {
        let share = |us: Vec<Vec<u64>>| poolpipe_planner::profiles::ShareProfile { share: 1, us };
        let mut p = vec![poolpipe_planner::profiles::ModelProfile {
            name: "m".into(),
            blocks: 2,
            cut_bytes: vec![0],
            classes: [("a".to_string(), vec![share(vec![vec![100, 180], vec![1, 3]])])].into(),
            listed_slo_us: None,
        }];
        let before = p.clone();
        scale_profiles(&mut p, 1.0);
        assert_eq!(p[0].classes, before[0].classes);
        scale_profiles(&mut p, 0.5);
        assert_eq!(p[0].classes["a"][0].us, vec![vec![50, 90], vec![1, 2]], "halved, at least 1 us");
    }

    #[test]
    fn a_class_whose_profiles_are_off_gets_its_measured_ratio() {
        let classes = |v: &[(&str, &[(f64, u64)])]| -> BTreeMap<String, Vec<(f64, u64)>> {
            v.iter().map(|(c, w)| (c.to_string(), w.to_vec())).collect()
        };
        // T4 runs 2x slower than profiled on two of three workers (the median), L4 as profiled.
        let by = classes(&[("L4", &[(1.1, 40), (0.9, 40)]), ("T4", &[(2.0, 20), (2.2, 30), (1.0, 30)])]);
        assert_eq!(correction_shift(&by, 0.5, 15), Some([("T4".to_string(), 2.0)].into()));
        // 2x faster than profiled counts too; within the threshold it does not.
        let by = classes(&[("L4", &[(0.4, 40)]), ("T4", &[(1.4, 40)])]);
        assert_eq!(correction_shift(&by, 0.5, 15), Some([("L4".to_string(), 0.4)].into()));
        // Workers without a full window of reports, or the check turned off: no re-plan.
        let by = classes(&[("T4", &[(3.0, 14), (3.0, 2)])]);
        assert_eq!(correction_shift(&by, 0.5, 15), None);
        let by = classes(&[("T4", &[(3.0, 40)])]);
        assert_eq!(correction_shift(&by, 0.0, 15), None);
    }

    #[test]
    fn a_class_scale_multiplies_that_classs_block_times_only() {
        let share = |us: Vec<Vec<u64>>| poolpipe_planner::profiles::ShareProfile { share: 1, us };
        let mut p = vec![poolpipe_planner::profiles::ModelProfile {
            name: "m".into(),
            blocks: 1,
            cut_bytes: vec![],
            classes: [("a".to_string(), vec![share(vec![vec![100]])]), ("b".to_string(), vec![share(vec![vec![100]])])]
                .into(),
            listed_slo_us: None,
        }];
        scale_classes(&mut p, &[("b".to_string(), 2.5)].into());
        assert_eq!((p[0].classes["a"][0].us[0][0], p[0].classes["b"][0].us[0][0]), (100, 250));
    }

    fn config(controller_extra: &str, slo_ms: &str) -> ClusterConfig {
        let text = format!(
            "[controller]\nprofiles = \"p\"\n{controller_extra}\n[[model]]\nname = \"m\"\nmodel = \"resnet-mini\"\nslo_ms = {slo_ms}\n"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn cluster_configs_are_checked_key_by_key() {
        let c = config("", "100");
        c.validate().unwrap();
        assert_eq!((c.controller.mix_window_s, c.controller.mix_threshold), (30.0, 0.2));
        assert_eq!(c.controller.profile_scale, 1.0);
        assert_eq!(c.controller.replan_correction, 0.5);
        for (extra, slo, says) in [
            ("planner = \"magic\"", "100", "planner"),
            ("mix_threshold = 1.5", "100", "mix_threshold"),
            ("workers = 0", "100", "workers"),
            ("max_queue = 0", "100", "max_queue"),
            ("profile_scale = 0", "100", "profile_scale"),
            ("replan_correction = -1", "100", "replan_correction"),
            ("", "-1", "slo_ms"),
        ] {
            let e = config(extra, slo).validate().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        assert_eq!(c.controller.frontend, FrontendMode::Embedded);
        assert_eq!(config("frontend = \"remote\"", "100").controller.frontend, FrontendMode::Remote);
        let text = "[controller]\nprofiles = \"p\"\nfrontend = \"elsewhere\"\n[[model]]\nname = \"m\"\nmodel = \"x\"\nslo_ms = 1\n";
        let e = toml::from_str::<ClusterConfig>(text).unwrap_err().to_string();
        assert!(e.contains("elsewhere") && e.contains("remote"), "{e}");
        let text = "[controller]\nprofiles = \"p\"\ntypo = 1\n[[model]]\nname = \"m\"\nmodel = \"x\"\nslo_ms = 1\n";
        let e = toml::from_str::<ClusterConfig>(text).unwrap_err().to_string();
        assert!(e.contains("typo"), "{e}");
    }
}
