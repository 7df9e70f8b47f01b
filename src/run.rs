//! `poolpipe run`: compile a model for one device, run batches of synthetic frames, check the
//! result against the CPU reference and report latency and throughput.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use poolpipe_engine::gpu::{AdapterSelector, CompileOptions, Device};
use poolpipe_engine::{Graph, Rng, Tensor, models, reference};
use serde::Serialize;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Built-in model name.
    pub model: String,
    /// Frame height and width.
    pub size: usize,
    /// Batch size.
    pub batch: usize,
    /// Adapter.
    pub device: AdapterSelector,
    /// Timed runs after one warm-up run.
    pub iters: usize,
    /// Compare with the CPU reference.
    pub check: bool,
    /// Seed of weights and frames.
    pub seed: u64,
}

/// The report of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Model name.
    pub model: String,
    /// Adapter name.
    pub device: String,
    /// Backend.
    pub backend: String,
    /// Input shape per frame.
    pub input: Vec<usize>,
    /// Output shapes at the batch.
    pub outputs: Vec<Vec<usize>>,
    /// Batch size.
    pub batch: usize,
    /// Nodes of the graph before / after rewrites, and kernel launches per run.
    pub nodes: usize,
    /// Nodes after batch-norm folding and activation fusion.
    pub fused_nodes: usize,
    /// Kernel launches per run.
    pub dispatches: usize,
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
    /// Largest error against the CPU reference relative to max(1, |reference|), if checked.
    pub max_rel_error: Option<f32>,
    /// Top class of the first frame (classifiers).
    pub top1_first_frame: Option<usize>,
}

/// Tolerance of the reference check (relative error).
pub const CHECK_TOLERANCE: f32 = 1e-3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Builds, compiles and runs the model.
pub fn run_model(o: &RunOptions) -> Result<RunReport> {
    if o.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let graph: Graph = models::builtin(&o.model, o.size, o.seed)?;
    let device = Device::open(&o.device).context("opening the device")?;
    tracing::info!(device = device.name(), model = %o.model, "compiling");
    let mut compiled = device.compile(&graph, &CompileOptions { max_batch: o.batch, ..Default::default() })?;
    let mut rng = Rng::new(o.seed ^ 0xF4A3E5);
    let dims = graph.value(graph.inputs()[0]).dims.clone();
    let frames = Tensor::random([vec![o.batch], dims.clone()].concat(), &mut rng, 0.0, 1.0);
    let inputs = vec![frames];

    let pb = crate::progress((o.iters + 1) as u64, &format!("running {} on {}", o.model, device.name()));
    let (outputs, _) = compiled.run_timed(&inputs)?; // warm-up: first dispatches compile lazily
    pb.inc(1);
    let (mut gpu, mut wall) = (vec![], vec![]);
    for _ in 0..o.iters.max(1) {
        let (_, t) = compiled.run_timed(&inputs)?;
        wall.push(t.wall);
        if let Some(g) = t.gpu {
            gpu.push(g);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let (timing, latency) =
        if gpu.len() == wall.len() { ("gpu-timestamps", median(gpu)) } else { ("wall-clock", median(wall.clone())) };

    let max_rel_error = if o.check {
        let want = reference::run(&graph, &inputs)?;
        let mut worst = 0.0f32;
        for (g, w) in outputs.iter().zip(&want) {
            worst = worst.max(g.max_abs_diff(w) / w.max_abs().max(1.0));
        }
        Some(worst)
    } else {
        None
    };
    let top1 = (outputs[0].shape().len() == 2).then(|| {
        let row = &outputs[0].data()[..outputs[0].shape()[1]];
        row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
    });
    let params: u64 = graph.values().iter().filter_map(|v| v.constant()).map(|t| t.len() as u64).sum();
    let secs = latency.as_secs_f64();
    let report = RunReport {
        model: o.model.clone(),
        device: device.name().to_string(),
        backend: device.adapter().backend.clone(),
        input: dims,
        outputs: outputs.iter().map(|t| t.shape().to_vec()).collect(),
        batch: o.batch,
        nodes: graph.nodes().len(),
        fused_nodes: compiled.graph().nodes().len(),
        dispatches: compiled.dispatch_count(),
        macs_per_frame: graph.macs_per_sample(),
        parameters: params,
        device_bytes: compiled.memory_bytes(),
        timing: timing.to_string(),
        latency_ms: secs * 1e3,
        frames_per_second: o.batch as f64 / secs,
        wall_ms: median(wall).as_secs_f64() * 1e3,
        max_rel_error,
        top1_first_frame: top1,
    };
    if let Some(e) = max_rel_error
        && (e.is_nan() || e > CHECK_TOLERANCE)
    {
        bail!(
            "the GPU result differs from the CPU reference: relative error {e:e} above {CHECK_TOLERANCE:e} on {}",
            report.device
        );
    }
    Ok(report)
}

/// The report as a table for people.
pub fn render(r: &RunReport) -> String {
    let mut s = String::new();
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    s += &format!("model        {} (input {:?}, batch {})\n", r.model, r.input, r.batch);
    s += &format!("device       {} [{}]\n", r.device, r.backend);
    s += &format!(
        "graph        {} nodes, {} after folding/fusion, {} kernel launches per batch\n",
        r.nodes, r.fused_nodes, r.dispatches
    );
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
    s += &format!("outputs      {:?}\n", r.outputs);
    s += &format!(
        "latency      {:.2} ms per batch ({}; {:.2} ms wall with transfers)\n",
        r.latency_ms, r.timing, r.wall_ms
    );
    s += &format!("throughput   {:.1} frames/s\n", r.frames_per_second);
    if let Some(e) = r.max_rel_error {
        s += &format!(
            "check        max relative error {e:.2e} vs CPU reference (tolerance {CHECK_TOLERANCE:.0e}): ok\n"
        );
    }
    if let Some(t) = r.top1_first_frame {
        s += &format!("top-1        class {t} for frame 0\n");
    }
    s
}
