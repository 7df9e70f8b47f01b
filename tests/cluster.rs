//! The serving cluster as users run it: a `poolpipe controller` process and three `poolpipe
//! worker` processes on loopback (lavapipe devices, QUIC with mutual TLS), a generated ONNX
//! model planned in two stages, requests through the KServe v2 HTTP API.
//!
//! One test walks the whole life of a cluster (starting four processes on lavapipe is the
//! expensive part): outputs equal onnxruntime's within fp16 tolerance; bad requests get 4xx;
//! a worker with a certificate from another CA is refused, and so are workers presenting
//! another node's certificate and a frontend (this controller serves its own API); the batching policy is swapped under load without a
//! failed request; a worker killed under load costs no request its answer, routing stops
//! using it and the controller re-plans.

mod cluster_kit;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use cluster_kit::*;

const MODEL: &str = "resnet50_block";

#[test]
fn a_cluster_of_processes_serves_the_model_and_survives_a_worker_killed_under_load() {
    let dir = tmp("cluster");
    // The model, onnxruntime's outputs, and two classes planned as lo -> hi pipelines.
    model_with_two_classes(&dir, MODEL);

    // Certificates: the cluster's, and a rogue CA's.
    let certs = cluster_certs(&dir, &["controller", "worker-1", "worker-2", "worker-3", "frontend"]);
    let rogue = dir.join("rogue");
    ok(poolpipe(&["certs", "init", "--out", rogue.to_str().unwrap()]));
    ok(poolpipe(&["certs", "issue", "worker-9", "--ca", rogue.to_str().unwrap()]));

    let quic = free_addr(true);
    let api = free_addr(false);
    let config = cluster_config(
        &dir,
        quic,
        MODEL,
        &format!(
            r#"http = "{api}"
workers = 3
admin_token = "s3cret"
# Four busy processes on a small machine can hold a health report up for a second.
dead_after_ms = 2500"#
        ),
    );
    let quic_s = quic.to_string();
    let mut procs = Procs(vec![]);
    procs.0.push((
        "controller".into(),
        spawn(&["controller", "--config", config.to_str().unwrap()], &dir.join("controller.log")),
    ));
    spawn_workers(&mut procs, &dir, quic, &certs, &[("worker-1", "lo"), ("worker-2", "lo"), ("worker-3", "hi")]);

    // Ready once the plan is installed; outputs through two stages on two processes equal
    // onnxruntime's.
    wait_ready(api, &dir, Duration::from_secs(180));
    let (input_name, frame) = outputs_match_onnxruntime(api, &dir, MODEL);
    // Both stages ran: the workers' logs name their stages.
    let stages = logs(&dir);
    assert!(stages.contains("stage=0") && stages.contains("stage=1"), "{stages}");

    // Bad requests: 4xx with a clear message.
    let (s, b) =
        http(api, "POST", &format!("/v2/models/{MODEL}/infer"), &infer_body(&input_name, &[1, 3, 5], &[0.0; 15]))
            .unwrap();
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains(&input_name));
    let (s, b) = http(api, "POST", "/v2/models/nope/infer", &infer_body(&input_name, &[1], &[0.0])).unwrap();
    assert_eq!(s, 404);
    assert!(String::from_utf8_lossy(&b).contains("nope"));
    let (s, _) = http(api, "POST", &format!("/v2/models/{MODEL}/infer"), b"{not json").unwrap();
    assert_eq!(s, 400);

    // mTLS: a worker whose certificate comes from another CA is refused.
    let rogue_out = Command::new(env!("CARGO_BIN_EXE_poolpipe"))
        .args(["worker", "--controller", &quic_s, "--name", "worker-9", "--class", "lo", "--certs"])
        .arg(&rogue)
        .env("POOLPIPE_TEST", "1")
        .output()
        .unwrap();
    assert!(!rogue_out.status.success());
    let why = String::from_utf8_lossy(&rogue_out.stderr);
    assert!(why.contains("TLS handshake"), "{why}");

    // A worker registers under its certificate's name: worker-2's certificate presented as
    // "worker-9", and the controller's own certificate presented as a worker, are refused
    // with both names.
    let borrowed = dir.join("borrowed");
    std::fs::create_dir_all(&borrowed).unwrap();
    std::fs::copy(certs.join("ca.pem"), borrowed.join("ca.pem")).unwrap();
    for (from, to) in [("worker-2", "worker-9"), ("controller", "worker-8"), ("controller", "controller")] {
        std::fs::copy(certs.join(format!("{from}.pem")), borrowed.join(format!("{to}.pem"))).unwrap();
        std::fs::copy(certs.join(format!("{from}.key")), borrowed.join(format!("{to}.key"))).unwrap();
    }
    for (name, expect) in [
        ("worker-9", "registers as 'worker-9' with the certificate of 'worker-2'"),
        ("worker-8", "the certificate of 'controller' is the controller's own"),
        ("controller", "the certificate of 'controller' is the controller's own"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_poolpipe"))
            .args(["worker", "--controller", &quic_s, "--name", name, "--class", "lo", "--certs"])
            .arg(&borrowed)
            .env("POOLPIPE_TEST", "1")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} registered");
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(why.contains(expect), "{name}: {why}");
    }

    // This controller serves its own API: a separate frontend is refused with what to change.
    let frontend_out = Command::new(env!("CARGO_BIN_EXE_poolpipe"))
        .args(["frontend", "--controller", &quic_s, "--http", "127.0.0.1:0", "--certs"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(!frontend_out.status.success());
    let why = String::from_utf8_lossy(&frontend_out.stderr);
    assert!(why.contains("frontend = \"remote\""), "{why}");

    // Hot swap of the batching policy under load: a built-in guest by name, then a module
    // uploaded as the body; no request is lost or failed.
    let admin = "Authorization: Bearer s3cret\r\n";
    let swap = |body: &[u8], extra: &str| http_with(api, "PUT", "/v2/admin/policy", body, extra).unwrap();
    let (s, b) = swap(br#"{"policy":"reactive"}"#, "");
    assert_eq!(s, 401, "{}", String::from_utf8_lossy(&b));
    let (s, b) = swap(b"\0asm garbage", admin);
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    let guest = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/guests/ppipe.wasm")).unwrap();
    let failed_before = metric(api, "poolpipe_frames_failed_total");
    let (results, sent, _) = under_load(api, MODEL, &frame, 6.0, |t0| {
        std::thread::sleep(Duration::from_secs(2));
        let (s, b) = swap(br#"{"policy":"wasm:reactive"}"#, admin);
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        std::thread::sleep(Duration::from_secs(2));
        let (s, b) = swap(&guest, admin);
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        t0.elapsed().as_secs_f64()
    });
    // Nothing was lost: every request got an answer, none failed (a drop by the scheduler,
    // 503, is an answer: on a loaded machine a request can miss its SLO), and the swaps caused
    // no policy error.
    assert_eq!(results.len(), sent);
    let ok = results.iter().filter(|r| r.1 == 200).count();
    assert!(results.iter().all(|&(_, s)| s == 200 || s == 503), "{results:?}\n{}", logs(&dir));
    assert!(results.len() > 4 && ok * 5 >= results.len() * 4, "{results:?}\n{}", logs(&dir));
    assert_eq!(metric(api, "poolpipe_frames_failed_total"), failed_before, "{}", logs(&dir));
    assert_eq!(metric(api, "poolpipe_policy_errors_total"), 0.0, "{}", logs(&dir));
    assert!(std::fs::read_to_string(dir.join("controller.log")).unwrap().contains("batching policy swapped"));

    // Load from two clients; one first-stage worker is killed after a while.
    let generation = metric(api, "poolpipe_plan_generation");
    let mut victim = procs.0.iter_mut().find(|(n, _)| n == "worker-1").map(|(_, c)| c);
    let failed_settled = Mutex::new(0.0);
    let (results, sent, killed_at) = under_load(api, MODEL, &frame, 13.0, |t0| {
        std::thread::sleep(Duration::from_secs(3));
        let at = t0.elapsed().as_secs_f64();
        let v = victim.take().unwrap();
        v.kill().unwrap();
        v.wait().unwrap();
        std::thread::sleep(Duration::from_secs(5));
        *failed_settled.lock().unwrap() = metric(api, "poolpipe_frames_failed_total");
        at
    });
    // Every request got an HTTP answer, and every failure was explicit.
    assert_eq!(results.len(), sent);
    assert!(results.iter().all(|&(_, s)| [200, 503, 504].contains(&s)), "{results:?}\n{}", logs(&dir));
    let before = results.iter().filter(|&&(t, s)| t < killed_at && s == 200).count();
    assert!(before > 0, "no request succeeded before the kill: {results:?}\n{}", logs(&dir));
    // Routing stopped using the dead worker: what started once it was declared gone (2.5 s)
    // and the plan changed succeeded.
    // No batch failed from then on (a 503 drop, a request missing its SLO on a loaded machine,
    // is an answer, not a failure).
    let late: Vec<u16> = results.iter().filter(|&&(t, _)| t > killed_at + 5.0).map(|&(_, s)| s).collect();
    let late_ok = late.iter().filter(|&&s| s == 200).count();
    assert!(late.iter().all(|&s| s == 200 || s == 503), "after the kill: {late:?}\n{}", logs(&dir));
    assert!(late.len() > 2 && late_ok * 5 >= late.len() * 4, "after the kill: {late:?}\n{}", logs(&dir));
    assert_eq!(metric(api, "poolpipe_frames_failed_total"), *failed_settled.lock().unwrap(), "{}", logs(&dir));
    // The controller re-planned without it.
    assert!(metric(api, "poolpipe_plan_generation") > generation, "{}", logs(&dir));
    let controller_log = std::fs::read_to_string(dir.join("controller.log")).unwrap();
    assert!(controller_log.contains("worker gone"), "{controller_log}");
}
