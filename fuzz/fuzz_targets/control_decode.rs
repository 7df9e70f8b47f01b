//! The transport's control-message decoder on arbitrary bytes: a message or an error, never a
//! panic; a decoded message re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolpipe_transport::control::{decode_control, encode_control};
use poolpipe_transport::frame::FrameLimits;

fuzz_target!(|data: &[u8]| {
    let limits = FrameLimits::default();
    if let Ok(m) = decode_control(data, &limits) {
        let again = decode_control(&encode_control(&m), &limits).expect("a decoded message encodes");
        assert_eq!(again, m, "decode, encode, decode is stable");
    }
});
