//! Normalisations of `shaders/norm.wgsl`: batch normalisation in inference form and local
//! response normalisation.

use super::{Check, In, Infer, Op, positive};

/// Attributes of local response normalisation across channels.
#[derive(Clone, Debug, PartialEq)]
pub struct LrnAttrs {
    /// Number of channels summed over.
    pub size: usize,
    /// Scale.
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Additive bias (ONNX `bias`, often k).
    pub bias: f32,
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    match op {
        Op::BatchNorm { epsilon } => {
            c.arity(5, 5)?;
            c.need_float(0, "input")?;
            if c.rank(0) < 2 {
                return Err("input must have a channel axis (rank >= 2)".into());
            }
            if epsilon.is_nan() || *epsilon < 0.0 {
                return Err(format!("epsilon must be >= 0, got {epsilon}"));
            }
            let ch = c.shape(0)[1];
            for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
                c.need_const(i, what)?;
                if c.shape(i) != [ch] {
                    return Err(format!("{what} must have shape [{ch}], has {:?}", c.shape(i)));
                }
            }
            Ok(vec![(c.dtype(0), c.shape(0).to_vec())])
        }
        Op::Lrn(a) => {
            c.arity(1, 1)?;
            c.need_float(0, "input")?;
            if c.rank(0) < 3 {
                return Err("input must be [N, C, spatial...]".into());
            }
            positive(&[a.size], "size")?;
            Ok(vec![(c.dtype(0), c.shape(0).to_vec())])
        }
        _ => unreachable!("norm family"),
    }
}
