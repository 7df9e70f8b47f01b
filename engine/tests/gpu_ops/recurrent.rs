//! Recurrent layers (LSTM, GRU, RNN) on the GPU against the CPU reference.

#[allow(unused_imports)]
use super::*;
