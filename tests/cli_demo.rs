//! `poolpipe demo` as a user runs it (shortened): two lavapipe classes profiled on the spot,
//! three worker processes, the PPipe plan and the NP plan under the same load, a JSON report
//! and an HTML page.

mod common;

use std::path::Path;

use common::{json, poolpipe};

#[test]
fn the_demo_serves_a_load_under_both_plans_and_writes_its_report() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo");
    let _ = std::fs::remove_dir_all(&out);
    let r = json(&poolpipe(&["demo", "--duration", "3s", "--size", "32", "--out", out.to_str().unwrap(), "--json"]));
    assert_eq!(r["model"], "resnet-mini");
    assert_eq!(r["input"], serde_json::json!([3, 32, 32]));
    assert_eq!(r["workers"].as_array().unwrap().len(), 3);
    assert!(r["capacity"].as_f64().unwrap() > 0.0, "{r}");
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.iter().map(|x| x["planner"].as_str().unwrap()).collect::<Vec<_>>(), ["ppipe", "np"]);
    for run in runs {
        let load = &run["load"];
        // Every request was answered: successes plus counted errors.
        let errors: u64 = load["errors"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(load["sent"].as_u64().unwrap(), load["ok"].as_u64().unwrap() + errors, "{run}");
        assert!(load["ok"].as_u64().unwrap() > 0, "{run}");
        assert!(run["predicted"].as_f64().unwrap() > 0.0);
        let stages = run["pipelines"][0]["stages"].as_array().unwrap();
        assert_eq!(stages.last().unwrap()["blocks"][1], 4, "the plan covers the model's 4 blocks: {run}");
        assert_eq!(run["utilisation"].as_object().unwrap().len(), 2, "{run}");
    }
    // NP keeps whole models on single workers.
    assert!(runs[1]["pipelines"].as_array().unwrap().iter().all(|p| p["stages"].as_array().unwrap().len() == 1));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("SLO attainment") && html.contains("ppipe"));
    assert!(out.join("profiles/block-latency/resnet-mini-lp1t-1.csv").is_file());
    let _ = std::fs::remove_dir_all(&out);
}
