//! Helpers of the cluster tests (`tests/cluster.rs`, `tests/cluster_frontend.rs`): processes,
//! HTTP exchanges, metrics, load, and the generated model with its two fabricated classes.
#![allow(dead_code)] // each test file uses a part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `poolpipe` with `args`.
pub fn poolpipe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_poolpipe")).args(args).output().expect("the binary runs")
}

pub fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free loopback address (TCP or UDP port), released for the caller to bind.
pub fn free_addr(udp: bool) -> SocketAddr {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    }
}

/// One HTTP/1.1 exchange: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    http_with(addr, method, path, body, "")
}

/// One HTTP/1.1 exchange with extra header lines (each ending in CRLF).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    extra: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    http_headers(addr, method, path, body, extra).map(|(s, _, b)| (s, b))
}

/// One HTTP/1.1 exchange: status, the response's header block (lower-cased) and body.
pub fn http_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    extra: &str,
) -> std::io::Result<(u16, String, Vec<u8>)> {
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
    let headers = String::from_utf8_lossy(&resp[..at]).to_lowercase();
    Ok((status, headers, resp[at..].to_vec()))
}

pub fn infer_body(input: &str, shape: &[usize], data: &[f32]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": input, "shape": shape, "datatype": "FP32", "data": data}]
    }))
    .unwrap()
}

pub struct Procs(pub Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn spawn(args: &[&str], log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_poolpipe"))
        .args(args)
        .env("RUST_LOG", "info,wgpu_hal=off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the binary starts")
}

/// Starts `poolpipe worker` processes, (name, class) each, registering at `quic` with the
/// certificates in `certs`; each logs to `dir/NAME.log`.
pub fn spawn_workers(procs: &mut Procs, dir: &Path, quic: SocketAddr, certs: &Path, workers: &[(&str, &str)]) {
    let (quic, certs) = (quic.to_string(), certs.to_str().unwrap());
    for &(name, class) in workers {
        let args = ["worker", "--controller", &quic, "--name", name, "--class", class, "--certs", certs];
        procs.0.push((name.into(), spawn(&args, &dir.join(format!("{name}.log")))));
    }
}

pub fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "log") {
            out += &format!("--- {}\n{}\n", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = http(addr, "GET", "/metrics", b"").unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(-1.0)
}

/// Two clients send requests one after another for `secs` while `mid` runs; returns every
/// (start time, status), the number sent and what `mid` returned.
pub fn under_load(
    api: SocketAddr,
    model: &str,
    frame: &[u8],
    secs: f64,
    mid: impl FnOnce(Instant) -> f64,
) -> (Vec<(f64, u16)>, usize, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<(f64, u16)>>> = Arc::default();
    let t0 = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, results, frame, model) = (stop.clone(), results.clone(), frame.to_vec(), model.to_string());
            std::thread::spawn(move || {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    let at = t0.elapsed().as_secs_f64();
                    let status = http(api, "POST", &format!("/v2/models/{model}/infer"), &frame).map_or(0, |r| r.0);
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

/// Generates `model` with onnxruntime's reference outputs into `dir` and profiles it on
/// lavapipe as class `class` into `dir/profiles`. Returns the model file.
pub fn model_profiled_as(dir: &Path, model: &str, class: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen_onnx_models.py");
    let gen_out = Command::new("python3").arg(&script).arg(dir).args(["--only", model]).output().expect("python3 runs");
    assert!(gen_out.status.success(), "{}", String::from_utf8_lossy(&gen_out.stderr));
    let file = dir.join(format!("{model}.onnx"));
    let prof = dir.join("profiles");
    ok(poolpipe(&[
        "profile",
        file.to_str().unwrap(),
        "--out",
        prof.to_str().unwrap(),
        "--class",
        class,
        "--blocks",
        "4",
        "--batches",
        "1..4",
        "--shares",
        "1",
        // The median of five after a warm-up: one stalled run (a busy machine, a first
        // pipeline compile) must not make a block look a hundred times slower than it is.
        "--iters",
        "5",
        "--warmup",
        "1",
    ]));
    file
}

/// [`model_profiled_as`] class "lvp", then makes two classes from the measurement so that the
/// best plan is two stages: "hi" as measured, "lo" as fast on the first half of the blocks
/// but 50 times slower on the rest (lo -> hi pipelines, hi running second halves, serve about
/// twice what whole models on each worker would). Returns the model file.
pub fn model_with_two_classes(dir: &Path, model: &str) -> PathBuf {
    let file = model_profiled_as(dir, model, "lvp");
    let prof = dir.join("profiles");
    let measured = std::fs::read_to_string(prof.join(format!("block-latency/{model}-lvp-1.csv"))).unwrap();
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
        std::fs::write(prof.join(format!("block-latency/{model}-{class}-1.csv")), rows.join("\n") + "\n").unwrap();
    }
    file
}

/// A cluster CA in `dir/certs` with a certificate for each of `names`.
pub fn cluster_certs(dir: &Path, names: &[&str]) -> PathBuf {
    let certs = dir.join("certs");
    ok(poolpipe(&["certs", "init", "--out", certs.to_str().unwrap()]));
    for name in names {
        ok(poolpipe(&["certs", "issue", name, "--ca", certs.to_str().unwrap()]));
    }
    certs
}

/// Waits until the API at `api` is ready (a plan serves).
pub fn wait_ready(api: SocketAddr, dir: &Path, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = http(api, "GET", "/v2/health/ready", b"") {
            return;
        }
        assert!(start.elapsed() < limit, "not ready within {limit:?}:\n{}", logs(dir));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends the generated batch of four frames through the API and checks the answer against
/// onnxruntime's (fp16 tolerance) and the KServe v2 response format. Returns the input's
/// name and one frame's request body.
pub fn outputs_match_onnxruntime(api: SocketAddr, dir: &Path, model: &str) -> (String, Vec<u8>) {
    let (status, meta) = http(api, "GET", &format!("/v2/models/{model}"), b"").unwrap();
    assert_eq!(status, 200);
    let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    let input_name = meta["inputs"][0]["name"].as_str().unwrap().to_string();
    let x = poolpipe_engine::npy::read(&dir.join(format!("{model}.b4.input.npy"))).unwrap();
    let want = poolpipe_engine::npy::read(&dir.join(format!("{model}.b4.out0.npy"))).unwrap();
    let (status, body) =
        http(api, "POST", &format!("/v2/models/{model}/infer"), &infer_body(&input_name, x.shape(), x.data())).unwrap();
    assert_eq!(status, 200, "{}\n{}", String::from_utf8_lossy(&body), logs(dir));
    let resp: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(resp["model_name"], model);
    let out = &resp["outputs"][0];
    assert_eq!(out["datatype"], "FP32");
    let shape: Vec<usize> = out["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(shape, want.shape());
    let got: Vec<f32> = out["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    let err = got.iter().zip(want.data()).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    assert!(err < 2e-2, "relative error {err} against onnxruntime");
    let frame = infer_body(&input_name, &[1, x.shape()[1], x.shape()[2], x.shape()[3]], &x.data()[..x.len() / 4]);
    (input_name, frame)
}

/// Writes `dir/cluster.toml`: the controller on `quic` with `controller_keys` added, serving
/// `model` (from `dir`) with an SLO of 1.5 s, certificates in `dir/certs`, profiles in
/// `dir/profiles`.
pub fn cluster_config(dir: &Path, quic: SocketAddr, model: &str, controller_keys: &str) -> PathBuf {
    let config = dir.join("cluster.toml");
    let text = format!(
        "[controller]\nlisten = \"{quic}\"\ncerts = \"certs\"\nprofiles = \"profiles\"\nmax_batch = 4\n{controller_keys}\n\n[[model]]\nname = \"{model}\"\nmodel = \"{model}.onnx\"\nslo_ms = 1500\n"
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// Sends SIGTERM, as systemd does on stop, and waits for the process.
pub fn terminate(procs: &mut Procs, name: &str) {
    let i = procs.0.iter().position(|(n, _)| n == name).unwrap();
    let (_, mut child) = procs.0.remove(i);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{name} stopped with {status} on SIGTERM");
}
