//! Two nodes on loopback: frames travel over QUIC with mutual TLS, a peer from another CA is
//! refused, a malformed frame fails its stream only.

use bytes::Bytes;
use poolpipe_transport::endpoint::{EndpointError, Node, recv, send};
use poolpipe_transport::frame::{BatchHeader, Dtype, FrameLimits, RequestRef, RouteHop, TensorInfo};
use poolpipe_transport::tls;

fn header(batch: u64) -> BatchHeader {
    BatchHeader {
        model: 1,
        batch,
        stage: 1,
        requests: vec![RequestRef { id: 5, deadline_us: 9e6 }],
        route: vec![RouteHop { stage: 1, worker: 2 }],
        tensors: vec![TensorInfo { name: "cut".into(), dtype: Dtype::F16, dims: vec![1, 64, 32, 32] }],
    }
}

fn payload() -> Vec<Bytes> {
    vec![Bytes::from((0..64 * 32 * 32 * 2).map(|i| (i % 251) as u8).collect::<Vec<u8>>())]
}

fn node(ca: &tls::Identity, name: &str) -> Node {
    let id = tls::issue(&ca.key_pem, name).unwrap();
    Node::bind("127.0.0.1:0".parse().unwrap(), &id, &ca.cert_pem).unwrap()
}

#[tokio::test]
async fn frames_travel_between_nodes_of_one_cluster() {
    let ca = tls::init_ca().unwrap();
    let (a, b) = (node(&ca, "worker-a"), node(&ca, "worker-b"));
    let addr = b.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let conn = b.accept().await.unwrap();
        let mut got = vec![];
        for _ in 0..3 {
            got.push(recv(&conn, &FrameLimits::default()).await.unwrap());
        }
        got
    });
    let conn = a.connect(addr, "worker-b").await.unwrap();
    for batch in 0..3 {
        send(&conn, &header(batch), &payload()).await.unwrap();
    }
    let got = server.await.unwrap();
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f.header, header(i as u64));
        assert_eq!(f.payloads, payload());
    }
}

#[tokio::test]
async fn a_peer_from_another_ca_is_refused() {
    let (ca, other) = (tls::init_ca().unwrap(), tls::init_ca().unwrap());
    let b = node(&ca, "worker-b");
    let addr = b.local_addr().unwrap();
    let intruder = node(&other, "worker-x");
    let server = tokio::spawn(async move { tokio::time::timeout(std::time::Duration::from_secs(3), b.accept()).await });
    let err = intruder.connect(addr, "worker-b").await.unwrap_err();
    assert!(matches!(err, EndpointError::Handshake { peer, .. } if peer == addr), "{err}");
    assert!(server.await.unwrap().is_err(), "the server accepted no connection");
    // A name the certificate does not carry is refused too.
    let c = node(&ca, "worker-c");
    let b2 = node(&ca, "worker-b2");
    let addr2 = b2.local_addr().unwrap();
    tokio::spawn(async move { b2.accept().await });
    let err = c.connect(addr2, "someone-else").await.unwrap_err();
    assert!(err.to_string().contains("someone-else") || err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn a_peer_without_a_certificate_is_refused() {
    let ca = tls::init_ca().unwrap();
    let b = node(&ca, "worker-b");
    let addr = b.local_addr().unwrap();
    let server = tokio::spawn(async move { tokio::time::timeout(std::time::Duration::from_secs(3), b.accept()).await });
    // A client that trusts the cluster CA but presents no certificate of its own.
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![tls::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut anon = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    anon.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
    let attempt = async {
        let conn = anon.connect(addr, "worker-b").map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
        // TLS 1.3: the server's verdict on the client certificate may arrive after the
        // client's handshake completes; the connection is then closed.
        let mut s = conn.open_uni().await.map_err(|e| e.to_string())?;
        s.write_all(b"hello").await.map_err(|e| e.to_string())?;
        let _ = s.finish();
        Ok::<String, String>(conn.closed().await.to_string())
    };
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), attempt).await.expect("the handshake hung");
    let why = r.unwrap_or_else(|e| e);
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    assert!(server.await.unwrap().is_err(), "the server accepted no connection");
}

#[tokio::test]
async fn a_malformed_frame_fails_its_stream_only() {
    let ca = tls::init_ca().unwrap();
    let (a, b) = (node(&ca, "worker-a"), node(&ca, "worker-b"));
    let addr = b.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let conn = b.accept().await.unwrap();
        let limits = FrameLimits::default();
        let first = recv(&conn, &limits).await;
        let second = recv(&conn, &limits).await;
        (first.map(|f| f.header), second.map(|f| f.header))
    });
    let conn = a.connect(addr, "worker-b").await.unwrap();
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(b"PPTF\x07\x00garbage").await.unwrap();
    s.finish().unwrap();
    send(&conn, &header(9), &payload()).await.unwrap();
    let (first, second) = server.await.unwrap();
    let e = first.unwrap_err().to_string();
    assert!(e.contains("refused") && e.contains("version 7"), "{e}");
    assert_eq!(second.unwrap(), header(9));
}

#[test]
fn certificates_are_written_and_read_back() {
    let dir = std::env::temp_dir().join(format!("pp-certs-{}", std::process::id()));
    let ca = tls::init_ca().unwrap();
    tls::save(&dir, "ca", &ca).unwrap();
    let node = tls::issue(&tls::load(&dir, "ca").unwrap().key_pem, "worker-1").unwrap();
    let (cert, key) = tls::save(&dir, "worker-1", &node).unwrap();
    assert!(std::fs::read_to_string(cert).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let e = tls::issue("not a key", "worker-2").unwrap_err().to_string();
    assert!(e.contains("the CA key"), "{e}");
    let e = tls::issue(&ca.key_pem, "bad name!").unwrap_err().to_string();
    assert!(e.contains("bad name!"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}
