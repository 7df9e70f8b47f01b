//! Reference: quantisation, the conversions of the low-precision element types (`Cast` with
//! its float8 attributes, `BitCast`) and dynamic quantisation.

use super::OpResult;
use crate::half::{self, E8m0Round};
use crate::ops::{DequantizeAttrs, Granularity, Op, QuantizeAttrs, granularity, scale_index};
use crate::tensor::{DType, Tensor};

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let arity = |lo: usize, hi: usize| -> OpResult<()> {
        if ins.len() < lo || ins.len() > hi {
            Err(format!("takes {lo}..={hi} inputs, got {}", ins.len()))
        } else {
            Ok(())
        }
    };
    match op {
        Op::CastWith { to, saturate, round } => {
            arity(1, 1)?;
            Ok(vec![ins[0].cast_with(*to, *saturate, *round)])
        }
        Op::BitCast { to } => {
            arity(1, 1)?;
            Ok(vec![bitcast(ins[0], *to)?])
        }
        Op::QuantizeLinear(a) => {
            arity(2, 3)?;
            Ok(vec![quantize(a, ins[0], ins[1], ins.get(2).copied())?])
        }
        Op::DequantizeLinear(a) => {
            arity(2, 3)?;
            Ok(vec![dequantize(a, ins[0], ins[1], ins.get(2).copied())?])
        }
        Op::DynamicQuantizeLinear => {
            arity(1, 1)?;
            dynamic_quantize(ins[0])
        }
        _ => Err(format!("{} is not an operation of the quant family", op.name())),
    }
}

/// For each element of `x`, its scale and zero point (0 without one) as f64.
fn params(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    axis: usize,
    block_size: usize,
) -> OpResult<(Vec<f64>, Vec<f64>)> {
    let g = granularity(x.shape(), scale.shape(), axis, block_size)?;
    let at = scale_index(x.shape(), g, axis, block_size);
    let (s, z) = (scale.to_f64s(), zp.map(|z| z.to_f64s()));
    let one = g == Granularity::Tensor;
    let mut scales = Vec::with_capacity(x.len());
    let mut zeros = Vec::with_capacity(x.len());
    for i in 0..x.len() {
        let k = if one { 0 } else { at(i) };
        scales.push(s[k]);
        zeros.push(z.as_ref().map_or(0.0, |z| z[k]));
    }
    Ok((scales, zeros))
}

/// `v` rounded to the float type `d` (f32 storage; float64 kept).
fn round_to(d: DType, v: f64) -> f64 {
    if d == DType::F64 { v } else { d.round_float(v as f32) as f64 }
}

/// QuantizeLinear: `x / scale` in the precision type, rounded half to even, plus the zero
/// point, clamped to an integer target's range; float targets round the sum to the type with
/// the `saturate` rule. A NaN quantises to the zero point on integer targets.
pub(crate) fn quantize(a: &QuantizeAttrs, x: &Tensor, scale: &Tensor, zp: Option<&Tensor>) -> OpResult<Tensor> {
    let (scales, zeros) = params(x, scale, zp, a.axis, a.block_size)?;
    let xs = x.to_f64s();
    let p = a.precision;
    let mut out = Vec::with_capacity(xs.len());
    for i in 0..xs.len() {
        let q = round_to(p, round_to(p, xs[i]) / round_to(p, scales[i]));
        out.push(q);
    }
    if a.to.is_float() {
        let v: Vec<f32> =
            out.iter().zip(&zeros).map(|(&q, &z)| a.to.cast_float((q + z) as f32, a.saturate, E8m0Round::Up)).collect();
        return Tensor::from_f32(a.to, x.shape().to_vec(), v).map_err(|e| e.to_string());
    }
    let (lo, hi) = a.to.int_range();
    let v: Vec<i64> = out
        .iter()
        .zip(&zeros)
        .map(|(&q, &z)| {
            let r = if q.is_nan() { 0.0 } else { q.round_ties_even() };
            (r + z).clamp(lo as f64, hi as f64) as i64
        })
        .collect();
    Tensor::from_i64(a.to, x.shape().to_vec(), v).map_err(|e| e.to_string())
}

/// DequantizeLinear: `(x - zero_point) * scale`, the difference taken in f32 (exact for
/// integers up to 2^24), the product rounded to f32, then to the output type.
pub(crate) fn dequantize(a: &DequantizeAttrs, x: &Tensor, scale: &Tensor, zp: Option<&Tensor>) -> OpResult<Tensor> {
    let (scales, zeros) = params(x, scale, zp, a.axis, a.block_size)?;
    let xs = x.to_f64s();
    let v: Vec<f32> = (0..xs.len())
        .map(|i| {
            let d = if x.dtype().is_float() {
                (xs[i] as f32 - zeros[i] as f32) as f64
            } else {
                (xs[i] - zeros[i]) as f32 as f64
            };
            (d * scales[i]) as f32
        })
        .collect();
    Tensor::from_f32(a.to, x.shape().to_vec(), v).map_err(|e| e.to_string())
}

/// DynamicQuantizeLinear in f32 arithmetic as ONNX defines it: the range [min(x, 0),
/// max(x, 0)] (NaNs ignored) over 255 is the scale (1/255 for an all-zero input), the zero
/// point `round(clamp(-min / scale, 0, 255))`, and `y = clamp(round(x / scale) + zp, 0, 255)`.
pub(crate) fn dynamic_quantize(x: &Tensor) -> OpResult<Vec<Tensor>> {
    let v = x.data();
    let (lo, hi) = v.iter().fold((0.0f32, 0.0f32), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let scale = if hi == lo { 1.0 } else { hi - lo } / 255.0f32;
    let zp = (0.0f32 - lo / scale).clamp(0.0, 255.0).round_ties_even();
    let y: Vec<i64> = v
        .iter()
        .map(|&x| if x.is_nan() { zp } else { ((x / scale).round_ties_even() + zp).clamp(0.0, 255.0) } as i64)
        .collect();
    let t = |r: Result<Tensor, crate::EngineError>| r.map_err(|e| e.to_string());
    Ok(vec![
        t(Tensor::from_i64(DType::U8, x.shape().to_vec(), y))?,
        t(Tensor::from_f32(DType::F32, vec![], vec![scale]))?,
        t(Tensor::from_i64(DType::U8, vec![], vec![zp as i64]))?,
    ])
}

/// The bit pattern of each element in its type (the low `bits` bits).
fn bit_patterns(t: &Tensor) -> Vec<u64> {
    let d = t.dtype();
    if let Some(f) = d.mini_float() {
        return t.data().iter().map(|&v| f.encode(v, false) as u64).collect();
    }
    match d {
        DType::F32 => t.data().iter().map(|v| v.to_bits() as u64).collect(),
        DType::F16 => t.data().iter().map(|&v| half::f32_to_f16_ieee(v) as u64).collect(),
        DType::BF16 => t.data().iter().map(|&v| half::f32_to_bf16(v) as u64).collect(),
        DType::F8E8M0 => t.data().iter().map(|&v| half::e8m0_from_f32(v, false, E8m0Round::Nearest) as u64).collect(),
        DType::F64 => t.as_f64().expect("f64").iter().map(|v| v.to_bits()).collect(),
        DType::Bool => t.as_bool().expect("bool").iter().map(|&b| b as u64).collect(),
        _ => {
            let mask = if d.bits() == 64 { u64::MAX } else { (1u64 << d.bits()) - 1 };
            t.as_i64().expect("ints").iter().map(|&v| v as u64 & mask).collect()
        }
    }
}

/// BitCast: each element's bits read as `to` (of the same width).
pub(crate) fn bitcast(x: &Tensor, to: DType) -> OpResult<Tensor> {
    if x.dtype().bits() != to.bits() {
        return Err(format!("BitCast needs types of one width: {} and {to}", x.dtype()));
    }
    let bits = bit_patterns(x);
    let shape = x.shape().to_vec();
    let r = if let Some(f) = to.mini_float() {
        Tensor::from_f32(to, shape, bits.iter().map(|&b| f.decode(b as u8)).collect())
    } else {
        match to {
            DType::F32 => Tensor::from_f32(to, shape, bits.iter().map(|&b| f32::from_bits(b as u32)).collect()),
            DType::F16 => Tensor::from_f32(to, shape, bits.iter().map(|&b| half::f16_to_f32(b as u16)).collect()),
            DType::BF16 => Tensor::from_f32(to, shape, bits.iter().map(|&b| half::bf16_to_f32(b as u16)).collect()),
            DType::F8E8M0 => Tensor::from_f32(to, shape, bits.iter().map(|&b| half::e8m0_to_f32(b as u8)).collect()),
            DType::F64 => Tensor::from_f64(shape, bits.iter().map(|&b| f64::from_bits(b)).collect()),
            DType::Bool => Tensor::from_bool(shape, bits.iter().map(|&b| b != 0).collect()),
            // from_i64 wraps each pattern into the type (sign-extending the signed ones).
            _ => Tensor::from_i64(to, shape, bits.iter().map(|&b| b as i64).collect()),
        }
    };
    r.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qattrs(to: DType) -> QuantizeAttrs {
        QuantizeAttrs { axis: 1, block_size: 0, to, saturate: true, precision: DType::F32 }
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let x = Tensor::new(vec![6], vec![0.0, 3.0, 5.0, 1000.0, -254.0, -1000.0]).unwrap();
        let s = Tensor::scalar(DType::F32, 2.0);
        let z = Tensor::from_i64(DType::U8, vec![], vec![128]).unwrap();
        let y = quantize(&qattrs(DType::U8), &x, &s, Some(&z)).unwrap();
        assert_eq!(y.as_i64().unwrap(), &[128, 130, 130, 255, 1, 0]);
        let y = quantize(&qattrs(DType::I4), &x, &s, None).unwrap();
        assert_eq!(y.as_i64().unwrap(), &[0, 2, 2, 7, -8, -8]);
        let y = quantize(&qattrs(DType::F8E4M3FN), &x, &s, None).unwrap();
        assert_eq!(y.data(), &[0.0, 1.5, 2.5, 448.0, -128.0, -448.0]);
        let mut a = qattrs(DType::F8E4M3FN);
        a.saturate = false;
        let y = quantize(&a, &x, &s, None).unwrap();
        assert!(y.data()[3].is_nan() && y.data()[5].is_nan(), "{:?}", y.data());
    }

    #[test]
    fn dequantize_per_axis_and_blocked() {
        let x = Tensor::from_i64(DType::I8, vec![2, 3], vec![1, 2, 3, -4, -5, -6]).unwrap();
        let s = Tensor::new(vec![3], vec![1.0, 0.5, 2.0]).unwrap();
        let z = Tensor::from_i64(DType::I8, vec![3], vec![1, 0, -1]).unwrap();
        let a = DequantizeAttrs { axis: 1, block_size: 0, to: DType::F32 };
        assert_eq!(dequantize(&a, &x, &s, Some(&z)).unwrap().data(), &[0.0, 1.0, 8.0, -5.0, -2.5, -10.0]);
        let s = Tensor::new(vec![2, 2], vec![1.0, 10.0, 2.0, 20.0]).unwrap();
        let a = DequantizeAttrs { axis: 1, block_size: 2, to: DType::F32 };
        assert_eq!(dequantize(&a, &x, &s, None).unwrap().data(), &[1.0, 2.0, 30.0, -8.0, -10.0, -120.0]);
    }

    #[test]
    fn dynamic_quantize_follows_onnx() {
        let x = Tensor::new(vec![6], vec![0.0, 2.0, -3.0, -2.5, 1.34, 0.5]).unwrap();
        let r = dynamic_quantize(&x).unwrap();
        assert_eq!(r[0].as_i64().unwrap(), &[153, 255, 0, 26, 221, 179]);
        assert!((r[1].data()[0] - 0.019_607_844).abs() < 1e-9);
        assert_eq!(r[2].as_i64().unwrap(), &[153]);
    }

    #[test]
    fn bitcast_reinterprets_bits() {
        let f = Tensor::new(vec![2], vec![1.0, -2.0]).unwrap();
        let i = bitcast(&f, DType::I32).unwrap();
        assert_eq!(i.as_i64().unwrap(), &[0x3f80_0000, 0xc000_0000u32 as i32 as i64]);
        assert_eq!(bitcast(&i, DType::F32).unwrap(), f);
        let h = Tensor::from_f32(DType::F16, vec![1], vec![-1.0]).unwrap();
        assert_eq!(bitcast(&h, DType::U16).unwrap().as_i64().unwrap(), &[0xbc00]);
        let e = Tensor::from_f32(DType::F8E4M3FN, vec![1], vec![448.0]).unwrap();
        assert_eq!(bitcast(&e, DType::I8).unwrap().as_i64().unwrap(), &[0x7e]);
        assert!(bitcast(&f, DType::I16).is_err());
    }
}
