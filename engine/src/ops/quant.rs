//! Quantisation and the integer arithmetic of quantised models: attributes and shape and type inference.

use super::{In, Infer, Op};

pub(super) fn infer(op: &Op, _ins: &[In]) -> Infer {
    Err(format!("{} is not an operation of the quant family", op.name()))
}
