//! Host ops (their output shapes depend on the data): NonZero, NonMaxSuppression, Unique,
//! TopK, Compress. Each is folded when its inputs are known at compile time, else it runs on
//! the host between two device graphs, except where the shape is known at compile time: TopK
//! with a constant k runs on the device (`Op::TopKStatic`), Compress with a constant
//! condition is a device gather of the selected positions.

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{NmsAttrs, Op};
use crate::tensor::DType;

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let n_in = cx.input_count();
    let ins: Vec<_> = (0..n_in).map(|k| cx.input(k)).collect();
    let op = match cx.op() {
        "NonZero" => Op::NonZero,
        "NonMaxSuppression" => {
            Op::NonMaxSuppression(NmsAttrs { center_point_box: cx.attrs.i("center_point_box", 0) != 0 })
        }
        "Unique" => {
            let x = cx.need(0)?;
            let axis =
                if cx.attrs.has("axis") { Some(super::axis(cx, cx.attrs.i("axis", 0), cx.rank(&x))?) } else { None };
            Op::Unique { sorted: cx.attrs.i("sorted", 1) != 0, axis }
        }
        "TopK" => {
            let x = cx.need(0)?;
            let axis = super::axis(cx, cx.attrs.i("axis", -1), cx.rank(&x))?;
            let largest = cx.attrs.i("largest", 1) != 0;
            // k is an attribute before opset 10, an input after.
            let k = if cx.opset() < 10 {
                Some(cx.attrs.i("k", -1))
            } else {
                match cx.input(1) {
                    Some(V::Const(t)) if t.len() == 1 && t.dtype().is_int() => Some(t.i64_at(0)),
                    Some(V::Const(t)) => {
                        return Err(cx.err(format!("k must be one integer, it is {} {:?}", t.dtype(), t.shape())));
                    }
                    _ => None,
                }
            };
            if let Some(k) = k {
                // Known at compile time: the device kernel.
                let k = usize::try_from(k).map_err(|_| cx.err(format!("k = {k} must be >= 0")))?;
                let outs = cx.add(Op::TopKStatic { axis, k, largest }, &[x])?;
                for (i, v) in outs.into_iter().enumerate() {
                    cx.set(i, v);
                }
                return Ok(());
            }
            Op::TopK { axis, largest, sorted: cx.attrs.i("sorted", 1) != 0 }
        }
        "Compress" => return compress(cx),
        other => return Err(cx.err(format!("{other} is not a host op"))),
    };
    cx.host(op, ins)
}

/// Compress: with a constant condition, a gather of the selected positions (of the
/// flattened input when there is no axis); with a condition from the data, a host step.
fn compress(cx: &mut Ctx) -> Result<()> {
    let (x, cond) = (cx.need(0)?, cx.need(1)?);
    let axis = if cx.attrs.has("axis") { Some(super::axis(cx, cx.attrs.i("axis", 0), cx.rank(&x))?) } else { None };
    if cx.dtype(&cond) != DType::Bool || cx.rank(&cond) != 1 {
        return Err(cx.err(format!(
            "condition must be a 1-D bool tensor, it is {} {:?}",
            cx.dtype(&cond),
            cx.shape(&cond)
        )));
    }
    if matches!(cond, V::Act(_)) {
        return cx.host(Op::Compress { axis }, vec![Some(x), Some(cond)]);
    }
    // The true positions ([1, n], folded now), as the indices of a gather (which checks that
    // they lie within the axis).
    let picked = cx.add1(Op::NonZero, &[cond])?;
    let n = cx.shape(&picked)[1];
    let picked = cx.add1(Op::Reshape { shape: vec![n] }, &[picked])?;
    let (src, axis) = match axis {
        Some(a) => (x, a),
        None => {
            let all = cx.shape(&x).iter().product();
            (cx.add1(Op::Reshape { shape: vec![all] }, &[x])?, 0)
        }
    };
    let out = cx.add1(Op::Gather { axis }, &[src, picked])?;
    cx.set(0, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::super::super::proto::*;
    use super::super::super::{ImportOptions, load_bytes};
    use crate::model::Model;
    use crate::tensor::{DType, Tensor};

    fn info(name: &str, elem_type: i32, dims: &[DimValue]) -> ValueInfoProto {
        let dim = dims.iter().map(|d| Dimension { value: Some(d.clone()) }).collect();
        let tensor_type = TensorTypeProto { elem_type, shape: Some(TensorShapeProto { dim }) };
        ValueInfoProto { name: name.into(), r#type: Some(TypeProto { tensor_type: Some(tensor_type) }) }
    }

    fn node(op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: format!("{op}_{}", outputs[0]),
            op_type: op.into(),
            domain: String::new(),
            attribute,
        }
    }

    fn int_attr(name: &str, i: i64) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: 2, i, ..Default::default() }
    }

    fn init(name: &str, data_type: i32, dims: &[i64], raw_data: Vec<u8>) -> TensorProto {
        TensorProto { dims: dims.to_vec(), data_type, name: name.into(), raw_data, ..Default::default() }
    }

    fn ints(name: &str, v: &[i64]) -> TensorProto {
        init(name, data_type::INT64, &[v.len() as i64], v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// A model of x [N, 4] (float) at opset 13 with the given nodes, initializers and outputs.
    fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, outputs: &[&str]) -> Model {
        let x = info("x", data_type::FLOAT, &[DimValue::Param("N".into()), DimValue::Value(4)]);
        let m = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            producer_name: "test".into(),
            producer_version: String::new(),
            graph: Some(GraphProto {
                node: nodes,
                name: "host".into(),
                initializer: inits,
                input: vec![x],
                output: outputs.iter().map(|o| info(o, 0, &[])).collect(),
                value_info: vec![],
            }),
        };
        load_bytes(&m.encode_to_vec(), "host.onnx", None, &ImportOptions::default()).unwrap()
    }

    fn x() -> Tensor {
        Tensor::new(vec![3, 4], vec![1.0, -2.0, 0.5, 3.0, -1.0, -1.0, 0.0, 0.5, 2.0, 0.0, 1.0, -4.0]).unwrap()
    }

    /// The op of the first segment's host step, if any.
    fn host_op(m: &Model) -> Option<&'static str> {
        m.specialize(&[vec![3, 4]]).unwrap().host.as_ref().map(|h| h.op.name())
    }

    #[test]
    fn compress_on_a_computed_condition_is_a_host_step() {
        let m = model(
            vec![
                node("ReduceSum", &["x", "axes"], &["s"], vec![int_attr("keepdims", 0)]),
                node("Greater", &["s", "zero"], &["c"], vec![]),
                node("Compress", &["x", "c"], &["y"], vec![int_attr("axis", 0)]),
            ],
            vec![ints("axes", &[1]), init("zero", data_type::FLOAT, &[], 0f32.to_le_bytes().to_vec())],
            &["y"],
        );
        assert_eq!(host_op(&m), Some("Compress"));
        let y = crate::reference::run_model(&m, &[x()]).unwrap().remove(0);
        // Row sums 2.5, -1.5, -1: the first row only.
        assert_eq!(y.shape(), &[1, 4]);
        assert_eq!(y.data(), &x().data()[..4]);
    }

    #[test]
    fn compress_on_a_constant_condition_is_a_device_gather() {
        let cond = init("cond", data_type::BOOL, &[3], vec![1, 0, 1]);
        let m = model(
            vec![
                node("Compress", &["x", "cond"], &["y"], vec![int_attr("axis", 1)]),
                node("Compress", &["x", "cond"], &["z"], vec![]),
            ],
            vec![cond],
            &["y", "z"],
        );
        assert_eq!(host_op(&m), None);
        let ops: Vec<&str> = m.graph(3).unwrap().nodes().iter().map(|n| n.op.name()).collect();
        assert!(ops.contains(&"Gather") && !ops.contains(&"Compress"), "{ops:?}");
        let out = crate::reference::run_model(&m, &[x()]).unwrap();
        assert_eq!(out[0].data(), &[1.0, 0.5, -1.0, 0.0, 2.0, 1.0]);
        assert_eq!(out[1].data(), &[1.0, 0.5]);
        // A true entry beyond the axis is an error naming it.
        let long = init("cond", data_type::BOOL, &[5], vec![0, 0, 0, 0, 1]);
        let m = model(vec![node("Compress", &["x", "cond"], &["y"], vec![int_attr("axis", 1)])], vec![long], &["y"]);
        let e = m.graph(3).unwrap_err().to_string();
        assert!(e.contains("index 4 is out of range"), "{e}");
    }

    #[test]
    fn topk_with_a_constant_k_runs_on_the_device_and_with_a_computed_k_on_the_host() {
        let m = model(vec![node("TopK", &["x", "k"], &["v", "i"], vec![])], vec![ints("k", &[2])], &["v", "i"]);
        assert_eq!(host_op(&m), None);
        let g = m.graph(3).unwrap();
        assert!(matches!(g.nodes()[0].op, crate::ops::Op::TopKStatic { axis: 1, k: 2, largest: true }));
        let out = crate::reference::run_model(&m, &[x()]).unwrap();
        assert_eq!(out[0].data(), &[3.0, 1.0, 0.5, 0.0, 2.0, 1.0]);
        assert_eq!(out[1].dtype(), DType::I64);
        assert_eq!(out[1].to_i64s(), [3, 0, 3, 2, 0, 2]);
        // k = the largest value of x, truncated: 3.
        let m = model(
            vec![
                node("ReduceMax", &["x"], &["mx"], vec![int_attr("keepdims", 0)]),
                node("Cast", &["mx"], &["mi"], vec![int_attr("to", data_type::INT64 as i64)]),
                node("Reshape", &["mi", "one"], &["k"], vec![]),
                node("TopK", &["x", "k"], &["v", "i"], vec![int_attr("largest", 0)]),
            ],
            vec![ints("one", &[1])],
            &["v", "i"],
        );
        assert_eq!(host_op(&m), Some("TopK"));
        let out = crate::reference::run_model(&m, &[x()]).unwrap();
        assert_eq!(out[1].to_i64s(), [1, 2, 0, 0, 1, 2, 3, 1, 2]);
    }
}
