//! Pipeline stages on the GPU: fp16 packing of boundary tensors against the CPU conversion,
//! and the invariant that running blocks [0, c) then [c, M) gives the whole model's outputs
//! within fp16 tolerance, for every cut c of generated ONNX models of several CNN families
//! (`scripts/gen_onnx_models.py`, run into the test's temporary folder).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use common::device;
use poolpipe_engine::boundary::{Boundary, Precision, f16_to_f32, f32_to_f16};
use poolpipe_engine::gpu::{CompileOptions, CompiledModel};
use poolpipe_engine::partition::{PartitionOptions, estimate_costs, partition};
use poolpipe_engine::stage::{CompiledStage, Stage};
use poolpipe_engine::{Activation, Graph, GraphBuilder, Model, Rng, Tensor, onnx, optimize};

/// Families with skip connections (resnet, mobilenet v3 with SE, fpn with two outputs, one
/// of them used later), branches and concat (inception), LayerNorm and MatMul (convnext),
/// resize and two outputs (fcn).
const MODELS: &[&str] =
    &["resnet50_block", "mobilenetv3_block", "inception_v3_block", "convnext_t_block", "fcn_head", "fpn_neck"];

fn generated() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("stage-models-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gen_onnx_models.py");
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("python3")
            .arg(&script)
            .arg(&dir)
            .arg("--only")
            .arg(MODELS.join(","))
            .output()
            .expect("python3 runs (scripts/setup.sh installs onnx, onnxruntime)");
        assert!(
            out.status.success(),
            "{} failed (run scripts/setup.sh):\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .clone()
}

/// A generated model and its rewritten graph at batch 1 (what partitions index).
fn model(name: &str) -> (Arc<Model>, Graph) {
    let m = onnx::load(&generated().join(format!("{name}.onnx")), &Default::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let g = optimize(&m.graph(1).unwrap()).unwrap();
    (Arc::new(m), g)
}

/// Error of `got` against `want` relative to the largest |want| (floor 1e-6).
fn rel(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape(), want.shape());
    got.max_abs_diff(want) / want.max_abs().max(1e-6)
}

/// Runs the stages in a chain on `x` (batch first); returns every tensor the last stage
/// sends on.
fn run_chain(graph: &Graph, stages: &[Stage], x: &[Tensor], batch: usize) -> Vec<Boundary> {
    let dev = device();
    let mut carried: Vec<Boundary> = graph
        .inputs()
        .iter()
        .zip(x)
        .map(|(&v, t)| Boundary::from_tensor(&graph.value(v).name, t, Precision::F32))
        .collect();
    for s in stages {
        let mut c = CompiledStage::new(&dev, s.clone(), batch);
        let ins = s.order(&carried).unwrap();
        let (outs, _) = c.run_boundary(batch, &ins).unwrap_or_else(|e| panic!("{}: {e}", s.graph.name));
        for (o, p) in outs.iter().zip(&s.output_precisions) {
            assert_eq!(o.precision, *p);
            assert_eq!(o.bytes.len(), o.numel() * p.bytes_per_element(), "{}", o.name);
        }
        carried = s.forward(&carried, outs).unwrap();
    }
    carried
}

fn whole(model: &Arc<Model>, x: &[Tensor]) -> Vec<Tensor> {
    CompiledModel::new(&device(), model.clone(), CompileOptions::default()).run(x).unwrap()
}

/// Outputs of the model picked by name from what the chain delivered.
fn model_outputs(graph: &Graph, delivered: &[Boundary]) -> Vec<Tensor> {
    graph
        .outputs()
        .iter()
        .map(|&o| {
            let name = &graph.value(o).name;
            let b = delivered.iter().find(|b| &b.name == name).unwrap_or_else(|| panic!("output {name} not delivered"));
            assert_eq!(b.precision, Precision::F32, "model outputs travel as fp32");
            b.to_tensor().unwrap()
        })
        .collect()
}

#[test]
fn every_cut_of_generated_models_matches_the_whole_model_in_fp16() {
    let batch = 2;
    let mut worst = 0f32;
    for name in MODELS {
        let (md, g) = model(name);
        let m = 10.min(g.nodes().len());
        let p = partition(&g, &[estimate_costs(&g)], &PartitionOptions { blocks: m, tolerance: 0.5 }).unwrap();
        let mut rng = Rng::new(11);
        let shapes = md.input_shapes(batch).unwrap();
        let x: Vec<Tensor> = shapes.iter().map(|s| Tensor::random(s.clone(), &mut rng, -1.0, 1.0)).collect();
        let want = whole(&md, &x);
        for c in 1..m {
            let stages = [
                Stage::new(&md, &p, 0..c, Precision::F16).unwrap(),
                Stage::new(&md, &p, c..m, Precision::F16).unwrap(),
            ];
            // The first stage sends exactly the tensors crossing cut c: their fp16 bytes per
            // frame are the partition's cut bytes (model outputs among them travel as fp32).
            let delivered = run_chain(&g, &stages, &x, batch);
            let got = model_outputs(&g, &delivered);
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                let e = rel(a, b);
                worst = worst.max(e);
                assert!(e <= 1e-2, "{name}, cut {c}, output {k}: relative error {e} above fp16 tolerance 1e-2");
            }
        }
        // fp32 boundaries: the same as the whole model up to float reassociation.
        let c = m / 2;
        let stages =
            [Stage::new(&md, &p, 0..c, Precision::F32).unwrap(), Stage::new(&md, &p, c..m, Precision::F32).unwrap()];
        let got = model_outputs(&g, &run_chain(&g, &stages, &x, batch));
        for (a, b) in got.iter().zip(&want) {
            assert!(rel(a, b) <= 1e-5, "{name}: fp32 boundaries differ from the whole model by {}", rel(a, b));
        }
    }
    eprintln!("largest relative error over every cut: {worst:e}");
}

#[test]
fn the_bytes_sent_across_a_cut_are_the_partition_cut_bytes() {
    let (md, g) = model("fpn_neck");
    let p = partition(&g, &[estimate_costs(&g)], &PartitionOptions { blocks: 6, tolerance: 0.5 }).unwrap();
    let model_outputs: Vec<&str> = g.outputs().iter().map(|&o| g.value(o).name.as_str()).collect();
    let mut rng = Rng::new(5);
    let x: Vec<Tensor> =
        g.inputs().iter().map(|&i| Tensor::random(g.value(i).shape.clone(), &mut rng, -1.0, 1.0)).collect();
    for c in 1..6 {
        let first = Stage::new(&md, &p, 0..c, Precision::F16).unwrap();
        let sent = run_chain(&g, &[first], &x, 1);
        // At batch 1 every element is 2 bytes on the wire, except model outputs (fp32).
        let fp16_equiv: usize = sent
            .iter()
            .map(|b| if model_outputs.contains(&b.name.as_str()) { b.bytes.len() / 2 } else { b.bytes.len() })
            .sum();
        assert_eq!(fp16_equiv as u64, p.cut_bytes[c - 1], "cut {c}");
    }
}

#[test]
fn three_stages_pass_skip_connections_through_the_middle_one() {
    // x -> a -> b -> c, out = c + a: the middle stage [c] does not read a, but must hand it on
    // (nothing here fuses, so the rewritten graph keeps the four nodes).
    let weights = Tensor::random(vec![4, 4, 3, 3], &mut Rng::new(3), -0.5, 0.5);
    let md = Arc::new(
        Model::batched("skip", move |batch| {
            let mut gb = GraphBuilder::new("skip");
            let x = gb.input("x", &[batch, 4, 5, 5]);
            let a = gb.unary("a", x, Activation::Relu)?;
            let w = gb.constant("w", weights.clone());
            let b = gb.conv("b", a, w, None, poolpipe_engine::ConvAttrs { pads: vec![1; 4], ..Default::default() })?;
            let c = gb.add(
                "c",
                poolpipe_engine::Op::Softmax { axis: 1, kind: poolpipe_engine::SoftmaxKind::Softmax },
                vec![b],
            )?;
            let y = gb.binary("y", poolpipe_engine::BinaryOp::Add, c, a)?;
            gb.output(y);
            gb.build()
        })
        .unwrap(),
    );
    let g = md.graph(1).unwrap();
    let mut rng = Rng::new(4);
    let p = poolpipe_engine::partition::Partition {
        bounds: vec![0, 2, 3, 4],
        cut_bytes: vec![],
        shares: vec![],
        max_over: 0.0,
        max_under: 0.0,
    };
    let stages: Vec<Stage> = (0..3).map(|i| Stage::new(&md, &p, i..i + 1, Precision::F16).unwrap()).collect();
    assert_eq!(stages[1].pass_through, vec!["a".to_string()]);
    assert_eq!(stages[1].input_names(), vec!["b"]);
    let xt = Tensor::random(vec![3, 4, 5, 5], &mut rng, -1.0, 1.0);
    let got = model_outputs(&g, &run_chain(&g, &stages, std::slice::from_ref(&xt), 3));
    let want = whole(&md, &[xt]);
    assert!(rel(&got[0], &want[0]) <= 1e-2, "{}", rel(&got[0], &want[0]));
    // A stage that misses a tensor says which and where.
    let e = stages[2].order(&[]).unwrap_err().to_string();
    assert!(e.contains("not received"), "{e}");
}

#[test]
fn device_fp16_packing_matches_the_cpu_conversion() {
    // An odd element count per sample (105) and values beyond the fp16 range.
    let graph = |batch: usize| {
        let mut gb = GraphBuilder::new("id");
        let x = gb.input("x", &[batch, 3, 5, 7]);
        let y = gb.unary("r", x, Activation::Relu).unwrap();
        gb.output(y);
        gb.build().unwrap()
    };
    let dev = device();
    let opts = CompileOptions { f16_io: vec!["x".into(), "r".into()], ..Default::default() };
    let mut rng = Rng::new(9);
    for batch in [1, 2, 3] {
        let mut c = dev.compile(&graph(batch), &opts).unwrap();
        assert_eq!(c.input_precisions(), vec![Precision::F16]);
        assert_eq!(c.output_precisions(), vec![Precision::F16]);
        let mut data: Vec<f32> =
            (0..batch * 105).map(|_| rng.uniform(-3.0, 3.0) * 10f32.powi(rng.uniform(-4.0, 4.0) as i32)).collect();
        data[0] = 1e6;
        data[1] = 70000.0;
        let t = Tensor::new(vec![batch, 3, 5, 7], data).unwrap();
        let input = Boundary::from_tensor("x", &t, Precision::F16);
        let (out, _) = c.run_boundary(std::slice::from_ref(&input)).unwrap();
        assert_eq!(out[0].bytes.len(), batch * 105 * 2);
        // Expected: relu of the fp16 input, packed again (exact: fp16 values round-trip).
        let halves: Vec<u16> = input.bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let got: Vec<u16> = out[0].bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        for (i, (&h, &o)) in halves.iter().zip(&got).enumerate() {
            let want = f32_to_f16(f16_to_f32(h).max(0.0));
            assert_eq!(o, want, "batch {batch}, element {i}: device {o:#06x}, CPU {want:#06x}");
        }
        assert_eq!(f16_to_f32(got[0]), 65504.0, "clamped to the fp16 range");
    }
    // Rounding on the device (f32 values inside a stage packed at its end) against the CPU's
    // round-to-nearest-even: within one unit in the last place.
    let g = graph(2);
    let mut c = dev.compile(&g, &CompileOptions { f16_io: vec!["r".into()], ..Default::default() }).unwrap();
    let t = Tensor::random(vec![2, 3, 5, 7], &mut rng, 0.0, 50.0);
    let (out, _) = c.run_boundary(&[Boundary::from_tensor("x", &t, Precision::F32)]).unwrap();
    let mut differ = 0;
    for (i, ch) in out[0].bytes.chunks_exact(2).enumerate() {
        let o = u16::from_le_bytes([ch[0], ch[1]]);
        let want = f32_to_f16(t.data()[i]);
        assert!(o.abs_diff(want) <= 1, "element {i}: device {o:#06x}, CPU {want:#06x}");
        differ += (o != want) as usize;
    }
    eprintln!("device fp16 rounding differs from round-to-nearest-even on {differ} of 210 values");
    // Mismatched precisions and unknown names are errors that say what to do.
    let e = c.run_boundary(&[Boundary::from_tensor("x", &t, Precision::F16)]).unwrap_err().to_string();
    assert!(e.contains("same boundary precision"), "{e}");
    let e =
        dev.compile(&g, &CompileOptions { f16_io: vec!["nope".into()], ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("'nope'") && e.contains("neither an input nor an output"), "{e}");
}
