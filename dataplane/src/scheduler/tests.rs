//! Hand-built scenarios with known answers: which batch, when, on which route, when a drop
//! happens, and how reports correct the timelines.

use super::*;
use crate::correction::OVERRUN_MIN_REPORTS;
use crate::layout::{ClassLayout, Gpu, ModelLayout, PipelineLayout, Server, Stage, Worker};
use poolpipe_policies::native::EarliestFinish;

/// One model, one two-stage pipeline planned at batch 4, SLO 60 ms. Stage 0: `first` workers
/// on server 0 (10/14/18/22 ms at batch 1..4); stage 1: `second` workers, one server each
/// (5/8/11/14 ms), 1 ms of transfer per request between the stages.
pub(crate) fn layout(first: usize, second: usize) -> Layout {
    let mut servers = vec![Server { class: 0 }];
    let mut gpus = vec![];
    let mut workers = vec![];
    let mut stage0 = vec![];
    let mut stage1 = vec![];
    for _ in 0..first {
        stage0.push(workers.len());
        workers.push(Worker { gpu: gpus.len(), server: 0, class: 0, share: 1, model: 0, pipeline: 0, stage: 0 });
        gpus.push(Gpu { class: 0, server: 0 });
    }
    for _ in 0..second {
        servers.push(Server { class: 1 });
        stage1.push(workers.len());
        let server = servers.len() - 1;
        workers.push(Worker { gpu: gpus.len(), server, class: 1, share: 1, model: 0, pipeline: 0, stage: 1 });
        gpus.push(Gpu { class: 1, server });
    }
    let stage = |class, latency_us: Vec<f64>, input, workers: Vec<usize>| Stage {
        first_block: class * 5,
        end_block: class * 5 + 5,
        class,
        share: 1,
        latency_us,
        input_us_per_request: input,
        servers: workers.iter().map(|&w| if class == 0 { 0 } else { w - first + 1 }).collect(),
        workers,
    };
    Layout {
        classes: vec![ClassLayout { name: "hi".into(), gpus: first }, ClassLayout { name: "lo".into(), gpus: second }],
        servers,
        gpus,
        workers,
        models: vec![ModelLayout {
            name: "m".into(),
            slo_us: 60_000.0,
            weight: 1.0,
            throughput: 100.0,
            pipelines: vec![PipelineLayout {
                batch: 4,
                batch_build_us: 5_000.0,
                throughput: 100.0,
                stages: vec![
                    stage(0, vec![10e3, 14e3, 18e3, 22e3], 0.0, stage0),
                    stage(1, vec![5e3, 8e3, 11e3, 14e3], 1e3, stage1),
                ],
            }],
        }],
        objective: 100.0,
    }
}

/// `ppipe` as published (no light-load dispatch): the scenarios below script its waits.
fn published(layout: Layout) -> Scheduler {
    let ppipe = poolpipe_policies::native::Ppipe { light_load: 0.0, ..Default::default() };
    Scheduler::new(layout, vec![Box::new(ppipe)], Box::new(EarliestFinish)).unwrap()
}

fn outputs(s: &mut Scheduler) -> Vec<Output> {
    s.take_outputs().collect()
}

fn dispatch(out: &[Output]) -> &Dispatch {
    match out {
        [Output::Dispatch(d)] => d,
        other => panic!("expected one dispatch, got {other:?}"),
    }
}

fn hop(stage: usize, worker: usize, transfers: Vec<Transfer>, start: f64, finish: f64) -> Hop {
    Hop { stage, worker, transfers, start, finish }
}

fn transfer(from_server: usize, to_server: usize, requests: usize, start: f64, end: f64) -> Transfer {
    Transfer { from_server, to_server, requests, start, end }
}

#[test]
fn waits_for_a_full_batch_then_dispatches_it_on_the_reserved_route() {
    let mut s = published(layout(1, 1));
    s.arrive(0.0, 0, 0).unwrap();
    // A batch of 4 finishes at 22 + 4 + 14 = 40 ms <= 60: wait. A batch of 2 takes 24 ms, so
    // the last instant a second request still fits is 60 - 24 = 36 ms.
    assert!(outputs(&mut s).is_empty());
    assert_eq!(s.next_timer(), Some(36_000.0));
    for (i, t) in [1_000.0, 2_000.0, 3_000.0].into_iter().enumerate() {
        s.arrive(t, 0, i as u64 + 1).unwrap();
    }
    let out = outputs(&mut s);
    let d = dispatch(&out);
    assert_eq!(d.requests, vec![0, 1, 2, 3]);
    assert!(d.completes);
    assert_eq!(
        d.hops,
        vec![
            hop(0, 0, vec![], 3_000.0, 25_000.0),
            hop(1, 1, vec![transfer(0, 1, 4, 25_000.0, 29_000.0)], 29_000.0, 43_000.0)
        ]
    );
    assert_eq!(s.next_timer(), None);
    assert_eq!(s.queued(), 0);
    assert_eq!(s.in_flight(), 1);
}

#[test]
fn at_the_last_feasible_instant_it_dispatches_what_is_there() {
    let mut s = published(layout(1, 1));
    s.arrive(0.0, 0, 7).unwrap();
    assert_eq!(s.next_timer(), Some(36_000.0));
    s.timer(35_999.0);
    assert!(outputs(&mut s).is_empty(), "a timer before its time does nothing");
    s.timer(36_000.0);
    let out = outputs(&mut s);
    let d = dispatch(&out);
    assert_eq!(d.requests, vec![7]);
    assert_eq!(
        d.hops,
        vec![
            hop(0, 0, vec![], 36_000.0, 46_000.0),
            hop(1, 1, vec![transfer(0, 1, 1, 46_000.0, 47_000.0)], 47_000.0, 52_000.0)
        ]
    );
}

#[test]
fn a_head_that_cannot_ride_a_full_batch_on_its_first_look_is_dropped() {
    let mut s = published(layout(1, 1));
    for i in 0..4 {
        s.arrive(i as f64 * 1_000.0, 0, i).unwrap();
    }
    outputs(&mut s);
    // Stage 0 is busy until 25 ms, the link until 29 ms, stage 1 until 43 ms: a batch of 4
    // arriving at 4 ms would finish at 47 + 4 + 14 = 65 ms > its deadline of 64 ms.
    s.arrive(4_000.0, 0, 4).unwrap();
    assert_eq!(outputs(&mut s), vec![Output::Drop { model: 0, request: 4 }]);
    assert_eq!(s.stats().dropped, 1);
    assert_eq!(s.queued(), 0);
}

#[test]
fn the_route_avoids_a_busy_worker_and_shares_the_upstream_servers_link() {
    let mut s = published(layout(2, 2));
    for i in 0..8 {
        s.arrive(0.0, 0, i).unwrap();
    }
    let out = outputs(&mut s);
    assert_eq!(out.len(), 2, "{out:?}");
    let Output::Dispatch(b) = &out[1] else { panic!("{out:?}") };
    // Worker 0 and worker 2 took the first batch; the second runs stage 0 on worker 1 (same
    // server 0, so it waits for the uplink until 26 ms) and stage 1 on worker 3, which is
    // free, rather than on worker 2, busy until 40 ms.
    assert_eq!(b.requests, vec![4, 5, 6, 7]);
    assert_eq!(
        b.hops,
        vec![
            hop(0, 1, vec![], 0.0, 22_000.0),
            hop(1, 3, vec![transfer(0, 2, 4, 26_000.0, 30_000.0)], 30_000.0, 44_000.0)
        ]
    );
}

#[test]
fn reports_correct_the_timelines() {
    let mut s = published(layout(1, 1));
    for i in 0..4 {
        s.arrive(0.0, 0, i).unwrap();
    }
    let first = dispatch(&outputs(&mut s)).clone();
    assert_eq!(first.hops[0].finish, 22_000.0);
    // Stage 0 finished early: the worker is free from 20 ms, not 22 ms.
    s.stage_done(20_000.0, first.batch, 0).unwrap();
    for i in 4..8 {
        s.arrive(20_000.0, 0, i).unwrap();
    }
    let second = dispatch(&outputs(&mut s)).clone();
    assert_eq!(second.hops[0].start, 20_000.0);
    assert!(matches!(s.stage_done(1.0, 999, 0), Err(DataplaneError::UnknownBatch { batch: 999, .. })));
    assert!(matches!(s.arrive(1.0, 3, 9), Err(DataplaneError::UnknownModel { model: 3, .. })));
}

#[test]
fn reactive_batches_per_pool_and_rebatches_at_the_next_stage() {
    let mut s = crate::catalog::scheduler(&layout(2, 1), "reactive").unwrap();
    s.arrive(0.0, 0, 0).unwrap();
    let a = dispatch(&outputs(&mut s)).clone();
    // No waiting: the idle worker takes what is there, one stage only.
    assert_eq!((a.requests.len(), a.hops.len(), a.completes), (1, 1, false));
    s.arrive(1_000.0, 0, 1).unwrap();
    let b = dispatch(&outputs(&mut s)).clone();
    assert_eq!(b.hops[0].worker, 1, "the second idle worker takes the next request");
    s.stage_done(10_000.0, a.batch, 0).unwrap();
    let c = dispatch(&outputs(&mut s)).clone();
    assert_eq!(c.requests, vec![0]);
    assert_eq!(c.hops, vec![hop(1, 2, vec![transfer(0, 1, 1, 10_000.0, 11_000.0)], 11_000.0, 16_000.0)]);
    assert!(c.completes);
    // Request 1 reaches stage 1 while its worker is busy: it waits there and goes when the
    // worker reports.
    s.stage_done(11_000.0, b.batch, 0).unwrap();
    assert!(outputs(&mut s).is_empty());
    s.stage_done(16_000.0, c.batch, 1).unwrap();
    let d = dispatch(&outputs(&mut s)).clone();
    assert_eq!(d.requests, vec![1]);
    assert_eq!(d.hops[0].start, 17_000.0);
}

#[test]
fn triton_waits_for_the_preferred_batch_or_the_queue_delay() {
    let mut s = crate::catalog::scheduler(&layout(1, 1), "triton").unwrap();
    s.arrive(0.0, 0, 0).unwrap();
    assert!(outputs(&mut s).is_empty());
    assert_eq!(s.next_timer(), Some(5_000.0), "max queue delay = the plan's batch-build estimate");
    s.arrive(1_000.0, 0, 1).unwrap();
    s.timer(5_000.0);
    let d = dispatch(&outputs(&mut s)).clone();
    assert_eq!(d.requests, vec![0, 1]);
    assert_eq!(d.hops[0].start, 5_000.0);
}

/// A policy that breaks the rules: the scheduler must fall back, not lose requests.
struct Broken;

impl poolpipe_policies::BatchingPolicy for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn routing(&self) -> Routing {
        Routing::Reserved
    }
    fn decide(&mut self, host: &mut dyn QueueHost) -> Result<Action, poolpipe_policies::PolicyFailure> {
        Ok(Action::Dispatch { lane: 0, batch: host.queue_len() + 1 })
    }
}

#[test]
fn an_invalid_action_falls_back_to_the_native_policy_without_losing_requests() {
    let mut s = Scheduler::new(layout(1, 1), vec![Box::new(Broken)], Box::new(EarliestFinish)).unwrap();
    for i in 0..4 {
        s.arrive(0.0, 0, i).unwrap();
    }
    let out = outputs(&mut s);
    assert!(matches!(&out[0], Output::PolicyError { policy, .. } if policy == "broken"), "{out:?}");
    let dispatched: usize =
        out.iter().map(|o| if let Output::Dispatch(d) = o { d.requests.len() } else { 0 }).sum::<usize>() + s.queued();
    assert_eq!(dispatched, 4);
    assert_eq!(s.policy_name(), "ppipe");
}

/// An untrusted policy that never acts: idles forever, or waits until `until`.
struct Never {
    until: Option<f64>,
}

impl poolpipe_policies::BatchingPolicy for Never {
    fn name(&self) -> &str {
        "never"
    }
    fn routing(&self) -> Routing {
        Routing::Reserved
    }
    fn decide(&mut self, _: &mut dyn QueueHost) -> Result<Action, poolpipe_policies::PolicyFailure> {
        Ok(self.until.map_or(Action::Idle, |until| Action::Wait { until }))
    }
    fn sandboxed(&self) -> bool {
        true
    }
}

#[test]
fn a_sandboxed_policy_that_never_acts_is_replaced_once_a_request_is_past_its_deadline() {
    let mut s = Scheduler::new(layout(1, 1), vec![Box::new(Never { until: None })], Box::new(EarliestFinish)).unwrap();
    for i in 0..3 {
        s.arrive(0.0, 0, i).unwrap();
    }
    s.arrive(50_000.0, 0, 3).unwrap();
    // Up to the deadline and its grace (the SLO, 60 ms, being under LIVENESS_GRACE_US), the
    // policy may idle.
    let grace = 60_000f64.min(LIVENESS_GRACE_US);
    s.timer(60_000.0 + grace - 1.0);
    let out = outputs(&mut s);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!((s.queued(), s.policy_name().as_str()), (4, "never"));
    // Then it has failed: the native twin drops the three that are too late; the fourth
    // (deadline 110 ms) can no longer finish in time either.
    s.timer(60_000.0 + grace);
    let out = outputs(&mut s);
    assert!(
        matches!(&out[0], Output::PolicyError { policy, reason, .. } if policy == "never" && reason.contains("undecided")),
        "{out:?}"
    );
    assert_eq!(s.policy_name(), "ppipe");
    let dropped = out.iter().filter(|o| matches!(o, Output::Drop { .. })).count();
    assert_eq!((dropped, s.queued()), (4, 0), "{out:?}");
    // A trusted (native) policy is not held to the rule: the frontend's stall answer covers it.
    let mut t = published(layout(1, 1));
    t.arrive(0.0, 0, 0).unwrap();
    t.timer(60_000.0 + grace);
    assert!(outputs(&mut t).iter().all(|o| !matches!(o, Output::PolicyError { .. })));
}

#[test]
fn a_sandboxed_policy_that_waits_past_the_head_deadline_is_replaced_at_once() {
    for until in [f64::INFINITY, 120_001.0] {
        let mut s =
            Scheduler::new(layout(1, 1), vec![Box::new(Never { until: Some(until) })], Box::new(EarliestFinish))
                .unwrap();
        s.arrive(0.0, 0, 0).unwrap();
        let out = outputs(&mut s);
        assert!(
            out.iter().any(|o| matches!(o, Output::PolicyError { reason, .. } if reason.contains("past the deadline"))),
            "{until}: {out:?}"
        );
        assert_eq!(s.policy_name(), "ppipe");
    }
    // Waiting up to the deadline is fine.
    let mut s = Scheduler::new(layout(1, 1), vec![Box::new(Never { until: Some(59_000.0) })], Box::new(EarliestFinish))
        .unwrap();
    s.arrive(0.0, 0, 0).unwrap();
    assert!(outputs(&mut s).iter().all(|o| !matches!(o, Output::PolicyError { .. })));
    assert_eq!(s.next_timer(), Some(59_000.0));
}

#[test]
fn an_aborted_batch_frees_its_reservations_and_gives_its_requests_back() {
    let mut s = published(layout(1, 1));
    for i in 0..4 {
        s.arrive(0.0, 0, i).unwrap();
    }
    let first = dispatch(&outputs(&mut s)).clone();
    assert_eq!((first.hops[0].finish, first.hops[1].finish), (22_000.0, 40_000.0));
    // Its worker left at 5 ms: the batch is aborted; its requests come back to the driver.
    assert_eq!(s.abort(5_000.0, first.batch).unwrap(), (0, vec![0, 1, 2, 3]));
    assert_eq!(s.in_flight(), 0);
    assert!(s.abort(5_000.0, first.batch).is_err(), "an aborted batch is gone");
    // The retried requests keep their arrival (deadline 60 ms) and start at once: nothing
    // of the aborted batch's reservations is left on the workers.
    for i in 0..4 {
        s.arrive_since(5_000.0, 0, i, 0.0).unwrap();
    }
    let retry = dispatch(&outputs(&mut s)).clone();
    assert_eq!(retry.hops[0].start, 5_000.0);
    assert_eq!(s.batches_on(0), vec![retry.batch]);
}

#[test]
fn a_worker_taken_out_of_service_gets_no_more_batches() {
    let mut s = published(layout(2, 1));
    s.worker_down(0.0, 0);
    for i in 0..8 {
        s.arrive(0.0, 0, i).unwrap();
    }
    let out = outputs(&mut s);
    for o in &out {
        if let Output::Dispatch(d) = o {
            assert!(d.hops.iter().all(|h| h.worker != 0), "{d:?}");
        }
    }
    assert!(s.batches_on(0).is_empty());
    // With every stage-0 worker down, requests are dropped, not held forever.
    s.worker_down(0.0, 1);
    for i in 8..12 {
        s.arrive(100_000.0, 0, i).unwrap();
    }
    s.timer(200_000.0);
    let out = outputs(&mut s);
    let dropped = out.iter().filter(|o| matches!(o, Output::Drop { .. })).count();
    // New arrivals are refused at once, naming why.
    let refused: Vec<&Refusal> =
        out.iter().filter_map(|o| if let Output::Refuse { refusal, .. } = o { Some(refusal) } else { None }).collect();
    assert_eq!(dropped + refused.len() + s.queued(), 4);
    assert_eq!(refused.len(), 4, "{out:?}");
    assert!(refused.iter().all(|r| matches!(r, Refusal::NoWorker { .. })), "{refused:?}");
    // Moving to another scheduler takes every queued request with its arrival.
    let mut t = published(layout(1, 1));
    t.arrive(0.0, 0, 50).unwrap();
    assert_eq!(t.drain_queued(), vec![Queued { model: 0, id: 50, arrival: 0.0 }]);
    assert_eq!((t.queued(), t.next_timer()), (0, None));
}

#[test]
fn an_idling_queue_wakes_when_its_pool_frees_up_and_queued_requests_can_be_cancelled() {
    for wake in [false, true] {
        let mut s = crate::catalog::scheduler(&layout(1, 1), "reactive").unwrap();
        s.set_idle_wakeups(wake);
        s.arrive(0.0, 0, 0).unwrap();
        assert!(matches!(outputs(&mut s)[..], [Output::Dispatch(_)]));
        // The only stage-0 worker is busy until 10 ms: reactive idles.
        s.arrive(1_000.0, 0, 1).unwrap();
        assert!(outputs(&mut s).is_empty());
        assert_eq!(s.next_timer(), if wake { Some(10_000.0) } else { None });
        assert!(s.cancel(1));
        assert!(!s.cancel(1));
        assert_eq!(s.queued(), 0);
    }
}

#[test]
fn ppipe_sends_a_lone_request_at_once_at_light_load_and_waits_under_load() {
    // Throughput at batch 1: stage 0 takes 10 ms, so 100 requests/s; the default light-load
    // share is 0.5, so up to 50 arrivals/s go at once on an idle lane.
    let mut s = crate::catalog::scheduler(&layout(1, 1), "ppipe").unwrap();
    s.arrive(0.0, 0, 0).unwrap();
    let out = outputs(&mut s);
    let d = dispatch(&out);
    assert_eq!((d.requests.clone(), d.hops[0].start, d.hops[0].finish), (vec![0], 0.0, 10_000.0));
    // 100 arrivals a second: the load needs full batches, so a request that finds the lane
    // idle still waits for company.
    // The workers report each stage done at its reserved finish, as a driver would.
    let mut s = crate::catalog::scheduler(&layout(1, 1), "ppipe").unwrap();
    let mut due: Vec<(f64, BatchId, usize)> = vec![];
    let advance = |s: &mut Scheduler, due: &mut Vec<(f64, BatchId, usize)>, t: f64| {
        due.sort_by(|a, b| a.0.total_cmp(&b.0));
        while let Some(&(f, b, st)) = due.first().filter(|d| d.0 <= t) {
            due.remove(0);
            s.stage_done(f, b, st).unwrap();
        }
        s.timer(t);
        for o in outputs(s) {
            if let Output::Dispatch(d) = o {
                due.extend(d.hops.iter().map(|h| (h.finish, d.batch, h.stage)));
            }
        }
    };
    for k in 0..100 {
        let t = 1e6 + k as f64 * 10_000.0;
        advance(&mut s, &mut due, t);
        s.arrive(t, 0, k).unwrap();
    }
    let t = 1e6 + 100.0 * 10_000.0 + 100_000.0;
    advance(&mut s, &mut due, t);
    assert_eq!(s.queued(), 0);
    s.arrive(t + 30_000.0, 0, 100).unwrap();
    assert!(outputs(&mut s).is_empty(), "under load a lone request waits for company");
    assert!(s.next_timer().is_some());
    // Once the load is gone, the next one goes at once again.
    s.timer(t + 200_000.0);
    let _ = outputs(&mut s);
    s.arrive(t + 1.5e6, 0, 101).unwrap();
    assert_eq!(dispatch(&outputs(&mut s)).requests, vec![101]);
}

#[test]
fn arrivals_that_cannot_meet_their_deadline_are_refused_at_once() {
    // Per-pool batching queues whatever arrives while the worker is busy.
    let mut s = crate::catalog::scheduler(&layout(1, 1), "reactive").unwrap();
    // 40 requests at once: batches of 4 take 22 ms on stage 0 (181 requests/s), so only the
    // first few waves can finish within the 60 ms SLO.
    for i in 0..40 {
        s.arrive(0.0, 0, i).unwrap();
    }
    let out = outputs(&mut s);
    let refused: Vec<(RequestId, &Refusal)> = out
        .iter()
        .filter_map(|o| if let Output::Refuse { request, refusal, .. } = o { Some((*request, refusal)) } else { None })
        .collect();
    assert!(refused.len() >= 28 && refused.len() < 36, "{} refused", refused.len());
    // The ones refused are the tail, each past the SLO by its estimate, with a retry time.
    assert!(refused.iter().all(|(id, _)| *id >= 40 - refused.len() as u64));
    for (_, r) in &refused {
        match r {
            Refusal::Deadline { estimate_us, slo_us, retry_after_us } => {
                assert!(estimate_us > slo_us && *retry_after_us > 0.0, "{r:?}");
                assert!(r.to_string().contains("past its SLO of 60 ms"), "{r}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.stats().refused, refused.len() as u64);
    // Re-entries (retries, plan changes) were admitted once and are never refused.
    s.arrive_since(1.0, 0, 100, 0.0).unwrap();
    assert!(!outputs(&mut s).iter().any(|o| matches!(o, Output::Refuse { .. })));
    // A queue limit refuses past it, whatever the deadlines.
    let mut s = published(layout(1, 1));
    s.set_admission(Admission { deadline: false, max_queue: Some(3) });
    for i in 0..4 {
        s.arrive(0.0, 0, i).unwrap();
    }
    let out = outputs(&mut s);
    assert!(
        matches!(
            out.as_slice(),
            [Output::Refuse { request: 3, refusal: Refusal::QueueFull { queued: 3, limit: 3, .. }, .. }]
        ),
        "{out:?}"
    );
    assert_eq!(s.admit(0.0, 0, 1).unwrap().map_err(|r| r.label()), Err("queue_full"));
    let mut t = published(layout(1, 1));
    t.set_admission(Admission { deadline: false, max_queue: Some(3) });
    let too_big = t.admit(0.0, 0, 5).unwrap().unwrap_err();
    assert!(too_big.to_string().contains("5 frames in one request can never fit the queue limit of 3"), "{too_big}");
    assert_eq!(t.admit(0.0, 0, 3).unwrap(), Ok(()));
    assert!(s.admit(0.0, 7, 1).is_err(), "unknown model");
}

#[test]
fn measured_times_correct_the_reservations() {
    let mut s = published(layout(1, 1));
    // Worker 0 (stage 0) reports batches of 4 taking a quarter more than their profile (22 ms).
    for _ in 0..5 {
        assert!(s.observe(0, 4, 27_500.0));
    }
    assert!(!s.observe(9, 4, 1.0), "unknown worker");
    assert_eq!(s.corrections().ratio(0, 4), 1.25);
    assert_eq!(s.corrections().ratio(0, 2), 1.25, "other sizes take the worker's ratio");
    for i in 0..4 {
        s.arrive(0.0, 0, i).unwrap();
    }
    let out = outputs(&mut s);
    let d = dispatch(&out);
    assert_eq!((d.hops[0].start, d.hops[0].finish), (0.0, 27_500.0), "reserved for the measured time");
    assert_eq!(d.hops[1].finish, 27_500.0 + 4_000.0 + 14_000.0);
    let summary = s.corrections().summary();
    assert_eq!((summary.len(), summary[0].worker, summary[0].ratio), (1, 0, 1.25));
}

#[test]
fn a_worker_that_finishes_early_starts_its_next_batch_at_once() {
    let mut s = published(layout(1, 2));
    for i in 0..4 {
        s.arrive(0.0, 0, i).unwrap();
    }
    let a = dispatch(&outputs(&mut s)).clone();
    for i in 4..8 {
        s.arrive(10_000.0, 0, i).unwrap();
    }
    let b = dispatch(&outputs(&mut s)).clone();
    assert_eq!((b.hops[0].start, b.hops[0].finish), (22_000.0, 44_000.0), "behind the first batch");
    // Worker 0 finishes the first batch at 15 ms, not 22: it starts the second at once (it
    // holds it already), so the reservation moves up to close the gap, and a batch reserved
    // next on worker 0 comes after it instead of into a gap the worker never idles in.
    s.stage_done(15_000.0, a.batch, 0).unwrap();
    let moved = s.in_flight[&b.batch].hops[0];
    assert_eq!((moved.start, moved.finish), (15_000.0, 37_000.0));
    assert_eq!(s.timelines.worker[0].intervals().last(), Some(&(15_000.0, 37_000.0)));
    // The first batch's second stage, idle worker 1, starts as soon as its input is there:
    // 15 ms and 4 ms of transfer.
    let next = s.in_flight[&a.batch].hops[1];
    assert_eq!((next.start, next.finish), (19_000.0, 33_000.0));
}

#[test]
fn waits_are_planned_stretched_by_the_recent_overruns() {
    let mut s = published(layout(1, 1));
    for i in 0..4 {
        s.arrive(0.0, 0, i).unwrap();
    }
    outputs(&mut s);
    // A request at 1 ms rides stage 0 from 22 ms and ends at 45 ms, 28 ms of it waiting:
    // within its deadline of 61 ms.
    assert_eq!(s.admit(1_000.0, 0, 1).unwrap(), Ok(()));
    // Batches that waited lately ended later than reserved by as much as they waited: waits
    // now count double, 1 + 16 + 2 x 28 = 73 ms > 61 ms.
    for _ in 0..OVERRUN_MIN_REPORTS {
        s.overrun[0].report(10_000.0, 20_000.0, 30_000.0);
    }
    assert_eq!(s.overrun(0), 1.0);
    match s.admit(1_000.0, 0, 1).unwrap() {
        Err(Refusal::Deadline { estimate_us, .. }) => assert_eq!(estimate_us, 72_000.0),
        other => panic!("{other:?}"),
    }
    // A request that an idle route takes at once keeps its whole SLO.
    let mut idle = published(layout(1, 1));
    for _ in 0..OVERRUN_MIN_REPORTS {
        idle.overrun[0].report(10_000.0, 20_000.0, 30_000.0);
    }
    assert_eq!(idle.admit(0.0, 0, 1).unwrap(), Ok(()));
}
