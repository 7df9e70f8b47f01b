//! A node's QUIC endpoint: one UDP socket that accepts peers and connects to them, with mutual
//! TLS. Batch frames travel one per unidirectional stream; control messages one exchange per
//! bidirectional stream.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::config::{ConfigError, TransportConfig};
use crate::control::{Control, decode_control, encode_control};
use crate::frame::{
    BatchHeader, Frame, FrameError, FrameLimits, PREFIX, decode_header_body, decode_prefix, encode_header, payload_lens,
};
use crate::tls::{Identity, TlsError, client_config, server_config};

/// Stream error code a receiver uses to refuse a frame.
pub const REFUSED: u32 = 1;

/// Errors of the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Certificates or TLS setup.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A transport setting makes no sense.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The socket cannot be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A peer could not be reached or was refused.
    #[error("connection with {peer}: {reason}")]
    Connection {
        /// The peer's address.
        peer: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// The peer refused this node's certificate (or this node refused the peer's) during the
    /// handshake: retrying cannot help.
    #[error(
        "connection with {peer} refused in the TLS handshake: {reason} (are both nodes' certificates issued by the same cluster CA, and is the peer's name right?)"
    )]
    Handshake {
        /// The peer's address.
        peer: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// Sending a batch failed (the peer went away mid-stream, refused the frame, or the
    /// connection closed). The batch was not delivered; the caller decides whether to retry.
    #[error("batch {batch} to {peer} not delivered: {reason}")]
    Send {
        /// The batch.
        batch: u64,
        /// The peer.
        peer: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// A received frame was refused; the connection stays up for other streams.
    #[error("frame from {peer} refused: {source}")]
    Frame {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        source: FrameError,
    },
    /// A batch stream ended before its frame did (the sender went away or reset it); the
    /// partial batch was discarded.
    #[error("batch {batch} from {peer} discarded after {got} of {expected} bytes: {reason}")]
    Partial {
        /// The batch.
        batch: u64,
        /// The peer.
        peer: SocketAddr,
        /// Payload bytes received.
        got: usize,
        /// Payload bytes the header announced.
        expected: usize,
        /// Why the stream ended.
        reason: String,
    },
    /// A control exchange failed.
    #[error("control message '{kind}' with {peer}: {reason}")]
    Control {
        /// The message type sent.
        kind: &'static str,
        /// The peer.
        peer: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// The peer closed the connection.
    #[error("{peer} closed the connection: {reason}")]
    Closed {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// A node: accepts and opens connections to other nodes of the cluster.
#[derive(Debug, Clone)]
pub struct Node {
    endpoint: quinn::Endpoint,
    config: Arc<TransportConfig>,
}

impl Node {
    /// Binds `addr` with the node's identity and the default settings; peers must chain to
    /// the CA in `ca_pem`.
    pub fn bind(addr: SocketAddr, id: &Identity, ca_pem: &str) -> Result<Node, EndpointError> {
        Node::bind_with(addr, id, ca_pem, TransportConfig::default())
    }

    /// Binds `addr` with the given settings.
    pub fn bind_with(
        addr: SocketAddr,
        id: &Identity,
        ca_pem: &str,
        config: TransportConfig,
    ) -> Result<Node, EndpointError> {
        let transport = Arc::new(config.quinn()?);
        let mut server = server_config(id, ca_pem)?;
        server.transport_config(transport.clone());
        let mut client = client_config(id, ca_pem)?;
        client.transport_config(transport);
        let bind = |source| EndpointError::Bind { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind)?;
        let state = quinn::udp::UdpSocketState::new((&socket).into()).map_err(bind)?;
        if !force_buffers(&socket, config.socket_buffer) {
            for (what, set) in [
                ("receive", state.set_recv_buffer_size((&socket).into(), config.socket_buffer)),
                ("send", state.set_send_buffer_size((&socket).into(), config.socket_buffer)),
            ] {
                if let Err(e) = set {
                    tracing::debug!(%addr, "socket {what} buffer of {} bytes not granted: {e}", config.socket_buffer);
                }
            }
        }
        // Stateless resets are keyed by the node's private key, not by a key drawn at start: a
        // node restarted on the same address then answers its peers' packets for connections it
        // lost with a reset they accept, and they reconnect at once instead of waiting out the
        // idle timeout.
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key(id)));
        // Random connection IDs that any incarnation of the node accepts as its own (the
        // default hashes them with a key drawn at start, and a restarted node would drop the
        // old connections' packets silently instead of resetting them).
        endpoint_config.cid_generator(|| Box::new(RandomCids(ring::rand::SystemRandom::new())));
        endpoint_config
            .max_udp_payload_size(config.max_udp_payload)
            .map_err(|e| ConfigError { field: "max_udp_payload", reason: e.to_string() })?;
        let mut endpoint =
            quinn::Endpoint::new(endpoint_config, Some(server), socket, Arc::new(quinn::TokioRuntime)).map_err(bind)?;
        endpoint.set_default_client_config(client);
        Ok(Node { endpoint, config: Arc::new(config) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The node's settings.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Connects to the node named `name` (its certificate's name) at `addr`, waiting at most
    /// the connect timeout.
    pub async fn connect(&self, addr: SocketAddr, name: &str) -> Result<quinn::Connection, EndpointError> {
        let fail = |reason: String| EndpointError::Connection { peer: addr, reason };
        let connecting = self.endpoint.connect(addr, name).map_err(|e| fail(e.to_string()))?;
        match tokio::time::timeout(self.config.connect_timeout, connecting).await {
            Ok(r) => r.map_err(|e| {
                // Crypto errors (TLS alerts) have transport error codes 0x100..0x1ff.
                let crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
                match &e {
                    quinn::ConnectionError::TransportError(t) if crypto(t.code) => {
                        EndpointError::Handshake { peer: addr, reason: e.to_string() }
                    }
                    quinn::ConnectionError::ConnectionClosed(c) if crypto(c.error_code) => {
                        EndpointError::Handshake { peer: addr, reason: e.to_string() }
                    }
                    _ => fail(e.to_string()),
                }
            }),
            Err(_) => Err(fail(format!("no handshake within {:?}", self.config.connect_timeout))),
        }
    }

    /// The next authenticated peer; a peer that fails the handshake (no certificate, or one
    /// that does not chain to the cluster CA) is refused with a log line naming its address,
    /// and the endpoint waits for the next. `None` when the endpoint is closed.
    pub async fn accept(&self) -> Option<quinn::Connection> {
        while let Some(incoming) = self.endpoint.accept().await {
            let peer = incoming.remote_address();
            match incoming.await {
                Ok(conn) => return Some(conn),
                Err(e) => tracing::warn!(%peer, "refused a peer: {e}"),
            }
        }
        None
    }

    /// Closes every connection and the socket.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"closing");
    }

    /// Waits until every connection has told its peer it closed.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

/// Connection IDs of 8 random bytes.
struct RandomCids(ring::rand::SystemRandom);

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut b = [0u8; 8];
        // The system's random source does not fail on Linux; a zero ID would still work.
        let _ = ring::rand::SecureRandom::fill(&self.0, &mut b);
        quinn::ConnectionId::new(&b)
    }
    fn cid_len(&self) -> usize {
        8
    }
    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The stateless-reset key of a node: derived from its private key, so the same across its
/// restarts and unknown to anyone without that key.
fn reset_key(id: &Identity) -> ring::hmac::Key {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"poolpipe stateless reset key\0");
    ctx.update(id.key_pem.as_bytes());
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, ctx.finish().as_ref())
}

/// Asks for socket buffers beyond the system maximum (`net.core.rmem_max`/`wmem_max`) where
/// the process may (CAP_NET_ADMIN); large datagrams at full speed overflow a small receive
/// buffer. Without the capability the normal request below applies, capped by the system.
#[cfg(target_os = "linux")]
fn force_buffers(socket: &std::net::UdpSocket, bytes: usize) -> bool {
    use std::os::fd::AsRawFd;
    let v: libc::c_int = bytes.min(libc::c_int::MAX as usize / 2) as libc::c_int;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: a valid socket descriptor, a c_int option value and its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!("forcing socket buffers of {bytes} bytes: {}", std::io::Error::last_os_error());
            return false;
        }
    }
    true
}

#[cfg(not(target_os = "linux"))]
fn force_buffers(_: &std::net::UdpSocket, _: usize) -> bool {
    false
}

/// The node name of the peer's certificate (its first DNS subject-alternative name, else its
/// common name), as the handshake verified it against the cluster CA; `None` when the peer
/// showed no certificate or it names no node.
pub fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                return Some(d.to_string());
            }
        }
    }
    cert.subject().iter_common_name().next()?.as_str().ok().map(str::to_string)
}

/// Sends one batch frame on a new stream of `conn` and waits until the peer has acknowledged
/// all of it. Opening the stream waits while the peer already has its limit of batches in
/// flight (backpressure).
pub async fn send(conn: &quinn::Connection, header: &BatchHeader, payloads: &[Bytes]) -> Result<(), EndpointError> {
    let peer = conn.remote_address();
    let stream =
        conn.open_uni().await.map_err(|e| EndpointError::Send { batch: header.batch, peer, reason: e.to_string() })?;
    send_on(stream, peer, header, payloads).await
}

/// [`send`] on a stream opened before (streams are numbered as they open, and the peer takes
/// them in that order: a sender that orders its batches opens the stream, then picks the
/// batch).
pub async fn send_on(
    mut stream: quinn::SendStream,
    peer: SocketAddr,
    header: &BatchHeader,
    payloads: &[Bytes],
) -> Result<(), EndpointError> {
    let fail = |reason: String| EndpointError::Send { batch: header.batch, peer, reason };
    let mut chunks: Vec<Bytes> = Vec::with_capacity(1 + payloads.len());
    chunks.push(encode_header(header));
    chunks.extend(payloads.iter().cloned());
    stream.write_all_chunks(&mut chunks).await.map_err(|e| fail(e.to_string()))?;
    stream.finish().map_err(|e| fail(e.to_string()))?;
    match stream.stopped().await {
        Ok(None) => Ok(()),
        Ok(Some(code)) => {
            Err(fail(format!("the peer refused the frame (stream stopped with code {code}); its log says why")))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// How reading a batch stream went wrong.
enum ReadFail {
    /// The frame is bad: refuse it.
    Refused(FrameError),
    /// The stream ended before the frame did (`batch` is `None` when it ended before the
    /// header was read).
    Cut { batch: Option<u64>, got: usize, expected: usize, reason: String },
}

async fn read_batch(stream: &mut quinn::RecvStream, limits: &FrameLimits) -> Result<Frame, ReadFail> {
    let cut = |got, expected, reason: String| ReadFail::Cut { batch: None, got, expected, reason };
    let exact = |e: quinn::ReadExactError, what: &'static str, need: usize| match e {
        quinn::ReadExactError::FinishedEarly(n) => ReadFail::Refused(FrameError::Truncated { what, need: need - n }),
        quinn::ReadExactError::ReadError(e) => cut(0, 0, e.to_string()),
    };
    let mut prefix = [0u8; PREFIX];
    stream.read_exact(&mut prefix).await.map_err(|e| exact(e, "the frame prefix", PREFIX))?;
    let header_len = decode_prefix(&prefix, limits).map_err(ReadFail::Refused)?;
    let mut body = vec![0u8; header_len];
    stream.read_exact(&mut body).await.map_err(|e| exact(e, "the header", header_len))?;
    let header = decode_header_body(&body, limits).map_err(ReadFail::Refused)?;
    let lens = payload_lens(&header, limits).map_err(ReadFail::Refused)?;
    let expected: usize = lens.iter().sum();
    let batch = header.batch;
    let mut buf = BytesMut::with_capacity(expected);
    while buf.len() < expected {
        match stream.read_chunk(expected - buf.len(), true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(ReadFail::Refused(FrameError::Truncated {
                    what: "a tensor payload",
                    need: expected - buf.len(),
                }));
            }
            Err(e) => {
                return Err(ReadFail::Cut { batch: Some(batch), got: buf.len(), expected, reason: e.to_string() });
            }
        }
    }
    match stream.read_chunk(1 << 16, true).await {
        Ok(None) => {}
        Ok(Some(extra)) => {
            return Err(ReadFail::Refused(FrameError::Malformed(format!(
                "at least {} bytes after the last payload",
                extra.bytes.len()
            ))));
        }
        Err(e) => return Err(ReadFail::Cut { batch: Some(batch), got: buf.len(), expected, reason: e.to_string() }),
    }
    let all = buf.freeze();
    let mut at = 0;
    let payloads = lens
        .into_iter()
        .map(|len| {
            at += len;
            all.slice(at - len..at)
        })
        .collect();
    Ok(Frame { header, payloads })
}

/// Receives the next batch frame of `conn`, reading the header first and the payload into one
/// buffer of the announced size. A malformed, oversized or wrong-version frame is an error for
/// that stream only (the stream is stopped, so its sender learns it was refused; the
/// connection serves the next one). A stream that ends before its frame does is discarded
/// with a log line naming the batch.
pub async fn recv(conn: &quinn::Connection, limits: &FrameLimits) -> Result<Frame, EndpointError> {
    let peer = conn.remote_address();
    let mut stream = conn.accept_uni().await.map_err(|e| EndpointError::Closed { peer, reason: e.to_string() })?;
    match read_batch(&mut stream, limits).await {
        Ok(frame) => Ok(frame),
        Err(ReadFail::Refused(source)) => {
            tracing::warn!(%peer, "refused a frame: {source}");
            let _ = stream.stop(REFUSED.into());
            Err(EndpointError::Frame { peer, source })
        }
        Err(ReadFail::Cut { batch: None, reason, .. }) => {
            tracing::warn!(%peer, "discarded a batch stream cut before its header: {reason}");
            Err(EndpointError::Closed { peer, reason: format!("a batch stream ended before its header: {reason}") })
        }
        Err(ReadFail::Cut { batch: Some(batch), got, expected, reason }) => {
            tracing::warn!(%peer, batch, "discarded a partial batch ({got} of {expected} payload bytes): {reason}");
            Err(EndpointError::Partial { batch, peer, got, expected, reason })
        }
    }
}

async fn read_control(stream: &mut quinn::RecvStream, limits: &FrameLimits) -> Result<Control, String> {
    let bytes = stream.read_to_end(PREFIX + limits.max_header).await.map_err(|e| e.to_string())?;
    decode_control(&bytes, limits).map_err(|e| e.to_string())
}

/// Sends a control message on a new bidirectional stream and waits for the peer's reply.
pub async fn call(conn: &quinn::Connection, msg: &Control, limits: &FrameLimits) -> Result<Control, EndpointError> {
    let peer = conn.remote_address();
    let fail = |reason: String| EndpointError::Control { kind: msg.kind(), peer, reason };
    let (mut tx, mut rx) = conn.open_bi().await.map_err(|e| fail(e.to_string()))?;
    tx.write_all(&encode_control(msg)).await.map_err(|e| fail(e.to_string()))?;
    tx.finish().map_err(|e| fail(e.to_string()))?;
    read_control(&mut rx, limits).await.map_err(|e| fail(format!("no valid reply: {e}")))
}

/// Where the reply to a received control message goes.
#[derive(Debug)]
pub struct Reply {
    stream: quinn::SendStream,
    peer: SocketAddr,
}

impl Reply {
    /// Sends the reply, ends the exchange, and waits until the peer has acknowledged it.
    pub async fn send(mut self, msg: &Control) -> Result<(), EndpointError> {
        let fail = |reason: String| EndpointError::Control { kind: msg.kind(), peer: self.peer, reason };
        self.stream.write_all(&encode_control(msg)).await.map_err(|e| fail(e.to_string()))?;
        self.stream.finish().map_err(|e| fail(e.to_string()))?;
        self.stream.stopped().await.map(|_| ()).map_err(|e| fail(e.to_string()))
    }
}

/// Receives the next control message of `conn` and where its reply goes. A malformed message
/// is answered with `Refused` (naming the reason) and reported as an error; the connection
/// serves the next exchange.
pub async fn recv_control(conn: &quinn::Connection, limits: &FrameLimits) -> Result<(Control, Reply), EndpointError> {
    let peer = conn.remote_address();
    let (tx, mut rx) = conn.accept_bi().await.map_err(|e| EndpointError::Closed { peer, reason: e.to_string() })?;
    let reply = Reply { stream: tx, peer };
    match read_control(&mut rx, limits).await {
        Ok(msg) => Ok((msg, reply)),
        Err(reason) => {
            tracing::warn!(%peer, "refused a control message: {reason}");
            let _ = reply.send(&Control::Refused { reason: reason.clone() }).await;
            Err(EndpointError::Frame { peer, source: FrameError::Malformed(reason) })
        }
    }
}
