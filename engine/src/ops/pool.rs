//! Pooling over windows of 1, 2 or 3 spatial axes ([N, C, D1, ..., Dn]): max pooling (with
//! the flattened indices of the maxima as an optional second output), average pooling, Lp
//! pooling, global pooling over every spatial axis, and max unpooling (the scatter of pooled
//! values back to the positions of their indices).
//!
//! Per-axis attributes hold one value per spatial axis; pads hold the begin of every axis,
//! then the end of every axis (ONNX's order).

use super::conv::{MAX_SPATIAL, check_axes};
use super::{Check, In, Infer, Op, positive};
use crate::tensor::DType;

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window.
    Max,
    /// Average over the window.
    Average,
}

/// How max pooling flattens the position of a maximum into its index (ONNX `storage_order`):
/// the index is (n*C + c) * prod(spatial) plus the spatial position flattened in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexOrder {
    /// Row-major: the last spatial axis varies fastest (storage_order 0).
    RowMajor,
    /// Column-major: the first spatial axis varies fastest (storage_order 1).
    ColumnMajor,
}

/// Attributes of max/average pooling over [N, C, D1..Dn] (n = 1..=3).
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    /// Max or average.
    pub kind: PoolKind,
    /// Window per spatial axis.
    pub kernel: Vec<usize>,
    /// Stride per spatial axis.
    pub stride: Vec<usize>,
    /// Padding: the begin of each spatial axis, then the end of each ([top, left, bottom,
    /// right] in 2-D).
    pub pads: Vec<usize>,
    /// Dilation per spatial axis.
    pub dilation: Vec<usize>,
    /// Output size rounds up instead of down.
    pub ceil_mode: bool,
    /// Average pooling divides by the whole window, padding included.
    pub count_include_pad: bool,
    /// Max pooling also outputs the indices of the maxima (int64), flattened in this order.
    pub indices: Option<IndexOrder>,
}

impl PoolAttrs {
    /// A pooling with the given window and stride (one value per spatial axis each), no
    /// padding, unit dilation.
    pub fn new(kind: PoolKind, kernel: &[usize], stride: &[usize]) -> Self {
        let n = kernel.len();
        PoolAttrs {
            kind,
            kernel: kernel.to_vec(),
            stride: stride.to_vec(),
            pads: vec![0; 2 * n],
            dilation: vec![1; n],
            ceil_mode: false,
            count_include_pad: false,
            indices: None,
        }
    }
}

/// Attributes of Lp pooling over [N, C, D1..Dn] (n = 1..=3): the p-norm of the window's taps
/// inside the input, (sum |x|^p)^(1/p) (padding counts as zeros).
#[derive(Clone, Debug, PartialEq)]
pub struct LpPoolAttrs {
    /// The norm's exponent (> 0).
    pub p: f32,
    /// Window per spatial axis.
    pub kernel: Vec<usize>,
    /// Stride per spatial axis.
    pub stride: Vec<usize>,
    /// Padding: the begin of each spatial axis, then the end of each.
    pub pads: Vec<usize>,
    /// Dilation per spatial axis.
    pub dilation: Vec<usize>,
    /// Output size rounds up instead of down.
    pub ceil_mode: bool,
}

/// Attributes of max unpooling. Inputs: x [N, C, D1..Dn] (n = 1..=3), indices (integers, x's
/// shape) into the default output [N, C, (D-1)*stride - pad_begin - pad_end + kernel, ...]
/// flattened row-major; each x value is written at its index, every other output is zero.
/// A larger `output_shape` extends the default output with zeros at the end of each axis (as
/// ONNX's reference does). Indices outside the default output are skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct MaxUnpoolAttrs {
    /// Window per spatial axis.
    pub kernel: Vec<usize>,
    /// Stride per spatial axis.
    pub stride: Vec<usize>,
    /// Padding: the begin of each spatial axis, then the end of each.
    pub pads: Vec<usize>,
    /// The full output shape, when it differs from the default.
    pub output_shape: Option<Vec<usize>>,
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

/// A pooling window sweep over the spatial axes (the attributes shared by max, average and
/// Lp pooling).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window<'a> {
    /// Window per spatial axis.
    pub kernel: &'a [usize],
    /// Stride per spatial axis.
    pub stride: &'a [usize],
    /// Begins, then ends.
    pub pads: &'a [usize],
    /// Dilation per spatial axis.
    pub dilation: &'a [usize],
    /// Output size rounds up.
    pub ceil_mode: bool,
}

impl PoolAttrs {
    /// The window sweep.
    pub(crate) fn window(&self) -> Window<'_> {
        Window {
            kernel: &self.kernel,
            stride: &self.stride,
            pads: &self.pads,
            dilation: &self.dilation,
            ceil_mode: self.ceil_mode,
        }
    }
}

impl LpPoolAttrs {
    /// The window sweep.
    pub(crate) fn window(&self) -> Window<'_> {
        Window {
            kernel: &self.kernel,
            stride: &self.stride,
            pads: &self.pads,
            dilation: &self.dilation,
            ceil_mode: self.ceil_mode,
        }
    }
}

impl Window<'_> {
    /// Checks the attributes against `n` spatial axes.
    pub(crate) fn check(&self, n: usize) -> Result<(), String> {
        check_axes(n, &[("kernel", self.kernel), ("stride", self.stride), ("dilation", self.dilation)], self.pads)?;
        positive(self.kernel, "kernel")?;
        positive(self.stride, "stride")?;
        positive(self.dilation, "dilation")?;
        for i in 0..n {
            // A window never lies wholly in the padding.
            let eff = self.dilation[i] * (self.kernel[i] - 1) + 1;
            if self.pads[i] >= eff || self.pads[n + i] >= eff {
                return Err(format!(
                    "padding {:?} must be smaller than the (dilated) window {:?}",
                    self.pads, self.kernel
                ));
            }
        }
        Ok(())
    }

    /// Output spatial sizes for the spatial sizes `input`.
    pub(crate) fn out_dims(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let n = input.len();
        (0..n)
            .map(|i| {
                pool_out(
                    input[i],
                    self.pads[i],
                    self.pads[n + i],
                    self.kernel[i],
                    self.dilation[i],
                    self.stride[i],
                    self.ceil_mode,
                )
                .ok_or_else(|| format!("window {:?} is larger than the padded input", self.kernel))
            })
            .collect()
    }
}

/// The default output spatial sizes of max unpooling: (D-1)*stride - pads + kernel per axis.
pub(crate) fn unpool_dims(input: &[usize], a: &MaxUnpoolAttrs) -> Result<Vec<usize>, String> {
    let n = input.len();
    (0..n)
        .map(|i| {
            ((input[i] - 1) * a.stride[i] + a.kernel[i])
                .checked_sub(a.pads[i] + a.pads[n + i])
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("pads {:?} leave an empty output", a.pads))
        })
        .collect()
}

/// Checks x [N, C, spatial...] with 1 to 3 spatial axes; returns the spatial rank.
fn spatial_rank(c: &Check) -> Result<usize, String> {
    let rank = c.rank(0);
    if !(3..=2 + MAX_SPATIAL).contains(&rank) {
        return Err(format!(
            "input must be [N, C, spatial...] with 1 to {MAX_SPATIAL} spatial axes, has shape {:?}",
            c.shape(0)
        ));
    }
    positive(c.shape(0), "input dimensions")?;
    Ok(rank - 2)
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    let x = c.shape(0);
    match op {
        Op::Pool(a) => {
            c.arity(1, 1)?;
            // MaxPool also takes integers (ONNX: int8 and uint8; any integer type here).
            if !(a.kind == PoolKind::Max && c.dtype(0).is_int()) {
                c.need_float(0, "input")?;
            }
            let n = spatial_rank(&c)?;
            a.window().check(n)?;
            if a.indices.is_some() && a.kind != PoolKind::Max {
                return Err("only max pooling outputs indices".into());
            }
            let out = [x[..2].to_vec(), a.window().out_dims(&x[2..])?].concat();
            let mut outs = vec![(c.dtype(0), out.clone())];
            if a.indices.is_some() {
                outs.push((DType::I64, out));
            }
            Ok(outs)
        }
        Op::LpPool(a) => {
            c.arity(1, 1)?;
            c.need_float(0, "input")?;
            let n = spatial_rank(&c)?;
            a.window().check(n)?;
            if !(a.p > 0.0 && a.p.is_finite()) {
                return Err(format!("p must be positive, is {}", a.p));
            }
            Ok(vec![(c.dtype(0), [x[..2].to_vec(), a.window().out_dims(&x[2..])?].concat())])
        }
        Op::GlobalPool(_) => {
            c.arity(1, 1)?;
            c.need_float(0, "input")?;
            if x.len() < 2 {
                return Err(format!("input must be [N, C, spatial...], has {x:?}"));
            }
            let mut out = x[..2].to_vec();
            out.extend(std::iter::repeat_n(1, x.len() - 2));
            Ok(vec![(c.dtype(0), out)])
        }
        Op::MaxUnpool(a) => {
            c.arity(2, 2)?;
            c.need_float(0, "input")?;
            let n = spatial_rank(&c)?;
            if !c.dtype(1).is_int() || c.shape(1) != x {
                return Err(format!(
                    "indices must be integers of the input's shape {x:?}, are {} {:?}",
                    c.dtype(1),
                    c.shape(1)
                ));
            }
            check_axes(n, &[("kernel", &a.kernel), ("stride", &a.stride)], &a.pads)?;
            positive(&a.kernel, "kernel")?;
            positive(&a.stride, "stride")?;
            let default = [x[..2].to_vec(), unpool_dims(&x[2..], a)?].concat();
            let out = match &a.output_shape {
                None => default,
                Some(s) => {
                    if s.len() != default.len()
                        || s[..2] != default[..2]
                        || s.iter().zip(&default).any(|(&o, &d)| o < d)
                    {
                        return Err(format!(
                            "output_shape {s:?} must keep the batch and channels and be at least the default output \
                             {default:?} on every axis"
                        ));
                    }
                    s.clone()
                }
            };
            Ok(vec![(c.dtype(0), out)])
        }
        _ => unreachable!("pool family"),
    }
}
