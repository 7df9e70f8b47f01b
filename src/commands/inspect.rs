//! `poolpipe inspect`: what a model holds (file facts, ops with their support, parameters,
//! `Constant` nodes included) and, when it imports, its layers at batch 1 with output types
//! and shapes, parameters and FLOPs per frame, and the nodes that run on the host.
//!
//! FLOPs count 2 per multiply-accumulate of convolutions and matrix products; elementwise
//! work, pooling and normalisation are not counted (they are small next to them in CNNs).

use std::path::Path;

use anyhow::Result;
use poolpipe_engine::{DType, Graph, onnx};
use serde::Serialize;

use crate::models::{is_model_file, load_model};

/// One layer (node) of the imported graph.
#[derive(Clone, Debug, Serialize)]
pub struct Layer {
    /// Node name.
    pub name: String,
    /// Operation.
    pub op: String,
    /// Output element type (first output).
    pub dtype: DType,
    /// Output shape at batch 1 (first output).
    pub output: Vec<usize>,
    /// Weight values the node reads (its constant inputs).
    pub parameters: u64,
    /// FLOPs per frame.
    pub flops: u64,
}

/// An op type of the file.
#[derive(Clone, Debug, Serialize)]
pub struct OpCount {
    /// ONNX op type (with its domain when not the default one).
    pub op: String,
    /// Nodes of that type.
    pub count: usize,
    /// Whether the importer supports it.
    pub supported: bool,
}

/// What `inspect` reports.
#[derive(Clone, Debug, Serialize)]
pub struct InspectReport {
    /// The model file or built-in name.
    pub model: String,
    /// File facts (ONNX files only).
    pub file: Option<FileFacts>,
    /// Op types with counts and support.
    pub ops: Vec<OpCount>,
    /// Whether the model imports (all ops supported, shapes resolved).
    pub importable: bool,
    /// The import error otherwise.
    pub import_error: Option<String>,
    /// Inputs at batch 1 (after import): name, element type, shape.
    pub inputs: Vec<(String, DType, Vec<usize>)>,
    /// Outputs of the device graph at batch 1 (after import).
    pub outputs: Vec<(String, DType, Vec<usize>)>,
    /// Layers of the (first) device graph at batch 1 (after import).
    pub layers: Vec<Layer>,
    /// The host step after the first device graph, if any: node, op, and the bytes read back
    /// for it at batch 1. The rest of the model is specialised when its outputs are known.
    pub host_step: Option<(String, String, u64)>,
    /// Nodes of op types that run on the host when their inputs come from the data
    /// (NonZero, NonMaxSuppression, Unique, TopK, Range, ConstantOfShape): node, op.
    pub host_capable: Vec<(String, String)>,
    /// Weight values.
    pub parameters: u64,
    /// FLOPs per frame (after import).
    pub flops_per_frame: u64,
}

/// Facts read from an ONNX file without importing it.
#[derive(Clone, Debug, Serialize)]
pub struct FileFacts {
    /// IR version.
    pub ir_version: i64,
    /// Default-domain opset.
    pub opset: i64,
    /// Producer.
    pub producer: String,
    /// Declared inputs with their element types and dimensions (names for symbolic ones).
    pub inputs: Vec<(String, String, Vec<String>)>,
    /// Declared outputs.
    pub outputs: Vec<String>,
}

/// Inspects a model file or built-in model.
pub fn inspect(model: &str, size: usize, input_shape: Option<&[usize]>) -> Result<InspectReport> {
    let mut report = InspectReport {
        model: model.to_string(),
        file: None,
        ops: vec![],
        importable: false,
        import_error: None,
        inputs: vec![],
        outputs: vec![],
        layers: vec![],
        host_step: None,
        host_capable: vec![],
        parameters: 0,
        flops_per_frame: 0,
    };
    if is_model_file(model) {
        let path = Path::new(model);
        if !path.is_file() {
            anyhow::bail!("model file {model} not found");
        }
        // A file that is not ONNX at all is an error; an unsupported one is a report.
        let s = onnx::summarize(path)?;
        report.ops = s
            .ops
            .iter()
            .map(|(op, count, supported)| OpCount { op: op.clone(), count: *count, supported: *supported })
            .collect();
        report.parameters = s.parameters;
        report.host_capable = s.host_capable.clone();
        report.file = Some(FileFacts {
            ir_version: s.ir_version,
            opset: s.opset,
            producer: s.producer,
            inputs: s.inputs,
            outputs: s.outputs,
        });
    }
    match load_model(model, size, 1, input_shape).and_then(|m| Ok(m.first_segment(1)?)) {
        Ok(seg) => {
            fill_layers(&mut report, &seg.graph);
            if let Some(h) = &seg.host {
                report.host_step = Some((h.node.clone(), h.op.name().to_string(), seg.output_bytes()));
            }
            report.importable = true;
        }
        Err(e) if report.file.is_some() => report.import_error = Some(format!("{e:#}")),
        Err(e) => return Err(e),
    }
    Ok(report)
}

fn fill_layers(r: &mut InspectReport, g: &Graph) {
    let io = |ids: &[poolpipe_engine::ValueId]| -> Vec<(String, DType, Vec<usize>)> {
        ids.iter().map(|&v| (g.value(v).name.clone(), g.value(v).dtype, g.value(v).shape.clone())).collect()
    };
    r.inputs = io(g.inputs());
    r.outputs = io(g.outputs());
    for (i, n) in g.nodes().iter().enumerate() {
        let parameters = n.inputs.iter().filter_map(|&v| g.value(v).constant()).map(|t| t.len() as u64).sum();
        r.layers.push(Layer {
            name: n.name.clone(),
            op: n.op.name().to_string(),
            dtype: g.value(n.outputs[0]).dtype,
            output: g.value(n.outputs[0]).shape.clone(),
            parameters,
            flops: 2 * g.node_macs(i),
        });
    }
    r.flops_per_frame = 2 * g.macs();
    if r.file.is_none() {
        r.parameters = g.parameters();
        let mut ops: std::collections::BTreeMap<String, usize> = Default::default();
        for n in g.nodes() {
            *ops.entry(n.op.name().to_string()).or_default() += 1;
        }
        r.ops = ops.into_iter().map(|(op, count)| OpCount { op, count, supported: true }).collect();
    }
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

fn human(v: u64) -> String {
    match v {
        v if v >= 1_000_000_000 => format!("{:.2} G", v as f64 / 1e9),
        v if v >= 1_000_000 => format!("{:.2} M", v as f64 / 1e6),
        v if v >= 1_000 => format!("{:.1} k", v as f64 / 1e3),
        v => v.to_string(),
    }
}

/// The report as text for people.
pub fn render(r: &InspectReport) -> String {
    let mut s = String::new();
    s += &format!("model        {}\n", r.model);
    if let Some(f) = &r.file {
        s += &format!("file         ONNX IR {}, opset {}, producer '{}'\n", f.ir_version, f.opset, f.producer);
        for (n, t, d) in &f.inputs {
            s += &format!("declared in  {n} {t} [{}]\n", d.join(", "));
        }
        s += &format!("declared out {}\n", f.outputs.join(", "));
    }
    s += &format!("parameters   {} ({} values)\n", human(r.parameters), r.parameters);
    s += "ops\n";
    for o in &r.ops {
        s += &format!("  {:<28} {:>5}  {}\n", o.op, o.count, if o.supported { "supported" } else { "NOT SUPPORTED" });
    }
    if let Some(e) = &r.import_error {
        s += &format!("import       fails: {e}\n");
        return s;
    }
    s += &format!(
        "import       ok: {} layers on the device, {}FLOPs per frame\n",
        r.layers.len(),
        human(r.flops_per_frame)
    );
    for (n, t, d) in &r.inputs {
        s += &format!("input        {n} {t} {d:?} at batch 1\n");
    }
    for (n, t, d) in &r.outputs {
        s += &format!("output       {n} {t} {d:?} at batch 1\n");
    }
    match &r.host_step {
        Some((node, op, bytes)) => {
            s += &format!(
                "host         {node} ({op}) runs on the CPU after these layers; {} read back for it at batch 1; \
                 the layers after it are specialised once its outputs are known\n",
                human_bytes(*bytes)
            );
        }
        None => s += "host         none: the whole model runs on the device\n",
    }
    if !r.host_capable.is_empty() {
        let all: Vec<String> = r.host_capable.iter().map(|(n, op)| format!("{n} ({op})")).collect();
        s += &format!("host-capable {}\n", all.join(", "));
    }
    let w = r.layers.iter().map(|l| l.name.len()).max().unwrap_or(4).clamp(4, 40);
    let ow = r.layers.iter().map(|l| l.op.len()).max().unwrap_or(2).max(2);
    s += &format!(
        "\n{:>4}  {:<w$}  {:<ow$}  {:<8} {:<20} {:>10} {:>11}  {:>5}\n",
        "#", "name", "op", "type", "output", "params", "FLOPs", "%"
    );
    let total = r.flops_per_frame.max(1) as f64;
    for (i, l) in r.layers.iter().enumerate() {
        let name: String = if l.name.chars().count() > w {
            format!("{}~", l.name.chars().take(w - 1).collect::<String>())
        } else {
            l.name.clone()
        };
        s += &format!(
            "{:>4}  {:<w$}  {:<ow$}  {:<8} {:<20} {:>10} {:>11}  {:>5.1}\n",
            i,
            name,
            l.op,
            l.dtype.name(),
            format!("{:?}", l.output),
            human(l.parameters),
            human(l.flops),
            100.0 * l.flops as f64 / total
        );
    }
    s
}
/// Show what a model holds: ops (and which are supported), parameters, and per layer at
/// batch 1 the output type and shape, parameters and FLOPs, and the nodes that run on the
/// host.
#[derive(clap::Args, Clone, Debug)]
pub struct InspectArgs {
    /// An .onnx file or a built-in model name.
    pub model: String,
    /// Per-frame input shape for models with symbolic sizes, e.g. 3x224x224.
    #[arg(long, value_name = "CxHxW")]
    pub input_shape: Option<crate::models::Shape>,
    /// Frame size of built-in models.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `poolpipe inspect`.
pub fn command(a: InspectArgs) -> Result<()> {
    let InspectArgs { model, input_shape, size, json } = a;
    let report = inspect(&model, size, input_shape.as_ref().map(|s| s.0.as_slice()))?;
    crate::commands::print_report(&report, json, render)
}
