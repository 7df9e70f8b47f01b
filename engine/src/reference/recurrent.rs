//! Reference: Recurrent layers (LSTM, GRU, RNN).

use super::OpResult;
use crate::ops::Op;
use crate::tensor::Tensor;

pub(super) fn eval(op: &Op, _ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    Err(format!("{} is not an operation of the recurrent family", op.name()))
}
