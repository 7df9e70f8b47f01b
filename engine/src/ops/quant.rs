//! Quantisation, the conversions of the low-precision element types and the integer
//! arithmetic of quantised models: attributes and shape and type inference.
//!
//! The granularity of a quantisation (one scale for the whole tensor, one per index of an
//! axis, or one per block of `block_size` indices along an axis) follows from the scale's
//! shape, as ONNX says; [`Granularity`] is that one decision, shared by the inference, the
//! reference and the kernels. ConvInteger, MatMulInteger, QLinearConv and QLinearMatMul
//! have no IR operation of their own: the importer builds them from these and the float
//! convolution and matrix product (`onnx/ops/quant.rs`).

use super::{Check, In, Infer, Op, check_axis};
pub use crate::half::E8m0Round;
use crate::tensor::{DType, numel};

/// Attributes of `QuantizeLinear`: `y = saturate(round(x / scale) + zero_point)` (integer
/// targets: rounded half to even, clamped to the type; float targets: rounded to the type
/// with the `saturate` rule). Inputs: x, scale, optional zero point (of the output type).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeAttrs {
    /// The quantisation axis of per-axis and blocked scales (normalised).
    pub axis: usize,
    /// Indices of the axis sharing one scale (blocked scales); 0 otherwise.
    pub block_size: usize,
    /// The output type: int8, uint8, int16, uint16, int4, uint4, int2, uint2, a float8 type
    /// (not float8e8m0) or float4e2m1.
    pub to: DType,
    /// Float8 targets: values beyond the range become the largest value (else infinity or
    /// NaN).
    pub saturate: bool,
    /// The type `x / scale` is computed in: x and the scale are rounded to it, then their
    /// quotient (ONNX `precision`, by default the scale's type).
    pub precision: DType,
}

/// Attributes of `DequantizeLinear`: `y = (x - zero_point) * scale`, computed in f32 and
/// rounded to the output type. Inputs: x, scale, optional zero point (of x's type).
#[derive(Clone, Debug, PartialEq)]
pub struct DequantizeAttrs {
    /// The quantisation axis of per-axis and blocked scales (normalised).
    pub axis: usize,
    /// Indices of the axis sharing one scale (blocked scales); 0 otherwise.
    pub block_size: usize,
    /// The output type (float32, float16 or bfloat16).
    pub to: DType,
}

/// How a quantisation's scale (and zero point, of the same shape) maps onto x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Granularity {
    /// One scale (a scalar or a one-element tensor).
    Tensor,
    /// One scale per index of the axis (a 1-D scale of the axis's length).
    Axis,
    /// One scale per block of `block_size` indices of the axis, the scale having x's shape
    /// but `ceil(len / block_size)` along the axis.
    Blocked,
}

/// The granularity of a scale of shape `scale` for x of shape `x`.
pub(crate) fn granularity(x: &[usize], scale: &[usize], axis: usize, block_size: usize) -> Result<Granularity, String> {
    if numel(scale) == 1 {
        return Ok(Granularity::Tensor);
    }
    check_axis(axis, x.len())?;
    if block_size == 0 {
        if scale.len() == 1 && scale[0] == x[axis] {
            return Ok(Granularity::Axis);
        }
        return Err(format!(
            "a scale of shape {scale:?} quantises neither per tensor (one value) nor per axis (1-D of length \
             {} for axis {axis} of {x:?}); blocked scales need block_size",
            x[axis]
        ));
    }
    let fits = scale.len() == x.len()
        && (0..x.len()).all(|i| if i == axis { scale[i] == x[i].div_ceil(block_size) } else { scale[i] == x[i] });
    if fits {
        Ok(Granularity::Blocked)
    } else {
        let mut want = x.to_vec();
        want[axis] = x[axis].div_ceil(block_size);
        Err(format!(
            "a blocked scale for x {x:?}, axis {axis} and block_size {block_size} must have shape {want:?}, it has {scale:?}"
        ))
    }
}

/// For each element of x (row-major), the index of its scale.
pub(crate) fn scale_index(x: &[usize], g: Granularity, axis: usize, block_size: usize) -> impl Fn(usize) -> usize {
    let (len, inner) = if g == Granularity::Tensor { (1, 1) } else { (x[axis], numel(&x[axis + 1..])) };
    let blocks = len.div_ceil(block_size.max(1));
    move |i| match g {
        Granularity::Tensor => 0,
        Granularity::Axis => (i / inner) % len,
        Granularity::Blocked => {
            let (outer, a, rest) = (i / (len * inner), (i / inner) % len, i % inner);
            (outer * blocks + a / block_size) * inner + rest
        }
    }
}

/// The types QuantizeLinear produces.
pub(crate) fn is_quantized_type(d: DType) -> bool {
    matches!(
        d,
        DType::I8
            | DType::U8
            | DType::I16
            | DType::U16
            | DType::I4
            | DType::U4
            | DType::I2
            | DType::U2
            | DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F4E2M1
    )
}

/// Checks scale and zero point of a (de)quantisation: the scale's granularity, the zero
/// point's shape and type.
fn check_params(c: &Check, axis: usize, block_size: usize, zp_type: DType) -> Result<Granularity, String> {
    let (x, scale) = (c.shape(0), c.shape(1));
    let g = granularity(x, scale, axis, block_size)?;
    if c.ins.len() == 3 {
        if c.shape(2) != scale && !(numel(c.shape(2)) == 1 && numel(scale) == 1) {
            return Err(format!("the zero point has shape {:?}, the scale {scale:?}; they must agree", c.shape(2)));
        }
        if c.dtype(2) != zp_type {
            return Err(format!("the zero point is {}, it must be {zp_type}", c.dtype(2)));
        }
    }
    Ok(g)
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    match op {
        Op::CastWith { to, .. } => {
            c.arity(1, 1)?;
            Ok(vec![(*to, c.shape(0).to_vec())])
        }
        Op::BitCast { to } => {
            c.arity(1, 1)?;
            let from = c.dtype(0);
            if from.bits() != to.bits() {
                return Err(format!(
                    "BitCast needs types of one width: {from} has {} bits, {to} {}",
                    from.bits(),
                    to.bits()
                ));
            }
            Ok(vec![(*to, c.shape(0).to_vec())])
        }
        Op::QuantizeLinear(a) => {
            c.arity(2, 3)?;
            if !(c.dtype(0).is_float() || c.dtype(0) == DType::I32) {
                return Err(format!("x must be a float or int32 tensor, it is {}", c.dtype(0)));
            }
            if !(c.dtype(1).is_float() || c.dtype(1) == DType::I32) {
                return Err(format!("the scale must be a float or int32 tensor, it is {}", c.dtype(1)));
            }
            if !is_quantized_type(a.to) {
                return Err(format!("QuantizeLinear does not produce {}", a.to));
            }
            check_params(&c, a.axis, a.block_size, a.to)?;
            Ok(vec![(a.to, c.shape(0).to_vec())])
        }
        Op::DequantizeLinear(a) => {
            c.arity(2, 3)?;
            let t = c.dtype(0);
            if !(is_quantized_type(t) || t == DType::I32) {
                return Err(format!("DequantizeLinear does not read {t} tensors"));
            }
            c.need_float(1, "the scale")?;
            if !matches!(a.to, DType::F32 | DType::F16 | DType::BF16) {
                return Err(format!("DequantizeLinear produces float32, float16 or bfloat16, not {}", a.to));
            }
            check_params(&c, a.axis, a.block_size, t)?;
            Ok(vec![(a.to, c.shape(0).to_vec())])
        }
        Op::DynamicQuantizeLinear => {
            c.arity(1, 1)?;
            if c.dtype(0) != DType::F32 {
                return Err(format!("x must be float32, it is {}", c.dtype(0)));
            }
            Ok(vec![(DType::U8, c.shape(0).to_vec()), (DType::F32, vec![]), (DType::U8, vec![])])
        }
        _ => Err(format!("{} is not an operation of the quant family", op.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_follows_the_scale_shape() {
        assert_eq!(granularity(&[2, 3], &[], 1, 0), Ok(Granularity::Tensor));
        assert_eq!(granularity(&[2, 3], &[1], 1, 0), Ok(Granularity::Tensor));
        assert_eq!(granularity(&[2, 3], &[3], 1, 0), Ok(Granularity::Axis));
        assert_eq!(granularity(&[2, 5], &[2, 2], 1, 3), Ok(Granularity::Blocked));
        assert!(granularity(&[2, 5], &[2, 2], 1, 0).unwrap_err().contains("block_size"));
        assert!(granularity(&[2, 5], &[2, 3], 1, 3).unwrap_err().contains("[2, 2]"));
        // Blocked: x [2, 5], axis 1, blocks of 3: scales [[a, b], [c, d]].
        let idx = scale_index(&[2, 5], Granularity::Blocked, 1, 3);
        assert_eq!((0..10).map(idx).collect::<Vec<_>>(), vec![0, 0, 0, 1, 1, 2, 2, 2, 3, 3]);
        let idx = scale_index(&[2, 3, 2], Granularity::Axis, 1, 0);
        assert_eq!((0..12).map(idx).collect::<Vec<_>>(), vec![0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]);
    }
}
