//! `poolpipe bench serving --quick --json` as a user runs it: the embedded cluster, every
//! phase, one JSON object whose counts add up. Speed is never asserted: the goals are marks in
//! the report, not test conditions.

mod common;

use std::path::Path;

use common::{json, poolpipe};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn fraction(v: &Value, what: &str) {
    let x = f(v);
    assert!((0.0..=1.0).contains(&x), "{what} = {x} is not a fraction");
}

/// Every request counted once; goodput within served; latency present iff a success.
fn check_answers(a: &Value, what: &str) {
    let sent = u(&a["sent"]);
    let ok = u(&a["ok"]);
    let statuses: u64 = a["statuses"].as_object().unwrap().values().map(u).sum();
    assert_eq!(sent, ok + statuses + u(&a["transport_errors"]), "{what}: {a}");
    assert!(a["statuses"].as_object().unwrap().keys().all(|k| k.parse::<u16>().is_ok_and(|s| s != 200 && s != 0)));
    assert!(u(&a["ok_within_slo"]) <= ok, "{what}: {a}");
    assert!(f(&a["goodput_per_s"]) <= f(&a["served_per_s"]), "{what}: {a}");
    fraction(&a["attainment"], what);
    assert_eq!(a["latency_ms"].is_null(), ok == 0, "{what}: {a}");
    if ok > 0 {
        assert!(f(&a["latency_ms"]["p50"]) <= f(&a["latency_ms"]["p99"]), "{what}: {a}");
    }
}

fn check_loads(loads: &Value, what: &str) {
    let loads = loads.as_array().unwrap();
    assert_eq!(loads.iter().map(|l| f(&l["factor"])).collect::<Vec<_>>(), [0.5, 1.5, 3.0], "{what}");
    for l in loads {
        check_answers(&l["answers"], what);
        assert!(u(&l["answers"]["sent"]) > 0, "{what}: the open loop sent requests: {l}");
        assert!(f(&l["goodput_of_capacity"]) >= 0.0);
        assert!(l["frontend"]["refused"].as_object().unwrap().values().all(|v| u(v) > 0), "{l}");
        // A goal (and its mark) only at loads at or above capacity.
        assert_eq!(l["goal"].is_null(), f(&l["factor"]) < 1.0, "{l}");
        assert_eq!(l["meets_goal"].is_null(), l["goal"].is_null(), "{l}");
    }
}

/// A run watched second by second: 6 windows of the 6 s run, holding every request.
fn check_windowed(run: &Value, what: &str) {
    check_answers(&run["answers"], what);
    assert!(f(&run["factor"]) == 0.8, "{what}: {run}");
    let windows = run["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 6, "{what}: one window per second of the 6 s run: {run}");
    let mut sent = 0;
    for (i, w) in windows.iter().enumerate() {
        assert_eq!(f(&w["start_s"]), i as f64);
        assert!(u(&w["good"]) <= u(&w["sent"]));
        fraction(&w["attainment"], what);
        sent += u(&w["sent"]);
    }
    assert_eq!(sent, u(&run["answers"]["sent"]), "{what}: the windows hold every request of the run");
    match run["converged_after_s"].as_f64() {
        Some(t) => {
            assert!(windows.iter().filter(|w| f(&w["start_s"]) >= t).all(|w| f(&w["attainment"]) >= 0.99));
            assert_eq!(run["meets_goal"].as_bool().unwrap(), t <= f(&run["goal_s"]));
        }
        None => assert!(!run["meets_goal"].as_bool().unwrap()),
    }
    for c in run["corrections"].as_array().unwrap() {
        assert!(f(&c["ratio"]) > 0.0, "{what}: {c}");
    }
    // The corrections sampled every half second, in time order.
    let series = run["correction_series"].as_array().unwrap();
    assert!(!series.is_empty(), "{what}: {run}");
    let t: Vec<f64> = series.iter().map(|c| f(&c["t_s"])).collect();
    assert!(t.windows(2).all(|w| w[0] < w[1]), "{what}: {t:?}");
    assert!(u(&run["frontend"]["arrived"]) > 0, "{what}: the frontend saw the load: {run}");
}

#[test]
fn bench_serving_quick_reports_every_phase_with_consistent_counts() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-serving");
    let _ = std::fs::remove_dir_all(&out);
    let r = json(&poolpipe(&["bench", "serving", "--quick", "--out", out.to_str().unwrap(), "--json"]));
    assert_eq!(r["model"], "resnet-mini");
    assert_eq!(r["input"], serde_json::json!([3, 64, 64]));
    assert_eq!(r["workers"].as_array().unwrap().len(), 3);
    assert!(f(&r["slo_ms"]) > 0.0);
    assert!(r["whole_ms"].as_object().unwrap().values().all(|v| f(v) > 0.0), "{r}");

    // (a)
    let a = &r["latency"];
    check_answers(&a["answers"], "(a)");
    assert!(u(&a["answers"]["ok"]) > 0, "{a}");
    assert!(f(&a["compute_ms"]) > 0.0, "{a}");
    assert!(f(&a["transport_ms"]) >= 0.0, "{a}");
    assert!(f(&a["ratio"]) > 0.0 && f(&a["profile_ratio"]) > 0.0, "{a}");
    assert_eq!(a["meets_goal"].as_bool().unwrap(), f(&a["ratio"]) <= f(&a["goal"]));

    // (b)
    let c = &r["capacity"];
    let cap = f(&c["capacity_per_s"]);
    assert!(cap > 0.0, "{c}");
    let probes = c["probes"].as_array().unwrap();
    assert!((1..=5).contains(&probes.len()), "{c}");
    for (i, p) in probes.iter().enumerate() {
        check_answers(&p["answers"], "capacity probe");
        // The sweep starts at twice the workers and doubles.
        assert_eq!(u(&p["concurrency"]), 6 << i, "{c}");
        assert!(f(&p["answers"]["goodput_per_s"]) <= cap, "the capacity is the best probe: {c}");
    }
    assert_eq!(cap, f(&probes[u(&c["best"]) as usize]["answers"]["goodput_per_s"]));
    check_loads(&r["loads"], "(b)");
    for l in r["loads"].as_array().unwrap() {
        assert!((f(&l["rate"]) - f(&l["factor"]) * cap).abs() < 1e-6 * cap.max(1.0), "{l}");
    }

    // (c)
    let o = &r["optimistic"];
    assert_eq!(f(&o["optimistic"]), 2.0);
    assert_eq!(f(&o["profile_scale"]), 0.5);
    check_windowed(&o["converge"], "(c)");
    check_windowed(&r["reference"], "(c) reference");
    check_loads(&o["loads"], "(c)");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bench_serving_refuses_bad_flags_without_starting_anything() {
    let o = poolpipe(&["bench", "serving", "--optimistic", "0", "--out", "/nonexistent/x"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--optimistic"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
