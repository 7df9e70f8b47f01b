//! The planner against an outside MILP solver: `scripts/planner_oracle.py` solves the same
//! formulation with HiGHS (scipy) from every SLO-feasible configuration the planner
//! enumerated, before the planner's pruning and search. Published profiles, the paper's
//! groups, two-, three- and four-class fleets.

use std::path::{Path, PathBuf};
use std::process::Command;
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

/// The oracle's objective on the configurations of `inputs`.
fn oracle(inputs: &Inputs, options: &PlanOptions, name: &str) -> f64 {
    let configurations = Planner::new(inputs, options.clone()).unwrap().configurations().unwrap();
    let file: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oracle-{name}.json"));
    std::fs::write(&file, serde_json::to_vec(&configurations).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(root().join("scripts/planner_oracle.py"))
        .arg(&file)
        .args(["--time-limit", "60"])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "the oracle failed (scipy installed?): {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["optimal"], true, "{name}: the oracle did not prove its answer: {v}");
    v["objective"].as_f64().unwrap()
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
