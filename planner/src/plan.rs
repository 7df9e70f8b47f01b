//! The plan: what the planner decides, as serde JSON, and the check every plan passes.
//!
//! A plan lists per model its pipelines; a pipeline is a chain of partitions covering blocks
//! `0..M`, each partition a block range on one GPU class at one share with a number of vGPUs,
//! all at the pipeline's batch size. Physical GPUs are counted per pool, a pool being the
//! (partition index, class) of one model: `gpus = ceil(sum of vGPUs / k)` over the pipelines
//! of that model whose partition at that index runs on that class (PPIPE.md, "Details of the
//! reference plans"); the pools' GPUs count against the class budget.

use serde::{Deserialize, Serialize};

use crate::Inputs;
use crate::columns::{batch_build_us, cut_us, partition_config};
use crate::config::SloSource;
use crate::error::{PlannerError, Result};

/// One partition of a pipeline in a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionPlan {
    /// First block.
    pub first_block: usize,
    /// One past the last block.
    pub end_block: usize,
    /// GPU class.
    pub class: String,
    /// Share k: each vGPU is 1/k of a GPU.
    pub share: usize,
    /// Batch size (the pipeline's).
    pub batch: usize,
    /// Number of vGPUs.
    pub vgpus: usize,
    /// Physical GPUs these vGPUs amount to (vgpus / share).
    pub gpus: f64,
    /// Inference latency of a batch, microseconds (sum of the block latencies).
    pub inference_us: u64,
    /// Transfer latency of a batch to the next partition, microseconds (0 for the last).
    pub transfer_us: f64,
    /// Requests per second one vGPU sustains (compute, capped by its share of the NIC).
    pub vgpu_throughput: f64,
    /// Requests per second of the partition: vgpus x vgpu_throughput.
    pub throughput: f64,
}

/// One pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Batch size of every partition.
    pub batch: usize,
    /// Requests per second: the least of its partitions.
    pub throughput: f64,
    /// Predicted latency of a request, microseconds: inference and transfers of every
    /// partition plus the batch-build estimate.
    pub latency_us: f64,
    /// Batch-build estimate included in `latency_us`.
    pub batch_build_us: f64,
    /// Planning margin held back from the SLO, microseconds.
    pub margin_us: f64,
    /// Partitions in order.
    pub partitions: Vec<PartitionPlan>,
}

/// Physical GPUs of one pool of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// Partition index (0 = first).
    pub partition: usize,
    /// GPU class.
    pub class: String,
    /// Whole GPUs: ceil(sum of vGPUs / k) over the pool's partitions.
    pub gpus: u32,
}

/// The plan of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelPlan {
    /// Model name.
    pub name: String,
    /// Workload weight.
    pub weight: f64,
    /// SLO, microseconds.
    pub slo_us: u64,
    /// Where the SLO came from.
    pub slo_source: SloSource,
    /// Throughput estimate behind the batch-build term (requests/s), from the NP pre-solve.
    pub est_xput: f64,
    /// Predicted requests per second: the sum of its pipelines.
    pub throughput: f64,
    /// Pipelines.
    pub pipelines: Vec<Pipeline>,
    /// Pools and their physical GPUs.
    pub pools: Vec<Pool>,
}

/// A model the plan cannot serve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unserved {
    /// Model name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// GPUs of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassUse {
    /// Class name.
    pub name: String,
    /// GPUs in the fleet.
    pub available: u32,
    /// GPUs the plan uses.
    pub used: u32,
}

/// What the solver did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolveInfo {
    /// Backend name.
    pub solver: String,
    /// Pipeline configurations offered to the solver (after the SLO filter and pruning).
    pub columns: usize,
    /// Configurations that met the SLO before pruning.
    pub feasible_columns: usize,
    /// Integer variables of the model.
    pub integer_vars: usize,
    /// Branch-and-bound nodes.
    pub nodes: u64,
    /// Objective of the LP relaxation (fractional vGPUs and GPUs), an upper bound on any plan.
    pub lp_bound: f64,
    /// Seconds of the NP pre-solve that estimates throughputs for the batch-build term.
    pub presolve_seconds: f64,
    /// Where the plan came from when the search did not beat its start: "search",
    /// "warm-start (np)" or "warm-start (dart-r)".
    pub source: String,
}

/// A plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Which planner: "ppipe", "np" or "dart-r".
    pub planner: String,
    /// The max-min objective z: the least over served models of throughput / weight.
    pub objective: f64,
    /// Seconds spent planning (pre-solve included).
    pub solve_seconds: f64,
    /// Proven relative gap between `objective` and the best bound (0: optimal). DART-r is a
    /// construction, not a search: its gap is reported as 0 against itself.
    pub gap: f64,
    /// Whether optimality was proven.
    pub optimal: bool,
    /// Effective NIC bandwidth, Gbit/s.
    pub bandwidth_gbps: f64,
    /// GPUs per class.
    pub classes: Vec<ClassUse>,
    /// Served models, in workload order.
    pub models: Vec<ModelPlan>,
    /// Models that cannot be served, with why.
    pub unserved: Vec<Unserved>,
    /// Solver details.
    pub solve: SolveInfo,
}

fn bad(reason: String) -> PlannerError {
    PlannerError::InvalidPlan { reason }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

/// Physical GPUs of `vgpus` at share `k` summed into a pool: ceil with a little slack for
/// round-off.
pub fn pool_gpus(sum_of_fractions: f64) -> u32 {
    (sum_of_fractions - 1e-9).ceil().max(0.0) as u32
}

/// Checks a plan against its inputs: chains cover every block, one batch per pipeline within
/// the share's limit, latencies and throughputs equal what the profiles give, the SLO with
/// margin and batch-build term holds, pools and the class budgets hold, the objective is the
/// least throughput / weight. `max_batch_per_share` as in the options.
pub fn verify(plan: &Plan, inputs: &Inputs, margin: f64, factor: f64, max_batch_per_share: &[usize]) -> Result<()> {
    let fleet = &inputs.fleet;
    let mut used = vec![0u32; fleet.class.len()];
    let mut z = f64::INFINITY;
    for mp in &plan.models {
        let i = inputs
            .profiles
            .iter()
            .position(|p| p.name == mp.name)
            .ok_or_else(|| bad(format!("model '{}' is not in the workload", mp.name)))?;
        let prof = &inputs.profiles[i];
        let (slo, _) = inputs.slos[i];
        if mp.slo_us != slo {
            return Err(bad(format!("model '{}': SLO {} us, inputs say {slo}", mp.name, mp.slo_us)));
        }
        let cuts = cut_us(prof, fleet.bandwidth_gbps);
        let margin_us = (margin * slo as f64).round();
        let mut pools: Vec<(usize, usize, f64)> = vec![];
        let mut total = 0.0;
        for (pi, pl) in mp.pipelines.iter().enumerate() {
            let what = format!("model '{}' pipeline {pi}", mp.name);
            if pl.partitions.is_empty() {
                return Err(bad(format!("{what}: no partitions")));
            }
            let mut next = 0;
            let mut lat = 0.0;
            let mut thr = f64::INFINITY;
            for (d, p) in pl.partitions.iter().enumerate() {
                if p.first_block != next || p.end_block <= p.first_block || p.end_block > prof.blocks {
                    return Err(bad(format!(
                        "{what}: partition {d} covers {}..{}, expected to start at {next} and end by {}",
                        p.first_block, p.end_block, prof.blocks
                    )));
                }
                next = p.end_block;
                if p.batch != pl.batch {
                    return Err(bad(format!("{what}: partition {d} at batch {}, pipeline at {}", p.batch, pl.batch)));
                }
                if max_batch_per_share.get(p.share - 1).is_none_or(|&m| p.batch > m) {
                    return Err(bad(format!("{what}: batch {} not allowed at share 1/{}", p.batch, p.share)));
                }
                let c = fleet
                    .class
                    .iter()
                    .position(|c| c.name == p.class)
                    .ok_or_else(|| bad(format!("{what}: unknown class {}", p.class)))?;
                let cfg = partition_config(prof, fleet, &cuts, p.first_block, p.end_block, c, p.share, p.batch)
                    .ok_or_else(|| bad(format!("{what}: no profile for partition {d}")))?;
                if cfg.infer_us != p.inference_us
                    || !close(cfg.transfer_us, p.transfer_us)
                    || !close(cfg.vgpu_rps, p.vgpu_throughput)
                {
                    return Err(bad(format!("{what}: partition {d} latencies or throughput differ from the profiles")));
                }
                if p.vgpus == 0
                    || !close(p.throughput, p.vgpus as f64 * p.vgpu_throughput)
                    || !close(p.gpus, p.vgpus as f64 / p.share as f64)
                {
                    return Err(bad(format!("{what}: partition {d} vGPU counts are inconsistent")));
                }
                lat += p.inference_us as f64 + p.transfer_us;
                thr = thr.min(p.throughput);
                match pools.iter_mut().find(|(pd, pc, _)| *pd == d && *pc == c) {
                    Some(e) => e.2 += p.gpus,
                    None => pools.push((d, c, p.gpus)),
                }
            }
            if next != prof.blocks {
                return Err(bad(format!("{what}: covers blocks up to {next} of {}", prof.blocks)));
            }
            let build = batch_build_us(pl.batch, Some(mp.est_xput), factor);
            if !close(build, pl.batch_build_us) || !close(lat + build, pl.latency_us) || !close(margin_us, pl.margin_us)
            {
                return Err(bad(format!(
                    "{what}: latency {} us differs from the profile sums {}",
                    pl.latency_us,
                    lat + build
                )));
            }
            if pl.latency_us + margin_us > slo as f64 + 1e-6 {
                return Err(bad(format!(
                    "{what}: latency {} us + margin {margin_us} exceeds the SLO {slo}",
                    pl.latency_us
                )));
            }
            if !close(thr, pl.throughput) {
                return Err(bad(format!("{what}: throughput {} but its least partition gives {thr}", pl.throughput)));
            }
            total += thr;
        }
        if !close(total, mp.throughput) {
            return Err(bad(format!("model '{}': throughput {} but pipelines sum to {total}", mp.name, mp.throughput)));
        }
        for (d, c, g) in &pools {
            let want = pool_gpus(*g);
            let have =
                mp.pools.iter().find(|p| p.partition == *d && p.class == fleet.class[*c].name).map_or(0, |p| p.gpus);
            if have != want {
                return Err(bad(format!(
                    "model '{}': pool ({d}, {}) has {have} GPUs, its vGPUs need {want}",
                    mp.name, fleet.class[*c].name
                )));
            }
            used[*c] += want;
        }
        if mp.pools.len() != pools.len() {
            return Err(bad(format!("model '{}': pools listed without partitions", mp.name)));
        }
        z = z.min(mp.throughput / mp.weight);
    }
    for (c, class) in fleet.class.iter().enumerate() {
        if used[c] > class.count {
            return Err(bad(format!("class {} uses {} GPUs of {}", class.name, used[c], class.count)));
        }
        let listed = plan.classes.iter().find(|u| u.name == class.name).map_or(0, |u| u.used);
        if listed != used[c] {
            return Err(bad(format!("class {}: {listed} GPUs listed as used, pools hold {}", class.name, used[c])));
        }
    }
    let served_all = plan.models.len() + plan.unserved.len() == inputs.profiles.len();
    if !served_all {
        return Err(bad("models missing from both the plan and the unserved list".into()));
    }
    let z = if plan.models.is_empty() { 0.0 } else { z };
    if !close(z, plan.objective) {
        return Err(bad(format!("objective {} but the least throughput / weight is {z}", plan.objective)));
    }
    Ok(())
}
