//! `poolpipe bench`: benchmarks, each measuring a baseline in the same run; `--json` prints
//! one object.

use anyhow::Result;

pub mod kernels;
pub mod paper;
pub mod planner;
pub mod policies;
pub mod serving;
pub mod transport;

/// `poolpipe bench` subcommands.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum BenchCmd {
    /// The serving path under load on an embedded cluster on this machine: p50/p99 at
    /// concurrency 1 against the model's batch-1 compute plus transport, the closed-loop
    /// capacity and goodput under open-loop Poisson around it, then the same with profiles
    /// made optimistic, showing the online correction converge.
    Serving(serving::ServingArgs),
    /// Tensors over QUIC (poolpipe's transport, mutual TLS) against TLS 1.3 over TCP and plain
    /// TCP on loopback, in one run: throughput and per-tensor latency for each size, and the
    /// QUIC / TLS-over-TCP ratio.
    Transport(transport::TransportArgs),
    /// Each built-in WebAssembly policy against its native twin on the same simulated run of
    /// a 100-GPU cluster: scheduler wall time per decision and per dispatched batch, the ratio,
    /// and whether both decided the same.
    Policies(policies::PoliciesArgs),
    /// The paper's simulation experiment: for each cluster x group, PPipe, NP and DART-r plans
    /// swept with the ppipe policy under Poisson and bursty arrivals (load factor 1.0 = PPipe's
    /// plan), plus the PPipe plan with reactive batching; gains and low-class utilisation next
    /// to the paper's, a CSV and an SVG chart.
    Paper(paper::PaperArgs),
    /// The three planners (ppipe, np, dart-r) on every fleet x workload: objective, planning
    /// time and proven gap per case, then the ppipe/np and ppipe/dart-r objective ratios.
    Planner(planner::PlannerArgs),
    /// GFLOP/s of conv and GEMM kernels on ResNet-50 / MobileNetV2 shapes, against naive
    /// one-output-per-invocation kernels measured in the same run.
    Kernels(kernels::KernelsArgs),
}

/// Runs `poolpipe bench`.
pub fn command(b: BenchCmd) -> Result<()> {
    match b {
        BenchCmd::Serving(a) => serving::command(a),
        BenchCmd::Transport(a) => transport::command(a),
        BenchCmd::Policies(a) => policies::command(a),
        BenchCmd::Paper(a) => paper::command(a),
        BenchCmd::Planner(a) => planner::command(a),
        BenchCmd::Kernels(a) => kernels::command(a),
    }
}
