//! # poolpipe-planner
//!
//! The control plane's planner (PPipe's MILP, solved in pure Rust with microlp): from
//! per-block latency profiles, a fleet of GPU classes and a workload, it decides how each
//! model is cut into partitions, which pool of which GPU class serves each partition, with how
//! many (v)GPUs and at which batch size; with the NP and DART-r baselines.
//!
//! - [`profiles`]: block profiles in the ppipe-data format (published, or written by
//!   `poolpipe profile`); [`config`]: fleet and workload files, default SLOs.
//! - [`columns`]: every SLO-feasible pipeline configuration of a model (cut, class and share
//!   per partition, one batch size), and the pruning of dominated ones.
//! - [`solver`]: a small MILP model behind a [`Solver`] trait; [`Microlp`] is the backend.
//! - `milp` (private): the compact formulation of PPIPE.md over those configurations, for
//!   PPipe and NP; `dart` (private): the DART-r construction.
//! - [`plan`]: the plan (serde JSON) and [`plan::verify`], which every plan passes.
//!
//! Entry points: [`Inputs::load`] then [`Planner::plan`] (or [`Planner::all`] for the three
//! planners of one case).
//!
//! ## How a plan is made
//! 1. Throughput estimates for the batch-build term: the NP plan solved without that term
//!    (PPIPE.md, "Details of the reference plans"); each model's throughput in it.
//! 2. NP: one partition, whole GPUs, max-min z; then the fewest GPUs at that z. When whole
//!    models meet no SLO (only pipelines across classes do), NP serves nothing and PPipe
//!    plans from no start.
//! 3. DART-r (two-class fleets): from NP's GPU split, see `dart`.
//! 4. PPipe: up to `max_partitions` partitions and every share; the search starts from the
//!    better of the NP and DART-r plans (both are PPipe plans too), so PPipe is never below
//!    either, even when the time limit stops the search. With three partitions, the best
//!    two-partition plan (up to a third of the time) starts it too. The time limit holds for
//!    the whole PPipe plan, baselines and that pre-search included (the main search gets
//!    what is left, at least a third). [`Search::Auto`]: a short branch and bound on the
//!    joint MILP (at most 5% of the time limit, 0.3 s), then, when that does not prove the
//!    plan, the searches below, then the joint search again with the time left.
//!
//! How the search scales with classes (chosen for issue 21, measured in docs/benchmarks.md):
//! - **Two classes**: the split search over GPU splits between models (see `milp`), exact,
//!   up to 70% of the time.
//! - **Three or four classes**, first the same split search on one pair of classes, every
//!   other class whole to each model (a relaxation: its optimum bounds the fleet's), up to
//!   15% of the time. When its plan also fits the other classes (or does once each model
//!   sheds what it does not need of them), the plan is proven: fleets where at most two
//!   classes bind.
//! - Then the **pools relaxation** (`milp::pools_plan`), up to 75% of the time (nine tenths
//!   of that for its search, the rest for plans from its split): the joint
//!   MILP with each pool's GPUs an integer and each pipeline's vGPUs fractional. It is small
//!   to search (only pools branch; columns that no mix of fractional vGPUs would use are
//!   dropped first, about 60% of them) and tighter than the LP relaxation: on the
//!   published four-class cases it lies 0.4-0.9% above the best plan HiGHS finds, where the
//!   LP relaxation, the pair relaxations and a Dantzig-Wolfe bound over per-model
//!   allotments all lie about 1.1% or more above it. Its split of GPUs between models gives
//!   the plan: each model's best plan on its share (a per-model MILP, first on the columns the
//!   relaxation uses), solved again with each model's demand scaled by what rounding cost it,
//!   then polished by moving GPUs between models (`milp::rebalance`) and, when no move of
//!   one model at a time gains, by trading a few GPUs of one class for a few of another
//!   between two models (`milp::swap`). Why this and not
//!   branch and price: the per-model pricing MILPs take microlp about 0.2 s each, and a
//!   column generation needs about 15 rounds per node, which does not fit seconds.
//!   It is searched to 0.1% at least whatever the gap target: its bound is what proves the
//!   plan, and one searched only to the target leaves plans unproven.
//! - Where the pools relaxation does not settle it, its bound is reported with the best plan,
//!   and the joint search runs with the time left.
//!
//! Partitions: with three, a pipeline has up to three pools, the pools relaxation keeps
//! three-dimensional Pareto fronts of columns (no convex-hull reduction), and a model with
//! over 10,000 configurations (EfficientNet-B8 on three classes) makes it too slow to finish
//! in seconds: such a plan is reported with its gap (mc3-group4: 4.6%, 1.3% below the best plan
//! known; HiGHS given 150 s ends at 4.5%; docs/benchmarks.md).
//!
//! `scripts/planner_oracle.py` solves the same MILP with HiGHS from
//! [`Planner::configurations`] as an outside check (tests/planner_oracle.rs).
//!
//! ## What it must never do
//! It is pure: data in (profiles, fleet, workload, SLOs, options), plan out (serde JSON). No
//! I/O besides reading those files, no GPU, no network. It never panics on bad input: errors
//! name the file, model or class and what to do.

pub mod columns;
pub mod config;
mod dart;
mod error;
mod milp;
pub mod plan;
pub mod profiles;
pub mod solver;

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use config::{Fleet, GpuClass, SloSource, Workload, WorkloadModel};
pub use error::{PlannerError, Result};
pub use plan::{Plan, verify};
pub use profiles::{ModelProfile, ShareProfile};
pub use solver::{Microlp, Solver};

use columns::ColumnOptions;
use milp::{Choice, ModelColumns};
use plan::{ModelPlan, SolveInfo, Unserved};
use solver::Limits;

/// Everything a plan is made from.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The fleet.
    pub fleet: Fleet,
    /// The workload.
    pub workload: Workload,
    /// Profiles of the workload's models, in workload order.
    pub profiles: Vec<ModelProfile>,
    /// SLO of each model (microseconds) and where it came from, in workload order.
    pub slos: Vec<(u64, SloSource)>,
}

impl Inputs {
    /// Reads a profile folder, a fleet file and a workload file.
    pub fn load(profiles_dir: &Path, fleet: &Path, workload: &Path) -> Result<Inputs> {
        let fleet = Fleet::load(fleet)?;
        let workload = Workload::load(workload)?;
        let profiles = profiles::load(profiles_dir, &workload.model_names(), &fleet.class_names())?;
        Inputs::new(fleet, workload, profiles)
    }

    /// Checks and combines inputs already in memory (profiles in any order).
    pub fn new(fleet: Fleet, workload: Workload, mut profiles: Vec<ModelProfile>) -> Result<Inputs> {
        fleet.validate("fleet")?;
        workload.validate("workload")?;
        let mut ordered = vec![];
        for m in &workload.model {
            let i = profiles.iter().position(|p| p.name == m.name).ok_or_else(|| PlannerError::Config {
                what: format!("model '{}'", m.name),
                reason: "no profiles given for it".into(),
            })?;
            ordered.push(profiles.swap_remove(i));
        }
        let slos = workload.slos_us(&ordered)?;
        Ok(Inputs { fleet, workload, profiles: ordered, slos })
    }
}

/// The PPipe MILP's inputs for an outside solver ([`Planner::configurations`]).
#[derive(Clone, Debug, Serialize)]
pub struct Configurations {
    /// GPU classes in fleet order (a configuration's `class` indexes this).
    pub classes: Vec<ClassCount>,
    /// Served models in workload order.
    pub models: Vec<ModelConfigurations>,
}

/// A class and its GPUs.
#[derive(Clone, Debug, Serialize)]
pub struct ClassCount {
    /// Name.
    pub name: String,
    /// GPUs.
    pub count: u32,
}

/// One model's configurations.
#[derive(Clone, Debug, Serialize)]
pub struct ModelConfigurations {
    /// Name.
    pub name: String,
    /// Weight in the workload.
    pub weight: f64,
    /// Every SLO-feasible configuration (none pruned).
    pub columns: Vec<columns::Column>,
}

/// Which planner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlannerKind {
    /// Pool-based pipelines (the MILP).
    #[serde(rename = "ppipe")]
    Ppipe,
    /// Whole models on whole GPUs.
    #[serde(rename = "np")]
    Np,
    /// Two-stage high+low chains replicated, leftovers whole-model.
    #[serde(rename = "dart-r")]
    DartR,
}

impl PlannerKind {
    /// The name used on the command line and in plans.
    pub fn name(self) -> &'static str {
        match self {
            PlannerKind::Ppipe => "ppipe",
            PlannerKind::Np => "np",
            PlannerKind::DartR => "dart-r",
        }
    }
}

impl std::str::FromStr for PlannerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ppipe" => Ok(PlannerKind::Ppipe),
            "np" => Ok(PlannerKind::Np),
            "dart-r" | "dartr" => Ok(PlannerKind::DartR),
            _ => Err(format!("unknown planner '{s}': use ppipe, np or dart-r")),
        }
    }
}

/// How the PPipe MILP is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Search {
    /// A short joint search (branch and bound on the whole MILP); when it does not prove
    /// the plan, the split search (two-class fleets, several models), then the joint search
    /// again with the time left.
    #[default]
    Auto,
    /// Branch and bound on the whole MILP only.
    Joint,
    /// The split search right away (two-class fleets with several models; others: joint).
    Split,
}

impl std::str::FromStr for Search {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Search::Auto),
            "joint" => Ok(Search::Joint),
            "split" => Ok(Search::Split),
            _ => Err(format!("unknown search '{s}': use auto, joint or split")),
        }
    }
}

/// Planning options; the defaults are PPIPE.md's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Most partitions per pipeline (1..=3; default 2).
    pub max_partitions: usize,
    /// Shares a vGPU may have (k for 1/k of a GPU; default 1..4). A class uses those it has
    /// profile files for (and its fleet `shares`, when given).
    pub shares: Vec<usize>,
    /// Largest batch at share 1/k, by k - 1 (default 8, 4, 2, 2).
    pub max_batch_per_share: Vec<usize>,
    /// Batch sizes allowed (default: all up to the limits).
    pub batches: Option<Vec<usize>>,
    /// Planning margin as a fraction of the SLO (default 0.4).
    pub margin: f64,
    /// Batch-build factor (default 1.3).
    pub batch_build_factor: f64,
    /// Wall-clock limit of each solver call (default 60 s).
    pub time_limit: Duration,
    /// Relative gap at which the search may stop (default 1e-4).
    pub mip_gap: f64,
    /// How the PPipe MILP is searched (default: auto).
    pub search: Search,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            max_partitions: 2,
            shares: vec![1, 2, 3, 4],
            max_batch_per_share: vec![8, 4, 2, 2],
            batches: None,
            margin: 0.4,
            batch_build_factor: 1.3,
            time_limit: Duration::from_secs(60),
            mip_gap: 1e-4,
            search: Search::Auto,
        }
    }
}

fn opt_err(what: &str, reason: impl Into<String>) -> PlannerError {
    PlannerError::Config { what: format!("option {what}"), reason: reason.into() }
}

impl PlanOptions {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        if !(1..=3).contains(&self.max_partitions) {
            return Err(opt_err("max_partitions", format!("{} is outside 1..=3", self.max_partitions)));
        }
        if self.shares.is_empty() || self.shares.iter().any(|&k| k == 0 || k > profiles::MAX_SHARE) {
            return Err(opt_err("shares", "give shares k in 1..=8, e.g. 1,2,3,4"));
        }
        if !self.shares.contains(&1) {
            return Err(opt_err("shares", "share 1 (whole GPUs) is needed: the NP pre-solve uses it"));
        }
        if self.shares.iter().any(|&k| self.max_batch_per_share.get(k - 1).is_none_or(|&b| b == 0)) {
            return Err(opt_err("max_batch_per_share", "give a largest batch (>= 1) for every share used"));
        }
        if let Some(b) = &self.batches
            && (b.is_empty() || b.contains(&0) || !b.contains(&1))
        {
            return Err(opt_err("batches", "batch sizes must be >= 1 and include 1"));
        }
        if !(self.margin.is_finite() && (0.0..1.0).contains(&self.margin)) {
            return Err(opt_err("margin", format!("{} is outside [0, 1) (a fraction of the SLO)", self.margin)));
        }
        if !(self.batch_build_factor.is_finite() && self.batch_build_factor >= 0.0) {
            return Err(opt_err("batch_build_factor", "must be a non-negative number"));
        }
        if !(self.mip_gap.is_finite() && self.mip_gap >= 0.0) {
            return Err(opt_err("mip_gap", "must be a non-negative number"));
        }
        if self.time_limit.is_zero() {
            return Err(opt_err("time_limit", "must be positive"));
        }
        Ok(())
    }

    fn columns(&self, np: bool) -> ColumnOptions {
        ColumnOptions {
            max_partitions: if np { 1 } else { self.max_partitions },
            shares: if np { vec![1] } else { self.shares.clone() },
            max_batch_per_share: self.max_batch_per_share.clone(),
            batches: self.batches.clone(),
            margin: self.margin,
            batch_build_factor: self.batch_build_factor,
        }
    }

    fn limits(&self) -> Limits {
        Limits { time_limit: Some(self.time_limit), mip_gap: self.mip_gap, warm_start: None }
    }
}

/// Plans one set of inputs; caches the throughput estimates shared by the three planners.
pub struct Planner<'a> {
    inputs: &'a Inputs,
    options: PlanOptions,
    solver: Box<dyn Solver + 'a>,
    estimate: Option<(Vec<f64>, f64)>,
}

/// Why a model has no SLO-feasible configuration, in numbers.
fn unserved_reason(inputs: &Inputs, i: usize, o: &PlanOptions) -> String {
    let (slo, _) = inputs.slos[i];
    let margin = (o.margin * slo as f64).round();
    let best = inputs
        .fleet
        .class
        .iter()
        .filter_map(|c| inputs.profiles[i].whole_us(&c.name, 1, 1).map(|us| (us, c.name.clone())))
        .min();
    match best {
        Some((us, class)) => format!(
            "no pipeline meets its SLO of {:.1} ms: the fastest, the whole model at batch 1 on {class}, takes {:.1} ms, and the margin holds back {:.1} ms ({}% of the SLO); raise slo_ms or lower the margin",
            slo as f64 / 1000.0,
            us as f64 / 1000.0,
            margin / 1000.0,
            (o.margin * 100.0).round()
        ),
        None => "no profile on any class of the fleet".into(),
    }
}

impl<'a> Planner<'a> {
    /// A planner with the microlp backend.
    pub fn new(inputs: &'a Inputs, options: PlanOptions) -> Result<Self> {
        Self::with_solver(inputs, options, Box::new(Microlp))
    }

    /// A planner with another backend.
    pub fn with_solver(inputs: &'a Inputs, options: PlanOptions, solver: Box<dyn Solver + 'a>) -> Result<Self> {
        options.validate()?;
        Ok(Planner { inputs, options, solver, estimate: None })
    }

    /// The options in use.
    pub fn options(&self) -> &PlanOptions {
        &self.options
    }

    /// Columns of every model; models with none are unserved.
    fn columns(&self, est: Option<&[f64]>, np: bool) -> (Vec<ModelColumns>, Vec<Unserved>) {
        self.columns_with(est, &self.options.columns(np))
    }

    /// Columns of every model under `o`; models with none are unserved.
    fn columns_with(&self, est: Option<&[f64]>, o: &ColumnOptions) -> (Vec<ModelColumns>, Vec<Unserved>) {
        let mut served = vec![];
        let mut unserved = vec![];
        for (i, p) in self.inputs.profiles.iter().enumerate() {
            let all = columns::enumerate(p, &self.inputs.fleet, self.inputs.slos[i].0, est.map(|e| e[i]), o);
            if all.is_empty() {
                unserved
                    .push(Unserved { name: p.name.clone(), reason: unserved_reason(self.inputs, i, &self.options) });
            } else {
                served.push(ModelColumns::new(i, all));
            }
        }
        (served, unserved)
    }

    /// Throughput estimates (requests/s per model) for the batch-build term, and the seconds
    /// they took: each model's throughput in the NP plan solved without that term.
    pub fn estimates(&mut self) -> Result<(Vec<f64>, f64)> {
        if let Some(e) = &self.estimate {
            return Ok(e.clone());
        }
        let t = Instant::now();
        let (served, _) = self.columns(None, true);
        let mut est = vec![0.0; self.inputs.profiles.len()];
        if !served.is_empty() {
            let out = milp::solve(
                self.inputs,
                &served,
                self.solver.as_ref(),
                &self.options.limits(),
                true,
                &[],
                Search::Joint,
            )?;
            let zero = vec![0.0; est.len()];
            let (plans, _) = milp::model_plans(self.inputs, &served, &out.choices, &zero, &self.options.columns(true));
            for (mc, p) in served.iter().zip(&plans) {
                est[mc.model] = p.throughput;
            }
        }
        let e = (est, t.elapsed().as_secs_f64());
        self.estimate = Some(e.clone());
        Ok(e)
    }

    /// Every SLO-feasible pipeline configuration of each served model, before pruning, with
    /// the batch-build term of the PPipe plan: what an outside solver needs to solve the same
    /// MILP (`scripts/planner_oracle.py` with HiGHS).
    pub fn configurations(&mut self) -> Result<Configurations> {
        let (est, _) = self.estimates()?;
        let (served, _) = self.columns(Some(&est), false);
        Ok(Configurations {
            classes: self
                .inputs
                .fleet
                .class
                .iter()
                .map(|c| ClassCount { name: c.name.clone(), count: c.count })
                .collect(),
            models: served
                .into_iter()
                .map(|mc| ModelConfigurations {
                    name: self.inputs.profiles[mc.model].name.clone(),
                    weight: self.inputs.workload.model[mc.model].weight,
                    columns: mc.all,
                })
                .collect(),
        })
    }

    /// Plans with one planner.
    pub fn plan(&mut self, kind: PlannerKind) -> Result<Plan> {
        match kind {
            PlannerKind::Np => self.np(),
            PlannerKind::DartR => {
                let np = self.np()?;
                self.dart_r(&np)
            }
            PlannerKind::Ppipe => Ok(self.all()?.0),
        }
    }

    /// The three plans of one case: PPipe, NP and DART-r (None when the fleet does not have
    /// exactly two classes).
    pub fn all(&mut self) -> Result<(Plan, Plan, Option<Plan>)> {
        let cached = self.estimate.as_ref().map_or(0.0, |e| e.1);
        let started = Instant::now();
        // Whole models on whole GPUs may serve nothing while pipelines do (a model whose
        // SLO only a cut across two classes meets): PPipe then plans from no start.
        let np = match self.np() {
            Ok(p) => p,
            Err(PlannerError::NothingServable { .. }) => self.serves_nothing(PlannerKind::Np),
            Err(e) => return Err(e),
        };
        let dart = match self.inputs.fleet.class.len() {
            2 if np.models.is_empty() => Some(self.serves_nothing(PlannerKind::DartR)),
            2 => Some(self.dart_r(&np)?),
            _ => None,
        };
        let (est, pre) = self.estimates()?;
        let (served, unserved) = self.columns(Some(&est), false);
        if served.is_empty() {
            return Err(nothing(unserved));
        }
        // The baselines as starts of a search over `served`.
        let baselines = |served: &[ModelColumns]| {
            let mut warm = vec![("np".to_string(), choices_of(&np.models, served, self.inputs))];
            if let Some(d) = &dart {
                warm.push(("dart-r".to_string(), choices_of(&d.models, served, self.inputs)));
            }
            warm
        };
        let mut warm = baselines(&served);
        let mut limits = self.options.limits();
        if self.options.max_partitions > 2 {
            // Two-partition plans are three-partition plans too, and their search is far
            // smaller: the best of them (a third of the time) starts the wider search.
            let narrow = ColumnOptions { max_partitions: 2, ..self.options.columns(false) };
            let (served2, unserved2) = self.columns_with(Some(&est), &narrow);
            if unserved2.is_empty() {
                let third = Limits { time_limit: limits.time_limit.map(|d| d / 3), ..limits.clone() };
                let out2 = milp::solve(
                    self.inputs,
                    &served2,
                    self.solver.as_ref(),
                    &third,
                    false,
                    &baselines(&served2),
                    self.options.search,
                )?;
                let (models2, _) = milp::model_plans(self.inputs, &served2, &out2.choices, &est, &narrow);
                warm.push(("two partitions".to_string(), choices_of(&models2, &served, self.inputs)));
            }
        }
        // The time limit holds for the whole PPipe plan: the baselines and the two-partition
        // search before it leave the main search what is left of it (at least a third), less
        // 2% for making and checking the plan.
        limits.time_limit = limits.time_limit.map(|d| d.mul_f64(0.98).saturating_sub(started.elapsed()).max(d / 3));
        let out = milp::solve(self.inputs, &served, self.solver.as_ref(), &limits, false, &warm, self.options.search)?;
        let mut plan = self.make_plan(PlannerKind::Ppipe, &served, unserved, &out, &est, pre, false);
        plan.solve_seconds = started.elapsed().as_secs_f64() + cached;
        self.check(&plan)?;
        Ok((plan, np, dart))
    }

    /// A plan of `kind` that serves nothing (every model unserved, with why): the baseline
    /// when whole models meet no SLO.
    fn serves_nothing(&self, kind: PlannerKind) -> Plan {
        let (_, unserved) = self.columns(None, true);
        let (models, classes) = milp::model_plans(self.inputs, &[], &[], &[], &self.options.columns(true));
        Plan {
            planner: kind.name().into(),
            objective: 0.0,
            solve_seconds: 0.0,
            gap: 0.0,
            optimal: false,
            bandwidth_gbps: self.inputs.fleet.bandwidth_gbps,
            classes,
            models,
            unserved,
            solve: SolveInfo {
                solver: "none".into(),
                columns: 0,
                feasible_columns: 0,
                integer_vars: 0,
                nodes: 0,
                lp_bound: 0.0,
                presolve_seconds: 0.0,
                source: "whole models on whole GPUs meet no SLO".into(),
            },
        }
    }

    /// The NP baseline.
    pub fn np(&mut self) -> Result<Plan> {
        let cached = self.estimate.as_ref().map_or(0.0, |e| e.1);
        let t = Instant::now();
        let (est, pre) = self.estimates()?;
        let (served, unserved) = self.columns(Some(&est), true);
        if served.is_empty() {
            return Err(nothing(unserved));
        }
        let out =
            milp::solve(self.inputs, &served, self.solver.as_ref(), &self.options.limits(), true, &[], Search::Joint)?;
        let mut plan = self.make_plan(PlannerKind::Np, &served, unserved, &out, &est, pre, true);
        plan.solve_seconds = t.elapsed().as_secs_f64() + cached;
        self.check(&plan)?;
        Ok(plan)
    }

    /// The DART-r baseline from an NP plan of the same inputs.
    pub fn dart_r(&mut self, np: &Plan) -> Result<Plan> {
        let t = Instant::now();
        let fleet = &self.inputs.fleet;
        if fleet.class.len() != 2 {
            return Err(opt_err(
                "planner dart-r",
                format!(
                    "DART-r needs exactly two GPU classes (a high and a low one); the fleet has {}",
                    fleet.class.len()
                ),
            ));
        }
        let (est, pre) = self.estimates()?;
        let o = self.options.columns(true);
        let o = ColumnOptions { max_partitions: 2, ..o };
        let high = dart::high_class(self.inputs);
        let low = 1 - high;
        let split = dart::split(self.inputs, &np.models);
        let mut served = vec![];
        let mut choices = vec![];
        let mut unserved = np.unserved.clone();
        for (mp, gpus) in np.models.iter().zip(&split) {
            let i = self.inputs.profiles.iter().position(|p| p.name == mp.name).expect("NP plans workload models");
            let all = columns::enumerate(&self.inputs.profiles[i], fleet, self.inputs.slos[i].0, Some(est[i]), &o);
            if all.is_empty() {
                unserved
                    .push(Unserved { name: mp.name.clone(), reason: unserved_reason(self.inputs, i, &self.options) });
                continue;
            }
            let mc = ModelColumns { model: i, kept: (0..all.len()).collect(), dominated: vec![None; all.len()], all };
            choices.push(dart::model_choice(&mc, high, low, gpus[high], gpus[low]));
            served.push(mc);
        }
        let (models, classes) = milp::model_plans(self.inputs, &served, &choices, &est, &o);
        let objective = objective(&models);
        let plan = Plan {
            planner: PlannerKind::DartR.name().into(),
            objective,
            solve_seconds: t.elapsed().as_secs_f64() + np.solve_seconds,
            gap: 0.0,
            optimal: false,
            bandwidth_gbps: fleet.bandwidth_gbps,
            classes,
            models,
            unserved,
            solve: SolveInfo {
                solver: "construction".into(),
                columns: served.iter().map(|m| m.all.len()).sum(),
                feasible_columns: served.iter().map(|m| m.all.len()).sum(),
                integer_vars: 0,
                nodes: 0,
                lp_bound: 0.0,
                presolve_seconds: pre,
                source: "construction from the NP split".into(),
            },
        };
        self.check(&plan)?;
        Ok(plan)
    }

    #[allow(clippy::too_many_arguments)]
    fn make_plan(
        &self,
        kind: PlannerKind,
        served: &[ModelColumns],
        unserved: Vec<Unserved>,
        out: &milp::Outcome,
        est: &[f64],
        pre: f64,
        np: bool,
    ) -> Plan {
        let o = self.options.columns(np);
        let (models, classes) = milp::model_plans(self.inputs, served, &out.choices, est, &o);
        let objective = objective(&models);
        let gap = if out.solved.optimal && out.from_warm.is_none() {
            0.0
        } else if objective > 0.0 {
            ((out.solved.bound - objective) / objective).max(0.0)
        } else {
            out.solved.gap
        };
        Plan {
            planner: kind.name().into(),
            objective,
            solve_seconds: out.solved.seconds,
            gap,
            optimal: gap == 0.0,
            bandwidth_gbps: self.inputs.fleet.bandwidth_gbps,
            classes,
            models,
            unserved,
            solve: SolveInfo {
                solver: self.solver.name().into(),
                columns: served.iter().map(|m| m.kept.len()).sum(),
                feasible_columns: served.iter().map(|m| m.all.len()).sum(),
                integer_vars: out.integer_vars,
                nodes: out.solved.nodes,
                lp_bound: out.lp_bound,
                presolve_seconds: pre,
                source: out.from_warm.as_ref().map_or("search".into(), |w| format!("warm-start ({w})")),
            },
        }
    }

    fn check(&self, plan: &Plan) -> Result<()> {
        let o = &self.options;
        verify(plan, self.inputs, o.margin, o.batch_build_factor, &o.max_batch_per_share)
    }
}

fn objective(models: &[ModelPlan]) -> f64 {
    if models.is_empty() {
        return 0.0;
    }
    models.iter().map(|m| m.throughput / m.weight).fold(f64::INFINITY, f64::min)
}

fn nothing(unserved: Vec<Unserved>) -> PlannerError {
    PlannerError::NothingServable {
        details: unserved.iter().map(|u| format!("'{}': {}", u.name, u.reason)).collect::<Vec<_>>().join("; "),
    }
}

/// A plan's pipelines as choices among `served`'s columns (those that match none are left
/// out; the warm start is then just weaker).
fn choices_of(models: &[ModelPlan], served: &[ModelColumns], inputs: &Inputs) -> Vec<Choice> {
    served
        .iter()
        .map(|mc| {
            let name = &inputs.profiles[mc.model].name;
            let Some(mp) = models.iter().find(|m| &m.name == name) else { return vec![] };
            mp.pipelines
                .iter()
                .filter_map(|pl| {
                    let ci = mc.all.iter().position(|c| {
                        c.batch == pl.batch
                            && c.parts.len() == pl.partitions.len()
                            && c.parts.iter().zip(&pl.partitions).all(|(a, b)| {
                                a.first == b.first_block
                                    && a.end == b.end_block
                                    && a.share == b.share
                                    && inputs.fleet.class[a.class].name == b.class
                            })
                    })?;
                    Some((ci, pl.partitions.iter().map(|p| p.vgpus).collect()))
                })
                .collect()
        })
        .collect()
}
