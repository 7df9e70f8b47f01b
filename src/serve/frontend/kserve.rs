//! The KServe v2 / Open Inference Protocol inference messages over HTTP: requests with JSON
//! tensors (flat or nested, row-major) or the binary tensor data extension (the JSON header
//! followed by raw little-endian tensors, its length in the `Inference-Header-Content-Length`
//! header), and responses in either form. Only what a CNN takes and gives: inputs in FP32,
//! FP16 (binary only, as JSON has no half type), FP64 or UINT8, read as f32; outputs in FP32.
//!
//! Every refusal is an [`ApiError`] with the HTTP status (400 for a malformed or mismatched
//! request, 413 for an oversized one) and a message naming the tensor and what to send.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The header that carries the JSON part's length in the binary tensor data extension.
pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

/// A refusal: HTTP status and message (sent as `{"error": message}`), with a `Retry-After`
/// header when the server knows when to try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// What is wrong and what to do.
    pub message: String,
    /// Seconds after which a retry is likely to succeed (the `Retry-After` header).
    pub retry_after_s: Option<u64>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError { status: 400, message: message.into(), retry_after_s: None }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
    inputs: Vec<RawInput>,
    #[serde(default)]
    outputs: Vec<RawOutput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    data: Option<FlatData>,
}

/// A JSON tensor's `data`, flat or nested, read straight into f32 (no JSON tree is built:
/// a tree takes ten times the body's size). The first element that is not a number is kept
/// as the refusal, naming it; the rest of the value is skipped.
#[derive(Default)]
struct FlatData {
    values: Vec<f32>,
    bad: Option<String>,
}

impl<'de> Deserialize<'de> for FlatData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = FlatData::default();
        d.deserialize_any(Flatten(&mut out))?;
        Ok(out)
    }
}

struct Flatten<'a>(&'a mut FlatData);

impl Flatten<'_> {
    fn refuse(self, what: String) {
        if self.0.bad.is_none() {
            self.0.bad = Some(what);
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Flatten<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number or a (nested) array of numbers")
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.0.values.push(v as f32);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.values.push(v as f32);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.values.push(v as f32);
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
        self.refuse("an object".into());
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        let shown: String = v.chars().take(40).collect();
        self.refuse(format!("\"{shown}\""));
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.refuse(v.to_string());
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.refuse("null".into());
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
}

/// An input tensor, as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    /// Name.
    pub name: String,
    /// Shape, batch first.
    pub shape: Vec<usize>,
    /// Row-major elements.
    pub data: Vec<f32>,
}

/// An output the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    /// Name.
    pub name: String,
    /// Return it as binary data.
    pub binary: bool,
}

/// A parsed inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The client's request id, echoed in the response.
    pub id: Option<String>,
    /// Inputs.
    pub inputs: Vec<InputTensor>,
    /// Outputs asked for (empty: all, in JSON unless `binary_data_output`).
    pub outputs: Vec<RequestedOutput>,
    /// `binary_data_output`: every output as binary data unless an output says otherwise.
    pub binary_default: bool,
}

fn flag(params: &Option<serde_json::Map<String, Value>>, key: &str) -> Result<Option<bool>, ApiError> {
    match params.as_ref().and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(format!("parameter '{key}' must be true or false, not {v}"))),
    }
}

/// Bytes per element of the binary form of `datatype`, for the types this server reads.
fn element_size(datatype: &str) -> Option<usize> {
    match datatype {
        "FP32" => Some(4),
        "FP16" => Some(2),
        "FP64" => Some(8),
        "UINT8" => Some(1),
        _ => None,
    }
}

fn decode_binary(datatype: &str, bytes: &[u8]) -> Vec<f32> {
    match datatype {
        "FP32" => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        "FP16" => bytes
            .chunks_exact(2)
            .map(|c| poolpipe_engine::boundary::f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        "FP64" => bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
        _ => bytes.iter().map(|&b| b as f32).collect(),
    }
}

/// Parses an inference request body. `header_length` is the `Inference-Header-Content-Length`
/// value when the client sent one (binary tensor data follows the JSON); `max_elements`
/// bounds every input.
pub fn parse_request(body: &[u8], header_length: Option<usize>, max_elements: usize) -> Result<InferRequest, ApiError> {
    let (json, mut binary) = match header_length {
        Some(n) if n > body.len() => {
            return Err(bad(format!("{HEADER_LENGTH} is {n} but the body has only {} bytes", body.len())));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let raw: RawRequest =
        serde_json::from_slice(json).map_err(|e| bad(format!("the request is not a valid inference request: {e}")))?;
    if raw.inputs.is_empty() {
        return Err(bad("the request has no inputs"));
    }
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for i in raw.inputs {
        let name = i.name;
        let shape = i
            .shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(format!("input '{name}': dimension {d} is negative"))))
            .collect::<Result<Vec<usize>, ApiError>>()?;
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= max_elements).ok_or_else(
            || ApiError {
                status: 413,
                message: format!(
                    "input '{name}': shape {shape:?} is larger than this server takes ({max_elements} elements)"
                ),
                retry_after_s: None,
            },
        )?;
        let size = element_size(&i.datatype).ok_or_else(|| {
            bad(format!("input '{name}': datatype {} is not supported; send FP32 (or FP16, FP64, UINT8)", i.datatype))
        })?;
        let binary_size = match i.parameters.as_ref().and_then(|p| p.get("binary_data_size")) {
            None => None,
            Some(v) => Some(
                v.as_u64().ok_or_else(|| bad(format!("input '{name}': binary_data_size {v} is not a byte count")))?,
            ),
        };
        let data = match (binary_size, i.data) {
            (Some(_), Some(_)) => {
                return Err(bad(format!("input '{name}' has both data and binary_data_size; send one")));
            }
            (Some(size_bytes), None) => {
                let want = n * size;
                if size_bytes as usize != want {
                    return Err(bad(format!(
                        "input '{name}': binary_data_size is {size_bytes} but shape {shape:?} in {} needs {want} bytes",
                        i.datatype
                    )));
                }
                if binary.len() < want {
                    return Err(bad(format!("input '{name}': the body ends {} bytes early", want - binary.len())));
                }
                let (mine, rest) = binary.split_at(want);
                binary = rest;
                decode_binary(&i.datatype, mine)
            }
            (None, Some(v)) => {
                if i.datatype == "FP16" {
                    return Err(bad(format!(
                        "input '{name}': FP16 has no JSON form; send it as binary data or use FP32"
                    )));
                }
                if let Some(what) = v.bad {
                    return Err(bad(format!("input '{name}': element {what} is not a number")));
                }
                let data = v.values;
                if data.len() != n {
                    return Err(bad(format!(
                        "input '{name}': {} elements for shape {shape:?} ({n} expected)",
                        data.len()
                    )));
                }
                data
            }
            (None, None) => return Err(bad(format!("input '{name}' has no data"))),
        };
        inputs.push(InputTensor { name, shape, data });
    }
    if !binary.is_empty() {
        return Err(bad(format!("{} bytes after the last binary input", binary.len())));
    }
    let binary_default = flag(&raw.parameters, "binary_data_output")?.unwrap_or(false);
    let outputs = raw
        .outputs
        .into_iter()
        .map(|o| {
            Ok(RequestedOutput { binary: flag(&o.parameters, "binary_data")?.unwrap_or(binary_default), name: o.name })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(InferRequest { id: raw.id, inputs, outputs, binary_default })
}

/// An output tensor to return.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    /// Name.
    pub name: String,
    /// Shape, batch first.
    pub shape: Vec<usize>,
    /// Row-major f32 elements.
    pub data: Vec<f32>,
}

#[derive(Serialize)]
struct RawResponse<'a> {
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<RawResponseOutput<'a>>,
}

#[derive(Serialize)]
struct RawResponseOutput<'a> {
    name: &'a str,
    shape: &'a [usize],
    datatype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<serde_json::Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a [f32]>,
}

/// Encodes a response: the outputs the request asked for (all when it named none), each in
/// JSON or binary as asked. Returns the body and, when any output is binary, the JSON part's
/// length for the `Inference-Header-Content-Length` header. An output the request named
/// that the model does not have is a 400.
pub fn encode_response(
    model: &str,
    req: &InferRequest,
    outputs: &[OutputTensor],
) -> Result<(Vec<u8>, Option<usize>), ApiError> {
    let chosen: Vec<(&OutputTensor, bool)> = if req.outputs.is_empty() {
        outputs.iter().map(|o| (o, req.binary_default)).collect()
    } else {
        req.outputs
            .iter()
            .map(|r| {
                outputs.iter().find(|o| o.name == r.name).map(|o| (o, r.binary)).ok_or_else(|| {
                    bad(format!(
                        "model '{model}' has no output '{}' (it has: {})",
                        r.name,
                        outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut tail: Vec<u8> = vec![];
    let raw = RawResponse {
        model_name: model,
        id: req.id.as_deref(),
        outputs: chosen
            .iter()
            .map(|&(o, binary)| {
                if binary {
                    tail.extend(o.data.iter().flat_map(|x| x.to_le_bytes()));
                    let mut p = serde_json::Map::new();
                    p.insert("binary_data_size".into(), Value::from(o.data.len() * 4));
                    RawResponseOutput {
                        name: &o.name,
                        shape: &o.shape,
                        datatype: "FP32",
                        parameters: Some(p),
                        data: None,
                    }
                } else {
                    RawResponseOutput {
                        name: &o.name,
                        shape: &o.shape,
                        datatype: "FP32",
                        parameters: None,
                        data: Some(&o.data),
                    }
                }
            })
            .collect(),
    };
    let mut body = serde_json::to_vec(&raw).map_err(|e| ApiError {
        status: 500,
        message: format!("encoding the response: {e}"),
        retry_after_s: None,
    })?;
    if chosen.iter().any(|&(_, b)| b) {
        let n = body.len();
        body.extend(tail);
        Ok((body, Some(n)))
    } else {
        Ok((body, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 24;

    #[test]
    fn json_tensors_flat_or_nested() {
        let body =
            br#"{"id":"r1","inputs":[{"name":"frames","shape":[1,2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}],
                        "outputs":[{"name":"logits"}]}"#;
        let r = parse_request(body, None, MAX).unwrap();
        assert_eq!(r.id.as_deref(), Some("r1"));
        assert_eq!(
            r.inputs[0],
            InputTensor { name: "frames".into(), shape: vec![1, 2, 2], data: vec![1.0, 2.0, 3.0, 4.5] }
        );
        assert_eq!(r.outputs, vec![RequestedOutput { name: "logits".into(), binary: false }]);
        let flat = br#"{"inputs":[{"name":"frames","shape":[1,2,2],"datatype":"FP32","data":[1,2,3,4.5]}]}"#;
        assert_eq!(parse_request(flat, None, MAX).unwrap().inputs, r.inputs);
    }

    #[test]
    fn binary_tensors_follow_the_json_part() {
        let json = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},
                                  {"name":"b","shape":[3],"datatype":"UINT8","parameters":{"binary_data_size":3}}],
                        "parameters":{"binary_data_output":true}}"#;
        let mut body = json.to_vec();
        body.extend(1.5f32.to_le_bytes());
        body.extend((-2.0f32).to_le_bytes());
        body.extend([0u8, 128, 255]);
        let r = parse_request(&body, Some(json.len()), MAX).unwrap();
        assert_eq!(r.inputs[0].data, vec![1.5, -2.0]);
        assert_eq!(r.inputs[1].data, vec![0.0, 128.0, 255.0]);
        assert!(r.binary_default);
        let e = parse_request(&body[..body.len() - 1], Some(json.len()), MAX).unwrap_err();
        assert!(e.message.contains("'b'") && e.message.contains("early"), "{e}");
        let mut extra = body.clone();
        extra.push(0);
        assert!(parse_request(&extra, Some(json.len()), MAX).unwrap_err().message.contains("after the last"));
        assert!(parse_request(&body, Some(body.len() + 1), MAX).unwrap_err().message.contains(HEADER_LENGTH));
    }

    #[test]
    fn bad_requests_are_refused_with_the_tensor_named() {
        let cases: &[(&[u8], u16, &str)] = &[
            (b"{", 400, "not a valid inference request"),
            (br#"{"inputs":[]}"#, 400, "no inputs"),
            (br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1]}]}"#, 400, "1 elements for shape [2]"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["a"]}]}"#, 400, "datatype BYTES"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}"#, 400, "not a number"),
            (br#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#, 400, "negative"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]}"#, 400, "FP16 has no JSON form"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#, 400, "no data"),
            (br#"{"inputs":[{"name":"x","shape":[100000,100000],"datatype":"FP32","data":[]}]}"#, 413, "larger than"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"colour":1}]}"#, 400, "colour"),
            (
                br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":3}}]}"#,
                400,
                "needs 4 bytes",
            ),
        ];
        for (body, status, text) in cases {
            let e = parse_request(body, None, MAX).unwrap_err();
            assert_eq!(e.status, *status, "{e}");
            assert!(e.message.contains(text), "{}: {e}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn responses_in_json_and_binary() {
        let outs = vec![
            OutputTensor { name: "logits".into(), shape: vec![1, 2], data: vec![0.25, -1.0] },
            OutputTensor { name: "mask".into(), shape: vec![1, 1], data: vec![3.0] },
        ];
        let req =
            parse_request(br#"{"id":"7","inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#, None, MAX)
                .unwrap();
        let (body, n) = encode_response("resnet", &req, &outs).unwrap();
        assert_eq!(n, None);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["model_name"], "resnet");
        assert_eq!(v["id"], "7");
        assert_eq!(v["outputs"][0]["data"], serde_json::json!([0.25, -1.0]));
        assert_eq!(v["outputs"][1]["datatype"], "FP32");
        let req = parse_request(
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"logits","parameters":{"binary_data":true}}]}"#,
            None,
            MAX,
        )
        .unwrap();
        let (body, n) = encode_response("resnet", &req, &outs).unwrap();
        let n = n.unwrap();
        let v: Value = serde_json::from_slice(&body[..n]).unwrap();
        assert_eq!(v["outputs"].as_array().unwrap().len(), 1);
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&body[n..], [0.25f32.to_le_bytes(), (-1.0f32).to_le_bytes()].concat());
        let req = parse_request(
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"boxes"}]}"#,
            None,
            MAX,
        )
        .unwrap();
        let e = encode_response("resnet", &req, &outs).unwrap_err();
        assert!(e.message.contains("no output 'boxes'") && e.message.contains("logits, mask"), "{e}");
    }
}
