//! # poolpipe-transport
//!
//! Moves tensors between pipeline stages over QUIC (quinn) with mutual TLS: one connection per
//! pair of workers, one stream per batch, a documented frame format, backpressure, and control
//! messages on their own streams.
//!
//! - [`frame`]: the batch frame (encode, and a decoder that checks every length and limit
//!   before trusting it), documented in `transport/PROTOCOL.md`;
//! - [`tls`]: the cluster CA and node certificates (rcgen), and the mutual-TLS configurations
//!   of QUIC endpoints (rustls, TLS 1.3, ALPN `poolpipe/1`);
//! - [`control`]: control messages (register, welcome, assign, timing, health, ack, refused),
//!   one exchange per bidirectional stream;
//! - [`config`]: flow-control windows sized for tensors, in-flight batches per peer,
//!   keep-alive, idle and connect timeouts, reconnection backoff, frame limits;
//! - [`endpoint`]: a node's QUIC endpoint (quinn): connect, accept (refusing peers of another
//!   CA with a log line), one batch frame per unidirectional stream, control calls, and the
//!   node name of a peer's verified certificate (`peer_name`); stateless resets keyed by the
//!   node's private key, so a node restarted on its address resets its peers' old connections
//!   at once instead of leaving them to the idle timeout;
//! - [`link`]: the sending side of one peer: one connection, redialled with backoff, and a
//!   bound on batches in flight;
//! - [`outbox`]: batches for one peer queued by a key (the frontend's: reserved start), each
//!   freed send slot going to the smallest;
//! - [`bench`]: the loopback benchmark behind `poolpipe bench transport` (QUIC against TLS over
//!   TCP and plain TCP).
//!
//! ## What it must never do
//! It knows nothing of models, plans or policies: it moves bytes and tensors. It never accepts
//! a peer whose certificate does not chain to the cluster CA, and never panics on a malformed
//! frame.

pub mod bench;
pub mod config;
pub mod control;
pub mod endpoint;
pub mod frame;
pub mod link;
pub mod outbox;
pub mod tls;
