//! Recurrent layers (LSTM, GRU, RNN): attributes and shape and type inference.

use super::{In, Infer, Op};

pub(super) fn infer(op: &Op, _ins: &[In]) -> Infer {
    Err(format!("{} is not an operation of the recurrent family", op.name()))
}
