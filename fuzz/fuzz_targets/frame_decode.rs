//! The transport's batch-frame decoder on arbitrary bytes: a frame or an error, never a panic;
//! a decoded frame re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolpipe_transport::frame::{FrameLimits, decode, encode};

fuzz_target!(|data: &[u8]| {
    let limits = FrameLimits::default();
    if let Ok(f) = decode(bytes::Bytes::copy_from_slice(data), &limits) {
        let again = encode(&f.header, &f.payloads).expect("a decoded frame encodes");
        assert_eq!(&again[..], data, "decode then encode is the identity");
    }
});
