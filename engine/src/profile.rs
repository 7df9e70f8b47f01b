//! Profiling: how long nodes, blocks and whole graphs take on a device, measured the way
//! PPipe's block profiles are (median of repeated runs after warm-up, at every batch size,
//! with k copies sharing the device for a share of 1/k).
//!
//! Only measurement lives here; where the numbers are written (the published profile
//! format) is the caller's business (`poolpipe profile`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use crate::boundary::{Boundary, Precision};
use crate::error::{EngineError, Result};
use crate::gpu::{CompileOptions, CompiledGraph, Device, RunTiming};
use crate::graph::Graph;
use crate::model::Model;
use crate::partition::Partition;
use crate::stage::Stage;
use crate::tensor::{Rng, Tensor};

/// How runs are timed and how many.
#[derive(Clone, Copy, Debug)]
pub struct MeasureOptions {
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs per copy (the median is taken).
    pub iters: usize,
    /// GPU timestamps (the compute pass of each run) instead of the wall clock (upload,
    /// kernels, read-back). Falls back to the wall clock for runs without timestamps.
    pub gpu_timestamps: bool,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        MeasureOptions { warmup: 3, iters: 10, gpu_timestamps: true }
    }
}

/// Median of samples (0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn micros(t: RunTiming, gpu: bool) -> f64 {
    let d = if gpu { t.gpu.unwrap_or(t.wall) } else { t.wall };
    d.as_secs_f64() * 1e6
}

/// Times `copies` (one compiled graph per device, all of the same graph) running at once
/// on `inputs`: warm-up runs, then every copy starts timing together; copies that finish
/// keep running untimed until the last one is done, so every timed run sees all copies on
/// the device. Returns the median, in microseconds, over every timed run of every copy.
pub fn measure(copies: &mut [CompiledGraph], inputs: &[Boundary], o: &MeasureOptions) -> Result<f64> {
    if o.iters == 0 {
        return Err(EngineError::InvalidGraph { graph: "profile".into(), reason: "iters must be at least 1".into() });
    }
    if let [c] = copies {
        for _ in 0..o.warmup {
            c.run_boundary(inputs)?;
        }
        let mut s = Vec::with_capacity(o.iters);
        for _ in 0..o.iters {
            s.push(micros(c.run_boundary(inputs)?.1, o.gpu_timestamps));
        }
        return Ok(median(s));
    }
    let k = copies.len();
    let barrier = Arc::new(Barrier::new(k));
    let done = Arc::new(AtomicUsize::new(0));
    let results: Vec<Result<Vec<f64>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = copies
            .iter_mut()
            .map(|c| {
                let (barrier, done) = (barrier.clone(), done.clone());
                scope.spawn(move || -> Result<Vec<f64>> {
                    let mut result: Result<Vec<f64>> = Ok(Vec::with_capacity(o.iters));
                    for _ in 0..o.warmup {
                        if let Err(e) = c.run_boundary(inputs) {
                            result = Err(e);
                            break;
                        }
                    }
                    // Every copy reaches the barrier, failed or not, so none waits forever.
                    barrier.wait();
                    if let Ok(s) = &mut result {
                        for _ in 0..o.iters {
                            match c.run_boundary(inputs) {
                                Ok((_, t)) => s.push(micros(t, o.gpu_timestamps)),
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    // Keep the device shared until every copy has its samples.
                    while result.is_ok() && done.load(Ordering::SeqCst) < k {
                        if let Err(e) = c.run_boundary(inputs) {
                            result = Err(e);
                        }
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(EngineError::InvalidGraph {
                        graph: "profile".into(),
                        reason: "a profiling thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut all = vec![];
    for r in results {
        all.extend(r?);
    }
    Ok(median(all))
}

/// Random inputs of a static graph in the given precisions (floats uniform in [-1, 1),
/// integers 0 or 1, bools fair coins).
pub fn random_inputs(g: &Graph, precisions: &[Precision], rng: &mut Rng) -> Vec<Boundary> {
    g.inputs()
        .iter()
        .zip(precisions)
        .map(|(&v, &p)| {
            let val = g.value(v);
            let (lo, hi) = if val.dtype.is_float() { (-1.0, 1.0) } else { (0.0, 1.0) };
            Boundary::from_tensor(&val.name, &Tensor::random_of(val.dtype, val.shape.clone(), rng, lo, hi), p)
        })
        .collect()
}

/// The wire precisions of a graph's inputs with floats in fp32.
fn fp32_inputs(g: &Graph) -> Vec<Precision> {
    g.inputs().iter().map(|&v| crate::gpu::wire_precision(g.value(v).dtype, false)).collect()
}

/// Latency of every node of `graph` run alone at batch 1, microseconds (the costs
/// [`crate::partition::partition`] balances). `graph` should be the optimized graph the
/// blocks are cut from; `step` is called after each node.
pub fn node_costs(
    device: &Device,
    graph: &Graph,
    o: &MeasureOptions,
    rng: &mut Rng,
    step: &mut dyn FnMut(),
) -> Result<Vec<f64>> {
    let mut costs = Vec::with_capacity(graph.nodes().len());
    for i in 0..graph.nodes().len() {
        let sub = graph.slice_nodes(i..i + 1)?;
        let mut c = device.compile(&sub, &CompileOptions { optimize: false, ..Default::default() })?;
        let ins = random_inputs(&sub, &fp32_inputs(&sub), rng);
        costs.push(measure(std::slice::from_mut(&mut c), &ins, o)?);
        step();
    }
    Ok(costs)
}

/// Latency of every block of `partition` as the stage that would run it (boundary tensors
/// in `precision`), at batches `1..=max_batch`, with one copy per device in `devices` running
/// at once (k devices for share 1/k): `us[block][batch - 1]`. `step` is called after each
/// (block, batch); batch by batch, so the model is rewritten once per batch size.
#[allow(clippy::too_many_arguments)]
pub fn block_latencies(
    devices: &[Device],
    model: &Arc<Model>,
    partition: &Partition,
    precision: Precision,
    max_batch: usize,
    o: &MeasureOptions,
    rng: &mut Rng,
    step: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<f64>>> {
    let stages: Vec<(Stage, CompileOptions)> = (0..partition.len())
        .map(|b| {
            let s = Stage::new(model, partition, b..b + 1, precision)?;
            let opts = CompileOptions { constants: Some(crate::gpu::ConstPool::default()), ..s.compile_options() };
            Ok((s, opts))
        })
        .collect::<Result<_>>()?;
    let mut us = vec![Vec::with_capacity(max_batch); partition.len()];
    for batch in 1..=max_batch {
        for (b, (s, opts)) in stages.iter().enumerate() {
            let g = s.graph(batch)?;
            let mut copies: Vec<CompiledGraph> = devices.iter().map(|d| d.compile(&g, opts)).collect::<Result<_>>()?;
            let ins = random_inputs(&g, &s.input_precisions, rng);
            us[b].push(measure(&mut copies, &ins, o)?);
            step(b, batch);
        }
    }
    Ok(us)
}

/// Latency of the whole model at batches `1..=max_batch` on one device, microseconds.
pub fn whole_latencies(
    device: &Device,
    model: &Model,
    max_batch: usize,
    o: &MeasureOptions,
    rng: &mut Rng,
    step: &mut dyn FnMut(usize),
) -> Result<Vec<f64>> {
    let opts = CompileOptions { constants: Some(crate::gpu::ConstPool::default()), ..Default::default() };
    let mut out = Vec::with_capacity(max_batch);
    for batch in 1..=max_batch {
        let g = model.graph(batch)?;
        let mut c = device.compile(&g, &opts)?;
        let ins = random_inputs(&g, &fp32_inputs(&g), rng);
        out.push(measure(std::slice::from_mut(&mut c), &ins, o)?);
        step(batch);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
