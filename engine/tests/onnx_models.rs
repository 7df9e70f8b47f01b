//! ONNX models imported and run on the GPU against onnxruntime (CPU), at the batch sizes the
//! generator ran them (1 and 4; 1 for the light models of the `onnx` package whose graphs fix
//! the batch), and the light models also against the outputs shipped beside them.
//!
//! The models, inputs and onnxruntime outputs come from `scripts/gen_onnx_models.py` (run here
//! into the test's temporary folder; `scripts/setup.sh` installs onnx and onnxruntime): the
//! CNN-family blocks (default set), the light models (`--light`) and the task-level models
//! (`--tasks`: YOLO and SSD detectors with TopK and NonMaxSuppression, DeepLabV3+, a PRelu face
//! detector, a CRNN with bidirectional LSTMs, a ViT with the Attention op, a QDQ-quantised
//! ResNet block), one test each.
//! Tolerance: the largest absolute error relative to the largest |onnxruntime value| (floor
//! 1e-6) is at most 1e-3. The task models are held to more: every output has onnxruntime's
//! shape and element type, integer outputs (NMS selections, whose row count depends on the
//! data) are equal, and an output of a DequantizeLinear may differ by at most one quantisation
//! step (a float rounding difference upstream can move a value across a rounding boundary).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use common::device;
use poolpipe_engine::gpu::{CompileOptions, CompiledModel};
use poolpipe_engine::{Tensor, npy, onnx};

const TOL: f32 = 1e-3;

/// The generator's model sets.
#[derive(Clone, Copy)]
enum Set {
    /// CNN-family blocks (the default set).
    Generated,
    /// The light models of the `onnx` package (`--light`).
    Light,
    /// Detection, segmentation, face, OCR, ViT and QDQ models (`--tasks`).
    Tasks,
}

/// Runs the generator once per test binary and set, into the test's temporary folder.
fn generated(set: Set) -> PathBuf {
    static DIRS: [OnceLock<PathBuf>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (folder, flag) = match set {
        Set::Generated => ("generated", None),
        Set::Light => ("light", Some("--light")),
        Set::Tasks => ("tasks", Some("--tasks")),
    };
    DIRS[set as usize]
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx-models").join(folder);
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gen_onnx_models.py");
            let _ = std::fs::remove_dir_all(&dir);
            let mut cmd = Command::new("python3");
            cmd.arg(&script).arg(&dir);
            cmd.args(flag);
            let out = cmd.output().expect("python3 runs (scripts/setup.sh installs onnx, onnxruntime)");
            assert!(
                out.status.success(),
                "{} failed (run scripts/setup.sh for onnx and onnxruntime):\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            dir
        })
        .clone()
}

fn check_manifest(dir: &Path, only: Option<&str>) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest.json")).unwrap();
    let dev = device();
    let mut checked = 0;
    for m in manifest["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let model = onnx::load(&dir.join(m["file"].as_str().unwrap()), &Default::default())
            .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
        let batches: Vec<usize> =
            m["batches"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as usize).collect();
        // One model, compiled once per batch size it is run at.
        let mut compiled = CompiledModel::new(&dev, Arc::new(model), CompileOptions::default());
        for b in batches {
            let input = npy::read(&dir.join(format!("{name}.b{b}.input.npy"))).unwrap();
            let got = compiled.run(&[input]).unwrap_or_else(|e| panic!("{name} batch {b}: {e}"));
            for (k, g) in got.iter().enumerate() {
                let want = npy::read(&dir.join(format!("{name}.b{b}.out{k}.npy"))).unwrap();
                let g = g.clone().reshaped(want.shape().to_vec()).unwrap_or_else(|_| {
                    panic!("{name} batch {b} output {k}: shape {:?}, onnxruntime {:?}", g.shape(), want.shape())
                });
                let err = g.max_abs_diff(&want) / want.max_abs().max(1e-6);
                assert!(err <= TOL, "{name} batch {b} output {k}: relative error {err:e} above {TOL:e}");
            }
        }
        // The light models ship the output of a known input: compare with it too.
        if let (Some(inp), Some(exp)) = (m["expected_input"].as_str(), m["expected"].as_str()) {
            let input = npy::read(&dir.join(inp)).unwrap();
            let want = npy::read(&dir.join(exp)).unwrap();
            let got = compiled.run(&[input]).unwrap().remove(0).reshaped(want.shape().to_vec()).unwrap();
            let err = got.max_abs_diff(&want) / want.max_abs().max(1e-6);
            assert!(err <= TOL, "{name}: relative error {err:e} against the shipped expected output");
        }
        checked += 1;
    }
    assert!(checked > 0, "no model checked in {}", dir.display());
}

#[test]
fn generated_cnn_families_match_onnxruntime() {
    check_manifest(&generated(Set::Generated), std::env::var("POOLPIPE_ONNX_ONLY").ok().as_deref());
}

#[test]
fn light_model_zoo_models_match_onnxruntime() {
    check_manifest(&generated(Set::Light), std::env::var("POOLPIPE_ONNX_ONLY").ok().as_deref());
}

/// The task-level models, each checked by its own test below.
const TASK_MODELS: &[&str] =
    &["yolo_detector", "ssd_head", "deeplabv3plus", "face_detector", "crnn", "vit_tiny", "qdq_resnet_block"];

/// The manifest entry of a task-level model.
fn task_entry(dir: &Path, name: &str) -> serde_json::Value {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest.json")).unwrap();
    let models = manifest["models"].as_array().unwrap();
    models.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name} is not in the --tasks manifest")).clone()
}

/// One output of a task-level model against onnxruntime's: same shape and element type;
/// integers equal; floats within one quantisation step where the output is dequantised, else
/// within TOL relative to the largest |value|.
fn compare_output(what: &str, got: &Tensor, want: &Tensor, quantum: Option<f32>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape differs from onnxruntime's");
    assert_eq!(got.dtype(), want.dtype(), "{what}: element type differs from onnxruntime's");
    if !want.dtype().is_float() {
        let (g, w) = (got.to_i64s(), want.to_i64s());
        if let Some(i) = g.iter().zip(&w).position(|(a, b)| a != b) {
            let row = want.shape().get(1..).map_or(1, |r| r.iter().product::<usize>()).max(1);
            let at = i / row * row;
            panic!(
                "{what}: element {i} is {}, onnxruntime {} (row {}: {:?} vs {:?})",
                g[i],
                w[i],
                i / row,
                &g[at..(at + row).min(g.len())],
                &w[at..(at + row).min(w.len())]
            );
        }
        return;
    }
    let diff = got.max_abs_diff(want);
    match quantum {
        // One step, with room for the rounding of the step itself.
        Some(q) => assert!(diff <= q * 1.01, "{what}: differs by {diff:e}, more than one quantisation step {q:e}"),
        None => {
            let err = diff / want.max_abs().max(1e-6);
            assert!(err <= TOL, "{what}: relative error {err:e} above {TOL:e}");
        }
    }
}

/// Imports a task-level model, runs it at every batch the generator ran and compares every
/// output with onnxruntime's.
fn check_task(name: &str) {
    let dir = generated(Set::Tasks);
    let m = task_entry(&dir, name);
    let model = onnx::load(&dir.join(m["file"].as_str().unwrap()), &Default::default())
        .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
    let outputs: Vec<&str> = m["outputs"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
    let quanta: Vec<Option<f32>> =
        m["output_quanta"].as_array().unwrap().iter().map(|q| q.as_f64().map(|v| v as f32)).collect();
    let dev = device();
    let mut compiled = CompiledModel::new(&dev, Arc::new(model), CompileOptions::default());
    for b in m["batches"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()) {
        let input = npy::read(&dir.join(format!("{name}.b{b}.input.npy"))).unwrap();
        let got = compiled.run(&[input]).unwrap_or_else(|e| panic!("{name} batch {b}: {e}"));
        assert_eq!(got.len(), outputs.len(), "{name} batch {b}: number of outputs");
        for (k, g) in got.iter().enumerate() {
            let want = npy::read(&dir.join(format!("{name}.b{b}.out{k}.npy"))).unwrap();
            compare_output(&format!("{name} batch {b} output {}", outputs[k]), g, &want, quanta[k]);
        }
    }
}

#[test]
fn task_models_each_have_a_test() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(generated(Set::Tasks).join("manifest.json")).unwrap()).unwrap();
    let mut names: Vec<&str> =
        manifest["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    let mut tested = TASK_MODELS.to_vec();
    tested.sort_unstable();
    assert_eq!(names, tested, "every --tasks model has its test here");
}

/// Conv+BN+SiLU, C2f/C3 (Split, Concat), SPPF, nearest Resize, a grid from Range/Expand and
/// Range/Tile, Sigmoid/Exp decode, MatMul to corners, NonMaxSuppression, Gather of the
/// selection through computed flat indices.
#[test]
fn yolo_detector_with_nms_matches_onnxruntime() {
    check_task("yolo_detector");
}

/// Class/box heads on three levels, Softmax, ReduceMax, TopK, GatherND (batch_dims 1),
/// decode against constant anchors, NonMaxSuppression, GatherND of the selection.
#[test]
fn ssd_head_with_topk_and_nms_matches_onnxruntime() {
    check_task("ssd_head");
}

/// ASPP (dilated convs, image pooling + bilinear Resize), ConvTranspose, cubic and
/// align_corners bilinear Resize.
#[test]
fn deeplabv3plus_decoder_matches_onnxruntime() {
    check_task("deeplabv3plus");
}

/// PRelu with per-channel [C, 1, 1] and shared slopes, FPN, SSH, three heads, Softmax over 2.
#[test]
fn face_detector_with_prelu_matches_onnxruntime() {
    check_task("face_detector");
}

/// Conv stack, Squeeze, Transpose to [T, N, C], two bidirectional LSTMs, LogSoftmax.
#[test]
fn crnn_recogniser_with_bidirectional_lstm_matches_onnxruntime() {
    check_task("crnn");
}

/// Patch embedding, class token Expand (Where/Equal/ConstantOfShape), MatMul attention, the
/// Attention op (opset 23), erf GELU, LayerNormalization, Gemm head.
#[test]
fn vit_with_attention_op_matches_onnxruntime() {
    check_task("vit_tiny");
}

/// onnxruntime's static QDQ quantisation: uint8 activations, per-channel int8 weights,
/// int32 biases.
#[test]
fn qdq_resnet_block_matches_onnxruntime() {
    check_task("qdq_resnet_block");
}
