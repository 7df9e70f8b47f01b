//! The planner against an outside MILP solver: `scripts/planner_oracle.py` solves the same
//! formulation with HiGHS (scipy) from every SLO-feasible configuration the planner
//! enumerated, before the planner's pruning and search. Published profiles, the paper's
//! groups, two-, three- and four-class fleets.

use std::path::Path;
use std::time::Duration;

use poolpipe_planner::{Inputs, PlanOptions, Planner};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn inputs(fleet: &str, group: &str) -> Inputs {
    Inputs::load(
        &root().join("../shared/ppipe-data"),
        &root().join(format!("configs/fleets/{fleet}.toml")),
        &root().join(format!("configs/workloads/{group}.toml")),
    )
    .unwrap()
}

/// The oracle's proven objective on the configurations of `inputs`.
fn oracle(inputs: &Inputs, options: &PlanOptions, name: &str) -> f64 {
    let r = poolpipe::commands::plan::oracle(inputs, options, 60.0)
        .unwrap_or_else(|e| panic!("{name}: the oracle failed (scipy installed?): {e:#}"));
    assert!(r.optimal, "{name}: the oracle did not prove its answer: {r:?}");
    r.objective.unwrap()
}

#[test]
fn plans_reach_the_outside_solvers_optimum() {
    // A generous limit: this is about the answer, not the time (docs/benchmarks.md has that).
    let options = PlanOptions { time_limit: Duration::from_secs(30), ..PlanOptions::default() };
    // Two classes, proven by the split search; three and four, proven by split searches
    // over pairs of classes (the others whole to every model, a relaxation) and a joint
    // search with each model held to its split: both solvers find the same optimum (a check
    // of the formulation on both sides), and the planner proves it. (Issue 21: not yet on
    // every four-class case; see docs/benchmarks.md.)
    for (fleet, group) in [
        ("hc1", "group1"),
        ("hc4", "group3"),
        ("mc3", "group1"),
        ("mc3", "group6"),
        ("mc4", "group1"),
        ("mc4", "group6"),
    ] {
        let inputs = inputs(fleet, group);
        let plan = Planner::new(&inputs, options.clone()).unwrap().plan(poolpipe_planner::PlannerKind::Ppipe).unwrap();
        let best = oracle(&inputs, &options, &format!("{fleet}-{group}"));
        assert!(
            plan.objective >= best * (1.0 - 1e-3),
            "{fleet} {group}: planner {} against the oracle's {best}",
            plan.objective
        );
        assert!(
            plan.objective <= best * (1.0 + 1e-6),
            "{fleet} {group}: planner {} above the optimum {best}",
            plan.objective
        );
        assert!(plan.gap <= 1e-3, "{fleet} {group}: gap {}", plan.gap);
    }
}
