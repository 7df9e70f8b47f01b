//! NumPy `.npy` files of float32 tensors (C order), read and written: the exchange format
//! with onnxruntime in the tests and for users' raw input and output tensors.

use std::path::Path;

use crate::error::{EngineError, Result};
use crate::tensor::Tensor;

fn bad(path: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Model { model: path.to_string(), reason: format!("not a float32 .npy file: {}", reason.into()) }
}

/// Reads a `.npy` holding float32 (`<f4`) or float64 (`<f8`, converted) values in C order.
pub fn read(path: &Path) -> Result<Tensor> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| bad(&name, format!("cannot read it: {e}")))?;
    parse(&bytes, &name)
}

/// Parses `.npy` bytes; `name` is used in errors.
pub fn parse(bytes: &[u8], name: &str) -> Result<Tensor> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(name, "missing the \\x93NUMPY magic"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(bad(name, format!("unsupported format version {v}"))),
    };
    let header = bytes.get(start..start + hlen).ok_or_else(|| bad(name, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad(name, "header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))?;
        Some(header[at + key.len() + 2..].trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr").ok_or_else(|| bad(name, "no descr"))?;
    let width = if descr.starts_with("'<f4'") || descr.starts_with("'float32'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(bad(
            name,
            format!("element type {} is not float32 or float64", descr.split(',').next().unwrap_or("")),
        ));
    };
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad(name, "Fortran order is not supported; save with C order"));
    }
    let shape_txt = field("shape").ok_or_else(|| bad(name, "no shape"))?;
    let close = shape_txt.find(')').ok_or_else(|| bad(name, "malformed shape"))?;
    let shape: Vec<usize> = shape_txt[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad(name, format!("bad dimension '{s}'"))))
        .collect::<Result<_>>()?;
    let data = &bytes[start + hlen..];
    let n: usize = shape.iter().product();
    if data.len() != n * width {
        return Err(bad(name, format!("holds {} bytes of data, shape {shape:?} needs {}", data.len(), n * width)));
    }
    let values: Vec<f32> = if width == 4 {
        data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    } else {
        data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()
    };
    Tensor::new(shape, values)
}

/// The `.npy` bytes of a tensor (float32, C order, format 1.0).
pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts at a multiple of 64 bytes, ending the header with '\n'.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in t.data() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a tensor as `.npy`.
pub fn write(path: &Path, t: &Tensor) -> Result<()> {
    std::fs::write(path, to_bytes(t))
        .map_err(|e| EngineError::Model { model: path.display().to_string(), reason: format!("cannot write it: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let t = Tensor::new(vec![2, 3], vec![1.0, -2.5, 3.0, 0.0, 1e-7, 7.0]).unwrap();
        let b = to_bytes(&t);
        assert_eq!((b.len() - t.len() * 4) % 64, 0);
        assert_eq!(parse(&b, "t").unwrap(), t);
        let v = Tensor::new(vec![4], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(parse(&to_bytes(&v), "v").unwrap(), v);
        assert!(parse(&b[..b.len() - 1], "cut").unwrap_err().to_string().contains("bytes of data"));
        assert!(parse(b"hello world", "x").unwrap_err().to_string().contains("magic"));
        let mut i8 = b.clone();
        let at = i8.windows(3).position(|w| w == b"<f4").unwrap();
        i8[at + 1] = b'i';
        assert!(parse(&i8, "int").unwrap_err().to_string().contains("not float32"));
    }
}
