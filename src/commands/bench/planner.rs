//! `poolpipe bench planner`: the planner on the published cases (the work is
//! [`crate::commands::plan::bench`]).

use anyhow::Result;

/// The three planners (ppipe, np, dart-r) on every fleet x workload: objective, planning
/// time and proven gap per case, then the ppipe/np and ppipe/dart-r objective ratios.
#[derive(clap::Args, Clone, Debug)]
pub struct PlannerArgs {
    #[command(flatten)]
    pub cases: crate::commands::plan::CaseArgs,
    #[command(flatten)]
    pub opts: crate::commands::plan::PlanArgs,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also solve each case's MILP with the outside oracle (`scripts/planner_oracle.py`,
    /// scipy's HiGHS; run from the repository root) with this time limit, seconds.
    #[arg(long, value_name = "SECONDS")]
    pub oracle: Option<f64>,
}

/// Runs `poolpipe bench planner`.
pub fn command(a: PlannerArgs) -> Result<()> {
    let PlannerArgs { cases, opts, json, oracle } = a;
    let (fleets, workloads) = cases.resolve(&[1, 2, 3, 4, 5, 6]);
    let report = crate::commands::plan::bench(&cases.profiles, &fleets, &workloads, &opts.options()?, !json, oracle)?;
    crate::commands::print_report(&report, json, crate::commands::plan::render_bench)
}
