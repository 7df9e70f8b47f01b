//! Indexing, scatters, scans and TopK on the GPU against the CPU reference.

#[allow(unused_imports)]
use super::*;
