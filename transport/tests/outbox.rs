//! The ordered outbox on loopback: a peer's batches leave smallest key first as the link's
//! slots free, and a batch that cannot be sent is reported, never lost.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use poolpipe_transport::config::{Backoff, TransportConfig};
use poolpipe_transport::endpoint::{EndpointError, Node, recv};
use poolpipe_transport::frame::{BatchHeader, Dtype, FrameLimits, RequestRef, TensorInfo};
use poolpipe_transport::link::Link;
use poolpipe_transport::outbox::Outbox;
use poolpipe_transport::tls;

fn header(batch: u64) -> BatchHeader {
    BatchHeader {
        model: 0,
        batch,
        stage: 0,
        requests: vec![RequestRef { id: batch, deadline_us: 1e6 }],
        route: vec![],
        tensors: vec![TensorInfo { name: "x".into(), dtype: Dtype::F32, dims: vec![1, 16] }],
    }
}

fn payload() -> Vec<Bytes> {
    vec![Bytes::from(vec![7u8; 64])]
}

fn node(ca: &tls::Identity, name: &str, cfg: TransportConfig) -> Node {
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    Node::bind_with(addr, &tls::issue(&ca.key_pem, name).unwrap(), &ca.cert_pem, cfg).unwrap()
}

#[tokio::test]
async fn batches_leave_smallest_key_first_as_the_links_slots_free() {
    let ca = tls::init_ca().unwrap();
    let cfg = TransportConfig { max_in_flight: 1, ..Default::default() };
    let (frontend, worker) = (node(&ca, "frontend", cfg.clone()), node(&ca, "worker-1", cfg));
    let link = Link::new(&frontend, worker.local_addr().unwrap(), "worker-1");
    let failed: Arc<Mutex<Vec<u64>>> = Arc::default();
    let f = failed.clone();
    let outbox = Outbox::spawn(link, Arc::new(move |batch, _| f.lock().unwrap().push(batch)));
    // One slot: the first batch (smallest key) takes it and holds it until the worker has
    // read it; the others wait in the outbox, pushed in another order than their keys.
    for (key, batch) in [(5.0, 1), (30.0, 2), (10.0, 3), (20.0, 4), (10.0, 5), (f64::NAN, 6)] {
        outbox.push(key, header(batch), payload()).unwrap();
    }
    let conn = tokio::time::timeout(Duration::from_secs(20), worker.accept()).await.unwrap().unwrap();
    let mut got = vec![];
    for _ in 0..6 {
        let frame = tokio::time::timeout(Duration::from_secs(20), recv(&conn, &FrameLimits::default()))
            .await
            .expect("the next batch comes")
            .unwrap();
        got.push(frame.header.batch);
    }
    // Ties in the order pushed; a key that is not a number goes last.
    assert_eq!(got, vec![1, 3, 5, 4, 2, 6]);
    assert!(failed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn batches_for_an_unreachable_peer_are_each_reported_failed() {
    let ca = tls::init_ca().unwrap();
    let cfg = TransportConfig {
        connect_timeout: Duration::from_millis(200),
        backoff: Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(50),
            give_up: Duration::from_millis(300),
        },
        ..Default::default()
    };
    let frontend = node(&ca, "frontend", cfg);
    // A port nothing listens on: bind one, note it, let it go.
    let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let link = Link::new(&frontend, gone, "worker-1");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let outbox = Outbox::spawn(link, Arc::new(move |batch, e: EndpointError| tx.send((batch, e.to_string())).unwrap()));
    for batch in 0..3 {
        outbox.push(batch as f64, header(batch), payload()).unwrap();
    }
    drop(outbox);
    let mut failed = vec![];
    while let Ok(Some((batch, reason))) = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        assert!(reason.contains(&format!("batch {batch}")) || reason.contains("unreachable"), "{reason}");
        failed.push(batch);
    }
    failed.sort_unstable();
    assert_eq!(failed, vec![0, 1, 2], "every batch is reported, none lost");
}
