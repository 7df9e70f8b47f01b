//! `poolpipe profile` and the class labels of `poolpipe devices`, end to end on lavapipe:
//! files in the published format (checked against the published files themselves), the
//! manifest, partitions shared between classes, stale files on repartition, errors.

mod common;

use std::path::{Path, PathBuf};

use common::{json, poolpipe};

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("profile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Rows of a profile CSV: no header, comma-separated integers.
fn rows(path: &Path) -> Vec<Vec<u64>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.ends_with('\n'), "{}: lines end with a newline", path.display());
    text.lines()
        .map(|l| {
            l.split(',').map(|x| x.parse::<u64>().unwrap_or_else(|_| panic!("{}: '{l}'", path.display()))).collect()
        })
        .collect()
}

/// The shape of the published files: 8, 4, 2, 2 columns for k = 1..4, 9 or 10 rows.
#[test]
fn published_profiles_have_the_shape_we_write() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ppipe-data/block-latency");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).expect("../shared/ppipe-data beside the repository") {
        let path = e.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let k: usize = name.rsplit('-').next().unwrap().parse().unwrap();
        let r = rows(&path);
        assert!(r.len() == 9 || r.len() == 10, "{name}");
        assert!(r.iter().all(|row| row.len() == [8, 4, 2, 2][k - 1]), "{name}");
        seen += 1;
    }
    assert!(seen > 100, "only {seen} published files");
}

#[test]
fn profile_writes_block_latency_cut_bytes_and_a_manifest() {
    let out = tmp("format");
    let o = out.to_str().unwrap();
    let args = [
        "profile",
        "resnet-mini",
        "--size",
        "32",
        "--out",
        o,
        "--class",
        "lvp",
        "--blocks",
        "4",
        "--batches",
        "1..8",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--json",
    ];
    let r = json(&poolpipe(&args));
    // Default shares 1,2,3,4 with 8, 4, 2, 2 batch columns, as published.
    for (k, cols) in [(1, 8), (2, 4), (3, 2), (4, 2)] {
        let t = rows(&out.join(format!("block-latency/resnet-mini-lvp-{k}.csv")));
        assert_eq!(t.len(), 4, "k={k}: one row per block");
        assert!(t.iter().all(|row| row.len() == cols && row.iter().all(|&x| x >= 1)), "k={k}: {t:?}");
        let share = r["shares"].as_array().unwrap().iter().find(|s| s["share"] == k).unwrap();
        let from_json: Vec<Vec<u64>> = serde_json::from_value(share["us"].clone()).unwrap();
        assert_eq!(from_json, t, "k={k}: JSON and file agree");
    }
    let cuts = rows(&out.join("cut-bytes/resnet-mini.csv"));
    assert_eq!(cuts.len(), 3, "M - 1 lines");
    assert!(cuts.iter().all(|l| l.len() == 1 && l[0] > 0));
    let cut_json: Vec<u64> = serde_json::from_value(r["cut_bytes"].clone()).unwrap();
    assert_eq!(cuts.iter().map(|l| l[0]).collect::<Vec<_>>(), cut_json);

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifests/resnet-mini-lvp.json")).unwrap()).unwrap();
    assert_eq!(manifest["blocks"], 4);
    assert_eq!(manifest["class"], "lvp");
    assert_eq!(manifest["device"]["class_source"], "given");
    assert!(manifest["device"]["name"].as_str().unwrap().contains("llvmpipe"), "{}", manifest["device"]);
    assert_eq!(manifest["device"]["backend"], "Vulkan");
    assert!(!manifest["device"]["driver"].as_str().unwrap().is_empty());
    let date = manifest["date"].as_str().unwrap();
    assert!(date.len() == 20 && date.ends_with('Z') && date[..4].parse::<u32>().unwrap() >= 2025, "{date}");
    let method = manifest["method"].as_str().unwrap();
    assert!(method == "gpu-timestamps" || method == "wall-clock", "{method}");
    assert!(manifest["method_detail"].as_str().unwrap().contains("median of 2 timed runs"));
    assert_eq!(manifest["boundary_precision"], "fp16");
    // The whole model and the sum of the blocks, per batch at share 1.
    assert_eq!(manifest["whole_model_us"].as_array().unwrap().len(), 8);
    assert_eq!(manifest["sum_of_blocks_us"].as_array().unwrap().len(), 8);
    // Node costs: one per node of the rewritten graph; the partition's bounds cover them.
    let nodes = std::fs::read_to_string(out.join("node-costs/resnet-mini-lvp.csv")).unwrap().lines().count();
    let bounds: Vec<usize> = serde_json::from_value(manifest["bounds"].clone()).unwrap();
    assert_eq!((bounds.len(), bounds[0], *bounds.last().unwrap()), (5, 0, nodes));
    let part: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("partitions/resnet-mini.json")).unwrap()).unwrap();
    assert_eq!(part["cut_tensors"].as_array().unwrap().len(), 3);

    // Tables for people.
    let text = poolpipe(&[
        "profile",
        "resnet-mini",
        "--size",
        "32",
        "--out",
        o,
        "--class",
        "lvp",
        "--blocks",
        "4",
        "--batches",
        "2",
        "--shares",
        "1",
        "--iters",
        "1",
        "--warmup",
        "0",
    ]);
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(s.contains("share 1/1") && s.contains("cost of cutting") && s.contains("reused"), "{s}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn classes_share_the_partition_and_repartition_marks_stale_files() {
    let out = tmp("classes");
    let o = out.to_str().unwrap();
    let base = [
        "profile",
        "resnet-mini",
        "--size",
        "32",
        "--out",
        o,
        "--batches",
        "2",
        "--shares",
        "1",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--json",
    ];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let run = |extra: &[&str]| {
        let a = with(extra);
        poolpipe(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let a = json(&run(&["--class", "one", "--blocks", "4"]));
    assert_eq!(a["partition_reused"], false);
    // No --class: the label derived from the adapter name (llvmpipe), as `devices` shows it.
    let b = json(&run(&["--blocks", "4", "--timing", "wall"]));
    assert_eq!((b["class"].as_str(), b["partition_reused"].as_bool()), (Some("llvmpipe"), Some(true)));
    assert_eq!(b["method"], "wall-clock");
    assert_eq!(a["bounds"], b["bounds"], "every class profiles the same blocks");
    assert!(out.join("block-latency/resnet-mini-llvmpipe-1.csv").is_file());
    // Another block count needs --repartition.
    let e = run(&["--class", "one", "--blocks", "3"]);
    assert!(!e.status.success());
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(err.contains("--blocks 4") && err.contains("--repartition"), "{err}");
    // Repartition: blocks balanced on both classes' node costs; the other class's files no
    // longer match and are renamed, never deleted.
    let c = json(&run(&["--class", "one", "--blocks", "3", "--repartition"]));
    assert_eq!(c["bounds"].as_array().unwrap().len(), 4);
    let stale: Vec<String> = serde_json::from_value(c["stale"].clone()).unwrap();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(stale[0].ends_with("resnet-mini-llvmpipe-1.csv.stale") && Path::new(&stale[0]).is_file());
    assert!(!out.join("block-latency/resnet-mini-llvmpipe-1.csv").exists());
    let part: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("partitions/resnet-mini.json")).unwrap()).unwrap();
    assert_eq!(part["balanced_on"], serde_json::json!(["one", "llvmpipe"]));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn onnx_models_profile_with_fp32_boundaries_too() {
    let dir = tmp("onnx-models");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen_onnx_models.py");
    let gen_out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .args(["--only", "fpn_neck"])
        .output()
        .expect("python3 runs (scripts/setup.sh installs onnx)");
    assert!(gen_out.status.success(), "{}", String::from_utf8_lossy(&gen_out.stderr));
    let out = tmp("onnx");
    let model = dir.join("fpn_neck.onnx");
    let r = json(&poolpipe(&[
        "profile",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--class",
        "lvp",
        "--blocks",
        "5",
        "--batches",
        "1..2",
        "--shares",
        "1,2",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--precision",
        "fp32",
        "--json",
    ]));
    assert_eq!(r["model"], "fpn_neck");
    assert_eq!(r["boundary_precision"], "fp32");
    assert_eq!(rows(&out.join("block-latency/fpn_neck-lvp-1.csv")).len(), 5);
    assert_eq!(rows(&out.join("block-latency/fpn_neck-lvp-2.csv"))[0].len(), 1);
    // Cut bytes stay the fp16 transfer size of the format, whatever the run's precision.
    assert_eq!(rows(&out.join("cut-bytes/fpn_neck.csv")).len(), 4);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profile_errors_name_the_problem() {
    let out = tmp("errors");
    let o = out.to_str().unwrap();
    let fails = |args: &[&str], needle: &str| {
        let r = poolpipe(args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    fails(&["profile", "resnet-mini", "--out", o, "--class", "my-gpu"], "no '-'");
    fails(&["profile", "resnet-mini", "--out", o, "--batches", "2..8"], "batch range like 1..8");
    fails(&["profile", "resnet-mini", "--out", o, "--blocks", "500"], "--blocks 1..=");
    fails(&["profile", "resnet-mini", "--out", o, "--shares", "0"], "--shares");
    fails(&["profile", "resnet-mini", "--out", o, "--precision", "int8"], "fp16 or fp32");
    fails(&["profile", "nope.onnx", "--out", o], "not found");
    fails(&["profile", "resnet-mini", "--out", o, "--device", "no-such-gpu"], "no adapter matches");
    fails(
        &["profile", "resnet-mini", "--out", o, "--classes", "/nonexistent/classes.toml"],
        "/nonexistent/classes.toml",
    );
    // A partition file that is not one is reported, not overwritten.
    std::fs::create_dir_all(out.join("partitions")).unwrap();
    std::fs::write(out.join("partitions/resnet-mini.json"), "garbage").unwrap();
    fails(&["profile", "resnet-mini", "--out", o, "--class", "x", "--batches", "1"], "is not a partition file");
    assert_eq!(std::fs::read_to_string(out.join("partitions/resnet-mini.json")).unwrap(), "garbage");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn devices_show_class_labels_from_the_name_or_a_class_file() {
    let r = json(&poolpipe(&["devices", "--json"]));
    let first = &r["adapters"][0];
    assert_eq!(first["class"], "llvmpipe", "{first}");
    assert_eq!(first["class_source"], "derived");
    let dir = tmp("classes-file");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("classes.toml");
    std::fs::write(&file, "[[class]]\nname = \"edge_cpu\"\nmatch = \"llvmpipe\"\nbackend = \"vulkan\"\n").unwrap();
    let r = json(&poolpipe(&["devices", "--json", "--classes", file.to_str().unwrap()]));
    let vk = r["adapters"].as_array().unwrap().iter().find(|a| a["backend"] == "Vulkan").unwrap();
    assert_eq!((&vk["class"], &vk["class_source"]), (&serde_json::json!("edge_cpu"), &serde_json::json!("config")));
    let text = poolpipe(&["devices", "--classes", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("edge_cpu*"));
    // The profile takes the same label when no --class is given.
    let out = dir.join("out");
    let index = vk["index"].to_string();
    let p = json(&poolpipe(&[
        "profile",
        "resnet-mini",
        "--size",
        "32",
        "--out",
        out.to_str().unwrap(),
        "--classes",
        file.to_str().unwrap(),
        "--device",
        &index,
        "--blocks",
        "2",
        "--batches",
        "1",
        "--shares",
        "1",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--json",
    ]));
    assert_eq!(p["class"], "edge_cpu");
    assert_eq!(p["device"]["class_source"], "config");
    std::fs::write(&file, "[[class]]\nname = \"bad-name\"\nmatch = \"x\"\n").unwrap();
    let e = poolpipe(&["devices", "--classes", file.to_str().unwrap()]);
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("no '-'"));
    let _ = std::fs::remove_dir_all(&dir);
}
