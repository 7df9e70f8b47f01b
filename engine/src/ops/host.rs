//! Host operations: their outputs' shapes depend on the input values, so they run on the
//! CPU (through the reference executor) between two device graphs of a program, and never
//! inside a graph.

use super::{In, Infer, Op};

/// Attributes of NonMaxSuppression.
#[derive(Clone, Debug, PartialEq)]
pub struct NmsAttrs {
    /// Boxes are [x_center, y_center, width, height] (else [y1, x1, y2, x2]).
    pub center_point_box: bool,
}

pub(super) fn infer(op: &Op, _ins: &[In]) -> Infer {
    Err(format!(
        "{} has an output whose shape depends on the input values; it runs on the host between device graphs",
        op.name()
    ))
}
