//! Models as users name them, and what ties a served model to its profiles: built-in names or
//! ONNX files ([`load_model`]), the per-frame input shape flag ([`Shape`]), the stored
//! partition of a profiled model ([`PartitionFile`]) and the graph fingerprint that checks a
//! model against it ([`fingerprint`]). Shared by the commands and the serving roles.

use std::path::Path;

use anyhow::{Result, bail};
use poolpipe_engine::Graph;
use poolpipe_engine::model::Model;
use poolpipe_engine::partition::Partition;
use poolpipe_engine::{models, onnx};
use serde::{Deserialize, Serialize};

/// True when `model` names a model file rather than a built-in model.
pub fn is_model_file(model: &str) -> bool {
    let p = Path::new(model);
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) || model.contains('/') || p.is_file()
}

/// Loads the model named on the command line.
pub fn load_model(model: &str, size: usize, seed: u64, input_shape: Option<&[usize]>) -> Result<Model> {
    if is_model_file(model) {
        let path = Path::new(model);
        if !path.is_file() {
            bail!("model file {model} not found (give a path to an .onnx file, or a built-in model name)");
        }
        let opts = onnx::ImportOptions { input_dims: input_shape.map(|s| vec![s.to_vec()]).unwrap_or_default() };
        Ok(onnx::load(path, &opts)?)
    } else {
        if input_shape.is_some() {
            bail!("--input-shape applies to ONNX models; built-in models take --size");
        }
        models::builtin(model, size, seed).map_err(|e| anyhow::anyhow!("{e} (or give the path of an .onnx file)"))
    }
}

/// A per-frame input shape given on the command line ("3x224x224" or "3,224,224").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape(pub Vec<usize>);

impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let dims: Result<Vec<usize>, _> = s.split(['x', 'X', ',']).map(|d| d.trim().parse::<usize>()).collect();
        match dims {
            Ok(d) if !d.is_empty() && d.iter().all(|&x| x > 0) => Ok(Shape(d)),
            _ => Err(format!("'{s}' is not a shape like 3x224x224 (positive sizes separated by x)")),
        }
    }
}

/// The stored partition of a model (`partitions/{model}.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartitionFile {
    /// Model name.
    pub model: String,
    /// Node count of the optimized graph.
    pub nodes: usize,
    /// Fingerprint of the optimized graph (node names and ops, input shapes).
    pub fingerprint: String,
    /// Classes whose node costs balanced it.
    pub balanced_on: Vec<String>,
    /// Balance tolerance asked for.
    pub tolerance: f64,
    /// The split.
    pub partition: Partition,
    /// Names of the tensors crossing each cut.
    pub cut_tensors: Vec<Vec<String>>,
    /// Node names where each block starts.
    pub block_starts: Vec<String>,
}

/// A stable text fingerprint of a graph's structure (FNV-1a over node names, ops and input
/// shapes).
pub fn fingerprint(g: &Graph) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0u8]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for &i in g.inputs() {
        eat(&format!("{}{}{:?}", g.value(i).name, g.value(i).dtype, g.value(i).shape));
    }
    for n in g.nodes() {
        eat(&n.name);
        eat(n.op.name());
    }
    format!("{h:016x}")
}
