//! Lowering: Recurrent layers (LSTM, GRU, RNN).

use super::{Ctx, node_err};
use crate::error::Result;
use crate::graph::Node;

pub(super) fn lower(_cx: &mut Ctx, _ni: usize, node: &Node) -> Result<()> {
    Err(node_err(node, format!("{} is not an operation of the recurrent family", node.op.name())))
}
