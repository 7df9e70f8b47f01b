//! Control messages, backpressure, peers that vanish mid-stream, refused frames and
//! reconnection with backoff, on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use poolpipe_transport::config::{Backoff, TransportConfig};
use poolpipe_transport::control::Control;
use poolpipe_transport::endpoint::{EndpointError, Node, recv, recv_control, send};
use poolpipe_transport::frame::{BatchHeader, Dtype, FrameError, FrameLimits, RequestRef, TensorInfo, encode_header};
use poolpipe_transport::link::Link;
use poolpipe_transport::tls;

const LONG: Duration = Duration::from_secs(20);

fn header(batch: u64, bytes: usize) -> BatchHeader {
    BatchHeader {
        model: 2,
        batch,
        stage: 1,
        requests: vec![RequestRef { id: batch * 10, deadline_us: 5e6 }],
        route: vec![],
        tensors: vec![TensorInfo { name: "cut".into(), dtype: Dtype::F16, dims: vec![1, bytes as u64 / 2] }],
    }
}

fn payload(bytes: usize) -> Vec<Bytes> {
    vec![Bytes::from((0..bytes).map(|i| (i % 241) as u8).collect::<Vec<u8>>())]
}

fn node_with(ca: &tls::Identity, name: &str, addr: SocketAddr, cfg: TransportConfig) -> Node {
    Node::bind_with(addr, &tls::issue(&ca.key_pem, name).unwrap(), &ca.cert_pem, cfg).unwrap()
}

fn local() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

#[tokio::test]
async fn control_messages_travel_on_their_own_streams_beside_batches() {
    let ca = tls::init_ca().unwrap();
    let (ctl, w) = (
        node_with(&ca, "controller", local(), Default::default()),
        node_with(&ca, "worker-1", local(), Default::default()),
    );
    let addr = ctl.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let conn = ctl.accept().await.unwrap();
        let limits = FrameLimits::default();
        let batches = {
            let conn = conn.clone();
            tokio::spawn(async move { recv(&conn, &FrameLimits::default()).await.map(|f| f.header.batch) })
        };
        let mut seen = vec![];
        for _ in 0..3 {
            match recv_control(&conn, &limits).await {
                Ok((msg, reply)) => {
                    let answer = match &msg {
                        Control::Register { node, .. } if node == "worker-1" => Control::Welcome { worker: 7 },
                        Control::Register { node, .. } => Control::Refused { reason: format!("unknown node {node}") },
                        _ => Control::Ack,
                    };
                    reply.send(&answer).await.unwrap();
                    seen.push(msg.kind().to_string());
                }
                Err(e) => seen.push(format!("error: {e}")),
            }
        }
        (seen, batches.await.unwrap().unwrap())
    });
    let link = Link::new(&w, addr, "controller");
    let register = Control::Register {
        node: "worker-1".into(),
        class: "T4".into(),
        device: "lavapipe".into(),
        data_addr: "127.0.0.1:1".into(),
    };
    assert_eq!(link.call(&register).await.unwrap(), Control::Welcome { worker: 7 });
    // A batch on the same connection, on a unidirectional stream.
    link.send(&header(3, 4096), &payload(4096)).await.unwrap();
    // A malformed control message is answered with Refused and the next exchange works.
    let conn = link.connection().await.unwrap();
    let (mut tx, mut rx) = conn.open_bi().await.unwrap();
    tx.write_all(b"PPTF\x01\x00\x02\x00\x05\x00\x00\x00{\"ty").await.unwrap();
    tx.finish().unwrap();
    let reply = rx.read_to_end(1 << 20).await.unwrap();
    let reply = poolpipe_transport::control::decode_control(&reply, &FrameLimits::default()).unwrap();
    assert!(matches!(&reply, Control::Refused { reason } if reason.contains("control message")), "{reply:?}");
    let timing = Control::Timing {
        worker: 7,
        model: 2,
        batch: 3,
        stage: 1,
        requests: 1,
        arrived_us: 1.0,
        start_us: 2.0,
        end_us: 3.0,
    };
    assert_eq!(link.call(&timing).await.unwrap(), Control::Ack);
    let (seen, batch) = tokio::time::timeout(LONG, server).await.unwrap().unwrap();
    assert_eq!(batch, 3);
    assert_eq!(seen[0], "register");
    assert!(seen[1].starts_with("error:") && seen[1].contains("refused"), "{seen:?}");
    assert_eq!(seen[2], "timing");
}

#[tokio::test]
async fn a_slow_receiver_holds_its_senders_to_the_in_flight_bound() {
    let ca = tls::init_ca().unwrap();
    let cfg = TransportConfig { max_in_flight: 2, ..Default::default() };
    let (a, b) = (node_with(&ca, "worker-a", local(), cfg.clone()), node_with(&ca, "worker-b", local(), cfg));
    let addr = b.local_addr().unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let conn = b.accept().await.unwrap();
        go_rx.await.unwrap();
        let mut got = vec![];
        for _ in 0..5 {
            got.push(recv(&conn, &FrameLimits::default()).await.unwrap().header.batch);
        }
        got
    });
    let link = Link::new(&a, addr, "worker-b");
    let done = Arc::new(AtomicUsize::new(0));
    let mut sends = vec![];
    for batch in 0..5u64 {
        let (link, done) = (link.clone(), done.clone());
        sends.push(tokio::spawn(async move {
            link.send(&header(batch, 64 << 10), &payload(64 << 10)).await.unwrap();
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    // Two batches are taken (the receiver's stream credit); the other three wait.
    let t0 = std::time::Instant::now();
    while done.load(Ordering::SeqCst) < 2 {
        assert!(t0.elapsed() < LONG, "the first two batches were never delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        2,
        "a sender ran past the in-flight bound of a receiver that reads nothing"
    );
    go_tx.send(()).unwrap();
    for s in sends {
        tokio::time::timeout(LONG, s).await.unwrap().unwrap();
    }
    let mut got = server.await.unwrap();
    got.sort();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn the_sender_learns_the_batch_when_its_peer_leaves_mid_stream() {
    let ca = tls::init_ca().unwrap();
    let (a, b) = (
        node_with(&ca, "worker-a", local(), Default::default()),
        node_with(&ca, "worker-b", local(), Default::default()),
    );
    let addr = b.local_addr().unwrap();
    tokio::spawn(async move {
        let conn = b.accept().await.unwrap();
        let mut s = conn.accept_uni().await.unwrap();
        let mut buf = vec![0u8; 4096];
        s.read_exact(&mut buf).await.unwrap();
        conn.close(9u32.into(), b"worker-b is shutting down");
    });
    let link = Link::new(&a, addr, "worker-b");
    let err = tokio::time::timeout(LONG, link.send(&header(42, 16 << 20), &payload(16 << 20)))
        .await
        .expect("the send hung")
        .unwrap_err();
    assert!(matches!(err, EndpointError::Send { batch: 42, .. }), "{err}");
    assert!(err.to_string().contains("batch 42"), "{err}");
}

#[tokio::test]
async fn the_receiver_discards_a_partial_batch_and_names_it() {
    let ca = tls::init_ca().unwrap();
    let (a, b) = (
        node_with(&ca, "worker-a", local(), Default::default()),
        node_with(&ca, "worker-b", local(), Default::default()),
    );
    let addr = b.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let conn = b.accept().await.unwrap();
        let limits = FrameLimits::default();
        let reset = recv(&conn, &limits).await;
        let next = recv(&conn, &limits).await.map(|f| f.header.batch);
        let gone = recv(&conn, &limits).await;
        (reset, next, gone)
    });
    let conn = a.connect(addr, "worker-b").await.unwrap();
    // A stream reset half way through its payload.
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(&encode_header(&header(5, 1 << 20))).await.unwrap();
    s.write_all(&payload(1 << 20)[0][..300_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.reset(3u32.into()).unwrap();
    // The connection still carries the next batch.
    send(&conn, &header(6, 1024), &payload(1024)).await.unwrap();
    // Then the sender's connection closes half way through a batch.
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(&encode_header(&header(7, 1 << 20))).await.unwrap();
    s.write_all(&payload(1 << 20)[0][..100_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.close(0u32.into(), b"worker-a stopped");
    let (reset, next, gone) = tokio::time::timeout(LONG, server).await.unwrap().unwrap();
    let e = reset.unwrap_err();
    assert!(matches!(e, EndpointError::Partial { batch: 5, expected: 1048576, .. }), "{e}");
    assert_eq!(next.unwrap(), 6);
    let e = gone.unwrap_err();
    assert!(
        matches!(e, EndpointError::Partial { batch: 7, .. } | EndpointError::Closed { .. }),
        "a closed connection ends the partial batch 7 or the stream loop: {e}"
    );
}

#[tokio::test]
async fn an_oversized_frame_is_refused_and_its_sender_told() {
    let ca = tls::init_ca().unwrap();
    let small = TransportConfig {
        limits: FrameLimits { max_payload: 1 << 20, ..FrameLimits::default() },
        ..Default::default()
    };
    let (a, b) = (node_with(&ca, "worker-a", local(), Default::default()), node_with(&ca, "worker-b", local(), small));
    let addr = b.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let conn = b.accept().await.unwrap();
        let limits = FrameLimits { max_payload: 1 << 20, ..FrameLimits::default() };
        let first = recv(&conn, &limits).await;
        let second = recv(&conn, &limits).await.map(|f| f.header.batch);
        (first, second)
    });
    let link = Link::new(&a, addr, "worker-b");
    let err = link.send(&header(1, 2 << 20), &payload(2 << 20)).await.unwrap_err();
    assert!(matches!(err, EndpointError::Send { batch: 1, .. }) && err.to_string().contains("refused"), "{err}");
    link.send(&header(2, 1024), &payload(1024)).await.unwrap();
    let (first, second) = tokio::time::timeout(LONG, server).await.unwrap().unwrap();
    let e = first.unwrap_err();
    assert!(matches!(e, EndpointError::Frame { source: FrameError::TooLarge { .. }, .. }), "{e}");
    assert_eq!(second.unwrap(), 2);
}

fn quick_backoff(give_up: Duration) -> TransportConfig {
    TransportConfig {
        connect_timeout: Duration::from_millis(300),
        backoff: Backoff { first: Duration::from_millis(20), max: Duration::from_millis(200), give_up },
        ..Default::default()
    }
}

#[tokio::test]
async fn a_link_redials_with_backoff_when_its_peer_comes_back() {
    let ca = tls::init_ca().unwrap();
    let a = node_with(&ca, "worker-a", local(), quick_backoff(LONG));
    let b = node_with(&ca, "worker-b", local(), Default::default());
    let addr = b.local_addr().unwrap();
    let first = tokio::spawn(async move {
        let conn = b.accept().await.unwrap();
        let f = recv(&conn, &FrameLimits::default()).await.unwrap();
        b.close();
        b.wait_idle().await;
        f.header.batch
    });
    let link = Link::new(&a, addr, "worker-b");
    link.send(&header(1, 1024), &payload(1024)).await.unwrap();
    assert_eq!(tokio::time::timeout(LONG, first).await.unwrap().unwrap(), 1);
    // worker-b is gone; it comes back on the same address a little later.
    let ca2 = ca.clone();
    let back = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let t0 = std::time::Instant::now();
        let b = loop {
            match Node::bind(addr, &tls::issue(&ca2.key_pem, "worker-b").unwrap(), &ca2.cert_pem) {
                Ok(n) => break n,
                Err(e) if t0.elapsed() < Duration::from_secs(5) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot rebind {addr}: {e}"),
            }
        };
        let conn = b.accept().await.unwrap();
        recv(&conn, &FrameLimits::default()).await.unwrap().header.batch
    });
    let t0 = std::time::Instant::now();
    link.send(&header(2, 1024), &payload(1024)).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(500), "batch 2 cannot have gone before worker-b came back");
    assert_eq!(tokio::time::timeout(LONG, back).await.unwrap().unwrap(), 2);
}

#[tokio::test]
async fn a_link_gives_up_on_an_unreachable_peer_with_a_clear_error() {
    let ca = tls::init_ca().unwrap();
    let a = node_with(&ca, "worker-a", local(), quick_backoff(Duration::from_secs(1)));
    // A UDP socket that never answers: every handshake times out.
    let hole = std::net::UdpSocket::bind(local()).unwrap();
    let link = Link::new(&a, hole.local_addr().unwrap(), "worker-b");
    let t0 = std::time::Instant::now();
    let err = link.send(&header(8, 1024), &payload(1024)).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(5), "gave up after {:?}", t0.elapsed());
    let msg = err.to_string();
    assert!(msg.contains("batch 8") && msg.contains("unreachable after") && msg.contains("worker-b"), "{msg}");
}

/// A UDP relay in front of a node: it can go silent both ways (`cut`), or switch its far end
/// to another node (`target`: what a node restarted on the same address looks like from the
/// other side).
struct Relay {
    addr: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    target: Arc<std::sync::Mutex<SocketAddr>>,
}

impl Relay {
    async fn start(server: SocketAddr) -> Relay {
        let front = Arc::new(tokio::net::UdpSocket::bind(local()).await.unwrap());
        let back = Arc::new(tokio::net::UdpSocket::bind(local()).await.unwrap());
        let addr = front.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let target = Arc::new(std::sync::Mutex::new(server));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        {
            let (front, back, cut, target, client) =
                (front.clone(), back.clone(), cut.clone(), target.clone(), client.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap() = Some(from);
                    let to = *target.lock().unwrap();
                    if !cut.load(Ordering::SeqCst) {
                        let _ = back.send_to(&buf[..n], to).await;
                    }
                }
            });
        }
        {
            let (cut, target) = (cut.clone(), target.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = back.recv_from(&mut buf).await {
                    // Only the current far end is heard.
                    let (to, current) = (*client.lock().unwrap(), *target.lock().unwrap());
                    if let (Some(to), true, false) = (to, from == current, cut.load(Ordering::SeqCst)) {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            });
        }
        Relay { addr, cut, target }
    }
}

#[tokio::test]
async fn keep_alive_holds_an_idle_link_and_a_silent_peer_fails_the_send_by_the_idle_timeout() {
    let ca = tls::init_ca().unwrap();
    let cfg = TransportConfig {
        keep_alive: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(1),
        ..TransportConfig::default()
    };
    let a = node_with(&ca, "worker-a", local(), cfg.clone());
    let b = node_with(&ca, "worker-b", local(), cfg);
    let relay = Relay::start(b.local_addr().unwrap()).await;
    let server = tokio::spawn(async move {
        let conn = b.accept().await.unwrap();
        let first = recv(&conn, &FrameLimits::default()).await.map(|f| f.header.batch);
        let second = recv(&conn, &FrameLimits::default()).await.map(|f| f.header.batch);
        // Hold the connection: only the relay going silent may end it.
        let third = recv(&conn, &FrameLimits::default()).await.map(|f| f.header.batch);
        (first, second, third, b)
    });
    let link = Link::new(&a, relay.addr, "worker-b");
    link.send(&header(1, 1024), &payload(1024)).await.unwrap();
    // Idle for twice the idle timeout: the keep-alives hold the connection open.
    let conn = link.connection().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(conn.close_reason().is_none(), "the idle link was closed: {:?}", conn.close_reason());
    link.send(&header(2, 1024), &payload(1024)).await.unwrap();
    // Now the peer goes silent in the middle of a large batch.
    relay.cut.store(true, Ordering::SeqCst);
    let t0 = std::time::Instant::now();
    let err = tokio::time::timeout(LONG, link.send(&header(3, 8 << 20), &payload(8 << 20)))
        .await
        .expect("the send to a silent peer hung")
        .unwrap_err();
    assert!(matches!(err, EndpointError::Send { batch: 3, .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "the idle timeout is 1 s, the send failed after {:?}", t0.elapsed());
    assert_eq!(
        conn.close_reason().map(|r| r.to_string()),
        Some("timed out".to_string()),
        "the same connection timed out"
    );
    let (first, second, third, _b) = tokio::time::timeout(LONG, server).await.unwrap().unwrap();
    assert_eq!((first.unwrap(), second.unwrap()), (1, 2));
    assert!(third.is_err(), "batch 3 never arrived whole");
}

#[tokio::test]
async fn a_node_restarted_on_its_address_resets_the_old_connections_at_once() {
    let ca = tls::init_ca().unwrap();
    let cfg = TransportConfig {
        keep_alive: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(10),
        ..TransportConfig::default()
    };
    let id = tls::issue(&ca.key_pem, "controller").unwrap();
    for same_key in [true, false] {
        let first = Node::bind_with(local(), &id, &ca.cert_pem, cfg.clone()).unwrap();
        let relay = Relay::start(first.local_addr().unwrap()).await;
        let w = node_with(&ca, "worker-1", local(), cfg.clone());
        let held = tokio::spawn(async move { (first.accept().await.unwrap(), first) });
        let conn = Link::new(&w, relay.addr, "controller").connection().await.unwrap();
        let _held = held.await.unwrap();
        // Past the handshake (resets answer only short-header packets).
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The node is gone without a word, and a new one answers at its address: with the same
        // identity (a restart), or with a certificate of its own.
        let again = if same_key { id.clone() } else { tls::issue(&ca.key_pem, "controller").unwrap() };
        let second = Node::bind_with(local(), &again, &ca.cert_pem, cfg.clone()).unwrap();
        *relay.target.lock().unwrap() = second.local_addr().unwrap();
        let t0 = std::time::Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(3), conn.closed()).await;
        if same_key {
            let reason = closed.expect("a restart resets the old connection at its next keep-alive");
            assert_eq!(reason.to_string(), "reset by peer");
            assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        } else {
            // Another key's reset is not taken: only the idle timeout would end it.
            assert!(closed.is_err(), "{:?}", closed);
        }
    }
}
