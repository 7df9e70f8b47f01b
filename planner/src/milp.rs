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
}

fn build(inputs: &Inputs, served: &[ModelColumns]) -> (Milp, Layout) {
    let fleet = &inputs.fleet;
    let mut m = Milp::default();
    let z = m.continuous(1.0, 0.0, f64::INFINITY);
    let mut cols = vec![];
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
                let cap = fleet.class[p.class].count as f64 * p.share as f64;
                let n = m.integer(0.0, 0.0, cap);
                m.row(vec![(x, 1.0), (n, -p.vgpu_rps)], Cmp::Le, 0.0);
                let e = pool_terms.entry((si, d, p.class)).or_insert((vec![], true));
                e.0.push((n, 1.0 / p.share as f64));
                e.1 &= p.share == 1;
                ns.push(n);
            }
            per.push((x, ns));
        }
        m.row(row_x, Cmp::Le, 0.0);
        cols.push(per);
    }
    let mut pools = BTreeMap::new();
    let mut budget: Vec<Vec<(Var, f64)>> = vec![vec![]; fleet.class.len()];
    for (key, (terms, whole)) in pool_terms {
        let n = fleet.class[key.2].count as f64;
        let p = if whole { m.continuous(0.0, 0.0, n) } else { m.integer(0.0, 0.0, n) };
        let mut row = terms;
        row.push((p, -1.0));
        m.row(row, Cmp::Le, 0.0);
        budget[key.2].push((p, 1.0));
        pools.insert(key, p);
    }
    for (c, terms) in budget.into_iter().enumerate() {
        if !terms.is_empty() {
            m.row(terms, Cmp::Le, fleet.class[c].count as f64);
        }
    }
    (m, Layout { z, cols, pools })
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
) -> Result<Outcome> {
    let (model, layout) = build(inputs, served);
    let starts: Vec<(String, Vec<f64>)> = warm
        .iter()
        .map(|(name, c)| (name.clone(), assignment(inputs, served, &layout, &model, c)))
        .filter(|(_, v)| model.violation(v, 1e-7).is_none())
        .collect();
    let best_start =
        starts.iter().max_by(|a, b| model.objective_of(&a.1).total_cmp(&model.objective_of(&b.1))).cloned();
    let lp = solver.solve(&model.relaxed(), &Limits { warm_start: None, ..limits.clone() })?;
    let mut l = limits.clone();
    l.warm_start = best_start.as_ref().map(|s| s.1.clone());
    let mut solved = solver.solve(&model, &l)?;
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
        let mut m2 = model.clone();
        for v in &mut m2.vars {
            v.obj = 0.0;
        }
        for p in layout.pools.values() {
            m2.vars[p.0].obj = -1.0;
        }
        let zt = solved.objective * (1.0 - 1e-9);
        m2.row(vec![(layout.z, 1.0)], Cmp::Ge, zt);
        let mut l2 = limits.clone();
        l2.mip_gap = 0.0;
        l2.warm_start = Some(solved.values.clone());
        if let Ok(s2) = solver.solve(&m2, &l2) {
            choices = extract(served, &layout, &s2.values);
            solved.nodes += s2.nodes;
            solved.seconds += s2.seconds;
        }
    }
    solved.bound = solved.bound.min(lp.objective);
    Ok(Outcome { choices, solved, integer_vars: model.integers(), lp_bound: lp.objective, from_warm })
}

/// Turns chosen pipelines into model plans: vGPUs beyond what each pipeline's slowest
/// partition can use are trimmed, pools counted, throughputs computed.
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
        let mut pipelines = vec![];
        let mut pool_sum: Vec<(usize, usize, f64)> = vec![];
        for (ci, n) in choice {
            let col = &mc.all[*ci];
            let thr = col.parts.iter().zip(n).map(|(p, &k)| k as f64 * p.vgpu_rps).fold(f64::INFINITY, f64::min);
            let mut parts = vec![];
            for (d, p) in col.parts.iter().enumerate() {
                // The fewest vGPUs that still carry the pipeline's throughput.
                let need = ((thr / p.vgpu_rps) - 1e-9).ceil().max(1.0) as usize;
                let vg = need.min(n[d]);
                let gpus = vg as f64 / p.share as f64;
                match pool_sum.iter_mut().find(|(pd, pc, _)| *pd == d && *pc == p.class) {
                    Some(e) => e.2 += gpus,
                    None => pool_sum.push((d, p.class, gpus)),
                }
                parts.push(PartitionPlan {
                    first_block: p.first,
                    end_block: p.end,
                    class: fleet.class[p.class].name.clone(),
                    share: p.share,
                    batch: col.batch,
                    vgpus: vg,
                    gpus,
                    inference_us: p.infer_us,
                    transfer_us: p.transfer_us,
                    vgpu_throughput: p.vgpu_rps,
                    throughput: vg as f64 * p.vgpu_rps,
                });
            }
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
        pool_sum.sort_by_key(|&(d, c, _)| (d, c));
        let pools: Vec<Pool> = pool_sum
            .iter()
            .map(|&(d, c, g)| {
                let gpus = pool_gpus(g);
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
