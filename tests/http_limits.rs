//! The HTTP server's limits as a hostile client meets them, over real sockets: the
//! connection cap (an idle-socket flood does not lock a probe out), the header, body and idle
//! timeouts (slowloris is cut off), the JSON body limit, and the in-flight memory budget.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use poolpipe::serve::frontend::http::{Backend, HttpOptions, ModelMeta, TensorMeta, listen};
use poolpipe::serve::frontend::kserve::{ApiError, InputTensor, OutputTensor};
use poolpipe::serve::frontend::server::{ServerLimits, connection_cap};

/// Echoes its input.
struct Echo;

impl Backend for Echo {
    fn models(&self) -> Vec<ModelMeta> {
        vec![ModelMeta {
            name: "echo".into(),
            inputs: vec![TensorMeta { name: "x".into(), shape: vec![4] }],
            outputs: vec![TensorMeta { name: "y".into(), shape: vec![4] }],
        }]
    }
    fn ready(&self, _: &str) -> bool {
        true
    }
    async fn infer(&self, _: &str, inputs: Vec<InputTensor>) -> Result<Vec<OutputTensor>, ApiError> {
        let x = &inputs[0];
        Ok(vec![OutputTensor { name: "y".into(), shape: x.shape.clone(), data: x.data.clone() }])
    }
}

fn start(options: HttpOptions) -> poolpipe::serve::frontend::server::HttpServer {
    listen(Echo, ([127, 0, 0, 1], 0).into(), options).expect("the server starts")
}

const BODY: &str = r#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#;

fn infer_request(body: &str) -> String {
    format!(
        "POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `raw` on a new connection and reads the answer to its end (30 s at most).
fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(raw).unwrap();
    let mut out = vec![];
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status(answer: &str) -> u16 {
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// How long until the server closes `c` (it must within `limit`); what it sent before.
fn closed_within(c: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let t = Instant::now();
    c.set_read_timeout(Some(limit)).unwrap();
    let mut out = vec![];
    match c.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed within {limit:?} ({e}); got {:?}", String::from_utf8_lossy(&out)),
    }
    (t.elapsed(), String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn the_connection_cap_follows_the_descriptor_limit() {
    assert_eq!(connection_cap(256), 128);
    assert_eq!(connection_cap(1024), 704);
    assert_eq!(connection_cap(16), 8);
    assert_eq!(connection_cap(1 << 20), 16_384);
}

#[test]
fn an_idle_socket_flood_does_not_lock_a_probe_out() {
    let server = start(HttpOptions {
        server: ServerLimits { max_connections: 32, ..ServerLimits::default() },
        ..HttpOptions::default()
    });
    let addr = server.addr();
    // Ten times the cap in idle sockets, some with a partial request head.
    let mut flood = vec![];
    for i in 0..320 {
        let mut c = TcpStream::connect(addr).unwrap();
        if i % 2 == 0 {
            c.write_all(b"GET /v2/health/live HTTP/1.1\r\n").unwrap();
        }
        flood.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.open_connections() <= 33, "{} open over a cap of 32", server.open_connections());
    // Probes on fresh connections are answered, one after another.
    for _ in 0..5 {
        let a = exchange(addr, infer_request(BODY).as_bytes());
        assert_eq!(status(&a), 200, "{a}");
    }
    let (evicted, _) = server.evicted_and_refused();
    assert!(evicted >= 288, "only {evicted} idle connections evicted");
    drop(flood);

    // When every connection is busy (two requests waiting for their bodies, on a cap of
    // two), a new one is answered 503 with Retry-After and closed.
    let server = start(HttpOptions {
        server: ServerLimits { max_connections: 2, ..ServerLimits::default() },
        ..HttpOptions::default()
    });
    let busy: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = TcpStream::connect(server.addr()).unwrap();
            c.write_all(b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let a = exchange(server.addr(), infer_request(BODY).as_bytes());
    assert_eq!(status(&a), 503, "{a}");
    assert!(a.to_lowercase().contains("retry-after: 1") && a.contains("too many open connections"), "{a}");
    assert_eq!(server.evicted_and_refused().1, 1);
    drop(busy);
}

#[test]
fn slow_headers_idle_connections_and_slow_bodies_are_cut_off() {
    let server = start(HttpOptions {
        body_timeout: Duration::from_millis(800),
        server: ServerLimits {
            header_timeout: Duration::from_millis(800),
            idle_timeout: Duration::from_millis(1500),
            ..ServerLimits::default()
        },
        ..HttpOptions::default()
    });
    let addr = server.addr();

    // Slowloris: one header byte every 200 ms, forever; closed by the header timeout.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /v2/health/live HTTP/1.1\r\n").unwrap();
    let mut writer = slow.try_clone().unwrap();
    let drip = std::thread::spawn(move || {
        for _ in 0..100 {
            if writer.write_all(b"X").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });
    let (after, _) = closed_within(&mut slow, Duration::from_secs(5));
    assert!(after < Duration::from_secs(3), "slowloris held {after:?}");
    assert!(drip.join().unwrap(), "the dripping connection stayed open");

    // A connection that never sends a byte: closed by the idle timeout.
    let mut idle = TcpStream::connect(addr).unwrap();
    let (after, _) = closed_within(&mut idle, Duration::from_secs(5));
    assert!(after >= Duration::from_millis(700), "closed after only {after:?}");

    // Keep-alive: a second request on the same connection is served; then it idles out.
    let mut kept = TcpStream::connect(addr).unwrap();
    for _ in 0..2 {
        kept.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 512];
        let n = kept.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    let (after, _) = closed_within(&mut kept, Duration::from_secs(5));
    assert!(after >= Duration::from_millis(700), "closed after only {after:?}");

    // A body that trickles: 408 once the body timeout passes.
    let mut trickle = TcpStream::connect(addr).unwrap();
    trickle
        .write_all(
            b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\"",
        )
        .unwrap();
    let (after, answer) = closed_within(&mut trickle, Duration::from_secs(5));
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    assert!(after < Duration::from_secs(3), "{after:?}");

    // The server still answers.
    assert_eq!(status(&exchange(addr, infer_request(BODY).as_bytes())), 200);
}

#[test]
fn json_has_a_lower_limit_than_binary_and_bodies_share_a_memory_budget() {
    let server = start(HttpOptions {
        max_body: 64 << 10,
        max_json_body: 2 << 10,
        max_in_flight_bytes: 256 << 10,
        body_timeout: Duration::from_secs(5),
        ..HttpOptions::default()
    });
    let addr = server.addr();
    // A 3 kB JSON request: over the JSON limit, named.
    let padded = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,{}4]}}]}}"#,
        " ".repeat(3000)
    );
    let a = exchange(addr, infer_request(&padded).as_bytes());
    assert_eq!(status(&a), 413, "{a}");
    assert!(a.contains("max_json_body_bytes"), "{a}");
    // The same size in binary tensor data is taken.
    let head = r#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#;
    let json_part = format!("{head}{}", " ".repeat(3000));
    let mut body = json_part.clone().into_bytes();
    for v in [1f32, 2.0, 3.0, 4.0] {
        body.extend(v.to_le_bytes());
    }
    let mut raw = format!(
        "POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        json_part.len(),
        body.len()
    )
    .into_bytes();
    raw.extend(&body);
    let a = exchange(addr, &raw);
    assert_eq!(status(&a), 200, "{a}");

    // Two binary uploads of 60 kB announced and held open take 360 kB of a 256 kB budget:
    // the second is refused with 503 and Retry-After before its body is read.
    let announce = "POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: 10\r\nContent-Length: 60000\r\n\r\n";
    let mut first = TcpStream::connect(addr).unwrap();
    first.write_all(announce.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut second = TcpStream::connect(addr).unwrap();
    second.write_all(announce.as_bytes()).unwrap();
    let (_, answer) = closed_within(&mut second, Duration::from_secs(3));
    assert_eq!(status(&answer), 503, "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1") && answer.contains("max_in_flight_bytes"), "{answer}");
    // A body of unknown length (chunked) takes its share as it arrives: beside the held 60 kB
    // (180 kB of the budget), a small one is served and one of 40 kB (120 kB more) gets 503.
    let chunked = |chunks: &[Vec<u8>]| {
        let mut raw = format!(
            "POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            json_part.len()
        )
        .into_bytes();
        for c in chunks {
            raw.extend(format!("{:x}\r\n", c.len()).into_bytes());
            raw.extend(c);
            raw.extend(b"\r\n");
        }
        raw.extend(b"0\r\n\r\n");
        exchange(addr, &raw)
    };
    let a = chunked(&[body[..1000].to_vec(), body[1000..].to_vec()]);
    assert_eq!(status(&a), 200, "{a}");
    let a = chunked(&vec![vec![b' '; 10_000]; 4]);
    assert_eq!(status(&a), 503, "{a}");
    assert!(a.contains("max_in_flight_bytes"), "{a}");
    // Once the first is gone, its share comes back.
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&exchange(addr, infer_request(BODY).as_bytes())), 200);
}
