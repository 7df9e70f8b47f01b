//! # poolpipe-transport
//!
//! Moves tensors between pipeline stages over QUIC (quinn) with mutual TLS: one connection per
//! pair of workers, one stream per batch, a documented frame format, backpressure, and control
//! messages on their own streams.
//!
//! Status: empty. The transport is the subject of its own issue; nothing here pretends to send
//! a byte.
//!
//! ## What it must never do
//! It knows nothing of models, plans or policies: it moves bytes and tensors. It never accepts
//! a peer whose certificate does not chain to the cluster CA, and never panics on a malformed
//! frame.
