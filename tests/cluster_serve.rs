//! `poolpipe serve` as users run it on one box: every role in one process, with no `[[worker]]`
//! entries, so one worker per local adapter (lavapipe here) under its derived class
//! ("llvmpipe"). The generated model's outputs through the API equal onnxruntime's; SIGTERM
//! stops the process cleanly.

mod cluster_kit;

use std::net::SocketAddr;
use std::time::Duration;

use cluster_kit::*;

const MODEL: &str = "resnet50_block";

/// `poolpipe serve` of the generated model profiled as lavapipe's class, with `controller`
/// lines added to `[controller]`; ready to take requests.
fn serve(name: &str, controller: &str, slo_ms: u32) -> (std::path::PathBuf, SocketAddr, Procs) {
    let dir = tmp(name);
    model_profiled_as(&dir, MODEL, "llvmpipe");
    let api = free_addr(false);
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[controller]\nhttp = \"{api}\"\nprofiles = \"profiles\"\nmax_batch = 4\n{controller}\n[[model]]\nname = \"{MODEL}\"\nmodel = \"{MODEL}.onnx\"\nslo_ms = {slo_ms}\n"
        ),
    )
    .unwrap();
    let mut procs = Procs(vec![]);
    procs.0.push(("serve".into(), spawn(&["serve", "--config", config.to_str().unwrap()], &dir.join("serve.log"))));
    wait_ready(api, &dir, Duration::from_secs(180));
    (dir, api, procs)
}

#[test]
fn serve_runs_every_role_with_one_worker_per_local_adapter() {
    let (dir, api, mut procs) = serve("cluster-serve", "max_queue = 4\n", 1500);
    let (input_name, _) = outputs_match_onnxruntime(api, &dir, MODEL);
    // A single-stage plan records its batches' compute time (the worker's timing report may
    // come after the result).
    let mut compute = 0.0;
    for _ in 0..50 {
        compute = metric(api, "poolpipe_batch_compute_seconds_sum");
        if compute > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(compute > 0.0, "batch compute seconds stay {compute}\n{}", logs(&dir));
    // The worker's measured times correct its profile, shown in the model's metadata.
    let (_, meta) = http(api, "GET", &format!("/v2/models/{MODEL}"), b"").unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    let p = &meta["parameters"];
    assert_eq!(p["queued"], 0, "{meta}");
    let c = p["profile_correction"].as_array().unwrap();
    assert!(c.len() == 1 && c[0]["reports"].as_u64().unwrap() >= 1 && c[0]["ratio"].as_f64().unwrap() > 0.0, "{meta}");
    // A request of more frames than the queue ever takes (`max_queue = 4`) is refused at once,
    // whole, as the client's to fix (no Retry-After: retrying cannot help).
    let x = poolpipe_engine::npy::read(&dir.join(format!("{MODEL}.b4.input.npy"))).unwrap();
    let per = x.data().len() / 4;
    let mut shape = x.shape().to_vec();
    shape[0] = 5;
    let data: Vec<f32> = x.data().iter().chain(&x.data()[..per]).copied().collect();
    let (status, headers, body) =
        http_headers(api, "POST", &format!("/v2/models/{MODEL}/infer"), &infer_body(&input_name, &shape, &data), "")
            .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("5 frames in one request can never fit the queue limit of 4"), "{body}");
    assert!(!headers.contains("retry-after: "), "{headers}");
    assert_eq!(metric(api, "poolpipe_frames_refused_total{reason=\"queue_full\"}"), 5.0);
    assert_eq!(metric(api, &format!("poolpipe_queue_depth{{model=\"{MODEL}\"}}")), 0.0);
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("one worker per local adapter: 1 workers"), "{log}");
    assert!(log.contains("llvmpipe"), "{log}");
    terminate(&mut procs, "serve");
}

#[test]
fn a_class_whose_profiles_are_off_is_replanned_with_its_measured_ratio() {
    // The controller plans with profiles 3x too fast (`profile_scale`); once the worker has a
    // full window of reports, its class's correction (about 3) is past `replan_correction`
    // and the controller re-plans with that class's times scaled by it.
    let (dir, api, mut procs) =
        serve("cluster-replan-correction", "profile_scale = 0.33\nreplan_correction = 0.5\n", 5000);
    let (input_name, _) = outputs_match_onnxruntime(api, &dir, MODEL);
    let x = poolpipe_engine::npy::read(&dir.join(format!("{MODEL}.b4.input.npy"))).unwrap();
    let per = x.data().len() / 4;
    let mut shape = x.shape().to_vec();
    shape[0] = 1;
    let body = infer_body(&input_name, &shape, &x.data()[..per]);
    let path = format!("/v2/models/{MODEL}/infer");
    assert_eq!(metric(api, "poolpipe_plan_generation"), 1.0);
    let mut generation = 1.0;
    for _ in 0..240 {
        let (status, answer) = http(api, "POST", &path, &body).unwrap();
        assert!(status == 200 || status == 503, "{status}: {}", String::from_utf8_lossy(&answer));
        generation = metric(api, "poolpipe_plan_generation");
        if generation >= 2.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(generation >= 2.0, "no re-plan from the corrections\n{log}");
    assert!(log.contains("re-planning with corrected profiles") && log.contains("llvmpipe"), "{log}");
    // The new plan serves.
    let mut ok = false;
    for _ in 0..50 {
        if http(api, "POST", &path, &body).unwrap().0 == 200 {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "the re-planned cluster does not serve\n{}", logs(&dir));
    terminate(&mut procs, "serve");
}
