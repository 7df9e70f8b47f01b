//! `poolpipe bench kernels`: GFLOP/s of the convolution and matrix kernels on shapes typical
//! of ResNet-50 and MobileNetV2, each against the naive one-output-per-invocation kernel
//! measured in the same run on the same device (the ratio is the speed-up).

use std::time::Duration;

use anyhow::{Context, Result};
use poolpipe_engine::gpu::{AdapterSelector, CompileOptions, CompiledGraph, Device};
use poolpipe_engine::{ConvAttrs, GemmAttrs, Graph, GraphBuilder, Rng, Tensor};
use serde::Serialize;

/// One benchmark shape.
#[derive(Clone, Debug)]
pub struct KernelShape {
    /// Name shown in the report.
    pub name: &'static str,
    /// Which kernel family it exercises.
    pub kind: &'static str,
    /// Batch.
    pub batch: usize,
    /// (C, H, W) input for convolutions; (K, 0, 0) for Gemm.
    pub input: [usize; 3],
    /// Output channels (or Gemm columns).
    pub out: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Groups (C for depthwise).
    pub groups: usize,
}

/// The shapes measured: ResNet-50 and MobileNetV2 layers at 224x224, and their FC layers.
pub fn shapes() -> Vec<KernelShape> {
    let conv = |name, kind, c, hw, out, k, stride, groups| KernelShape {
        name,
        kind,
        batch: 1,
        input: [c, hw, hw],
        out,
        k,
        stride,
        groups,
    };
    vec![
        conv("resnet50 stem 7x7/2 3->64 @224", "conv 7x7 strided", 3, 224, 64, 7, 2, 1),
        conv("resnet50 3x3 64->64 @56", "conv 3x3", 64, 56, 64, 3, 1, 1),
        conv("resnet50 3x3/2 128->128 @56", "conv 3x3 strided", 128, 56, 128, 3, 2, 1),
        conv("resnet50 1x1 256->64 @56", "conv 1x1", 256, 56, 64, 1, 1, 1),
        conv("resnet50 1x1 1024->256 @14", "conv 1x1", 1024, 14, 256, 1, 1, 1),
        conv("mobilenetv2 1x1 24->144 @56", "conv 1x1", 24, 56, 144, 1, 1, 1),
        conv("mobilenetv2 dw 3x3 144 @56", "depthwise 3x3", 144, 56, 144, 3, 1, 144),
        conv("mobilenetv2 dw 3x3/2 144 @56", "depthwise 3x3 strided", 144, 56, 144, 3, 2, 144),
        KernelShape {
            name: "resnet50 fc 2048->1000 batch 8",
            kind: "gemm",
            batch: 8,
            input: [2048, 0, 0],
            out: 1000,
            k: 0,
            stride: 1,
            groups: 1,
        },
        KernelShape {
            name: "mobilenetv2 fc 1280->1000 batch 8",
            kind: "gemm",
            batch: 8,
            input: [1280, 0, 0],
            out: 1000,
            k: 0,
            stride: 1,
            groups: 1,
        },
    ]
}

impl KernelShape {
    /// The shape with its spatial size divided by `div` (quick runs on slow devices).
    pub fn scaled(mut self, div: usize) -> Self {
        if self.kind != "gemm" {
            self.input[1] = (self.input[1] / div).max(self.k);
            self.input[2] = (self.input[2] / div).max(self.k);
        }
        self
    }

    fn graph(&self, rng: &mut Rng) -> Result<Graph> {
        let mut g = GraphBuilder::new(self.name);
        let y = if self.kind == "gemm" {
            let x = g.input("x", &[self.batch, self.input[0]]);
            let w = g.constant("w", Tensor::random(vec![self.out, self.input[0]], rng, -0.1, 0.1));
            let b = g.constant("b", Tensor::random(vec![self.out], rng, -0.1, 0.1));
            g.gemm("gemm", x, w, Some(b), GemmAttrs { trans_b: true, ..Default::default() })?
        } else {
            let x = g.input("x", &[self.batch, self.input[0], self.input[1], self.input[2]]);
            let cg = self.input[0] / self.groups;
            let w = g.constant("w", Tensor::random(vec![self.out, cg, self.k, self.k], rng, -0.1, 0.1));
            let b = g.constant("b", Tensor::random(vec![self.out], rng, -0.1, 0.1));
            let p = self.k / 2;
            let attrs = ConvAttrs {
                stride: vec![self.stride; 2],
                pads: vec![p; 4],
                groups: self.groups,
                activation: Some(poolpipe_engine::Activation::Relu),
                ..Default::default()
            };
            g.conv("conv", x, w, Some(b), attrs)?
        };
        g.output(y);
        Ok(g.build()?)
    }

    /// Floating-point operations of one run (2 per multiply-accumulate).
    pub fn flops(&self, g: &Graph) -> f64 {
        2.0 * g.macs() as f64
    }
}

/// Result for one shape.
#[derive(Clone, Debug, Serialize)]
pub struct KernelResult {
    /// Shape name.
    pub name: String,
    /// Kernel family.
    pub kind: String,
    /// Input (C, H, W) or (K) as measured.
    pub input: Vec<usize>,
    /// Floating-point operations per run.
    pub flops: f64,
    /// Median time of the real kernel, ms.
    pub tiled_ms: f64,
    /// Median time of the naive baseline, ms.
    pub naive_ms: f64,
    /// GFLOP/s of the real kernel.
    pub tiled_gflops: f64,
    /// GFLOP/s of the naive baseline.
    pub naive_gflops: f64,
    /// naive time / real time.
    pub speedup: f64,
    /// Largest difference between the two kernels' outputs (they must agree).
    pub max_abs_diff: f32,
}

/// The whole benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct KernelReport {
    /// Adapter name.
    pub device: String,
    /// Backend.
    pub backend: String,
    /// Device type.
    pub device_type: String,
    /// "gpu-timestamps" or "wall-clock".
    pub timing: String,
    /// Timed runs per kernel (median taken).
    pub iters: usize,
    /// Spatial divisor applied to the shapes (1 = real sizes).
    pub scale_divisor: usize,
    /// Invocations per workgroup of both kernels.
    pub workgroup_size: u32,
    /// Per shape.
    pub results: Vec<KernelResult>,
    /// Geometric mean of the speed-ups.
    pub geomean_speedup: f64,
}

fn time(c: &mut CompiledGraph, inputs: &[Tensor], iters: usize) -> Result<(Duration, Vec<Tensor>, bool)> {
    let (out, _) = c.run_timed(inputs)?; // warm-up: pipelines are compiled lazily by some drivers
    let mut v = vec![];
    let mut gpu = true;
    for _ in 0..iters.max(1) {
        let (_, t) = c.run_timed(inputs)?;
        gpu &= t.gpu.is_some();
        v.push(t.gpu.unwrap_or(t.wall));
    }
    v.sort();
    Ok((v[v.len() / 2], out, gpu))
}

/// Runs the kernel benchmark on one device.
pub fn kernels(
    sel: &AdapterSelector,
    iters: usize,
    divisor: usize,
    only: Option<&str>,
    workgroup_size: u32,
) -> Result<KernelReport> {
    let device = Device::open(sel).context("opening the device")?;
    let shapes: Vec<KernelShape> = shapes()
        .into_iter()
        .filter(|s| only.is_none_or(|o| s.name.contains(o) || s.kind.contains(o)))
        .map(|s| s.scaled(divisor.max(1)))
        .collect();
    anyhow::ensure!(!shapes.is_empty(), "no benchmark shape matches {:?}", only.unwrap_or(""));
    let pb = crate::progress(shapes.len() as u64, &format!("kernels on {}", device.name()));
    let mut rng = Rng::new(1);
    let mut results = vec![];
    let mut all_gpu = true;
    for s in &shapes {
        pb.set_message(s.name.to_string());
        let g = s.graph(&mut rng)?;
        let input = Tensor::random(g.value(g.inputs()[0]).shape.clone(), &mut rng, -1.0, 1.0);
        let inputs = vec![input];
        let opts = CompileOptions { workgroup_size, ..Default::default() };
        let mut tiled = device.compile(&g, &opts)?;
        let mut naive = device.compile(&g, &CompileOptions { naive_kernels: true, ..opts })?;
        let (tt, out_t, gpu_t) = time(&mut tiled, &inputs, iters)?;
        let (tn, out_n, gpu_n) = time(&mut naive, &inputs, iters)?;
        all_gpu &= gpu_t && gpu_n;
        let flops = s.flops(&g);
        let gf = |d: Duration| flops / d.as_secs_f64() / 1e9;
        results.push(KernelResult {
            name: s.name.to_string(),
            kind: s.kind.to_string(),
            input: if s.kind == "gemm" { vec![s.input[0]] } else { s.input.to_vec() },
            flops,
            tiled_ms: tt.as_secs_f64() * 1e3,
            naive_ms: tn.as_secs_f64() * 1e3,
            tiled_gflops: gf(tt),
            naive_gflops: gf(tn),
            speedup: tn.as_secs_f64() / tt.as_secs_f64(),
            max_abs_diff: out_t[0].max_abs_diff(&out_n[0]),
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    let geomean = (results.iter().map(|r| r.speedup.ln()).sum::<f64>() / results.len() as f64).exp();
    let a = device.adapter();
    Ok(KernelReport {
        device: a.name.clone(),
        backend: a.backend.clone(),
        device_type: a.device_type.clone(),
        timing: if all_gpu { "gpu-timestamps" } else { "wall-clock" }.into(),
        iters,
        scale_divisor: divisor.max(1),
        workgroup_size,
        results,
        geomean_speedup: geomean,
    })
}

/// The report as a table.
pub fn render(r: &KernelReport) -> String {
    let mut s = format!(
        "device {} [{} {}], timing: {}, median of {} runs, workgroups of {}{}\n\n",
        r.device,
        r.backend,
        r.device_type,
        r.timing,
        r.iters,
        r.workgroup_size,
        if r.scale_divisor > 1 { format!(", spatial sizes / {}", r.scale_divisor) } else { String::new() }
    );
    s += &format!(
        "{:<36} {:>9} {:>10} {:>10} {:>10} {:>10} {:>8}\n",
        "shape", "MFLOP", "tiled ms", "naive ms", "tiled GF/s", "naive GF/s", "speedup"
    );
    for x in &r.results {
        s += &format!(
            "{:<36} {:>9.1} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>7.2}x\n",
            x.name,
            x.flops / 1e6,
            x.tiled_ms,
            x.naive_ms,
            x.tiled_gflops,
            x.naive_gflops,
            x.speedup
        );
    }
    s += &format!("\ngeometric mean speed-up over the naive kernels: {:.2}x\n", r.geomean_speedup);
    s
}
/// GFLOP/s of conv and GEMM kernels on ResNet-50 / MobileNetV2 shapes, against naive
/// one-output-per-invocation kernels measured in the same run.
#[derive(clap::Args, Clone, Debug)]
pub struct KernelsArgs {
    /// Adapter (as for `run`).
    #[arg(long, default_value = "default")]
    pub device: AdapterSelector,
    /// Timed runs per kernel (median reported).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Divide spatial sizes by this (e.g. 4 for a quick look on a CPU adapter).
    #[arg(long, default_value_t = 1)]
    pub scale_divisor: usize,
    /// Only shapes whose name or kind contains this text.
    #[arg(long)]
    pub only: Option<String>,
    /// Invocations per workgroup (both kernels).
    #[arg(long, default_value_t = 64)]
    pub workgroup_size: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `poolpipe bench kernels`.
pub fn command(a: KernelsArgs) -> Result<()> {
    let KernelsArgs { device, iters, scale_divisor, only, workgroup_size, json } = a;
    let report = kernels(&device, iters, scale_divisor, only.as_deref(), workgroup_size)?;
    crate::commands::print_report(&report, json, render)
}
