//! ONNX's own backend node test cases through the engine on the GPU (lavapipe on CPU-only
//! machines), against the expected outputs the cases carry.
//!
//! The cases are generated here from the installed `onnx` package by
//! `scripts/onnx_node_cases.py` (every input after the first becomes an initializer). Each
//! case is imported, compiled and run like a user's model, and every output is compared with
//! the case's own tolerances (ONNX's defaults: rtol 1e-3, atol 1e-7). The test prints
//! `k/n pass` (float cases, then all), the failing cases grouped by reason, and fails when a
//! case of the committed pass list (`tests/onnx_node_pass.txt`) no longer passes, so the count
//! can only go up, when fewer than 90% of the float cases pass, or when docs/onnx.md does not
//! state this run's figures. `POOLPIPE_UPDATE_NODE_PASS=1` rewrites the list from this run;
//! `POOLPIPE_NODE_REPORT=FILE` writes every case's result as JSON (for docs/onnx.md).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use poolpipe_engine::gpu::{CompileOptions, CompiledModel, Device};
use poolpipe_engine::{EngineError, onnx};

struct Case {
    name: String,
    ops: Vec<String>,
    opset: i64,
    rtol: f64,
    atol: f64,
    float: bool,
}

struct Outcome {
    name: String,
    pass: bool,
    reason: String,
    host: bool,
}

/// The reason class of an error: names, numbers and shapes taken out, so that cases failing
/// the same way group together.
fn generalize(msg: &str) -> String {
    // True when the text so far ends in a word that starts with a letter (float64, int4).
    fn in_word(out: &str) -> bool {
        let tail: String = out.chars().rev().take_while(|p| p.is_ascii_alphanumeric()).collect();
        tail.chars().last().is_some_and(|p| p.is_ascii_alphabetic())
    }
    let mut out = String::new();
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                }
                out.push_str("'…'");
            }
            '[' => {
                let mut depth = 1;
                for d in chars.by_ref() {
                    match d {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                out.push_str("[…]");
            }
            // Digits inside a word (float8e4m3, int4) belong to the name.
            c if c.is_ascii_digit() && in_word(&out) => out.push(c),
            c if c.is_ascii_digit() || (c == '-' && chars.peek().is_some_and(|d| d.is_ascii_digit())) => {
                let mut number = String::from(c);
                while let Some(d) = chars.peek().copied().filter(|d| d.is_ascii_digit() || *d == '.' || *d == 'e') {
                    number.push(d);
                    chars.next();
                }
                // "2-D" names a rank, not a value.
                if chars.peek() == Some(&'-') && chars.clone().nth(1) == Some('D') {
                    out.push_str(&number);
                } else {
                    out.push('N');
                }
            }
            c => out.push(c),
        }
    }
    let out = out.split(';').next().unwrap_or("").trim().to_string();
    if out.chars().count() > 110 { out.chars().take(110).collect::<String>() + "…" } else { out }
}

fn classify(e: &EngineError) -> String {
    match e {
        EngineError::UnsupportedOps { ops, .. } => {
            let names: Vec<&str> = ops.split("; ").map(|o| o.split(" (nodes").next().unwrap_or(o)).collect();
            format!("unsupported op: {}", names.join(", "))
        }
        EngineError::InvalidNode { op, reason, .. } => format!("{op}: {}", generalize(reason)),
        EngineError::Model { reason, .. } => format!("model: {}", generalize(reason)),
        other => generalize(&other.to_string()),
    }
}

fn run_case(dev: &Device, dir: &Path, case: &Case) -> std::result::Result<bool, String> {
    let verbose = std::env::var("POOLPIPE_NODE_ONLY").is_ok();
    let classify = |e: &EngineError| {
        if verbose {
            println!("{}: {e}", case.name);
        }
        classify(e)
    };
    let model = onnx::load(&dir.join("model.onnx"), &Default::default()).map_err(|e| classify(&e))?;
    let x = onnx::read_tensor(&dir.join("input_0.pb")).map_err(|e| format!("harness: {e}"))?;
    let n_out = model.signature().outputs.len();
    let mut compiled = CompiledModel::new(dev, Arc::new(model), CompileOptions::default());
    let run = compiled.run_full(&[x]).map_err(|e| classify(&e))?;
    for k in 0..n_out {
        let want = onnx::read_tensor(&dir.join(format!("output_{k}.pb"))).map_err(|e| format!("harness: {e}"))?;
        let got = &run.outputs[k];
        if got.dtype() != want.dtype() {
            return Err(format!("wrong output type: {} instead of {}", got.dtype(), want.dtype()));
        }
        if got.shape() != want.shape() {
            return Err("wrong output shape".into());
        }
        if !got.allclose(&want, case.rtol, case.atol) {
            if verbose {
                let (g, w) = (got.to_f64s(), want.to_f64s());
                let off: Vec<usize> = (0..g.len())
                    .filter(|&i| !((g[i] - w[i]).abs() <= case.atol + case.rtol * w[i].abs() || g[i] == w[i]))
                    .collect();
                println!(
                    "{}: output {k}: {} of {} elements differ, first at {:?}\n  got  {:?}\n  want {:?}",
                    case.name,
                    off.len(),
                    g.len(),
                    off.iter().take(4).map(|&i| (i, g[i], w[i])).collect::<Vec<_>>(),
                    &g[..g.len().min(12)],
                    &w[..w.len().min(12)]
                );
            }
            return Err(format!("wrong values ({})", case.ops.join(", ")));
        }
    }
    Ok(!run.host.steps.is_empty())
}

fn cases(dir: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json written by the generator");
    let m: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    m["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["skipped"].is_null())
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            ops: c["ops"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect(),
            opset: c["opset"].as_i64().unwrap_or(-1),
            rtol: c["rtol"].as_f64().unwrap_or(1e-3),
            atol: c["atol"].as_f64().unwrap_or(1e-7),
            float: c["float"].as_bool().unwrap_or(false),
        })
        .collect()
}

fn pass_list_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_node_pass.txt")
}

#[test]
fn onnx_backend_node_cases() {
    let dir = common::node_cases("node-cases");
    let mut cases = cases(&dir);
    assert!(cases.len() > 1000, "only {} node cases were generated", cases.len());

    // POOLPIPE_NODE_ONLY=a,b runs those cases only and prints their errors in full.
    if let Ok(only) = std::env::var("POOLPIPE_NODE_ONLY") {
        let only: BTreeSet<&str> = only.split(',').collect();
        cases.retain(|c| only.iter().any(|o| c.name.starts_with(o)));
    }
    let dev = common::device();
    let next = AtomicUsize::new(0);
    let mut outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut done = vec![];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(case) = cases.get(i) else { break };
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            run_case(&dev, &dir.join(&case.name), case)
                        }));
                        let (pass, reason, host) = match r {
                            Ok(Ok(host)) => (true, String::new(), host),
                            Ok(Err(reason)) => (false, reason, false),
                            Err(p) => {
                                let msg = p
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_default();
                                (false, format!("PANIC: {}", generalize(&msg)), false)
                            }
                        };
                        done.push(Outcome { name: case.name.clone(), pass, reason, host });
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("worker")).collect()
    });
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    let is_float: BTreeMap<&str, bool> = cases.iter().map(|c| (c.name.as_str(), c.float)).collect();
    let count = |float: Option<bool>| {
        let sel: Vec<&Outcome> =
            outcomes.iter().filter(|o| float.is_none_or(|f| is_float[o.name.as_str()] == f)).collect();
        (sel.iter().filter(|o| o.pass).count(), sel.len())
    };
    let (fp, fn_) = count(Some(true));
    let (ap, an) = count(None);
    let host = outcomes.iter().filter(|o| o.host).count();
    println!(
        "onnx node cases: {fp}/{fn_} float cases pass ({:.1}%), {ap}/{an} cases in all; {host} passing cases ran a host step",
        100.0 * fp as f64 / fn_ as f64
    );
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| !o.pass) {
        by_reason.entry(o.reason.as_str()).or_default().push(o.name.as_str());
    }
    let mut groups: Vec<(&&str, &Vec<&str>)> = by_reason.iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    println!("failing cases by reason:");
    for (reason, names) in &groups {
        let shown: Vec<&str> = names.iter().take(4).copied().collect();
        println!("  {:4}  {reason}  ({}{})", names.len(), shown.join(", "), if names.len() > 4 { ", ..." } else { "" });
    }
    if let Ok(path) = std::env::var("POOLPIPE_NODE_REPORT") {
        let report: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                let c = cases.iter().find(|c| c.name == o.name).unwrap();
                serde_json::json!({"name": o.name, "ops": c.ops, "opset": c.opset, "float": c.float, "pass": o.pass, "reason": o.reason, "host": o.host})
            })
            .collect();
        std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).expect("report written");
    }
    let passing: BTreeSet<&str> = outcomes.iter().filter(|o| o.pass).map(|o| o.name.as_str()).collect();
    let panics: Vec<&str> =
        outcomes.iter().filter(|o| o.reason.starts_with("PANIC")).map(|o| o.name.as_str()).collect();
    if std::env::var("POOLPIPE_UPDATE_NODE_PASS").is_ok() {
        let text: String = passing.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(pass_list_path(), text).expect("pass list written");
    }
    let listed = if std::env::var("POOLPIPE_NODE_ONLY").is_ok() {
        String::new()
    } else {
        std::fs::read_to_string(pass_list_path()).unwrap_or_default()
    };
    let listed: Vec<&str> = listed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let missing: Vec<&str> = listed.iter().copied().filter(|l| !cases.iter().any(|c| c.name == *l)).collect();
    let regressions: Vec<&str> =
        listed.iter().copied().filter(|l| !passing.contains(l) && !missing.contains(l)).collect();
    let _ = std::fs::remove_dir_all(&dir);
    if std::env::var("POOLPIPE_NODE_ONLY").is_err() {
        // The engine's operator breadth: at least 90% of the float cases.
        assert!(
            fp * 10 >= fn_ * 9,
            "only {fp}/{fn_} float node cases pass; poolpipe promises at least 90% (docs/onnx.md)"
        );
        // The coverage page states this run's figures.
        let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/onnx.md"))
            .expect("docs/onnx.md exists");
        let headline = format!("**{fp}/{fn_} float cases pass");
        assert!(
            page.contains(&headline) && page.contains(&format!("{ap}/{an} cases in all")),
            "docs/onnx.md does not state this run's figures ({fp}/{fn_} float cases, {ap}/{an} in all); \
             regenerate it: POOLPIPE_NODE_REPORT=/tmp/report.json cargo test -p poolpipe-engine --test onnx_node \
             && python3 scripts/node_coverage.py /tmp/report.json > docs/onnx.md"
        );
    }
    assert!(panics.is_empty(), "the engine panicked on {} node cases: {panics:?}", panics.len());
    assert!(
        missing.is_empty(),
        "{} node cases of tests/onnx_node_pass.txt were not generated by the installed onnx package: {missing:?}; \
         the list was made with onnx 1.23.2 (scripts/setup.sh installs it)",
        missing.len()
    );
    assert!(
        regressions.is_empty(),
        "{} node cases of tests/onnx_node_pass.txt fail now: {regressions:?}",
        regressions.len()
    );
}
