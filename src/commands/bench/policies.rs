//! `poolpipe bench policies`: the cost of each built-in WebAssembly policy against its native
//! twin, in the same process on the same simulated run (a plan of a 100-GPU cluster).

use std::fmt::Write as _;

use anyhow::{Result, ensure};
use serde::Serialize;

use crate::commands::simulate::{Policies, PolicySpec, Setup};
use poolpipe_dataplane::sim::{SimConfig, SimReport, simulate_timed};

/// One policy and its twin.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyCost {
    /// The guest's name, e.g. `ppipe` or `earliest_finish (reservation)`.
    pub name: String,
    /// Wall time in the scheduler per policy decision with the native policy, ns.
    pub native_ns: f64,
    /// The same with the WebAssembly policy, ns.
    pub wasm_ns: f64,
    /// wasm_ns / native_ns.
    pub ratio: f64,
    /// Wall time in the scheduler per dispatched batch with the native policy, ns.
    pub native_ns_per_batch: f64,
    /// The same with the WebAssembly policy, ns.
    pub wasm_ns_per_batch: f64,
    /// Whether both made exactly the same decisions (equal decision digests).
    pub same_decisions: bool,
    /// Calls of the guest that failed (0 expected).
    pub wasm_failures: u64,
}

/// The benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyBench {
    /// Every policy.
    pub policies: Vec<PolicyCost>,
    /// GPUs in the cluster.
    pub gpus: usize,
    /// Requests per run.
    pub requests: u64,
    /// Runs of each side (the fastest is kept).
    pub repeats: usize,
}

fn per_decision(r: &SimReport) -> f64 {
    r.scheduler_ns_per_batch * r.scheduler.batches as f64 / r.scheduler.decisions.max(1) as f64
}

/// Runs each pair `repeats` times, alternating, and keeps the fastest run of each side.
pub fn run(setup: &Setup, cfg: &SimConfig, repeats: usize, progress: &indicatif::ProgressBar) -> Result<PolicyBench> {
    ensure!(repeats > 0, "--repeats must be at least 1");
    // A generous deadline: the benchmark measures the guests, and a call preempted by the
    // machine must not unload one half-way.
    let wasm = |batching: &str, reservation: &str| PolicySpec {
        reservation: reservation.into(),
        limits: poolpipe_policies::wasm::Limits {
            deadline: std::time::Duration::from_millis(100),
            ..Default::default()
        },
        ..PolicySpec::native(batching)
    };
    let pairs: [(&str, PolicySpec, PolicySpec); 4] = [
        ("ppipe", PolicySpec::native("ppipe"), wasm("wasm:ppipe", "earliest-finish")),
        ("reactive", PolicySpec::native("reactive"), wasm("wasm:reactive", "earliest-finish")),
        ("triton", PolicySpec::native("triton"), wasm("wasm:triton", "earliest-finish")),
        ("earliest_finish (reservation)", PolicySpec::native("ppipe"), wasm("ppipe", "wasm:earliest_finish")),
    ];
    let mut out = vec![];
    let mut requests = 0;
    for (name, native, wasm) in pairs {
        let (native, wasm) = (Policies::load(&native)?, Policies::load(&wasm)?);
        let mut best: [Option<SimReport>; 2] = [None, None];
        for _ in 0..repeats {
            for (side, p) in [&native, &wasm].into_iter().enumerate() {
                progress.set_message(format!("{name} {}", ["native", "wasm"][side]));
                let r = simulate_timed(&setup.layout, p, cfg, None, &crate::host_ns)?;
                progress.inc(1);
                if best[side].as_ref().is_none_or(|b| r.scheduler_ns_per_batch < b.scheduler_ns_per_batch) {
                    best[side] = Some(r);
                }
            }
        }
        let [Some(n), Some(w)] = best else { unreachable!("repeats > 0") };
        requests = n.offered;
        out.push(PolicyCost {
            name: name.to_string(),
            native_ns: per_decision(&n),
            wasm_ns: per_decision(&w),
            ratio: per_decision(&w) / per_decision(&n),
            native_ns_per_batch: n.scheduler_ns_per_batch,
            wasm_ns_per_batch: w.scheduler_ns_per_batch,
            same_decisions: n.scheduler.digest == w.scheduler.digest,
            wasm_failures: w.scheduler.policy_errors,
        });
    }
    Ok(PolicyBench { policies: out, gpus: setup.layout.gpus.len(), requests, repeats })
}

/// The benchmark as a table.
pub fn render(b: &PolicyBench) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scheduler wall time per decision and per dispatched batch, {} GPUs, {} requests a run, fastest of {}\n",
        b.gpus, b.requests, b.repeats
    );
    let _ = writeln!(
        s,
        "{:<32} {:>11} {:>9} {:>7} {:>14} {:>12} {:>6}",
        "policy", "native ns", "wasm ns", "ratio", "native ns/bat", "wasm ns/bat", "same"
    );
    for p in &b.policies {
        let _ = writeln!(
            s,
            "{:<32} {:>11.0} {:>9.0} {:>7.2} {:>14.0} {:>12.0} {:>6}",
            p.name,
            p.native_ns,
            p.wasm_ns,
            p.ratio,
            p.native_ns_per_batch,
            p.wasm_ns_per_batch,
            if p.same_decisions { "yes" } else { "NO" }
        );
    }
    s
}
/// Each built-in WebAssembly policy against its native twin on the same simulated run of
/// a 100-GPU cluster: scheduler wall time per decision and per dispatched batch, the ratio,
/// and whether both decided the same.
#[derive(clap::Args, Clone, Debug)]
pub struct PoliciesArgs {
    /// Profile folder.
    #[arg(long, value_name = "DIR", default_value = "../shared/ppipe-data")]
    pub profiles: std::path::PathBuf,
    /// Fleet.
    #[arg(long, value_name = "FILE", default_value = "configs/fleets/hc2.toml")]
    pub fleet: std::path::PathBuf,
    /// Workload.
    #[arg(long, value_name = "FILE", default_value = "configs/workloads/group3.toml")]
    pub workload: std::path::PathBuf,
    /// Offered load, a fraction of the PPipe plan's throughput.
    #[arg(long, default_value_t = 0.9)]
    pub load_factor: f64,
    /// Simulated time of each run.
    #[arg(long, default_value = "10s", value_parser = crate::commands::simulate::parse_duration)]
    pub duration: f64,
    /// Runs of each side (the fastest is kept).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `poolpipe bench policies`.
pub fn command(a: PoliciesArgs) -> Result<()> {
    let PoliciesArgs { profiles, fleet, workload, load_factor, duration, repeats, json } = a;
    let inputs = crate::commands::plan::load_inputs(&profiles, &fleet, &workload)?;
    let p = crate::commands::plan::plan(&inputs, poolpipe_planner::PlannerKind::Ppipe, Default::default())?;
    let setup = crate::commands::simulate::setup_with(&p, &inputs.profiles, &inputs.fleet, &inputs.workload)?;
    if !(load_factor.is_finite() && load_factor > 0.0) {
        anyhow::bail!("--load-factor {load_factor} must be positive");
    }
    let cfg = poolpipe_dataplane::sim::SimConfig::poisson(
        load_factor * setup.layout.planned_rate(),
        duration,
        setup.weights.clone(),
        1,
    );
    let pb = if json { indicatif::ProgressBar::hidden() } else { crate::progress(8 * repeats as u64, "policies") };
    let report = run(&setup, &cfg, repeats, &pb)?;
    pb.finish_and_clear();
    crate::commands::print_report(&report, json, render)
}
