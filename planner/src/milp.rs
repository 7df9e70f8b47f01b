//! The compact MILP of PPIPE.md over pipeline configurations ("columns"), used for both the
//! PPipe plan and the NP baseline (one partition, whole GPUs).
//!
//! Variables, for every served model m and every kept column c of m (see
//! [`columns::prune`](crate::columns::prune)):
//! - `X_c >= 0` continuous: requests per second the column serves;
//! - `n_{c,d}` integer: vGPUs of partition d, with `X_c <= x_{c,d} * n_{c,d}`;
//! - `P_{m,d,class}` (integer unless every contributing partition is a whole GPU):
//!   physical GPUs of the pool, `sum n_{c,d} / k_{c,d} <= P` over the columns of m whose
//!   partition d runs on that class;
//! - `z`: maximised, with `z * w_m <= sum_c X_c` for every model and
//!   `sum_{m,d} P_{m,d,class} <= N_class` for every class.
//!
//! The NP plan is solved in two phases: first the largest z, then, keeping z, the fewest
//! GPUs (so that the split of GPUs between models, which DART-r and the batch-build estimate
//! depend on, is not left to chance).
//!
//! Branch and bound on this joint MILP proves small cases quickly, but its LP relaxation
//! (fractional vGPUs and GPUs) sits 3-5% above the best plans of the published cases, and
//! closing that takes microlp minutes. For two-class fleets with several models, the *split
//! search* ([`solve_split`]) proves them instead: with F_m(h, l) the best throughput of model
//! m alone on h GPUs of class 0 and l of class 1 (the same MILP for one model: small, and
//! its searches stop as soon as they decide a question), z* = max over splits of the GPUs of
//! min_m F_m / w_m. Each round picks a target z (halfway to the upper bound while the gap is
//! above 0.1%, then just above the best plan), finds for every model but the costliest the
//! staircase of fewest GPUs that serve more than its share of the target (binary search on
//! l per h; LP bounds and monotonicity in (h, l) answer most questions without a search),
//! combines them by dynamic programming into the fewest class-1 GPUs for each count of
//! class-0 GPUs, and asks the costliest model one question per split: does it serve more
//! than its share on what is left? A yes is a better plan; a no everywhere bounds the
//! optimum by the target. It ends when the gap is within `mip_gap`, or proven 0.
//!
//! With more than two classes the same search runs first, briefly, on one pair of classes,
//! every other class given whole to each model ([`solve_split`]'s `pair`): its bound holds
//! for the fleet. Its plan is the fleet's optimum when it fits the other classes as it is,
//! after each model sheds what it does not need of them ([`shrink`]), or when the joint MILP
//! with each model held to its GPUs of the pair reaches the bound ([`fit_jointly`]).
//!
//! When that does not prove the plan (three or four classes all used up), the pools
//! relaxation does ([`pools_plan`]): the joint MILP with integer GPUs per pool and fractional
//! vGPUs, over the columns that fractional vGPUs could use ([`efficient`]). Its bound is
//! within 1% of the optimum on the published cases, and its split of GPUs between models,
//! each model's best plan on its share ([`from_relaxation`]), gives a plan near it; the
//! relaxation is solved again with each model's demand scaled by what rounding cost it.
//! [`rebalance`] then gives each model its best plan on the GPUs it has and moves GPUs
//! between models: each round aims a little above the plan, the models above it keep the
//! fewest GPUs that serve the target, and the models below take what is freed (every step a
//! small MILP of one model on a budget of GPUs per class). When no such round gains, a
//! [`swap`] trades a few GPUs of one class for a few of another between the model with the
//! least and one other (both must stay above the least): moves of one model at a time cannot
//! make such exchanges, where rounding leaves a small pool in the wrong model. The joint
//! search gets what time is left.

use std::collections::BTreeMap;

use crate::Inputs;
use crate::columns::{self, Column, ColumnOptions, Dominated};
use crate::error::Result;
use crate::plan::{ClassUse, ModelPlan, PartitionPlan, Pipeline, Pool, pool_gpus};
use crate::solver::{Cmp, Limits, Milp, Solved, Solver, Var};

/// The columns of one model.
#[derive(Clone, Debug)]
pub(crate) struct ModelColumns {
    /// Index of the model in the inputs.
    pub model: usize,
    /// Every SLO-feasible column.
    pub all: Vec<Column>,
    /// Indices (into `all`) of the columns offered to the solver.
    pub kept: Vec<usize>,
    /// For each column of `all`, the kept column that dominates it (None: kept).
    pub dominated: Vec<Option<Dominated>>,
}

impl ModelColumns {
    pub fn new(model: usize, all: Vec<Column>) -> Self {
        let (kept, dominated) = columns::prune(&all);
        ModelColumns { model, all, kept, dominated }
    }
}

/// Pipelines chosen for one model: (index into `all`, vGPUs per partition).
pub(crate) type Choice = Vec<(usize, Vec<usize>)>;

/// A pool: (served model, partition index, class).
type PoolKey = (usize, usize, usize);

/// Where each quantity sits in the model.
struct Layout {
    z: Var,
    /// Per served model, per kept column: X and the n per partition.
    cols: Vec<Vec<(Var, Vec<Var>)>>,
    /// Pools: (served model, partition index, class) -> P.
    pools: BTreeMap<(usize, usize, usize), Var>,
    /// Per served model, its row `z * w_m <= sum_c X_c` (z's term first).
    demand: Vec<usize>,
}

fn build(inputs: &Inputs, served: &[ModelColumns], budget_of: &[u32]) -> (Milp, Layout) {
    let mut m = Milp::default();
    let z = m.continuous(1.0, 0.0, f64::INFINITY);
    let mut cols = vec![];
    let mut demand = vec![];
    // Which (model, d, class) pools are all-whole-GPU (P may stay continuous).
    let mut pool_terms: BTreeMap<PoolKey, (Vec<(Var, f64)>, bool)> = BTreeMap::new();
    for (si, mc) in served.iter().enumerate() {
        let mut row_x = vec![(z, inputs.workload.model[mc.model].weight)];
        let mut per = vec![];
        for &ci in &mc.kept {
            let col = &mc.all[ci];
            let x = m.continuous(0.0, 0.0, f64::INFINITY);
            row_x.push((x, -1.0));
            let mut ns = vec![];
            for (d, p) in col.parts.iter().enumerate() {
                let cap = budget_of[p.class] as f64 * p.share as f64;
                let n = m.integer(0.0, 0.0, cap);
                m.row(vec![(x, 1.0), (n, -p.vgpu_rps)], Cmp::Le, 0.0);
                let e = pool_terms.entry((si, d, p.class)).or_insert((vec![], true));
                e.0.push((n, 1.0 / p.share as f64));
                e.1 &= p.share == 1;
                ns.push(n);
            }
            per.push((x, ns));
        }
        demand.push(m.rows.len());
        m.row(row_x, Cmp::Le, 0.0);
        cols.push(per);
    }
    let mut pools = BTreeMap::new();
    let mut budget: Vec<Vec<(Var, f64)>> = vec![vec![]; budget_of.len()];
    for (key, (terms, whole)) in pool_terms {
        let n = budget_of[key.2] as f64;
        let p = if whole { m.continuous(0.0, 0.0, n) } else { m.integer(0.0, 0.0, n) };
        let mut row = terms;
        row.push((p, -1.0));
        m.row(row, Cmp::Le, 0.0);
        budget[key.2].push((p, 1.0));
        pools.insert(key, p);
    }
    for (c, terms) in budget.into_iter().enumerate() {
        if !terms.is_empty() {
            m.row(terms, Cmp::Le, budget_of[c] as f64);
        }
    }
    (m, Layout { z, cols, pools, demand })
}

/// Reads the chosen pipelines out of a solution.
fn extract(served: &[ModelColumns], layout: &Layout, values: &[f64]) -> Vec<Choice> {
    served
        .iter()
        .zip(&layout.cols)
        .map(|(mc, per)| {
            mc.kept
                .iter()
                .zip(per)
                .filter_map(|(&ci, (_, ns))| {
                    let n: Vec<usize> = ns.iter().map(|v| values[v.0].round().max(0.0) as usize).collect();
                    n.iter().all(|&k| k > 0).then_some((ci, n))
                })
                .collect()
        })
        .collect()
}

/// A full assignment of the model's variables from chosen pipelines (a warm start): each
/// pipeline moves to the kept column that dominates it, its vGPUs scaled.
fn assignment(inputs: &Inputs, served: &[ModelColumns], layout: &Layout, model: &Milp, choices: &[Choice]) -> Vec<f64> {
    let mut v = vec![0.0; model.vars.len()];
    let mut pool_sum: BTreeMap<(usize, usize, usize), f64> = BTreeMap::new();
    let mut z = f64::INFINITY;
    for (si, (mc, choice)) in served.iter().zip(choices).enumerate() {
        let mut total = 0.0;
        for (ci, n) in choice {
            let (target, n): (usize, Vec<usize>) = match &mc.dominated[*ci] {
                None => (*ci, n.clone()),
                Some(d) => (d.by, n.iter().zip(&d.ratio).map(|(a, r)| a * r).collect()),
            };
            let k = mc.kept.iter().position(|&c| c == target).expect("a dominating column is kept");
            let col = &mc.all[target];
            let (x, ns) = &layout.cols[si][k];
            let mut thr = f64::INFINITY;
            for (d, (nv, &cnt)) in ns.iter().zip(&n).enumerate() {
                v[nv.0] += cnt as f64;
                let p = &col.parts[d];
                thr = thr.min(cnt as f64 * p.vgpu_rps);
                *pool_sum.entry((si, d, p.class)).or_default() += cnt as f64 / p.share as f64;
            }
            v[x.0] += thr;
            total += thr;
        }
        z = z.min(total / inputs.workload.model[mc.model].weight);
    }
    for (key, s) in pool_sum {
        if let Some(p) = layout.pools.get(&key) {
            v[p.0] = pool_gpus(s) as f64;
        }
    }
    v[layout.z.0] = if z.is_finite() { z } else { 0.0 };
    v
}

/// The outcome of solving one formulation.
pub(crate) struct Outcome {
    pub choices: Vec<Choice>,
    pub solved: Solved,
    pub integer_vars: usize,
    /// Objective of the LP relaxation (fractional vGPUs and GPUs): an upper bound.
    pub lp_bound: f64,
    /// The search did not beat the warm start, which is returned (its name).
    pub from_warm: Option<String>,
}

/// Maximises z over the columns of `served`; with `fewest_gpus`, then minimises the GPUs
/// used at that z. `warm`: known plans to start from (the best one seeds the search and is
/// returned if the search does not beat it).
pub(crate) fn solve(
    inputs: &Inputs,
    served: &[ModelColumns],
    solver: &dyn Solver,
    limits: &Limits,
    fewest_gpus: bool,
    warm: &[(String, Vec<Choice>)],
    strategy: crate::Search,
) -> Result<Outcome> {
    let counts: Vec<u32> = inputs.fleet.class.iter().map(|c| c.count).collect();
    let (model, layout) = build(inputs, served, &counts);
    let starts: Vec<(String, Vec<f64>)> = warm
        .iter()
        .map(|(name, c)| (name.clone(), assignment(inputs, served, &layout, &model, c)))
        .filter(|(_, v)| model.violation(v, 1e-7).is_none())
        .collect();
    let best_start =
        starts.iter().max_by(|a, b| model.objective_of(&a.1).total_cmp(&model.objective_of(&b.1))).cloned();
    // The time limit counts from here, the LP relaxation included.
    let total = limits.time_limit.unwrap_or(std::time::Duration::from_secs(3600));
    let t0 = std::time::Instant::now();
    // The LP relaxation over each model's efficient columns: the same optimum as over all
    // (with every vGPU and pool fractional, a column no mix of them would use never helps),
    // from a far smaller LP (three partitions: about a tenth of the columns).
    let lean: Vec<ModelColumns> = served.iter().map(efficient).collect();
    let lp =
        solver.solve(&build(inputs, &lean, &counts).0.relaxed(), &Limits { warm_start: None, ..limits.clone() })?;
    let mut l = limits.clone();
    l.warm_start = best_start.as_ref().map(|s| s.1.clone());
    let classes = inputs.fleet.class.len();
    let split = strategy != crate::Search::Joint && !fewest_gpus && classes >= 2 && served.len() > 1;
    if split {
        // A short joint search first: easy cases end here, the others get a good start.
        l.time_limit = Some(total.mul_f64(0.05).min(std::time::Duration::from_millis(300)));
    }
    // The start as a solution of its own (no search yet, bounded by the LP).
    let unsearched = |start: &Vec<f64>| Solved {
        values: start.clone(),
        objective: model.objective_of(start),
        bound: lp.objective,
        gap: f64::INFINITY,
        optimal: false,
        nodes: 0,
        seconds: 0.0,
    };
    let mut solved = match &best_start {
        Some((_, start)) if split && strategy == crate::Search::Split => unsearched(start),
        // A search that found nothing in its time (the solver may refuse a start that sits
        // on its tolerances) still has the start.
        Some((_, start)) => solver.solve(&model, &l).unwrap_or_else(|_| unsearched(start)),
        None => solver.solve(&model, &l)?,
    };
    if split && solved.gap > limits.mip_gap {
        let start = if best_start.as_ref().is_some_and(|b| model.objective_of(&b.1) > solved.objective) {
            best_start.as_ref().map(|b| b.1.clone()).unwrap_or_default()
        } else {
            solved.values.clone()
        };
        let mut start = start;
        // A plan of the fleet as values of the joint model, when it fits it.
        let fitting = |c: &[Choice]| {
            let values = assignment(inputs, served, &layout, &model, c);
            model.violation(&values, 1e-7).is_none().then_some(values)
        };
        // A bound that holds for the fleet, from a relaxation (a pair's split search, the
        // pools relaxation).
        let mut relaxed_bound = f64::INFINITY;
        let mut found: Option<Vec<Choice>> = None;
        // Two classes: one split search, exact. More: first a short split search on the pair
        // of classes the plan uses most, the other classes whole to every model (a
        // relaxation): its bound holds for the fleet, and its plan is the optimum when it fits
        // (when the other classes do not bind).
        let pairs = if classes == 2 {
            vec![[0, 1]]
        } else {
            pairs_by_use(inputs, served, &extract(served, &layout, &start)).into_iter().take(1).collect()
        };
        for pair in pairs {
            // Until when the split search may run, and the fitting after it (fractions of
            // the time limit).
            let (split_end, fit_end) = if classes == 2 { (0.7, 0.75) } else { (0.15, 0.2) };
            let budget = total.mul_f64(split_end).saturating_sub(t0.elapsed());
            if budget.is_zero() {
                break;
            }
            let lim = Limits { time_limit: Some(budget), ..limits.clone() };
            let upper = solved.bound.min(lp.objective).min(relaxed_bound);
            let r = solve_split(inputs, served, solver, &lim, &extract(served, &layout, &start), upper, pair)?;
            // Out of time: what is left goes to the joint search.
            let Some((choices, nodes, hi)) = r else { break };
            relaxed_bound = relaxed_bound.min(hi);
            solved.nodes += nodes;
            if fits(inputs, served, &choices) {
                found = Some(choices);
                break;
            }
            // The best plan known already reaches the bound.
            if rel_gap(relaxed_bound, model.objective_of(&start)) <= limits.mip_gap.max(1e-9) {
                found = Some(extract(served, &layout, &start));
                break;
            }
            // The relaxation bounds nothing below what was known (every class binds) and the
            // best plan is far below it: fitting a plan at that bound, or another pair, would
            // fare no better, and the time goes to finding plans.
            if hi >= upper * (1.0 - 1e-9) && rel_gap(hi, model.objective_of(&start)) > 0.01 {
                break;
            }
            // Each model's plan took the other classes as if it had them all: keep its
            // throughput and the pair's GPUs it was given, and use as few of the others as
            // it can; failing that, the best plan of the models together with that split of
            // the pair's GPUs.
            let deadline = t0 + total.mul_f64(fit_end);
            if let Some(c) =
                shrink(inputs, served, solver, &choices, pair, deadline).filter(|c| fits(inputs, served, c))
            {
                found = Some(c);
                break;
            }
            let target = relaxed_bound / (1.0 + limits.mip_gap);
            if let Some(c) = fit_jointly(inputs, served, solver, &choices, pair, target, deadline) {
                found = Some(c);
                break;
            }
        }
        if found.is_none() && classes > 2 {
            // The pools relaxation bounds the optimum within 1% on the published cases, and
            // its split of GPUs between models gives a plan near it.
            let until = t0 + total.mul_f64(POOLS_END);
            let known = extract(served, &layout, &start);
            if let Some((hi, c)) = pools_plan(inputs, served, &lean, solver, &known, limits, until) {
                relaxed_bound = relaxed_bound.min(hi);
                if let Some(values) = fitting(&c).filter(|v| model.objective_of(v) > model.objective_of(&start)) {
                    start = values;
                }
            }
            if rel_gap(relaxed_bound, model.objective_of(&start)) <= limits.mip_gap.max(1e-9) {
                found = Some(extract(served, &layout, &start));
            }
        }
        if let Some(choices) = found {
            let values = assignment(inputs, served, &layout, &model, &choices);
            let objective = model.objective_of(&values);
            let hi = relaxed_bound.max(objective);
            let gap = rel_gap(hi, objective);
            let optimal = gap <= 1e-8;
            let solved = Solved {
                values,
                objective,
                bound: hi,
                gap: if optimal { 0.0 } else { gap },
                optimal,
                nodes: solved.nodes,
                seconds: t0.elapsed().as_secs_f64() + lp.seconds,
            };
            return Ok(Outcome {
                choices,
                solved,
                integer_vars: model.integers(),
                lp_bound: lp.objective,
                from_warm: None,
            });
        }
        solved.bound = solved.bound.min(relaxed_bound);
        if solved.objective > 0.0 {
            solved.gap = rel_gap(solved.bound, solved.objective);
        }
        // Not proven in time (nor by a split's bound). More than two classes: moving GPUs
        // between models ([`rebalance`]) polishes the best plan, until it stops finding
        // better ones. Then the joint search again with what is left, from the best plan
        // (small fleets are proven there).
        if classes > 2 {
            let from = if model.objective_of(&start) > solved.objective { &start } else { &solved.values };
            let hi = solved.bound.min(relaxed_bound);
            let better = rebalance(
                inputs,
                served,
                &lean,
                solver,
                &extract(served, &layout, from),
                limits.mip_gap,
                hi,
                t0 + total,
            );
            if let Some(values) = fitting(&better).filter(|v| model.objective_of(v) >= model.objective_of(&start)) {
                start = values;
            }
            if model.objective_of(&start) > solved.objective {
                solved.values = start.clone();
                solved.objective = model.objective_of(&start);
                solved.gap = rel_gap(solved.bound, solved.objective);
            }
        }
        let left = total.saturating_sub(t0.elapsed());
        if solved.gap > limits.mip_gap && !left.is_zero() {
            let lim = Limits { time_limit: Some(left), warm_start: Some(start.clone()), ..limits.clone() };
            if let Ok(again) = solver.solve(&model, &lim)
                && again.objective >= solved.objective
            {
                let nodes = solved.nodes + again.nodes;
                solved = again;
                solved.nodes = nodes;
            }
        }
        // A split's bound holds whatever the joint search found.
        if relaxed_bound < solved.bound {
            solved.bound = relaxed_bound.max(solved.objective);
            solved.gap = rel_gap(solved.bound, solved.objective);
        }
        solved.optimal |= solved.gap <= 1e-8;
        solved.seconds = t0.elapsed().as_secs_f64();
    }
    let mut choices = extract(served, &layout, &solved.values);
    let mut from_warm = None;
    if let Some((name, start)) = &best_start {
        let s_obj = model.objective_of(start);
        if s_obj > solved.objective + 1e-9 * (1.0 + s_obj) {
            // The search ended (time limit) below its own start: keep the start.
            choices = extract(served, &layout, start);
            solved.values = start.clone();
            solved.objective = s_obj;
            solved.gap = if s_obj > 0.0 { ((solved.bound - s_obj) / s_obj).max(0.0) } else { solved.gap };
            from_warm = Some(name.clone());
        }
    }
    if fewest_gpus && solved.objective > 0.0 {
        let m2 = fewest(&model, &layout, |_| 1.0, solved.objective * (1.0 - 1e-9));
        let mut l2 = limits.clone();
        l2.mip_gap = 0.0;
        l2.warm_start = Some(solved.values.clone());
        if let Ok(s2) = solver.solve(&m2, &l2) {
            // Same z, fewest GPUs.
            choices = extract(served, &layout, &s2.values);
            solved.nodes += s2.nodes;
            solved.seconds += s2.seconds;
        }
    }
    solved.bound = solved.bound.min(lp.objective);
    Ok(Outcome { choices, solved, integer_vars: model.integers(), lp_bound: lp.objective, from_warm })
}

/// Turns chosen pipelines into model plans: vGPUs beyond what each pipeline's slowest
/// partition can use are trimmed ([`trim`]), pools counted, throughputs computed.
pub(crate) fn model_plans(
    inputs: &Inputs,
    served: &[ModelColumns],
    choices: &[Choice],
    est: &[f64],
    o: &ColumnOptions,
) -> (Vec<ModelPlan>, Vec<ClassUse>) {
    let fleet = &inputs.fleet;
    let mut used = vec![0u32; fleet.class.len()];
    let mut out = vec![];
    for (mc, choice) in served.iter().zip(choices) {
        let i = mc.model;
        let (slo, source) = inputs.slos[i];
        let w = &inputs.workload.model[i];
        let choice = trim(mc, choice.clone());
        let mut pipelines = vec![];
        for (ci, n) in &choice {
            let col = &mc.all[*ci];
            let parts: Vec<PartitionPlan> = col
                .parts
                .iter()
                .zip(n)
                .map(|(p, &vg)| PartitionPlan {
                    first_block: p.first,
                    end_block: p.end,
                    class: fleet.class[p.class].name.clone(),
                    share: p.share,
                    batch: col.batch,
                    vgpus: vg,
                    gpus: vg as f64 / p.share as f64,
                    inference_us: p.infer_us,
                    transfer_us: p.transfer_us,
                    vgpu_throughput: p.vgpu_rps,
                    throughput: vg as f64 * p.vgpu_rps,
                })
                .collect();
            let throughput = parts.iter().map(|p| p.throughput).fold(f64::INFINITY, f64::min);
            let build = columns::batch_build_us(col.batch, Some(est[i]), o.batch_build_factor);
            pipelines.push(Pipeline {
                batch: col.batch,
                throughput,
                latency_us: col.latency_us,
                batch_build_us: build,
                margin_us: (o.margin * slo as f64).round(),
                partitions: parts,
            });
        }
        let pools: Vec<Pool> = pools(mc, &choice)
            .into_iter()
            .map(|((d, c), gpus)| {
                used[c] += gpus;
                Pool { partition: d, class: fleet.class[c].name.clone(), gpus }
            })
            .collect();
        out.push(ModelPlan {
            name: w.name.clone(),
            weight: w.weight,
            slo_us: slo,
            slo_source: source,
            est_xput: est[i],
            throughput: pipelines.iter().map(|p| p.throughput).sum(),
            pipelines,
            pools,
        });
    }
    let classes = fleet
        .class
        .iter()
        .zip(&used)
        .map(|(c, &u)| ClassUse { name: c.name.clone(), available: c.count, used: u })
        .collect();
    (out, classes)
}

/// What is known of one model's best throughput on an allotment of GPUs.
#[derive(Clone, Debug, Default)]
struct Known {
    /// The best plan known on this allotment (a lower bound) and its throughput.
    plan: Option<(f64, Choice)>,
    /// An upper bound (the LP relaxation).
    upper: Option<f64>,
}

/// The exact search over GPU splits between models for two-class fleets (see
/// [`solve_split`]).
struct SplitSearch<'a> {
    inputs: &'a Inputs,
    served: &'a [ModelColumns],
    solver: &'a dyn Solver,
    /// The two classes split between models; every other class is left whole to each model
    /// (a relaxation: its bounds hold for the fleet).
    pair: [usize; 2],
    limits: Limits,
    deadline: std::time::Instant,
    memo: Vec<BTreeMap<(u32, u32), Known>>,
    nodes: u64,
}

/// Out of time or a sub-problem not proven: the caller falls back to the joint MILP.
struct GiveUp;

impl SplitSearch<'_> {
    fn model_milp(&self, m: usize, h: u32, l: u32) -> (Milp, Layout) {
        let mut budget: Vec<u32> = self.inputs.fleet.class.iter().map(|c| c.count).collect();
        budget[self.pair[0]] = h;
        budget[self.pair[1]] = l;
        build(self.inputs, std::slice::from_ref(&self.served[m]), &budget)
    }

    /// Solves model m alone on (h, l) within a relative gap: records the plan found (a lower
    /// bound on F_m on every allotment between what it uses and (h, l)) and the proven upper
    /// bound.
    fn bound(&mut self, m: usize, h: u32, l: u32, gap: f64) -> std::result::Result<(), GiveUp> {
        if std::time::Instant::now() > self.deadline {
            return Err(GiveUp);
        }
        let (model, layout) = self.model_milp(m, h, l);
        let left = self.deadline.saturating_duration_since(std::time::Instant::now());
        let lim = Limits { time_limit: Some(left), mip_gap: gap, warm_start: None };
        let s = self.solver.solve(&model, &lim).map_err(|_| GiveUp)?;
        self.nodes += s.nodes;
        let w = self.inputs.workload.model[self.served[m].model].weight;
        let choice =
            trim(&self.served[m], extract(std::slice::from_ref(&self.served[m]), &layout, &s.values).remove(0));
        let f = capacity(&self.served[m], &choice);
        let upper = if s.optimal { f } else { (s.bound * w).max(f) };
        let all = usage(&self.served[m], &choice, self.inputs.fleet.class.len());
        let used = (all[self.pair[0]], all[self.pair[1]]);
        for key in [(h, l), used] {
            let e = self.memo[m].entry(key).or_default();
            if e.plan.as_ref().is_none_or(|x| x.0 < f) {
                e.plan = Some((f, choice.clone()));
            }
        }
        let e = self.memo[m].entry((h, l)).or_default();
        e.upper = Some(e.upper.map_or(upper, |u| u.min(upper)));
        Ok(())
    }

    fn upper(&mut self, m: usize, h: u32, l: u32) -> std::result::Result<f64, GiveUp> {
        if let Some(u) = self.memo[m].get(&(h, l)).and_then(|k| k.upper) {
            return Ok(u);
        }
        let (model, _) = self.model_milp(m, h, l);
        let s = self
            .solver
            .solve(&model.relaxed(), &Limits { warm_start: None, ..self.limits.clone() })
            .map_err(|_| GiveUp)?;
        let u = s.objective * self.inputs.workload.model[self.served[m].model].weight;
        let e = self.memo[m].entry((h, l)).or_default();
        e.upper = Some(e.upper.map_or(u, |x| x.min(u)));
        Ok(e.upper.unwrap_or(u))
    }

    /// Whether model m serves more than `tau` on (h, l): Some(allotment of a proven plan
    /// within (h, l) that does) or None.
    fn above(&mut self, m: usize, h: u32, l: u32, tau: f64) -> std::result::Result<Option<(u32, u32)>, GiveUp> {
        // Monotonicity: a proven plan on fewer GPUs, or a bound on more.
        for (&(a, b), k) in &self.memo[m] {
            if a <= h
                && b <= l
                && let Some((f, _)) = &k.plan
                && *f > tau
            {
                return Ok(Some((a, b)));
            }
            if a >= h && b >= l && k.upper.is_some_and(|u| u <= tau) {
                return Ok(None);
            }
        }
        if self.upper(m, h, l)? <= tau {
            return Ok(None);
        }
        // A search within 1%, then an exact one when that does not decide.
        for gap in [0.01, 0.0] {
            self.bound(m, h, l, gap)?;
            let k = &self.memo[m][&(h, l)];
            if k.plan.as_ref().is_some_and(|e| e.0 > tau) {
                return Ok(Some((h, l)));
            }
            if k.upper.is_some_and(|u| u <= tau) {
                return Ok(None);
            }
        }
        Err(GiveUp)
    }

    /// For each h, the fewest GPUs of class 1 with which model m serves more than `tau`, as
    /// the allotment of a proven plan that does it.
    fn staircase(&mut self, m: usize, tau: f64) -> std::result::Result<Vec<(u32, u32)>, GiveUp> {
        let class = &self.inputs.fleet.class;
        let (n0, n1) = (class[self.pair[0]].count, class[self.pair[1]].count);
        let mut out: Vec<(u32, u32)> = vec![];
        let mut l = n1;
        for h in 0..=n0 {
            let Some(mut w) = self.above(m, h, l, tau)? else { continue };
            // Binary search on l: `hi` serves more than tau (witness w fits in (h, hi)),
            // `lo` does not (or is -1).
            let mut hi = w.1;
            let mut lo: i64 = -1;
            while hi as i64 - lo > 1 {
                let mid = ((lo + hi as i64) / 2) as u32;
                match self.above(m, h, mid, tau)? {
                    Some(w2) => {
                        w = w2;
                        hi = w2.1.min(mid);
                    }
                    None => lo = mid as i64,
                }
            }
            l = hi;
            if out.last() != Some(&w) {
                out.push(w);
            }
            if l == 0 {
                break;
            }
        }
        Ok(out)
    }
}

/// Drops vGPUs a pipeline's slowest partition cannot use.
fn trim(mc: &ModelColumns, choice: Choice) -> Choice {
    choice
        .into_iter()
        .map(|(ci, n)| {
            let parts = &mc.all[ci].parts;
            let thr = parts.iter().zip(&n).map(|(p, &k)| k as f64 * p.vgpu_rps).fold(f64::INFINITY, f64::min);
            let n = parts
                .iter()
                .zip(&n)
                .map(|(p, &k)| (((thr / p.vgpu_rps) - 1e-9).ceil().max(1.0) as usize).min(k))
                .collect();
            (ci, n)
        })
        .collect()
}

/// Whole GPUs per (partition index, class) pool of a model's pipelines (rounded up).
fn pools(mc: &ModelColumns, choice: &Choice) -> BTreeMap<(usize, usize), u32> {
    let mut sum: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for (ci, n) in choice {
        for (d, (p, &k)) in mc.all[*ci].parts.iter().zip(n).enumerate() {
            *sum.entry((d, p.class)).or_default() += k as f64 / p.share as f64;
        }
    }
    sum.into_iter().map(|(key, g)| (key, pool_gpus(g))).collect()
}

/// GPUs of each of `classes` classes a model's pipelines use.
fn usage(mc: &ModelColumns, choice: &Choice, classes: usize) -> Vec<u32> {
    let mut u = vec![0; classes];
    for ((_, c), g) in pools(mc, choice) {
        u[c] += g;
    }
    u
}

/// The same throughput per model from the same GPUs of `pair`, with as few GPUs of the other
/// classes as each model alone can (each class weighted by its scarcity). None when out of
/// time or a model's search fails.
fn shrink(
    inputs: &Inputs,
    served: &[ModelColumns],
    solver: &dyn Solver,
    choices: &[Choice],
    pair: [usize; 2],
    deadline: std::time::Instant,
) -> Option<Vec<Choice>> {
    let k = inputs.fleet.class.len();
    let mut out = vec![];
    for (mc, choice) in served.iter().zip(choices) {
        let used = usage(mc, choice, k);
        let mut budget: Vec<u32> = inputs.fleet.class.iter().map(|c| c.count).collect();
        for &c in &pair {
            budget[c] = used[c];
        }
        let one = std::slice::from_ref(mc);
        let (model, layout) = build(inputs, one, &budget);
        let w = inputs.workload.model[mc.model].weight;
        let target = capacity(mc, choice) / w;
        let scarcity = |c: usize| if pair.contains(&c) { 0.0 } else { 1.0 / inputs.fleet.class[c].count.max(1) as f64 };
        let model = fewest(&model, &layout, scarcity, target * (1.0 - 1e-9));
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        let s = solver.solve(&model, &Limits { time_limit: Some(left), mip_gap: 0.0, warm_start: None }).ok()?;
        let c = trim(mc, extract(one, &layout, &s.values).remove(0));
        // Never below the throughput it had.
        out.push(if capacity(mc, &c) + 1e-9 >= capacity(mc, choice) { c } else { choice.clone() });
    }
    Some(out)
}

/// A plan of the fleet at `target` (z) or above with each model held to the GPUs of `pair`
/// that `choices` give it (the joint MILP with those budgets per model, the other classes
/// shared). None when there is none with that split or time runs out.
fn fit_jointly(
    inputs: &Inputs,
    served: &[ModelColumns],
    solver: &dyn Solver,
    choices: &[Choice],
    pair: [usize; 2],
    target: f64,
    deadline: std::time::Instant,
) -> Option<Vec<Choice>> {
    let k = inputs.fleet.class.len();
    let counts: Vec<u32> = inputs.fleet.class.iter().map(|c| c.count).collect();
    let (mut model, layout) = build(inputs, served, &counts);
    for (si, (mc, choice)) in served.iter().zip(choices).enumerate() {
        let used = usage(mc, choice, k);
        for &g in &pair {
            let terms: Vec<(Var, f64)> =
                layout.pools.iter().filter(|((m, _, c), _)| *m == si && *c == g).map(|(_, &v)| (v, 1.0)).collect();
            if !terms.is_empty() {
                model.row(terms, Cmp::Le, used[g] as f64);
            }
        }
    }
    model.row(vec![(layout.z, 1.0)], Cmp::Ge, target * (1.0 - 1e-9));
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
        return None;
    }
    let s = solver.solve(&model, &Limits { time_limit: Some(left), mip_gap: 1e-6, warm_start: None }).ok()?;
    let out: Vec<Choice> = served.iter().zip(extract(served, &layout, &s.values)).map(|(mc, c)| trim(mc, c)).collect();
    fits(inputs, served, &out).then_some(out)
}

/// Moves GPUs between models to raise the least throughput per weight. First each model
/// gets its best plan on the GPUs it has (a short search). Then each round aims at a
/// target a little above the plan's, lets every model above it keep the fewest GPUs that
/// still serve the target (the scarcest classes given back first), and gives what they
/// free to the models below it, each taking the fewest GPUs that serve the target. A round
/// that reaches the target doubles the step; one that fails halves it; the target is never
/// above halfway to `bound` (a known upper bound on z, seldom reached). When the step falls
/// below `tol`, a trade between two models ([`swap`]) is tried once per plan, and a trade
/// found starts the steps again. Plans of one model on a budget are small MILPs (in the steps,
/// over its [`efficient`] columns, `efficient_cols`, and its plan's: searches that finish
/// sooner); the search ends at `deadline`, when the step is below `tol` and no trade is
/// found, or when the plan is within `tol` of `bound`. Returns the best plan found (never
/// below `choices`).
#[allow(clippy::too_many_arguments)]
fn rebalance(
    inputs: &Inputs,
    served: &[ModelColumns],
    efficient_cols: &[ModelColumns],
    solver: &dyn Solver,
    choices: &[Choice],
    tol: f64,
    bound: f64,
    deadline: std::time::Instant,
) -> Vec<Choice> {
    let k = inputs.fleet.class.len();
    let counts: Vec<u32> = inputs.fleet.class.iter().map(|c| c.count).collect();
    let w: Vec<f64> = served.iter().map(|mc| inputs.workload.model[mc.model].weight).collect();
    let zs = |c: &[Choice]| per_weight(inputs, served, c);
    let mut cur: Vec<Choice> = served.iter().zip(choices).map(|(mc, c)| trim(mc, c.clone())).collect();
    if served.is_empty() || !fits(inputs, served, &cur) {
        return choices.to_vec();
    }
    // First each model's best plan on the GPUs it has (a search from the wider columns may
    // serve more from them than the plan it started from).
    for (m, mc) in served.iter().enumerate() {
        let (model, layout) = build(inputs, std::slice::from_ref(mc), &usage(mc, &cur[m], k));
        if let Some(c) = most(inputs, mc, solver, (&model, &layout), Some(&cur[m]), cap(3 * CHEAPEST_MS, deadline))
            && capacity(mc, &c) > capacity(mc, &cur[m])
        {
            cur[m] = c;
        }
    }
    let mut z = least(&zs(&cur));
    // Scarcity: a GPU of a small class costs more.
    let scarce: Vec<f64> = counts.iter().map(|&n| 1.0 / n.max(1) as f64).collect();
    let mut delta: f64 = 0.01;
    let mut swapped_at = None;
    while delta >= tol.max(1e-5) && std::time::Instant::now() < deadline && rel_gap(bound, z) > tol {
        // The rounds search each model's efficient columns and those of its plan (small
        // searches that finish); trades then widen to every column.
        let lean = with_plan(efficient_cols, &cur);
        // Never aim above halfway to the bound (seldom reached).
        let tau = if z > 0.0 { z * (1.0 + delta.min(rel_gap(bound, z) / 2.0)) } else { 1.0 };
        let now = zs(&cur);
        // What one more GPU of each class is worth to the models below the target (their LP
        // relaxations): the others give those back first.
        let mut worth = vec![0.0; k];
        for (m, _) in now.iter().enumerate().filter(|(_, z)| **z < tau) {
            let had = usage(&served[m], &cur[m], k);
            for (g, v) in marginal(inputs, &lean[m], solver, &had, deadline).into_iter().enumerate() {
                worth[g] += v / w[m];
            }
        }
        let mut costs = vec![];
        if worth.iter().any(|&v| v > 1e-9) {
            costs.push(worth.iter().zip(&scarce).map(|(v, s)| v + 1e-3 * s).collect::<Vec<f64>>());
        }
        costs.push(scarce.clone());
        let mut moved = false;
        for cost in &costs {
            let Some(next) = shift(inputs, &lean, solver, &cur, &now, tau, cost, deadline) else { continue };
            let z2 = least(&zs(&next));
            if z2 > z && fits(inputs, served, &next) {
                cur = next;
                z = z2;
                moved = true;
                break;
            }
        }
        delta = if moved { (delta * 2.0).min(0.05) } else { delta / 2.0 };
        if delta < tol.max(1e-5) && swapped_at != Some(z) {
            // No move of one model at a time serves more: a trade between two models, and
            // after one the steps again.
            swapped_at = Some(z);
            let limit = std::time::Duration::from_millis(CHEAPEST_MS / 2);
            if let Some(next) = swap(inputs, served, solver, &lean, &cur, limit, deadline)
                && least(&zs(&next)) > z
                && fits(inputs, served, &next)
            {
                cur = next;
                z = least(&zs(&cur));
                delta = 0.01;
            }
        }
    }
    cur
}

/// Each model's [`efficient`] columns (`efficient_cols`) and the kept columns its plan in
/// `choices` uses (a dropped column by the kept one that dominates it, which is where a warm
/// start puts it).
fn with_plan(efficient_cols: &[ModelColumns], choices: &[Choice]) -> Vec<ModelColumns> {
    efficient_cols
        .iter()
        .zip(choices)
        .map(|(e, c)| {
            let mut lean = e.clone();
            lean.kept.extend(c.iter().map(|(ci, _)| e.dominated[*ci].as_ref().map_or(*ci, |d| d.by)));
            lean.kept.sort_unstable();
            lean.kept.dedup();
            lean
        })
        .collect()
}

/// GPUs traded in [`swap`]: (given, taken), the smallest first.
const TRADES: [(u32, u32); 9] = [(1, 1), (2, 2), (1, 2), (2, 1), (3, 3), (1, 3), (3, 1), (2, 3), (3, 2)];

/// A trade between two models that raises the least throughput per weight: the model with
/// the least gives `i` GPUs of one class to another model and takes `j` of another class from
/// it ([`TRADES`]), each then with its best plan on its new GPUs (a search of at most `limit`
/// over its columns in `lean`, then one over all its columns from that plan). Tried from
/// the smallest trades, the classes of the model's smallest pools given first (rounding loses
/// most there) and those its LP relaxation values most taken first. Returns the first trade
/// that leaves both models above the least; None when none is found before `deadline`.
fn swap(
    inputs: &Inputs,
    served: &[ModelColumns],
    solver: &dyn Solver,
    lean: &[ModelColumns],
    cur: &[Choice],
    limit: std::time::Duration,
    deadline: std::time::Instant,
) -> Option<Vec<Choice>> {
    let k = inputs.fleet.class.len();
    let zs = per_weight(inputs, served, cur);
    let b = (0..served.len()).min_by(|&x, &y| zs[x].total_cmp(&zs[y]))?;
    let z = zs[b];
    let w = |m: usize| inputs.workload.model[served[m].model].weight;
    let used: Vec<Vec<u32>> = served.iter().zip(cur).map(|(mc, c)| usage(mc, c, k)).collect();
    let mut memo: BTreeMap<(usize, Vec<u32>), Option<Choice>> = BTreeMap::new();
    let mut best_on = |m: usize, budget: Vec<u32>| {
        memo.entry((m, budget))
            .or_insert_with_key(|(m, budget)| {
                // First on the efficient columns (a small search that finishes), then on all
                // of them from that plan.
                let limit = || {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    Some(left.min(limit)).filter(|l| !l.is_zero())
                };
                let (model, layout) = build(inputs, std::slice::from_ref(&lean[*m]), budget);
                let small = most(inputs, &lean[*m], solver, (&model, &layout), None, limit());
                let (model, layout) = build(inputs, std::slice::from_ref(&served[*m]), budget);
                let wide = most(inputs, &served[*m], solver, (&model, &layout), small.as_ref(), limit());
                [small, wide]
                    .into_iter()
                    .flatten()
                    .max_by(|a, b| capacity(&served[*m], a).total_cmp(&capacity(&served[*m], b)))
            })
            .clone()
    };
    let worth = marginal(inputs, &served[b], solver, &used[b], deadline);
    let mut give: Vec<usize> = (0..k).filter(|&g| used[b][g] > 0).collect();
    give.sort_by_key(|&g| used[b][g]);
    let mut take: Vec<usize> = (0..k).collect();
    take.sort_by(|&x, &y| worth[y].total_cmp(&worth[x]));
    // Partners with the most to spare first.
    let mut partners: Vec<usize> = (0..served.len()).filter(|&a| a != b).collect();
    partners.sort_by(|&x, &y| zs[y].total_cmp(&zs[x]));
    for (i, j) in TRADES {
        for &g in give.iter().filter(|&&g| used[b][g] >= i) {
            for &h in take.iter().filter(|&&h| h != g) {
                if std::time::Instant::now() >= deadline {
                    return None;
                }
                let with: Vec<usize> = partners.iter().copied().filter(|&a| used[a][h] >= j).collect();
                if with.is_empty() {
                    continue;
                }
                let mut budget = used[b].clone();
                budget[g] -= i;
                budget[h] += j;
                let Some(pb) = best_on(b, budget) else { continue };
                if capacity(&served[b], &pb) / w(b) <= z * (1.0 + 1e-9) {
                    continue;
                }
                for a in with {
                    let mut budget = used[a].clone();
                    budget[h] -= j;
                    budget[g] += i;
                    let Some(pa) = best_on(a, budget) else { continue };
                    if capacity(&served[a], &pa) / w(a) > z * (1.0 + 1e-9) {
                        let mut next = cur.to_vec();
                        next[a] = pa;
                        next[b] = pb;
                        return Some(next);
                    }
                }
            }
        }
    }
    None
}

/// One round of [`rebalance`]: every model keeps or takes the GPUs that serve `tau` with the
/// least `cost`, the models at or above it first. None when a model below cannot reach it.
#[allow(clippy::too_many_arguments)]
fn shift(
    inputs: &Inputs,
    served: &[ModelColumns],
    solver: &dyn Solver,
    cur: &[Choice],
    now: &[f64],
    tau: f64,
    cost: &[f64],
    deadline: std::time::Instant,
) -> Option<Vec<Choice>> {
    let k = inputs.fleet.class.len();
    let counts = inputs.fleet.class.iter().map(|c| c.count);
    let mut spare: Vec<i64> = counts.zip(used_by(inputs, served, cur)).map(|(n, u)| n as i64 - u as i64).collect();
    let mut next = cur.to_vec();
    let mut order: Vec<usize> = (0..served.len()).collect();
    order.sort_by(|&a, &b| (now[a] < tau).cmp(&(now[b] < tau)).then(now[a].total_cmp(&now[b])));
    for m in order {
        let had = usage(&served[m], &cur[m], k);
        let budget: Vec<u32> = had.iter().zip(&spare).map(|(&h, &s)| (h as i64 + s.max(0)).max(0) as u32).collect();
        let c = cheapest(inputs, &served[m], solver, &budget, tau, cost, Some(&cur[m]), deadline)?;
        for ((s, h), u) in spare.iter_mut().zip(&had).zip(usage(&served[m], &c, k)) {
            *s += *h as i64 - u as i64;
        }
        next[m] = c;
    }
    Some(next)
}

/// What one more GPU of each class adds to model `mc`'s LP relaxation on `budget` (0 for
/// what `deadline` leaves no time to solve).
fn marginal(
    inputs: &Inputs,
    mc: &ModelColumns,
    solver: &dyn Solver,
    budget: &[u32],
    deadline: std::time::Instant,
) -> Vec<f64> {
    let one = std::slice::from_ref(mc);
    let value = |b: &[u32]| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return 0.0;
        }
        let (model, _) = build(inputs, one, b);
        let lim = Limits { time_limit: Some(left), ..Limits::default() };
        solver.solve(&model.relaxed(), &lim).map_or(0.0, |s| s.objective)
    };
    let base = value(budget);
    (0..budget.len())
        .map(|g| {
            let mut b = budget.to_vec();
            b[g] += 1;
            (value(&b) - base).max(0.0)
        })
        .collect()
}

/// A plan from a relaxation's split of GPUs between models (`values` of the joint model of
/// `relaxed`'s columns laid out by `layout`): each model's GPUs of each class rounded down,
/// then the best plan of each model alone on them: first from the columns the relaxation uses
/// (a small search), then a short search over all its columns from that plan when time is
/// left. None when a model's search finds nothing or time runs out.
fn from_relaxation(
    inputs: &Inputs,
    served: &[ModelColumns],
    solver: &dyn Solver,
    (relaxed, layout, values): (&[ModelColumns], &Layout, &[f64]),
    deadline: std::time::Instant,
) -> Option<Vec<Choice>> {
    let mut out = vec![];
    for (m, (mc, budget)) in served.iter().zip(split_of(inputs, layout, values, served.len())).enumerate() {
        let used: Vec<usize> = relaxed[m]
            .kept
            .iter()
            .zip(&layout.cols[m])
            .filter(|(_, (x, _))| values[x.0] > 1e-6)
            .map(|(&ci, _)| ci)
            .collect();
        let support = ModelColumns { kept: used, ..mc.clone() };
        let (model, one) = build(inputs, std::slice::from_ref(&support), &budget);
        // Small enough to run even at the deadline.
        let limit = cap(2 * CHEAPEST_MS, deadline).unwrap_or(std::time::Duration::from_millis(50));
        let small = most(inputs, &support, solver, (&model, &one), None, Some(limit));
        let (model, one) = build(inputs, std::slice::from_ref(&relaxed[m]), &budget);
        let lean = most(inputs, &relaxed[m], solver, (&model, &one), small.as_ref(), cap(3 * CHEAPEST_MS, deadline));
        let lean = lean.or(small);
        let (model, one) = build(inputs, std::slice::from_ref(mc), &budget);
        let all = most(inputs, mc, solver, (&model, &one), lean.as_ref(), cap(3 * CHEAPEST_MS, deadline));
        out.push(all.or(lean)?);
    }
    fits(inputs, served, &out).then_some(out)
}

/// Until when the pools relaxation and the plans from its split may run (a fraction of the
/// time limit), with more than two classes. (At 0.7, with seven tenths of that for the
/// relaxation's search, mc3-group2 at three partitions was proven on one 2-core machine and
/// not on a slower one: its search needs about 4.6 s there.)
const POOLS_END: f64 = 0.75;

/// How many times [`pools_plan`] solves the pools relaxation again with each model's demand
/// scaled by what rounding cost it.
const REWEIGHTS: usize = 3;

/// The pools relaxation of the joint model: every pool's GPUs an integer, every pipeline's
/// vGPUs fractional. Its optimum bounds the fleet's: a pool of whole GPUs cannot take 2.4 of
/// them, which is most of what the LP relaxation gains. It is a small search, as only the
/// pools branch, and once vGPUs are fractional a column that needs at least as many GPUs per
/// request of every pool as another, or as a mix of two others, never helps ([`efficient`]).
///
/// Returns its bound and a plan: each model's best plan on the GPUs the relaxation's split
/// gives it ([`from_relaxation`]). Rounding costs each model a different share of its
/// throughput, so the relaxation is solved again with each model's demand scaled up by what
/// rounding cost it, up to [`REWEIGHTS`] times; the best plan is then polished by
/// [`rebalance`] until `deadline`. Returns `start` when no plan beats it, None when the
/// relaxation finds nothing in time.
fn pools_plan(
    inputs: &Inputs,
    served: &[ModelColumns],
    efficient_cols: &[ModelColumns],
    solver: &dyn Solver,
    start: &[Choice],
    limits: &Limits,
    deadline: std::time::Instant,
) -> Option<(f64, Vec<Choice>)> {
    // The efficient columns (`efficient_cols`, each model's [`efficient`] ones) and those of
    // the start (a plan of the fleet, so a point of the relaxation whose objective prunes its
    // search from the first node).
    let lean = with_plan(efficient_cols, start);
    let (mut relaxed, layout) = pools_relaxation(inputs, &lean);
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    if left().is_zero() {
        return None;
    }
    // Nine tenths of the time for the bound (a search that stops short proves nothing, and
    // the plans from its split are short searches; `rebalance` comes after), the rest for
    // plans. The bound is searched to a tenth of a percent at least whatever the target: it
    // is what proves the plan, so a looser one (a 1% target) would leave a plan within 1% of
    // its optimum unproven.
    let lim = |share: f64| Limits {
        time_limit: Some(left().mul_f64(share)),
        mip_gap: limits.mip_gap.min(1e-3),
        warm_start: None,
    };
    let warm = assignment(inputs, &lean, &layout, &relaxed, start);
    let first = Limits { warm_start: relaxed.violation(&warm, 1e-7).is_none().then_some(warm), ..lim(0.9) };
    let s = solver.solve(&relaxed, &first).ok()?;
    let bound = s.bound;
    let proven = |c: &[Choice]| rel_gap(bound, least(&per_weight(inputs, served, c))) <= limits.mip_gap.max(1e-9);
    let mut best = start.to_vec();
    // A search that did not finish may have found no point beyond the start, whose split
    // would give the start again: the splits then come from its LP relaxation (every pool
    // fractional), and so do the re-solves.
    let stale = !s.optimal && s.objective <= least(&per_weight(inputs, served, start)) * (1.0 + 1e-9);
    let resolve = |m: &Milp, share: f64| {
        if stale { solver.solve(&m.relaxed(), &lim(share)) } else { solver.solve(m, &lim(share)) }
    };
    let mut values = if stale { resolve(&relaxed, 0.2).map(|lp| lp.values).unwrap_or(s.values) } else { s.values };
    let mut seen = vec![];
    for round in 0..=REWEIGHTS {
        if proven(&best) || (round > 0 && left().is_zero()) {
            break;
        }
        let split = split_of(inputs, &layout, &values, served.len());
        if seen.contains(&split) {
            break;
        }
        seen.push(split);
        let Some(c) = from_relaxation(inputs, served, solver, (&lean, &layout, &values), deadline) else { break };
        let got = per_weight(inputs, served, &c);
        if least(&got) > least(&per_weight(inputs, served, &best)) {
            best = c;
        }
        if round == REWEIGHTS {
            break;
        }
        // Each model's demand scaled by what rounding its share cost it.
        for (m, mc) in lean.iter().enumerate() {
            let w = inputs.workload.model[mc.model].weight;
            let relaxed_z = layout.cols[m].iter().map(|(x, _)| values[x.0]).sum::<f64>() / w;
            let kept = if relaxed_z > 0.0 { (got[m] / relaxed_z).clamp(0.5, 1.0) } else { 1.0 };
            relaxed.rows[layout.demand[m]].terms[0].1 = w / kept;
        }
        let Ok(again) = resolve(&relaxed, 0.25) else { break };
        values = again.values;
    }
    let plan = if proven(&best) {
        best
    } else {
        rebalance(inputs, served, efficient_cols, solver, &best, limits.mip_gap, bound, deadline)
    };
    Some((bound, plan))
}

/// The joint model over the kept columns of `served` with every pool's GPUs an integer and
/// every pipeline's vGPUs fractional (see [`pools_plan`]).
fn pools_relaxation(inputs: &Inputs, served: &[ModelColumns]) -> (Milp, Layout) {
    let counts: Vec<u32> = inputs.fleet.class.iter().map(|c| c.count).collect();
    let (mut relaxed, layout) = build(inputs, served, &counts);
    for (_, ns) in layout.cols.iter().flatten() {
        for n in ns {
            relaxed.vars[n.0].integer = false;
        }
    }
    for p in layout.pools.values() {
        relaxed.vars[p.0].integer = true;
    }
    (relaxed, layout)
}

/// Each model's GPUs of each class in a relaxation's solution (`values` laid out by
/// `layout`), rounded down.
fn split_of(inputs: &Inputs, layout: &Layout, values: &[f64], models: usize) -> Vec<Vec<u32>> {
    let mut share = vec![vec![0.0f64; inputs.fleet.class.len()]; models];
    for (&(m, _, class), p) in &layout.pools {
        share[m][class] += values[p.0];
    }
    share.iter().map(|a| a.iter().map(|x| (x + 1e-6).floor().max(0.0) as u32).collect()).collect()
}

/// The kept columns of `mc` that matter once vGPUs are fractional (the pools relaxation of
/// [`pools_plan`]). Among the columns whose partitions run on the same classes in the same
/// order (the same pools), one that needs at least as many GPUs of every pool per request per
/// second as another is dropped; with two pools, so is one above the segment between two
/// others (a mix of those two serves the same for less). The relaxation's optimum is the same
/// over what is left.
fn efficient(mc: &ModelColumns) -> ModelColumns {
    let mut groups: BTreeMap<Vec<usize>, Vec<(usize, Vec<f64>)>> = BTreeMap::new();
    for &ci in &mc.kept {
        let parts = &mc.all[ci].parts;
        let need = parts.iter().map(|p| 1.0 / (p.vgpu_rps * p.share as f64)).collect();
        groups.entry(parts.iter().map(|p| p.class).collect()).or_default().push((ci, need));
    }
    let mut kept = vec![];
    for (_, mut group) in groups {
        group.sort_by(|a, b| a.1.iter().sum::<f64>().total_cmp(&b.1.iter().sum::<f64>()));
        let mut front: Vec<(usize, Vec<f64>)> = vec![];
        for (ci, need) in group {
            if !front.iter().any(|(_, f)| f.iter().zip(&need).all(|(a, b)| a <= b)) {
                front.push((ci, need));
            }
        }
        if front.first().is_some_and(|f| f.1.len() == 2) {
            // Two pools: only the lower convex hull of the front serves at least cost (a
            // column above the segment between two others is beaten by a mix of them).
            front.sort_by(|a, b| a.1[0].total_cmp(&b.1[0]));
            let mut hull: Vec<(usize, Vec<f64>)> = vec![];
            for p in front {
                while hull.len() >= 2 {
                    let (a, b) = (&hull[hull.len() - 2].1, &hull[hull.len() - 1].1);
                    let cross = (b[0] - a[0]) * (p.1[1] - a[1]) - (b[1] - a[1]) * (p.1[0] - a[0]);
                    if cross <= 0.0 {
                        hull.pop();
                    } else {
                        break;
                    }
                }
                hull.push(p);
            }
            front = hull;
        }
        kept.extend(front.into_iter().map(|(ci, _)| ci));
    }
    kept.sort_unstable();
    ModelColumns { model: mc.model, all: mc.all.clone(), kept, dominated: mc.dominated.clone() }
}

/// The plan of model `mc` alone on `budget` GPUs per class that serves at least `tau` per
/// weight, with as little cost (per GPU of each class) as a short search finds; `had`: a plan
/// known to serve `tau` within the budget, if any. None when none does or time runs out.
#[allow(clippy::too_many_arguments)]
fn cheapest(
    inputs: &Inputs,
    mc: &ModelColumns,
    solver: &dyn Solver,
    budget: &[u32],
    tau: f64,
    cost: &[f64],
    had: Option<&Choice>,
    deadline: std::time::Instant,
) -> Option<Choice> {
    let one = std::slice::from_ref(mc);
    let w = inputs.workload.model[mc.model].weight;
    let (model, layout) = build(inputs, one, budget);
    let serves = |c: &Choice| capacity(mc, c) / w >= tau * (1.0 - 1e-9);
    // A plan that serves the target: the one given, else the most this budget serves.
    let start = match had.filter(|c| serves(c)) {
        Some(c) => c.clone(),
        None => {
            let c = most(inputs, mc, solver, (&model, &layout), had, cap(3 * CHEAPEST_MS, deadline))?;
            if !serves(&c) {
                return None;
            }
            c
        }
    };
    // Then fewer GPUs for the same target, within a short search from that plan.
    let Some(limit) = cap(CHEAPEST_MS, deadline) else { return Some(start) };
    let m2 = fewest(&model, &layout, |c| cost[c], tau * (1.0 - 1e-9));
    let warm = assignment(inputs, one, &layout, &m2, std::slice::from_ref(&start));
    let lim = Limits { time_limit: Some(limit), mip_gap: 0.02, warm_start: Some(warm) };
    let found = solver
        .solve(&m2, &lim)
        .ok()
        .map(|s| trim(mc, extract(one, &layout, &s.values).remove(0)))
        .filter(|c| serves(c) && usage_cost(mc, c, cost) < usage_cost(mc, &start, cost));
    Some(found.unwrap_or(start))
}

/// How long one search for fewer GPUs may take in [`rebalance`] at least, milliseconds (one
/// for the most throughput three times that); big models (three partitions) get up to an
/// eighth of the time left.
const CHEAPEST_MS: u64 = 150;

/// The time limit of one small search: `base_ms` or an eighth of what is left before
/// `deadline`, whichever is longer, within what is left. None when nothing is left.
fn cap(base_ms: u64, deadline: std::time::Instant) -> Option<std::time::Duration> {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    (!left.is_zero()).then(|| left.min(std::time::Duration::from_millis(base_ms).max(left / 8)))
}

/// The plan of model `mc` alone that serves the most on the budget its MILP (`model`, laid
/// out by `layout`, from [`build`]) was built for: a search within `limit`, from `warm` when
/// given (which it returns when the search finds nothing in time). None when there is neither
/// or `limit` is None.
fn most(
    inputs: &Inputs,
    mc: &ModelColumns,
    solver: &dyn Solver,
    (model, layout): (&Milp, &Layout),
    warm: Option<&Choice>,
    limit: Option<std::time::Duration>,
) -> Option<Choice> {
    let limit = limit?;
    let one = std::slice::from_ref(mc);
    let start = warm.map(|c| assignment(inputs, one, layout, model, std::slice::from_ref(c)));
    let lim = Limits { time_limit: Some(limit), mip_gap: 1e-4, warm_start: start };
    match solver.solve(model, &lim) {
        Ok(s) => Some(trim(mc, extract(one, layout, &s.values).remove(0))),
        // Nothing in time (a big model's root LP alone can take longer): the plan it had.
        Err(_) => warm.map(|c| trim(mc, c.clone())),
    }
}

/// `model` made to use the fewest GPUs (each of class c weighing `cost(c)`) with z at least
/// `z_min`.
fn fewest(model: &Milp, layout: &Layout, cost: impl Fn(usize) -> f64, z_min: f64) -> Milp {
    let mut m = model.clone();
    for v in &mut m.vars {
        v.obj = 0.0;
    }
    for (&(_, _, class), p) in &layout.pools {
        m.vars[p.0].obj = -cost(class);
    }
    m.row(vec![(layout.z, 1.0)], Cmp::Ge, z_min);
    m
}

/// The cost of the GPUs a model's pipelines use.
fn usage_cost(mc: &ModelColumns, choice: &Choice, cost: &[f64]) -> f64 {
    usage(mc, choice, cost.len()).iter().zip(cost).map(|(&u, c)| u as f64 * c).sum()
}

/// The relative gap of `objective` below `bound` (0 for an empty plan).
fn rel_gap(bound: f64, objective: f64) -> f64 {
    if objective > 0.0 { ((bound - objective) / objective).max(0.0) } else { 0.0 }
}

/// GPUs of each class the models' chosen pipelines use together.
fn used_by(inputs: &Inputs, served: &[ModelColumns], choices: &[Choice]) -> Vec<u32> {
    let k = inputs.fleet.class.len();
    let mut total = vec![0u32; k];
    for (mc, c) in served.iter().zip(choices) {
        for (t, u) in total.iter_mut().zip(usage(mc, c, k)) {
            *t += u;
        }
    }
    total
}

/// Whether the models' chosen pipelines fit the fleet.
fn fits(inputs: &Inputs, served: &[ModelColumns], choices: &[Choice]) -> bool {
    used_by(inputs, served, choices).iter().zip(&inputs.fleet.class).all(|(&t, c)| t <= c.count)
}

/// The pairs of classes to split, the most used first: by the share of each class's GPUs the
/// plan `choices` uses.
fn pairs_by_use(inputs: &Inputs, served: &[ModelColumns], choices: &[Choice]) -> Vec<[usize; 2]> {
    let k = inputs.fleet.class.len();
    let used = used_by(inputs, served, choices);
    let share: Vec<f64> =
        used.iter().zip(&inputs.fleet.class).map(|(&u, c)| u as f64 / c.count.max(1) as f64).collect();
    let mut pairs: Vec<[usize; 2]> = (0..k).flat_map(|a| (a + 1..k).map(move |b| [a, b])).collect();
    pairs.sort_by(|x, y| (share[y[0]] + share[y[1]]).total_cmp(&(share[x[0]] + share[x[1]])));
    pairs
}

/// Throughput per weight of each model's chosen pipelines.
fn per_weight(inputs: &Inputs, served: &[ModelColumns], choices: &[Choice]) -> Vec<f64> {
    served.iter().zip(choices).map(|(mc, c)| capacity(mc, c) / inputs.workload.model[mc.model].weight).collect()
}

/// The least of `v` (a plan's z from [`per_weight`]; infinite for no model).
fn least(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn capacity(mc: &ModelColumns, choice: &Choice) -> f64 {
    choice
        .iter()
        .map(|(ci, n)| {
            mc.all[*ci].parts.iter().zip(n).map(|(p, &k)| k as f64 * p.vgpu_rps).fold(f64::INFINITY, f64::min)
        })
        .sum()
}

/// What the split search returns: the plan, branch-and-bound nodes and the upper bound it
/// proved.
pub(crate) type SplitResult = (Vec<Choice>, u64, f64);

/// Allotments of the other models: (model, (GPUs of class 0, of class 1)).
type Allotments = Vec<(usize, (u32, u32))>;

/// For a count of class-0 GPUs: the fewest class-1 GPUs, the least F / w, the allotments.
type Others = (u32, f64, Allotments);

/// The exact optimum by searching splits of the GPUs of two classes (`pair`) between models:
/// with F_m(h, l) the best throughput of model m alone on h and l GPUs of the pair (and every
/// GPU of the other classes: a relaxation when the fleet has more than two), a small MILP
/// proven optimal, z* = max over splits of min_m F_m / w_m. With more than two classes the
/// returned bound holds for the fleet, and the plan is the fleet's optimum when it fits
/// ([`fits`]). From a known z, each round finds per
/// model the staircase of the fewest GPUs that serve more than z * w_m (bounds by the LP
/// relaxation and by monotonicity skip most MILPs), then the split of those that maximises
/// the least F_m / w_m; no split: z is optimal. None when out of time or a sub-problem is not
/// proven (the caller then solves the joint MILP).
pub(crate) fn solve_split(
    inputs: &Inputs,
    served: &[ModelColumns],
    solver: &dyn Solver,
    limits: &Limits,
    start: &[Choice],
    upper: f64,
    pair: [usize; 2],
) -> Result<Option<SplitResult>> {
    if inputs.fleet.class.len() < 2 || pair[0] == pair[1] || pair.iter().any(|&c| c >= inputs.fleet.class.len()) {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let mut s = SplitSearch {
        inputs,
        served,
        solver,
        pair,
        limits: limits.clone(),
        deadline: started + limits.time_limit.unwrap_or(std::time::Duration::from_secs(3600)),
        memo: vec![BTreeMap::new(); served.len()],
        nodes: 0,
    };
    let w: Vec<f64> = served.iter().map(|mc| inputs.workload.model[mc.model].weight).collect();
    let (n0, n1) = (inputs.fleet.class[pair[0]].count, inputs.fleet.class[pair[1]].count);
    let mut best: Vec<Choice> = start.to_vec();
    let mut z = least(&per_weight(inputs, served, &best));
    if !z.is_finite() {
        z = 0.0;
    }
    // The model whose searches cost most comes last and is asked one question per split of
    // class 0 instead of a whole staircase.
    // Measured: one search per model on the whole fleet (its bounds are kept).
    let mut cost = vec![0.0; served.len()];
    for (m, c) in cost.iter_mut().enumerate() {
        let t = std::time::Instant::now();
        if s.bound(m, n0, n1, 0.01).is_err() {
            return Ok(None);
        }
        // Ties (every search trivial on the whole fleet) go to the model with the most
        // configurations.
        *c = t.elapsed().as_secs_f64() + 1e-4 * served[m].kept.len() as f64;
    }
    let hard = (0..served.len()).max_by(|&a, &b| cost[a].total_cmp(&cost[b])).unwrap_or(0);
    // Targets: halfway to the upper bound while the gap is wide, then just above z (each
    // round either finds a split serving more than the target or proves there is none).
    let mut hi = upper.max(z);
    loop {
        if hi <= z || (z > 0.0 && (hi - z) / z <= limits.mip_gap.max(1e-9)) {
            break;
        }
        if std::time::Instant::now() > s.deadline {
            return Ok(None);
        }
        let creep = !(z > 0.0 && (hi - z) / z > 1e-3);
        let target = if creep { z * (1.0 + 1e-9) + 1e-9 } else { 0.5 * (z + hi) };
        let tau: Vec<f64> = w.iter().map(|w| target * w).collect();
        let mut stairs = vec![];
        let mut found_none = false;
        for (m, &t) in tau.iter().enumerate() {
            if m == hard {
                stairs.push(vec![]);
                continue;
            }
            match s.staircase(m, t) {
                Ok(st) if st.is_empty() => {
                    found_none = true;
                    break;
                }
                Ok(st) => stairs.push(st),
                Err(GiveUp) => return Ok(None),
            }
        }
        if found_none {
            hi = if creep { z } else { target };
            continue;
        }
        // The other models: for each number of class-0 GPUs they use, the fewest class-1
        // GPUs (and the least F / w among them, and their allotments).
        let mut states: BTreeMap<u32, Others> = BTreeMap::new();
        states.insert(0, (0, f64::INFINITY, vec![]));
        for (m, st) in stairs.iter().enumerate() {
            if m == hard {
                continue;
            }
            let mut next: BTreeMap<u32, Others> = BTreeMap::new();
            for (&a, (b, v, alloc)) in &states {
                for &(h, l) in st {
                    let (a2, b2) = (a + h, b + l);
                    if a2 > n0 || b2 > n1 {
                        continue;
                    }
                    let f = s.memo[m][&(h, l)].plan.as_ref().map_or(0.0, |e| e.0) / w[m];
                    let v2 = v.min(f);
                    let e = next.entry(a2).or_insert((u32::MAX, f64::NEG_INFINITY, vec![]));
                    if b2 < e.0 || (b2 == e.0 && v2 > e.1) {
                        let mut al = alloc.clone();
                        al.push((m, (h, l)));
                        *e = (b2, v2, al);
                    }
                }
            }
            states = next;
        }
        // Fewest class-1 GPUs for the others using at most H class-0 GPUs.
        let mut prefix: Vec<Option<Others>> = vec![None; n0 as usize + 1];
        for hh in 0..=n0 {
            let mut cur = if hh > 0 { prefix[hh as usize - 1].clone() } else { None };
            if let Some(st) = states.get(&hh)
                && cur.as_ref().is_none_or(|c| st.0 < c.0)
            {
                cur = Some(st.clone());
            }
            prefix[hh as usize] = cur;
        }
        // One question per split: can the hard model serve more than its share on the rest?
        let mut found: Option<(f64, Allotments)> = None;
        for h0 in 0..=n0 {
            let Some((lo_used, v, alloc)) = &prefix[(n0 - h0) as usize] else { continue };
            let r = n1 - lo_used;
            let Ok(ans) = s.above(hard, h0, r, tau[hard]) else { return Ok(None) };
            if let Some(wit) = ans {
                let f = s.memo[hard][&wit].plan.as_ref().map_or(0.0, |e| e.0) / w[hard];
                let z2 = v.min(f);
                if found.as_ref().is_none_or(|x| z2 > x.0) {
                    let mut al = alloc.clone();
                    al.push((hard, wit));
                    found = Some((z2, al));
                }
            }
        }
        let Some((v, alloc)) = found else {
            // Nothing serves more than the target: it bounds the optimum (just above z:
            // z is optimal).
            hi = if creep { z } else { target };
            continue;
        };
        z = v;
        let mut next = best.clone();
        for (m, hl) in alloc {
            next[m] = s.memo[m][&hl].plan.as_ref().expect("a plan was found").1.clone();
        }
        best = next;
    }
    Ok(Some((best, s.nodes, hi)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Microlp, PlanOptions, Planner};

    /// Moving GPUs between models lifts the whole-model plan of a four-class fleet (published
    /// profiles) well above itself, and what it returns fits the fleet.
    #[test]
    fn rebalancing_lifts_a_four_class_plan_and_fits_the_fleet() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let inputs = Inputs::load(
            &root.join("../shared/ppipe-data"),
            &root.join("configs/fleets/mc4.toml"),
            &root.join("configs/workloads/group5.toml"),
        )
        .expect("published profiles and the mc4 fleet load");
        let mut planner = Planner::new(&inputs, PlanOptions::default()).unwrap();
        let np = planner.np().unwrap();
        let (est, _) = planner.estimates().unwrap();
        let (served, _) = planner.columns(Some(&est), false);
        let start = crate::choices_of(&np.models, &served, &inputs);
        let z0 = least(&per_weight(&inputs, &served, &start));
        assert!((z0 - np.objective).abs() <= 1e-6 * np.objective, "{z0} vs {}", np.objective);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let lean: Vec<ModelColumns> = served.iter().map(efficient).collect();
        let out = rebalance(&inputs, &served, &lean, &Microlp, &start, 1e-3, f64::INFINITY, deadline);
        let z1 = least(&per_weight(&inputs, &served, &out));
        assert!(fits(&inputs, &served, &out), "{:?}", used_by(&inputs, &served, &out));
        // Whole models on whole GPUs serve 4,076; pipelines over the same GPUs, moved
        // between models, serve over 10% more (the optimum is about 5,650).
        assert!(z1 >= 1.1 * z0, "{z0} -> {z1}");
        assert!(z1 <= 5700.0, "above the LP bound: {z1}");
    }

    /// On a 440-GPU four-class fleet (published profiles), each model's best plan on the GPUs
    /// the planner gave it before trades (rebalance's moves of one model at a time had stopped
    /// there, at 14,852.8) leaves DNL with the least; a trade with another model (two of its
    /// T4s for two P4s) lifts it and keeps the other above it, to no more than the optimum an
    /// outside solver proves (14,886.2).
    #[test]
    fn a_trade_between_two_models_lifts_the_least() {
        let inputs = published("mc4-large", "group2");
        let mut planner = Planner::new(&inputs, PlanOptions::default()).unwrap();
        let (est, _) = planner.estimates().unwrap();
        let (served, _) = planner.columns(Some(&est), false);
        // CenterNet, ConvNeXt, DNL: GPUs of V100, L4, T4, P4.
        let budgets = [[23, 20, 47, 13], [17, 8, 71, 20], [0, 52, 2, 167]];
        let long = Some(std::time::Duration::from_secs(60));
        let cur: Vec<Choice> = served
            .iter()
            .zip(&budgets)
            .map(|(mc, b)| {
                let (model, layout) = build(&inputs, std::slice::from_ref(mc), b);
                most(&inputs, mc, &Microlp, (&model, &layout), None, long).expect("a plan on its GPUs")
            })
            .collect();
        assert!(fits(&inputs, &served, &cur));
        let before = per_weight(&inputs, &served, &cur);
        assert!(before[2] < before[0] && before[2] < before[1], "DNL has the least: {before:?}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let lean = with_plan(&served.iter().map(efficient).collect::<Vec<_>>(), &cur);
        let out = swap(&inputs, &served, &Microlp, &lean, &cur, std::time::Duration::from_secs(5), deadline)
            .expect("a trade lifts the least");
        let after = per_weight(&inputs, &served, &out);
        assert!(fits(&inputs, &served, &out), "{:?}", used_by(&inputs, &served, &out));
        assert!(least(&after) > least(&before) * (1.0 + 1e-4), "{before:?} -> {after:?}");
        // Never above what the outside solver proved optimal.
        assert!(least(&after) <= 14886.2 * (1.0 + 1e-6), "{after:?}");
    }

    fn published(fleet: &str, group: &str) -> Inputs {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Inputs::load(
            &root.join("../shared/ppipe-data"),
            &root.join(format!("configs/fleets/{fleet}.toml")),
            &root.join(format!("configs/workloads/{group}.toml")),
        )
        .expect("published profiles and the fleet load")
    }

    /// The pools relaxation over the efficient columns alone has the optimum it has over
    /// every kept column (the dropped ones never help once vGPUs are fractional), with far
    /// fewer columns; it lies between the best plan and the LP bound.
    #[test]
    fn efficient_columns_keep_the_pools_relaxation_and_the_lp() {
        for (fleet, group) in [("mc3", "group2"), ("mc4", "group6")] {
            let inputs = published(fleet, group);
            let mut planner = Planner::new(&inputs, PlanOptions::default()).unwrap();
            let (est, _) = planner.estimates().unwrap();
            let (served, _) = planner.columns(Some(&est), false);
            let lean: Vec<ModelColumns> = served.iter().map(efficient).collect();
            let kept = |s: &[ModelColumns]| s.iter().map(|m| m.kept.len()).sum::<usize>();
            assert!(2 * kept(&lean) < kept(&served), "{fleet} {group}: {} of {}", kept(&lean), kept(&served));
            let exact =
                Limits { time_limit: Some(std::time::Duration::from_secs(120)), mip_gap: 0.0, warm_start: None };
            let solve = |s: &[ModelColumns]| {
                let (m, _) = pools_relaxation(&inputs, s);
                let r = Microlp.solve(&m, &exact).unwrap();
                assert!(r.optimal, "{fleet} {group}: not solved");
                (r.objective, Microlp.solve(&m.relaxed(), &exact).unwrap().objective)
            };
            let (all, lp) = solve(&served);
            let (few, lean_lp) = solve(&lean);
            assert!(
                (all - few).abs() <= 1e-6 * all,
                "{fleet} {group}: {all} over every column, {few} over the efficient"
            );
            // So is the LP relaxation (`solve` takes its bound from the efficient columns).
            assert!(
                (lp - lean_lp).abs() <= 1e-6 * lp,
                "{fleet} {group}: LP {lp} over every column, {lean_lp} over the efficient"
            );
            let plan = planner.plan(crate::PlannerKind::Ppipe).unwrap();
            assert!(
                plan.objective <= all * (1.0 + 1e-9) && all <= lp * (1.0 + 1e-9),
                "{fleet} {group}: {} {all} {lp}",
                plan.objective
            );
        }
    }
}
