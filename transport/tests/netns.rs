//! Two nodes in two network namespaces joined by a veth pair: frames and control messages
//! cross a real interface (MTU 1500), not loopback.
//!
//! Needs root (`ip netns`, `setns`), so it is ignored by a plain `cargo test`;
//! `scripts/test.sh` runs it with `--ignored` (CI runs as root) and fails when it cannot.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use poolpipe_transport::control::Control;
use poolpipe_transport::endpoint::{Node, recv, recv_control};
use poolpipe_transport::frame::{BatchHeader, Dtype, FrameLimits, RequestRef, TensorInfo};
use poolpipe_transport::link::Link;
use poolpipe_transport::tls;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("the `ip` command (iproute2) is needed");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Two namespaces and a veth pair, removed on drop.
struct Net {
    a: String,
    b: String,
}

impl Net {
    fn new() -> Net {
        let id = std::process::id() % 100_000;
        let net = Net { a: format!("pp-a-{id}"), b: format!("pp-b-{id}") };
        let (va, vb) = (format!("ppa{id}"), format!("ppb{id}"));
        ip(&["netns", "add", &net.a]);
        ip(&["netns", "add", &net.b]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &net.a]);
        ip(&["link", "set", &vb, "netns", &net.b]);
        for (ns, dev, addr) in [(&net.a, &va, "10.231.0.1/24"), (&net.b, &vb, "10.231.0.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a new thread that has entered namespace `ns`, with its own runtime.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: a valid namespace descriptor; this thread alone moves into it.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f())
    })
}

#[test]
#[ignore = "needs root for ip netns; scripts/test.sh runs it with --ignored"]
fn frames_cross_a_veth_pair_between_two_namespaces() {
    let net = Net::new();
    let ca = tls::init_ca().unwrap();
    let (ida, idb) = (tls::issue(&ca.key_pem, "worker-a").unwrap(), tls::issue(&ca.key_pem, "worker-b").unwrap());
    let ca_pem = ca.cert_pem.clone();
    let bytes = 4 << 20;
    let payload = Bytes::from((0..bytes).map(|i| (i % 239) as u8).collect::<Vec<u8>>());
    let header = BatchHeader {
        model: 1,
        batch: 77,
        stage: 1,
        requests: vec![RequestRef { id: 1, deadline_us: 1e6 }],
        route: vec![],
        tensors: vec![TensorInfo { name: "cut".into(), dtype: Dtype::F16, dims: vec![1, bytes as u64 / 2] }],
    };
    let receiver = in_netns(&net.b, move || {
        Box::pin(async move {
            let node = Node::bind("10.231.0.2:7400".parse().unwrap(), &idb, &ca_pem).unwrap();
            let conn = node.accept().await.unwrap();
            let frame = recv(&conn, &FrameLimits::default()).await.unwrap();
            let (msg, reply) = recv_control(&conn, &FrameLimits::default()).await.unwrap();
            reply.send(&Control::Ack).await.unwrap();
            (frame, msg, conn.remote_address())
        })
    });
    let (h, p, ca_pem) = (header.clone(), payload.clone(), ca.cert_pem.clone());
    let sender = in_netns(&net.a, move || {
        Box::pin(async move {
            let node = Node::bind("10.231.0.1:0".parse().unwrap(), &ida, &ca_pem).unwrap();
            let link = Link::new(&node, "10.231.0.2:7400".parse().unwrap(), "worker-b");
            link.send(&h, &[p]).await.unwrap();
            let reply = link.call(&Control::Health { worker: 1, seq: 1, in_flight: 0, busy: 0.5 }).await.unwrap();
            let mtu = link.connection().await.unwrap().stats().path.current_mtu;
            node.close();
            tokio::time::timeout(Duration::from_secs(2), node.wait_idle()).await.ok();
            (reply, mtu)
        })
    });
    let (reply, mtu) = sender.join().expect("sender");
    let (frame, msg, from) = receiver.join().expect("receiver");
    assert_eq!(reply, Control::Ack);
    assert_eq!(frame.header, header);
    assert_eq!(frame.payloads, vec![payload]);
    assert!(matches!(msg, Control::Health { seq: 1, .. }));
    assert_eq!(from.ip().to_string(), "10.231.0.1", "the frame came over the veth pair");
    assert!(mtu <= 1472, "path MTU {mtu} cannot exceed the veth's 1500-byte MTU");
    drop(net);
}
