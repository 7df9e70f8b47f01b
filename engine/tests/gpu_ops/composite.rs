//! Composite and miscellaneous operations (einsum, losses, rotary embedding, signal processing, bitwise ops) on the GPU against the CPU reference.

#[allow(unused_imports)]
use super::*;
