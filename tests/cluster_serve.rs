//! `poolpipe serve` as users run it on one box: every role in one process, with no `[[worker]]`
//! entries, so one worker per local adapter (lavapipe here) under its derived class
//! ("llvmpipe"). The generated model's outputs through the API equal onnxruntime's; SIGTERM
//! stops the process cleanly.

mod cluster_kit;

use std::net::SocketAddr;
use std::time::Duration;

use cluster_kit::*;

const MODEL: &str = "resnet50_block";

#[test]
fn serve_runs_every_role_with_one_worker_per_local_adapter() {
    let dir = tmp("cluster-serve");
    model_profiled_as(&dir, MODEL, "llvmpipe");
    let api: SocketAddr = format!("127.0.0.1:{}", free_port(false)).parse().unwrap();
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[controller]\nhttp = \"{api}\"\nprofiles = \"profiles\"\nmax_batch = 4\n\n[[model]]\nname = \"{MODEL}\"\nmodel = \"{MODEL}.onnx\"\nslo_ms = 1500\n"
        ),
    )
    .unwrap();
    let mut procs = Procs(vec![]);
    procs.0.push(("serve".into(), spawn(&["serve", "--config", config.to_str().unwrap()], &dir.join("serve.log"))));
    wait_ready(api, &dir, Duration::from_secs(180));
    outputs_match_onnxruntime(api, &dir, MODEL);
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("one worker per local adapter: 1 workers"), "{log}");
    assert!(log.contains("llvmpipe"), "{log}");
    terminate(&mut procs, "serve");
}
