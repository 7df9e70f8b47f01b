//! Dense, typed tensors in row-major (NCHW for images) layout.
//!
//! A [`Tensor`] has an element type ([`DType`]), a shape and its values. Values are held in
//! one of four representations: `f32` (for float32 and the narrower floats: float16,
//! bfloat16, the float8 types and float4e2m1, each holding values already rounded to its
//! type), `f64` (float64), `i64` (every integer type, the 4- and 2-bit ones included, values
//! wrapped into the type's range) and `bool`. Constructors enforce those invariants, so every
//! consumer can trust them.
//!
//! Two conversions exist: [`Tensor::cast`] / [`Tensor::cast_with`] are ONNX's `Cast` (float8
//! targets saturate by default), while [`Tensor::convert`] holds values in another type the
//! way every other operation's results are held (floats rounded to nearest even, overflowing
//! to infinity or NaN as the type allows: values already of the type are unchanged).

use crate::error::{EngineError, Result};
use crate::half::{self, E8m0Round, MiniFloat};

/// Element type of a tensor (the ONNX element types the engine handles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16 (held as f32 values rounded to fp16; computed in f32 on the device).
    F16,
    /// bfloat16 (held as f32 values rounded to bf16).
    BF16,
    /// IEEE binary64 (held as f64 on the host; computed in f32 on the device, which has no
    /// f64).
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer (held as i32 on the device, whose range is checked on upload).
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer (held as i64 on the host: values above 2^63 - 1 wrap).
    U64,
    /// Boolean.
    Bool,
    /// 8-bit float, 4 exponent and 3 mantissa bits, no infinity (held as f32 values rounded
    /// to it, like float16).
    F8E4M3FN,
    /// 8-bit float, 4 exponent and 3 mantissa bits, no infinity, no negative zero.
    F8E4M3FNUZ,
    /// 8-bit float, 5 exponent and 2 mantissa bits, with infinities (IEEE-like).
    F8E5M2,
    /// 8-bit float, 5 exponent and 2 mantissa bits, no infinity, no negative zero.
    F8E5M2FNUZ,
    /// 8-bit power of two (exponent only, the scale type of microscaling formats).
    F8E8M0,
    /// 4-bit float, 2 exponent and 1 mantissa bits (values 0, ±0.5 .. ±6).
    F4E2M1,
    /// Signed 4-bit integer.
    I4,
    /// Unsigned 4-bit integer.
    U4,
    /// Signed 2-bit integer.
    I2,
    /// Unsigned 2-bit integer.
    U2,
}

impl DType {
    /// Every element type.
    pub const ALL: [DType; 23] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::Bool,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::F8E8M0,
        DType::F4E2M1,
        DType::I4,
        DType::U4,
        DType::I2,
        DType::U2,
    ];

    /// The numpy-style name (`float32`, `int64`, `bool`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::Bool => "bool",
            DType::F8E4M3FN => "float8e4m3fn",
            DType::F8E4M3FNUZ => "float8e4m3fnuz",
            DType::F8E5M2 => "float8e5m2",
            DType::F8E5M2FNUZ => "float8e5m2fnuz",
            DType::F8E8M0 => "float8e8m0",
            DType::F4E2M1 => "float4e2m1",
            DType::I4 => "int4",
            DType::U4 => "uint4",
            DType::I2 => "int2",
            DType::U2 => "uint2",
        }
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64) || self.is_narrow_float()
    }

    /// True for the 8- and 4-bit float types.
    pub fn is_narrow_float(self) -> bool {
        matches!(
            self,
            DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0 | DType::F4E2M1
        )
    }

    /// The 8- or 4-bit float format of a type with sign, exponent and mantissa (not
    /// float8e8m0, which has only an exponent).
    pub(crate) fn mini_float(self) -> Option<MiniFloat> {
        match self {
            DType::F8E4M3FN => Some(half::E4M3FN),
            DType::F8E4M3FNUZ => Some(half::E4M3FNUZ),
            DType::F8E5M2 => Some(half::E5M2),
            DType::F8E5M2FNUZ => Some(half::E5M2FNUZ),
            DType::F4E2M1 => Some(half::E2M1),
            _ => None,
        }
    }

    /// True for the integer types (not bool).
    pub fn is_int(self) -> bool {
        !self.is_float() && self != DType::Bool
    }

    /// Bits per element.
    pub fn bits(self) -> usize {
        match self {
            DType::I2 | DType::U2 => 2,
            DType::I4 | DType::U4 | DType::F4E2M1 => 4,
            DType::I8 | DType::U8 | DType::Bool => 8,
            DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0 => 8,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 16,
            DType::F32 | DType::I32 | DType::U32 => 32,
            DType::F64 | DType::I64 | DType::U64 => 64,
        }
    }

    /// Bytes per element in files (.npy, ONNX raw data); the 4- and 2-bit types pack two or
    /// four elements in a byte ([`DType::packed_bytes`]), this gives 1 for them.
    pub fn size(self) -> usize {
        self.bits().div_ceil(8)
    }

    /// Bytes of `n` elements packed as ONNX stores them (sub-byte types several a byte, the
    /// first element in the lowest bits).
    pub fn packed_bytes(self, n: usize) -> usize {
        (n * self.bits()).div_ceil(8)
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::U16 => 4,
            DType::I16 => 5,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::F16 => 10,
            DType::F64 => 11,
            DType::U32 => 12,
            DType::U64 => 13,
            DType::BF16 => 16,
            DType::F8E4M3FN => 17,
            DType::F8E4M3FNUZ => 18,
            DType::F8E5M2 => 19,
            DType::F8E5M2FNUZ => 20,
            DType::U4 => 21,
            DType::I4 => 22,
            DType::F4E2M1 => 23,
            DType::F8E8M0 => 24,
            DType::U2 => 25,
            DType::I2 => 26,
        }
    }

    /// The type of an ONNX `TensorProto.DataType` code, if the engine handles it.
    pub fn from_onnx(code: i32) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.onnx_code() == code)
    }

    /// A readable name for any ONNX element type code, handled or not (for errors).
    pub fn onnx_name(code: i32) -> String {
        match DType::from_onnx(code) {
            Some(d) => d.name().to_string(),
            None => match code {
                0 => "undefined".into(),
                8 => "string".into(),
                14 => "complex64".into(),
                15 => "complex128".into(),
                27 => "float6e2m3".into(),
                28 => "float6e3m2".into(),
                c => format!("element type {c}"),
            },
        }
    }

    /// Parses a name as [`DType::name`] gives it (also `f32`, `i64`, ... and `float`).
    pub fn parse(s: &str) -> Option<DType> {
        let s = s.to_ascii_lowercase();
        let alias = match s.as_str() {
            "f32" | "float" | "fp32" => "float32",
            "f16" | "half" | "fp16" => "float16",
            "bf16" => "bfloat16",
            "f64" | "double" => "float64",
            "i8" => "int8",
            "i16" => "int16",
            "i32" | "int" => "int32",
            "i64" | "long" => "int64",
            "u8" => "uint8",
            "u16" => "uint16",
            "u32" => "uint32",
            "u64" => "uint64",
            "b1" | "boolean" => "bool",
            other => other,
        };
        DType::ALL.into_iter().find(|d| d.name() == alias)
    }

    /// The value range of an integer type as i64 (uint64 is limited to the i64 range).
    pub fn int_range(self) -> (i64, i64) {
        match self {
            DType::I8 => (i8::MIN as i64, i8::MAX as i64),
            DType::I16 => (i16::MIN as i64, i16::MAX as i64),
            DType::I32 => (i32::MIN as i64, i32::MAX as i64),
            DType::U8 => (0, u8::MAX as i64),
            DType::U16 => (0, u16::MAX as i64),
            DType::U32 => (0, u32::MAX as i64),
            DType::I4 => (-8, 7),
            DType::U4 => (0, 15),
            DType::I2 => (-2, 1),
            DType::U2 => (0, 3),
            DType::Bool => (0, 1),
            _ => (i64::MIN, i64::MAX),
        }
    }

    /// Wraps an integer into this type's range, as a two's-complement narrowing does.
    pub fn wrap(self, v: i64) -> i64 {
        match self {
            DType::I8 => v as i8 as i64,
            DType::I16 => v as i16 as i64,
            DType::I32 => v as i32 as i64,
            DType::U8 => v as u8 as i64,
            DType::U16 => v as u16 as i64,
            DType::U32 => v as u32 as i64,
            DType::I4 => (v << 60) >> 60,
            DType::U4 => v & 0xf,
            DType::I2 => (v << 62) >> 62,
            DType::U2 => v & 0x3,
            DType::Bool => (v != 0) as i64,
            _ => v,
        }
    }

    /// Rounds a computed value to this floating-point type (f32 storage): to nearest, ties
    /// to even, overflowing to infinity (float16, float8e5m2) or NaN (the other float8
    /// types) as IEEE does, never saturating except in float4e2m1, which has neither;
    /// float8e8m0 rounds to the nearest power of two. Values of the type are unchanged.
    pub fn round_float(self, v: f32) -> f32 {
        match self {
            DType::F16 => half::round_f16(v),
            DType::BF16 => half::round_bf16(v),
            DType::F8E8M0 => half::e8m0_to_f32(half::e8m0_from_f32(v, false, E8m0Round::Nearest)),
            d => d.mini_float().map_or(v, |f| f.round(v, false)),
        }
    }

    /// Converts a value to this floating-point type as ONNX `Cast` does: float8 types
    /// saturate (`saturate`, the default) or overflow as [`DType::round_float`];
    /// float8e8m0 rounds by `round`; other types as [`DType::round_float`].
    pub fn cast_float(self, v: f32, saturate: bool, round: E8m0Round) -> f32 {
        match self {
            DType::F8E8M0 => half::e8m0_to_f32(half::e8m0_from_f32(v, saturate, round)),
            d => match d.mini_float() {
                Some(f) => f.round(v, saturate),
                None => d.round_float(v),
            },
        }
    }

    /// An integer of a float value as `Cast` makes it: truncated toward zero (NaN is 0),
    /// then wrapped into the type; the 4- and 2-bit types give 0 for values outside their
    /// range instead (ONNX leaves it undefined; its reference gives 0).
    pub fn int_of_float(self, v: f64) -> i64 {
        let t = if v.is_nan() { 0 } else { v as i64 };
        if self.bits() < 8 {
            let (lo, hi) = self.int_range();
            return if (lo..=hi).contains(&t) { t } else { 0 };
        }
        self.wrap(t)
    }
}

impl serde::Serialize for DType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for DType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DType::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown element type '{s}'")))
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The values of a tensor in its representation.
#[derive(Clone, Debug, PartialEq)]
enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl Data {
    fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }
}

/// A dense tensor, row-major, of one element type.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Data,
}

/// Number of elements of a shape (1 for a scalar).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn check_len(shape: &[usize], got: usize) -> Result<()> {
    let expected = numel(shape);
    if expected != got {
        return Err(EngineError::TensorData { shape: shape.to_vec(), expected, got });
    }
    Ok(())
}

impl Tensor {
    /// A float32 tensor from its shape and data; errors when the lengths disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        check_len(&shape, data.len())?;
        Ok(Tensor { dtype: DType::F32, shape, data: Data::F32(data) })
    }

    /// A float tensor of any float type from f32 values (rounded to the type as
    /// [`Tensor::convert`] does); other types are converted as [`Tensor::convert`] converts.
    pub fn from_f32(dtype: DType, shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let t = Tensor::new(shape, data)?;
        Ok(t.convert(dtype))
    }

    /// A float64 tensor.
    pub fn from_f64(shape: Vec<usize>, data: Vec<f64>) -> Result<Self> {
        check_len(&shape, data.len())?;
        Ok(Tensor { dtype: DType::F64, shape, data: Data::F64(data) })
    }

    /// An integer tensor of type `dtype` (values wrapped into its range); a float or bool
    /// `dtype` converts the values as [`Tensor::cast`] does.
    pub fn from_i64(dtype: DType, shape: Vec<usize>, mut data: Vec<i64>) -> Result<Self> {
        check_len(&shape, data.len())?;
        if dtype.is_int() {
            for v in &mut data {
                *v = dtype.wrap(*v);
            }
            return Ok(Tensor { dtype, shape, data: Data::I64(data) });
        }
        Ok(Tensor { dtype: DType::I64, shape, data: Data::I64(data) }.convert(dtype))
    }

    /// A boolean tensor.
    pub fn from_bool(shape: Vec<usize>, data: Vec<bool>) -> Result<Self> {
        check_len(&shape, data.len())?;
        Ok(Tensor { dtype: DType::Bool, shape, data: Data::Bool(data) })
    }

    /// A tensor of type `dtype` from f64 values, as [`Tensor::convert`] converts: floats
    /// rounded to the type, integers truncated toward zero and wrapped, bools nonzero.
    pub fn from_f64_as(dtype: DType, shape: Vec<usize>, data: Vec<f64>) -> Result<Self> {
        Ok(Tensor::from_f64(shape, data)?.convert(dtype))
    }

    /// A 1-D int64 tensor (shapes, axes, indices).
    pub fn ints(values: &[i64]) -> Tensor {
        Tensor { dtype: DType::I64, shape: vec![values.len()], data: Data::I64(values.to_vec()) }
    }

    /// A scalar (rank 0) of type `dtype` holding `v` (converted as [`Tensor::convert`] does).
    pub fn scalar(dtype: DType, v: f64) -> Tensor {
        Tensor { dtype: DType::F64, shape: vec![], data: Data::F64(vec![v]) }.convert(dtype)
    }

    /// A float32 tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        Tensor::zeros_of(DType::F32, shape)
    }

    /// A tensor of zeros (false) of any type.
    pub fn zeros_of(dtype: DType, shape: Vec<usize>) -> Self {
        let n = numel(&shape);
        let data = match repr_of(dtype) {
            Repr::F32 => Data::F32(vec![0.0; n]),
            Repr::F64 => Data::F64(vec![0.0; n]),
            Repr::I64 => Data::I64(vec![0; n]),
            Repr::Bool => Data::Bool(vec![false; n]),
        };
        Tensor { dtype, shape, data }
    }

    /// A float32 tensor of uniform random values in [lo, hi) from a seeded generator.
    pub fn random(shape: Vec<usize>, rng: &mut crate::Rng, lo: f32, hi: f32) -> Self {
        let n = numel(&shape);
        let data = (0..n).map(|_| rng.uniform(lo, hi)).collect();
        Tensor { dtype: DType::F32, shape, data: Data::F32(data) }
    }

    /// Random values of any type: floats uniform in [lo, hi), integers uniform in
    /// [lo, hi] (rounded), bools fair coins.
    pub fn random_of(dtype: DType, shape: Vec<usize>, rng: &mut crate::Rng, lo: f32, hi: f32) -> Self {
        let n = numel(&shape);
        match repr_of(dtype) {
            Repr::Bool => Tensor { dtype, shape, data: Data::Bool((0..n).map(|_| rng.coin()).collect()) },
            Repr::I64 => {
                let (lo, hi) = (lo.round() as i64, hi.round() as i64);
                let span = (hi - lo).max(0) as u64 + 1;
                let v = (0..n).map(|_| dtype.wrap(lo + (rng.next_u64() % span) as i64)).collect();
                Tensor { dtype, shape, data: Data::I64(v) }
            }
            _ => Tensor::random(shape, rng, lo, hi).convert(dtype),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values of a float tensor held as f32 (every float type but float64), row-major.
    ///
    /// # Panics
    /// On tensors of other types (a programming error: check [`Tensor::dtype`], or use
    /// [`Tensor::as_f32`] / [`Tensor::to_f64s`]).
    pub fn data(&self) -> &[f32] {
        match &self.data {
            Data::F32(v) => v,
            _ => panic!("Tensor::data on a {} tensor; it holds no f32 values", self.dtype),
        }
    }

    /// The values of a float32/float16/bfloat16 tensor, mutable (values written to a 16-bit
    /// tensor must be rounded by the caller).
    ///
    /// # Panics
    /// On tensors of other types, as [`Tensor::data`].
    pub fn data_mut(&mut self) -> &mut [f32] {
        match &mut self.data {
            Data::F32(v) => v,
            _ => panic!("Tensor::data_mut on a {} tensor; it holds no f32 values", self.dtype),
        }
    }

    /// Consumes a float32/float16/bfloat16 tensor, returning its values.
    ///
    /// # Panics
    /// On tensors of other types, as [`Tensor::data`].
    pub fn into_data(self) -> Vec<f32> {
        match self.data {
            Data::F32(v) => v,
            _ => panic!("Tensor::into_data on a {} tensor; it holds no f32 values", self.dtype),
        }
    }

    /// The f32 values, for float tensors held as f32 (every float type but float64).
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The f64 values, for float64 tensors.
    pub fn as_f64(&self) -> Option<&[f64]> {
        match &self.data {
            Data::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The values, for integer tensors.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The values, for bool tensors.
    pub fn as_bool(&self) -> Option<&[bool]> {
        match &self.data {
            Data::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// Every value as f32 (float64 and integers narrowed, bools 0 and 1).
    pub fn to_f32s(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
        }
    }

    /// Every value as f64 (bools 0 and 1).
    pub fn to_f64s(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        }
    }

    /// Every value as i64: floats truncated toward zero (saturating; NaN is 0), bools 0/1.
    pub fn to_i64s(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::F64(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
            Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// Every value as bool (nonzero is true, NaN is true).
    pub fn to_bools(&self) -> Vec<bool> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x != 0.0).collect(),
            Data::F64(v) => v.iter().map(|&x| x != 0.0).collect(),
            Data::I64(v) => v.iter().map(|&x| x != 0).collect(),
            Data::Bool(v) => v.clone(),
        }
    }

    /// Element `i` (flat index) as f64.
    pub fn f64_at(&self, i: usize) -> f64 {
        match &self.data {
            Data::F32(v) => v[i] as f64,
            Data::F64(v) => v[i],
            Data::I64(v) => v[i] as f64,
            Data::Bool(v) => v[i] as u8 as f64,
        }
    }

    /// Element `i` (flat index) as i64 (floats truncated).
    pub fn i64_at(&self, i: usize) -> i64 {
        match &self.data {
            Data::F32(v) => v[i] as i64,
            Data::F64(v) => v[i] as i64,
            Data::I64(v) => v[i],
            Data::Bool(v) => v[i] as i64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.data.len() == 0
    }

    /// Same data, another shape with as many elements.
    pub fn reshaped(mut self, shape: Vec<usize>) -> Result<Self> {
        check_len(&shape, self.len())?;
        self.shape = shape;
        Ok(self)
    }

    /// The values converted to another type with ONNX `Cast` semantics and its default
    /// attributes: floats to integers truncate toward zero (saturating at the i64 range, NaN
    /// to 0) then wrap into the type (the 4- and 2-bit types give 0 outside their range, see
    /// [`DType::int_of_float`]); integers wrap; anything to bool is "nonzero" (NaN is true);
    /// bools are 0 and 1; floats round to nearest even (fp16 overflow gives infinity, float8
    /// types saturate, float8e8m0 rounds up).
    pub fn cast(&self, to: DType) -> Tensor {
        self.cast_with(to, true, E8m0Round::Up)
    }

    /// ONNX `Cast` with its `saturate` attribute (float8 targets: beyond the range, the
    /// largest value when true, else infinity or NaN) and `round_mode` (float8e8m0 targets).
    pub fn cast_with(&self, to: DType, saturate: bool, round: E8m0Round) -> Tensor {
        self.to_type(to, |x| to.cast_float(x, saturate, round))
    }

    /// The values held in another type as computed values are (not a `Cast`): floats round
    /// to nearest even and overflow as [`DType::round_float`] says, never saturating
    /// (values already of the type are unchanged); other targets as [`Tensor::cast`].
    pub fn convert(&self, to: DType) -> Tensor {
        self.to_type(to, |x| to.round_float(x))
    }

    fn to_type(&self, to: DType, round: impl Fn(f32) -> f32) -> Tensor {
        let shape = self.shape.clone();
        let data = match repr_of(to) {
            Repr::F32 => Data::F32(match &self.data {
                Data::F32(v) => v.iter().map(|&x| round(x)).collect(),
                Data::F64(v) => v.iter().map(|&x| round(x as f32)).collect(),
                Data::I64(v) => v.iter().map(|&x| round(x as f32)).collect(),
                Data::Bool(v) => v.iter().map(|&x| round(x as u8 as f32)).collect(),
            }),
            Repr::F64 => Data::F64(self.to_f64s()),
            Repr::I64 => Data::I64(match &self.data {
                Data::F32(v) => v.iter().map(|&x| to.int_of_float(x as f64)).collect(),
                Data::F64(v) => v.iter().map(|&x| to.int_of_float(x)).collect(),
                Data::I64(v) => v.iter().map(|&x| to.wrap(x)).collect(),
                Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            }),
            Repr::Bool => Data::Bool(self.to_bools()),
        };
        Tensor { dtype: to, shape, data }
    }

    /// A tensor of the same type with the given shape whose element `i` is element
    /// `src[i]` of this one, or `fill` (converted to the type) where `src[i]` is `None`.
    /// Every index must be in range (callers compute them from checked shapes).
    pub fn gather(&self, shape: Vec<usize>, src: &[Option<usize>], fill: f64) -> Result<Tensor> {
        check_len(&shape, src.len())?;
        let fill_t = Tensor::scalar(self.dtype, fill);
        let data = match (&self.data, &fill_t.data) {
            (Data::F32(v), Data::F32(f)) => Data::F32(src.iter().map(|s| s.map_or(f[0], |i| v[i])).collect()),
            (Data::F64(v), Data::F64(f)) => Data::F64(src.iter().map(|s| s.map_or(f[0], |i| v[i])).collect()),
            (Data::I64(v), Data::I64(f)) => Data::I64(src.iter().map(|s| s.map_or(f[0], |i| v[i])).collect()),
            (Data::Bool(v), Data::Bool(f)) => Data::Bool(src.iter().map(|s| s.map_or(f[0], |i| v[i])).collect()),
            _ => unreachable!("a scalar of the same type has the same representation"),
        };
        Ok(Tensor { dtype: self.dtype, shape, data })
    }

    /// A tensor of the same type whose element `i` is element `src[i]` of `parts[part[i]]`
    /// (all parts of this tensor's type): the general form of concatenation and selection.
    pub fn select(dtype: DType, shape: Vec<usize>, parts: &[&Tensor], src: &[(usize, usize)]) -> Result<Tensor> {
        check_len(&shape, src.len())?;
        if let Some(p) = parts.iter().find(|p| p.dtype != dtype) {
            return Err(EngineError::TensorType {
                reason: format!("selecting {dtype} values from a {} tensor", p.dtype),
            });
        }
        let data = match repr_of(dtype) {
            Repr::F32 => Data::F32(src.iter().map(|&(p, i)| parts[p].as_f32().expect("same type")[i]).collect()),
            Repr::F64 => Data::F64(src.iter().map(|&(p, i)| parts[p].as_f64().expect("same type")[i]).collect()),
            Repr::I64 => Data::I64(src.iter().map(|&(p, i)| parts[p].as_i64().expect("same type")[i]).collect()),
            Repr::Bool => Data::Bool(src.iter().map(|&(p, i)| parts[p].as_bool().expect("same type")[i]).collect()),
        };
        Ok(Tensor { dtype, shape, data })
    }

    /// Largest absolute difference to another tensor of the same shape, over the values as
    /// f64 (infinite when the shapes differ or a value is NaN on one side only; equal
    /// infinities count as no difference).
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        if self.shape != other.shape {
            return f32::INFINITY;
        }
        let (a, b) = (self.to_f64s(), other.to_f64s());
        let mut m = 0.0f64;
        for (x, y) in a.iter().zip(&b) {
            if x.is_nan() || y.is_nan() {
                if x.is_nan() != y.is_nan() {
                    return f32::INFINITY;
                }
                continue;
            }
            if x == y {
                continue;
            }
            let d = (x - y).abs();
            if d.is_nan() {
                return f32::INFINITY;
            }
            m = m.max(d);
        }
        m as f32
    }

    /// Largest absolute value (NaNs ignored).
    pub fn max_abs(&self) -> f32 {
        self.to_f64s().iter().filter(|v| !v.is_nan()).fold(0.0f64, |m, v| m.max(v.abs())) as f32
    }

    /// True when both tensors have the same type and shape and every pair of values
    /// satisfies `|a - b| <= atol + rtol * |b|` (NaN matches NaN; equal infinities match).
    pub fn allclose(&self, expected: &Tensor, rtol: f64, atol: f64) -> bool {
        if self.shape != expected.shape {
            return false;
        }
        let (a, b) = (self.to_f64s(), expected.to_f64s());
        a.iter().zip(&b).all(|(&x, &y)| {
            if x.is_nan() || y.is_nan() {
                return x.is_nan() && y.is_nan();
            }
            x == y || (x - y).abs() <= atol + rtol * y.abs()
        })
    }
}

/// How values of a type are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repr {
    F32,
    F64,
    I64,
    Bool,
}

pub(crate) fn repr_of(d: DType) -> Repr {
    match d {
        DType::F64 => Repr::F64,
        DType::Bool => Repr::Bool,
        d if d.is_float() => Repr::F32,
        _ => Repr::I64,
    }
}

/// A small, fast, seeded pseudo-random generator (SplitMix64) for weights and test inputs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed; the same seed gives the same sequence.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// True with probability 1/2.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// One element of a slice, chosen uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_follow_onnx() {
        let f = Tensor::new(vec![5], vec![1.7, -1.7, 300.0, f32::NAN, 0.0]).unwrap();
        assert_eq!(f.cast(DType::I64).as_i64().unwrap(), &[1, -1, 300, 0, 0]);
        assert_eq!(f.cast(DType::U8).as_i64().unwrap(), &[1, 255, 44, 0, 0]);
        assert_eq!(f.cast(DType::Bool).as_bool().unwrap(), &[true, true, true, true, false]);
        let h = Tensor::new(vec![2], vec![1.0 + 2f32.powi(-12), 1e6]).unwrap().cast(DType::F16);
        assert_eq!(h.data()[0], 1.0);
        assert!(h.data()[1].is_infinite());
        let i = Tensor::from_i64(DType::I8, vec![3], vec![127, 128, -129]).unwrap();
        assert_eq!(i.as_i64().unwrap(), &[127, -128, 127]);
        assert_eq!(i.cast(DType::F32).data(), &[127.0, -128.0, 127.0]);
        let b = Tensor::from_bool(vec![2], vec![true, false]).unwrap();
        assert_eq!(b.cast(DType::F64).as_f64().unwrap(), &[1.0, 0.0]);
    }

    #[test]
    fn gather_and_select_keep_the_type() {
        let t = Tensor::from_i64(DType::I32, vec![3], vec![5, 6, 7]).unwrap();
        let g = t.gather(vec![4], &[Some(2), None, Some(0), Some(0)], -1.0).unwrap();
        assert_eq!((g.dtype(), g.as_i64().unwrap()), (DType::I32, &[7, -1, 5, 5][..]));
        let u = Tensor::from_i64(DType::I32, vec![1], vec![9]).unwrap();
        let s = Tensor::select(DType::I32, vec![2], &[&t, &u], &[(1, 0), (0, 1)]).unwrap();
        assert_eq!(s.as_i64().unwrap(), &[9, 6]);
    }

    #[test]
    fn allclose_matches_nan_and_infinity() {
        let a = Tensor::new(vec![3], vec![f32::NAN, f32::INFINITY, 1.0]).unwrap();
        let b = Tensor::new(vec![3], vec![f32::NAN, f32::INFINITY, 1.0005]).unwrap();
        assert!(a.allclose(&b, 1e-3, 0.0));
        assert!(!a.allclose(&b, 1e-4, 0.0));
        assert!((a.max_abs_diff(&b) - 0.0005).abs() < 1e-6);
    }

    #[test]
    fn narrow_types_cast_convert_and_wrap() {
        let f = Tensor::new(vec![6], vec![1000.0, -9.0, 7.6, f32::INFINITY, 0.3, f32::NAN]).unwrap();
        // Cast saturates float8 by default; convert (computed values) overflows to NaN.
        assert_eq!(f.cast(DType::F8E4M3FN).data()[..5], [448.0, -9.0, 7.5, 448.0, 0.3125]);
        let c = f.convert(DType::F8E4M3FN);
        assert!(c.data()[0].is_nan() && c.data()[3].is_nan() && c.data()[5].is_nan());
        let n = f.cast_with(DType::F8E5M2, false, E8m0Round::Up);
        assert_eq!(n.data()[..4], [1024.0, -8.0, 8.0, f32::INFINITY]);
        assert_eq!(f.cast(DType::F8E8M0).data()[..3], [1024.0, 16.0, 8.0]);
        assert_eq!(f.cast_with(DType::F8E8M0, true, E8m0Round::Down).data()[..3], [512.0, 8.0, 4.0]);
        // Floats to 4- and 2-bit integers truncate, out of range (and NaN) is 0.
        assert_eq!(f.cast(DType::I4).as_i64().unwrap(), &[0, 0, 7, 0, 0, 0]);
        // Integers wrap.
        let i = Tensor::from_i64(DType::I64, vec![4], vec![-9, 8, 15, 300]).unwrap();
        assert_eq!(i.cast(DType::I4).as_i64().unwrap(), &[7, -8, -1, -4]);
        assert_eq!(i.cast(DType::U4).as_i64().unwrap(), &[7, 8, 15, 12]);
        assert_eq!(i.cast(DType::I2).as_i64().unwrap(), &[-1, 0, -1, 0]);
        assert_eq!(i.cast(DType::U2).as_i64().unwrap(), &[3, 0, 3, 0]);
        assert_eq!(
            (DType::F4E2M1.packed_bytes(5), DType::U2.packed_bytes(5), DType::F8E5M2.packed_bytes(5)),
            (3, 2, 5)
        );
        // Values of a type are held unchanged by convert (idempotent rounding).
        let e = Tensor::from_f32(DType::F8E5M2, vec![3], vec![f32::INFINITY, 57344.0, -0.0]).unwrap();
        assert_eq!(e.convert(DType::F8E5M2), e);
    }

    #[test]
    fn names_parse_back() {
        for d in DType::ALL {
            assert_eq!(DType::parse(d.name()), Some(d));
            assert_eq!(DType::from_onnx(d.onnx_code()), Some(d));
        }
        assert_eq!(DType::onnx_name(17), "float8e4m3fn");
    }
}
