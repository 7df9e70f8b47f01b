//! Elementwise operations: functions of one value ([`Activation`], also fused into the
//! write-back of convolutions and matrix products), binary operations with numpy
//! broadcasting ([`BinaryOp`]), float classification, logical not and `Where`, and the
//! bitwise operations on integers (`BitwiseAnd`/`Or`/`Xor`, `BitShift`, `BitwiseNot`).

use super::{Check, In, Infer, Op, broadcast};
use crate::tensor::DType;

/// A function of one value: an activation (standalone or fused into the write-back of a
/// conv or matmul) or an elementwise math function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// max(x, 0)
    Relu,
    /// x if x >= 0 else alpha * x
    LeakyRelu {
        /// Slope for negative inputs.
        alpha: f32,
    },
    /// min(max(x, min), max); ReLU6 is Clip { 0, 6 }.
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// 1 / (1 + exp(-x))
    Sigmoid,
    /// max(0, min(1, alpha * x + beta))
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// x * max(0, min(1, x / 6 + 1/2))
    HardSwish,
    /// x * sigmoid(x)
    Silu,
    /// GELU: x * Phi(x) with the exact erf form, or the tanh approximation.
    Gelu {
        /// Use the tanh approximation (ONNX `approximate="tanh"`).
        tanh_approx: bool,
    },
    /// tanh(x)
    Tanh,
    /// erf(x) (the error function; ONNX Erf)
    Erf,
    /// |x|
    Abs,
    /// -x
    Neg,
    /// e^x
    Exp,
    /// ln(x)
    Log,
    /// sqrt(x)
    Sqrt,
    /// 1 / x
    Reciprocal,
    /// floor(x)
    Floor,
    /// ceil(x)
    Ceil,
    /// x rounded to the nearest integer, halves to even
    Round,
    /// -1, 0 or 1 (0 for NaN as ONNX; NaN stays NaN)
    Sign,
    /// sin(x)
    Sin,
    /// cos(x)
    Cos,
    /// tan(x)
    Tan,
    /// asin(x)
    Asin,
    /// acos(x)
    Acos,
    /// atan(x)
    Atan,
    /// sinh(x)
    Sinh,
    /// cosh(x)
    Cosh,
    /// asinh(x)
    Asinh,
    /// acosh(x)
    Acosh,
    /// atanh(x)
    Atanh,
    /// x if x > 0 else alpha * (e^x - 1)
    Elu {
        /// Scale of the negative part.
        alpha: f32,
    },
    /// gamma * (x if x > 0 else alpha * (e^x - 1))
    Selu {
        /// Scale of the negative part.
        alpha: f32,
        /// Overall scale.
        gamma: f32,
    },
    /// max(0, x) + min(0, alpha * (e^(x / alpha) - 1))
    Celu {
        /// Scale.
        alpha: f32,
    },
    /// ln(1 + e^x)
    Softplus,
    /// x / (1 + |x|)
    Softsign,
    /// x * tanh(softplus(x))
    Mish,
    /// x if x > alpha else 0
    ThresholdedRelu {
        /// Threshold.
        alpha: f32,
    },
    /// x - bias if x > lambd, x + bias if x < -lambd, else 0
    Shrink {
        /// Threshold.
        lambd: f32,
        /// Shift.
        bias: f32,
    },
    /// x * sigmoid(alpha * x)
    Swish {
        /// Scale inside the sigmoid.
        alpha: f32,
    },
}

impl Activation {
    /// Kernel code of the activation (the `ACT` override constant of the shaders) and its two
    /// parameters.
    pub fn code(&self) -> (u32, f32, f32) {
        use Activation::*;
        match *self {
            Relu => (1, 0.0, 0.0),
            LeakyRelu { alpha } => (2, alpha, 0.0),
            Clip { min, max } => (3, min, max),
            Sigmoid => (4, 0.0, 0.0),
            HardSigmoid { alpha, beta } => (5, alpha, beta),
            HardSwish => (6, 0.0, 0.0),
            Silu => (7, 0.0, 0.0),
            Gelu { tanh_approx: false } => (8, 0.0, 0.0),
            Gelu { tanh_approx: true } => (9, 0.0, 0.0),
            Tanh => (10, 0.0, 0.0),
            Erf => (11, 0.0, 0.0),
            Abs => (12, 0.0, 0.0),
            Neg => (13, 0.0, 0.0),
            Exp => (14, 0.0, 0.0),
            Log => (15, 0.0, 0.0),
            Sqrt => (16, 0.0, 0.0),
            Reciprocal => (17, 0.0, 0.0),
            Floor => (18, 0.0, 0.0),
            Ceil => (19, 0.0, 0.0),
            Round => (20, 0.0, 0.0),
            Sign => (21, 0.0, 0.0),
            Sin => (22, 0.0, 0.0),
            Cos => (23, 0.0, 0.0),
            Tan => (24, 0.0, 0.0),
            Asin => (25, 0.0, 0.0),
            Acos => (26, 0.0, 0.0),
            Atan => (27, 0.0, 0.0),
            Sinh => (28, 0.0, 0.0),
            Cosh => (29, 0.0, 0.0),
            Asinh => (30, 0.0, 0.0),
            Acosh => (31, 0.0, 0.0),
            Atanh => (32, 0.0, 0.0),
            Elu { alpha } => (33, alpha, 0.0),
            Selu { alpha, gamma } => (34, alpha, gamma),
            Celu { alpha } => (35, alpha, 0.0),
            Softplus => (36, 0.0, 0.0),
            Softsign => (37, 0.0, 0.0),
            Mish => (38, 0.0, 0.0),
            ThresholdedRelu { alpha } => (39, alpha, 0.0),
            Shrink { lambd, bias } => (40, lambd, bias),
            Swish { alpha } => (41, alpha, 0.0),
        }
    }

    /// Applies the function to one value in f64 (the CPU reference's definition).
    pub fn apply_f64(&self, xd: f64) -> f64 {
        use Activation::*;
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        let softplus = |v: f64| if v > 30.0 { v } else { v.exp().ln_1p() };
        match *self {
            Relu => xd.max(0.0),
            LeakyRelu { alpha } => {
                if xd >= 0.0 {
                    xd
                } else {
                    alpha as f64 * xd
                }
            }
            Clip { min, max } => xd.max(min as f64).min(max as f64),
            Sigmoid => sigmoid(xd),
            HardSigmoid { alpha, beta } => (alpha as f64 * xd + beta as f64).clamp(0.0, 1.0),
            HardSwish => xd * (xd / 6.0 + 0.5).clamp(0.0, 1.0),
            Silu => xd * sigmoid(xd),
            Gelu { tanh_approx: false } => 0.5 * xd * (1.0 + libm::erf(xd / std::f64::consts::SQRT_2)),
            Gelu { tanh_approx: true } => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * xd * (1.0 + (c * (xd + 0.044715 * xd * xd * xd)).tanh())
            }
            Tanh => xd.tanh(),
            Erf => libm::erf(xd),
            Abs => xd.abs(),
            Neg => -xd,
            Exp => xd.exp(),
            Log => xd.ln(),
            Sqrt => xd.sqrt(),
            Reciprocal => 1.0 / xd,
            Floor => xd.floor(),
            Ceil => xd.ceil(),
            Round => xd.round_ties_even(),
            Sign => {
                if xd.is_nan() {
                    xd
                } else if xd > 0.0 {
                    1.0
                } else if xd < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Sin => xd.sin(),
            Cos => xd.cos(),
            Tan => xd.tan(),
            Asin => xd.asin(),
            Acos => xd.acos(),
            Atan => xd.atan(),
            Sinh => xd.sinh(),
            Cosh => xd.cosh(),
            Asinh => xd.asinh(),
            Acosh => xd.acosh(),
            Atanh => xd.atanh(),
            Elu { alpha } => {
                if xd > 0.0 {
                    xd
                } else {
                    alpha as f64 * (xd.exp() - 1.0)
                }
            }
            Selu { alpha, gamma } => gamma as f64 * if xd > 0.0 { xd } else { alpha as f64 * (xd.exp() - 1.0) },
            Celu { alpha } => {
                let a = alpha as f64;
                xd.max(0.0) + (a * ((xd / a).exp() - 1.0)).min(0.0)
            }
            Softplus => softplus(xd),
            Softsign => xd / (1.0 + xd.abs()),
            Mish => xd * softplus(xd).tanh(),
            ThresholdedRelu { alpha } => {
                if xd > alpha as f64 {
                    xd
                } else {
                    0.0
                }
            }
            Shrink { lambd, bias } => {
                let (l, b) = (lambd as f64, bias as f64);
                if xd < -l {
                    xd + b
                } else if xd > l {
                    xd - b
                } else {
                    0.0
                }
            }
            Swish { alpha } => xd * sigmoid(alpha as f64 * xd),
        }
    }

    /// Applies the function to one f32 value.
    pub fn apply(&self, x: f32) -> f32 {
        self.apply_f64(x as f64) as f32
    }

    /// True for the functions defined on integers too (`Abs`, `Neg`, `Sign`, `Relu`,
    /// `Clip`).
    pub fn on_integers(&self) -> bool {
        matches!(
            self,
            Activation::Abs | Activation::Neg | Activation::Sign | Activation::Relu | Activation::Clip { .. }
        )
    }

    /// Applies the function to an integer (for [`Activation::on_integers`] functions).
    pub fn apply_int(&self, x: i64) -> i64 {
        match *self {
            Activation::Abs => x.wrapping_abs(),
            Activation::Neg => x.wrapping_neg(),
            Activation::Sign => x.signum(),
            Activation::Relu => x.max(0),
            Activation::Clip { min, max } => {
                let lo = if min.is_finite() { min as i64 } else { i64::MIN };
                let hi = if max.is_finite() { max as i64 } else { i64::MAX };
                x.max(lo).min(hi)
            }
            _ => x,
        }
    }

    /// Short name for messages (the ONNX op type).
    pub fn name(&self) -> &'static str {
        use Activation::*;
        match self {
            Relu => "Relu",
            LeakyRelu { .. } => "LeakyRelu",
            Clip { .. } => "Clip",
            Sigmoid => "Sigmoid",
            HardSigmoid { .. } => "HardSigmoid",
            HardSwish => "HardSwish",
            Silu => "Silu",
            Gelu { .. } => "Gelu",
            Tanh => "Tanh",
            Erf => "Erf",
            Abs => "Abs",
            Neg => "Neg",
            Exp => "Exp",
            Log => "Log",
            Sqrt => "Sqrt",
            Reciprocal => "Reciprocal",
            Floor => "Floor",
            Ceil => "Ceil",
            Round => "Round",
            Sign => "Sign",
            Sin => "Sin",
            Cos => "Cos",
            Tan => "Tan",
            Asin => "Asin",
            Acos => "Acos",
            Atan => "Atan",
            Sinh => "Sinh",
            Cosh => "Cosh",
            Asinh => "Asinh",
            Acosh => "Acosh",
            Atanh => "Atanh",
            Elu { .. } => "Elu",
            Selu { .. } => "Selu",
            Celu { .. } => "Celu",
            Softplus => "Softplus",
            Softsign => "Softsign",
            Mish => "Mish",
            ThresholdedRelu { .. } => "ThresholdedRelu",
            Shrink { .. } => "Shrink",
            Swish { .. } => "Swish",
        }
    }
}

/// Elementwise binary operation with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b (integers: truncated toward zero; division by zero gives 0)
    Div,
    /// a ^ b (the exponent may have another type)
    Pow,
    /// Remainder: with the divisor's sign (Python), or the dividend's (`fmod`, C).
    Mod {
        /// C fmod semantics.
        fmod: bool,
    },
    /// max(a, b) (NaN if either is)
    Max,
    /// min(a, b) (NaN if either is)
    Min,
    /// a if a >= 0 else b * a (PRelu with slope b)
    PRelu,
    /// a == b (bool)
    Equal,
    /// a < b (bool)
    Less,
    /// a <= b (bool)
    LessOrEqual,
    /// a > b (bool)
    Greater,
    /// a >= b (bool)
    GreaterOrEqual,
    /// a and b (bools)
    And,
    /// a or b (bools)
    Or,
    /// a xor b (bools)
    Xor,
    /// a & b (integers, bit by bit)
    BitwiseAnd,
    /// a | b (integers, bit by bit)
    BitwiseOr,
    /// a ^ b (integers, bit by bit)
    BitwiseXor,
    /// a shifted by b bits (integers): left, or right (arithmetic for signed types, logical
    /// for unsigned ones). A shift below 0 or at least the type's width gives what the sign
    /// fill alone gives: -1 for a right shift of a negative value, else 0.
    BitShift {
        /// Toward the high bits.
        left: bool,
    },
}

impl BinaryOp {
    /// Kernel code (the `OP` override constant).
    pub fn code(&self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
            BinaryOp::Pow => 4,
            BinaryOp::Mod { fmod: false } => 5,
            BinaryOp::Mod { fmod: true } => 6,
            BinaryOp::Max => 7,
            BinaryOp::Min => 8,
            BinaryOp::PRelu => 9,
            BinaryOp::Equal => 10,
            BinaryOp::Less => 11,
            BinaryOp::LessOrEqual => 12,
            BinaryOp::Greater => 13,
            BinaryOp::GreaterOrEqual => 14,
            BinaryOp::And => 15,
            BinaryOp::Or => 16,
            BinaryOp::Xor => 17,
            BinaryOp::BitwiseAnd => 18,
            BinaryOp::BitwiseOr => 19,
            BinaryOp::BitwiseXor => 20,
            BinaryOp::BitShift { left: false } => 21,
            BinaryOp::BitShift { left: true } => 22,
        }
    }

    /// The ONNX op type.
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Pow => "Pow",
            BinaryOp::Mod { .. } => "Mod",
            BinaryOp::Max => "Max",
            BinaryOp::Min => "Min",
            BinaryOp::PRelu => "PRelu",
            BinaryOp::Equal => "Equal",
            BinaryOp::Less => "Less",
            BinaryOp::LessOrEqual => "LessOrEqual",
            BinaryOp::Greater => "Greater",
            BinaryOp::GreaterOrEqual => "GreaterOrEqual",
            BinaryOp::And => "And",
            BinaryOp::Or => "Or",
            BinaryOp::Xor => "Xor",
            BinaryOp::BitwiseAnd => "BitwiseAnd",
            BinaryOp::BitwiseOr => "BitwiseOr",
            BinaryOp::BitwiseXor => "BitwiseXor",
            BinaryOp::BitShift { .. } => "BitShift",
        }
    }

    /// True for comparisons (bool results from any type).
    pub fn is_comparison(&self) -> bool {
        matches!(
            self,
            BinaryOp::Equal | BinaryOp::Less | BinaryOp::LessOrEqual | BinaryOp::Greater | BinaryOp::GreaterOrEqual
        )
    }

    /// True for the logical operations (bool operands).
    pub fn is_logical(&self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }

    /// True for the bitwise operations (integer operands, not bool).
    pub fn is_bitwise(&self) -> bool {
        matches!(self, BinaryOp::BitwiseAnd | BinaryOp::BitwiseOr | BinaryOp::BitwiseXor | BinaryOp::BitShift { .. })
    }

    /// The result type for operands of type `t`.
    pub fn result_type(&self, t: DType) -> DType {
        if self.is_comparison() || self.is_logical() { DType::Bool } else { t }
    }

    /// Applies the operation to two floats (comparisons and logic give 0 or 1).
    pub fn apply_f64(&self, a: f64, b: f64) -> f64 {
        let bool = |v: bool| v as u8 as f64;
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Mod { fmod: true } => a % b,
            BinaryOp::Mod { fmod: false } => {
                let r = a % b;
                if r != 0.0 && (r < 0.0) != (b < 0.0) { r + b } else { r }
            }
            BinaryOp::Max => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            }
            BinaryOp::Min => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.min(b)
                }
            }
            BinaryOp::PRelu => {
                if a < 0.0 {
                    a * b
                } else {
                    a
                }
            }
            BinaryOp::Equal => bool(a == b),
            BinaryOp::Less => bool(a < b),
            BinaryOp::LessOrEqual => bool(a <= b),
            BinaryOp::Greater => bool(a > b),
            BinaryOp::GreaterOrEqual => bool(a >= b),
            BinaryOp::And => bool(a != 0.0 && b != 0.0),
            BinaryOp::Or => bool(a != 0.0 || b != 0.0),
            BinaryOp::Xor => bool((a != 0.0) != (b != 0.0)),
            BinaryOp::BitwiseAnd | BinaryOp::BitwiseOr | BinaryOp::BitwiseXor | BinaryOp::BitShift { .. } => {
                self.apply_i64(a as i64, b as i64) as f64
            }
        }
    }

    /// Applies the operation to two integers (wrapping; division and remainder by zero give
    /// 0; comparisons and logic give 0 or 1).
    pub fn apply_i64(&self, a: i64, b: i64) -> i64 {
        match self {
            BinaryOp::Add => a.wrapping_add(b),
            BinaryOp::Sub => a.wrapping_sub(b),
            BinaryOp::Mul => a.wrapping_mul(b),
            BinaryOp::Div => {
                if b == 0 {
                    0
                } else {
                    a.wrapping_div(b)
                }
            }
            BinaryOp::Pow => {
                if b < 0 {
                    match a {
                        1 => 1,
                        -1 => {
                            if b % 2 == 0 {
                                1
                            } else {
                                -1
                            }
                        }
                        _ => 0,
                    }
                } else {
                    a.wrapping_pow(b.min(u32::MAX as i64) as u32)
                }
            }
            BinaryOp::Mod { fmod } => {
                if b == 0 {
                    0
                } else {
                    let r = a.wrapping_rem(b);
                    if !fmod && r != 0 && (r < 0) != (b < 0) { r + b } else { r }
                }
            }
            BinaryOp::Max => a.max(b),
            BinaryOp::Min => a.min(b),
            BinaryOp::PRelu => {
                if a < 0 {
                    a.wrapping_mul(b)
                } else {
                    a
                }
            }
            BinaryOp::Equal => (a == b) as i64,
            BinaryOp::Less => (a < b) as i64,
            BinaryOp::LessOrEqual => (a <= b) as i64,
            BinaryOp::Greater => (a > b) as i64,
            BinaryOp::GreaterOrEqual => (a >= b) as i64,
            BinaryOp::And => (a != 0 && b != 0) as i64,
            BinaryOp::Or => (a != 0 || b != 0) as i64,
            BinaryOp::Xor => ((a != 0) != (b != 0)) as i64,
            BinaryOp::BitwiseAnd => a & b,
            BinaryOp::BitwiseOr => a | b,
            BinaryOp::BitwiseXor => a ^ b,
            BinaryOp::BitShift { left } => shift(a, b, 64, true, *left),
        }
    }

    /// [`BinaryOp::apply_i64`] on values of the integer type `t` (shifts by its width and
    /// signedness); the caller wraps the result into the type.
    pub fn apply_typed(&self, a: i64, b: i64, t: DType) -> i64 {
        match self {
            BinaryOp::BitShift { left } => shift(a, b, t.size() * 8, is_signed(t), *left),
            _ => self.apply_i64(a, b),
        }
    }
}

/// True for the signed integer types.
pub(crate) fn is_signed(t: DType) -> bool {
    matches!(t, DType::I8 | DType::I16 | DType::I32 | DType::I64)
}

/// `x` shifted by `s` bits in a `bits`-wide type (`x` holds the type's value; an unsigned
/// 64-bit value is its bit pattern). Out-of-range shifts give the sign fill alone.
fn shift(x: i64, s: i64, bits: usize, signed: bool, left: bool) -> i64 {
    let negative = if signed { x < 0 } else { false };
    if s < 0 || s >= bits as i64 {
        return if !left && negative { -1 } else { 0 };
    }
    if left {
        ((x as u64) << s) as i64
    } else if signed {
        x >> s
    } else {
        // Unsigned: a logical shift of the type's bits (a uint64's bit pattern).
        let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        (((x as u64) & mask) >> s) as i64
    }
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    match op {
        Op::Binary { op: b, activation } => {
            c.arity(2, 2)?;
            let t = c.dtype(0);
            if *b != BinaryOp::Pow {
                c.same_types(0)?;
            }
            if b.is_logical() && t != DType::Bool {
                return Err(format!("operands must be bool, they are {t}"));
            }
            if b.is_bitwise() && !t.is_int() {
                return Err(format!("{} takes integer operands, they are {t}", b.name()));
            }
            if !b.is_logical() && t == DType::Bool && *b != BinaryOp::Equal {
                return Err("operands must be numbers, they are bool".into());
            }
            let rt = b.result_type(t);
            if activation.is_some() && !rt.is_float() {
                return Err(format!("a fused activation needs a float result, not {rt}"));
            }
            let out = broadcast(c.shape(0), c.shape(1))?;
            Ok(vec![(rt, out)])
        }
        Op::Unary(a) => {
            c.arity(1, 1)?;
            let t = c.dtype(0);
            if !(t.is_float() || t.is_int() && a.on_integers()) {
                return Err(format!("{} of a {t} tensor is not defined; it takes floats", a.name()));
            }
            Ok(vec![(t, c.shape(0).to_vec())])
        }
        Op::IsNaN | Op::IsInf { .. } => {
            c.arity(1, 1)?;
            c.need_float(0, "input")?;
            Ok(vec![(DType::Bool, c.shape(0).to_vec())])
        }
        Op::Not => {
            c.arity(1, 1)?;
            if c.dtype(0) != DType::Bool {
                return Err(format!("input must be bool, it is {}", c.dtype(0)));
            }
            Ok(vec![(DType::Bool, c.shape(0).to_vec())])
        }
        Op::Where => {
            c.arity(3, 3)?;
            if c.dtype(0) != DType::Bool {
                return Err(format!("the condition must be bool, it is {}", c.dtype(0)));
            }
            let t = c.same_types(1)?;
            let out = broadcast(&broadcast(c.shape(0), c.shape(1))?, c.shape(2))?;
            Ok(vec![(t, out)])
        }
        Op::BitwiseNot => {
            c.arity(1, 1)?;
            if !c.dtype(0).is_int() {
                return Err(format!("BitwiseNot takes an integer tensor, it is {}", c.dtype(0)));
            }
            Ok(vec![(c.dtype(0), c.shape(0).to_vec())])
        }
        _ => unreachable!("elementwise family"),
    }
}
