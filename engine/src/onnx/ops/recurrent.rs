//! LSTM, GRU and RNN (opsets 7, 14 and 22: `layout` from opset 14; the opsets differ in
//! nothing else the engine sees) as one IR operation, [`Op::Recurrent`]. Optional inputs
//! (B, sequence_lens, initial_h, initial_c, P) may be absent or empty-named; W, R and B are
//! usually initializers, but every input may come from the data. Constant sequence lengths
//! that all equal the number of steps are dropped (they change nothing).

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{CellActivation, Op, RecurrentAttrs, RecurrentCell, RecurrentDirection, RecurrentInputs};

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let cell = match cx.op() {
        "LSTM" => RecurrentCell::Lstm,
        "GRU" => RecurrentCell::Gru,
        "RNN" => RecurrentCell::Rnn,
        other => return Err(cx.err(format!("{other} is not a recurrent layer"))),
    };
    let (x, w, r) = (cx.need(0)?, cx.need(1)?, cx.need(2)?);
    let attrs = attributes(cx, cell, &x, &r)?;
    let lstm = cell == RecurrentCell::Lstm;
    let bias = cx.input(3);
    let lens = cx.input(4).filter(|l| !all_steps(cx, l, &x, attrs.batch_major));
    let initial_h = cx.input(5);
    let initial_c = if lstm { cx.input(6) } else { None };
    let peepholes = if lstm { cx.input(7) } else { None };
    if !lstm && cx.input_count() > 6 {
        return Err(cx.err(format!("{} takes at most 6 inputs, the node lists {}", cell.name(), cx.input_count())));
    }
    let inputs = RecurrentInputs {
        bias: bias.is_some(),
        sequence_lens: lens.is_some(),
        initial_h: initial_h.is_some(),
        initial_c: initial_c.is_some(),
        peepholes: peepholes.is_some(),
    };
    let attrs = RecurrentAttrs { inputs, ..attrs };
    let ins: Vec<V> =
        [Some(x), Some(w), Some(r), bias, lens, initial_h, initial_c, peepholes].into_iter().flatten().collect();
    let outs = cx.add(Op::Recurrent(attrs), &ins)?;
    for (k, v) in outs.into_iter().enumerate() {
        cx.set(k, v);
    }
    Ok(())
}

/// The node's attributes (no optional input yet).
fn attributes(cx: &Ctx, cell: RecurrentCell, x: &V, r: &V) -> Result<RecurrentAttrs> {
    let direction = match cx.attrs.s("direction", "forward").as_str() {
        "forward" => RecurrentDirection::Forward,
        "reverse" => RecurrentDirection::Reverse,
        "bidirectional" => RecurrentDirection::Bidirectional,
        other => return Err(cx.err(format!("direction '{other}' is not one of forward, reverse, bidirectional"))),
    };
    if cx.rank(x) != 3 || cx.rank(r) != 3 {
        return Err(cx.err(format!(
            "X and R must have rank 3, they have shapes {:?} and {:?}",
            cx.shape(x),
            cx.shape(r)
        )));
    }
    let hidden_size = if cx.attrs.has("hidden_size") {
        let h = cx.attrs.i("hidden_size", 0);
        usize::try_from(h).ok().filter(|&h| h > 0).ok_or_else(|| cx.err(format!("hidden_size {h} must be positive")))?
    } else {
        cx.shape(r)[2]
    };
    let layout = if cx.opset() >= 14 { cx.attrs.i("layout", 0) } else { 0 };
    if layout != 0 && layout != 1 {
        return Err(cx.err(format!("layout {layout} is not 0 (sequence-major) or 1 (batch-major)")));
    }
    let mut attrs = RecurrentAttrs::new(cell, direction, hidden_size);
    attrs.batch_major = layout == 1;
    if let Some(names) = cx.attrs.get("activations").map(|a| &a.strings).filter(|s| !s.is_empty()) {
        let mut alphas = cx.attrs.floats("activation_alpha").unwrap_or_default().into_iter();
        let mut betas = cx.attrs.floats("activation_beta").unwrap_or_default().into_iter();
        attrs.activations = names
            .iter()
            .map(|n| {
                let name = String::from_utf8_lossy(n);
                CellActivation::parse(&name, &mut alphas, &mut betas).ok_or_else(|| {
                    cx.err(format!(
                        "activation function '{name}' is not one of Sigmoid, Tanh, Relu, Affine, LeakyRelu, \
                         ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus"
                    ))
                })
            })
            .collect::<Result<_>>()?;
    }
    if cx.attrs.has("clip") {
        attrs.clip = Some(cx.attrs.f("clip", 0.0));
    }
    attrs.input_forget = cell == RecurrentCell::Lstm && cx.attrs.i("input_forget", 0) != 0;
    attrs.linear_before_reset = cell == RecurrentCell::Gru && cx.attrs.i("linear_before_reset", 0) != 0;
    Ok(attrs)
}

/// True for constant sequence lengths that all equal the number of steps of X.
fn all_steps(cx: &Ctx, lens: &V, x: &V, batch_major: bool) -> bool {
    let s = cx.shape(x);
    let steps = if batch_major { s.get(1) } else { s.first() };
    match (lens, steps) {
        (V::Const(t), Some(&steps)) => t.dtype().is_int() && t.to_i64s().iter().all(|&l| l == steps as i64),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::proto::*;
    use crate::onnx::{ImportOptions, load_bytes};
    use crate::ops::{CellActivation, Op, RecurrentAttrs};
    use crate::tensor::{DType, Tensor};

    fn attr(name: &str) -> AttributeProto {
        AttributeProto { name: name.into(), ..Default::default() }
    }

    fn value_info(name: &str, elem_type: i32, dims: &[usize]) -> ValueInfoProto {
        let dim = dims.iter().map(|&d| Dimension { value: Some(DimValue::Value(d as i64)) }).collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto { elem_type, shape: Some(TensorShapeProto { dim }) }),
            }),
        }
    }

    fn floats(name: &str, dims: &[usize], seed: usize) -> TensorProto {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|k| (((k * 37 + seed * 11) % 17) as f32 - 8.0) / 20.0).collect();
        TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.into(),
            float_data: v,
            ..Default::default()
        }
    }

    /// A model of one recurrent node: `data` are graph inputs (name, type, dims), `inits`
    /// initializers; `inputs` and `outputs` the node's, "" for an absent one.
    fn model(
        op: &str,
        opset: i64,
        attrs: Vec<AttributeProto>,
        inputs: &[&str],
        data: Vec<(&str, i32, Vec<usize>)>,
        inits: Vec<TensorProto>,
        outputs: &[&str],
    ) -> Vec<u8> {
        use prost::Message;
        let node = NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: "layer".into(),
            op_type: op.into(),
            domain: String::new(),
            attribute: attrs,
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
            producer_name: "test".into(),
            producer_version: String::new(),
            graph: Some(GraphProto {
                node: vec![node],
                name: "recurrent".into(),
                initializer: inits,
                input: data.iter().map(|(n, t, d)| value_info(n, *t, d)).collect(),
                output: outputs
                    .iter()
                    .filter(|o| !o.is_empty())
                    .map(|o| value_info(o, data_type::FLOAT, &[]))
                    .collect(),
                value_info: vec![],
            }),
        }
        .encode_to_vec()
    }

    /// The recurrent node of a model specialised for its declared input shapes.
    fn imported(bytes: &[u8], shapes: &[Vec<usize>]) -> crate::Result<RecurrentAttrs> {
        let m = load_bytes(bytes, "layer.onnx", None, &ImportOptions::default())?;
        let seg = m.specialize(shapes)?;
        let node = seg.graph.nodes().iter().find(|n| matches!(n.op, Op::Recurrent(_))).expect("a recurrent node");
        let Op::Recurrent(a) = &node.op else { unreachable!() };
        Ok(a.clone())
    }

    /// A batch-major bidirectional LSTM with named activations and their parameters, clip,
    /// sequence lengths and an initial state from the data, and only Y_h kept.
    #[test]
    fn lstm_attributes_and_optional_inputs() {
        let (t, n, i, h) = (3, 2, 4, 5);
        let mut acts = attr("activations");
        acts.strings = ["HardSigmoid", "Tanh", "ScaledTanh", "sigmoid", "Relu", "Tanh"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let mut alpha = attr("activation_alpha");
        alpha.floats = vec![0.3, 1.2];
        let mut beta = attr("activation_beta");
        beta.floats = vec![0.4];
        let mut clip = attr("clip");
        clip.f = 0.9;
        let mut layout = attr("layout");
        layout.i = 1;
        let mut direction = attr("direction");
        direction.s = b"bidirectional".to_vec();
        let bytes = model(
            "LSTM",
            14,
            vec![acts, alpha, beta, clip, layout, direction],
            &["x", "w", "r", "b", "lens", "h0"],
            vec![
                ("x", data_type::FLOAT, vec![n, t, i]),
                ("lens", data_type::INT32, vec![n]),
                ("h0", data_type::FLOAT, vec![n, 2, h]),
            ],
            vec![floats("w", &[2, 4 * h, i], 1), floats("r", &[2, 4 * h, h], 2), floats("b", &[2, 8 * h], 3)],
            &["", "yh"],
        );
        let a = imported(&bytes, &[vec![n, t, i], vec![n], vec![n, 2, h]]).unwrap();
        use CellActivation::*;
        assert_eq!(
            a.activations,
            vec![
                HardSigmoid { alpha: 0.3, beta: 0.4 },
                Tanh,
                ScaledTanh { alpha: 1.2, beta: 1.0 },
                Sigmoid,
                Relu,
                Tanh
            ]
        );
        assert!(a.batch_major && a.clip == Some(0.9) && a.hidden_size == h);
        let p = a.inputs;
        assert!(p.bias && p.sequence_lens && p.initial_h && !p.initial_c && !p.peepholes);
        // Runs on the reference: Y_h only, batch-major.
        let m = load_bytes(&bytes, "layer.onnx", None, &ImportOptions::default()).unwrap();
        let x = Tensor::new(vec![n, t, i], (0..n * t * i).map(|k| (k as f32 * 0.1).sin()).collect()).unwrap();
        let lens = Tensor::from_i64(DType::I32, vec![n], vec![3, 1]).unwrap();
        let h0 = Tensor::zeros(vec![n, 2, h]);
        let out = crate::reference::run_model(&m, &[x, lens, h0]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].shape(), &[n, 2, h]);
    }

    /// Constant sequence lengths that all equal the number of steps are dropped; others kept.
    #[test]
    fn full_constant_sequence_lengths_are_dropped() {
        let (t, n, i, h) = (4, 3, 2, 3);
        let lens = |v: Vec<i32>| TensorProto {
            dims: vec![n as i64],
            data_type: data_type::INT32,
            name: "lens".into(),
            int32_data: v,
            ..Default::default()
        };
        for (v, kept) in [(vec![4, 4, 4], false), (vec![4, 2, 0], true)] {
            let bytes = model(
                "GRU",
                7,
                vec![],
                &["x", "w", "r", "", "lens"],
                vec![("x", data_type::FLOAT, vec![t, n, i])],
                vec![floats("w", &[1, 3 * h, i], 1), floats("r", &[1, 3 * h, h], 2), lens(v)],
                &["y"],
            );
            let a = imported(&bytes, &[vec![t, n, i]]).unwrap();
            assert_eq!(a.inputs.sequence_lens, kept);
            assert!(!a.inputs.bias);
        }
    }

    /// Bad attributes are errors naming what is wrong.
    #[test]
    fn bad_attributes_are_errors() {
        let (t, n, i, h) = (2, 1, 3, 4);
        let run = |attrs: Vec<AttributeProto>, opset: i64| {
            let bytes = model(
                "RNN",
                opset,
                attrs,
                &["x", "w", "r"],
                vec![("x", data_type::FLOAT, vec![t, n, i])],
                vec![floats("w", &[1, h, i], 1), floats("r", &[1, h, h], 2)],
                &["y", "yh"],
            );
            imported(&bytes, &[vec![t, n, i]]).map_err(|e| e.to_string())
        };
        let with = |name: &str, f: &dyn Fn(&mut AttributeProto)| {
            let mut a = attr(name);
            f(&mut a);
            vec![a]
        };
        let e = run(with("direction", &|a| a.s = b"sideways".to_vec()), 14).unwrap_err();
        assert!(e.contains("direction 'sideways'"), "{e}");
        let e = run(with("activations", &|a| a.strings = vec![b"Gelu".to_vec()]), 14).unwrap_err();
        assert!(e.contains("activation function 'Gelu'"), "{e}");
        let e = run(with("activations", &|a| a.strings = vec![b"Relu".to_vec(), b"Relu".to_vec()]), 14).unwrap_err();
        assert!(e.contains("2 activation functions given"), "{e}");
        let e = run(with("layout", &|a| a.i = 2), 14).unwrap_err();
        assert!(e.contains("layout 2"), "{e}");
        let e = run(with("hidden_size", &|a| a.i = 5), 14).unwrap_err();
        assert!(e.contains("hidden size 5"), "{e}");
        let e = run(with("clip", &|a| a.f = -1.0), 14).unwrap_err();
        assert!(e.contains("clip must be positive"), "{e}");
        // Before opset 14 there is no layout attribute: it is ignored.
        assert!(!run(with("layout", &|a| a.i = 1), 7).unwrap().batch_major);
    }
}
