//! CPU reference executor: runs a [`Graph`] node by node in plain Rust, with straightforward
//! loops, float arithmetic in f64 and integer arithmetic in i64. It is slow and simple on
//! purpose: it is the oracle against which every GPU kernel is tested, the constant folder of
//! the importer (one implementation of each operation's semantics), and the executor of host
//! operations. One file per op family, mirroring `shaders/`.
//!
//! Each op computes its output shape from its inputs and attributes on its own; [`run`] then
//! checks it against the type and shape the graph inferred, so the reference also
//! cross-checks shape inference. Intermediate values are dropped after their last use.

mod conv;
mod elementwise;
mod host;
mod index;
mod layout;
mod matmul;
mod norm;
mod pool;
mod quant;
mod recurrent;
mod reduce;
mod sample;
mod signal;

#[cfg(test)]
mod tests;

use crate::error::{EngineError, Result};
use crate::graph::{Graph, Node};
use crate::ops::*;
use crate::tensor::{DType, Tensor, numel, strides};

/// Runs the whole graph on the CPU. `inputs` are in the order of `graph.inputs()`, each with
/// the graph's type and shape. Returns the outputs in the order of `graph.outputs()`.
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    run_borrowed(graph, inputs)
}

/// [`run`] on tensors owned or borrowed.
fn run_borrowed<T: std::borrow::Borrow<Tensor>>(graph: &Graph, inputs: &[T]) -> Result<Vec<Tensor>> {
    check_inputs(graph, inputs)?;
    let n_values = graph.values().len();

    // Values that must survive: graph outputs. Others are dropped after their last use.
    let mut is_output = vec![false; n_values];
    for &o in graph.outputs() {
        is_output[o.index()] = true;
    }
    let mut last_use: Vec<Option<usize>> = vec![None; n_values];
    for (i, node) in graph.nodes().iter().enumerate() {
        for v in node.inputs.iter().chain(&node.outputs) {
            last_use[v.index()] = Some(i);
        }
    }

    let mut env: Vec<Option<Tensor>> = vec![None; n_values];
    for (&id, t) in graph.inputs().iter().zip(inputs) {
        env[id.index()] = Some(t.borrow().clone());
    }

    for (i, node) in graph.nodes().iter().enumerate() {
        let results = {
            let ins = node.inputs.iter().map(|&v| fetch(graph, &env, v.index())).collect::<Result<Vec<&Tensor>>>()?;
            eval(&node.op, &ins).map_err(|reason| node_error(node, reason))?
        };
        if results.len() != node.outputs.len() {
            return Err(node_error(
                node,
                format!("the reference produced {} outputs, the node has {}", results.len(), node.outputs.len()),
            ));
        }
        for (k, (&o, t)) in node.outputs.iter().zip(results).enumerate() {
            let v = graph.value(o);
            if t.shape() != v.shape.as_slice() || t.dtype() != v.dtype {
                return Err(node_error(
                    node,
                    format!(
                        "output {k} computed by the reference is {} {:?}, but the graph infers {} {:?} \
                         (a bug in shape inference or in the reference)",
                        t.dtype(),
                        t.shape(),
                        v.dtype,
                        v.shape
                    ),
                ));
            }
            env[o.index()] = Some(t);
        }
        for v in node.inputs.iter().chain(&node.outputs) {
            if last_use[v.index()] == Some(i) && !is_output[v.index()] {
                env[v.index()] = None;
            }
        }
    }

    graph.outputs().iter().map(|&o| fetch(graph, &env, o.index()).cloned()).collect()
}

/// Runs a model on the CPU, host steps included: the oracle of the GPU executor.
/// `inputs` are in signature order; returns the outputs in signature order.
pub fn run_model(model: &crate::model::Model, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    crate::model::run_segments(model, inputs, |g, ins| run_borrowed(g, ins)).map(|(o, _)| o)
}

/// Checks the inputs given to [`run`] against the graph's inputs.
pub(crate) fn check_inputs<T: std::borrow::Borrow<Tensor>>(graph: &Graph, inputs: &[T]) -> Result<()> {
    let ids = graph.inputs();
    let input_error = |input: &str, reason: String| EngineError::Input {
        graph: graph.name.clone(),
        input: input.to_string(),
        reason,
    };
    if inputs.len() != ids.len() {
        let names: Vec<&str> = ids.iter().map(|&i| graph.value(i).name.as_str()).collect();
        let input = names.get(inputs.len()).copied().unwrap_or("(extra input)");
        return Err(input_error(
            input,
            format!("the graph takes {} input(s) ({}), got {}", ids.len(), names.join(", "), inputs.len()),
        ));
    }
    for (&id, t) in ids.iter().zip(inputs) {
        let (v, t) = (graph.value(id), t.borrow());
        if t.shape() != v.shape.as_slice() {
            return Err(input_error(&v.name, format!("expected shape {:?}, got {:?}", v.shape, t.shape())));
        }
        if t.dtype() != v.dtype {
            return Err(input_error(&v.name, format!("expected element type {}, got {}", v.dtype, t.dtype())));
        }
    }
    Ok(())
}

/// The tensor of a value: a constant of the graph or a value computed so far.
fn fetch<'a>(graph: &'a Graph, env: &'a [Option<Tensor>], v: usize) -> Result<&'a Tensor> {
    let value = &graph.values()[v];
    if let Some(c) = value.constant() {
        return Ok(c);
    }
    env[v].as_ref().ok_or_else(|| EngineError::InvalidGraph {
        graph: graph.name.clone(),
        reason: format!("value '{}' is read before it is computed or after it was dropped", value.name),
    })
}

fn node_error(node: &Node, reason: String) -> EngineError {
    EngineError::InvalidNode { node: node.name.clone(), op: node.op.name().into(), reason }
}

/// Result of one op; the error is a reason, wrapped with the node's name by the caller.
pub(crate) type OpResult<T> = std::result::Result<T, String>;

/// Evaluates one operation on its input tensors: the single definition of every op's
/// semantics (used by [`run`], by constant folding and for host operations).
pub(crate) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let arity = |lo: usize, hi: usize| -> OpResult<()> {
        if ins.len() < lo || ins.len() > hi {
            Err(format!("takes {lo}..={hi} inputs, got {}", ins.len()))
        } else {
            Ok(())
        }
    };
    match op.family() {
        OpFamily::Conv => conv::eval(op, ins),
        OpFamily::Matmul => {
            arity(2, 3)?;
            matmul::eval(op, ins)
        }
        OpFamily::Pool => pool::eval(op, ins),
        OpFamily::Elementwise => {
            arity(1, 3)?;
            elementwise::eval(op, ins)
        }
        OpFamily::Convert => {
            arity(1, 1)?;
            let Op::Cast { to } = op else { unreachable!("convert family") };
            Ok(vec![ins[0].cast(*to)])
        }
        OpFamily::Reduce => {
            arity(1, 3)?;
            reduce::eval(op, ins)
        }
        OpFamily::Norm => {
            arity(1, 5)?;
            norm::eval(op, ins)
        }
        OpFamily::Layout => {
            arity(1, usize::MAX)?;
            layout::eval(op, ins)
        }
        OpFamily::Index => {
            arity(1, 3)?;
            index::eval(op, ins)
        }
        OpFamily::Host => {
            arity(1, 5)?;
            host::eval(op, ins)
        }
        OpFamily::Sample => sample::eval(op, ins),
        OpFamily::Recurrent => recurrent::eval(op, ins),
        OpFamily::Quant => quant::eval(op, ins),
        OpFamily::Signal => signal::eval(op, ins),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the families
// ---------------------------------------------------------------------------------------------

/// A tensor of type `dtype` from f64 values (rounded to the type).
pub(crate) fn make(dtype: DType, shape: Vec<usize>, data: Vec<f64>) -> OpResult<Tensor> {
    Tensor::from_f64_as(dtype, shape, data).map_err(|e| e.to_string())
}

/// Applies an optional activation to a float.
pub(crate) fn activate(act: Option<Activation>, v: f64) -> f64 {
    act.map_or(v, |a| a.apply_f64(v))
}

/// Calls `f` with every multi-index of `shape`, in row-major order (once for rank 0, never
/// for an empty shape).
pub(crate) fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0; shape.len()];
    loop {
        f(&idx);
        let mut axis = shape.len();
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            idx[axis] += 1;
            if idx[axis] < shape[axis] {
                break;
            }
            idx[axis] = 0;
        }
    }
}

/// Numpy broadcast of two concrete shapes.
/// For each element of `out` (row-major), the flat index of the element of a tensor of shape
/// `input` that numpy broadcasting maps to it.
pub(crate) fn broadcast_map(input: &[usize], out: &[usize]) -> OpResult<Vec<usize>> {
    let bad = || format!("shape {input:?} does not broadcast to {out:?}");
    if input.len() > out.len() {
        return Err(bad());
    }
    let offset = out.len() - input.len();
    let in_strides = strides(input);
    // Stride per output axis: 0 for axes the input lacks or has with size 1.
    let mut s = vec![0; out.len()];
    for (i, &d) in input.iter().enumerate() {
        if d == out[offset + i] {
            s[offset + i] = in_strides[i];
        } else if d != 1 {
            return Err(bad());
        }
    }
    let mut map = Vec::with_capacity(numel(out));
    for_each_index(out, |idx| map.push(idx.iter().zip(&s).map(|(i, s)| i * s).sum()));
    Ok(map)
}

/// Gathers a tensor of the same rank as `x`: output element `idx` reads the input element at
/// `(tables[0][idx[0]], tables[1][idx[1]], ...)`, or is `fill` where a table entry is None.
/// The output shape is the lengths of the tables. Works on any element type.
pub(crate) fn gather_axes(x: &Tensor, tables: &[Vec<Option<usize>>], fill: f64) -> OpResult<Tensor> {
    let shape = x.shape();
    if tables.len() != shape.len() {
        return Err(format!("{} index tables for rank {}", tables.len(), shape.len()));
    }
    for (t, &d) in tables.iter().zip(shape) {
        if t.iter().flatten().any(|&i| i >= d) {
            return Err(format!("source index out of range for a dimension of {d}"));
        }
    }
    let st = strides(shape);
    let out_shape: Vec<usize> = tables.iter().map(|t| t.len()).collect();
    let mut src = Vec::with_capacity(numel(&out_shape));
    for_each_index(&out_shape, |idx| {
        let mut flat = Some(0);
        for (axis, &i) in idx.iter().enumerate() {
            match tables[axis][i] {
                Some(s) => flat = flat.map(|f| f + s * st[axis]),
                None => flat = None,
            }
        }
        src.push(flat);
    });
    x.gather(out_shape, &src, fill).map_err(|e| e.to_string())
}

/// Identity index table of a dimension.
pub(crate) fn identity(d: usize) -> Vec<Option<usize>> {
    (0..d).map(Some).collect()
}

/// (outer, len, inner) of a tensor around one axis.
pub(crate) fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (numel(&shape[..axis]), shape[axis], numel(&shape[axis + 1..]))
}

/// The values of a float tensor as f64, erroring on other types.
pub(crate) fn floats(t: &Tensor, what: &str) -> OpResult<Vec<f64>> {
    if !t.dtype().is_float() {
        return Err(format!("{what} must be a float tensor, it is {}", t.dtype()));
    }
    Ok(t.to_f64s())
}
