//! 1-D and 3-D convolution and pooling, pooling indices, LpPool, MaxUnpool on the GPU against the CPU reference.

#[allow(unused_imports)]
use super::*;
