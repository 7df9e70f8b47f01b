//! Reference: Quantisation and the integer arithmetic of quantised models.

use super::OpResult;
use crate::ops::Op;
use crate::tensor::Tensor;

pub(super) fn eval(op: &Op, _ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    Err(format!("{} is not an operation of the quant family", op.name()))
}
