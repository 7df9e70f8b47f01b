//! A node's QUIC endpoint: one UDP socket that accepts peers and connects to them, with mutual
//! TLS; batch frames travel one per unidirectional stream.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::frame::{BatchHeader, Frame, FrameError, FrameLimits, decode, encode_header};
use crate::tls::{Identity, TlsError, client_config, server_config};

/// Errors of the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Certificates or TLS setup.
    #[error(transparent)]
    Tls(#[from] TlsError),
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
    /// Sending a batch failed (the peer went away mid-stream, or the connection closed).
    #[error("batch {batch} to {peer}: {reason}")]
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
}

impl Node {
    /// Binds `addr` with the node's identity; peers must chain to the CA in `ca_pem`.
    pub fn bind(addr: SocketAddr, id: &Identity, ca_pem: &str) -> Result<Node, EndpointError> {
        let mut endpoint = quinn::Endpoint::server(server_config(id, ca_pem)?, addr)
            .map_err(|source| EndpointError::Bind { addr, source })?;
        endpoint.set_default_client_config(client_config(id, ca_pem)?);
        Ok(Node { endpoint })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Connects to the node named `name` (its certificate's name) at `addr`.
    pub async fn connect(&self, addr: SocketAddr, name: &str) -> Result<quinn::Connection, EndpointError> {
        let fail = |reason: String| EndpointError::Connection { peer: addr, reason };
        let connecting = self.endpoint.connect(addr, name).map_err(|e| fail(e.to_string()))?;
        connecting.await.map_err(|e| fail(e.to_string()))
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
}

/// Sends one batch frame on a new stream of `conn` and waits until the peer has it all.
pub async fn send(conn: &quinn::Connection, header: &BatchHeader, payloads: &[Bytes]) -> Result<(), EndpointError> {
    let peer = conn.remote_address();
    let fail = |reason: String| EndpointError::Send { batch: header.batch, peer, reason };
    let mut stream = conn.open_uni().await.map_err(|e| fail(e.to_string()))?;
    let mut chunks: Vec<Bytes> = Vec::with_capacity(1 + payloads.len());
    chunks.push(encode_header(header));
    chunks.extend(payloads.iter().cloned());
    stream.write_all_chunks(&mut chunks).await.map_err(|e| fail(e.to_string()))?;
    stream.finish().map_err(|e| fail(e.to_string()))?;
    stream.stopped().await.map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// Receives the next batch frame of `conn`. A malformed or oversized frame is an error for
/// that stream only (the stream is stopped; the connection serves the next one).
pub async fn recv(conn: &quinn::Connection, limits: &FrameLimits) -> Result<Frame, EndpointError> {
    let peer = conn.remote_address();
    let mut stream = conn.accept_uni().await.map_err(|e| EndpointError::Closed { peer, reason: e.to_string() })?;
    let limit = crate::frame::PREFIX + limits.max_header + limits.max_payload as usize;
    let bytes = match stream.read_to_end(limit).await {
        Ok(b) => b,
        Err(quinn::ReadToEndError::TooLong) => {
            let _ = stream.stop(1u32.into());
            return Err(EndpointError::Frame {
                peer,
                source: FrameError::TooLarge { what: "the frame", found: limit as u64 + 1, limit: limit as u64 },
            });
        }
        Err(e) => {
            tracing::warn!(%peer, "discarded a partial batch: {e}");
            return Err(EndpointError::Closed { peer, reason: format!("stream ended early: {e}") });
        }
    };
    decode(Bytes::from(bytes), limits).map_err(|source| EndpointError::Frame { peer, source })
}
