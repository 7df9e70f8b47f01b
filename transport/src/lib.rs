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
//! - [`endpoint`]: a node's QUIC endpoint (quinn): connect, accept (refusing peers of another
//!   CA with a log line), and one frame per unidirectional stream.
//!
//! Not yet: control messages, tuned flow control, bounded in-flight batches per peer,
//! reconnection with backoff, and `poolpipe bench transport`.
//!
//! ## What it must never do
//! It knows nothing of models, plans or policies: it moves bytes and tensors. It never accepts
//! a peer whose certificate does not chain to the cluster CA, and never panics on a malformed
//! frame.

pub mod endpoint;
pub mod frame;
pub mod tls;
