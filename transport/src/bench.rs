//! The loopback transport benchmark (`poolpipe bench transport`): the same tensors over QUIC
//! (this crate's links and frames, mutual TLS), over TLS 1.3 on TCP (tokio-rustls, the secure
//! alternative) and over plain TCP (the ceiling), in one run, interleaved per size so that the
//! machine's load hits all three alike.
//!
//! Throughput: `n` messages sent back to back (QUIC up to `max_in_flight` streams at once, TCP
//! one byte stream), from the first byte sent to the last message fully received. Latency: one
//! message at a time, from the start of its send to its full receipt (both ends share a clock).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::config::TransportConfig;
use crate::endpoint::{EndpointError, Node, recv};
use crate::frame::{BatchHeader, Dtype, RequestRef, TensorInfo};
use crate::link::Link;
use crate::tls::{self, TlsError};

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// QUIC endpoint trouble.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Certificates.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A TCP or TLS-over-TCP leg failed.
    #[error("{leg}: {source}")]
    Io {
        /// Which leg.
        leg: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// The receiving side stopped reporting.
    #[error("the {0} receiver stopped before all messages arrived (see the log)")]
    Receiver(&'static str),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Tensor sizes, bytes (even: tensors are f16).
    pub sizes: Vec<usize>,
    /// Bytes sent per size and transport in the throughput phase.
    pub bytes_per_size: u64,
    /// Fewest messages per throughput round.
    pub min_messages: usize,
    /// Throughput rounds per size (the median counts).
    pub rounds: usize,
    /// Bytes sent one at a time per size and transport in the latency phase.
    pub latency_bytes: u64,
    /// Fewest and most latency samples.
    pub samples: (usize, usize),
    /// The QUIC settings.
    pub config: TransportConfig,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            sizes: vec![64 << 10, 1 << 20, 4 << 20, 16 << 20],
            bytes_per_size: 512 << 20,
            min_messages: 8,
            rounds: 5,
            latency_bytes: 128 << 20,
            samples: (20, 400),
            config: TransportConfig { max_udp_payload: 65507, ..TransportConfig::default() },
        }
    }
}

impl BenchOptions {
    /// A short run: an eighth of the bytes.
    pub fn quick() -> BenchOptions {
        let d = BenchOptions::default();
        BenchOptions {
            bytes_per_size: d.bytes_per_size / 8,
            latency_bytes: d.latency_bytes / 8,
            samples: (10, 100),
            ..d
        }
    }
}

/// One size's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    /// Tensor bytes.
    pub bytes: usize,
    /// Messages in each leg's throughput phase (all rounds).
    pub messages: usize,
    /// Samples in each latency phase.
    pub samples: usize,
    /// QUIC throughput, MB/s (10^6 bytes).
    pub quic_mb_s: f64,
    /// TLS-over-TCP throughput, MB/s.
    pub tls_tcp_mb_s: f64,
    /// Plain TCP throughput, MB/s.
    pub tcp_mb_s: f64,
    /// quic_mb_s / tls_tcp_mb_s.
    pub ratio: f64,
    /// QUIC latency per tensor, median, microseconds.
    pub quic_p50_us: f64,
    /// QUIC latency per tensor, 99th percentile, microseconds.
    pub quic_p99_us: f64,
    /// TLS-over-TCP latency, median.
    pub tls_tcp_p50_us: f64,
    /// TLS-over-TCP latency, 99th percentile.
    pub tls_tcp_p99_us: f64,
    /// TCP latency, median.
    pub tcp_p50_us: f64,
    /// TCP latency, 99th percentile.
    pub tcp_p99_us: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Per size.
    pub sizes: Vec<SizeResult>,
    /// QUIC settings used: largest UDP payload probed for.
    pub max_udp_payload: u16,
    /// Stream window, bytes.
    pub stream_window: u64,
    /// Connection window, bytes.
    pub connection_window: u64,
    /// Batches in flight per peer.
    pub max_in_flight: u32,
    /// The QUIC path MTU (largest UDP payload) reached at the end.
    pub quic_path_mtu: u16,
    /// QUIC packets the sender declared lost over the run.
    pub quic_lost_packets: u64,
    /// QUIC congestion events over the run.
    pub quic_congestion_events: u64,
    /// The goal for 4 MiB+ tensors: the paper's 10 Gbps effective NIC, MB/s.
    pub target_mb_s: f64,
}

enum Pipe {
    Quic { link: Link, arrived: mpsc::UnboundedReceiver<Instant> },
    Stream { leg: &'static str, writer: Box<dyn AsyncWrite + Unpin + Send>, arrived: mpsc::UnboundedReceiver<Instant> },
}

fn header(batch: u64, size: usize) -> BatchHeader {
    BatchHeader {
        model: 0,
        batch,
        stage: 1,
        requests: vec![RequestRef { id: batch, deadline_us: 0.0 }],
        route: vec![],
        tensors: vec![TensorInfo { name: "cut".into(), dtype: Dtype::F16, dims: vec![1, size as u64 / 2] }],
    }
}

/// Reads length-prefixed messages until a zero length, reporting each arrival.
async fn stream_receiver(mut r: impl AsyncRead + Unpin, leg: &'static str, tx: mpsc::UnboundedSender<Instant>) {
    loop {
        let len = match r.read_u64_le().await {
            Ok(0) => return,
            Ok(n) => n as usize,
            Err(e) => {
                tracing::warn!("{leg} receiver: {e}");
                return;
            }
        };
        let mut buf = BytesMut::with_capacity(len);
        while buf.len() < len {
            match r.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    tracing::warn!("{leg} receiver: the stream ended inside a message");
                    return;
                }
                Ok(_) => {}
            }
        }
        std::hint::black_box(&buf);
        if tx.send(Instant::now()).is_err() {
            return;
        }
    }
}

impl Pipe {
    fn leg(&self) -> &'static str {
        match self {
            Pipe::Quic { .. } => "QUIC",
            Pipe::Stream { leg, .. } => leg,
        }
    }

    async fn arrival(&mut self) -> Result<Instant, BenchError> {
        let leg = self.leg();
        let rx = match self {
            Pipe::Quic { arrived, .. } | Pipe::Stream { arrived, .. } => arrived,
        };
        rx.recv().await.ok_or(BenchError::Receiver(leg))
    }

    /// Starts sending `n` messages of `payload`; returns when all are handed over (QUIC: all
    /// acknowledged).
    async fn send_all(&mut self, payload: &Bytes, first: u64, n: usize) -> Result<(), BenchError> {
        match self {
            Pipe::Quic { link, .. } => {
                let mut set = tokio::task::JoinSet::new();
                for i in 0..n as u64 {
                    let (link, payload) = (link.clone(), payload.clone());
                    set.spawn(async move { link.send(&header(first + i, payload.len()), &[payload]).await });
                }
                while let Some(r) = set.join_next().await {
                    r.map_err(|e| BenchError::Options(format!("a QUIC send task failed: {e}")))??;
                }
                Ok(())
            }
            Pipe::Stream { leg, writer, .. } => {
                let io = |source| BenchError::Io { leg, source };
                for _ in 0..n {
                    writer.write_u64_le(payload.len() as u64).await.map_err(io)?;
                    writer.write_all(payload).await.map_err(io)?;
                }
                writer.flush().await.map_err(io)
            }
        }
    }

    async fn throughput(&mut self, payload: &Bytes, first: u64, n: usize) -> Result<f64, BenchError> {
        let t0 = Instant::now();
        self.send_all(payload, first, n).await?;
        let mut last = t0;
        for _ in 0..n {
            last = self.arrival().await?;
        }
        Ok((n * payload.len()) as f64 / last.duration_since(t0).as_secs_f64().max(1e-9) / 1e6)
    }

    async fn latencies(&mut self, payload: &Bytes, first: u64, k: usize) -> Result<Vec<f64>, BenchError> {
        let mut out = Vec::with_capacity(k);
        for i in 0..k as u64 {
            let t0 = Instant::now();
            self.send_all(payload, first + i, 1).await?;
            out.push(self.arrival().await?.duration_since(t0).as_secs_f64() * 1e6);
        }
        Ok(out)
    }
}

/// The receiving ends, served by their own thread and single-threaded runtime (as a peer on
/// another machine would be), reporting each message's arrival time.
struct Receivers {
    quic: (SocketAddr, mpsc::UnboundedReceiver<Instant>),
    tls: (SocketAddr, mpsc::UnboundedReceiver<Instant>),
    tcp: (SocketAddr, mpsc::UnboundedReceiver<Instant>),
    node: Node,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

type Ready = (Node, [(SocketAddr, mpsc::UnboundedReceiver<Instant>); 3]);

fn start_receivers(config: &TransportConfig, id: &tls::Identity, ca_pem: &str) -> Result<Receivers, BenchError> {
    let (config, id, ca_pem) = (config.clone(), id.clone(), ca_pem.to_string());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Ready, BenchError>>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("bench-receivers".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(source) => {
                    let _ = ready_tx.send(Err(BenchError::Io { leg: "receiver runtime", source }));
                    return;
                }
            };
            rt.block_on(async move {
                let setup = async {
                    let local: SocketAddr = ([127, 0, 0, 1], 0).into();
                    let node = Node::bind_with(local, &id, &ca_pem, config.clone())?;
                    let quic_addr = node.local_addr().map_err(|source| BenchError::Io { leg: "QUIC", source })?;
                    let io = |leg| move |source| BenchError::Io { leg, source };
                    let tls_l = tokio::net::TcpListener::bind(local).await.map_err(io("TLS over TCP"))?;
                    let tcp_l = tokio::net::TcpListener::bind(local).await.map_err(io("TCP"))?;
                    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::tls_server_config(&id, &ca_pem)?));
                    let (qtx, qrx) = mpsc::unbounded_channel();
                    let (ttx, trx) = mpsc::unbounded_channel();
                    let (ptx, prx) = mpsc::unbounded_channel();
                    let addrs = [
                        (quic_addr, qrx),
                        (tls_l.local_addr().map_err(io("TLS over TCP"))?, trx),
                        (tcp_l.local_addr().map_err(io("TCP"))?, prx),
                    ];
                    let (server, limits) = (node.clone(), config.limits);
                    tokio::spawn(async move {
                        let Some(conn) = server.accept().await else { return };
                        loop {
                            match recv(&conn, &limits).await {
                                Ok(frame) => {
                                    std::hint::black_box(&frame);
                                    if qtx.send(Instant::now()).is_err() {
                                        return;
                                    }
                                }
                                Err(EndpointError::Closed { .. }) => return,
                                Err(e) => tracing::warn!("QUIC receiver: {e}"),
                            }
                        }
                    });
                    tokio::spawn(async move {
                        match tls_l.accept().await {
                            Ok((s, _)) => {
                                let _ = s.set_nodelay(true);
                                match acceptor.accept(s).await {
                                    Ok(s) => stream_receiver(s, "TLS over TCP", ttx).await,
                                    Err(e) => tracing::warn!("TLS receiver: handshake: {e}"),
                                }
                            }
                            Err(e) => tracing::warn!("TLS receiver: accept: {e}"),
                        }
                    });
                    tokio::spawn(async move {
                        match tcp_l.accept().await {
                            Ok((s, _)) => {
                                let _ = s.set_nodelay(true);
                                stream_receiver(s, "TCP", ptx).await
                            }
                            Err(e) => tracing::warn!("TCP receiver: accept: {e}"),
                        }
                    });
                    Ok::<Ready, BenchError>((node, addrs))
                };
                let ok = setup.await;
                let node = ok.as_ref().ok().map(|(n, _)| n.clone());
                if ready_tx.send(ok).is_err() {
                    return;
                }
                let _ = stopped.await;
                if let Some(n) = node {
                    n.close();
                    let _ = tokio::time::timeout(Duration::from_secs(1), n.wait_idle()).await;
                }
            });
        })
        .map_err(|source| BenchError::Io { leg: "receiver thread", source })?;
    let (node, [quic, tls, tcp]) = ready_rx.recv().map_err(|_| BenchError::Receiver("setup"))??;
    Ok(Receivers { quic, tls, tcp, node, stop, thread })
}

async fn quic_pipe(
    config: &TransportConfig,
    id: &tls::Identity,
    ca_pem: &str,
    (addr, arrived): (SocketAddr, mpsc::UnboundedReceiver<Instant>),
) -> Result<(Pipe, Node), BenchError> {
    let node = Node::bind_with(([127, 0, 0, 1], 0).into(), id, ca_pem, config.clone())?;
    let link = Link::new(&node, addr, "bench-rx");
    link.connection().await?;
    Ok((Pipe::Quic { link, arrived }, node))
}

async fn tcp_pipe(
    tls_ids: Option<(&tls::Identity, &str)>,
    (addr, arrived): (SocketAddr, mpsc::UnboundedReceiver<Instant>),
) -> Result<Pipe, BenchError> {
    let leg = if tls_ids.is_some() { "TLS over TCP" } else { "TCP" };
    let io = |source| BenchError::Io { leg, source };
    let client = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    client.set_nodelay(true).map_err(io)?;
    let writer: Box<dyn AsyncWrite + Unpin + Send> = match tls_ids {
        None => Box::new(client),
        Some((id, ca)) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(tls::tls_client_config(id, ca)?));
            let name = rustls::pki_types::ServerName::try_from("bench-rx".to_string())
                .map_err(|e| BenchError::Options(e.to_string()))?;
            Box::new(connector.connect(name, client).await.map_err(io)?)
        }
    };
    Ok(Pipe::Stream { leg, writer, arrived })
}

/// A quantile of sorted values: the caller's (`poolpipe_dataplane::stats::percentile`, the
/// project's one formula, nearest rank).
pub type Percentile = fn(&[f64], f64) -> f64;

fn p50_p99(mut v: Vec<f64>, percentile: Percentile) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

/// The steps `run` reports through its `step` callback.
pub fn steps(opts: &BenchOptions) -> u64 {
    3 + opts.sizes.len() as u64 * 3 * (opts.rounds.max(1) as u64 + 1)
}

/// Runs the benchmark; `step` is told what is about to run ([`steps`] times); latency
/// percentiles are taken with `percentile`.
pub async fn run(
    opts: &BenchOptions,
    step: &(dyn Fn(&str) + Sync),
    percentile: Percentile,
) -> Result<BenchReport, BenchError> {
    if opts.sizes.is_empty() || opts.sizes.iter().any(|&s| s == 0 || s % 2 == 1) {
        return Err(BenchError::Options(format!("sizes {:?}: give even byte counts above zero", opts.sizes)));
    }
    if let Some(&s) = opts.sizes.iter().find(|&&s| s as u64 > opts.config.limits.max_payload) {
        return Err(BenchError::Options(format!(
            "size {s} is above the frame payload limit {}",
            opts.config.limits.max_payload
        )));
    }
    opts.config.validate().map_err(EndpointError::from)?;
    let ca = tls::init_ca()?;
    let (rx_id, tx_id) = (tls::issue(&ca.key_pem, "bench-rx")?, tls::issue(&ca.key_pem, "bench-tx")?);
    let rx = start_receivers(&opts.config, &rx_id, &ca.cert_pem)?;
    let (quic, tx_node) = quic_pipe(&opts.config, &tx_id, &ca.cert_pem, rx.quic).await?;
    let tls_tcp = tcp_pipe(Some((&tx_id, &ca.cert_pem)), rx.tls).await?;
    let tcp = tcp_pipe(None, rx.tcp).await?;
    let mut pipes = [quic, tls_tcp, tcp];
    // Warm up every leg (QUIC path MTU discovery, TCP windows) with 64 MiB each.
    let warm = Bytes::from(vec![7u8; 1 << 20]);
    for p in pipes.iter_mut() {
        step(&format!("warm-up, {}", p.leg()));
        p.throughput(&warm, 1 << 40, 64).await?;
    }
    let mut sizes = vec![];
    let mut batch = 0u64;
    for &size in &opts.sizes {
        let payload = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let n = ((opts.bytes_per_size / size as u64) as usize).max(opts.min_messages);
        let k = ((opts.latency_bytes / size as u64) as usize).clamp(opts.samples.0, opts.samples.1);
        // Throughput: `rounds` rounds of n / rounds messages, the legs taking turns within a
        // round; the median round of each leg counts (a shared machine's load spikes hit one
        // round, not a whole leg).
        let per = (n / opts.rounds.max(1)).max(opts.min_messages);
        let mut rounds = [vec![], vec![], vec![]];
        for _ in 0..opts.rounds.max(1) {
            for (i, p) in pipes.iter_mut().enumerate() {
                step(&format!("{} KiB, {} throughput", size >> 10, p.leg()));
                rounds[i].push(p.throughput(&payload, batch, per).await?);
                batch += per as u64;
            }
        }
        let mb_s = rounds.map(|mut r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        });
        let mut lat = [(0.0, 0.0); 3];
        for (i, p) in pipes.iter_mut().enumerate() {
            step(&format!("{} KiB, {} latency", size >> 10, p.leg()));
            lat[i] = p50_p99(p.latencies(&payload, batch, k).await?, percentile);
            batch += k as u64;
        }
        sizes.push(SizeResult {
            bytes: size,
            messages: per * opts.rounds.max(1),
            samples: k,
            quic_mb_s: mb_s[0],
            tls_tcp_mb_s: mb_s[1],
            tcp_mb_s: mb_s[2],
            ratio: mb_s[0] / mb_s[1],
            quic_p50_us: lat[0].0,
            quic_p99_us: lat[0].1,
            tls_tcp_p50_us: lat[1].0,
            tls_tcp_p99_us: lat[1].1,
            tcp_p50_us: lat[2].0,
            tcp_p99_us: lat[2].1,
        });
    }
    let stats = match &pipes[0] {
        Pipe::Quic { link, .. } => Some(link.connection().await?.stats()),
        Pipe::Stream { .. } => None,
    };
    for p in pipes.iter_mut() {
        if let Pipe::Stream { writer, .. } = p {
            let _ = writer.write_u64_le(0).await;
            let _ = writer.shutdown().await;
        }
    }
    tx_node.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tx_node.wait_idle()).await;
    drop(rx.node);
    let _ = rx.stop.send(());
    let _ = rx.thread.join();
    Ok(BenchReport {
        sizes,
        max_udp_payload: opts.config.max_udp_payload,
        stream_window: opts.config.stream_window,
        connection_window: opts.config.connection_window,
        max_in_flight: opts.config.max_in_flight,
        quic_path_mtu: stats.as_ref().map_or(0, |s| s.path.current_mtu),
        quic_lost_packets: stats.as_ref().map_or(0, |s| s.path.lost_packets),
        quic_congestion_events: stats.as_ref().map_or(0, |s| s.path.congestion_events),
        target_mb_s: 1250.0,
    })
}
