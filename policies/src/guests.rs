//! The built-in guests, compiled from `policies/guests/*.c` by `scripts/build_policies.sh`
//! and embedded here, so `wasm:NAME` works without files. CI rebuilds them and fails when a
//! committed `.wasm` differs from its source.

/// (name, module bytes) of every built-in guest.
pub const ALL: [(&str, &[u8]); 5] = [
    ("ppipe", include_bytes!("../guests/ppipe.wasm")),
    ("reactive", include_bytes!("../guests/reactive.wasm")),
    ("triton", include_bytes!("../guests/triton.wasm")),
    ("earliest_finish", include_bytes!("../guests/earliest_finish.wasm")),
    ("same_server", include_bytes!("../guests/same_server.wasm")),
];

/// The bytes of a built-in guest by name.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}
