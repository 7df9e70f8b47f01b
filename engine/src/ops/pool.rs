//! Pooling: max and average pooling over 2-D windows, global pooling over every spatial
//! axis.

use super::{Check, In, Infer, Op, positive};

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window.
    Max,
    /// Average over the window.
    Average,
}

/// Attributes of max/average pooling over [N, C, H, W].
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    /// Max or average.
    pub kind: PoolKind,
    /// Window (h, w).
    pub kernel: [usize; 2],
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Output size rounds up instead of down.
    pub ceil_mode: bool,
    /// Average pooling divides by the whole window, padding included.
    pub count_include_pad: bool,
}

impl PoolAttrs {
    /// A pooling with the given window and stride and no padding.
    pub fn new(kind: PoolKind, kernel: [usize; 2], stride: [usize; 2]) -> Self {
        PoolAttrs { kind, kernel, stride, pads: [0; 4], dilation: [1, 1], ceil_mode: false, count_include_pad: false }
    }
}

/// Output length of a pooling window sweep (ceil mode as PyTorch/onnxruntime: the last
/// window must start inside the input or the left padding).
pub(crate) fn pool_out(len: usize, pb: usize, pe: usize, k: usize, d: usize, s: usize, ceil: bool) -> Option<usize> {
    let eff = d * (k - 1) + 1;
    let span = (len + pb + pe).checked_sub(eff)?;
    let mut out = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
    if ceil && (out - 1) * s >= len + pb {
        out -= 1;
    }
    Some(out)
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    c.arity(1, 1)?;
    // MaxPool also takes integers (ONNX: int8 and uint8; any integer type here).
    if !(matches!(op, Op::Pool(a) if a.kind == PoolKind::Max) && c.dtype(0).is_int()) {
        c.need_float(0, "input")?;
    }
    let x = c.shape(0);
    match op {
        Op::Pool(a) => {
            c.need_rank(0, 4, "input")?;
            positive(&a.kernel, "kernel")?;
            positive(&a.stride, "stride")?;
            positive(&a.dilation, "dilation")?;
            for i in 0..2 {
                // A window never lies wholly in the padding.
                let eff = a.dilation[i] * (a.kernel[i] - 1) + 1;
                if a.pads[i] >= eff || a.pads[i + 2] >= eff {
                    return Err(format!(
                        "padding {:?} must be smaller than the (dilated) window {:?}",
                        a.pads, a.kernel
                    ));
                }
            }
            let oh = pool_out(x[2], a.pads[0], a.pads[2], a.kernel[0], a.dilation[0], a.stride[0], a.ceil_mode);
            let ow = pool_out(x[3], a.pads[1], a.pads[3], a.kernel[1], a.dilation[1], a.stride[1], a.ceil_mode);
            match (oh, ow) {
                (Some(oh), Some(ow)) => Ok(vec![(c.dtype(0), vec![x[0], x[1], oh, ow])]),
                _ => Err(format!("window {:?} is larger than the padded input", a.kernel)),
            }
        }
        Op::GlobalPool(_) => {
            if x.len() < 2 {
                return Err(format!("input must be [N, C, spatial...], has {x:?}"));
            }
            let mut out = x[..2].to_vec();
            out.extend(std::iter::repeat_n(1, x.len() - 2));
            Ok(vec![(c.dtype(0), out)])
        }
        _ => unreachable!("pool family"),
    }
}
