//! Sampling at computed coordinates (grid sampling, region pooling): attributes and shape and type inference.

use super::{In, Infer, Op};

pub(super) fn infer(op: &Op, _ins: &[In]) -> Infer {
    Err(format!("{} is not an operation of the sample family", op.name()))
}
