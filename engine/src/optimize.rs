//! Graph rewrites before compilation: batch norm folded into the preceding convolution and
//! activations fused into the write-back of convolutions, matrix products and elementwise
//! binary operations (the ReLU after a residual add). Each rewrite applies only when the
//! intermediate value has no other consumer and is not a graph output, so the rewritten graph
//! computes the same outputs.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::graph::{Graph, GraphBuilder, ValueId, ValueSource};
use crate::ops::Op;
use crate::tensor::Tensor;

#[derive(Clone)]
enum In {
    Old(ValueId),
    New(String, Arc<Tensor>),
}

struct Spec {
    name: String,
    op: Op,
    inputs: Vec<In>,
    outputs: Vec<ValueId>,
}

/// Returns an equivalent graph with batch norms folded into convolutions and activations fused
/// where possible. Values keep their names where they survive; a fused node's output takes
/// the name of the last node folded into it.
pub fn optimize(g: &Graph) -> Result<Graph> {
    let mut uses: HashMap<ValueId, usize> = HashMap::new();
    for n in &g.nodes {
        for &i in &n.inputs {
            *uses.entry(i).or_default() += 1;
        }
    }
    for &o in &g.outputs {
        *uses.entry(o).or_default() += 1;
    }
    let mut specs: Vec<Spec> = vec![];
    // value -> index in specs of the node producing it
    let mut producer: HashMap<ValueId, usize> = HashMap::new();
    // old value -> old value that now carries it
    let mut alias: HashMap<ValueId, ValueId> = HashMap::new();
    let resolve = |alias: &HashMap<ValueId, ValueId>, v: ValueId| *alias.get(&v).unwrap_or(&v);

    for n in &g.nodes {
        let x = resolve(&alias, n.inputs[0]);
        let sole = uses.get(&n.inputs[0]).copied() == Some(1);
        // Rewrites keep float32 exact; other types (16-bit rounding after each node, integers)
        // stay as they are.
        let f32_chain = g.value(n.inputs[0]).dtype == crate::DType::F32
            && n.outputs.iter().all(|&o| g.value(o).dtype == crate::DType::F32)
            && n.inputs.iter().all(|&i| g.value(i).dtype == crate::DType::F32);
        // Batch norms fold only into constant weights and bias (not a QDQ model's dequantised
        // ones).
        let is_const = |i: &In| match i {
            In::Old(v) => g.value(*v).constant().is_some(),
            In::New(..) => true,
        };
        let const_weight = |s: &Spec| s.inputs.iter().skip(1).all(is_const);
        if sole
            && f32_chain
            && let Some(&p) = producer.get(&x)
        {
            let weights_const = const_weight(&specs[p]);
            let spec = &mut specs[p];
            let fused = match (&n.op, &mut spec.op) {
                (Op::BatchNorm { epsilon }, Op::Conv(a)) if a.activation.is_none() && weights_const => {
                    fold_bn(g, spec, &n.inputs, *epsilon, false);
                    true
                }
                (Op::BatchNorm { epsilon }, Op::ConvTranspose(a)) if a.activation.is_none() && weights_const => {
                    fold_bn(g, spec, &n.inputs, *epsilon, true);
                    true
                }
                (Op::Unary(act), Op::Conv(a)) if a.activation.is_none() => {
                    a.activation = Some(*act);
                    true
                }
                (Op::Unary(act), Op::ConvTranspose(a)) if a.activation.is_none() => {
                    a.activation = Some(*act);
                    true
                }
                (Op::Unary(act), Op::Gemm(a)) if a.activation.is_none() => {
                    a.activation = Some(*act);
                    true
                }
                (Op::Unary(act), Op::MatMul { activation }) if activation.is_none() => {
                    *activation = Some(*act);
                    true
                }
                (Op::Unary(act), Op::Binary { activation, .. }) if activation.is_none() => {
                    *activation = Some(*act);
                    true
                }
                _ => false,
            };
            if fused {
                // The producer's output now carries this node's output (and its name).
                let out = n.outputs[0];
                spec.outputs[0] = out;
                spec.name = n.name.clone();
                producer.remove(&x);
                producer.insert(out, p);
                alias.insert(x, out);
                continue;
            }
        }
        let inputs = n.inputs.iter().map(|&i| In::Old(resolve(&alias, i))).collect();
        specs.push(Spec { name: n.name.clone(), op: n.op.clone(), inputs, outputs: n.outputs.clone() });
        for &o in &n.outputs {
            producer.insert(o, specs.len() - 1);
        }
    }

    let specs = defer_constant_nodes(g, specs);
    let mut b = GraphBuilder::new(&g.name);
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &i in &g.inputs {
        let v = g.value(i);
        map.insert(i, b.input_typed(&v.name, v.dtype, &v.shape));
    }
    for spec in specs {
        let mut ins = vec![];
        for i in spec.inputs {
            ins.push(match i {
                In::Old(v) => match map.get(&v) {
                    Some(&m) => m,
                    None => {
                        let val = g.value(v);
                        let ValueSource::Constant(t) = &val.source else {
                            unreachable!("non-constant values are mapped before use")
                        };
                        let m = b.constant_arc(&val.name, t.clone());
                        map.insert(v, m);
                        m
                    }
                },
                In::New(name, t) => b.constant_arc(&name, t),
            });
        }
        let names: Vec<&str> = spec.outputs.iter().map(|&o| g.value(o).name.as_str()).collect();
        let outs = b.add_node_named_outputs(&spec.name, spec.op, ins, &names)?;
        for (o, n) in spec.outputs.iter().zip(outs) {
            map.insert(*o, n);
        }
    }
    for &o in &g.outputs {
        let r = resolve(&alias, o);
        let id = match map.get(&r) {
            Some(&id) => id,
            None => {
                // An output that is a constant of the graph.
                let val = g.value(r);
                let t = val.constant().expect("outputs are inputs, node outputs or constants").clone();
                let id = b.constant_arc(&val.name, t);
                map.insert(r, id);
                id
            }
        };
        b.output(id);
    }
    b.build()
}

/// Moves each node computed from constants only (a QDQ model's weight dequantisation, which
/// exporters place at the start of the graph) to just before its first reader, so that its
/// output is alive (in the activation arena, and across pipeline cuts) only where it is used.
fn defer_constant_nodes(g: &Graph, specs: Vec<Spec>) -> Vec<Spec> {
    let constant = |i: &In| match i {
        In::Old(v) => g.value(*v).constant().is_some(),
        In::New(..) => true,
    };
    let (mut deferred, rest): (Vec<Spec>, Vec<Spec>) = specs.into_iter().partition(|s| s.inputs.iter().all(constant));
    let mut out = Vec::with_capacity(deferred.len() + rest.len());
    for spec in rest {
        let reads = |d: &Spec| d.outputs.iter().any(|o| spec.inputs.iter().any(|i| matches!(i, In::Old(v) if v == o)));
        let (now, later): (Vec<Spec>, Vec<Spec>) = deferred.into_iter().partition(reads);
        deferred = later;
        out.extend(now);
        out.push(spec);
    }
    out.extend(deferred);
    out
}

/// Folds BatchNorm(scale, bias, mean, var) into the weights and bias of a (transposed)
/// convolution: w' = w * s, b' = (b - mean) * s + bias with s = scale / sqrt(var + eps).
fn fold_bn(g: &Graph, conv: &mut Spec, bn_inputs: &[ValueId], eps: f32, transposed: bool) {
    let c = |i: usize| g.value(bn_inputs[i]).constant().expect("checked constant").clone();
    let (scale, beta, mean, var) = (c(1), c(2), c(3), c(4));
    let s: Vec<f64> =
        scale.data().iter().zip(var.data()).map(|(&sc, &v)| sc as f64 / (v as f64 + eps as f64).sqrt()).collect();
    let weight = match &conv.inputs[1] {
        In::Old(v) => g.value(*v).constant().expect("checked constant").clone(),
        In::New(_, t) => t.clone(),
    };
    let wshape = weight.shape().to_vec();
    let mut w = weight.data().to_vec();
    let per: usize = wshape[1..].iter().product();
    if transposed {
        // w: [C_in, M/groups, k...]; output channel = group * (M/groups) + m
        let groups = if let Op::ConvTranspose(a) = &conv.op { a.groups } else { 1 };
        let (cin, mg, kk) = (wshape[0], wshape[1], wshape[2..].iter().product::<usize>());
        for ci in 0..cin {
            let grp = ci / (cin / groups);
            for m in 0..mg {
                let oc = grp * mg + m;
                for k in 0..kk {
                    let i = (ci * mg + m) * kk + k;
                    w[i] = (w[i] as f64 * s[oc]) as f32;
                }
            }
        }
    } else {
        for (oc, chunk) in w.chunks_mut(per).enumerate() {
            for v in chunk {
                *v = (*v as f64 * s[oc]) as f32;
            }
        }
    }
    let old_bias: Option<Arc<Tensor>> = conv.inputs.get(2).map(|i| match i {
        In::Old(v) => g.value(*v).constant().expect("checked constant").clone(),
        In::New(_, t) => t.clone(),
    });
    let m = s.len();
    let bias: Vec<f32> = (0..m)
        .map(|oc| {
            let b0 = old_bias.as_ref().map_or(0.0, |b| b.data()[oc] as f64);
            ((b0 - mean.data()[oc] as f64) * s[oc] + beta.data()[oc] as f64) as f32
        })
        .collect();
    let base = conv.name.clone();
    conv.inputs[1] = In::New(format!("{base}.folded_weight"), Arc::new(Tensor::new(wshape, w).expect("same shape")));
    let bias_t = In::New(format!("{base}.folded_bias"), Arc::new(Tensor::new(vec![m], bias).expect("shape [m]")));
    if conv.inputs.len() == 3 {
        conv.inputs[2] = bias_t;
    } else {
        conv.inputs.push(bias_t);
    }
}
