//! Reading a model file once: the protobuf decoded, the opset and IR version checked, every
//! op type checked, initializers and external data decoded into typed tensors (shared by
//! every specialisation), inputs and outputs described.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use prost::Message;

use super::proto::{self, DimValue, NodeProto, TensorProto};
use crate::error::{EngineError, Result};
use crate::half::{bf16_to_f32, f16_to_f32};
use crate::model::{Dim, Signature, TensorSpec};
use crate::tensor::{DType, Tensor, numel};

/// Oldest default-domain opset the importer reads.
pub const MIN_OPSET: i64 = 7;
/// Newest default-domain opset the importer reads (that of the `onnx` package the node
/// tests come from).
pub const MAX_OPSET: i64 = 28;
/// Newest IR version the importer reads.
pub const MAX_IR_VERSION: i64 = 14;

/// A dimension as the file declares it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FileDim {
    Value(usize),
    Param(String),
    Unknown,
}

/// A graph input (initializers excluded) or output as declared.
#[derive(Clone, Debug)]
pub(crate) struct ValueDecl {
    pub name: String,
    pub dtype: Option<DType>,
    pub dims: Option<Vec<FileDim>>,
}

/// A model file read once.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// Graph name (or the file's stem).
    pub name: String,
    /// The file name, for errors.
    pub model: String,
    /// Default-domain opset.
    pub opset: i64,
    pub nodes: Vec<NodeProto>,
    pub initializers: HashMap<String, Arc<Tensor>>,
    /// Per node, the decoded `value` tensor attribute of a Constant or ConstantOfShape.
    pub node_values: Vec<Option<Arc<Tensor>>>,
    pub inputs: Vec<ValueDecl>,
    pub outputs: Vec<ValueDecl>,
}

/// True for a node of the training domain's optimisers (the one other domain mapped).
fn is_training_op(n: &NodeProto) -> bool {
    n.domain == super::ops::training::DOMAIN && super::ops::training::OPS.contains(&n.op_type.as_str())
}

pub(crate) fn node_name(n: &NodeProto, i: usize) -> String {
    if n.name.is_empty() { format!("{}_{i}", n.op_type) } else { n.name.clone() }
}

fn decl(v: &proto::ValueInfoProto) -> ValueDecl {
    let tt = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    ValueDecl {
        name: v.name.clone(),
        dtype: tt.and_then(|t| DType::from_onnx(t.elem_type)),
        dims: tt.and_then(|t| t.shape.as_ref()).map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(DimValue::Value(v)) if *v >= 0 => FileDim::Value(*v as usize),
                    Some(DimValue::Param(p)) if !p.is_empty() => FileDim::Param(p.clone()),
                    _ => FileDim::Unknown,
                })
                .collect()
        }),
    }
}

/// Decodes and checks a model file.
pub(crate) fn parse(bytes: &[u8], model: &str, base_dir: Option<&Path>) -> Result<Parsed> {
    let err = |reason: String| EngineError::Model { model: model.to_string(), reason };
    let proto = proto::ModelProto::decode(bytes)
        .map_err(|e| err(format!("not a valid ONNX file (truncated or corrupt protobuf: {e})")))?;
    let Some(graph) = proto.graph else {
        return Err(err("the file holds no graph (is it an ONNX model?)".into()));
    };
    if proto.ir_version > MAX_IR_VERSION {
        return Err(err(format!(
            "IR version {} is newer than the {MAX_IR_VERSION} this build reads; re-export with an older exporter or upgrade poolpipe",
            proto.ir_version
        )));
    }
    // Every unsupported op, with its nodes, in one error.
    let mut unsupported: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        let default_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        if !(default_domain && super::ops::supported(&n.op_type) || is_training_op(n)) {
            let op = if default_domain { n.op_type.clone() } else { format!("{}::{}", n.domain, n.op_type) };
            unsupported.entry(op).or_default().push(node_name(n, i));
        }
    }
    if !unsupported.is_empty() {
        let ops = unsupported
            .iter()
            .map(|(op, nodes)| {
                let shown: Vec<&str> = nodes.iter().take(5).map(String::as_str).collect();
                let more = if nodes.len() > 5 { format!(" and {} more", nodes.len() - 5) } else { String::new() };
                format!("{op} (nodes {}{more})", shown.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(EngineError::UnsupportedOps { model: model.to_string(), ops });
    }
    let opset =
        proto.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version).unwrap_or(
            if proto.ir_version > 0 && proto.ir_version < 3 {
                1
            } else if !graph.node.is_empty() && graph.node.iter().all(is_training_op) {
                // Only training-domain nodes: no default-domain opset to check.
                MAX_OPSET
            } else {
                0
            },
        );
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(err(format!(
            "opset {opset} of the default domain is outside the supported {MIN_OPSET}..={MAX_OPSET}; re-export the model with an opset in that range"
        )));
    }
    let name = if graph.name.is_empty() {
        Path::new(model).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| model.to_string())
    } else {
        graph.name.clone()
    };
    let reader = TensorReader { model, base_dir };
    let mut initializers = HashMap::new();
    for t in &graph.initializer {
        initializers.insert(t.name.clone(), Arc::new(reader.tensor(t)?));
    }
    // Tensor attributes are decoded here, once, like initializers.
    let mut node_values = Vec::with_capacity(graph.node.len());
    for n in &graph.node {
        let value = match n.op_type.as_str() {
            "Constant" | "ConstantOfShape" => super::Attrs::new(n).get("value").and_then(|a| a.t.as_ref()),
            _ => None,
        };
        node_values.push(value.map(|t| reader.tensor(t).map(Arc::new)).transpose()?);
    }
    let inputs: Vec<ValueDecl> = graph.input.iter().filter(|v| !initializers.contains_key(&v.name)).map(decl).collect();
    for i in &inputs {
        if i.dtype.is_none() {
            let t = graph.input.iter().find(|v| v.name == i.name).and_then(|v| v.r#type.as_ref());
            let what = match t.and_then(|t| t.tensor_type.as_ref()) {
                Some(tt) => format!("element type {}", DType::onnx_name(tt.elem_type)),
                None => "no tensor type (a sequence, map or optional)".into(),
            };
            return Err(err(format!("input '{}' has {what}, which poolpipe does not support", i.name)));
        }
    }
    let outputs = graph.output.iter().map(decl).collect();
    Ok(Parsed { name, model: model.to_string(), opset, nodes: graph.node, initializers, node_values, inputs, outputs })
}

impl Parsed {
    /// Inputs (the first dimension of each is the batch) and outputs as declared.
    pub fn signature(&self) -> Signature {
        let dims = |d: &Option<Vec<FileDim>>, batch_first: bool| -> Vec<Dim> {
            d.as_ref()
                .map(|dims| {
                    dims.iter()
                        .enumerate()
                        .map(|(i, fd)| match fd {
                            _ if i == 0 && batch_first => Dim::Batch,
                            FileDim::Value(v) => Dim::Fixed(*v),
                            FileDim::Param(p) => Dim::Symbolic(p.clone()),
                            FileDim::Unknown => Dim::Symbolic("?".into()),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let batch_out = |d: &Option<Vec<FileDim>>| {
            let first_in = self.inputs.first().and_then(|i| i.dims.as_ref()).and_then(|d| d.first()).cloned();
            matches!(d.as_ref().and_then(|d| d.first()), Some(fd) if Some(fd) == first_in.as_ref() || matches!(fd, FileDim::Param(_)))
        };
        Signature {
            inputs: self
                .inputs
                .iter()
                .map(|i| TensorSpec {
                    name: i.name.clone(),
                    dtype: i.dtype.unwrap_or(DType::F32),
                    dims: dims(&i.dims, true),
                })
                .collect(),
            outputs: self
                .outputs
                .iter()
                .map(|o| TensorSpec {
                    name: o.name.clone(),
                    dtype: o.dtype.unwrap_or(DType::F32),
                    dims: dims(&o.dims, batch_out(&o.dims)),
                })
                .collect(),
        }
    }

    /// The batch the file fixes for its first input, if it fixes one.
    pub fn exported_batch(&self) -> Option<usize> {
        match self.inputs.first()?.dims.as_ref()?.first()? {
            FileDim::Value(v) => Some(*v),
            _ => None,
        }
    }
}

/// Element count of a shape, or None above 2^30 elements: larger constants or inputs are
/// refused rather than allocated.
pub(crate) fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= 1 << 30)
}

/// A serialised TensorProto (as ONNX test data is stored) as a tensor; `name` for errors.
pub(crate) fn tensor_from_bytes(bytes: &[u8], name: &str) -> Result<Tensor> {
    let t = proto::TensorProto::decode(bytes).map_err(|e| EngineError::Model {
        model: name.to_string(),
        reason: format!("not a serialised ONNX TensorProto (truncated or corrupt: {e})"),
    })?;
    TensorReader { model: name, base_dir: None }.tensor(&t)
}

struct TensorReader<'a> {
    model: &'a str,
    base_dir: Option<&'a Path>,
}

impl TensorReader<'_> {
    fn err(&self, reason: String) -> EngineError {
        EngineError::Model { model: self.model.to_string(), reason }
    }

    /// A TensorProto as a typed tensor.
    fn tensor(&self, t: &TensorProto) -> Result<Tensor> {
        let name = &t.name;
        let bad = |r: String| self.err(format!("tensor '{name}': {r}"));
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(format!("dims {:?} must be non-negative", t.dims))))
            .collect::<Result<_>>()?;
        let n = checked_numel(&dims).ok_or_else(|| bad(format!("shape {dims:?} is too large")))?;
        let dtype = DType::from_onnx(t.data_type)
            .ok_or_else(|| bad(format!("element type {} is not supported", DType::onnx_name(t.data_type))))?;
        let raw: std::borrow::Cow<[u8]> = if t.data_location == 1 || !t.external_data.is_empty() {
            std::borrow::Cow::Owned(self.external(t)?)
        } else {
            std::borrow::Cow::Borrowed(&t.raw_data)
        };
        let has_raw = !raw.is_empty()
            || (n == 0
                && t.float_data.is_empty()
                && t.int32_data.is_empty()
                && t.int64_data.is_empty()
                && t.double_data.is_empty()
                && t.uint64_data.is_empty());
        let check = |len: usize| -> Result<()> {
            if len != n {
                Err(bad(format!("holds {len} values, its shape {dims:?} needs {n} (truncated or corrupt)")))
            } else {
                Ok(())
            }
        };
        if has_raw {
            let need = dtype.packed_bytes(n);
            if raw.len() != need {
                return Err(bad(format!(
                    "raw data has {} bytes, its shape {dims:?} needs {need} (truncated or corrupt)",
                    raw.len()
                )));
            }
            return decode_le(dtype, dims, &raw).map_err(|e| bad(e.to_string()));
        }
        let tensor = match dtype {
            // One 8-bit code per int32, or one packed byte (two 4-bit or four 2-bit values).
            d if d.is_narrow_float() || d.bits() < 8 => {
                let bytes: Vec<u8> = t.int32_data.iter().map(|&v| v as u8).collect();
                if bytes.len() != d.packed_bytes(n) {
                    return Err(bad(format!(
                        "holds {} int32 values, its shape {dims:?} needs {} ({} values each)",
                        bytes.len(),
                        d.packed_bytes(n),
                        8 / d.bits()
                    )));
                }
                decode_le(d, dims, &bytes)
            }
            DType::F32 => {
                check(t.float_data.len())?;
                Tensor::new(dims, t.float_data.clone())
            }
            DType::F64 => {
                check(t.double_data.len())?;
                Tensor::from_f64(dims, t.double_data.clone())
            }
            DType::F16 | DType::BF16 => {
                check(t.int32_data.len())?;
                let conv = if dtype == DType::F16 { f16_to_f32 } else { bf16_to_f32 };
                Tensor::from_f32(dtype, dims, t.int32_data.iter().map(|&v| conv(v as u16)).collect())
            }
            DType::I64 => {
                check(t.int64_data.len())?;
                Tensor::from_i64(dtype, dims, t.int64_data.clone())
            }
            DType::U32 | DType::U64 => {
                check(t.uint64_data.len())?;
                Tensor::from_i64(dtype, dims, t.uint64_data.iter().map(|&v| v as i64).collect())
            }
            DType::Bool => {
                check(t.int32_data.len())?;
                Tensor::from_bool(dims, t.int32_data.iter().map(|&v| v != 0).collect())
            }
            _ => {
                check(t.int32_data.len())?;
                Tensor::from_i64(dtype, dims, t.int32_data.iter().map(|&v| v as i64).collect())
            }
        };
        tensor.map_err(|e| bad(e.to_string()))
    }

    fn external(&self, t: &TensorProto) -> Result<Vec<u8>> {
        let kv: HashMap<&str, &str> = t.external_data.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
        let bad = |r: String| self.err(format!("tensor '{}': {r}", t.name));
        let Some(loc) = kv.get("location") else {
            return Err(bad("external data without a location".into()));
        };
        let rel = Path::new(loc);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(bad(format!("external data location '{loc}' must be a relative path beside the model")));
        }
        let base = self.base_dir.map(Path::to_path_buf).unwrap_or_default();
        let path = base.join(rel);
        // After resolving symlinks the file must still lie inside the model's folder and be a
        // regular file: a link beside the model must not read the host's files as weights.
        if let (Ok(real), Ok(real_base)) = (
            path.canonicalize(),
            if base.as_os_str().is_empty() { Path::new(".").canonicalize() } else { base.canonicalize() },
        ) {
            if !real.starts_with(&real_base) {
                return Err(bad(format!(
                    "external data file '{}' resolves to '{}', outside the model's folder '{}' (a symbolic link?): keep the data file itself beside the model",
                    path.display(),
                    real.display(),
                    real_base.display()
                )));
            }
            if !real.is_file() {
                return Err(bad(format!(
                    "external data file '{}' is not a regular file: keep the data file itself beside the model",
                    path.display()
                )));
            }
        }
        let data = std::fs::read(&path).map_err(|e| {
            bad(format!(
                "cannot read its external data file '{}': {e}; keep the data file beside the model",
                path.display()
            ))
        })?;
        let offset: usize = kv.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let length: Option<usize> = kv.get("length").and_then(|v| v.parse().ok());
        let end = length.map_or(data.len(), |l| offset.saturating_add(l));
        if offset > data.len() || end > data.len() {
            return Err(bad(format!(
                "external data range {offset}..{end} lies outside '{}' ({} bytes)",
                path.display(),
                data.len()
            )));
        }
        Ok(data[offset..end].to_vec())
    }
}

/// The `bits`-wide fields of packed bytes, `n` of them, the first in the lowest bits.
fn unpack_bits(raw: &[u8], bits: usize, n: usize) -> impl Iterator<Item = u8> + '_ {
    let mask = ((1u16 << bits) - 1) as u8;
    (0..n).map(move |i| (raw[i * bits / 8] >> ((i * bits) % 8)) & mask)
}

/// Decodes little-endian values of a type (ONNX raw data, .npy payloads); the 4- and 2-bit
/// types packed several to a byte, the first in the lowest bits.
pub(crate) fn decode_le(dtype: DType, shape: Vec<usize>, raw: &[u8]) -> Result<Tensor> {
    let n = numel(&shape);
    if raw.len() != dtype.packed_bytes(n) {
        return Err(EngineError::TensorData { shape, expected: dtype.packed_bytes(n), got: raw.len() });
    }
    let c = |w: usize| raw.chunks_exact(w);
    if let Some(f) = dtype.mini_float() {
        return Tensor::from_f32(dtype, shape, unpack_bits(raw, dtype.bits(), n).map(|b| f.decode(b)).collect());
    }
    match dtype {
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F4E2M1 => {
            unreachable!("mini floats are decoded above")
        }
        DType::F8E8M0 => Tensor::from_f32(dtype, shape, raw.iter().map(|&b| crate::half::e8m0_to_f32(b)).collect()),
        DType::I4 | DType::I2 | DType::U4 | DType::U2 => {
            let signed = matches!(dtype, DType::I4 | DType::I2);
            let values =
                unpack_bits(raw, dtype.bits(), n).map(|b| if signed { dtype.wrap(b as i64) } else { b as i64 });
            Tensor::from_i64(dtype, shape, values.collect())
        }
        DType::F32 => Tensor::new(shape, c(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()),
        DType::F64 => Tensor::from_f64(shape, c(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect()),
        DType::F16 => {
            Tensor::from_f32(dtype, shape, c(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect())
        }
        DType::BF16 => {
            Tensor::from_f32(dtype, shape, c(2).map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect())
        }
        DType::I8 => Tensor::from_i64(dtype, shape, raw.iter().map(|&b| b as i8 as i64).collect()),
        DType::U8 => Tensor::from_i64(dtype, shape, raw.iter().map(|&b| b as i64).collect()),
        DType::Bool => Tensor::from_bool(shape, raw.iter().map(|&b| b != 0).collect()),
        DType::I16 => Tensor::from_i64(dtype, shape, c(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as i64).collect()),
        DType::U16 => Tensor::from_i64(dtype, shape, c(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as i64).collect()),
        DType::I32 => {
            Tensor::from_i64(dtype, shape, c(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64).collect())
        }
        DType::U32 => {
            Tensor::from_i64(dtype, shape, c(4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as i64).collect())
        }
        DType::I64 | DType::U64 => {
            Tensor::from_i64(dtype, shape, c(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect())
        }
    }
}

/// Little-endian bytes of a tensor's values in its type (the 4- and 2-bit types packed as
/// ONNX packs them).
pub(crate) fn encode_le(t: &Tensor) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.dtype().packed_bytes(t.len()));
    let d = t.dtype();
    let codes: Option<Vec<u8>> = if let Some(f) = d.mini_float() {
        Some(t.data().iter().map(|&v| f.encode(v, false)).collect())
    } else if d == DType::F8E8M0 {
        let e8m0 = |v: f32| crate::half::e8m0_from_f32(v, false, crate::half::E8m0Round::Nearest);
        Some(t.data().iter().map(|&v| e8m0(v)).collect())
    } else if d.is_int() && d.bits() < 8 {
        Some(t.as_i64().expect("ints").iter().map(|&v| v as u8).collect())
    } else {
        None
    };
    if let Some(codes) = codes {
        let bits = d.bits();
        let mask = ((1u16 << bits) - 1) as u8;
        out.resize(d.packed_bytes(codes.len()), 0);
        for (i, c) in codes.into_iter().enumerate() {
            out[i * bits / 8] |= (c & mask) << ((i * bits) % 8);
        }
        return out;
    }
    match d {
        DType::F32 => t.data().iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F16 => {
            t.data().iter().for_each(|&v| out.extend_from_slice(&crate::half::f32_to_f16_ieee(v).to_le_bytes()))
        }
        DType::BF16 => t.data().iter().for_each(|&v| out.extend_from_slice(&crate::half::f32_to_bf16(v).to_le_bytes())),
        DType::F64 => t.as_f64().expect("f64").iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::Bool => t.as_bool().expect("bool").iter().for_each(|&v| out.push(v as u8)),
        d => {
            debug_assert!(d.is_int() && d.bits() >= 8, "narrow types are packed above");
            let v = t.as_i64().expect("ints");
            match d.size() {
                1 => v.iter().for_each(|&x| out.push(x as u8)),
                2 => v.iter().for_each(|&x| out.extend_from_slice(&(x as u16).to_le_bytes())),
                4 => v.iter().for_each(|&x| out.extend_from_slice(&(x as u32).to_le_bytes())),
                _ => v.iter().for_each(|&x| out.extend_from_slice(&x.to_le_bytes())),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_bytes() {
        let mut rng = crate::Rng::new(5);
        for d in DType::ALL {
            let t = Tensor::random_of(d, vec![3, 5], &mut rng, -4.0, 4.0);
            let bytes = encode_le(&t);
            assert_eq!(bytes.len(), d.packed_bytes(15), "{d}");
            assert_eq!(decode_le(d, vec![3, 5], &bytes).unwrap(), t, "{d}");
        }
    }

    fn proto(data_type: i32, dims: &[i64], int32_data: Vec<i32>) -> TensorProto {
        TensorProto { dims: dims.to_vec(), data_type, name: "t".into(), int32_data, ..Default::default() }
    }

    #[test]
    fn narrow_types_read_from_int32_data() {
        let r = TensorReader { model: "m", base_dir: None };
        // Two 4-bit values a byte, four 2-bit values, one 8-bit code an int32.
        let t = r.tensor(&proto(22, &[5], vec![225, 195, 5])).unwrap();
        assert_eq!((t.dtype(), t.as_i64().unwrap()), (DType::I4, &[1, -2, 3, -4, 5][..]));
        let t = r.tensor(&proto(25, &[5], vec![57, 1])).unwrap();
        assert_eq!(t.as_i64().unwrap(), &[1, 2, 3, 0, 1]);
        let t = r.tensor(&proto(17, &[3], vec![56, 192, 126])).unwrap();
        assert_eq!(t.data(), &[1.0, -2.0, 448.0]);
        let t = r.tensor(&proto(23, &[3], vec![194, 7])).unwrap();
        assert_eq!(t.data(), &[1.0, -2.0, 6.0]);
        let t = r.tensor(&proto(24, &[3], vec![127, 128, 126])).unwrap();
        assert_eq!(t.data(), &[1.0, 2.0, 0.5]);
        let e = r.tensor(&proto(22, &[5], vec![225, 195])).unwrap_err().to_string();
        assert!(e.contains("needs 3"), "{e}");
    }
}
