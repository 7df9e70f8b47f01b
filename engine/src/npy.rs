//! NumPy `.npy` files (C order, little-endian; float16/32/64, signed and unsigned integers of
//! 8 to 64 bits, bool; the types numpy lacks are written widened: bfloat16 and the float8
//! and float4 types as float32, the 4- and 2-bit integers as int8/uint8) and `.npz` archives
//! of several named ones, read and written: the
//! exchange format with onnxruntime in the tests and for users' raw input and output tensors.
//! `.npz` archives are those of `numpy.savez` (stored, not compressed; ZIP64 size fields are
//! understood).

use std::path::Path;

use crate::error::{EngineError, Result};
use crate::tensor::{DType, Tensor};

fn bad(path: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Model { model: path.to_string(), reason: format!("not a usable .npy file: {}", reason.into()) }
}

/// The numpy type code of an element type (little-endian); None for the types numpy lacks.
fn descr(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F32 => "<f4",
        DType::F16 => "<f2",
        DType::F64 => "<f8",
        DType::BF16 => return None,
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::Bool => "|b1",
        DType::F8E4M3FN
        | DType::F8E4M3FNUZ
        | DType::F8E5M2
        | DType::F8E5M2FNUZ
        | DType::F8E8M0
        | DType::F4E2M1
        | DType::I4
        | DType::U4
        | DType::I2
        | DType::U2 => return None,
    })
}

/// The type a tensor is written as: its own, or the one that holds its values where numpy
/// lacks it (float32 for the narrow floats, int8/uint8 for the 4- and 2-bit integers).
fn written_type(d: DType) -> DType {
    match d {
        DType::BF16 => DType::F32,
        DType::I4 | DType::I2 => DType::I8,
        DType::U4 | DType::U2 => DType::U8,
        d if d.is_narrow_float() => DType::F32,
        d => d,
    }
}

/// The element type of a numpy type code.
fn dtype_of(code: &str) -> Option<DType> {
    Some(match code {
        "<f4" | "float32" => DType::F32,
        "<f2" => DType::F16,
        "<f8" => DType::F64,
        "|i1" | "<i1" => DType::I8,
        "<i2" => DType::I16,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "|u1" | "<u1" => DType::U8,
        "<u2" => DType::U16,
        "<u4" => DType::U32,
        "<u8" => DType::U64,
        "|b1" | "<b1" => DType::Bool,
        _ => return None,
    })
}

/// Reads a `.npy` file in C order.
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
    let descr_txt = field("descr").ok_or_else(|| bad(name, "no descr"))?;
    let code = descr_txt.trim_start_matches('\'').split('\'').next().unwrap_or("");
    let dtype = dtype_of(code).ok_or_else(|| {
        bad(
            name,
            format!(
                "element type '{code}' is not supported (float16/32/64, int8..64, uint8..64 and bool are, little-endian)"
            ),
        )
    })?;
    let width = dtype.size();
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
    let need = shape.iter().try_fold(width, |acc: usize, &d| acc.checked_mul(d));
    if need != Some(data.len()) {
        let need = need.map_or("more than addressable".to_string(), |n| n.to_string());
        return Err(bad(name, format!("holds {} bytes of data, shape {shape:?} needs {need}", data.len())));
    }
    crate::onnx::decode_le(dtype, shape, data)
}

/// The `.npy` bytes of a tensor (its element type, C order, format 1.0; the types numpy
/// lacks are widened, see the module doc).
pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let widened;
    let t = if written_type(t.dtype()) != t.dtype() {
        widened = t.cast(written_type(t.dtype()));
        &widened
    } else {
        t
    };
    let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        descr(t.dtype()).expect("a type numpy has")
    );
    // Pad so that the data starts at a multiple of 64 bytes, ending the header with '\n'.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&crate::onnx::encode_le(t));
    out
}

/// Writes a tensor as `.npy`.
pub fn write(path: &Path, t: &Tensor) -> Result<()> {
    std::fs::write(path, to_bytes(t))
        .map_err(|e| EngineError::Model { model: path.display().to_string(), reason: format!("cannot write it: {e}") })
}

/// CRC-32 (IEEE, as in zip archives).
fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    !bytes.iter().fold(!0u32, |c, &b| table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8))
}

/// The `.npz` bytes of named tensors (each stored as `NAME.npy`, uncompressed).
pub fn npz_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, t) in tensors {
        let data = to_bytes(t);
        let entry = format!("{name}.npy");
        let too_big = |what: &str| EngineError::Model {
            model: entry.clone(),
            reason: format!("{what} is above the 4 GiB of a plain zip entry; write several .npy files instead"),
        };
        let size = u32::try_from(data.len()).map_err(|_| too_big("the tensor"))?;
        let offset = u32::try_from(out.len()).map_err(|_| too_big("the archive"))?;
        let crc = crc32(&data);
        // Version 2.0, no flags, stored, time 00:00, date 1980-01-01.
        let common = |v: &mut Vec<u8>| {
            for x in [20u16, 0, 0, 0, 0x21] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            for x in [crc, size, size] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            v.extend_from_slice(&(entry.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(entry.as_bytes());
        out.extend_from_slice(&data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        common(&mut central);
        for x in [0u16, 0, 0] {
            central.extend_from_slice(&x.to_le_bytes()); // comment, disk, internal attributes
        }
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(entry.as_bytes());
    }
    let cd_offset = u32::try_from(out.len()).map_err(|_| EngineError::Model {
        model: "npz".into(),
        reason: "the archive is above 4 GiB; write several .npy files instead".into(),
    })?;
    let n = u16::try_from(tensors.len()).map_err(|_| EngineError::Model {
        model: "npz".into(),
        reason: "more than 65535 tensors in one archive".into(),
    })?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for x in [0u16, 0, n, n] {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

/// Writes named tensors as an `.npz` archive (what `numpy.load` reads back by name).
pub fn write_npz(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let bytes = npz_bytes(tensors)?;
    std::fs::write(path, bytes)
        .map_err(|e| EngineError::Model { model: path.display().to_string(), reason: format!("cannot write it: {e}") })
}

/// Reads an `.npz` archive: the tensors with their names (entry names without `.npy`), in
/// archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| bad_npz(&name, format!("cannot read it: {e}")))?;
    parse_npz(&bytes, &name)
}

fn bad_npz(path: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Model { model: path.to_string(), reason: format!("not a usable .npz archive: {}", reason.into()) }
}

/// Parses `.npz` bytes; `name` is used in errors.
pub fn parse_npz(bytes: &[u8], name: &str) -> Result<Vec<(String, Tensor)>> {
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as u64);
    let u64_at = |at: usize| bytes.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    let truncated = || bad_npz(name, "truncated (the zip directory is cut off)");
    // The end-of-central-directory record lies in the last 22 + 65535 bytes.
    let search_from = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes[i..i + 4] == 0x0605_4b50u32.to_le_bytes())
        .ok_or_else(|| bad_npz(name, "no zip directory (not a zip file, or truncated)"))?;
    let entries = u16_at(eocd + 10).ok_or_else(truncated)?;
    let mut at = u32_at(eocd + 16).ok_or_else(truncated)? as usize;
    let mut out = Vec::with_capacity(entries);
    for _ in 0..entries {
        if u32_at(at) != Some(0x0201_4b50) {
            return Err(truncated());
        }
        let method = u16_at(at + 10).ok_or_else(truncated)?;
        let crc = u32_at(at + 16).ok_or_else(truncated)? as u32;
        let mut csize = u32_at(at + 20).ok_or_else(truncated)?;
        let mut usize_ = u32_at(at + 24).ok_or_else(truncated)?;
        let (nlen, xlen, clen) = (
            u16_at(at + 28).ok_or_else(truncated)?,
            u16_at(at + 30).ok_or_else(truncated)?,
            u16_at(at + 32).ok_or_else(truncated)?,
        );
        let mut offset = u32_at(at + 42).ok_or_else(truncated)?;
        let entry = bytes.get(at + 46..at + 46 + nlen).ok_or_else(truncated)?;
        let entry = String::from_utf8_lossy(entry).into_owned();
        // ZIP64 extra field: the 64-bit values of the fields saturated at 0xFFFFFFFF, in order.
        let mut x = at + 46 + nlen;
        let x_end = x + xlen;
        while x + 4 <= x_end {
            let (id, len) = (u16_at(x).ok_or_else(truncated)?, u16_at(x + 2).ok_or_else(truncated)?);
            if id == 1 {
                let mut f = x + 4;
                for field in [&mut usize_, &mut csize, &mut offset] {
                    if *field == 0xFFFF_FFFF {
                        *field = u64_at(f).ok_or_else(truncated)?;
                        f += 8;
                    }
                }
            }
            x += 4 + len;
        }
        at = x_end + clen;
        if method != 0 {
            return Err(bad_npz(
                name,
                format!(
                    "entry '{entry}' is compressed (method {method}); only stored archives are read: \
                     save with numpy.savez, not savez_compressed"
                ),
            ));
        }
        let lh = offset as usize;
        if u32_at(lh) != Some(0x0403_4b50) {
            return Err(bad_npz(name, format!("entry '{entry}' points at no local header")));
        }
        let data_at = lh + 30 + u16_at(lh + 26).ok_or_else(truncated)? + u16_at(lh + 28).ok_or_else(truncated)?;
        let data = data_at
            .checked_add(csize as usize)
            .and_then(|end| bytes.get(data_at..end))
            .ok_or_else(|| bad_npz(name, format!("entry '{entry}' is cut off")))?;
        if csize != usize_ || crc32(data) != crc {
            return Err(bad_npz(name, format!("entry '{entry}' is corrupt (size or CRC mismatch)")));
        }
        let key = entry.strip_suffix(".npy").unwrap_or(&entry).to_string();
        let t = parse(data, &format!("{name}:{entry}"))?;
        out.push((key, t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_numpy_lacks_are_written_widened() {
        let t = Tensor::from_i64(DType::I4, vec![3], vec![-8, 0, 7]).unwrap();
        let back = parse(&to_bytes(&t), "t").unwrap();
        assert_eq!(back, t.cast(DType::I8));
        let f = Tensor::from_f32(DType::F8E4M3FN, vec![2], vec![448.0, -0.5]).unwrap();
        assert_eq!(parse(&to_bytes(&f), "f").unwrap(), f.cast(DType::F32));
    }

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
        let it = parse(&i8, "int").unwrap();
        assert_eq!(it.dtype(), DType::I32);
        i8[at + 1] = b'c';
        assert!(parse(&i8, "complex").unwrap_err().to_string().contains("not supported"));
        for d in [DType::F16, DType::F64, DType::I8, DType::U8, DType::I16, DType::I64, DType::U32, DType::Bool] {
            let x = Tensor::from_f64_as(d, vec![2, 2], vec![1.0, 0.0, 3.0, 1.0]).unwrap();
            assert_eq!(parse(&to_bytes(&x), "x").unwrap(), x, "{d}");
        }
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn npz_round_trip_and_errors() {
        let a = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::new(vec![3], vec![-1.0, 0.5, 9.0]).unwrap();
        let items = vec![("logits".to_string(), a.clone()), ("boxes/0".to_string(), b.clone())];
        let bytes = npz_bytes(&items).unwrap();
        let back = parse_npz(&bytes, "x.npz").unwrap();
        assert_eq!(back, items);
        for cut in [bytes.len() - 1, bytes.len() / 2, 10, 0] {
            assert!(parse_npz(&bytes[..cut], "cut.npz").is_err(), "cut at {cut}");
        }
        let mut corrupt = bytes.clone();
        corrupt[40 + 10 + 64] ^= 0x55; // inside the first tensor's data
        let e = parse_npz(&corrupt, "c.npz").unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("logits.npy"), "{e}");
        let mut deflated = bytes.clone();
        let cd = deflated.windows(4).position(|w| w == 0x0201_4b50u32.to_le_bytes()).unwrap();
        deflated[cd + 10] = 8;
        let e = parse_npz(&deflated, "d.npz").unwrap_err().to_string();
        assert!(e.contains("savez_compressed"), "{e}");
    }
}
