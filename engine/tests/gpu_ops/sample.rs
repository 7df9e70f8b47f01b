//! Resizing and sampling at computed coordinates (Resize modes, GridSample, RoiAlign) on the GPU against the CPU reference.

#[allow(unused_imports)]
use super::*;
