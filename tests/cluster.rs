//! The serving cluster as users run it: a `poolpipe controller` process and three `poolpipe
//! worker` processes on loopback (lavapipe devices, QUIC with mutual TLS), a generated ONNX
//! model planned in two stages, requests through the KServe v2 HTTP API.
//!
//! One test walks the whole life of a cluster (starting four processes on lavapipe is the
//! expensive part): outputs equal onnxruntime's within fp16 tolerance; bad requests get 4xx;
//! a worker with a certificate from another CA is refused; the batching policy is swapped
//! under load without a failed request; a worker killed under load costs no request its
//! answer, routing stops using it and the controller re-plans.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::poolpipe;

const MODEL: &str = "resnet50_block";

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free loopback port (TCP or UDP), released for the caller to bind.
fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}

/// One HTTP/1.1 exchange: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    http_with(addr, method, path, body, "")
}

/// One HTTP/1.1 exchange with extra header lines (each ending in CRLF).
fn http_with(addr: SocketAddr, method: &str, path: &str, body: &[u8], extra: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = vec![];
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let at = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |p| p + 4);
    Ok((status, resp[at..].to_vec()))
}

fn infer_body(input: &str, shape: &[usize], data: &[f32]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": input, "shape": shape, "datatype": "FP32", "data": data}]
    }))
    .unwrap()
}

struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(args: &[&str], log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_poolpipe"))
        .args(args)
        .env("RUST_LOG", "info,wgpu_hal=off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the binary starts")
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "log") {
            out += &format!("--- {}\n{}\n", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = http(addr, "GET", "/metrics", b"").unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(-1.0)
}

/// Two clients send requests one after another for `secs` while `mid` runs; returns every
/// (start time, status), the number sent and what `mid` returned.
fn under_load(
    api: SocketAddr,
    frame: &[u8],
    secs: f64,
    mid: impl FnOnce(Instant) -> f64,
) -> (Vec<(f64, u16)>, usize, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<(f64, u16)>>> = Arc::default();
    let t0 = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, results, frame) = (stop.clone(), results.clone(), frame.to_vec());
            std::thread::spawn(move || {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    let at = t0.elapsed().as_secs_f64();
                    let status = http(api, "POST", &format!("/v2/models/{MODEL}/infer"), &frame).map_or(0, |r| r.0);
                    results.lock().unwrap().push((at, status));
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let value = mid(t0);
    let left = secs - t0.elapsed().as_secs_f64();
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
    stop.store(true, Ordering::Relaxed);
    let sent: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let results = results.lock().unwrap().clone();
    (results, sent, value)
}

#[test]
fn a_cluster_of_processes_serves_the_model_and_survives_a_worker_killed_under_load() {
    let dir = tmp("cluster");
    // The model and onnxruntime's outputs.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen_onnx_models.py");
    let gen_out =
        Command::new("python3").arg(&script).arg(&dir).args(["--only", MODEL]).output().expect("python3 runs");
    assert!(gen_out.status.success(), "{}", String::from_utf8_lossy(&gen_out.stderr));
    let model = dir.join(format!("{MODEL}.onnx"));

    // Profiles: measured on lavapipe, then two classes made from them so that the best plan
    // is two stages: "hi" as measured, "lo" as fast on the first half of the blocks but 50
    // times slower on the rest. One hi and two lo workers serve the most as lo -> hi
    // pipelines (hi running only second halves), about twice what whole models on each
    // worker would.
    let prof = dir.join("profiles");
    ok(poolpipe(&[
        "profile",
        model.to_str().unwrap(),
        "--out",
        prof.to_str().unwrap(),
        "--class",
        "lvp",
        "--blocks",
        "4",
        "--batches",
        "1..4",
        "--shares",
        "1",
        "--iters",
        "1",
        "--warmup",
        "0",
    ]));
    let measured = std::fs::read_to_string(prof.join(format!("block-latency/{MODEL}-lvp-1.csv"))).unwrap();
    for (class, slow_from, slow_to) in [("lo", 2, 4), ("hi", 0, 0)] {
        let rows: Vec<String> = measured
            .lines()
            .enumerate()
            .map(|(b, line)| {
                let f = if (slow_from..slow_to).contains(&b) { 50 } else { 1 };
                line.split(',')
                    .map(|v| (v.trim().parse::<u64>().unwrap() * f).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        std::fs::write(prof.join(format!("block-latency/{MODEL}-{class}-1.csv")), rows.join("\n") + "\n").unwrap();
    }

    // Certificates: the cluster's, and a rogue CA's.
    let certs = dir.join("certs");
    let rogue = dir.join("rogue");
    ok(poolpipe(&["certs", "init", "--out", certs.to_str().unwrap()]));
    ok(poolpipe(&["certs", "init", "--out", rogue.to_str().unwrap()]));
    for name in ["controller", "worker-1", "worker-2", "worker-3"] {
        ok(poolpipe(&["certs", "issue", name, "--ca", certs.to_str().unwrap()]));
    }
    ok(poolpipe(&["certs", "issue", "worker-9", "--ca", rogue.to_str().unwrap()]));

    let quic: SocketAddr = format!("127.0.0.1:{}", free_port(true)).parse().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port(false)).parse().unwrap();
    let config = dir.join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            r#"[controller]
listen = "{quic}"
http = "{api}"
certs = "certs"
profiles = "profiles"
workers = 3
max_batch = 4
admin_token = "s3cret"
# Four busy processes on a small machine can hold a health report up for a second.
dead_after_ms = 2500

[[model]]
name = "{MODEL}"
model = "{MODEL}.onnx"
slo_ms = 1500
"#
        ),
    )
    .unwrap();
    let quic_s = quic.to_string();
    let mut procs = Procs(vec![]);
    procs.0.push((
        "controller".into(),
        spawn(&["controller", "--config", config.to_str().unwrap()], &dir.join("controller.log")),
    ));
    for (name, class) in [("worker-1", "lo"), ("worker-2", "lo"), ("worker-3", "hi")] {
        let child = spawn(
            &["worker", "--controller", &quic_s, "--name", name, "--class", class, "--certs", certs.to_str().unwrap()],
            &dir.join(format!("{name}.log")),
        );
        procs.0.push((name.into(), child));
    }

    // Ready once the plan is installed.
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = http(api, "GET", "/v2/health/ready", b"") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "no plan within 180 s:\n{}", logs(&dir));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, meta) = http(api, "GET", &format!("/v2/models/{MODEL}"), b"").unwrap();
    assert_eq!(status, 200);
    let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    let input_name = meta["inputs"][0]["name"].as_str().unwrap().to_string();

    // Outputs through two stages on two processes equal onnxruntime's.
    let x = poolpipe_engine::npy::read(&dir.join(format!("{MODEL}.b4.input.npy"))).unwrap();
    let want = poolpipe_engine::npy::read(&dir.join(format!("{MODEL}.b4.out0.npy"))).unwrap();
    let (status, body) =
        http(api, "POST", &format!("/v2/models/{MODEL}/infer"), &infer_body(&input_name, x.shape(), x.data())).unwrap();
    assert_eq!(status, 200, "{}\n{}", String::from_utf8_lossy(&body), logs(&dir));
    let resp: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(resp["model_name"], MODEL);
    let out = &resp["outputs"][0];
    assert_eq!(out["datatype"], "FP32");
    let shape: Vec<usize> = out["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(shape, want.shape());
    let got: Vec<f32> = out["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    let err = got.iter().zip(want.data()).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    assert!(err < 2e-2, "relative error {err} against onnxruntime");
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

    let frame = infer_body(&input_name, &[1, x.shape()[1], x.shape()[2], x.shape()[3]], &x.data()[..x.len() / 4]);

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
    let (results, sent, _) = under_load(api, &frame, 6.0, |t0| {
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
    assert_eq!(metric(api, "poolpipe_frames_failed_total"), failed_before);
    assert_eq!(metric(api, "poolpipe_policy_errors_total"), 0.0);
    assert!(std::fs::read_to_string(dir.join("controller.log")).unwrap().contains("batching policy swapped"));

    // Load from two clients; one first-stage worker is killed after a while.
    let generation = metric(api, "poolpipe_plan_generation");
    let mut victim = procs.0.iter_mut().find(|(n, _)| n == "worker-1").map(|(_, c)| c);
    let failed_settled = Mutex::new(0.0);
    let (results, sent, killed_at) = under_load(api, &frame, 13.0, |t0| {
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
