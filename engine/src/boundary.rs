//! Boundary tensors: what one pipeline stage hands to the next.
//!
//! Float tensors crossing a cut travel as fp16 by default (half the bytes on the wire; PPipe
//! measured an accuracy loss of 0.00-0.01 %), fp32 on request; integer and bool tensors
//! travel as the int32 words the device holds them in. A [`Boundary`] holds a tensor
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
use crate::tensor::{DType, Tensor, numel};

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
    /// 32-bit integer words, 4 bytes an element: integer and bool tensors (bools 0 or 1;
    /// int64 values within the int32 range).
    #[serde(rename = "int32")]
    I32,
}

impl Precision {
    /// Bytes per element.
    pub fn bytes_per_element(self) -> usize {
        match self {
            Precision::F16 => 2,
            Precision::F32 | Precision::I32 => 4,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F16 => "fp16",
            Precision::F32 => "fp32",
            Precision::I32 => "int32",
        })
    }
}

/// The precision chosen for float boundary tensors (on the command line): fp16 or fp32;
/// integer tensors always travel as int32.
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

pub use crate::half::{f16_to_f32, f32_to_f16};

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
    /// Encodes a tensor (fp16 rounding on the CPU when asked; integers wrapped to 32 bits).
    pub fn from_tensor(name: &str, t: &Tensor, precision: Precision) -> Boundary {
        let bytes = match precision {
            Precision::F32 => match t.as_f32() {
                Some(v) => bytemuck::cast_slice(v).to_vec(),
                None => bytemuck::cast_slice(&t.to_f32s()).to_vec(),
            },
            Precision::F16 => t.to_f32s().iter().flat_map(|&x| f32_to_f16(x).to_le_bytes()).collect(),
            Precision::I32 => t.to_i64s().iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
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

    /// Decodes to a tensor: float32 for fp16/fp32, int32 for int32 words.
    pub fn to_tensor(&self) -> Result<Tensor> {
        self.validate()?;
        match self.precision {
            Precision::F32 => Tensor::new(
                self.shape.clone(),
                self.bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            ),
            Precision::F16 => Tensor::new(
                self.shape.clone(),
                self.bytes.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
            ),
            Precision::I32 => Tensor::from_i64(
                DType::I32,
                self.shape.clone(),
                self.bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            ),
        }
    }

    /// Decodes to a tensor of the given element type (the type of the model value it
    /// carries: float types from fp16/fp32, integer and bool types from int32 words).
    pub fn to_tensor_as(&self, dtype: DType) -> Result<Tensor> {
        let t = self.to_tensor()?;
        if dtype.is_float() != (self.precision != Precision::I32) {
            return Err(EngineError::Boundary {
                tensor: self.name.clone(),
                reason: format!("a {dtype} tensor cannot travel as {}", self.precision),
            });
        }
        Ok(if t.dtype() == dtype { t } else { t.convert(dtype) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let i = Tensor::from_i64(DType::I64, vec![3], vec![-1, 0, 7]).unwrap();
        let bi = Boundary::from_tensor("i", &i, Precision::I32);
        assert_eq!(bi.to_tensor_as(DType::I64).unwrap(), i);
        assert!(bi.to_tensor_as(DType::F32).is_err());
    }
}
