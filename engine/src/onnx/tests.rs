//! Unit tests of the importer on hand-built model files.

use super::proto::*;
use super::*;

fn value_info(name: &str, dims: &[DimValue]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|d| Dimension { value: Some(d.clone()) }).collect(),
                }),
            }),
        }),
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        attribute: vec![],
    }
}

fn weight(name: &str, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data: raw,
        ..Default::default()
    }
}

/// x [N, 2, 4, 4] -> Conv(w [3, 2, 1, 1]) -> Relu -> Reshape(Shape-derived [N, -1]) -> y
fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>) -> Vec<u8> {
    let m = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        producer_name: "test".into(),
        producer_version: String::new(),
        graph: Some(GraphProto {
            node: nodes,
            name: "tiny".into(),
            initializer: inits,
            input: vec![value_info(
                "x",
                &[DimValue::Param("N".into()), DimValue::Value(2), DimValue::Value(4), DimValue::Value(4)],
            )],
            output: vec![value_info("y", &[])],
            value_info: vec![],
        }),
    };
    m.encode_to_vec()
}

fn tiny() -> Vec<u8> {
    let w: Vec<u8> = (0..6).flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes()).collect();
    let zero: Vec<u8> = 0i64.to_le_bytes().to_vec();
    let minus1: Vec<u8> = (-1i64).to_le_bytes().to_vec();
    let int = |name: &str, raw: Vec<u8>, dims: &[i64]| TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::INT64,
        name: name.into(),
        raw_data: raw,
        ..Default::default()
    };
    model(
        vec![
            node("Conv", "conv", &["x", "w"], &["c"]),
            node("Relu", "relu", &["c"], &["r"]),
            node("Shape", "shape", &["r"], &["s"]),
            node("Gather", "gather", &["s", "zero"], &["n"]),
            node("Unsqueeze", "unsq", &["n", "axes0"], &["n1"]),
            node("Concat", "cat", &["n1", "minus1"], &["target"]),
            node("Reshape", "flat", &["r", "target"], &["y"]),
        ],
        vec![
            weight("w", &[3, 2, 1, 1], w),
            int("zero", zero.clone(), &[]),
            int("axes0", zero, &[1]),
            int("minus1", minus1, &[1]),
        ],
    )
}

#[test]
fn imports_and_folds_a_shape_subgraph() {
    let m = load_bytes(&tiny(), "tiny.onnx", None, &ImportOptions::default()).unwrap();
    let g = m.graph(2).unwrap();
    let ops: Vec<&str> = g.nodes().iter().map(|n| n.op.name()).collect();
    assert_eq!(ops, ["Conv", "Relu", "Reshape"], "Shape/Gather/Unsqueeze/Concat fold away");
    assert_eq!(g.value(g.outputs()[0]).shape, vec![2, 48]);
    let x = Tensor::new(vec![2, 2, 4, 4], (0..64).map(|i| i as f32 / 64.0).collect()).unwrap();
    let y = crate::reference::run(&g, &[x]).unwrap();
    assert_eq!(y[0].shape(), &[2, 48]);
    assert_eq!(m.graph(5).unwrap().value(g.outputs()[0]).shape, vec![5, 48], "any batch");
}

#[test]
fn corrupt_and_truncated_files_are_errors() {
    let e = load_bytes(b"\x08\x01\x12\xff\xff", "bad.onnx", None, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("bad.onnx") && e.contains("not a valid ONNX file"), "{e}");
    let bytes = tiny();
    for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        // Never a panic: an error, or (rarely) a shorter valid message.
        let _ = load_bytes(&bytes[..cut], "cut.onnx", None, &Default::default());
    }
    let short = model(vec![node("Relu", "relu", &["x"], &["y"])], vec![weight("w", &[3, 2, 1, 1], vec![0; 7])]);
    let e = load_bytes(&short, "short.onnx", None, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("'w'") && e.contains("truncated"), "{e}");
}

#[test]
fn every_unsupported_op_is_listed_with_its_nodes() {
    let bytes = model(
        vec![
            node("Relu", "ok", &["x"], &["a"]),
            node("Frobnicate", "f1", &["a"], &["b"]),
            node("Frobnicate", "f2", &["b"], &["c"]),
            NodeProto { domain: "com.microsoft".into(), ..node("FusedConv", "fused", &["c"], &["y"]) },
        ],
        vec![],
    );
    let e = load_bytes(&bytes, "det.onnx", None, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("Frobnicate (nodes f1, f2)") && e.contains("com.microsoft::FusedConv (nodes fused)"), "{e}");
    assert!(!e.contains("Relu"), "{e}");
}

#[test]
fn missing_external_data_names_the_file() {
    let mut w = weight("w", &[3, 2, 1, 1], vec![]);
    w.data_location = 1;
    w.external_data = vec![StringStringEntryProto { key: "location".into(), value: "weights.bin".into() }];
    let bytes = model(vec![node("Conv", "conv", &["x", "w"], &["y"])], vec![w]);
    // A directory of this process alone, absent at first (temp dirs outlive runs).
    let dir = std::env::temp_dir().join(format!("poolpipe-ext-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let e = load_bytes(&bytes, "ext.onnx", Some(&dir), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("weights.bin") && e.contains("beside the model"), "{e}");
    // With the file present, it loads.
    std::fs::create_dir_all(&dir).unwrap();
    let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    std::fs::write(dir.join("weights.bin"), data).unwrap();
    let g = load_bytes(&bytes, "ext.onnx", Some(&dir), &Default::default()).unwrap().graph(1).unwrap();
    assert_eq!(g.value(g.outputs()[0]).shape, vec![1, 3, 4, 4]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn external_data_that_links_out_of_the_models_folder_is_refused() {
    let mut w = weight("w", &[3, 2, 1, 1], vec![]);
    w.data_location = 1;
    w.external_data = vec![StringStringEntryProto { key: "location".into(), value: "weights.bin".into() }];
    let bytes = model(vec![node("Conv", "conv", &["x", "w"], &["y"])], vec![w]);
    let root = std::env::temp_dir().join(format!("poolpipe-ext-link-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (dir, outside) = (root.join("model"), root.join("secret"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    std::fs::write(outside.join("passwd"), &data).unwrap();
    // A file linked from beside the model to outside its folder.
    std::os::unix::fs::symlink(outside.join("passwd"), dir.join("weights.bin")).unwrap();
    let e = load_bytes(&bytes, "ext.onnx", Some(&dir), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("outside the model's folder") && e.contains("weights.bin"), "{e}");
    // A linked folder on the way.
    std::fs::remove_file(dir.join("weights.bin")).unwrap();
    let mut w = weight("w", &[3, 2, 1, 1], vec![]);
    w.data_location = 1;
    w.external_data = vec![StringStringEntryProto { key: "location".into(), value: "data/passwd".into() }];
    let linked = model(vec![node("Conv", "conv", &["x", "w"], &["y"])], vec![w]);
    std::os::unix::fs::symlink(&outside, dir.join("data")).unwrap();
    let e = load_bytes(&linked, "ext.onnx", Some(&dir), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("outside the model's folder"), "{e}");
    // Not a regular file.
    std::fs::create_dir_all(dir.join("weights.bin")).unwrap();
    let e = load_bytes(&bytes, "ext.onnx", Some(&dir), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    // A link that stays inside the folder is fine.
    std::fs::remove_dir_all(dir.join("weights.bin")).unwrap();
    std::fs::write(dir.join("real.bin"), &data).unwrap();
    std::os::unix::fs::symlink(dir.join("real.bin"), dir.join("weights.bin")).unwrap();
    assert!(load_bytes(&bytes, "ext.onnx", Some(&dir), &Default::default()).is_ok());
    let _ = std::fs::remove_dir_all(&root);
}

/// Every supported op with too few, empty or extra inputs, and without outputs: an error
/// or a graph, never a panic.
#[test]
fn every_op_with_any_arity_is_an_error_not_a_panic() {
    let w: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let arities: [&[&str]; 7] =
        [&[], &[""], &["x"], &["", "w"], &["x", ""], &["x", "w"], &["x", "w", "w", "w", "w", "w"]];
    for op in supported_ops() {
        for ins in arities {
            for outs in [&["y"][..], &[], &[""]] {
                let bytes = model(vec![node(op, "n", ins, outs)], vec![weight("w", &[3, 2, 1, 1], w.clone())]);
                // Either result is fine; reaching here without a panic is the test.
                let r = load_bytes(&bytes, "arity.onnx", None, &Default::default()).and_then(|m| m.graph(1));
                if ins.len() < ops::min_inputs(op, 13) || ins.first() == Some(&"") && op != "Constant" {
                    assert!(r.is_err(), "{op} with inputs {ins:?} loaded");
                }
            }
        }
    }
    let bytes = model(vec![node("Add", "add", &["x"], &["y"])], vec![]);
    let e = load_bytes(&bytes, "a.onnx", None, &Default::default()).and_then(|m| m.graph(1)).unwrap_err().to_string();
    assert!(e.contains("'add' (Add)") && e.contains("input 1 is missing"), "{e}");
}

#[test]
fn symbolic_spatial_dims_come_from_the_options() {
    let mut m = ModelProto::decode(tiny().as_slice()).unwrap();
    let gr = m.graph.as_mut().unwrap();
    gr.input[0] = value_info(
        "x",
        &[DimValue::Param("N".into()), DimValue::Value(2), DimValue::Param("H".into()), DimValue::Param("W".into())],
    );
    let bytes = m.encode_to_vec();
    let e = load_bytes(&bytes, "sym.onnx", None, &Default::default()).and_then(|m| m.graph(1)).unwrap_err().to_string();
    assert!(e.contains("symbolic") && e.contains("input shape"), "{e}");
    let opts = ImportOptions { input_dims: vec![vec![2, 6, 5]] };
    let g = load_bytes(&bytes, "sym.onnx", None, &opts).unwrap().graph(1).unwrap();
    assert_eq!(g.value(g.outputs()[0]).shape, vec![1, 90]);
    let bad = ImportOptions { input_dims: vec![vec![3, 6, 5]] };
    let e = load_bytes(&bytes, "sym.onnx", None, &bad).unwrap_err().to_string();
    assert!(e.contains("dimension 1 is 2"), "{e}");
}
