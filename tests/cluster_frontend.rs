//! The frontend as its own process: a `poolpipe controller` with `frontend = "remote"`, a
//! `poolpipe frontend` attached to it and two `poolpipe worker` processes on loopback
//! (lavapipe, QUIC with mutual TLS), a generated ONNX model planned in two stages.
//!
//! One test walks the frontend's life: outputs through the frontend equal onnxruntime's; a
//! second frontend is refused while one is attached; the workers' reports reach the
//! frontend's `/metrics`; a frontend that stops is replaced by another and the controller
//! re-plans for it; when the controller stops, the frontend answers 503 with the reason and
//! serves again once a controller is back.

mod cluster_kit;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cluster_kit::*;

const MODEL: &str = "resnet50_block";

/// One frame through the API answers 200. A drop (503, the SLO out of reach: the first
/// batches on freshly compiled stages of a loaded machine can be slow) is retried twice.
fn infer_ok(api: SocketAddr, frame: &[u8], dir: &Path) {
    for _ in 0..3 {
        let (s, b) = http(api, "POST", &format!("/v2/models/{MODEL}/infer"), frame).unwrap();
        let body = String::from_utf8_lossy(&b);
        if s == 200 {
            return;
        }
        assert!(s == 503 && body.contains("cannot meet its SLO"), "{s}: {body}\n{}", logs(dir));
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("three drops in a row:\n{}", logs(dir));
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

#[test]
fn a_frontend_process_serves_the_controllers_plans_and_outlives_them() {
    let dir = tmp("cluster-frontend");
    model_with_two_classes(&dir, MODEL);
    let certs = cluster_certs(&dir, &["controller", "frontend", "frontend-2", "worker-1", "worker-2"]);
    let certs_s = certs.to_str().unwrap().to_string();

    let quic = free_addr(true);
    let config = cluster_config(&dir, quic, MODEL, "frontend = \"remote\"\nworkers = 2\ndead_after_ms = 2500");
    // A remote-frontend controller serves no HTTP: asking it to is an error naming the role
    // that does.
    let out = poolpipe(&["controller", "--config", config.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --http to `poolpipe frontend`"));
    let quic_s = quic.to_string();
    let mut procs = Procs(vec![]);
    let start_controller = |procs: &mut Procs, round: usize| {
        let controller =
            spawn(&["controller", "--config", config.to_str().unwrap()], &dir.join(format!("controller-{round}.log")));
        procs.0.push(("controller".into(), controller));
    };
    let start_workers =
        |procs: &mut Procs| spawn_workers(procs, &dir, quic, &certs, &[("worker-1", "lo"), ("worker-2", "hi")]);
    let start_frontend = |procs: &mut Procs, name: &str, api: SocketAddr| {
        let args =
            ["frontend", "--controller", &quic_s, "--name", name, "--http", &api.to_string(), "--certs", &certs_s];
        procs.0.push((name.into(), spawn(&args, &dir.join(format!("{name}.log")))));
    };
    start_controller(&mut procs, 1);
    start_workers(&mut procs);
    // The controller serves no HTTP of its own: the frontend does.
    let api = free_addr(false);
    start_frontend(&mut procs, "frontend", api);

    wait_ready(api, &dir, Duration::from_secs(180));
    let (_, frame) = outputs_match_onnxruntime(api, &dir, MODEL);
    let all = logs(&dir);
    assert!(all.contains("stage=0") && all.contains("stage=1"), "{all}");
    assert!(log(&dir, "controller-1").contains("frontend attached"), "{all}");

    // One frontend per cluster: a second one is refused with the reason.
    let api2 = free_addr(false);
    let second = Command::new(env!("CARGO_BIN_EXE_poolpipe"))
        .args(["frontend", "--controller", &quic_s, "--name", "frontend-2", "--http", &api2.to_string(), "--certs"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let why = String::from_utf8_lossy(&second.stderr);
    assert!(why.contains("attached already"), "{why}");

    // Under load, every request is answered and none fails; the workers' relayed reports
    // reach /metrics.
    let (results, sent, _) = under_load(api, MODEL, &frame, 4.0, |_| 0.0);
    assert_eq!(results.len(), sent);
    assert!(results.iter().all(|&(_, s)| s == 200 || s == 503), "{results:?}\n{}", logs(&dir));
    // (A drop, 503, is an answer: with two closed-loop clients the planned batches fill
    // slowly, and a request can wait out its SLO.)
    assert!(results.iter().filter(|r| r.1 == 200).count() >= 2, "{results:?}");
    assert!(metric(api, "poolpipe_batch_compute_seconds_sum") > 0.0, "{}", logs(&dir));
    assert_eq!(metric(api, "poolpipe_frames_failed_total"), 0.0, "{}", logs(&dir));
    let (_, m) = http(api, "GET", "/metrics", b"").unwrap();
    assert!(String::from_utf8_lossy(&m).contains("poolpipe_worker_busy{worker=\"1\"}"));

    // The frontend stops; another attaches in its place and the controller plans for it.
    terminate(&mut procs, "frontend");
    start_frontend(&mut procs, "frontend-2", api2);
    wait_ready(api2, &dir, Duration::from_secs(120));
    infer_ok(api2, &frame, &dir);
    let controller = log(&dir, "controller-1");
    assert!(
        controller.contains("the frontend left") && controller.matches("plan installed").count() >= 2,
        "{controller}"
    );

    // The controller stops: the frontend answers at once, with the reason; the frontend and
    // the workers keep running and attach and register again when a controller is back.
    terminate(&mut procs, "controller");
    std::thread::sleep(Duration::from_millis(500));
    let (s, b) = http(api2, "POST", &format!("/v2/models/{MODEL}/infer"), &frame).unwrap();
    let body = String::from_utf8_lossy(&b).into_owned();
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("controller"), "{body}");
    start_controller(&mut procs, 2);
    wait_ready(api2, &dir, Duration::from_secs(180));
    infer_ok(api2, &frame, &dir);
    let controller = log(&dir, "controller-2");
    assert!(controller.contains("frontend attached"), "{}", logs(&dir));
    assert_eq!(controller.matches("worker registered").count(), 2, "{}", logs(&dir));
    for name in ["worker-1", "worker-2"] {
        let worker = log(&dir, name);
        assert!(worker.contains("registering again") && worker.matches("registered worker=").count() == 2, "{worker}");
    }
}
