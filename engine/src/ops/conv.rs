//! Convolutions: 2-D convolution and transposed convolution over [N, C, H, W].

use super::{Activation, Check, In, Infer, Op, pool_out, positive};

/// Attributes of a 2-D convolution. Inputs: x [N, C, H, W], w [M, C/groups, kH, kW]
/// (a constant, or computed: a QDQ model's dequantised weights), optional bias `[M]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Number of groups; equal to C for depthwise.
    pub groups: usize,
    /// Activation fused into the write-back.
    pub activation: Option<Activation>,
}

impl Default for ConvAttrs {
    fn default() -> Self {
        ConvAttrs { stride: [1, 1], pads: [0; 4], dilation: [1, 1], groups: 1, activation: None }
    }
}

/// Attributes of a transposed 2-D convolution. Inputs: x [N, C, H, W], w [C, M/groups, kH, kW]
/// (a constant or computed), optional bias `[M]`. Output size: (H-1)*s - pad_begin - pad_end + d*(k-1) + 1 +
/// output_padding.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTransposeAttrs {
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Extra rows/columns added at the bottom/right of the output (h, w); 0 by default.
    pub output_padding: [usize; 2],
    /// Number of groups.
    pub groups: usize,
    /// Activation fused into the write-back.
    pub activation: Option<Activation>,
}

impl Default for ConvTransposeAttrs {
    fn default() -> Self {
        ConvTransposeAttrs {
            stride: [1, 1],
            pads: [0; 4],
            dilation: [1, 1],
            output_padding: [0, 0],
            groups: 1,
            activation: None,
        }
    }
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    c.arity(2, 3)?;
    c.need_float(0, "input")?;
    c.need_rank(0, 4, "input")?;
    c.need_rank(1, 4, "weight")?;
    if c.dtype(1) != c.dtype(0) {
        return Err(format!("weight is {} but the input is {}", c.dtype(1), c.dtype(0)));
    }
    let x = c.shape(0);
    let w = c.shape(1);
    positive(w, "weight dimensions")?;
    positive(x, "input dimensions")?;
    match op {
        Op::Conv(a) => {
            positive(&a.stride, "stride")?;
            positive(&a.dilation, "dilation")?;
            positive(&[a.groups], "groups")?;
            if !x[1].is_multiple_of(a.groups) || !w[0].is_multiple_of(a.groups) {
                return Err(format!(
                    "groups {} must divide input channels {} and output channels {}",
                    a.groups, x[1], w[0]
                ));
            }
            if w[1] * a.groups != x[1] {
                return Err(format!(
                    "weight {:?} expects {} input channels ({} per group x {} groups), input has {}",
                    w,
                    w[1] * a.groups,
                    w[1],
                    a.groups,
                    x[1]
                ));
            }
            if ins.len() == 3 && c.shape(2) != [w[0]] {
                return Err(format!("bias must have shape [{}], has {:?}", w[0], c.shape(2)));
            }
            let oh = pool_out(x[2], a.pads[0], a.pads[2], w[2], a.dilation[0], a.stride[0], false);
            let ow = pool_out(x[3], a.pads[1], a.pads[3], w[3], a.dilation[1], a.stride[1], false);
            match (oh, ow) {
                (Some(oh), Some(ow)) => Ok(vec![(c.dtype(0), vec![x[0], w[0], oh, ow])]),
                _ => Err(format!(
                    "kernel {}x{} (dilation {:?}) is larger than the padded input {}x{}",
                    w[2],
                    w[3],
                    a.dilation,
                    x[2] + a.pads[0] + a.pads[2],
                    x[3] + a.pads[1] + a.pads[3]
                )),
            }
        }
        Op::ConvTranspose(a) => {
            positive(&a.stride, "stride")?;
            positive(&a.dilation, "dilation")?;
            positive(&[a.groups], "groups")?;
            if w[0] != x[1] || !x[1].is_multiple_of(a.groups) {
                return Err(format!(
                    "weight {:?} must have {} (input channels) rows divisible by groups {}",
                    w, x[1], a.groups
                ));
            }
            let m = w[1] * a.groups;
            if ins.len() == 3 && c.shape(2) != [m] {
                return Err(format!("bias must have shape [{m}], has {:?}", c.shape(2)));
            }
            for i in 0..2 {
                if a.output_padding[i] >= a.stride[i].max(a.dilation[i]) {
                    return Err(format!(
                        "output_padding {:?} must be smaller than the stride or the dilation",
                        a.output_padding
                    ));
                }
            }
            let out = |i: usize| -> Option<usize> {
                ((x[2 + i] - 1) * a.stride[i] + a.dilation[i] * (w[2 + i] - 1) + 1 + a.output_padding[i])
                    .checked_sub(a.pads[i] + a.pads[i + 2])
                    .filter(|&v| v > 0)
            };
            match (out(0), out(1)) {
                (Some(oh), Some(ow)) => Ok(vec![(c.dtype(0), vec![x[0], m, oh, ow])]),
                _ => Err(format!("padding {:?} leaves an empty output", a.pads)),
            }
        }
        _ => unreachable!("conv family"),
    }
}
