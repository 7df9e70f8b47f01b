//! The native policies: `ppipe`, `reactive` and `triton` batching, earliest-finish reservation.

use crate::{Action, BatchingPolicy, Candidate, PolicyFailure, QueueHost, ReservationPolicy, Routing};

/// The batching policies built in, by name.
pub const BATCHING: [&str; 3] = ["ppipe", "reactive", "triton"];

/// A native batching policy by name (`ppipe`, `reactive`, `triton`), with defaults.
pub fn batching(name: &str) -> Option<Box<dyn BatchingPolicy>> {
    match name {
        "ppipe" => Some(Box::new(Ppipe::default())),
        "reactive" => Some(Box::new(Reactive)),
        "triton" => Some(Box::new(Triton::default())),
        _ => None,
    }
}

/// Reservation-based adaptive batching (PPIPE.md, data plane), on a queue ordered by deadline:
///
/// 1. probe every lane (pipeline) at its planned batch size and take the one with the least
///    waiting; its size is the planned one, or the largest whose pure latency still meets the
///    head's deadline when measured times show the workers slower than profiled;
/// 2. from the planned size down, take the largest batch whose finish meets the head's
///    deadline; on the head's first look only sizes in `[first_look_fraction x planned,
///    planned]` are tried, so a head that cannot ride a nearly full batch is dropped rather
///    than shrinking the batches of everyone behind it;
/// 3. no size fits: drop the head and start over; fewer requests queued than the size that
///    fits: wait until the last instant at which a batch one request larger would still meet
///    the head's deadline (any arrival asks again), and at that instant dispatch what is
///    there; otherwise dispatch along the reserved route.
///
/// Step 3's wait buys throughput only when the load needs full batches. At light load the
/// policy is work-conserving: before step 2, when fewer requests are queued than the planned
/// size, the chosen lane has an idle first-stage worker, the queued requests meet the head's
/// deadline on it, and the queue's arrival rate is at most `light_load` times what the lanes
/// sustain at the size that would go now (their throughput at `queued`), the queued requests
/// go at once. Under load the rate exceeds that
/// share and the policy waits to fill batches as PPipe does; `light_load = 0` is PPipe as
/// published.
#[derive(Clone, Debug)]
pub struct Ppipe {
    /// Lower end of the sizes tried on a head's first look, as a fraction of the planned size.
    pub first_look_fraction: f64,
    /// Share of the lanes' throughput at the current size below which a batch that is not
    /// full goes at once on an idle lane (0: never, PPipe as published).
    pub light_load: f64,
}

/// Default share of throughput below which `ppipe` dispatches without waiting.
pub const LIGHT_LOAD: f64 = 0.5;

impl Default for Ppipe {
    fn default() -> Self {
        Ppipe { first_look_fraction: 0.95, light_load: LIGHT_LOAD }
    }
}

/// The lane with the least waiting at its planned batch size (the first on ties), among the
/// lanes whose pure batch-1 latency still meets the head's deadline when any does (with
/// measured times slower than the profiles, a lane may no longer fit the SLO at all).
fn least_waiting(host: &mut dyn QueueHost) -> usize {
    let reach = host.deadline(0) - host.now();
    let any = (0..host.lanes()).any(|l| host.latency(l, 1) <= reach);
    let mut best: Option<(usize, f64)> = None;
    for lane in 0..host.lanes() {
        if any && host.latency(lane, 1) > reach {
            continue;
        }
        let planned = host.planned_batch(lane);
        let wait = host.probe(lane, planned).wait;
        if best.is_none_or(|(_, w)| wait < w) {
            best = Some((lane, wait));
        }
    }
    best.map_or(0, |(lane, _)| lane)
}

/// A lane other than `skip` where a batch with the head meets its `deadline`: the first in
/// lane order, with the largest such batch up to its planned size and what is `queued`.
fn other_lane(host: &mut dyn QueueHost, skip: usize, queued: usize, deadline: f64) -> Option<(usize, usize)> {
    for lane in (0..host.lanes()).filter(|&l| l != skip) {
        if host.probe(lane, 1).finish > deadline {
            continue;
        }
        let top = host.planned_batch(lane).max(1).min(queued);
        let batch = (1..=top).rev().find(|&b| b == 1 || host.probe(lane, b).finish <= deadline).unwrap_or(1);
        return Some((lane, batch));
    }
    None
}

impl BatchingPolicy for Ppipe {
    fn name(&self) -> &str {
        "ppipe"
    }

    fn routing(&self) -> Routing {
        Routing::Reserved
    }

    fn decide(&mut self, host: &mut dyn QueueHost) -> Result<Action, PolicyFailure> {
        Ok(self.decision(host))
    }
}

impl Ppipe {
    fn decision(&mut self, host: &mut dyn QueueHost) -> Action {
        let queued = host.queue_len();
        if queued == 0 || host.lanes() == 0 {
            return Action::Idle;
        }
        let lane = least_waiting(host);
        let deadline = host.deadline(0);
        // The planned size, or the largest that could still meet the head's deadline on an
        // idle route when the workers turn out slower than profiled.
        let mut planned = host.planned_batch(lane).max(1);
        while planned > 1 && host.now() + host.latency(lane, planned) > deadline {
            planned -= 1;
        }
        // Light load: an idle lane takes what is queued at once.
        if queued < planned && self.light_load > 0.0 && host.idle_workers(lane) > 0 {
            let capacity: f64 =
                (0..host.lanes()).map(|l| host.throughput(l, queued.min(host.planned_batch(l).max(1)))).sum();
            if host.arrival_rate() <= self.light_load * capacity && host.probe(lane, queued).finish <= deadline {
                return Action::Dispatch { lane, batch: queued };
            }
        }
        let lowest = if host.first_look() {
            ((self.first_look_fraction * planned as f64).ceil() as usize).clamp(1, planned)
        } else {
            1
        };
        // Overload: two full batches wait, or more arrives than the lanes serve at their
        // planned sizes. A head that only a smaller batch, or another lane, could serve in
        // time is then dropped: shrinking batches would cost every request behind it
        // throughput (measured on a saturated box: goodput 0.74 -> 0.92 of capacity at 3x).
        let overloaded = |host: &mut dyn QueueHost| {
            queued >= 2 * planned
                || host.arrival_rate()
                    > (0..host.lanes()).map(|l| host.throughput(l, host.planned_batch(l).max(1))).sum()
        };
        let Some(fit) = (lowest..=planned).rev().find(|&b| host.probe(lane, b).finish <= deadline) else {
            // Another lane may still serve the head in time (the least waiting one at its
            // planned size need not be the one that can).
            if !overloaded(host)
                && let Some((lane, batch)) = other_lane(host, lane, queued, deadline)
            {
                return Action::Dispatch { lane, batch };
            }
            return Action::Drop { count: 1 };
        };
        if fit < planned && overloaded(host) {
            return Action::Drop { count: 1 };
        }
        if queued >= fit {
            return Action::Dispatch { lane, batch: fit };
        }
        // Fewer requests than fit: wait for one more while a batch of queued + 1 still fits.
        let slack = deadline - host.probe(lane, queued + 1).finish;
        let now = host.now();
        if slack > 0.0 { Action::Wait { until: now + slack } } else { Action::Dispatch { lane, batch: queued } }
    }
}

/// Drops expired heads and returns the lane to serve now: the lane with an idle worker whose
/// probe at the planned size finishes first, if any.
fn idle_lane(host: &mut dyn QueueHost) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for lane in 0..host.lanes() {
        if host.idle_workers(lane) == 0 {
            continue;
        }
        let planned = host.planned_batch(lane);
        let finish = host.probe(lane, planned).finish;
        if best.is_none_or(|(_, f)| finish < f) {
            best = Some((lane, finish));
        }
    }
    best.map(|(lane, _)| lane)
}

/// Per-pool batching without reservations, after Nexus: whenever a worker of a pool is idle,
/// it takes up to its planned batch from the pool's queue at once; a head that cannot finish
/// by its deadline even alone (batch 1, no waiting) is dropped first. Every stage re-batches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reactive;

impl BatchingPolicy for Reactive {
    fn name(&self) -> &str {
        "reactive"
    }

    fn routing(&self) -> Routing {
        Routing::PerPool
    }

    fn decide(&mut self, host: &mut dyn QueueHost) -> Result<Action, PolicyFailure> {
        Ok(self.decision(host))
    }
}

impl Reactive {
    fn decision(&mut self, host: &mut dyn QueueHost) -> Action {
        let queued = host.queue_len();
        if queued == 0 || host.lanes() == 0 {
            return Action::Idle;
        }
        let fastest = (0..host.lanes()).map(|l| host.latency(l, 1)).fold(f64::INFINITY, f64::min);
        if host.now() + fastest > host.deadline(0) {
            return Action::Drop { count: 1 };
        }
        match idle_lane(host) {
            Some(lane) => Action::Dispatch { lane, batch: queued.min(host.planned_batch(lane).max(1)) },
            None => Action::Idle,
        }
    }
}

/// Per-pool dynamic batching, after Triton's dynamic batcher: an idle worker takes a full
/// (planned, the "preferred") batch when one is queued; otherwise it waits until the oldest
/// request has been queued for the maximum queue delay and then takes what is there. Requests
/// whose deadline has passed are dropped (Triton's queue policy with a timeout of the SLO).
#[derive(Clone, Debug, Default)]
pub struct Triton {
    /// Maximum queue delay, microseconds; `None`: the plan's batch-build estimate of the lane.
    pub max_queue_delay_us: Option<f64>,
}

impl BatchingPolicy for Triton {
    fn name(&self) -> &str {
        "triton"
    }

    fn routing(&self) -> Routing {
        Routing::PerPool
    }

    fn decide(&mut self, host: &mut dyn QueueHost) -> Result<Action, PolicyFailure> {
        Ok(self.decision(host))
    }
}

impl Triton {
    fn decision(&mut self, host: &mut dyn QueueHost) -> Action {
        let queued = host.queue_len();
        if queued == 0 || host.lanes() == 0 {
            return Action::Idle;
        }
        let now = host.now();
        if host.deadline(0) < now {
            return Action::Drop { count: 1 };
        }
        let Some(lane) = idle_lane(host) else { return Action::Idle };
        let preferred = host.planned_batch(lane).max(1);
        if queued >= preferred {
            return Action::Dispatch { lane, batch: preferred };
        }
        let delay = self.max_queue_delay_us.unwrap_or_else(|| host.batch_build(lane));
        let due = host.enqueued(0) + delay;
        if due <= now { Action::Dispatch { lane, batch: queued } } else { Action::Wait { until: due } }
    }
}

/// The default reservation policy: the candidate with the earliest finish (the first on ties).
#[derive(Clone, Copy, Debug, Default)]
pub struct EarliestFinish;

impl ReservationPolicy for EarliestFinish {
    fn name(&self) -> &str {
        "earliest-finish"
    }

    fn choose(&mut self, candidates: &[Candidate]) -> Result<usize, PolicyFailure> {
        Ok(earliest_finish(candidates))
    }
}

/// Index of the candidate whose output is ready to move on earliest ([`Candidate::output_ready`]:
/// its finish, or when its server's uplink can carry the output on), then the earliest finish,
/// then the first (0 when empty). Looking past the inference to the uplink keeps a busy
/// server's NIC from holding batches back when another server's is free.
pub fn earliest_finish(candidates: &[Candidate]) -> usize {
    let mut best = 0;
    for (i, c) in candidates.iter().enumerate() {
        let b = &candidates[best];
        if c.output_ready < b.output_ready || c.output_ready == b.output_ready && c.finish < b.finish {
            best = i;
        }
    }
    best
}
