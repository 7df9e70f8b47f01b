//! Pipeline configurations ("columns" of the compact MILP of PPIPE.md): for one model, every
//! way to cut it into at most P contiguous partitions, give each partition a GPU class and a
//! share, and pick one batch size for the whole pipeline, that meets the SLO.
//!
//! Per partition `[i, j)` on a class with `g` GPUs per server at share 1/k and batch b
//! (PPIPE.md, "Details of the reference plans"):
//! - inference latency `lat_b[i, j]` = the sum of the block latencies i..j-1 at b and k;
//! - transfer latency = `t_{j-1} * b` (none for the last partition), where the per-request
//!   transfer time of cut c is `t_c = bytes_c * 8 / (bandwidth_gbps * 1000)` microseconds;
//! - per-vGPU throughput = `min(1e6 * b / lat_b[i, j], 1e6 / (t_{i-1} * k * g) if i > 0,
//!   1e6 / (t_{j-1} * k * g) if j < M)` requests per second (the NIC of a server is shared
//!   by its g GPUs and each GPU's k processes).
//!
//! A pipeline meets the SLO T when the sum over its partitions of inference and transfer
//! latency, plus the batch-build estimate `round(1.3e6 * (b - 1) / est_xput)` and the margin
//! `round(0.4 * T)`, is at most T.

use serde::Serialize;

use crate::config::Fleet;
use crate::profiles::ModelProfile;

/// One partition of a pipeline configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartitionConfig {
    /// First block.
    pub first: usize,
    /// One past the last block.
    pub end: usize,
    /// Index of the class in the fleet.
    pub class: usize,
    /// Share k (1/k of a GPU per vGPU).
    pub share: usize,
    /// Inference latency of the batch, microseconds.
    pub infer_us: u64,
    /// Transfer latency of the batch to the next partition, microseconds (0 for the last).
    pub transfer_us: f64,
    /// Requests per second one vGPU sustains.
    pub vgpu_rps: f64,
}

/// A pipeline configuration that meets the SLO.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Column {
    /// Batch size of every partition.
    pub batch: usize,
    /// Partitions in order, covering blocks 0..M.
    pub parts: Vec<PartitionConfig>,
    /// Predicted latency: inference and transfers, plus the batch-build estimate.
    pub latency_us: f64,
}

/// What limits the enumeration.
#[derive(Clone, Debug)]
pub struct ColumnOptions {
    /// At most this many partitions per pipeline (1..=3).
    pub max_partitions: usize,
    /// Shares a partition may use (k for 1/k of a GPU); `[1]` for whole GPUs only (NP).
    pub shares: Vec<usize>,
    /// Largest batch at share 1/k, by k - 1 (PPIPE.md: 8, 4, 2, 2); further capped by the
    /// batch columns the profiles have. A share beyond the list is not used.
    pub max_batch_per_share: Vec<usize>,
    /// Batch sizes allowed (None: every size up to the limits).
    pub batches: Option<Vec<usize>>,
    /// Planning margin as a fraction of the SLO.
    pub margin: f64,
    /// Batch-build factor.
    pub batch_build_factor: f64,
}

impl Default for ColumnOptions {
    fn default() -> Self {
        ColumnOptions {
            max_partitions: 2,
            shares: vec![1, 2, 3, 4],
            max_batch_per_share: vec![8, 4, 2, 2],
            batches: None,
            margin: 0.4,
            batch_build_factor: 1.3,
        }
    }
}

/// Per-request transfer time of each cut, microseconds.
pub fn cut_us(model: &ModelProfile, bandwidth_gbps: f64) -> Vec<f64> {
    model.cut_bytes.iter().map(|&b| b as f64 * 8.0 / (bandwidth_gbps * 1000.0)).collect()
}

/// Shares a class may use for a model: those it has profiles for, limited by the fleet's
/// `shares` and the options.
fn shares_of(model: &ModelProfile, fleet: &Fleet, class: usize, o: &ColumnOptions) -> Vec<usize> {
    let c = &fleet.class[class];
    model
        .shares(&c.name)
        .into_iter()
        .filter(|k| c.shares.as_ref().is_none_or(|s| s.contains(k)))
        .filter(|k| o.shares.contains(k))
        .filter(|&k| o.max_batch_per_share.get(k - 1).is_some_and(|&b| b > 0))
        .collect()
}

/// The partition `[first, end)` on `class` at share `k` and batch `b`, when profiled.
#[allow(clippy::too_many_arguments)]
pub fn partition_config(
    model: &ModelProfile,
    fleet: &Fleet,
    cuts: &[f64],
    first: usize,
    end: usize,
    class: usize,
    k: usize,
    b: usize,
) -> Option<PartitionConfig> {
    let c = &fleet.class[class];
    let infer_us = model.share(&c.name, k)?.range_us(first..end, b)?;
    let g = c.gpus_per_server as f64;
    let mut rps = 1e6 * b as f64 / infer_us as f64;
    if first > 0 && cuts[first - 1] > 0.0 {
        rps = rps.min(1e6 / (cuts[first - 1] * k as f64 * g));
    }
    if end < model.blocks && cuts[end - 1] > 0.0 {
        rps = rps.min(1e6 / (cuts[end - 1] * k as f64 * g));
    }
    let transfer_us = if end < model.blocks { cuts[end - 1] * b as f64 } else { 0.0 };
    Some(PartitionConfig { first, end, class, share: k, infer_us, transfer_us, vgpu_rps: rps })
}

/// The batch-build estimate of PPIPE.md, microseconds: 0 at batch 1 or without an estimate
/// (`None`, the pre-solve); infinite for larger batches when the estimate is 0 (a model the
/// pre-solve could not serve plans at batch 1 only).
pub fn batch_build_us(b: usize, est_xput: Option<f64>, factor: f64) -> f64 {
    if b <= 1 {
        return 0.0;
    }
    match est_xput {
        None => 0.0,
        Some(x) if x > 0.0 => (factor * 1e6 * (b as f64 - 1.0) / x).round(),
        Some(_) => f64::INFINITY,
    }
}

/// Every SLO-feasible pipeline configuration of `model` on `fleet`. `est_xput` is the
/// model's throughput estimate for the batch-build term (None: no batch-build term).
pub fn enumerate(
    model: &ModelProfile,
    fleet: &Fleet,
    slo_us: u64,
    est_xput: Option<f64>,
    o: &ColumnOptions,
) -> Vec<Column> {
    let cuts = cut_us(model, fleet.bandwidth_gbps);
    let m = model.blocks;
    let margin = (o.margin * slo_us as f64).round();
    let budget = slo_us as f64 - margin;
    // Every (class, share) a partition may use.
    let options: Vec<(usize, usize)> =
        (0..fleet.class.len()).flat_map(|c| shares_of(model, fleet, c, o).into_iter().map(move |k| (c, k))).collect();
    let max_b = options.iter().map(|&(_, k)| o.max_batch_per_share[k - 1]).max().unwrap_or(0);
    let mut out = vec![];
    for b in 1..=max_b {
        if o.batches.as_ref().is_some_and(|l| !l.contains(&b)) {
            continue;
        }
        let build = batch_build_us(b, est_xput, o.batch_build_factor);
        if build > budget {
            break;
        }
        // Depth-first over cut positions and (class, share) per partition.
        let mut stack: Vec<PartitionConfig> = vec![];
        extend(model, fleet, &cuts, &options, o, b, 0, m, budget - build, build, &mut stack, &mut out);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn extend(
    model: &ModelProfile,
    fleet: &Fleet,
    cuts: &[f64],
    options: &[(usize, usize)],
    o: &ColumnOptions,
    b: usize,
    first: usize,
    m: usize,
    left: f64,
    build: f64,
    stack: &mut Vec<PartitionConfig>,
    out: &mut Vec<Column>,
) {
    let last_allowed = stack.len() + 1 == o.max_partitions;
    let ends: Vec<usize> = if last_allowed { vec![m] } else { (first + 1..=m).collect() };
    for end in ends {
        for &(class, k) in options {
            if b > o.max_batch_per_share[k - 1] {
                continue;
            }
            let Some(p) = partition_config(model, fleet, cuts, first, end, class, k, b) else { continue };
            let spent = p.infer_us as f64 + p.transfer_us;
            if spent > left {
                continue;
            }
            stack.push(p);
            if end == m {
                let latency_us = stack.iter().map(|p| p.infer_us as f64 + p.transfer_us).sum::<f64>() + build;
                out.push(Column { batch: b, parts: stack.clone(), latency_us });
            } else {
                extend(model, fleet, cuts, options, o, b, end, m, left - spent, build, stack, out);
            }
            stack.pop();
        }
    }
}

/// A column that was dropped because another one does at least as well with the same GPUs.
#[derive(Clone, Debug)]
pub struct Dominated {
    /// Index of the surviving column.
    pub by: usize,
    /// Per partition, vGPUs of the survivor that replace one vGPU of the dropped column
    /// (k_survivor / k_dropped, an integer).
    pub ratio: Vec<usize>,
}

/// Whether `a` dominates `b`: same cut positions are not needed, but the same number of
/// partitions, the same class per partition, and per partition a share k_a that is a
/// multiple of k_b with `(k_a / k_b) * x_a >= x_b`. Then `n` vGPUs of `b` can be replaced by
/// `n * k_a / k_b` vGPUs of `a` on the same physical GPUs of the same (partition, class)
/// pool, with at least the same throughput: `b` is never needed.
fn dominates(a: &Column, b: &Column) -> Option<Vec<usize>> {
    if a.parts.len() != b.parts.len() {
        return None;
    }
    let mut ratio = Vec::with_capacity(a.parts.len());
    for (pa, pb) in a.parts.iter().zip(&b.parts) {
        if pa.class != pb.class || pa.share % pb.share != 0 {
            return None;
        }
        let r = pa.share / pb.share;
        if r as f64 * pa.vgpu_rps < pb.vgpu_rps {
            return None;
        }
        ratio.push(r);
    }
    Some(ratio)
}

fn equal_rates(a: &Column, b: &Column, ratio: &[usize]) -> bool {
    a.parts.iter().zip(&b.parts).zip(ratio).all(|((pa, pb), &r)| r == 1 && pa.vgpu_rps == pb.vgpu_rps)
}

/// Splits columns into those kept and, for every dropped one, the kept column that dominates
/// it (see [`dominates`]; among equals the first is kept). Ratios compose along chains.
pub fn prune(columns: &[Column]) -> (Vec<usize>, Vec<Option<Dominated>>) {
    let n = columns.len();
    let mut direct: Vec<Option<Dominated>> = vec![None; n];
    for b in 0..n {
        for a in 0..n {
            if a == b {
                continue;
            }
            if let Some(ratio) = dominates(&columns[a], &columns[b]) {
                // Mutual domination only between equals: keep the lower index.
                if equal_rates(&columns[a], &columns[b], &ratio) && a > b {
                    continue;
                }
                direct[b] = Some(Dominated { by: a, ratio });
                break;
            }
        }
    }
    // Follow chains to a survivor; the order is strict (ties broken by index), so they end.
    let mut resolved: Vec<Option<Dominated>> = vec![None; n];
    for b in 0..n {
        let Some(d) = &direct[b] else { continue };
        let mut by = d.by;
        let mut ratio = d.ratio.clone();
        let mut steps = 0;
        while let Some(next) = &direct[by] {
            ratio = ratio.iter().zip(&next.ratio).map(|(x, y)| x * y).collect();
            by = next.by;
            steps += 1;
            if steps > n {
                break;
            }
        }
        resolved[b] = Some(Dominated { by, ratio });
    }
    let kept = (0..n).filter(|&i| resolved[i].is_none()).collect();
    (kept, resolved)
}
