//! The DART-r baseline, built as PPIPE.md ("DART-r, as the reference builds it") describes:
//!
//! 1. GPUs are split between models by the NP plan: each model keeps the GPUs of each class
//!    its NP pools use; the GPUs NP leaves unused are divided evenly (integer division)
//!    between the served models. NP's plan is the one with the fewest GPUs at its optimum
//!    (see [`milp`](crate::milp)), which makes the split deterministic.
//! 2. For a model with h high-class and l low-class GPUs: the *unit plan* is the best plan on
//!    one high and one low GPU (whole GPUs, at most two partitions: a two-stage chain in
//!    either order, or a whole-model pipeline on each GPU), replicated min(h, l) times; each
//!    of the |h - l| remaining GPUs of the more numerous class runs the best whole-model
//!    configuration of that class.
//! 3. z = the least throughput / weight over the models (no re-optimisation across models).
//!
//! The high class is the one with the lower whole-model batch-1 latency at share 1, summed
//! over the workload's models. DART-r needs exactly two classes.

use crate::Inputs;
use crate::milp::{Choice, ModelColumns};
use crate::plan::ModelPlan;

/// Index of the high class of a two-class fleet.
pub(crate) fn high_class(inputs: &Inputs) -> usize {
    let sum = |c: usize| -> u64 {
        inputs.profiles.iter().map(|p| p.whole_us(&inputs.fleet.class[c].name, 1, 1).unwrap_or(u64::MAX / 4)).sum()
    };
    if sum(0) <= sum(1) { 0 } else { 1 }
}

/// GPUs per class each served model gets: its NP pools plus an even share of NP's unused GPUs.
pub(crate) fn split(inputs: &Inputs, np: &[ModelPlan]) -> Vec<Vec<u32>> {
    let fleet = &inputs.fleet;
    let mut per: Vec<Vec<u32>> = np
        .iter()
        .map(|m| {
            fleet.class.iter().map(|c| m.pools.iter().filter(|p| p.class == c.name).map(|p| p.gpus).sum()).collect()
        })
        .collect();
    if per.is_empty() {
        return per;
    }
    for (c, class) in fleet.class.iter().enumerate() {
        let used: u32 = per.iter().map(|g| g[c]).sum();
        let extra = class.count.saturating_sub(used) / per.len() as u32;
        for g in &mut per {
            g[c] += extra;
        }
    }
    per
}

/// The pipelines of one model with `hi` and `lo` GPUs, from its whole-GPU columns (one or two
/// partitions).
pub(crate) fn model_choice(mc: &ModelColumns, high: usize, low: usize, hi: u32, lo: u32) -> Choice {
    let best_whole = |class: usize| -> Option<(usize, f64)> {
        mc.all
            .iter()
            .enumerate()
            .filter(|(_, c)| c.parts.len() == 1 && c.parts[0].class == class && c.parts[0].share == 1)
            .map(|(i, c)| (i, c.parts[0].vgpu_rps))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    let wh = best_whole(high);
    let wl = best_whole(low);
    // Unit plan candidates on one high and one low GPU.
    let two_wholes = wh.map_or(0.0, |w| w.1) + wl.map_or(0.0, |w| w.1);
    let chain = mc
        .all
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.parts.len() == 2
                && c.parts.iter().all(|p| p.share == 1)
                && c.parts[0].class != c.parts[1].class
                && c.parts.iter().all(|p| p.class == high || p.class == low)
        })
        .map(|(i, c)| (i, c.parts[0].vgpu_rps.min(c.parts[1].vgpu_rps)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let r = hi.min(lo) as usize;
    let mut out: Choice = vec![];
    let add_whole = |out: &mut Choice, ci: usize, n: usize| {
        if n == 0 {
            return;
        }
        match out.iter_mut().find(|(c, _)| *c == ci) {
            Some(e) => e.1[0] += n,
            None => out.push((ci, vec![n])),
        }
    };
    if r > 0 {
        match chain {
            Some((ci, thr)) if thr > two_wholes => out.push((ci, vec![r, r])),
            _ => {
                if let Some((ci, _)) = wh {
                    add_whole(&mut out, ci, r);
                }
                if let Some((ci, _)) = wl {
                    add_whole(&mut out, ci, r);
                }
            }
        }
    }
    let (rest, class_best) = if hi > lo { ((hi - lo) as usize, wh) } else { ((lo - hi) as usize, wl) };
    if let Some((ci, _)) = class_best {
        add_whole(&mut out, ci, rest);
    }
    out
}
