//! A cluster under attack, as an outsider would try it: a `poolpipe controller` started with
//! a low descriptor limit (`ulimit -n 256`) and two `poolpipe worker` processes on loopback,
//! background requests from two clients throughout.
//!
//! - Large JSON bodies from four clients at once (and announced 66 MB ones) while the
//!   background load runs: no worker is declared dead, the plan stays, and at most 1% of the
//!   background requests fail.
//! - A flood of idle sockets, twice the descriptor limit: requests still get 200.
//! - A slowloris connection is closed by the header timeout.
//! - The controller killed and started again: the workers find it at once (a stateless reset
//!   keyed by its certificate's key) and requests are served again within 3 s.

mod cluster_kit;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_kit::*;

const MODEL: &str = "resnet50_block";

/// The controller under a descriptor limit of 256.
fn controller(config: &Path, log: &Path) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec '{}' controller --config '{}'",
            env!("CARGO_BIN_EXE_poolpipe"),
            config.display()
        ))
        .env("RUST_LOG", "info,wgpu_hal=off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .spawn()
        .expect("the controller starts")
}

/// A JSON inference body of about `bytes` bytes for `input` (valid JSON, wrong shape: the
/// server parses all of it before refusing it).
fn big_json(input: &str, bytes: usize) -> Vec<u8> {
    let n = bytes / 9;
    let mut s = format!(r#"{{"inputs":[{{"name":"{input}","shape":[1,{n}],"datatype":"FP32","data":["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str("0.123456");
    }
    s.push_str("]}]}");
    s.into_bytes()
}

#[test]
fn attacks_on_the_api_leave_the_cluster_serving_and_a_restarted_controller_is_found_at_once() {
    let dir = tmp("cluster-hardening");
    model_profiled_as(&dir, MODEL, "lvp");
    let certs = cluster_certs(&dir, &["controller", "worker-1", "worker-2"]);
    let quic = free_addr(true);
    let api = free_addr(false);
    let config = cluster_config(
        &dir,
        quic,
        MODEL,
        // The attack slows the workers' CPU: no re-planning from profile corrections, so that
        // a plan change can only mean a worker declared dead.
        &format!(
            "http = \"{api}\"\nworkers = 2\nreplan_correction = 0\n\n[controller.limits]\nheader_timeout_ms = 2000\n"
        ),
    );
    let log = dir.join("controller.log");
    let mut procs = Procs(vec![("controller".into(), controller(&config, &log))]);
    spawn_workers(&mut procs, &dir, quic, &certs, &[("worker-1", "lvp"), ("worker-2", "lvp")]);
    wait_ready(api, &dir, Duration::from_secs(180));
    let (input, frame) = outputs_match_onnxruntime(api, &dir, MODEL);
    let generation = metric(api, "poolpipe_plan_generation");

    // 1. Large bodies from four clients at once, twice over, and four announced 66 MB ones,
    // under background load.
    let body = big_json(&input, 15 << 20);
    let (results, sent, refused) = under_load(api, MODEL, &frame, 14.0, |_| {
        let attackers: Vec<_> = (0..4)
            .map(|_| {
                let body = body.clone();
                std::thread::spawn(move || {
                    let mut statuses = vec![];
                    for _ in 0..2 {
                        let (s, _) = http(api, "POST", &format!("/v2/models/{MODEL}/infer"), &body).unwrap();
                        statuses.push(s);
                    }
                    let line = announce(api, 66 << 20);
                    statuses.push(line.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0));
                    statuses
                })
            })
            .collect();
        let statuses: Vec<u16> = attackers.into_iter().flat_map(|a| a.join().unwrap()).collect();
        // The 15 MB bodies are parsed and refused for their shape (or turned away while the
        // budget is full); the announced 66 MB ones get 413 before any byte is read.
        assert!(statuses.iter().all(|s| [400, 413, 503].contains(s)), "{statuses:?}");
        assert_eq!(statuses.iter().filter(|&&s| s == 413).count(), 4, "{statuses:?}");
        statuses.len() as f64
    });
    assert_eq!(refused, 12.0);
    assert_eq!(results.len(), sent);
    let failed = results.iter().filter(|&&(_, s)| s != 200).count();
    assert!(
        failed * 100 <= results.len(),
        "{failed} of {} background requests failed: {results:?}\n{}",
        results.len(),
        logs(&dir)
    );
    let controller_log = std::fs::read_to_string(&log).unwrap();
    assert!(!controller_log.contains("worker gone"), "a worker was declared dead:\n{controller_log}");
    assert_eq!(metric(api, "poolpipe_plan_generation"), generation, "the plan changed:\n{controller_log}");

    // 2. Idle sockets, twice the controller's descriptor limit; requests still get 200.
    let flood: Vec<TcpStream> = (0..512).filter_map(|_| TcpStream::connect(api).ok()).collect();
    assert!(flood.len() > 300, "only {} sockets opened", flood.len());
    for _ in 0..5 {
        let (s, b) = http(api, "GET", "/v2/health/ready", b"").unwrap();
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    }
    // An inference is served too (the scheduler may turn one away as too late: retried).
    let answers: Vec<u16> =
        (0..10).map(|_| http(api, "POST", &format!("/v2/models/{MODEL}/infer"), &frame).map_or(0, |r| r.0)).collect();
    assert!(answers.contains(&200) && answers.iter().all(|s| [200, 503].contains(s)), "{answers:?}");
    drop(flood);

    // 3. Slowloris: a header byte every 300 ms, closed by the 2 s header timeout.
    let mut slow = TcpStream::connect(api).unwrap();
    slow.write_all(b"GET /v2/health/live HTTP/1.1\r\n").unwrap();
    let mut writer = slow.try_clone().unwrap();
    let t = Instant::now();
    let drip = std::thread::spawn(move || {
        for _ in 0..100 {
            if writer.write_all(b"X").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = vec![];
    let _ = slow.read_to_end(&mut sink);
    assert!(t.elapsed() < Duration::from_secs(6), "slowloris held the connection {:?}", t.elapsed());
    drip.join().unwrap();

    // 4. The controller killed and started again: served again within 3 s of its start.
    let (_, mut old) = procs.0.remove(0);
    old.kill().unwrap();
    old.wait().unwrap();
    let restarted = Instant::now();
    procs.0.insert(0, ("controller".into(), controller(&config, &log)));
    let served = loop {
        if let Ok((200, _)) = http(api, "POST", &format!("/v2/models/{MODEL}/infer"), &frame) {
            break restarted.elapsed();
        }
        assert!(restarted.elapsed() < Duration::from_secs(30), "not served again within 30 s:\n{}", logs(&dir));
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(served <= Duration::from_secs(3), "served again {served:?} after the restart:\n{}", logs(&dir));
}

/// Sends a request head announcing `bytes` of body and returns the first line of the answer.
fn announce(api: SocketAddr, bytes: usize) -> String {
    let mut c = TcpStream::connect(api).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {bytes}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string()
}
