//! End-to-end tests of `poolpipe run MODEL.onnx` and `poolpipe inspect` as a user runs them,
//! with onnxruntime (python3) and the model generator as outside oracles.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{json, poolpipe};
use poolpipe_engine::npy;

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = poolpipe(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: '{n}' missing from: {err}");
    }
}

fn python(code: &str, args: &[&str]) -> String {
    let out = Command::new("python3").arg("-c").arg(code).args(args).output().expect("python3 runs");
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Models from scripts/gen_onnx_models.py plus four written here: `symbolic.onnx` (N x 3 x H x
/// W), `unsupported.onnx` (TfIdfVectorizer and an op of another domain), `nms.onnx` (boxes and
/// scores through NonMaxSuppression, which runs on the host, then a Gather of the selected
/// boxes on the device) and `ints.onnx` (an int64 input and int64 and bool outputs).
fn models() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-onnx");
        let _ = std::fs::remove_dir_all(&dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen_onnx_models.py");
        let out = Command::new("python3")
            .arg(&script)
            .arg(&dir)
            .args(["--only", "resnet50_block,fcn_head,nonlocal_block"])
            .output()
            .expect("python3 runs (scripts/setup.sh installs onnx, onnxruntime)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        python(
            r#"
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
d = sys.argv[1]
rng = np.random.default_rng(3)
x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 6])
w = numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "w")
nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["g"]),
         helper.make_node("Flatten", ["g"], ["scores"])]
m = helper.make_model(helper.make_graph(nodes, "sym", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])
onnx.save(m, f"{d}/symbolic.onnx")
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
         helper.make_node("TfIdfVectorizer", ["a"], ["t"], name="tfidf1", mode="TF", min_gram_length=1,
                          max_gram_length=1, max_skip_count=0, ngram_counts=[0], ngram_indexes=[0], pool_int64s=[1]),
         helper.make_node("FusedConv", ["t"], ["y"], name="fused1", domain="com.microsoft")]
m = helper.make_model(helper.make_graph(nodes, "u", [x], [y]),
                      opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
onnx.save(m, f"{d}/unsupported.onnx")
# Detection post-processing: NMS (host) between two device graphs.
boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 8, 4])
scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 8])
sel = helper.make_tensor_value_info("selected", TensorProto.INT64, ["n", 3])
picked = helper.make_tensor_value_info("picked", TensorProto.FLOAT, ["n", 4])
inits = [numpy_helper.from_array(np.array([3], dtype=np.int64), "max_out"),
         numpy_helper.from_array(np.array([0.5], dtype=np.float32), "iou"),
         numpy_helper.from_array(np.array([0.4], dtype=np.float32), "score_min"),
         numpy_helper.from_array(np.array([2], dtype=np.int64), "col"),
         numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
         numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
         numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")]
nodes = [helper.make_node("Sigmoid", ["scores"], ["probs"], name="sigmoid"),
         helper.make_node("NonMaxSuppression", ["boxes", "probs", "max_out", "iou", "score_min"], ["selected"],
                          name="nms"),
         helper.make_node("Gather", ["selected", "col"], ["box_idx"], axis=1, name="which"),
         helper.make_node("Reshape", ["box_idx", "flat"], ["idx"], name="flatten"),
         helper.make_node("Squeeze", ["boxes", "axis0"], ["all_boxes"], name="squeeze"),
         helper.make_node("Gather", ["all_boxes", "idx"], ["chosen"], axis=0, name="pick"),
         helper.make_node("Mul", ["chosen", "two"], ["picked"], name="scale")]
m = helper.make_model(helper.make_graph(nodes, "nms", [boxes, scores], [sel, picked], inits),
                      opset_imports=[helper.make_opsetid("", 17)])
onnx.checker.check_model(m, full_check=True)
onnx.save(m, f"{d}/nms.onnx")
b = rng.uniform(0, 1, (1, 8, 4)).astype(np.float32)
b[..., 2:] = b[..., :2] + rng.uniform(0.1, 0.5, (1, 8, 2)).astype(np.float32)
np.savez(f"{d}/nms.inputs.npz", boxes=b, scores=rng.standard_normal((1, 2, 8)).astype(np.float32))
# Integer tensors in and out: ArgMax + an int64 offset input, a comparison.
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])
off = helper.make_tensor_value_info("offset", TensorProto.INT64, ["N", 1])
idx = helper.make_tensor_value_info("index", TensorProto.INT64, ["N", 1])
big = helper.make_tensor_value_info("big", TensorProto.BOOL, ["N", 5])
inits = [numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half")]
nodes = [helper.make_node("ArgMax", ["x"], ["am"], axis=1, keepdims=1),
         helper.make_node("Add", ["am", "offset"], ["index"]),
         helper.make_node("Greater", ["x", "half"], ["big"])]
m = helper.make_model(helper.make_graph(nodes, "ints", [x, off], [idx, big], inits),
                      opset_imports=[helper.make_opsetid("", 17)])
onnx.checker.check_model(m, full_check=True)
onnx.save(m, f"{d}/ints.onnx")
np.savez(f"{d}/ints.inputs.npz", x=rng.standard_normal((3, 5)).astype(np.float32),
         offset=np.array([[10], [-20], [30]], dtype=np.int64))
"#,
            &[dir.to_str().unwrap()],
        );
        dir
    })
}

fn path(name: &str) -> String {
    models().join(name).display().to_string()
}

/// `poolpipe run MODEL --input INPUT --compare-ort --check --iters 1 --output OUT --json`
/// (model and input in the models folder): its report.
fn run_checked(model: &str, input: &str, out: &str) -> serde_json::Value {
    let (model, input) = (path(model), path(input));
    json(&poolpipe(&[
        "run",
        &model,
        "--input",
        &input,
        "--compare-ort",
        "--check",
        "--iters",
        "1",
        "--output",
        out,
        "--json",
    ]))
}

#[test]
fn run_onnx_matches_onnxruntime_and_writes_outputs() {
    let out_npy = path("logits.out.npy");
    let v = run_checked("resnet50_block.onnx", "resnet50_block.b4.input.npy", &out_npy);
    assert_eq!(v["source"], "onnx");
    assert_eq!(v["batch"], 4, "the batch comes from the input file");
    assert_eq!(v["outputs"][0]["name"], "logits", "outputs keep the file's names");
    assert!(v["max_rel_error"].as_f64().unwrap() <= 1e-3);
    let ort = &v["onnxruntime"][0];
    assert!(ort["rel_error"].as_f64().unwrap() <= 1e-3, "{ort}");
    let top5 = v["top5"].as_array().expect("a classifier gets top-5");
    assert_eq!(top5.len(), 4);
    // The file written equals the generator's onnxruntime output within the tolerance, and
    // top-1 is its arg max.
    let ours = npy::read(Path::new(&out_npy)).unwrap();
    let want = npy::read(&models().join("resnet50_block.b4.out0.npy")).unwrap();
    assert!(ours.max_abs_diff(&want) / want.max_abs() <= 1e-3);
    for (f, row) in want.data().chunks(10).enumerate() {
        let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(top5[f][0]["class"].as_u64().unwrap() as usize, best, "frame {f}");
    }

    // Several outputs go to an .npz that numpy reads back by name.
    let npz = path("fcn.out.npz");
    let v = json(&poolpipe(&[
        "run",
        &path("fcn_head.onnx"),
        "--input",
        &path("fcn_head.b1.input.npy"),
        "--iters",
        "1",
        "--output",
        &npz,
        "--json",
    ]));
    assert!(v["top5"].is_null(), "a segmentation head is no classifier");
    let dir = models().display().to_string();
    let report = python(
        r#"
import sys, numpy as np
z = np.load(sys.argv[1])
for k, name in enumerate(z.files):
    want = np.load(f"{sys.argv[2]}/fcn_head.b1.out{k}.npy")
    print(name, float(np.abs(z[name] - want).max() / np.abs(want).max()))
"#,
        &[&npz, &dir],
    );
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 2, "{report}");
    for (line, name) in lines.iter().zip(["probs", "aux_logits"]) {
        let (n, e) = line.split_once(' ').unwrap();
        assert_eq!(n, name);
        assert!(e.parse::<f64>().unwrap() <= 1e-3, "{line}");
    }
    // And the .npz goes back in as input of a single-input model when named after it.
    let inp = path("fcn.in.npz");
    python(
        "import sys, numpy as np; np.savez(sys.argv[1], input=np.load(sys.argv[2]))",
        &[&inp, &path("fcn_head.b4.input.npy")],
    );
    let v =
        json(&poolpipe(&["run", &path("fcn_head.onnx"), "--input", &inp, "--compare-ort", "--iters", "1", "--json"]));
    assert_eq!(v["batch"], 4);
    assert!(v["onnxruntime"][1]["rel_error"].as_f64().unwrap() <= 1e-3);
}

#[test]
fn images_are_frames_and_match_onnxruntime() {
    let (png, jpg) = (path("frame.png"), path("frame.jpg"));
    let img = image::RgbImage::from_fn(64, 40, |x, y| image::Rgb([(x * 4) as u8, (y * 6) as u8, 90]));
    img.save(&png).unwrap();
    img.save(&jpg).unwrap();
    let v = json(&poolpipe(&[
        "run",
        &path("resnet50_block.onnx"),
        "--input",
        &png,
        "--input",
        &jpg,
        "--compare-ort",
        "--iters",
        "1",
        "--json",
    ]));
    assert_eq!(v["batch"], 2, "one frame per image");
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([2, 3, 48, 48]));
    assert!(v["onnxruntime"][0]["rel_error"].as_f64().unwrap() <= 1e-3);
    // One image repeated to a batch; the table names the preset's result.
    let out = poolpipe(&[
        "run",
        &path("resnet50_block.onnx"),
        "--input",
        &png,
        "--batch",
        "3",
        "--preset",
        "unit",
        "--iters",
        "1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[3, 3, 48, 48]") && text.contains("top-5        frame 2"), "{text}");
    std::fs::write(path("broken.png"), b"\x89PNG not really").unwrap();
    fails_with(&["run", &path("resnet50_block.onnx"), "--input", &path("broken.png")], &["broken.png", "decode"]);
}

#[test]
fn symbolic_sizes_come_from_the_input_shape_or_the_tensor() {
    fails_with(&["run", &path("symbolic.onnx")], &["symbolic", "--input-shape"]);
    let v = json(&poolpipe(&[
        "run",
        &path("symbolic.onnx"),
        "--input-shape",
        "3x20x24",
        "--batch",
        "2",
        "--compare-ort",
        "--iters",
        "1",
        "--json",
    ]));
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([2, 3, 20, 24]));
    assert!(v["onnxruntime"][0]["rel_error"].as_f64().unwrap() <= 1e-3);
    let t = path("sym.in.npy");
    python(
        "import sys, numpy as np; np.save(sys.argv[1], np.random.default_rng(1).random((3, 3, 17, 9), dtype=np.float32))",
        &[&t],
    );
    let v = json(&poolpipe(&["run", &path("symbolic.onnx"), "--input", &t, "--compare-ort", "--iters", "1", "--json"]));
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([3, 3, 17, 9]));
    assert!(v["onnxruntime"][0]["rel_error"].as_f64().unwrap() <= 1e-3);
    fails_with(&["run", &path("symbolic.onnx"), "--input-shape", "3x2y"], &["3x2y", "3x224x224"]);
}

#[test]
fn inspect_reports_layers_flops_and_unsupported_ops() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models().join("manifest.json")).unwrap()).unwrap();
    for m in manifest["models"].as_array().unwrap() {
        let v = json(&poolpipe(&["inspect", &path(m["file"].as_str().unwrap()), "--json"]));
        assert_eq!(v["importable"], true);
        let layers = v["layers"].as_array().unwrap();
        assert!(!layers.is_empty());
        let sum: u64 = layers.iter().map(|l| l["flops"].as_u64().unwrap()).sum();
        assert_eq!(sum, v["flops_per_frame"].as_u64().unwrap());
        // The generator counts FLOPs on its own from the ONNX graph.
        assert_eq!(v["flops_per_frame"], m["flops_per_sample"], "{}", m["name"]);
        assert!(v["ops"].as_array().unwrap().iter().all(|o| o["supported"] == true));
    }
    let v = json(&poolpipe(&["inspect", &path("unsupported.onnx"), "--json"]));
    assert_eq!(v["importable"], false);
    let unsupported: Vec<&str> = v["ops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["supported"] == false)
        .map(|o| o["op"].as_str().unwrap())
        .collect();
    assert_eq!(unsupported, ["TfIdfVectorizer", "com.microsoft::FusedConv"]);
    let e = v["import_error"].as_str().unwrap();
    assert!(
        e.contains("TfIdfVectorizer (nodes tfidf1)") && e.contains("com.microsoft::FusedConv (nodes fused1)"),
        "{e}"
    );
    // A host node: named with what crosses for it; the device graph before it is listed.
    let v = json(&poolpipe(&["inspect", &path("nms.onnx"), "--json"]));
    assert_eq!(v["importable"], true);
    assert_eq!(v["host_step"][0], "nms");
    assert_eq!(v["host_step"][1], "NonMaxSuppression");
    assert_eq!(v["host_step"][2], 8 * 4 * 4 + 2 * 8 * 4, "boxes and probabilities are read back");
    let text = String::from_utf8_lossy(&poolpipe(&["inspect", &path("nms.onnx")]).stdout).into_owned();
    assert!(text.contains("nms (NonMaxSuppression) runs on the CPU"), "{text}");
    let text = String::from_utf8_lossy(&poolpipe(&["inspect", &path("nonlocal_block.onnx")]).stdout).into_owned();
    assert!(text.contains("MatMul") && text.contains("FLOPs") && text.contains("import       ok"), "{text}");
    let text = String::from_utf8_lossy(&poolpipe(&["inspect", "resnet-mini", "--size", "32"]).stdout).into_owned();
    assert!(text.contains("Conv") && text.contains("import       ok"), "{text}");
}

#[test]
fn bad_models_inputs_and_outputs_are_clear_errors() {
    fails_with(&["run", &path("unsupported.onnx")], &["TfIdfVectorizer (nodes tfidf1)", "com.microsoft::FusedConv"]);
    fails_with(&["run", &path("missing.onnx")], &["missing.onnx", "not found"]);
    fails_with(&["run", &path("manifest.json")], &["manifest.json", "not a valid ONNX file"]);
    fails_with(&["inspect", &path("manifest.json")], &["manifest.json", "not a valid ONNX file"]);
    let model = path("fcn_head.onnx");
    fails_with(&["run", &model, "--output", &path("o.npy")], &["2 outputs", ".npz"]);
    fails_with(&["run", &model, "--output", &path("o.txt")], &[".npy", ".npz"]);
    fails_with(&["run", &model, "--output", "/no/such/dir/o.npz"], &["/no/such/dir"]);
    fails_with(&["run", &model, "--input", &path("fcn_head.b4.input.npy"), "--batch", "2"], &["--batch 2", "4 frames"]);
    fails_with(&["run", &model, "--input", &path("manifest.json")], &["manifest.json", "unknown input kind"]);
    fails_with(&["run", &model, "--input", &path("nonlocal_block.b1.input.npy")], &["[1, 3, 32, 32]", "[3, 48, 48]"]);
    fails_with(&["run", "resnet-mini", "--compare-ort"], &["--compare-ort", "ONNX"]);
    fails_with(&["run", "resnet-mini", "--input-shape", "3x8x8"], &["--size"]);
    // Nothing is written when the run fails before the end.
    assert!(!models().join("o.npy").exists());
}

#[test]
fn a_host_node_runs_between_two_device_graphs_and_matches_onnxruntime() {
    let out = path("nms.out.npz");
    let v = run_checked("nms.onnx", "nms.inputs.npz", &out);
    assert_eq!(v["failures"], serde_json::json!([]), "{v}");
    assert_eq!(v["host_nodes"], serde_json::json!([["nms", "NonMaxSuppression"]]));
    assert!(v["host_bytes"][0].as_u64().unwrap() > 0 && v["host_bytes"][1].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["outputs"][0]["dtype"], "int64");
    let n = v["outputs"][0]["shape"][0].as_u64().unwrap();
    assert!((1..=6).contains(&n), "selected {n} boxes");
    assert_eq!(v["outputs"][1]["shape"], serde_json::json!([n, 4]));
    for c in v["onnxruntime"].as_array().unwrap() {
        assert_eq!(c["rel_error"].as_f64().unwrap(), 0.0, "{c}");
    }
    let got = python(
        "import sys, numpy as np; z = np.load(sys.argv[1]); print(z['selected'].dtype, z['picked'].dtype)",
        &[&out],
    );
    assert_eq!(got.trim(), "int64 float32");
    let text =
        String::from_utf8_lossy(&poolpipe(&["run", &path("nms.onnx"), "--input", &path("nms.inputs.npz")]).stdout)
            .into_owned();
    assert!(text.contains("host         nms (NonMaxSuppression) run on the CPU"), "{text}");
}

#[test]
fn integer_and_bool_inputs_and_outputs_run_through_npz() {
    let out = path("ints.out.npz");
    let v = run_checked("ints.onnx", "ints.inputs.npz", &out);
    assert_eq!(v["failures"], serde_json::json!([]), "{v}");
    assert_eq!(v["inputs"][1]["dtype"], "int64");
    assert_eq!(v["outputs"][0]["dtype"], "int64");
    assert_eq!(v["outputs"][1]["dtype"], "bool");
    let got = python(
        "import sys, numpy as np; z = np.load(sys.argv[1]); i = np.load(sys.argv[2]); \
         print(z['index'].dtype, z['big'].dtype, bool((z['index'] == i['x'].argmax(1)[:, None] + i['offset']).all()), \
         bool((z['big'] == (i['x'] > 0.5)).all()))",
        &[&out, &path("ints.inputs.npz")],
    );
    assert_eq!(got.trim(), "int64 bool True True");
    // A float array for the int64 input is refused, naming both types.
    python(
        "import sys, numpy as np; np.savez(sys.argv[1], x=np.zeros((2, 5), np.float32), offset=np.zeros((2, 1), np.float32))",
        &[&path("ints.bad.npz")],
    );
    fails_with(&["run", &path("ints.onnx"), "--input", &path("ints.bad.npz")], &["float32", "int64"]);
}

#[test]
fn light_models_run_at_batch_4_against_onnxruntime() {
    let dir = python("import onnx, os; print(os.path.dirname(onnx.__file__))", &[]);
    // The graphs fix batch 1; poolpipe runs 4 frames at once and onnxruntime one at a time.
    // (engine/tests/onnx_models.rs runs all nine at batch 1; these two are the cheapest.)
    for name in ["light_squeezenet", "light_shufflenet"] {
        let model = Path::new(dir.trim()).join(format!("backend/test/data/light/{name}.onnx"));
        let v = json(&poolpipe(&[
            "run",
            model.to_str().unwrap(),
            "--batch",
            "4",
            "--compare-ort",
            "--iters",
            "1",
            "--json",
        ]));
        assert_eq!(v["outputs"][0]["shape"][0], 4, "{name}");
        assert!(v["onnxruntime"][0]["rel_error"].as_f64().unwrap() <= 1e-3, "{name}: {}", v["onnxruntime"]);
        assert_eq!(v["top5"].as_array().unwrap().len(), 4, "{name}");
    }
}
