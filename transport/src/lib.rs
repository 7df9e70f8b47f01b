//! # poolpipe-transport
//!
//! Moves tensors between pipeline stages over QUIC (quinn) with mutual TLS: one connection per
//! pair of workers, one stream per batch, a documented frame format, backpressure, and control
//! messages on their own streams.
//!
//! Status: the batch frame format ([`frame`]: encode, and a decoder that checks every length
//! and limit before trusting it, documented in `transport/PROTOCOL.md`). The QUIC endpoints,
//! mutual TLS, control messages and the benchmark are not written yet; nothing here sends a
//! byte.
//!
//! ## What it must never do
//! It knows nothing of models, plans or policies: it moves bytes and tensors. It never accepts
//! a peer whose certificate does not chain to the cluster CA, and never panics on a malformed
//! frame.

pub mod frame;
