//! Online profile correction: per worker and batch size, the ratio of measured to profiled
//! batch time, as a robust running estimate (the median of the last [`WINDOW`] reports).
//!
//! Profiles are measured once, on an idle device; in service a worker may be slower
//! (processes sharing its cores, a throttled GPU, another tenant) or faster. The scheduler
//! reserves each worker for its profiled time times its ratio, so admission and batching
//! follow the capacity the workers really have. A batch size without reports of its own
//! takes the worker's ratio over every size; a worker without [`MIN_REPORTS`] reports keeps
//! its profile (ratio 1).

use std::collections::{BTreeMap, VecDeque};

/// Reports a median is taken over (per worker and batch size, and per worker).
pub const WINDOW: usize = 15;
/// Reports needed before a ratio replaces the profile.
pub const MIN_REPORTS: usize = 3;
/// Ratios are clamped to `[1 / CLAMP, CLAMP]`: a report off by more is a fault, not a speed.
pub const CLAMP: f64 = 20.0;

#[derive(Clone, Debug, Default)]
struct Window(VecDeque<f64>);

impl Window {
    fn push(&mut self, r: f64) {
        if self.0.len() == WINDOW {
            self.0.pop_front();
        }
        self.0.push_back(r);
    }

    fn median(&self) -> Option<f64> {
        if self.0.len() < MIN_REPORTS {
            return None;
        }
        let mut v: Vec<f64> = self.0.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) })
    }
}

#[derive(Clone, Debug, Default)]
struct WorkerRatios {
    all: Window,
    by_batch: BTreeMap<usize, Window>,
    /// Cached medians, recomputed on each report.
    all_median: Option<f64>,
    batch_median: BTreeMap<usize, f64>,
    reports: u64,
}

impl WorkerRatios {
    /// Whether any ratio in effect differs from 1.
    fn corrects(&self) -> bool {
        self.all_median.is_some_and(|r| r != 1.0) || self.batch_median.values().any(|&r| r != 1.0)
    }
}

/// The ratios of every worker of a layout.
#[derive(Clone, Debug, Default)]
pub struct Corrections {
    workers: Vec<WorkerRatios>,
    /// Workers with a ratio other than 1 in effect.
    correcting: usize,
}

/// A worker's correction, for metrics and metadata.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WorkerCorrection {
    /// Worker (layout index).
    pub worker: usize,
    /// Reports taken.
    pub reports: u64,
    /// The ratio over every batch size (1 until enough reports).
    pub ratio: f64,
    /// Per batch size with enough reports.
    pub by_batch: Vec<BatchRatio>,
}

/// The correction of one batch size.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BatchRatio {
    /// Batch size.
    pub batch: usize,
    /// Measured over profiled time (median of recent reports).
    pub ratio: f64,
}

impl Corrections {
    /// No reports yet for `workers` workers.
    pub fn new(workers: usize) -> Corrections {
        Corrections { workers: vec![WorkerRatios::default(); workers], correcting: 0 }
    }

    /// Worker `worker` ran a batch of `batch` in `measured_us` where its profile says
    /// `profiled_us`. Returns false (and changes nothing) for a report that cannot be used: an
    /// unknown worker, a batch of 0, a time that is not finite and positive.
    pub fn report(&mut self, worker: usize, batch: usize, measured_us: f64, profiled_us: f64) -> bool {
        let usable =
            batch > 0 && measured_us.is_finite() && measured_us > 0.0 && profiled_us.is_finite() && profiled_us > 0.0;
        let Some(w) = self.workers.get_mut(worker).filter(|_| usable) else { return false };
        let r = (measured_us / profiled_us).clamp(1.0 / CLAMP, CLAMP);
        let before = w.corrects();
        w.reports += 1;
        w.all.push(r);
        w.all_median = w.all.median();
        let win = w.by_batch.entry(batch).or_default();
        win.push(r);
        if let Some(m) = win.median() {
            w.batch_median.insert(batch, m);
        }
        match (before, w.corrects()) {
            (false, true) => self.correcting += 1,
            (true, false) => self.correcting -= 1,
            _ => {}
        }
        true
    }

    /// Whether every ratio in effect is 1 (the profiles hold as they are): callers may skip
    /// the per-worker lookups.
    pub fn is_identity(&self) -> bool {
        self.correcting == 0
    }

    /// The factor to apply to `worker`'s profiled time at `batch`.
    pub fn ratio(&self, worker: usize, batch: usize) -> f64 {
        if self.correcting == 0 {
            return 1.0;
        }
        let Some(w) = self.workers.get(worker) else { return 1.0 };
        w.batch_median.get(&batch).copied().or(w.all_median).unwrap_or(1.0)
    }

    /// Every worker that has reported, in worker order.
    pub fn summary(&self) -> Vec<WorkerCorrection> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.reports > 0)
            .map(|(worker, w)| WorkerCorrection {
                worker,
                reports: w.reports,
                ratio: w.all_median.unwrap_or(1.0),
                by_batch: w.batch_median.iter().map(|(&batch, &ratio)| BatchRatio { batch, ratio }).collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_robust_medians_per_batch_with_a_worker_fallback() {
        let mut c = Corrections::new(2);
        assert_eq!(c.ratio(0, 4), 1.0, "no reports: the profile");
        assert!(c.is_identity());
        assert!(c.report(0, 4, 200.0, 100.0));
        assert!(c.report(0, 4, 210.0, 100.0));
        assert_eq!(c.ratio(0, 4), 1.0, "two reports are not enough");
        assert!(c.report(0, 4, 5_000.0, 100.0), "an outlier is taken, clamped");
        assert_eq!(c.ratio(0, 4), 2.1, "the median ignores the outlier");
        assert!(!c.is_identity());
        assert_eq!(c.ratio(0, 8), 2.1, "another size falls back to the worker's ratio");
        assert_eq!(c.ratio(1, 4), 1.0, "another worker keeps its profile");
        for _ in 0..WINDOW {
            c.report(0, 4, 50.0, 100.0);
        }
        assert_eq!(c.ratio(0, 4), 0.5, "old reports leave the window");
        assert!(!c.report(5, 1, 1.0, 1.0), "unknown worker");
        assert!(!c.report(0, 0, 1.0, 1.0), "batch 0");
        assert!(!c.report(0, 1, f64::NAN, 1.0) && !c.report(0, 1, -3.0, 1.0) && !c.report(0, 1, 1.0, 0.0));
        let s = c.summary();
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].worker, s[0].reports, s[0].by_batch.clone()),
            (0, 3 + WINDOW as u64, vec![BatchRatio { batch: 4, ratio: 0.5 }])
        );
    }
}
