//! Quantisation and low-precision element types on the GPU against the CPU reference.

#[allow(unused_imports)]
use super::*;
