//! End-to-end tests of the `poolpipe` binary as a user runs it.

mod common;

use std::process::Command;

use common::{json, poolpipe};

#[test]
fn devices_lists_at_least_one_adapter_with_limits() {
    let v = json(&poolpipe(&["devices", "--json"]));
    let list = v["adapters"].as_array().expect("adapters array");
    assert!(!list.is_empty(), "no adapter: install mesa-vulkan-drivers");
    for a in list {
        assert!(a["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert!(a["backend"].is_string() && a["device_type"].is_string());
        assert!(a["limits"]["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
    }
    let table = poolpipe(&["devices"]);
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains(list[0]["name"].as_str().unwrap()));
}

#[test]
fn run_checks_a_builtin_model_against_the_reference() {
    for model in ["resnet-mini", "mobilenet-mini", "segnet-mini"] {
        let v = json(&poolpipe(&["run", "--model", model, "--size", "32", "--batch", "2", "--iters", "2", "--json"]));
        assert_eq!(v["model"], model);
        assert_eq!(v["batch"], 2);
        let err = v["max_rel_error"].as_f64().expect("checked against the reference");
        assert!(err <= 1e-3, "{model}: error {err}");
        assert!(v["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(v["fused_nodes"].as_u64().unwrap() < v["nodes"].as_u64().unwrap(), "BN folding and fusion happen");
    }
    let table = poolpipe(&["run", "--size", "32", "--iters", "1"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("throughput") && text.contains("check"), "{text}");
}

#[test]
fn bad_arguments_fail_with_clear_messages() {
    let out = poolpipe(&["run", "--model", "no-such-model"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-model") && err.contains("resnet-mini"), "{err}");

    let out = poolpipe(&["run", "--batch", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch"));

    let out = poolpipe(&["run", "--device", "name:no-such-gpu"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-gpu") && err.contains("available"), "{err}");

    let out = poolpipe(&["run", "--size", "8"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("below 16"));
}

#[test]
fn bench_kernels_reports_ratios_against_the_naive_baseline() {
    let v = json(&poolpipe(&[
        "bench",
        "kernels",
        "--only",
        "mobilenetv2",
        "--scale-divisor",
        "8",
        "--iters",
        "1",
        "--json",
    ]));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "the four MobileNetV2 shapes");
    for r in results {
        assert!(r["tiled_gflops"].as_f64().unwrap() > 0.0);
        assert!(r["naive_gflops"].as_f64().unwrap() > 0.0);
        let ratio = r["naive_ms"].as_f64().unwrap() / r["tiled_ms"].as_f64().unwrap();
        assert!((ratio - r["speedup"].as_f64().unwrap()).abs() < 1e-9);
        // Both kernels compute the same convolution.
        assert!(r["max_abs_diff"].as_f64().unwrap() < 1e-3, "{r}");
    }
    assert!(v["timing"] == "gpu-timestamps" || v["timing"] == "wall-clock");
    let out = poolpipe(&["bench", "kernels", "--only", "nothing-matches"]);
    assert!(!out.status.success());
}

/// Without any adapter (Vulkan pointed at a driver file that does not exist), the commands
/// fail with a message that says what to install.
#[test]
fn no_adapter_says_how_to_get_one() {
    for args in [&["devices"][..], &["run"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_poolpipe"))
            .args(args)
            .env("WGPU_BACKEND", "vulkan")
            .env("VK_ICD_FILENAMES", "/nonexistent-icd.json")
            .env("VK_DRIVER_FILES", "/nonexistent-icd.json")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no GPU adapter") && err.contains("mesa-vulkan-drivers"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
