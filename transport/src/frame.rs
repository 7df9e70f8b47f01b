//! The batch frame: what one stream carries from one stage's worker to the next (PROTOCOL.md,
//! "Batch frames"). A fixed prefix, a header, then the tensors' payloads, little-endian.
//!
//! Decoding checks everything before it trusts a length: the magic, the version, the header
//! and payload limits, every count, UTF-8 names, known dtypes, and that each tensor's shape
//! and dtype account for exactly its payload bytes. Payloads are slices of the received
//! buffer (no copy).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// First bytes of every frame.
pub const MAGIC: [u8; 4] = *b"PPTF";
/// The frame format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Frame kind of a batch of tensors (unidirectional streams).
pub const KIND_BATCH: u8 = 1;
/// Frame kind of a control message (bidirectional streams; `crate::control`).
pub const KIND_CONTROL: u8 = 2;
/// Bytes of the fixed prefix: magic, version, kind, flags, header length.
pub const PREFIX: usize = 4 + 2 + 1 + 1 + 4;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE half precision (boundary tensors by default).
    F16,
    /// IEEE single precision.
    F32,
    /// 32-bit integers (integer and bool tensors, as the devices hold them).
    I32,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
        }
    }

    fn code(self) -> u8 {
        match self {
            Dtype::F16 => 1,
            Dtype::F32 => 2,
            Dtype::I32 => 3,
        }
    }

    fn from_code(c: u8) -> Option<Dtype> {
        match c {
            1 => Some(Dtype::F16),
            2 => Some(Dtype::F32),
            3 => Some(Dtype::I32),
            _ => None,
        }
    }
}

/// A request riding in a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestRef {
    /// Request id.
    pub id: u64,
    /// Deadline, microseconds on the sender's scheduler clock.
    pub deadline_us: f64,
}

/// One reserved hop of the rest of the route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteHop {
    /// Stage index.
    pub stage: u16,
    /// Worker id.
    pub worker: u32,
}

/// A tensor's description (its bytes follow the header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Name (the boundary tensor's name in the model).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, batch first.
    pub dims: Vec<u64>,
}

impl TensorInfo {
    /// Bytes of the payload this shape and dtype need, when it fits in a u64.
    pub fn payload_len(&self) -> Option<u64> {
        self.dims.iter().try_fold(self.dtype.size(), |acc, &d| acc.checked_mul(d))
    }
}

/// The header of a batch frame.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchHeader {
    /// Model id (the controller's numbering).
    pub model: u32,
    /// Batch id (the scheduler's).
    pub batch: u64,
    /// Stage the tensors are for.
    pub stage: u16,
    /// The requests, in batch order.
    pub requests: Vec<RequestRef>,
    /// The route reserved for the remaining stages.
    pub route: Vec<RouteHop>,
    /// The tensors, in payload order.
    pub tensors: Vec<TensorInfo>,
}

/// A decoded frame: its header and one payload per tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// The header.
    pub header: BatchHeader,
    /// Payloads, little-endian, one per tensor (slices of the received buffer).
    pub payloads: Vec<Bytes>,
}

/// Limits a receiver enforces before trusting a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest header, bytes.
    pub max_header: usize,
    /// Largest sum of payloads, bytes.
    pub max_payload: u64,
    /// Most requests in a batch.
    pub max_requests: usize,
    /// Most tensors in a frame.
    pub max_tensors: usize,
    /// Largest tensor rank.
    pub max_rank: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits { max_header: 1 << 20, max_payload: 64 << 20, max_requests: 4096, max_tensors: 64, max_rank: 8 }
    }
}

/// Why a frame was refused. Every variant says what is wrong; none is a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes end before the frame does.
    #[error("frame truncated: {what} needs {need} more bytes")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes missing.
        need: usize,
    },
    /// Not a poolpipe frame.
    #[error("not a poolpipe tensor frame (magic {found:02x?}, expected \"PPTF\")")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A version this build does not read.
    #[error("frame version {found} is not supported (this build reads version {VERSION}): upgrade the older peer")]
    Version {
        /// The version in the frame.
        found: u16,
    },
    /// A kind this build does not know, or one that does not belong on this stream type.
    #[error(
        "frame kind {found} where kind {expected} was expected (1 = batch, on unidirectional streams; 2 = control, on bidirectional streams)"
    )]
    Kind {
        /// The kind in the frame.
        found: u8,
        /// The kind this stream type carries.
        expected: u8,
    },
    /// Over a limit.
    #[error("frame too large: {what} is {found}, the limit is {limit}")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its size.
        found: u64,
        /// The limit.
        limit: u64,
    },
    /// A field's value makes no sense.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

fn need(buf: &impl Buf, n: usize, what: &'static str) -> Result<(), FrameError> {
    if buf.remaining() < n { Err(FrameError::Truncated { what, need: n - buf.remaining() }) } else { Ok(()) }
}

fn too_large(what: &'static str, found: u64, limit: u64) -> Result<(), FrameError> {
    if found > limit { Err(FrameError::TooLarge { what, found, limit }) } else { Ok(()) }
}

/// Encodes a header (prefix included); the payloads follow it on the wire in tensor order.
pub fn encode_header(h: &BatchHeader) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u32_le(h.model);
    body.put_u64_le(h.batch);
    body.put_u16_le(h.stage);
    body.put_u32_le(h.requests.len() as u32);
    for r in &h.requests {
        body.put_u64_le(r.id);
        body.put_f64_le(r.deadline_us);
    }
    body.put_u16_le(h.route.len() as u16);
    for hop in &h.route {
        body.put_u16_le(hop.stage);
        body.put_u32_le(hop.worker);
    }
    body.put_u16_le(h.tensors.len() as u16);
    for t in &h.tensors {
        body.put_u16_le(t.name.len() as u16);
        body.put_slice(t.name.as_bytes());
        body.put_u8(t.dtype.code());
        body.put_u8(t.dims.len() as u8);
        for &d in &t.dims {
            body.put_u64_le(d);
        }
    }
    with_prefix(KIND_BATCH, &body)
}

/// The prefix of a frame of `kind` followed by `body`.
pub(crate) fn with_prefix(kind: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX + body.len());
    out.put_slice(&MAGIC);
    out.put_u16_le(VERSION);
    out.put_u8(kind);
    out.put_u8(0);
    out.put_u32_le(body.len() as u32);
    out.put_slice(body);
    out.freeze()
}

/// Encodes a whole frame into one buffer (header, then payloads). Senders that already hold
/// the payloads as `Bytes` can write `encode_header` and the payloads one after the other.
pub fn encode(h: &BatchHeader, payloads: &[Bytes]) -> Result<Bytes, FrameError> {
    if payloads.len() != h.tensors.len() {
        return Err(FrameError::Malformed(format!("{} payloads for {} tensors", payloads.len(), h.tensors.len())));
    }
    for (t, p) in h.tensors.iter().zip(payloads) {
        if t.payload_len() != Some(p.len() as u64) {
            return Err(FrameError::Malformed(format!(
                "tensor '{}' {:?} {:?} needs {:?} bytes, got {}",
                t.name,
                t.dtype,
                t.dims,
                t.payload_len(),
                p.len()
            )));
        }
    }
    let head = encode_header(h);
    let mut out = BytesMut::with_capacity(head.len() + payloads.iter().map(Bytes::len).sum::<usize>());
    out.put_slice(&head);
    for p in payloads {
        out.put_slice(p);
    }
    Ok(out.freeze())
}

/// Reads the fixed prefix of a batch frame: the header body's length.
pub fn decode_prefix(buf: &[u8], limits: &FrameLimits) -> Result<usize, FrameError> {
    decode_prefix_of(KIND_BATCH, buf, limits)
}

/// Reads the fixed prefix of a frame that must be of `expected` kind: the body's length.
pub fn decode_prefix_of(expected: u8, mut buf: &[u8], limits: &FrameLimits) -> Result<usize, FrameError> {
    need(&buf, PREFIX, "the frame prefix")?;
    let mut magic = [0u8; 4];
    buf.copy_to_slice(&mut magic);
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let version = buf.get_u16_le();
    if version != VERSION {
        return Err(FrameError::Version { found: version });
    }
    let kind = buf.get_u8();
    if kind != expected {
        return Err(FrameError::Kind { found: kind, expected });
    }
    let flags = buf.get_u8();
    if flags != 0 {
        return Err(FrameError::Malformed(format!("flags {flags:#04x} are reserved and must be 0")));
    }
    let len = buf.get_u32_le() as usize;
    too_large("the header", len as u64, limits.max_header as u64)?;
    Ok(len)
}

/// Decodes a header body (after the prefix).
pub fn decode_header_body(mut b: &[u8], limits: &FrameLimits) -> Result<BatchHeader, FrameError> {
    need(&b, 4 + 8 + 2 + 4, "the batch fields")?;
    let model = b.get_u32_le();
    let batch = b.get_u64_le();
    let stage = b.get_u16_le();
    let n = b.get_u32_le() as usize;
    too_large("the request count", n as u64, limits.max_requests as u64)?;
    need(&b, n * 16, "the requests")?;
    let mut requests = Vec::with_capacity(n);
    for _ in 0..n {
        let id = b.get_u64_le();
        let deadline_us = b.get_f64_le();
        if !deadline_us.is_finite() {
            return Err(FrameError::Malformed(format!("request {id} has deadline {deadline_us}")));
        }
        requests.push(RequestRef { id, deadline_us });
    }
    need(&b, 2, "the route length")?;
    let hops = b.get_u16_le() as usize;
    need(&b, hops * 6, "the route")?;
    let route = (0..hops).map(|_| RouteHop { stage: b.get_u16_le(), worker: b.get_u32_le() }).collect();
    need(&b, 2, "the tensor count")?;
    let nt = b.get_u16_le() as usize;
    too_large("the tensor count", nt as u64, limits.max_tensors as u64)?;
    let mut tensors = Vec::with_capacity(nt);
    for i in 0..nt {
        need(&b, 2, "a tensor name length")?;
        let len = b.get_u16_le() as usize;
        need(&b, len + 2, "a tensor name")?;
        let name = std::str::from_utf8(&b[..len])
            .map_err(|_| FrameError::Malformed(format!("tensor {i}: its name is not UTF-8")))?
            .to_string();
        b.advance(len);
        let code = b.get_u8();
        let dtype = Dtype::from_code(code)
            .ok_or_else(|| FrameError::Malformed(format!("tensor '{name}': dtype code {code}")))?;
        let rank = b.get_u8() as usize;
        too_large("a tensor rank", rank as u64, limits.max_rank as u64)?;
        need(&b, rank * 8, "a tensor shape")?;
        let dims = (0..rank).map(|_| b.get_u64_le()).collect();
        tensors.push(TensorInfo { name, dtype, dims });
    }
    if b.has_remaining() {
        return Err(FrameError::Malformed(format!("{} bytes after the last tensor of the header", b.remaining())));
    }
    Ok(BatchHeader { model, batch, stage, requests, route, tensors })
}

/// The byte length of each tensor's payload, checked against overflow and the payload limit.
pub fn payload_lens(header: &BatchHeader, limits: &FrameLimits) -> Result<Vec<usize>, FrameError> {
    let mut total: u64 = 0;
    let mut lens = Vec::with_capacity(header.tensors.len());
    for t in &header.tensors {
        let len = t.payload_len().ok_or_else(|| {
            FrameError::Malformed(format!("tensor '{}': shape {:?} overflows 64-bit sizes", t.name, t.dims))
        })?;
        total = total.saturating_add(len);
        too_large("the payload", total, limits.max_payload)?;
        lens.push(len as usize);
    }
    Ok(lens)
}

/// Decodes a whole frame held in one buffer; payloads are slices of it.
pub fn decode(frame: Bytes, limits: &FrameLimits) -> Result<Frame, FrameError> {
    let header_len = decode_prefix(&frame, limits)?;
    need(&&frame[PREFIX..], header_len, "the header")?;
    let header = decode_header_body(&frame[PREFIX..PREFIX + header_len], limits)?;
    let mut at = PREFIX + header_len;
    let lens = payload_lens(&header, limits)?;
    let mut payloads = Vec::with_capacity(lens.len());
    for len in lens {
        need(&&frame[at..], len, "a tensor payload")?;
        payloads.push(frame.slice(at..at + len));
        at += len;
    }
    if at != frame.len() {
        return Err(FrameError::Malformed(format!("{} bytes after the last payload", frame.len() - at)));
    }
    Ok(Frame { header, payloads })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BatchHeader {
        BatchHeader {
            model: 3,
            batch: 77,
            stage: 1,
            requests: vec![RequestRef { id: 10, deadline_us: 1.5e6 }, RequestRef { id: 11, deadline_us: 1.6e6 }],
            route: vec![RouteHop { stage: 1, worker: 9 }, RouteHop { stage: 2, worker: 4 }],
            tensors: vec![
                TensorInfo { name: "cut_3".into(), dtype: Dtype::F16, dims: vec![2, 8, 4, 4] },
                TensorInfo { name: "skip".into(), dtype: Dtype::F32, dims: vec![2, 3] },
            ],
        }
    }

    fn payloads() -> Vec<Bytes> {
        vec![Bytes::from(vec![7u8; 2 * 8 * 4 * 4 * 2]), Bytes::from((0..24u8).collect::<Vec<_>>())]
    }

    #[test]
    fn a_frame_round_trips_and_payloads_are_slices() {
        let wire = encode(&header(), &payloads()).unwrap();
        let f = decode(wire.clone(), &FrameLimits::default()).unwrap();
        assert_eq!(f.header, header());
        assert_eq!(f.payloads, payloads());
        // Zero copy: the payload points into the received buffer.
        let inside = wire.as_ptr_range();
        assert!(inside.contains(&f.payloads[1].as_ptr()));
    }

    #[test]
    fn malformed_frames_are_refused_with_the_reason() {
        let wire = encode(&header(), &payloads()).unwrap().to_vec();
        let l = FrameLimits::default();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut w = wire.clone();
            f(&mut w);
            decode(Bytes::from(w), &l).unwrap_err()
        };
        assert!(matches!(with(&|w| w[0] = b'X'), FrameError::BadMagic { .. }));
        assert_eq!(with(&|w| w[4] = 2), FrameError::Version { found: 2 });
        assert!(with(&|w| w[4] = 2).to_string().contains("upgrade the older peer"));
        assert_eq!(with(&|w| w[6] = 9), FrameError::Kind { found: 9, expected: KIND_BATCH });
        assert!(matches!(with(&|w| w.push(0)), FrameError::Malformed(m) if m.contains("after the last payload")));
        assert!(matches!(
            with(&|w| {
                w.pop();
            }),
            FrameError::Truncated { .. }
        ));
        let small = FrameLimits { max_payload: 100, ..l };
        let e = decode(Bytes::from(wire.clone()), &small).unwrap_err();
        assert!(e.to_string().contains("the payload is 512, the limit is 100"), "{e}");
        let e = encode(&header(), &payloads()[..1]).unwrap_err();
        assert!(e.to_string().contains("1 payloads for 2 tensors"));
    }

    /// A small xorshift: the smoke test of the decoder (the fuzz target runs the same check
    /// for longer, see fuzz/).
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn the_decoder_never_panics_on_damaged_or_random_input() {
        let wire = encode(&header(), &payloads()).unwrap().to_vec();
        let l = FrameLimits::default();
        for cut in 0..wire.len() {
            assert!(decode(Bytes::copy_from_slice(&wire[..cut]), &l).is_err(), "prefix {cut} accepted");
        }
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut w = wire.clone();
            for _ in 0..1 + rng(&mut s) % 4 {
                let i = (rng(&mut s) % w.len() as u64) as usize;
                w[i] = rng(&mut s) as u8;
            }
            if let Ok(f) = decode(Bytes::from(w.clone()), &l) {
                assert_eq!(&encode(&f.header, &f.payloads).unwrap()[..], &w[..], "decode then encode is the identity");
            }
            let len = (rng(&mut s) % 300) as usize;
            let mut junk: Vec<u8> = (0..len).map(|_| rng(&mut s) as u8).collect();
            if len >= 8 && rng(&mut s).is_multiple_of(2) {
                junk[..8].copy_from_slice(&wire[..8]);
            }
            let _ = decode(Bytes::from(junk), &l);
        }
    }
}
