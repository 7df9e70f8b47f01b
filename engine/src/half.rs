//! The crate's one place for 16-bit floats: IEEE binary16 (fp16) and bfloat16 conversions.
//!
//! fp16 rounding is to nearest, ties to even. Two overflow rules exist and each caller names
//! the one it wants: [`f32_to_f16`] saturates finite values beyond ±65504 to ±65504 (the
//! rule of boundary tensors between stages, the same as the GPU's packing), while
//! [`f32_to_f16_ieee`] gives ±infinity as IEEE and numpy do (the rule of a `Cast` to
//! float16 and of float16 tensors in model files).

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
}
