//! Recurrent layers (LSTM, GRU, RNN) on the GPU against the CPU reference: every cell,
//! direction and layout at odd hidden and input sizes, batch 1 and > 1, initial states and
//! sequence lengths from the data, clip, peepholes, coupled gates, linear_before_reset,
//! non-default activations, weights from the data, and a CRNN-shaped graph.

use super::*;

/// The weights of one layer, drawn once and shared by the graphs of every batch.
struct Weights {
    w: Tensor,
    r: Tensor,
    b: Tensor,
    p: Tensor,
}

impl Weights {
    fn new(a: &RecurrentAttrs, i: usize, rng: &mut Rng) -> Self {
        let (d, g, h) = (a.direction.count(), a.cell.gates(), a.hidden_size);
        Weights {
            w: weights(vec![d, g * h, i], rng),
            r: weights(vec![d, g * h, h], rng),
            b: weights(vec![d, 2 * g * h], rng),
            p: weights(vec![d, 3 * h], rng),
        }
    }
}

/// One layer at batch `n`: X from the data; initial states from the data when the
/// attributes list them; sequence lengths T - k with k (0..=2) from the data; W, R, B, P
/// constants, or graph inputs when `weights_in`. Outputs Y, Y_h (and Y_c).
fn layer(
    g: &mut GraphBuilder,
    a: &RecurrentAttrs,
    t: usize,
    i: usize,
    n: usize,
    wt: &Weights,
    weights_in: bool,
) -> Result<Vec<ValueId>> {
    let x = g.input("x", &if a.batch_major { [n, t, i] } else { [t, n, i] });
    let weight = |g: &mut GraphBuilder, name: &str, v: &Tensor| {
        if weights_in { g.input(name, v.shape()) } else { g.constant(name, v.clone()) }
    };
    let mut ins = vec![x, weight(g, "w", &wt.w), weight(g, "r", &wt.r)];
    let present = a.inputs;
    if present.bias {
        ins.push(weight(g, "b", &wt.b));
    }
    if present.sequence_lens {
        let k = g.input_typed("k", DType::I64, &[n]);
        let steps = int64s(g, "steps", vec![1], vec![t as i64]);
        ins.push(g.binary("lens", BinaryOp::Sub, steps, k)?);
    }
    if present.initial_h {
        ins.push(g.input("h0", &a.state_shape(n)));
    }
    if present.initial_c {
        ins.push(g.input("c0", &a.state_shape(n)));
    }
    if present.peepholes {
        ins.push(weight(g, "p", &wt.p));
    }
    g.add_multi(a.cell.name(), Op::Recurrent(a.clone()), ins)
}

/// Checks a layer at batch 1 and 3.
fn check_layer(name: &str, a: &RecurrentAttrs, t: usize, i: usize, weights_in: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let wt = Weights::new(a, i, &mut rng);
    check(|n| build(name, |g| layer(g, a, t, i, n, &wt, weights_in)), BATCHES, TOL, seed);
}

const CELLS: [RecurrentCell; 3] = [RecurrentCell::Lstm, RecurrentCell::Gru, RecurrentCell::Rnn];
const DIRECTIONS: [RecurrentDirection; 3] =
    [RecurrentDirection::Forward, RecurrentDirection::Reverse, RecurrentDirection::Bidirectional];

#[test]
fn every_cell_direction_and_layout_with_states_and_lengths_from_the_data() {
    let sizes = [(5, 3), (13, 67), (33, 7)];
    let mut case = 0;
    for cell in CELLS {
        for direction in DIRECTIONS {
            for batch_major in [false, true] {
                let (h, i) = sizes[case % sizes.len()];
                let t = [1, 2, 6][case % 3];
                let mut a = RecurrentAttrs::new(cell, direction, h);
                a.batch_major = batch_major;
                a.inputs = RecurrentInputs {
                    bias: case % 2 == 0,
                    sequence_lens: t > 1,
                    initial_h: true,
                    initial_c: cell == RecurrentCell::Lstm,
                    peepholes: false,
                };
                a.linear_before_reset = cell == RecurrentCell::Gru && case % 4 == 1;
                check_layer(
                    &format!("{}_{direction:?}_{batch_major}_{case}", cell.name()),
                    &a,
                    t,
                    i,
                    false,
                    100 + case as u64,
                );
                case += 1;
            }
        }
    }
}

#[test]
fn lstm_peepholes_coupled_gates_clip_and_activations() {
    use CellActivation::*;
    let cases: Vec<(bool, Option<f32>, Vec<CellActivation>)> = vec![
        (false, Some(0.6), vec![Sigmoid, Tanh, Tanh]),
        (true, None, vec![HardSigmoid { alpha: 0.3, beta: 0.4 }, Softsign, ScaledTanh { alpha: 1.3, beta: 0.7 }]),
        (
            true,
            Some(1.5),
            vec![Sigmoid, Elu { alpha: 0.8 }, Tanh, HardSigmoid { alpha: 0.2, beta: 0.5 }, Relu, Softsign],
        ),
    ];
    for (k, (input_forget, clip, acts)) in cases.into_iter().enumerate() {
        let direction = if acts.len() == 6 { RecurrentDirection::Bidirectional } else { RecurrentDirection::Reverse };
        let mut a = RecurrentAttrs::new(RecurrentCell::Lstm, direction, [13, 5, 33][k]);
        a.activations = acts;
        a.input_forget = input_forget;
        a.clip = clip;
        a.batch_major = k == 1;
        a.inputs =
            RecurrentInputs { bias: true, sequence_lens: k != 0, initial_h: k != 2, initial_c: true, peepholes: true };
        check_layer(&format!("lstm_peep{k}"), &a, 5, [7, 66, 3][k], false, 200 + k as u64);
    }
}

#[test]
fn gru_linear_before_reset_clip_and_activations() {
    use CellActivation::*;
    let cases: Vec<(bool, Option<f32>, Vec<CellActivation>)> = vec![
        (true, Some(0.5), vec![Sigmoid, Tanh, Sigmoid, Tanh]),
        (false, Some(0.5), vec![HardSigmoid { alpha: 0.25, beta: 0.45 }, Softplus]),
        (true, None, vec![Sigmoid, LeakyRelu { alpha: 0.1 }]),
        (false, None, vec![Sigmoid, Affine { alpha: 0.5, beta: 0.1 }, Sigmoid, ThresholdedRelu { alpha: 0.2 }]),
    ];
    for (k, (linear_before_reset, clip, acts)) in cases.into_iter().enumerate() {
        let direction = if acts.len() == 4 { RecurrentDirection::Bidirectional } else { RecurrentDirection::Forward };
        let mut a = RecurrentAttrs::new(RecurrentCell::Gru, direction, [5, 13, 33, 13][k]);
        a.activations = acts;
        a.linear_before_reset = linear_before_reset;
        a.clip = clip;
        a.batch_major = k % 2 == 1;
        a.inputs = RecurrentInputs { bias: k != 2, sequence_lens: k >= 2, initial_h: k != 1, ..Default::default() };
        check_layer(&format!("gru_lbr{k}"), &a, 5, [9, 4, 70, 1][k], false, 300 + k as u64);
    }
}

#[test]
fn rnn_activations_and_clip() {
    use CellActivation::*;
    let cases: Vec<(Option<f32>, Vec<CellActivation>)> = vec![
        (None, vec![Relu]),
        (Some(0.8), vec![Tanh, ScaledTanh { alpha: 0.9, beta: 1.2 }]),
        (None, vec![Softsign, Elu { alpha: 0.5 }]),
        (Some(2.0), vec![Affine { alpha: 0.7, beta: -0.1 }]),
    ];
    for (k, (clip, acts)) in cases.into_iter().enumerate() {
        let direction = if acts.len() == 2 { RecurrentDirection::Bidirectional } else { RecurrentDirection::Reverse };
        let mut a = RecurrentAttrs::new(RecurrentCell::Rnn, direction, [5, 13, 33, 13][k]);
        a.activations = acts;
        a.clip = clip;
        a.batch_major = k == 2;
        a.inputs = RecurrentInputs { bias: true, sequence_lens: k % 2 == 0, initial_h: k >= 2, ..Default::default() };
        check_layer(&format!("rnn_act{k}"), &a, 4, [3, 11, 65, 8][k], false, 400 + k as u64);
    }
}

/// W, R, B and P as graph inputs: packed by kernels at run time.
#[test]
fn weights_from_the_data() {
    for (k, cell) in CELLS.into_iter().enumerate() {
        let mut a = RecurrentAttrs::new(cell, RecurrentDirection::Bidirectional, [13, 21, 33][k]);
        a.linear_before_reset = false;
        a.batch_major = k == 1;
        a.inputs = RecurrentInputs {
            bias: true,
            sequence_lens: true,
            initial_h: true,
            initial_c: cell == RecurrentCell::Lstm,
            peepholes: cell == RecurrentCell::Lstm,
        };
        check_layer(&format!("{}_weights_in", cell.name()), &a, 3, [6, 9, 5][k], true, 500 + k as u64);
    }
}

/// Sequence lengths known at compile time (a constant of int32, partial lengths and 0).
#[test]
fn constant_sequence_lengths() {
    let mut a = RecurrentAttrs::new(RecurrentCell::Gru, RecurrentDirection::Bidirectional, 7);
    a.inputs.sequence_lens = true;
    a.inputs.bias = true;
    let mut rng = Rng::new(550);
    let wt = Weights::new(&a, 5, &mut rng);
    let graph = |n: usize| {
        build("gru_const_lens", |g| {
            let x = g.input("x", &[4, n, 5]);
            let w = g.constant("w", wt.w.clone());
            let r = g.constant("r", wt.r.clone());
            let b = g.constant("b", wt.b.clone());
            let lens: Vec<i64> = (0..n).map(|k| [3, 0, 4, 1][k % 4]).collect();
            let lens = g.constant("lens", Tensor::from_i64(DType::I32, vec![n], lens).unwrap());
            g.add_multi("gru", Op::Recurrent(a.clone()), vec![x, w, r, b, lens])
        })
    };
    check(graph, BATCHES, TOL, 551);
}

/// A float16 layer computes in f32 and rounds its outputs to float16.
#[test]
fn float16_lstm() {
    let mut a = RecurrentAttrs::new(RecurrentCell::Lstm, RecurrentDirection::Forward, 6);
    a.inputs.bias = true;
    a.inputs.initial_h = true;
    let mut rng = Rng::new(560);
    let wt = Weights::new(&a, 5, &mut rng);
    let half = |t: &Tensor| t.cast(DType::F16);
    let graph = |n: usize| {
        build("lstm_f16", |g| {
            let x = g.input_typed("x", DType::F16, &[3, n, 5]);
            let w = g.constant("w", half(&wt.w));
            let r = g.constant("r", half(&wt.r));
            let b = g.constant("b", half(&wt.b));
            let h0 = g.input_typed("h0", DType::F16, &[1, n, 6]);
            g.add_multi("lstm", Op::Recurrent(a.clone()), vec![x, w, r, b, h0])
        })
    };
    check(graph, BATCHES, TOL_F16, 561);
    let out = run_gpu(&graph(2), 562);
    assert!(out.iter().all(|o| o.dtype() == DType::F16 && o.data().iter().all(|&v| round_f16(v) == v)));
}

/// The shape of a CRNN text recogniser: conv features [N, C, 1, W] -> [W, N, C] -> a
/// bidirectional LSTM -> [W, N, 2H] -> a linear layer -> log-softmax over the classes.
#[test]
fn crnn_shaped_graph_conv_bidirectional_lstm_matmul() {
    let mut rng = Rng::new(600);
    let (c, hgt, wid, hidden, classes) = (6, 4, 11, 13, 9);
    let conv_w = weights(vec![c, 3, hgt, 3], &mut rng);
    let conv_b = weights(vec![c], &mut rng);
    let mut a = RecurrentAttrs::new(RecurrentCell::Lstm, RecurrentDirection::Bidirectional, hidden);
    a.inputs.bias = true;
    let wt = Weights::new(&a, c, &mut rng);
    let fc = weights(vec![2 * hidden, classes], &mut rng);
    let graph = |n: usize| {
        build("crnn", |g| {
            let x = g.input("image", &[n, 3, hgt, wid]);
            let cw = g.constant("conv_w", conv_w.clone());
            let cb = g.constant("conv_b", conv_b.clone());
            let attrs = ConvAttrs { pads: vec![0, 1, 0, 1], activation: Some(Activation::Relu), ..Default::default() };
            let f = g.conv("conv", x, cw, Some(cb), attrs)?; // [n, c, 1, wid]
            let f = g.reshape("squeeze", f, &[n, c, wid])?;
            let seq = g.add("to_steps", Op::Transpose { perm: vec![2, 0, 1] }, vec![f])?; // [wid, n, c]
            let w = g.constant("w", wt.w.clone());
            let r = g.constant("r", wt.r.clone());
            let b = g.constant("b", wt.b.clone());
            let outs = g.add_multi("lstm", Op::Recurrent(a.clone()), vec![seq, w, r, b])?;
            let y = g.add("directions_last", Op::Transpose { perm: vec![0, 2, 1, 3] }, vec![outs[0]])?;
            let y = g.reshape("concat_directions", y, &[wid, n, 2 * hidden])?;
            let fc = g.constant("fc", fc.clone());
            let logits = g.matmul("fc", y, fc)?;
            let op = Op::Softmax { axis: 2, kind: SoftmaxKind::LogSoftmax };
            Ok(vec![g.add("log_softmax", op, vec![logits])?])
        })
    };
    check(graph, BATCHES, TOL, 601);
}

/// A long sequence stays one dispatch per step (plus a fixed few), and agrees with the
/// reference after 40 steps.
#[test]
fn long_sequences_take_one_dispatch_per_step() {
    let mut a = RecurrentAttrs::new(RecurrentCell::Lstm, RecurrentDirection::Bidirectional, 9);
    a.inputs.bias = true;
    let mut rng = Rng::new(700);
    let wt = Weights::new(&a, 5, &mut rng);
    let graph = |n: usize| build("long", |g| layer(g, &a, 40, 5, n, &wt, false));
    let compiled = device().compile(&graph(2), &gpu::CompileOptions::default()).unwrap();
    assert_eq!(compiled.dispatch_count(), 40 + 3, "projection, init, 40 steps, finish");
    check(graph, &[2], TOL, 701);
}

/// Mismatched shapes and attributes are errors naming the input, not panics.
#[test]
fn bad_shapes_and_attributes_are_errors() {
    let a = RecurrentAttrs::new(RecurrentCell::Gru, RecurrentDirection::Forward, 4);
    let try_layer = |a: RecurrentAttrs, w: Vec<usize>| {
        try_build("bad", |g| {
            let x = g.input("x", &[3, 2, 5]);
            let w = g.input("w", &w);
            let r = g.input("r", &[1, 12, 4]);
            g.add_multi("gru", Op::Recurrent(a), vec![x, w, r])
        })
    };
    let e = try_layer(a.clone(), vec![1, 12, 6]).unwrap_err().to_string();
    assert!(e.contains("W 'w'") && e.contains("[1, 12, 5]"), "{e}");
    let mut two = a.clone();
    two.activations.push(CellActivation::Relu);
    let e = try_layer(two, vec![1, 12, 5]).unwrap_err().to_string();
    assert!(e.contains("activation functions"), "{e}");
    let mut peep = a;
    peep.inputs.peepholes = true;
    let e = try_layer(peep, vec![1, 12, 5]).unwrap_err().to_string();
    assert!(e.contains("belong to LSTM"), "{e}");
}
