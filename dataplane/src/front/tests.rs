//! Scripted scenarios of the request state machine: a worker lost mid-batch, a batch that
//! runs out of time, a plan switch while requests wait, a drain that times out, a request of
//! several frames, no plan. Layout: one model, two stages, SLO 60 ms (see the scheduler's
//! tests); first-stage workers are nodes 10, 11, ..., second-stage workers nodes 20, 21, ...

use super::*;
use crate::catalog::Policies;
use crate::scheduler::tests::layout;

fn front(first: usize, second: usize) -> (Front, Layout, Vec<u32>) {
    let l = layout(first, second);
    let nodes: Vec<u32> = (0..first as u32).map(|i| 10 + i).chain((0..second as u32).map(|i| 20 + i)).collect();
    let mut f = Front::new(1, Policies::native("ppipe").unwrap());
    assert_eq!(f.install(0.0, &l, nodes.clone()).unwrap(), 1);
    (f, l, nodes)
}

fn actions(f: &mut Front) -> Vec<Action> {
    std::iter::from_fn(|| f.poll_action()).collect()
}

fn sends(a: &[Action]) -> Vec<&SendBatch> {
    a.iter()
        .filter_map(|x| match x {
            Action::Send(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn answers(a: &[Action]) -> Vec<(RequestKey, Result<(), Failure>)> {
    a.iter()
        .filter_map(|x| match x {
            Action::Answer { request, result, .. } => Some((*request, result.clone())),
            _ => None,
        })
        .collect()
}

/// Runs batch `s` to its end as the workers would: a timing report per hop, then the result.
fn complete(f: &mut Front, s: &SendBatch, now: f64) -> Delivered {
    for (h, node) in s.dispatch.hops.iter().zip(&s.nodes) {
        f.timing(now, *node, s.wire, h.stage, HopTiming { compute_us: 1_000.0, wait_us: None });
    }
    f.result(now, s.wire).expect("the batch is in flight")
}

#[test]
fn a_lone_request_is_sent_and_answered_with_its_outputs() {
    let (mut f, _, _) = front(1, 1);
    let (key, ids) = f.request(0.0, 0, 1).unwrap();
    let a = actions(&mut f);
    let s = sends(&a);
    assert_eq!(s.len(), 1, "{a:?}");
    assert_eq!(s[0].wire, wire_id(1, s[0].dispatch.batch));
    assert_eq!(s[0].nodes, vec![10, 20]);
    assert_eq!(
        s[0].samples,
        vec![SendSample { id: ids[0], request: key, slot: 0, deadline_us: 60_000.0, from_input: true }]
    );
    let d = complete(&mut f, s[0], 30_000.0);
    assert!(d.completes);
    assert_eq!(d.samples, vec![Some((ids[0], key, 0))]);
    assert_eq!(answers(&actions(&mut f)), vec![(key, Ok(()))]);
    assert_eq!((f.stats().completed, f.stats().late, f.outstanding(), f.open_requests()), (1, 0, 0, 0));
    // A second result for the same batch is dropped.
    assert!(f.result(31_000.0, s[0].wire).is_none());
}

#[test]
fn a_batch_on_a_lost_worker_is_retried_on_another_once() {
    let (mut f, _, _) = front(2, 1);
    let (key, _) = f.request(0.0, 0, 1).unwrap();
    let a = actions(&mut f);
    let first = sends(&a)[0].clone();
    let lost = first.nodes[0];
    f.worker_down(2_000.0, lost);
    let a = actions(&mut f);
    assert!(a.iter().any(|x| matches!(x, Action::BatchFailed { wire, reason } if *wire == first.wire && reason.contains(&format!("worker {lost} left")))), "{a:?}");
    let retry = sends(&a);
    assert_eq!(retry.len(), 1, "{a:?}");
    assert_ne!(retry[0].nodes[0], lost, "the retry avoids the lost worker");
    assert!(retry[0].samples[0].from_input);
    assert_eq!(f.stats().retried, 1);
    // A late result of the failed batch is ignored; the retry answers.
    assert!(f.result(3_000.0, first.wire).is_none());
    complete(&mut f, retry[0], 40_000.0);
    assert_eq!(answers(&actions(&mut f)), vec![(key, Ok(()))]);
    // A second loss of its batch's worker is not retried again: the request fails.
    let (key2, _) = f.request(100_000.0, 0, 1).unwrap();
    let a = actions(&mut f);
    let s = sends(&a)[0].clone();
    f.failed(101_000.0, s.wire, s.nodes[0], "out of memory");
    let a = actions(&mut f);
    let s2 = sends(&a)[0].clone();
    f.failed(102_000.0, s2.wire, s2.nodes[0], "out of memory");
    let got = answers(&actions(&mut f));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, key2);
    assert!(
        matches!(&got[0].1, Err(Failure::BatchFailed { reason, timed_out: false }) if reason.contains("out of memory")),
        "{got:?}"
    );
    assert_eq!((f.stats().completed, f.stats().failed, f.stats().retried), (1, 1, 2));
}

#[test]
fn a_batch_without_a_result_fails_at_its_deadline_plus_grace() {
    let (mut f, _, _) = front(1, 1);
    let (key, _) = f.request(0.0, 0, 1).unwrap();
    let a = actions(&mut f);
    let s = sends(&a)[0].clone();
    // The batch fails at its deadline (60 ms) plus the grace period.
    let due = f.next_timer().unwrap();
    assert!(due <= 60_000.0 + GRACE_US);
    f.timer(60_000.0 + GRACE_US - 1.0);
    assert!(answers(&actions(&mut f)).is_empty());
    f.timer(60_000.0 + GRACE_US);
    let got = answers(&actions(&mut f));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, key);
    assert!(
        matches!(&got[0].1, Err(Failure::BatchFailed { timed_out: true, reason }) if reason.contains("stage 0 on worker 10")),
        "{got:?}"
    );
    assert!(f.result(70_000.0 + GRACE_US, s.wire).is_none());
    assert_eq!((f.outstanding(), f.open_requests(), f.stats().failed), (0, 0, 1));
}

#[test]
fn a_plan_switch_holds_new_requests_drains_the_old_plan_and_keeps_deadlines() {
    let (mut f, l, nodes) = front(1, 1);
    let (early, _) = f.request(0.0, 0, 1).unwrap();
    let a = actions(&mut f);
    let old = sends(&a)[0].clone();
    f.begin_switch();
    assert!(f.is_switching() && f.ready() && !f.drained());
    // A request during the switch waits aside: nothing is sent.
    let (held, held_ids) = f.request(5_000.0, 0, 2).unwrap();
    assert!(sends(&actions(&mut f)).is_empty());
    // The old plan's batch finishes: its request is answered, the old plan is drained.
    complete(&mut f, &old, 25_000.0);
    assert_eq!(answers(&actions(&mut f)), vec![(early, Ok(()))]);
    assert!(f.drained());
    // The next plan takes the waiting request, with its original deadline.
    assert_eq!(f.install(26_000.0, &l, nodes).unwrap(), 2);
    let a = actions(&mut f);
    let s = sends(&a);
    assert_eq!(s.len(), 1, "{a:?}");
    assert_eq!(s[0].wire >> GEN_SHIFT, 2);
    assert_eq!(s[0].samples.iter().map(|x| x.id).collect::<Vec<_>>(), held_ids);
    assert!(s[0].samples.iter().all(|x| x.deadline_us == 65_000.0));
    complete(&mut f, s[0], 50_000.0);
    assert_eq!(answers(&actions(&mut f)), vec![(held, Ok(()))]);
    assert_eq!((f.stats().completed, f.outstanding()), (3, 0));
}

#[test]
fn a_drain_that_times_out_retries_the_old_batches_under_the_next_plan() {
    let (mut f, l, nodes) = front(1, 1);
    let (key, _) = f.request(0.0, 0, 1).unwrap();
    let a = actions(&mut f);
    let old = sends(&a)[0].clone();
    f.begin_switch();
    f.abandon_old(10_000.0);
    let a = actions(&mut f);
    assert!(
        a.iter().any(|x| matches!(x, Action::BatchFailed { reason, .. } if reason.contains("plan changed"))),
        "{a:?}"
    );
    assert!(f.drained());
    f.install(11_000.0, &l, nodes).unwrap();
    let a = actions(&mut f);
    let s = sends(&a)[0].clone();
    assert_eq!(s.wire >> GEN_SHIFT, 2);
    assert!(f.result(12_000.0, old.wire).is_none(), "the abandoned batch's result is dropped");
    complete(&mut f, &s, 40_000.0);
    assert_eq!(answers(&actions(&mut f)), vec![(key, Ok(()))]);
    assert_eq!(f.stats().retried, 1);
}

#[test]
fn a_request_of_several_frames_is_answered_once() {
    let (mut f, _, _) = front(1, 1);
    let (key, ids) = f.request(0.0, 0, 3).unwrap();
    let a = actions(&mut f);
    let s = sends(&a);
    let carried: Vec<SampleId> = s.iter().flat_map(|b| b.samples.iter().map(|x| x.id)).collect();
    assert_eq!(carried, ids, "{a:?}");
    let d = complete(&mut f, s[0], 30_000.0);
    assert_eq!(d.samples.iter().flatten().map(|x| x.2).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(answers(&actions(&mut f)), vec![(key, Ok(()))]);
    // One frame's failure answers the request once; the others' ends answer nothing more.
    let (key, _) = f.request(100_000.0, 0, 2).unwrap();
    let a = actions(&mut f);
    let s = sends(&a)[0].clone();
    f.fail_request(101_000.0, key, Failure::BadResult("output missing".into()));
    let got = answers(&actions(&mut f));
    assert_eq!(got, vec![(key, Err(Failure::BadResult("output missing".into())))]);
    let d = complete(&mut f, &s, 120_000.0);
    assert!(d.samples.iter().all(Option::is_none));
    assert!(answers(&actions(&mut f)).is_empty());
    assert_eq!((f.outstanding(), f.open_requests()), (0, 0));
}

#[test]
fn without_a_plan_requests_are_refused_with_the_reason() {
    let mut f = Front::new(1, Policies::native("ppipe").unwrap());
    assert!(matches!(f.request(0.0, 0, 1), Err(Failure::NoPlan(r)) if r.contains("no plan yet")));
    assert!(matches!(f.request(0.0, 3, 1), Err(Failure::Invalid(_))));
    let (mut f, _, _) = front(1, 1);
    f.begin_switch();
    let (key, _) = f.request(0.0, 0, 1).unwrap();
    f.no_plan("no worker of class lo is left".into());
    let got = answers(&actions(&mut f));
    assert_eq!(got, vec![(key, Err(Failure::NoPlan("no worker of class lo is left".into())))]);
    assert!(matches!(f.request(1.0, 0, 1), Err(Failure::NoPlan(r)) if r.contains("class lo")));
    // Every frame that arrived ended once.
    let st = f.stats();
    assert_eq!(st.arrived_by_model[0], 1);
    assert_eq!(st.completed + st.dropped + st.failed + st.refused.values().sum::<u64>(), 1);
}

#[test]
fn a_queue_at_its_limit_refuses_at_arrival() {
    let (mut f, _, _) = front(1, 1);
    f.set_admission(crate::Admission { max_queue: Some(2), ..Default::default() });
    assert!(matches!(
        f.request(0.0, 0, 3),
        Err(Failure::Refused(crate::Refusal::QueueFull { requested: 3, limit: 2, .. }))
    ));
    assert_eq!(f.stats().refused.get("queue_full"), Some(&3));
    assert_eq!(f.stats().dropped, 0);
}
