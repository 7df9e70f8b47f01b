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
