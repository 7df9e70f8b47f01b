//! A link: the sending side of one peer. It keeps one connection, reopens it with backoff when
//! it drops, and bounds the batches in flight to the peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{Mutex, Semaphore};

use crate::control::Control;
use crate::endpoint::{EndpointError, Node, call, send_on};
use crate::frame::BatchHeader;

/// A stream opened for one batch in one of a link's send slots ([`Link::open`]); the slot is
/// held until the batch sent on it is delivered.
#[derive(Debug)]
pub struct Opened {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    stream: quinn::SendStream,
}

/// The sending side of one peer.
#[derive(Debug, Clone)]
pub struct Link {
    node: Node,
    addr: SocketAddr,
    name: String,
    conn: Arc<Mutex<Option<quinn::Connection>>>,
    in_flight: Arc<Semaphore>,
}

impl Link {
    /// A link from `node` to the peer named `name` (its certificate's name) at `addr`. Nothing
    /// is dialled until the first message.
    pub fn new(node: &Node, addr: SocketAddr, name: &str) -> Link {
        Link {
            node: node.clone(),
            addr,
            name: name.to_string(),
            conn: Arc::new(Mutex::new(None)),
            in_flight: Arc::new(Semaphore::new(node.config().max_in_flight as usize)),
        }
    }

    /// Whether `other` is this link (a clone of it), not merely one to the same peer.
    pub fn same(&self, other: &Link) -> bool {
        Arc::ptr_eq(&self.conn, &other.conn)
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the live connection, if any (the next message dials again): for a peer known to
    /// be gone or restarted while this connection has not noticed yet.
    pub fn drop_connection(&self, why: &str) {
        if let Ok(mut slot) = self.conn.try_lock()
            && let Some(c) = slot.take()
        {
            c.close(0u32.into(), why.as_bytes());
        }
    }

    /// The live connection, dialling (with backoff) when there is none or it has closed.
    /// Gives up after the backoff's `give_up` time with an error naming the peer, the attempts
    /// and the last failure; at once when the TLS handshake refuses a certificate.
    pub async fn connection(&self) -> Result<quinn::Connection, EndpointError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            match c.close_reason() {
                None => return Ok(c.clone()),
                Some(why) => tracing::info!(peer = %self.addr, "connection lost ({why}); reconnecting"),
            }
        }
        *slot = None;
        let backoff = self.node.config().backoff;
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            match self.node.connect(self.addr, &self.name).await {
                Ok(c) => {
                    if attempt > 0 {
                        tracing::info!(peer = %self.addr, "reconnected after {} attempts", attempt + 1);
                    }
                    *slot = Some(c.clone());
                    return Ok(c);
                }
                Err(e @ EndpointError::Handshake { .. }) => return Err(e),
                Err(e) => {
                    let delay = backoff.delay(attempt);
                    attempt += 1;
                    if start.elapsed() + delay > backoff.give_up {
                        return Err(EndpointError::Connection {
                            peer: self.addr,
                            reason: format!(
                                "unreachable after {attempt} attempts over {:.1?} (last: {e}); is {} running there?",
                                start.elapsed(),
                                self.name
                            ),
                        });
                    }
                    tracing::warn!(peer = %self.addr, "connection attempt {attempt} failed ({e}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Sends one batch frame. Waits while `max_in_flight` batches to this peer are
    /// outstanding (backpressure); dials or redials as needed. An error names the batch; the
    /// batch was not delivered, and the next send redials.
    pub async fn send(&self, header: &BatchHeader, payloads: &[Bytes]) -> Result<(), EndpointError> {
        let opened = self.open().await.map_err(|e| EndpointError::Send {
            batch: header.batch,
            peer: self.addr,
            reason: e.to_string(),
        })?;
        self.send_on(opened, header, payloads).await
    }

    /// Takes one of the link's `max_in_flight` send slots (waiting while all are taken),
    /// dials as needed and opens the stream a batch will go on ([`Link::send_on`]). The peer
    /// takes streams in the order they open, so a sender that orders its batches opens first
    /// and then picks the batch ([`crate::outbox`]).
    pub async fn open(&self) -> Result<Opened, EndpointError> {
        // The semaphore is never closed; were it, sends would go unbounded.
        let permit = self.in_flight.clone().acquire_owned().await.ok();
        let conn = self.connection().await?;
        let stream =
            conn.open_uni().await.map_err(|e| EndpointError::Connection { peer: self.addr, reason: e.to_string() })?;
        Ok(Opened { _permit: permit, stream })
    }

    /// Sends one batch frame on a stream from [`Link::open`]; its slot frees when the send ends.
    pub async fn send_on(&self, opened: Opened, header: &BatchHeader, payloads: &[Bytes]) -> Result<(), EndpointError> {
        let Opened { _permit, stream } = opened;
        send_on(stream, self.addr, header, payloads).await
    }

    /// Sends a control message and waits for the reply, dialling as needed.
    pub async fn call(&self, msg: &Control) -> Result<Control, EndpointError> {
        let conn = self.connection().await?;
        call(&conn, msg, &self.node.config().limits).await
    }

    /// Batches that could be sent now without waiting.
    pub fn free_slots(&self) -> usize {
        self.in_flight.available_permits()
    }
}
