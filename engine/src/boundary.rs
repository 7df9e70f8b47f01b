//! Boundary tensors: what one pipeline stage hands to the next.
//!
//! Tensors crossing a cut travel as fp16 by default (half the bytes on the wire; PPipe
//! measured an accuracy loss of 0.00-0.01 %), fp32 on request. A [`Boundary`] holds a tensor
//! in its wire form: name, shape (batch first), precision and little-endian bytes, fp16
//! values packed two per 32-bit word exactly as the GPU's `pack2x16float` writes them, so a
//! stage can upload received bytes as they are and the GPU unpacks them
//! ([`crate::gpu::CompiledGraph::run_boundary`]).
//!
//! Conversions round to nearest, ties to even; finite values beyond the fp16 range
//! (|x| > 65504) are clamped to ±65504 on the CPU and on the GPU alike. Activations of CNNs
//! stay far inside that range; a value clamped there was already meaningless in fp16.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::tensor::{Tensor, numel};

/// Element precision of a boundary tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Precision {
    /// IEEE binary16, 2 bytes an element (the default across cuts).
    #[default]
    #[serde(rename = "fp16")]
    F16,
    /// IEEE binary32, 4 bytes an element.
    #[serde(rename = "fp32")]
    F32,
}

impl Precision {
    /// Bytes per element.
    pub fn bytes_per_element(self) -> usize {
        match self {
            Precision::F16 => 2,
            Precision::F32 => 4,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F16 => "fp16",
            Precision::F32 => "fp32",
        })
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" | "fp16" | "half" => Ok(Precision::F16),
            "f32" | "fp32" | "float" => Ok(Precision::F32),
            _ => Err(format!("unknown precision '{s}': use fp16 or fp32")),
        }
    }
}

/// Largest finite fp16 value.
pub const F16_MAX: f32 = 65504.0;

/// Rounds `v >> shift` to nearest, ties to even.
fn round_shift(v: u32, shift: u32) -> u32 {
    let q = v >> shift;
    let rem = v & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if rem > half || (rem == half && q & 1 == 1) { q + 1 } else { q }
}

/// fp32 to fp16 bits: round to nearest even, finite values clamped to ±65504, infinities
/// kept, NaN kept as a quiet NaN.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | if man != 0 { 0x7e00 } else { 0x7c00 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7bff;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // Subnormal: units of 2^-24.
        let m = man | 0x80_0000;
        return sign | round_shift(m, (14 - e) as u32) as u16;
    }
    let h = round_shift(((e as u32) << 23) | man, 13);
    // A carry into the exponent may reach infinity: clamp like the GPU does.
    sign | h.min(0x7bff) as u16
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

/// A tensor in its wire form between two stages.
#[derive(Clone, PartialEq)]
pub struct Boundary {
    /// Name of the tensor in the model (stages connect by name).
    pub name: String,
    /// Shape, batch first.
    pub shape: Vec<usize>,
    /// Element precision of `bytes`.
    pub precision: Precision,
    /// Little-endian elements: `numel(shape) * precision.bytes_per_element()` bytes.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Boundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Boundary")
            .field("name", &self.name)
            .field("shape", &self.shape)
            .field("precision", &self.precision)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Boundary {
    /// Encodes a tensor (fp16 rounding on the CPU when asked).
    pub fn from_tensor(name: &str, t: &Tensor, precision: Precision) -> Boundary {
        let bytes = match precision {
            Precision::F32 => bytemuck::cast_slice(t.data()).to_vec(),
            Precision::F16 => t.data().iter().flat_map(|&x| f32_to_f16(x).to_le_bytes()).collect(),
        };
        Boundary { name: name.to_string(), shape: t.shape().to_vec(), precision, bytes }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Checks that the byte length matches the shape and precision.
    pub fn validate(&self) -> Result<()> {
        let want = self.numel() * self.precision.bytes_per_element();
        if self.bytes.len() != want {
            return Err(EngineError::Boundary {
                tensor: self.name.clone(),
                reason: format!(
                    "{} bytes for shape {:?} in {} (expected {want})",
                    self.bytes.len(),
                    self.shape,
                    self.precision
                ),
            });
        }
        Ok(())
    }

    /// Decodes to an f32 tensor.
    pub fn to_tensor(&self) -> Result<Tensor> {
        self.validate()?;
        let data: Vec<f32> = match self.precision {
            Precision::F32 => {
                self.bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
            Precision::F16 => {
                self.bytes.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()
            }
        };
        Tensor::new(self.shape.clone(), data)
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
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(1e6), 0x7bff, "finite overflow clamps");
        assert_eq!(f32_to_f16(-1e6), 0xfbff);
        assert_eq!(f32_to_f16(f32::INFINITY), 0x7c00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001, "smallest subnormal");
        assert_eq!(f32_to_f16(2.0e-8), 0x0000, "below half the smallest subnormal");
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x0400), 6.103_515_6e-5, "smallest normal");
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
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
    fn boundary_encodes_and_checks_lengths() {
        let t = Tensor::new(vec![1, 3], vec![1.0, -0.5, 3.0]).unwrap();
        let b = Boundary::from_tensor("x", &t, Precision::F16);
        assert_eq!(b.bytes.len(), 6);
        assert_eq!(b.to_tensor().unwrap(), t);
        let b32 = Boundary::from_tensor("x", &t, Precision::F32);
        assert_eq!(b32.bytes.len(), 12);
        assert_eq!(b32.to_tensor().unwrap(), t);
        let mut bad = b.clone();
        bad.bytes.pop();
        let e = bad.to_tensor().unwrap_err().to_string();
        assert!(e.contains("'x'") && e.contains("5 bytes") && e.contains("expected 6"), "{e}");
        assert_eq!("fp32".parse::<Precision>().unwrap(), Precision::F32);
        assert!("int8".parse::<Precision>().unwrap_err().contains("fp16 or fp32"));
    }
}
