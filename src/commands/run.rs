//! `poolpipe run`: load a model (built-in or ONNX file), compile it for one device, run it on
//! frames (images, tensor files or random), report outputs (top-5 for classifiers), latency
//! and throughput, and check the result against the CPU reference and/or onnxruntime.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use std::sync::Arc;

use poolpipe_engine::gpu::{AdapterSelector, CompileOptions, CompiledModel, Device};
use poolpipe_engine::model::{Dim, Model};
use poolpipe_engine::{DType, Rng, Tensor, npy, onnx, reference};
use serde::Serialize;

use crate::frames::{self, Preset};
use crate::models::{is_model_file, load_model};

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// A built-in model name or the path of an `.onnx` file.
    pub model: String,
    /// Frame height and width of built-in models.
    pub size: usize,
    /// Per-frame input shape (C, H, W) resolving symbolic dimensions of an ONNX model.
    pub input_shape: Option<Vec<usize>>,
    /// Batch size; by default the number of input frames, else 4 (built-in) or 1 (ONNX).
    pub batch: Option<usize>,
    /// Adapter.
    pub device: AdapterSelector,
    /// Timed runs after one warm-up run.
    pub iters: usize,
    /// Compare with the CPU reference; by default on for built-in models, off for ONNX ones.
    pub check: Option<bool>,
    /// Seed of built-in weights and random frames.
    pub seed: u64,
    /// Input files: images (PNG, JPEG, BMP, PNM), `.npy` or `.npz` tensors.
    pub inputs: Vec<PathBuf>,
    /// How image pixels become values.
    pub preset: Preset,
    /// Where to write the outputs (`.npy` for one output, `.npz` for any number).
    pub output: Option<PathBuf>,
    /// Run onnxruntime on the same inputs and compare.
    pub compare_ort: bool,
}

/// A model input as run.
#[derive(Clone, Debug, Serialize)]
pub struct InputReport {
    /// The model's name for it.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape at the batch.
    pub shape: Vec<usize>,
    /// Where the values came from: "random" or the files.
    pub from: String,
}

/// A model output with simple statistics.
#[derive(Clone, Debug, Serialize)]
pub struct OutputReport {
    /// The model's name for it.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape at the batch.
    pub shape: Vec<usize>,
    /// Smallest, largest and mean value.
    pub min: f32,
    /// Largest value.
    pub max: f32,
    /// Mean value.
    pub mean: f32,
}

/// One of the top classes of a frame.
#[derive(Clone, Debug, Serialize)]
pub struct TopClass {
    /// Class index.
    pub class: usize,
    /// The model's output value.
    pub score: f32,
    /// Softmax of the scores (equal to the score when the model ends in a softmax).
    pub probability: f32,
}

/// The comparison of one output with onnxruntime.
#[derive(Clone, Debug, Serialize)]
pub struct OrtComparison {
    /// Output name.
    pub name: String,
    /// Largest absolute difference.
    pub max_abs_error: f32,
    /// That difference relative to the largest |onnxruntime value|.
    pub rel_error: f32,
    /// Whether the output agrees ([`agrees`]).
    pub ok: bool,
}

/// The report of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Model name (built-in) or file.
    pub model: String,
    /// "builtin" or "onnx".
    pub source: String,
    /// Adapter name.
    pub device: String,
    /// Backend.
    pub backend: String,
    /// Batch size.
    pub batch: usize,
    /// Inputs.
    pub inputs: Vec<InputReport>,
    /// Outputs.
    pub outputs: Vec<OutputReport>,
    /// Nodes of the device graphs at this batch (after constant folding).
    pub nodes: usize,
    /// Nodes after batch-norm folding and activation fusion.
    pub fused_nodes: usize,
    /// Kernel launches per run.
    pub dispatches: usize,
    /// Time to compile the graphs of this batch (at its first run), milliseconds.
    pub compile_ms: f64,
    /// Nodes run on the host between device graphs (output shapes that depend on the data):
    /// (node, op).
    pub host_nodes: Vec<(String, String)>,
    /// Bytes read back from the device and uploaded again for the host nodes, per batch.
    pub host_bytes: (u64, u64),
    /// Multiply-accumulates per frame.
    pub macs_per_frame: u64,
    /// Weights (f32 values).
    pub parameters: u64,
    /// Activation arena and constants on the device, bytes.
    pub device_bytes: (u64, u64),
    /// How latency was measured: "gpu-timestamps" or "wall-clock".
    pub timing: String,
    /// Median latency of a batch, milliseconds.
    pub latency_ms: f64,
    /// Frames per second at that latency.
    pub frames_per_second: f64,
    /// Median wall-clock of a batch including upload and read-back, milliseconds.
    pub wall_ms: f64,
    /// Largest error against the CPU reference relative to the largest |reference value|.
    pub max_rel_error: Option<f32>,
    /// Largest absolute error against the CPU reference.
    pub max_abs_error: Option<f32>,
    /// Whether every output agrees with the CPU reference ([`agrees`]).
    pub check_ok: Option<bool>,
    /// Per-output comparison with onnxruntime (`--compare-ort`).
    pub onnxruntime: Option<Vec<OrtComparison>>,
    /// Top-5 classes per frame, for classifiers (first output of shape [N, classes]).
    pub top5: Option<Vec<Vec<TopClass>>>,
    /// The file the outputs were written to.
    pub output_file: Option<String>,
    /// Checks that failed (the command then exits with an error after the report).
    pub failures: Vec<String>,
}

/// Tolerance of the reference and onnxruntime checks: the largest absolute error relative to
/// the largest absolute oracle value.
pub const CHECK_TOLERANCE: f32 = 1e-3;

/// Absolute tolerance of the same checks: an output whose values are all tiny (a detector's
/// score map with nothing found, ~1e-6) agrees when no element is off by more than this,
/// whatever the relative error.
pub const CHECK_ABS_TOLERANCE: f32 = 1e-6;

/// Whether an output agrees with its oracle: relative error within [`CHECK_TOLERANCE`] or
/// absolute error within [`CHECK_ABS_TOLERANCE`] (NaN never agrees).
pub fn agrees(max_abs: f32, rel: f32) -> bool {
    !(max_abs.is_nan() || rel.is_nan()) && (rel <= CHECK_TOLERANCE || max_abs <= CHECK_ABS_TOLERANCE)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The error measures of every check: max |got - want|, and that relative to max |want|
/// (floor 1e-6).
pub fn errors(got: &Tensor, want: &Tensor) -> (f32, f32) {
    let abs = got.max_abs_diff(want);
    (abs, abs / want.max_abs().max(1e-6))
}

/// The dimensions after the batch of each model input: known sizes, or None for symbolic ones
/// (taken from the given tensors).
fn sample_dims(model: &Model, input_shape: Option<&[usize]>) -> Vec<Vec<Option<usize>>> {
    model
        .signature()
        .inputs
        .iter()
        .enumerate()
        .map(|(k, spec)| {
            spec.dims
                .iter()
                .skip(1)
                .enumerate()
                .map(|(i, d)| match d {
                    Dim::Fixed(n) => Some(*n),
                    _ if k == 0 => input_shape.and_then(|s| s.get(i).copied()),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Builds the input tensors at the batch.
fn build_inputs(
    model: &Model,
    o: &RunOptions,
    input_shape: Option<&[usize]>,
    default_batch: usize,
) -> Result<(Vec<Tensor>, Vec<InputReport>)> {
    let sig = model.signature();
    let names: Vec<String> = sig.inputs.iter().map(|i| i.name.clone()).collect();
    let dtypes: Vec<DType> = sig.inputs.iter().map(|i| i.dtype).collect();
    let dims = sample_dims(model, input_shape);
    if let Some(b) = o.batch
        && b == 0
    {
        bail!("--batch must be at least 1");
    }
    let report = |tensors: &[Tensor], from: &str| -> Vec<InputReport> {
        names
            .iter()
            .zip(tensors)
            .map(|(n, t)| InputReport {
                name: n.clone(),
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
                from: from.into(),
            })
            .collect()
    };
    if o.inputs.is_empty() {
        let batch = o.batch.unwrap_or(default_batch);
        let mut rng = Rng::new(o.seed ^ 0xF4A3E5);
        let mut tensors = vec![];
        for ((n, d), &dtype) in names.iter().zip(&dims).zip(&dtypes) {
            let Some(d) = d.iter().copied().collect::<Option<Vec<usize>>>() else {
                bail!(
                    "input '{n}' has symbolic dimensions; give its shape (--input-shape for the first input) or an input file"
                );
            };
            // Floats uniform in [0, 1); integers 0 or 1; bools fair coins.
            tensors.push(Tensor::random_of(dtype, [vec![batch], d].concat(), &mut rng, 0.0, 1.0));
        }
        let reports = report(&tensors, "random");
        return Ok((tensors, reports));
    }
    let files = o.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let per_input: Vec<Tensor> = if names.len() == 1 {
        let mut frames_list = Vec::new();
        for p in &o.inputs {
            frames_list.push(read_frames(p, &names[0], &dims[0], dtypes[0], o.preset)?);
        }
        vec![frames::stack(&frames_list)?]
    } else {
        let [p] = o.inputs.as_slice() else {
            bail!(
                "the model has {} inputs ({}): give one .npz file holding an array per input name",
                names.len(),
                names.join(", ")
            );
        };
        if !has_ext(p, "npz") {
            bail!(
                "the model has {} inputs ({}): give one .npz file holding an array per input name",
                names.len(),
                names.join(", ")
            );
        }
        let arrays = npy::read_npz(p)?;
        names
            .iter()
            .zip(&dims)
            .zip(&dtypes)
            .map(|((n, d), &dtype)| {
                let t = arrays.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone()).with_context(|| {
                    format!("{} has no array named '{n}' (it holds: {})", p.display(), keys(&arrays))
                })?;
                frames::tensor_frames(p, t, d, dtype)
            })
            .collect::<Result<_>>()?
    };
    let n = per_input[0].shape()[0];
    if per_input.iter().any(|t| t.shape()[0] != n) {
        bail!("the arrays in {files} hold different numbers of frames; give the same number for every input");
    }
    let tensors = match o.batch {
        None => per_input,
        Some(b) if b == n => per_input,
        Some(b) if n == 1 => per_input.iter().map(|t| frames::repeat(t, b)).collect::<Result<_>>()?,
        Some(b) => {
            bail!("--batch {b} but the inputs ({files}) hold {n} frames; drop --batch or give one frame to repeat")
        }
    };
    let reports = report(&tensors, &files);
    Ok((tensors, reports))
}

fn keys(arrays: &[(String, Tensor)]) -> String {
    arrays.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
}

/// One input file as frames [n, dims...] of the model input `name`.
fn read_frames(p: &Path, name: &str, dims: &[Option<usize>], dtype: DType, preset: Preset) -> Result<Tensor> {
    if frames::is_image(p) {
        let Some(d) = dims.iter().copied().collect::<Option<Vec<usize>>>() else {
            bail!("input '{name}' has symbolic dimensions; give its shape with --input-shape to fit an image to it");
        };
        if !dtype.is_float() {
            bail!("input '{name}' takes {dtype} values; images feed float inputs only");
        }
        Ok(frames::image_frame(p, &d, preset)?.cast(dtype))
    } else if has_ext(p, "npy") {
        frames::tensor_frames(p, npy::read(p)?, dims, dtype)
    } else if has_ext(p, "pb") {
        // A serialised ONNX TensorProto, as ONNX's test data is stored.
        frames::tensor_frames(p, onnx::read_tensor(p)?, dims, dtype)
    } else if has_ext(p, "npz") {
        let arrays = npy::read_npz(p)?;
        let t = match arrays.iter().find(|(k, _)| k == name) {
            Some((_, t)) => t.clone(),
            None if arrays.len() == 1 => arrays[0].1.clone(),
            None => bail!("{} holds several arrays ({}) and none named '{name}'", p.display(), keys(&arrays)),
        };
        frames::tensor_frames(p, t, dims, dtype)
    } else {
        bail!(
            "{}: unknown input kind; give an image (.png, .jpg, .bmp, .ppm) or a tensor (.npy, .npz, or .pb: an ONNX TensorProto)",
            p.display()
        )
    }
}

/// Checks `--output` before any work is done.
fn check_output_path(p: &Path, outputs: usize) -> Result<()> {
    if has_ext(p, "npy") {
        if outputs != 1 {
            bail!("the model has {outputs} outputs; --output needs an .npz file to hold them all ({})", p.display());
        }
    } else if !has_ext(p, "npz") {
        bail!("--output {}: give a .npy (one output) or .npz (any number) file", p.display());
    }
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        bail!("--output {}: the folder {} does not exist", p.display(), dir.display());
    }
    Ok(())
}

/// Builds, compiles and runs the model.
pub fn run_model(o: &RunOptions) -> Result<RunReport> {
    let onnx_model = is_model_file(&o.model);
    if o.compare_ort && !onnx_model {
        bail!("--compare-ort needs an ONNX model file; built-in models are checked against the CPU reference");
    }
    let input_shape = o.input_shape.clone();
    let model = Arc::new(load_model(&o.model, o.size, o.seed, input_shape.as_deref())?);
    let sig = model.signature().clone();
    if let Some(p) = &o.output {
        check_output_path(p, sig.outputs.len())?;
    }
    let (inputs, input_reports) = build_inputs(&model, o, input_shape.as_deref(), if onnx_model { 1 } else { 4 })?;
    let batch = inputs.first().map_or(1, |t| t.shape().first().copied().unwrap_or(1));
    let device = Device::open(&o.device).context("opening the device")?;
    tracing::info!(device = device.name(), model = %o.model, batch, "compiling");
    let mut compiled = CompiledModel::new(&device, model.clone(), CompileOptions::default());

    let check = o.check.unwrap_or(!onnx_model);
    let extra = u64::from(check) + u64::from(o.compare_ort);
    let pb = crate::progress(o.iters.max(1) as u64 + 1 + extra, &format!("compiling and running on {}", device.name()));
    // The first run compiles this batch's graphs (and lavapipe compiles pipelines lazily).
    let first = compiled.run_full(&inputs)?;
    let outputs = first.outputs.clone();
    pb.inc(1);
    pb.set_message(format!("running on {}", device.name()));
    let (mut gpu, mut wall) = (vec![], vec![]);
    for _ in 0..o.iters.max(1) {
        let r = compiled.run_full(&inputs)?;
        wall.push(r.wall);
        if let Some(g) = r.gpu {
            gpu.push(g);
        }
        pb.inc(1);
    }
    let (timing, latency) =
        if gpu.len() == wall.len() { ("gpu-timestamps", median(gpu)) } else { ("wall-clock", median(wall.clone())) };
    let stats = compiled.last_run_stats();

    let out_names: Vec<String> = sig.outputs.iter().map(|o| o.name.clone()).collect();
    let mut failures = vec![];
    let (max_rel_error, max_abs_error, check_ok) = if check {
        pb.set_message("checking against the CPU reference");
        let want = reference::run_model(&model, &inputs)?;
        pb.inc(1);
        let worst = |a: f32, e: f32| if a.is_nan() || e.is_nan() { f32::NAN } else { a.max(e) };
        let (mut rel, mut abs, mut ok) = (0.0f32, 0.0f32, true);
        for ((g, w), name) in outputs.iter().zip(&want).zip(&out_names) {
            let (a, e) = errors(g, w);
            if !agrees(a, e) {
                ok = false;
                failures.push(format!(
                    "output '{name}': the GPU result differs from the CPU reference: relative error {e:e} above {CHECK_TOLERANCE:e} and absolute error {a:e} above {CHECK_ABS_TOLERANCE:e}"
                ));
            }
            rel = worst(rel, e);
            abs = worst(abs, a);
        }
        (Some(rel), Some(abs), Some(ok))
    } else {
        (None, None, None)
    };
    let onnxruntime = if o.compare_ort {
        pb.set_message("running onnxruntime");
        let named: Vec<(String, Tensor)> =
            input_reports.iter().map(|r| r.name.clone()).zip(inputs.iter().cloned()).collect();
        let theirs = crate::oracle::run_onnxruntime(Path::new(&o.model), &named)?;
        pb.inc(1);
        let mut cmp = vec![];
        for (k, (name, ours)) in out_names.iter().zip(&outputs).enumerate() {
            let want = theirs
                .iter()
                .find(|(n, _)| n == name)
                .or(theirs.get(k))
                .map(|(_, t)| t)
                .with_context(|| format!("onnxruntime returned no output '{name}'"))?;
            let ours = ours.clone().reshaped(want.shape().to_vec()).map_err(|_| {
                anyhow::anyhow!("output '{name}': shape {:?} here, {:?} in onnxruntime", ours.shape(), want.shape())
            })?;
            let (a, e) = errors(&ours, want);
            let ok = agrees(a, e);
            if !ok {
                failures.push(format!(
                    "output '{name}' differs from onnxruntime: relative error {e:e} above {CHECK_TOLERANCE:e} and absolute error {a:e} above {CHECK_ABS_TOLERANCE:e}"
                ));
            }
            cmp.push(OrtComparison { name: name.clone(), max_abs_error: a, rel_error: e, ok });
        }
        Some(cmp)
    } else {
        None
    };
    pb.finish_and_clear();

    if let Some(p) = &o.output {
        let named: Vec<(String, Tensor)> = out_names.iter().cloned().zip(outputs.iter().cloned()).collect();
        if has_ext(p, "npy") { npy::write(p, &outputs[0])? } else { npy::write_npz(p, &named)? }
    }
    let secs = latency.as_secs_f64();
    // Work per frame: the device graphs at batch 1 (the first one when host nodes follow).
    let one = model.first_segment(1).ok();
    Ok(RunReport {
        model: o.model.clone(),
        source: if onnx_model { "onnx" } else { "builtin" }.into(),
        device: device.name().to_string(),
        backend: device.adapter().backend.clone(),
        batch,
        inputs: input_reports,
        outputs: out_names.iter().zip(&outputs).map(|(n, t)| output_report(n, t)).collect(),
        nodes: stats.nodes,
        fused_nodes: stats.fused_nodes,
        dispatches: stats.dispatches,
        compile_ms: first.compiled.as_secs_f64() * 1e3,
        host_nodes: first.host.steps.clone(),
        host_bytes: (first.host.to_host, first.host.to_device),
        macs_per_frame: one.as_ref().map_or(0, |s| s.graph.macs()),
        parameters: one.as_ref().map_or(0, |s| s.graph.parameters()),
        device_bytes: stats.device_bytes,
        timing: timing.to_string(),
        latency_ms: secs * 1e3,
        frames_per_second: batch as f64 / secs,
        wall_ms: median(wall).as_secs_f64() * 1e3,
        max_rel_error,
        max_abs_error,
        check_ok,
        onnxruntime,
        top5: outputs.first().and_then(top5),
        output_file: o.output.as_ref().map(|p| p.display().to_string()),
        failures,
    })
}

fn output_report(name: &str, t: &Tensor) -> OutputReport {
    let d = t.to_f64s();
    let (min, max) = d.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let mean = d.iter().sum::<f64>() / d.len().max(1) as f64;
    OutputReport {
        name: name.to_string(),
        dtype: t.dtype(),
        shape: t.shape().to_vec(),
        min: min as f32,
        max: max as f32,
        mean: mean as f32,
    }
}

/// Top-5 per frame when the output looks like class scores: [N, K] or [N, K, 1, 1], K >= 2.
fn top5(t: &Tensor) -> Option<Vec<Vec<TopClass>>> {
    let t = t.as_f32().map(|_| t)?;
    let s = t.shape();
    let k = match s {
        [_, k] => *k,
        [_, k, 1, 1] => *k,
        _ => return None,
    };
    if k < 2 {
        return None;
    }
    Some(
        t.data()
            .chunks(k)
            .map(|row| {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                let z: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
                let mut idx: Vec<usize> = (0..k).collect();
                idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                idx.iter()
                    .take(5)
                    .map(|&c| TopClass {
                        class: c,
                        score: row[c],
                        probability: (((row[c] - m) as f64).exp() / z) as f32,
                    })
                    .collect()
            })
            .collect(),
    )
}

/// The report as a table for people.
pub fn render(r: &RunReport) -> String {
    let mut s = String::new();
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    s += &format!("model        {} ({}, batch {})\n", r.model, r.source, r.batch);
    for i in &r.inputs {
        s += &format!("input        {} {} {:?} from {}\n", i.name, i.dtype, i.shape, i.from);
    }
    s += &format!("device       {} [{}]\n", r.device, r.backend);
    s += &format!(
        "graph        {} nodes, {} after folding/fusion, {} kernel launches per batch\n",
        r.nodes, r.fused_nodes, r.dispatches
    );
    s += &format!("compile      {:.1} ms for batch {} (once per batch size)\n", r.compile_ms, r.batch);
    if !r.host_nodes.is_empty() {
        let nodes: Vec<String> = r.host_nodes.iter().map(|(n, op)| format!("{n} ({op})")).collect();
        s += &format!(
            "host         {} run on the CPU; {:.1} KiB read back, {:.1} KiB uploaded per batch\n",
            nodes.join(", "),
            r.host_bytes.0 as f64 / 1024.0,
            r.host_bytes.1 as f64 / 1024.0
        );
    }
    s += &format!(
        "work         {:.1} MMAC per frame, {:.2} M parameters\n",
        r.macs_per_frame as f64 / 1e6,
        r.parameters as f64 / 1e6
    );
    s += &format!(
        "memory       {:.1} MiB activations, {:.1} MiB weights on the device\n",
        mb(r.device_bytes.0),
        mb(r.device_bytes.1)
    );
    for o in &r.outputs {
        s += &format!(
            "output       {} {} {:?}  min {:.4} max {:.4} mean {:.4}\n",
            o.name, o.dtype, o.shape, o.min, o.max, o.mean
        );
    }
    s += &format!(
        "latency      {:.2} ms per batch ({}; {:.2} ms wall with transfers)\n",
        r.latency_ms, r.timing, r.wall_ms
    );
    s += &format!("throughput   {:.1} frames/s\n", r.frames_per_second);
    let verdict = |ok: bool| if ok { "ok" } else { "FAILED" };
    if let (Some(e), Some(a), Some(ok)) = (r.max_rel_error, r.max_abs_error, r.check_ok) {
        s += &format!(
            "check        relative error {e:.2e}, max abs error {a:.2e} vs CPU reference (tolerance {CHECK_TOLERANCE:.0e} relative or {CHECK_ABS_TOLERANCE:.0e} absolute): {}\n",
            verdict(ok)
        );
    }
    for c in r.onnxruntime.iter().flatten() {
        s += &format!(
            "onnxruntime  {}: max abs error {:.2e}, relative {:.2e} (tolerance {CHECK_TOLERANCE:.0e} relative or {CHECK_ABS_TOLERANCE:.0e} absolute): {}\n",
            c.name,
            c.max_abs_error,
            c.rel_error,
            verdict(c.ok)
        );
    }
    if let Some(top) = &r.top5 {
        const SHOWN: usize = 8;
        for (f, row) in top.iter().enumerate().take(SHOWN) {
            let items: Vec<String> =
                row.iter().map(|c| format!("{} ({:.3}, p {:.3})", c.class, c.score, c.probability)).collect();
            s += &format!("top-5        frame {f}: {}\n", items.join("  "));
        }
        if top.len() > SHOWN {
            s += &format!("top-5        ... {} more frames (--json or --output for all)\n", top.len() - SHOWN);
        }
    }
    if let Some(f) = &r.output_file {
        s += &format!("written      {f}\n");
    }
    s
}

/// Run a model (built-in or ONNX file) on one device: outputs, top-5 for classifiers,
/// latency and throughput, optionally checked against the CPU reference or onnxruntime.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Built-in model (resnet-mini, mobilenet-mini, segnet-mini) or the path of an .onnx file.
    #[arg(value_name = "MODEL")]
    pub model_arg: Option<String>,
    /// Same as MODEL (kept for scripts).
    #[arg(long, conflicts_with = "model_arg")]
    pub model: Option<String>,
    /// Input file, repeatable: an image (PNG, JPEG, BMP, PNM; fitted and normalised per
    /// --preset), a tensor of one frame [C,H,W] or N frames [N,C,H,W] (.npy, or .pb: a
    /// serialised ONNX TensorProto) of the input's element type (float16/32/64, integers,
    /// bool; other float types convert), or a .npz with one array per model input.
    /// Random frames when absent.
    #[arg(long, value_name = "FILE")]
    pub input: Vec<std::path::PathBuf>,
    /// How image pixels become values.
    #[arg(long, value_enum, default_value = "imagenet")]
    pub preset: Preset,
    /// Per-frame input shape for ONNX models with symbolic sizes, e.g. 3x224x224 (taken
    /// from the input tensors when absent).
    #[arg(long, value_name = "CxHxW")]
    pub input_shape: Option<crate::models::Shape>,
    /// Frame height and width of built-in models.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Frames per batch [default: the number of input frames, else 4 for built-in models
    /// and 1 for ONNX files]; a single input frame is repeated to fill it.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Adapter: an index from `poolpipe devices`, a name substring, vendor:NAME or type:cpu.
    #[arg(long, default_value = "default")]
    pub device: AdapterSelector,
    /// Timed runs after one warm-up.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Compare with the CPU reference (default for built-in models).
    #[arg(long, conflicts_with = "no_check")]
    pub check: bool,
    /// Skip the comparison with the CPU reference.
    #[arg(long)]
    pub no_check: bool,
    /// Also run onnxruntime (python3) on the same inputs and print the error.
    #[arg(long)]
    pub compare_ort: bool,
    /// Write the outputs: .npy (one output) or .npz (every output, by the model's names).
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Seed of built-in weights and random frames.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `poolpipe run`.
pub fn command(a: RunArgs) -> Result<()> {
    let RunArgs {
        model_arg,
        model,
        input,
        preset,
        input_shape,
        size,
        batch,
        device,
        iters,
        check,
        no_check,
        compare_ort,
        output,
        seed,
        json,
    } = a;
    let opts = RunOptions {
        model: model_arg.or(model).unwrap_or_else(|| "resnet-mini".into()),
        size,
        input_shape: input_shape.map(|s| s.0),
        batch,
        device,
        iters,
        check: if check {
            Some(true)
        } else if no_check {
            Some(false)
        } else {
            None
        },
        seed,
        inputs: input,
        preset,
        output,
        compare_ort,
    };
    let report = run_model(&opts)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report));
    }
    if !report.failures.is_empty() {
        anyhow::bail!("{} on {}", report.failures.join("; "), report.device);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_agrees_within_the_relative_or_the_absolute_tolerance() {
        let want = Tensor::new(vec![4], vec![2e-6, 1e-6, 0.0, 3e-7]).unwrap();
        // 3% off relative, but every element within 1e-7: agrees.
        let got = Tensor::new(vec![4], vec![2.06e-6, 1e-6, 0.0, 3e-7]).unwrap();
        let (a, e) = errors(&got, &want);
        assert!(e > CHECK_TOLERANCE && a < CHECK_ABS_TOLERANCE && agrees(a, e));
        // Large values: the relative tolerance decides.
        let want = Tensor::new(vec![2], vec![100.0, -50.0]).unwrap();
        let close = Tensor::new(vec![2], vec![100.05, -50.0]).unwrap();
        let far = Tensor::new(vec![2], vec![100.5, -50.0]).unwrap();
        let (a, e) = errors(&close, &want);
        assert!(agrees(a, e));
        let (a, e) = errors(&far, &want);
        assert!(!agrees(a, e));
        assert!(!agrees(f32::NAN, 0.0) && !agrees(0.0, f32::NAN));
    }
}
