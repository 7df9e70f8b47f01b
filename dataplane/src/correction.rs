//! Online profile correction: per worker and batch size, the ratio of measured to profiled
//! batch time, as a robust running estimate: the mean of the last [`WINDOW`] reports without
//! their highest and lowest tenth (at least one of each). A queue's time is the sum of its
//! batches' times, which a median understates when they skew right, as batch times on a busy
//! machine do; trimming keeps a fault's outlier out.
//!
//! [`Overrun`] is the second correction: how much later than reserved a model's batches end
//! when they queued, which stretches the waits the scheduler plans with.
//!
//! Profiles are measured once, on an idle device; in service a worker may be slower
//! (processes sharing its cores, a throttled GPU, another tenant) or faster. The scheduler
//! reserves each worker for its profiled time times its ratio, so admission and batching
//! follow the capacity the workers really have. A batch size without reports of its own
//! takes the worker's ratio over every size; a worker without [`MIN_REPORTS`] reports keeps
//! its profile (ratio 1).

use std::collections::{BTreeMap, VecDeque};

/// Reports an estimate is taken over (per worker and batch size, and per worker).
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

    fn trimmed_mean(&self) -> Option<f64> {
        if self.0.len() < MIN_REPORTS {
            return None;
        }
        let mut v: Vec<f64> = self.0.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let cut = v.len() / 10 + 1;
        let kept = &v[cut.min(v.len() / 2)..v.len() - cut.min((v.len() - 1) / 2)];
        Some(kept.iter().sum::<f64>() / kept.len() as f64)
    }
}

#[derive(Clone, Debug, Default)]
struct WorkerRatios {
    all: Window,
    by_batch: BTreeMap<usize, Window>,
    /// Cached estimates, recomputed on each report.
    all_ratio: Option<f64>,
    batch_ratio: BTreeMap<usize, f64>,
    reports: u64,
}

impl WorkerRatios {
    /// Whether any ratio in effect differs from 1.
    fn corrects(&self) -> bool {
        self.all_ratio.is_some_and(|r| r != 1.0) || self.batch_ratio.values().any(|&r| r != 1.0)
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
    /// Measured over profiled time (trimmed mean of recent reports).
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
        w.all_ratio = w.all.trimmed_mean();
        let win = w.by_batch.entry(batch).or_default();
        win.push(r);
        if let Some(m) = win.trimmed_mean() {
            w.batch_ratio.insert(batch, m);
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
        w.batch_ratio.get(&batch).copied().or(w.all_ratio).unwrap_or(1.0)
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
                ratio: w.all_ratio.unwrap_or(1.0),
                by_batch: w.batch_ratio.iter().map(|(&batch, &ratio)| BatchRatio { batch, ratio }).collect(),
            })
            .collect()
    }
}

/// Batches the overrun is taken over.
pub const OVERRUN_WINDOW: usize = 200;
/// Batches needed before the overrun departs from 0.
pub const OVERRUN_MIN_REPORTS: usize = 20;
/// Batches reserved to wait less than this before their compute (microseconds) are not
/// taken: their overrun is the worker's jitter, not a queue's.
pub const OVERRUN_MIN_WAIT_US: f64 = 1_000.0;
/// The largest overrun (a wait is never planned as more than twice as long as reserved).
pub const OVERRUN_MAX: f64 = 1.0;
/// The quantile of the window taken: nearly the largest overrun seen lately, so that bursts
/// (a box whose cores other processes take for a second) are covered, not only the typical
/// batch (the median left 15% of the answers late under overload on a shared 2-core box, the
/// 90th percentile 8%, this 2-3%).
pub const OVERRUN_QUANTILE: f64 = 0.99;

/// How much later than reserved a model's batches end, as a fraction of the time they were
/// reserved to wait for their workers (the queue ahead of them): the [`OVERRUN_QUANTILE`] of
/// the last [`OVERRUN_WINDOW`] batches that waited (a batch that ends early counts as 0), at
/// most [`OVERRUN_MAX`].
///
/// Reservations follow the workers' corrected times, but a queue of reservations is only as
/// good as the sum of its batches' times, and on a noisy machine that sum runs over, the more
/// the longer the queue: under overload every admitted request sits just inside its deadline
/// and the overruns make a good part of them late. The scheduler answers every probe (its
/// policies' and its admission's) with the waiting part stretched by this fraction, so queues
/// stop short of the deadlines by the overruns seen lately, while a request that an idle lane
/// can take at once keeps its whole SLO. Every batch that ends reports, so an overrun that
/// grew comes back down as soon as the batches keep their times.
#[derive(Clone, Debug)]
pub struct Overrun {
    window: VecDeque<f64>,
    ratio: f64,
    reports: u64,
}

impl Default for Overrun {
    fn default() -> Self {
        Overrun { window: VecDeque::with_capacity(OVERRUN_WINDOW), ratio: 0.0, reports: 0 }
    }
}

impl Overrun {
    /// A batch reserved to wait `wait` microseconds for its workers and to end at `reserved`
    /// ended at `actual` (microseconds on one clock). Waits under [`OVERRUN_MIN_WAIT_US`]
    /// and times that are not finite are ignored.
    pub fn report(&mut self, wait: f64, reserved: f64, actual: f64) {
        if !(wait.is_finite() && reserved.is_finite() && actual.is_finite()) || wait < OVERRUN_MIN_WAIT_US {
            return;
        }
        if self.window.len() == OVERRUN_WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(((actual - reserved) / wait).clamp(0.0, OVERRUN_MAX));
        self.reports += 1;
        // Sorting two hundred numbers on every tenth batch keeps the cost per batch small.
        if self.window.len() >= OVERRUN_MIN_REPORTS && self.reports.is_multiple_of(10) {
            self.ratio = crate::stats::percentiles(self.window.iter().copied().collect(), &[OVERRUN_QUANTILE])[0];
        }
    }

    /// The overrun in effect, a fraction of the reserved wait (0 until enough batches have
    /// reported).
    pub fn ratio(&self) -> f64 {
        self.ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_robust_means_per_batch_with_a_worker_fallback() {
        let mut c = Corrections::new(2);
        assert_eq!(c.ratio(0, 4), 1.0, "no reports: the profile");
        assert!(c.is_identity());
        assert!(c.report(0, 4, 200.0, 100.0));
        assert!(c.report(0, 4, 210.0, 100.0));
        assert_eq!(c.ratio(0, 4), 1.0, "two reports are not enough");
        assert!(c.report(0, 4, 5_000.0, 100.0), "an outlier is taken, clamped");
        assert_eq!(c.ratio(0, 4), 2.1, "the trimmed mean ignores the outlier");
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

    #[test]
    fn overruns_are_learned_and_come_back_down() {
        let mut o = Overrun::default();
        for _ in 0..OVERRUN_MIN_REPORTS - 1 {
            o.report(100_000.0, 120_000.0, 170_000.0);
        }
        assert_eq!(o.ratio(), 0.0, "too few reports");
        o.report(100_000.0, 120_000.0, 170_000.0);
        assert_eq!(o.ratio(), 0.5);
        o.report(500.0, 2_000.0, 50_000.0);
        o.report(f64::NAN, 1.0, 1.0);
        assert_eq!(o.reports, OVERRUN_MIN_REPORTS as u64, "short waits and bad times are ignored");
        for _ in 0..OVERRUN_WINDOW {
            o.report(100_000.0, 120_000.0, 320_000.0);
        }
        assert_eq!(o.ratio(), OVERRUN_MAX, "clamped");
        for _ in 0..OVERRUN_WINDOW {
            o.report(100_000.0, 120_000.0, 110_000.0);
        }
        assert_eq!(o.ratio(), 0.0, "batches that keep their times bring it back to 0");
    }
}
