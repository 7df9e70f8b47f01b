//! The cluster a plan runs on: servers, GPUs and workers (vGPUs) placed from a plan, with the
//! latencies and transfer times the scheduler reserves by.
//!
//! Placement: the GPUs of each class are numbered and grouped into servers of
//! `gpus_per_server` in that order (servers hold one class, as in the paper's clusters). Each
//! pool of the plan (model, partition index, class) takes the next `gpus` GPUs of its class,
//! so a pool's GPUs share servers; the vGPUs of the pool's partitions are packed onto them
//! first-fit, largest share first (a GPU holds vGPUs whose shares 1/k sum to at most 1). When
//! mixed shares do not pack into the pool's GPUs, the pool takes more GPUs of its class while
//! the fleet has unused ones, and the layout fails if it has none.

use poolpipe_planner::config::Fleet;
use poolpipe_planner::plan::Plan;
use poolpipe_planner::profiles::ModelProfile;

use crate::DataplaneError;

/// A server: GPUs of one class behind one NIC (an uplink and a downlink).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Server {
    /// Class index.
    pub class: usize,
}

/// A physical GPU.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gpu {
    /// Class index.
    pub class: usize,
    /// Server index.
    pub server: usize,
}

/// A worker: one vGPU (1/share of a GPU) serving one stage of one pipeline.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Worker {
    /// GPU index.
    pub gpu: usize,
    /// Server index (of its GPU).
    pub server: usize,
    /// Class index.
    pub class: usize,
    /// Share k: the worker is 1/k of its GPU.
    pub share: usize,
    /// Model index.
    pub model: usize,
    /// Pipeline index within the model.
    pub pipeline: usize,
    /// Stage (partition) index within the pipeline.
    pub stage: usize,
}

/// One stage (partition) of a pipeline.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    /// First block.
    pub first_block: usize,
    /// One past the last block.
    pub end_block: usize,
    /// Class index.
    pub class: usize,
    /// Share k.
    pub share: usize,
    /// Inference latency of a batch of b requests at index b - 1, microseconds, for every
    /// profiled batch size.
    pub latency_us: Vec<f64>,
    /// Transfer time per request of the tensors entering this stage, microseconds (0 for the
    /// first stage).
    pub input_us_per_request: f64,
    /// Worker indices (global), in plan order: the stage's pool of vGPUs.
    pub workers: Vec<usize>,
    /// Server of each of `workers`.
    pub servers: Vec<usize>,
}

impl Stage {
    /// Largest profiled batch.
    pub fn max_batch(&self) -> usize {
        self.latency_us.len()
    }

    /// Inference latency at `batch` (infinite when not profiled).
    pub fn latency(&self, batch: usize) -> f64 {
        if batch == 0 { 0.0 } else { self.latency_us.get(batch - 1).copied().unwrap_or(f64::INFINITY) }
    }
}

/// A pipeline of a model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PipelineLayout {
    /// Planned batch size.
    pub batch: usize,
    /// The plan's batch-build estimate, microseconds.
    pub batch_build_us: f64,
    /// Predicted requests per second.
    pub throughput: f64,
    /// Stages in order.
    pub stages: Vec<Stage>,
}

impl PipelineLayout {
    /// Compute and transfer time of a batch from stage `from` to the end, without waiting.
    pub fn latency_from(&self, from: usize, batch: usize) -> f64 {
        self.stages[from..]
            .iter()
            .enumerate()
            .map(|(i, s)| s.latency(batch) + if i > 0 { s.input_us_per_request * batch as f64 } else { 0.0 })
            .sum()
    }
}

/// A served model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelLayout {
    /// Model name.
    pub name: String,
    /// SLO, microseconds.
    pub slo_us: f64,
    /// Workload weight of the plan.
    pub weight: f64,
    /// Predicted requests per second (sum of the pipelines).
    pub throughput: f64,
    /// Pipelines.
    pub pipelines: Vec<PipelineLayout>,
}

/// A GPU class of the fleet.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassLayout {
    /// Name.
    pub name: String,
    /// GPUs in the fleet.
    pub gpus: usize,
}

/// The whole cluster under a plan.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// Classes of the fleet.
    pub classes: Vec<ClassLayout>,
    /// Servers.
    pub servers: Vec<Server>,
    /// GPUs.
    pub gpus: Vec<Gpu>,
    /// Workers (vGPUs).
    pub workers: Vec<Worker>,
    /// Served models, in plan order.
    pub models: Vec<ModelLayout>,
    /// The plan's objective z: the least throughput / weight.
    pub objective: f64,
}

fn bad(reason: String) -> DataplaneError {
    DataplaneError::Layout { reason }
}

impl Layout {
    /// Places a plan on a fleet, with latencies from the models' profiles.
    pub fn new(plan: &Plan, profiles: &[ModelProfile], fleet: &Fleet) -> Result<Layout, DataplaneError> {
        let classes: Vec<ClassLayout> =
            fleet.class.iter().map(|c| ClassLayout { name: c.name.clone(), gpus: c.count as usize }).collect();
        let mut servers = vec![];
        let mut gpus = vec![];
        // GPU indices of each class, in order, and how many are taken.
        let mut class_gpus: Vec<Vec<usize>> = vec![];
        for (ci, c) in fleet.class.iter().enumerate() {
            let per = c.gpus_per_server.max(1) as usize;
            let mut ids = vec![];
            for g in 0..c.count as usize {
                if g % per == 0 {
                    servers.push(Server { class: ci });
                }
                ids.push(gpus.len());
                gpus.push(Gpu { class: ci, server: servers.len() - 1 });
            }
            class_gpus.push(ids);
        }
        let mut taken = vec![0usize; classes.len()];
        let class_of = |name: &str| {
            fleet.class.iter().position(|c| c.name == name).ok_or_else(|| bad(format!("unknown GPU class {name}")))
        };
        let mut workers = vec![];
        let mut models = vec![];
        for (mi, mp) in plan.models.iter().enumerate() {
            let prof = profiles.iter().find(|p| p.name == mp.name).ok_or_else(|| {
                bad(format!(
                    "model '{}' of the plan has no profiles: give the profile folder the plan came from",
                    mp.name
                ))
            })?;
            let cut_us = poolpipe_planner::columns::cut_us(prof, fleet.bandwidth_gbps);
            let mut pipelines = vec![];
            for pl in &mp.pipelines {
                let mut stages = vec![];
                for p in &pl.partitions {
                    let class = class_of(&p.class)?;
                    let sp = prof.share(&p.class, p.share).ok_or_else(|| {
                        bad(format!("model '{}': no profile for class {} at share 1/{}", mp.name, p.class, p.share))
                    })?;
                    if p.end_block > prof.blocks || p.first_block >= p.end_block {
                        return Err(bad(format!(
                            "model '{}': blocks {}..{} do not fit its {} blocks",
                            mp.name, p.first_block, p.end_block, prof.blocks
                        )));
                    }
                    let latency_us: Vec<f64> = (1..=sp.max_batch())
                        .map(|b| sp.range_us(p.first_block..p.end_block, b).unwrap_or(u64::MAX) as f64)
                        .collect();
                    if p.batch == 0 || p.batch > latency_us.len() {
                        return Err(bad(format!(
                            "model '{}': batch {} is not profiled on {} at share 1/{}",
                            mp.name, p.batch, p.class, p.share
                        )));
                    }
                    let input_us_per_request = if p.first_block == 0 { 0.0 } else { cut_us[p.first_block - 1] };
                    stages.push(Stage {
                        first_block: p.first_block,
                        end_block: p.end_block,
                        class,
                        share: p.share,
                        latency_us,
                        input_us_per_request,
                        workers: vec![],
                        servers: vec![],
                    });
                }
                pipelines.push(PipelineLayout {
                    batch: pl.batch,
                    batch_build_us: pl.batch_build_us,
                    throughput: pl.throughput,
                    stages,
                });
            }
            // Pools: (stage index, class) -> the vGPUs of every pipeline there.
            let mut pool_keys: Vec<(usize, usize)> = vec![];
            for pl in &pipelines {
                for (d, s) in pl.stages.iter().enumerate() {
                    if !pool_keys.contains(&(d, s.class)) {
                        pool_keys.push((d, s.class));
                    }
                }
            }
            for (d, class) in pool_keys {
                let planned = mp
                    .pools
                    .iter()
                    .find(|p| p.partition == d && class_of(&p.class).ok() == Some(class))
                    .map_or(0, |p| p.gpus as usize);
                // (pipeline, share, vgpus) of the pool, largest share (smallest k) first.
                let mut parts: Vec<(usize, usize, usize)> = vec![];
                for (pi, pl) in mp.pipelines.iter().enumerate() {
                    if let Some(p) = pl.partitions.get(d)
                        && class_of(&p.class)? == class
                    {
                        parts.push((pi, p.share, p.vgpus));
                    }
                }
                parts.sort_by_key(|&(pi, k, _)| (k, pi));
                // Free capacity of each GPU the pool holds, in units of 1/lcm(1..=8) GPU.
                const UNIT: usize = 840;
                let mut held: Vec<(usize, usize)> = vec![];
                for &(pi, k, n) in &parts {
                    let need = UNIT / k.max(1);
                    for _ in 0..n {
                        let slot = match held.iter().position(|&(_, free)| free >= need) {
                            Some(s) => s,
                            None => {
                                let ids = &class_gpus[class];
                                if taken[class] >= ids.len() {
                                    return Err(bad(format!(
                                        "model '{}': the pool of partition {d} on {} needs more GPUs than the \
                                         fleet's {} when its vGPUs are placed (the plan gives it {planned}); \
                                         plan again with the same fleet file",
                                        mp.name,
                                        classes[class].name,
                                        ids.len()
                                    )));
                                }
                                held.push((ids[taken[class]], UNIT));
                                taken[class] += 1;
                                held.len() - 1
                            }
                        };
                        held[slot].1 -= need;
                        let gpu = held[slot].0;
                        pipelines[pi].stages[d].workers.push(workers.len());
                        pipelines[pi].stages[d].servers.push(gpus[gpu].server);
                        workers.push(Worker {
                            gpu,
                            server: gpus[gpu].server,
                            class,
                            share: k,
                            model: mi,
                            pipeline: pi,
                            stage: d,
                        });
                    }
                }
            }
            models.push(ModelLayout {
                name: mp.name.clone(),
                slo_us: mp.slo_us as f64,
                weight: mp.weight,
                throughput: mp.throughput,
                pipelines,
            });
        }
        Ok(Layout { classes, servers, gpus, workers, models, objective: plan.objective })
    }

    /// The request rate (requests/s over all models) at which the plan serves every model at
    /// its weight: z x the sum of the weights. Load factor 1.0 is this rate.
    pub fn planned_rate(&self) -> f64 {
        self.objective * self.models.iter().map(|m| m.weight).sum::<f64>()
    }
}
