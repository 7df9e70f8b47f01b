//! The crate's one place for narrow floats: IEEE binary16 (fp16) and bfloat16, and ONNX's
//! 8- and 4-bit floats (float8e4m3fn, float8e4m3fnuz, float8e5m2, float8e5m2fnuz,
//! float8e8m0, float4e2m1).
//!
//! fp16 rounding is to nearest, ties to even. Two overflow rules exist and each caller names
//! the one it wants: [`f32_to_f16`] saturates finite values beyond ±65504 to ±65504 (the
//! rule of boundary tensors between stages, the same as the GPU's packing), while
//! [`f32_to_f16_ieee`] gives ±infinity as IEEE and numpy do (the rule of a `Cast` to
//! float16 and of float16 tensors in model files).
//!
//! The 8- and 4-bit floats ([`MiniFloat`]) also round to nearest, ties to even, with
//! subnormals. Their overflow rule is ONNX's `saturate` attribute: saturating, a value beyond
//! the largest finite one (infinity included) becomes ±that value; not saturating, it becomes
//! infinity where the type has one (float8e5m2) and NaN elsewhere. float4e2m1 has neither
//! infinity nor NaN: it always saturates, and NaN becomes 0. float8e8m0 ([`e8m0_from_f32`])
//! holds powers of two only, rounded as ONNX's `round_mode` says.

/// Rounds `v >> shift` to nearest, ties to even.
fn round_shift(v: u32, shift: u32) -> u32 {
    let q = v >> shift;
    let rem = v & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if rem > half || (rem == half && q & 1 == 1) { q + 1 } else { q }
}

fn to_f16(x: f32, saturate: bool) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        // Infinity stays infinity; NaN becomes a quiet NaN.
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let overflow = if saturate { 0x7bff } else { 0x7c00 };
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | overflow;
    }
    if e <= 0 {
        // Subnormal or zero in fp16.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        return sign | round_shift(m, shift) as u16;
    }
    let r = round_shift(man, 13);
    let bits = ((e as u32) << 10) + r; // a mantissa carry bumps the exponent
    if bits >= 0x7c00 {
        return sign | overflow;
    }
    sign | bits as u16
}

/// fp32 to fp16 bits: round to nearest even, finite values clamped to ±65504, infinities
/// kept, NaN kept as a quiet NaN (the boundary-tensor rule).
pub fn f32_to_f16(x: f32) -> u16 {
    to_f16(x, true)
}

/// fp32 to fp16 bits as IEEE 754 (and numpy) convert: round to nearest even, finite values
/// beyond the range become ±infinity.
pub fn f32_to_f16_ieee(x: f32) -> u16 {
    to_f16(x, false)
}

/// fp16 bits to fp32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: normalise.
            let shift = man.leading_zeros() - 21; // bring the top set bit to bit 10
            let m = (man << shift) & 0x3ff;
            let e = 127 - 15 + 1 - shift;
            sign | (e << 23) | (m << 13)
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// The fp16 value nearest to `x` (IEEE overflow to infinity), as fp32.
pub fn round_f16(x: f32) -> f32 {
    f16_to_f32(f32_to_f16_ieee(x))
}

/// fp32 to bfloat16 bits: round to nearest even; NaN stays NaN.
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let lsb = (b >> 16) & 1;
    ((b.wrapping_add(0x7fff + lsb)) >> 16) as u16
}

/// bfloat16 bits to fp32 (exact).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// The bfloat16 value nearest to `x`, as fp32.
pub fn round_bf16(x: f32) -> f32 {
    bf16_to_f32(f32_to_bf16(x))
}

/// How NaN and infinity are encoded in a [`MiniFloat`] type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    /// As IEEE: the top exponent holds infinity (mantissa 0) and NaNs (float8e5m2).
    Ieee,
    /// No infinity; only the code with every exponent and mantissa bit set is NaN
    /// (float8e4m3fn).
    FiniteNan,
    /// No infinity and no negative zero: the negative-zero code is the one NaN (the `fnuz`
    /// types).
    Fnuz,
    /// Neither infinity nor NaN (float4e2m1).
    Finite,
}

/// A float type of 8 bits or fewer: sign, exponent and mantissa fields, bias, specials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MiniFloat {
    exp: u32,
    man: u32,
    bias: i32,
    special: Special,
}

/// float8e4m3fn: bias 7, largest 448, NaN, no infinity.
pub const E4M3FN: MiniFloat = MiniFloat { exp: 4, man: 3, bias: 7, special: Special::FiniteNan };
/// float8e4m3fnuz: bias 8, largest 240, one NaN (0x80), no infinity, no negative zero.
pub const E4M3FNUZ: MiniFloat = MiniFloat { exp: 4, man: 3, bias: 8, special: Special::Fnuz };
/// float8e5m2: IEEE-like, bias 15, largest 57344, infinities and NaNs.
pub const E5M2: MiniFloat = MiniFloat { exp: 5, man: 2, bias: 15, special: Special::Ieee };
/// float8e5m2fnuz: bias 16, largest 57344, one NaN (0x80), no infinity, no negative zero.
pub const E5M2FNUZ: MiniFloat = MiniFloat { exp: 5, man: 2, bias: 16, special: Special::Fnuz };
/// float4e2m1: bias 1, largest 6, no infinity, no NaN.
pub const E2M1: MiniFloat = MiniFloat { exp: 2, man: 1, bias: 1, special: Special::Finite };

/// 2^e as f64 (exact for the exponents used here).
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

impl MiniFloat {
    fn sign_bit(self) -> u8 {
        1 << (self.exp + self.man)
    }

    /// The largest finite value.
    pub fn max(self) -> f32 {
        let top = (1i32 << self.exp) - 1; // the all-ones exponent field
        let (e, m) = match self.special {
            Special::Ieee => (top - 1, (1u32 << self.man) - 1),
            Special::FiniteNan => (top, (1u32 << self.man) - 2),
            Special::Fnuz | Special::Finite => (top, (1u32 << self.man) - 1),
        };
        (((1u32 << self.man) + m) as f64 * pow2(e - self.bias - self.man as i32)) as f32
    }

    /// The code of the largest finite value, without sign.
    fn max_code(self) -> u8 {
        self.code_of(self.max() as f64)
    }

    fn nan_code(self, negative: bool) -> u8 {
        let sign = if negative { self.sign_bit() } else { 0 };
        match self.special {
            Special::Ieee => sign | (((1u8 << self.exp) - 1) << self.man) | (1 << (self.man - 1)),
            Special::FiniteNan => sign | ((1u8 << (self.exp + self.man)) - 1),
            Special::Fnuz => 0x80,
            Special::Finite => 0,
        }
    }

    /// The code of a non-negative value already on the type's grid and within its range.
    fn code_of(self, a: f64) -> u8 {
        if a == 0.0 {
            return 0;
        }
        let e = self.exponent_of(a);
        let m = (a / pow2(e - self.man as i32)) as i32;
        (((e + self.bias - 1) << self.man) + m) as u8
    }

    /// The exponent of a's quantum: floor(log2 a), at least the smallest normal exponent.
    fn exponent_of(self, a: f64) -> i32 {
        let e = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        e.max(1 - self.bias)
    }

    /// The code nearest to `x` (ties to even) with ONNX's `saturate` rule for values beyond
    /// the range (see the module doc).
    pub fn encode(self, x: f32, saturate: bool) -> u8 {
        let negative = x.is_sign_negative();
        let sign = if negative { self.sign_bit() } else { 0 };
        if x.is_nan() {
            return self.nan_code(negative);
        }
        let overflow = || {
            if saturate || self.special == Special::Finite {
                sign | self.max_code()
            } else if self.special == Special::Ieee {
                sign | (((1u8 << self.exp) - 1) << self.man)
            } else {
                self.nan_code(negative)
            }
        };
        let a = (x as f64).abs();
        if a.is_infinite() {
            return overflow();
        }
        if a == 0.0 {
            return if self.special == Special::Fnuz { 0 } else { sign };
        }
        let q = pow2(self.exponent_of(a) - self.man as i32);
        let r = (a / q).round_ties_even() * q;
        if r > self.max() as f64 {
            return overflow();
        }
        if r == 0.0 && self.special == Special::Fnuz {
            return 0;
        }
        sign | self.code_of(r)
    }

    /// The value of a code (exact).
    pub fn decode(self, code: u8) -> f32 {
        let bits = 1 + self.exp + self.man;
        let code = code & ((1u16 << bits) - 1) as u8;
        let negative = code & self.sign_bit() != 0;
        let e = ((code >> self.man) & ((1 << self.exp) - 1)) as i32;
        let m = (code & ((1 << self.man) - 1)) as u32;
        let top = (1i32 << self.exp) - 1;
        match self.special {
            Special::Ieee if e == top => {
                return if m == 0 { if negative { f32::NEG_INFINITY } else { f32::INFINITY } } else { f32::NAN };
            }
            Special::FiniteNan if e == top && m == (1 << self.man) - 1 => return f32::NAN,
            Special::Fnuz if code == self.sign_bit() => return f32::NAN,
            _ => {}
        }
        let v = if e == 0 {
            m as f64 * pow2(1 - self.bias - self.man as i32)
        } else {
            ((1u32 << self.man) + m) as f64 * pow2(e - self.bias - self.man as i32)
        };
        (if negative { -v } else { v }) as f32
    }

    /// `x` rounded to the type (nearest, ties to even) with the given overflow rule, as f32.
    pub fn round(self, x: f32, saturate: bool) -> f32 {
        self.decode(self.encode(x, saturate))
    }
}

/// The rounding of a conversion to float8e8m0 (ONNX `Cast`'s `round_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum E8m0Round {
    /// Up to the next power of two (away from zero): ONNX's default.
    #[default]
    Up,
    /// Down to the power of two below (toward zero).
    Down,
    /// To the nearest power of two, ties up.
    Nearest,
}

impl E8m0Round {
    /// The ONNX attribute value (`up`, `down`, `nearest`).
    pub fn parse(s: &str) -> Option<E8m0Round> {
        match s {
            "up" => Some(E8m0Round::Up),
            "down" => Some(E8m0Round::Down),
            "nearest" => Some(E8m0Round::Nearest),
            _ => None,
        }
    }
}

/// fp32 to float8e8m0 (a biased power-of-two exponent, 0xff = NaN), as ONNX converts: the
/// exponent of |x| rounded by `round`; NaN and infinity become NaN; beyond the largest value
/// (2^127) the result saturates or is NaN; zero and values below 2^-127 are 2^-127.
pub fn e8m0_from_f32(x: f32, saturate: bool, round: E8m0Round) -> u8 {
    let b = x.to_bits();
    let e = (b >> 23) & 0xff;
    if e == 0xff {
        return 0xff;
    }
    let up = match round {
        E8m0Round::Down => false,
        E8m0Round::Up => e != 0xff && b & 0x7f_ffff != 0,
        E8m0Round::Nearest => {
            let (g, r, s) = (b & 0x40_0000 != 0, b & 0x20_0000 != 0, b & 0x1f_ffff != 0);
            g && (r || s || e > 0)
        }
    };
    if up && e == 0xfe && saturate { 0xfe } else { (e + up as u32) as u8 }
}

/// float8e8m0 to fp32 (exact: 2^(code - 127), 0xff is NaN).
pub fn e8m0_to_f32(code: u8) -> f32 {
    match code {
        0xff => f32::NAN,
        0 => f32::from_bits(0x40_0000),
        c => f32::from_bits((c as u32) << 23),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finite_half_round_trips() {
        for h in 0..=u16::MAX {
            let exp = (h >> 10) & 0x1f;
            if exp == 0x1f {
                continue;
            }
            let f = f16_to_f32(h);
            assert_eq!(f32_to_f16(f), h, "half {h:#06x} = {f}");
            assert_eq!(f32_to_f16_ieee(f), h, "half {h:#06x} = {f}");
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(1e6), 0x7bff, "finite overflow clamps");
        assert_eq!(f32_to_f16(-1e6), 0xfbff);
        assert_eq!(f32_to_f16_ieee(1e6), 0x7c00, "IEEE overflow is infinity");
        assert_eq!(f32_to_f16_ieee(-1e6), 0xfc00);
        assert_eq!(f32_to_f16(f32::INFINITY), 0x7c00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001, "smallest subnormal");
        assert_eq!(f32_to_f16(2.0e-8), 0x0000, "below half the smallest subnormal");
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x0400), 6.103_515_6e-5, "smallest normal");
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn rounds_to_nearest_even() {
        // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even).
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        // Just above the halfway point rounds up.
        assert_eq!(f32_to_f16(f32::from_bits((1.0f32 + 2f32.powi(-11)).to_bits() + 1)), 0x3c01);
        // Rounding carries into the exponent: 2047.9 -> 2048.
        assert_eq!(f16_to_f32(f32_to_f16(2047.9)), 2048.0);
        // Relative error of any in-range value is at most 2^-11.
        let mut rng = crate::Rng::new(3);
        for _ in 0..10_000 {
            let x = rng.uniform(-1000.0, 1000.0);
            let y = f16_to_f32(f32_to_f16(x));
            assert!((x - y).abs() <= x.abs() * 2f32.powi(-11) + 2f32.powi(-25), "{x} -> {y}");
        }
    }

    #[test]
    fn bfloat16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1).
        assert_eq!(round_bf16(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2.0 * 2f32.powi(-7));
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn every_mini_float_code_round_trips() {
        for f in [E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, E2M1] {
            let codes = if f == E2M1 { 16 } else { 256 };
            for c in 0..codes {
                let v = f.decode(c as u8);
                if v.is_nan() {
                    continue;
                }
                assert_eq!(f.encode(v, false), c as u8, "{f:?} code {c:#04x} = {v}");
                if v.is_finite() {
                    assert_eq!(f.encode(v, true), c as u8, "{f:?} code {c:#04x} = {v}");
                }
            }
        }
    }

    #[test]
    fn float8_known_values_and_overflow_rules() {
        assert_eq!(
            (E4M3FN.max(), E4M3FNUZ.max(), E5M2.max(), E5M2FNUZ.max(), E2M1.max()),
            (448.0, 240.0, 57344.0, 57344.0, 6.0)
        );
        assert_eq!(E4M3FN.decode(0x01), 2f32.powi(-9), "smallest subnormal");
        assert!(E4M3FN.decode(0x7f).is_nan() && E4M3FNUZ.decode(0x80).is_nan() && E5M2.decode(0x7d).is_nan());
        assert_eq!(E5M2.decode(0x7c), f32::INFINITY);
        // 464 is the tie between 448 (even mantissa) and 480 (beyond the range).
        assert_eq!(E4M3FN.encode(464.0, false), 0x7e);
        assert!(E4M3FN.round(465.0, false).is_nan());
        assert_eq!(E4M3FN.round(465.0, true), 448.0);
        assert_eq!(E4M3FN.round(f32::NEG_INFINITY, true), -448.0);
        assert!(E4M3FN.round(f32::INFINITY, false).is_nan());
        assert_eq!(E5M2.round(f32::INFINITY, false), f32::INFINITY);
        assert_eq!(E5M2.round(61440.0, false), f32::INFINITY, "the tie above the largest value rounds up");
        assert_eq!(E5M2.round(61439.0, false), 57344.0);
        assert!(E5M2FNUZ.round(1e6, false).is_nan());
        // fnuz types have no negative zero.
        assert_eq!(E4M3FN.encode(-0.0, true), 0x80);
        assert_eq!(E4M3FNUZ.encode(-0.0, true), 0x00);
        assert_eq!(E4M3FNUZ.encode(-1e-9, true), 0x00);
        // float4e2m1: 0, 0.5, 1, 1.5, 2, 3, 4, 6; always saturating, NaN to 0.
        let values: Vec<f32> = (0..8).map(|c| E2M1.decode(c)).collect();
        assert_eq!(values, [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
        assert_eq!(E2M1.round(5.0, false), 4.0, "ties to the even mantissa");
        assert_eq!(E2M1.round(0.25, false), 0.0);
        assert_eq!(E2M1.round(-100.0, false), -6.0);
        assert_eq!(E2M1.round(f32::NAN, false), 0.0);
    }

    #[test]
    fn float8e8m0_rounds_as_onnx_says() {
        let e = |x: f32, sat: bool, r: E8m0Round| e8m0_to_f32(e8m0_from_f32(x, sat, r));
        assert_eq!(e(1.1, true, E8m0Round::Up), 2.0);
        assert_eq!(e(3.0, true, E8m0Round::Down), 2.0);
        assert_eq!(e(3.0, true, E8m0Round::Nearest), 4.0, "ties round up");
        assert_eq!(e(2.9, true, E8m0Round::Nearest), 2.0);
        assert_eq!(e(0.0, true, E8m0Round::Up), 2f32.powi(-127));
        assert!(e(f32::INFINITY, true, E8m0Round::Up).is_nan());
        let big = 2f32.powi(127) * 1.5;
        assert_eq!(e(big, true, E8m0Round::Up), 2f32.powi(127));
        assert!(e(big, false, E8m0Round::Up).is_nan());
        assert_eq!(E8m0Round::parse("nearest"), Some(E8m0Round::Nearest));
        assert_eq!(E8m0Round::parse("even"), None);
    }
}
