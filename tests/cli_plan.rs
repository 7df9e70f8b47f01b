//! `poolpipe plan` and `poolpipe bench planner` end to end on the published profiles and the
//! example fleets and workloads of configs/.

mod common;

use std::path::{Path, PathBuf};

use common::{json, poolpipe};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn data() -> String {
    root().join("../shared/ppipe-data").to_string_lossy().into_owned()
}

fn cfg(p: &str) -> String {
    root().join("configs").join(p).to_string_lossy().into_owned()
}

/// `poolpipe plan` on the published profiles with a fleet, a workload and more arguments.
fn plan(fleet: &str, workload: &str, more: &[&str]) -> std::process::Output {
    let data = data();
    let mut args = vec!["plan", "--profiles", &data, "--fleet", fleet, "--workload", workload];
    args.extend_from_slice(more);
    poolpipe(&args)
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("plan-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn plan_prints_a_table_and_writes_the_json() {
    let d = tmp("table");
    let out = d.join("sub/plan.json");
    let columns = d.join("columns.json");
    let o = plan(
        &cfg("fleets/hc3.toml"),
        &cfg("workloads/group5.toml"),
        &["--out", out.to_str().unwrap(), "--columns", columns.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The configurations for an outside solver: classes, and per model its weight and every
    // configuration with its partitions' class, share and per-vGPU throughput.
    let c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&columns).unwrap()).unwrap();
    assert_eq!(c["classes"][0]["name"], "V100");
    assert_eq!(c["models"].as_array().unwrap().len(), 3);
    let part = &c["models"][0]["columns"][0]["parts"][0];
    assert!(part["class"].is_u64() && part["share"].is_u64() && part["vgpu_rps"].as_f64().unwrap() > 0.0, "{part}");
    let table = String::from_utf8_lossy(&o.stdout);
    for want in
        ["ppipe plan: objective z =", "GPUs per class (used / available)", "V100", "P4", "pools:", "plan written to"]
    {
        assert!(table.contains(want), "{want} missing in:\n{table}");
    }
    let plan: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(plan["planner"], "ppipe");
    assert!(plan["objective"].as_f64().unwrap() > 0.0);
    assert!(plan["solve_seconds"].is_number() && plan["gap"].is_number());
    let models = plan["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    for m in models {
        assert!(m["name"].is_string() && m["throughput"].as_f64().unwrap() > 0.0);
        for p in m["pipelines"].as_array().unwrap() {
            for q in p["partitions"].as_array().unwrap() {
                for key in [
                    "first_block",
                    "end_block",
                    "class",
                    "share",
                    "batch",
                    "vgpus",
                    "gpus",
                    "inference_us",
                    "transfer_us",
                    "throughput",
                ] {
                    assert!(q.get(key).is_some(), "{key} missing");
                }
            }
        }
    }
    // The table's objective is the JSON's.
    let z = format!("objective z = {:.1}", plan["objective"].as_f64().unwrap());
    assert!(table.contains(&z), "{z}");
}

#[test]
fn baselines_and_json_output() {
    let mut z = vec![];
    for planner in ["ppipe", "np", "dart-r"] {
        let v = json(&plan(&cfg("fleets/hc4.toml"), &cfg("workloads/group1.toml"), &["--planner", planner, "--json"]));
        assert_eq!(v["planner"], planner);
        z.push(v["objective"].as_f64().unwrap());
        if planner == "np" {
            for m in v["models"].as_array().unwrap() {
                for p in m["pipelines"].as_array().unwrap() {
                    assert_eq!(p["partitions"].as_array().unwrap().len(), 1);
                }
            }
        }
    }
    assert!(z[0] >= z[1] && z[0] >= z[2], "{z:?}");
}

#[test]
fn bad_inputs_name_what_is_wrong() {
    let d = tmp("bad");
    // A class with no profiles: names the model, class and file.
    let fleet = d.join("fleet.toml");
    std::fs::write(&fleet, "bandwidth_gbps = 10\n[[class]]\nname = \"A100\"\ncount = 4\ngpus_per_server = 1\n")
        .unwrap();
    let o = plan(fleet.to_str().unwrap(), &cfg("workloads/group1.toml"), &[]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("A100") && e.contains("apcnet") && e.contains("-A100-1.csv") && e.contains("poolpipe profile"),
        "{e}"
    );
    // A model with an SLO nobody can meet is named; the others are planned.
    let w = d.join("w.toml");
    std::fs::write(
        &w,
        "[[model]]\nname = \"fcn-d6_r101-d16_4xb2-40k_cityscapes-512x1024\"\nweight = 1\nslo_ms = 2\n[[model]]\nname = \"atss_r101_fpn_1x_coco\"\nweight = 1\n",
    )
    .unwrap();
    let o = plan(&cfg("fleets/hc1.toml"), w.to_str().unwrap(), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("NOT SERVED: fcn-d6") && t.contains("2.0 ms"), "{t}");
    // Unknown planner, bad option, malformed fleet.
    let o = plan(&cfg("fleets/hc1.toml"), &cfg("workloads/group1.toml"), &["--planner", "magic"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("use ppipe, np or dart-r"));
    let o = plan(&cfg("fleets/hc1.toml"), &cfg("workloads/group1.toml"), &["--search", "magic"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("use auto, joint or split"));
    let o = plan(&cfg("fleets/hc1.toml"), &cfg("workloads/group1.toml"), &["--max-partitions", "5"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("max_partitions"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&fleet, "bandwidth_gbps = 10\n[[class]]\nname = \"L4\"\ncount = -1\n").unwrap();
    let o = plan(fleet.to_str().unwrap(), &cfg("workloads/group1.toml"), &[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("fleet.toml"), "{e}");
}

#[test]
fn bench_planner_reports_every_case_and_the_ratios() {
    let v = json(&poolpipe(&[
        "bench",
        "planner",
        "--profiles",
        &data(),
        "--fleets",
        &format!("{},{}", cfg("fleets/hc1.toml"), cfg("fleets/hc4.toml")),
        "--workloads",
        &cfg("workloads/group1.toml"),
        "--json",
    ]));
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for c in cases {
        assert!(c["objective"].as_f64().unwrap() > 0.0 && c["solve_seconds"].is_number() && c["gap"].is_number());
    }
    assert_eq!(v["ratios"].as_array().unwrap().len(), 2);
    assert!(v["mean_ppipe_over_np"].as_f64().unwrap() > 1.0);
    assert!(v["mean_ppipe_over_dart_r"].as_f64().unwrap() >= 1.0);
    assert_eq!(v["ppipe_below_a_baseline"], 0);
}
