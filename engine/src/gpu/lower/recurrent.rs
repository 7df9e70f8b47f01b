//! Lowering: recurrent layers (LSTM, GRU, RNN).
//!
//! A layer becomes, in order:
//! 1. the input projection of every step and direction, X [T*N, I] times W^T [I, D*G*H], as
//!    one dispatch of matmul.wgsl's `matmul` kernel into a scratch buffer (W packed into its
//!    vec4 layout at compile time when constant, by its `pack_b` kernel at run time when it
//!    comes from the data);
//! 2. R packed with its gates in the lanes of vec4s (at compile time when constant, by
//!    `pack_r` when it comes from the data);
//! 3. `init_state`: the initial states (or zeros) into a state buffer;
//! 4. one cell dispatch per time step, both directions together (`lstm_cell`, `rnn_cell`,
//!    `gru_cell`, with a `gru_reset` dispatch before each step of a GRU without
//!    linear_before_reset), reading one state buffer and writing the other, and writing the
//!    step's slice of Y; each unit's recurrent products are split over up to 8 invocations
//!    of a workgroup (`k_slices`) so that a batch of one still fills many workgroups;
//! 5. `finish_state`: Y_h and Y_c from the final states.
//!
//! B, P, initial states and sequence lengths are read where they are (constants or values
//! from the data), in the model's layout. The dispatch count is T + 3 (2T + 3 for a GRU
//! without linear_before_reset), one more for each of W and R from the data, whatever the
//! sizes.

use super::{Buf, Ctx, Words, div_up, node_err};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::{Op, RecurrentAttrs, RecurrentCell};

/// The sizes of one layer.
#[derive(Clone, Copy)]
struct Dims {
    t: usize,
    n: usize,
    i: usize,
    d: usize,
    g: usize,
    h: usize,
}

impl Dims {
    /// Columns of the projection: every gate of every direction.
    fn cols(self) -> usize {
        self.d * self.g * self.h
    }
}

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    let Op::Recurrent(a) = &node.op else { unreachable!("recurrent family") };
    let xs = cx.shape(node.inputs[0]);
    let (t, n) = a.steps_and_batch(&xs);
    let dims = Dims { t, n, i: xs[2], d: a.direction.count(), g: a.cell.gates(), h: a.hidden_size };
    let xw = projection(cx, ni, node, dims)?;
    let rw = packed_r(cx, ni, node, dims)?;
    let dummy = cx.zeros(format!("{}.absent", node.name), 4);
    let slots = a.slots();
    let optional = |cx: &mut Ctx, slot: Option<usize>| -> Result<Buf> {
        match slot {
            Some(k) => cx.buf(node, node.inputs[k]),
            None => Ok(dummy),
        }
    };
    let bias = optional(cx, slots.bias)?;
    let peep = optional(cx, slots.peepholes)?;
    let lens = optional(cx, slots.sequence_lens)?;
    let h0 = optional(cx, slots.initial_h)?;
    let c0 = optional(cx, slots.initial_c)?;

    let lstm = a.cell == RecurrentCell::Lstm;
    let state_slots = if lstm { 2 } else { 1 };
    let state_words = state_slots * dims.d * dims.n * dims.h;
    let states = [
        cx.scratch(format!("{}.state0", node.name), (state_words * 4) as u64),
        cx.scratch(format!("{}.state1", node.name), (state_words * 4) as u64),
    ];
    // Strides of a direction and of a batch entry in the states of the model's layout.
    let (sd, sn) = if a.batch_major { (dims.h, dims.d * dims.h) } else { (dims.n * dims.h, dims.h) };
    let wg = [("WG", cx.wg as u32)];

    let mut p = Words::new();
    p.u(0, state_words).u(1, dims.h).u(2, dims.n).u(3, dims.d);
    p.u(4, slots.initial_h.is_some() as usize).u(5, slots.initial_c.is_some() as usize).u(6, sd).u(7, sn);
    let groups = cx.groups(state_words);
    let init = Kernel::new(Family::Recurrent, "init_state", &wg);
    cx.push(ni, init, vec![(13, h0), (14, c0), (8, states[0])], groups, p.done());

    let y = Buf::Value(node.outputs[0]);
    let units = dims.d * dims.n * dims.h;
    let reset_first = a.cell == RecurrentCell::Gru && !a.linear_before_reset;
    let rh = reset_first.then(|| cx.scratch(format!("{}.reset_h", node.name), (units * 4) as u64));
    let entry = match a.cell {
        RecurrentCell::Lstm => "lstm_cell",
        RecurrentCell::Gru => "gru_cell",
        RecurrentCell::Rnn => "rnn_cell",
    };
    // The cells have a workgroup size of their own (CELL_WG), not WG.
    let cell = Kernel::new(Family::Recurrent, entry, &[]);
    let reset = Kernel::new(Family::Recurrent, "gru_reset", &[]);
    let ks = k_slices(dims.h);
    let cell_groups = div_up(units, CELL_WG / ks) as u64;
    for step in 0..dims.t {
        let (s_in, s_out) = (states[step % 2], states[(step + 1) % 2]);
        let params = cell_params(a, dims, step, slots.sequence_lens.is_some(), ks);
        let groups = cell_groups;
        if let Some(rh) = rh {
            let b = vec![(2, xw), (3, rw), (4, bias), (6, lens), (7, s_in), (10, rh)];
            cx.push(ni, reset.clone(), b, groups, params.clone());
        }
        let mut b = vec![(1, y), (2, xw), (3, rw), (4, bias), (6, lens), (7, s_in), (8, s_out)];
        match a.cell {
            RecurrentCell::Lstm => b.push((5, peep)),
            RecurrentCell::Gru => b.push((9, rh.unwrap_or(dummy))),
            RecurrentCell::Rnn => {}
        }
        cx.push(ni, cell.clone(), b, groups, params);
    }

    let yh = Buf::Value(node.outputs[1]);
    let yc = match node.outputs.get(2) {
        Some(&v) => Buf::Value(v),
        None => cx.scratch(format!("{}.no_cell_state", node.name), 16),
    };
    let mut p = Words::new();
    p.u(0, units).u(1, dims.h).u(2, dims.n).u(3, dims.d).u(4, dims.t);
    p.u(5, slots.sequence_lens.is_some() as usize).u(6, state_slots).u(7, sd).u(8, sn);
    let finish = Kernel::new(Family::Recurrent, "finish_state", &wg);
    let groups = cx.groups(units);
    cx.push(ni, finish, vec![(7, states[dims.t % 2]), (6, lens), (15, yh), (16, yc)], groups, p.done());
    Ok(())
}

/// Invocations of a cell workgroup (`CELL_WG` in `shaders/recurrent.wgsl`).
const CELL_WG: usize = 64;

/// Slices of k each unit's recurrent products are split over: a power of two up to 8, with
/// at least 4 values of k per slice (a batch of one still spreads over H / 8 workgroups
/// per direction, each invocation looping over H / 8 values).
fn k_slices(h: usize) -> usize {
    let mut ks = 1;
    while ks < 8 && ks * 2 * 4 <= h {
        ks *= 2;
    }
    ks
}

/// The parameter words of the cell dispatch of one step (see `shaders/recurrent.wgsl`).
fn cell_params(a: &RecurrentAttrs, dims: Dims, step: usize, has_lens: bool, ks: usize) -> Vec<u32> {
    let Dims { t, n, d, h, .. } = dims;
    let mut p = Words::new();
    p.u(0, d * n * h).u(1, h).u(2, n).u(3, d).u(4, t).u(5, step).u(6, has_lens as usize);
    p.u(7, a.inputs.bias as usize).u(8, a.inputs.peepholes as usize);
    // Y: [T, D, N, H] or [N, T, D, H]; projection rows t*N + n or n*T + t.
    let (yt, yd, yn) = if a.batch_major { (d * h, h, t * d * h) } else { (d * n * h, n * h, h) };
    let (xt, xn) = if a.batch_major { (1, t) } else { (n, 1) };
    p.u(9, yt).u(10, yd).u(11, yn).u(12, xt).u(13, xn);
    p.u(14, a.direction.is_reversed(0) as usize).u(15, a.direction.is_reversed(1) as usize);
    if let Some(c) = a.clip {
        p.u(16, 1).f(17, c);
    }
    p.u(18, (a.input_forget || a.linear_before_reset) as usize).u(19, dims.g).u(38, ks);
    for dir in 0..d {
        for which in 0..a.cell.functions() {
            let (code, alpha, beta) = a.activation(dir, which).code();
            let w = 20 + 3 * (dir * 3 + which);
            p.u(w, code as usize).f(w + 1, alpha).f(w + 2, beta);
        }
    }
    p.done()
}

/// The input projection X W^T of every row of X (steps and batch entries in X's order) and
/// every gate of every direction: a [rows][D*G*H] scratch buffer, by matmul.wgsl's `matmul`
/// kernel (parameter words as that file documents them).
fn projection(cx: &mut Ctx, ni: usize, node: &Node, dims: Dims) -> Result<Buf> {
    let rows = dims.t * dims.n;
    let cols = dims.cols();
    let bytes = (rows * cols * 4) as u64;
    if bytes > cx.max_binding {
        return Err(node_err(
            node,
            format!(
                "the input projection of all {} steps takes {bytes} bytes, above the device's storage binding limit \
                 of {}; use a smaller batch or shorter sequences",
                dims.t, cx.max_binding
            ),
        ));
    }
    let xw = cx.scratch(format!("{}.projection", node.name), bytes);
    let nq = div_up(cols, 4);
    let wv = node.inputs[1];
    // W [D, G*H, I] is [D*G*H, I]: B' = W^T, column c of B' is row c of W.
    let packed_w = match cx.g.value(wv).constant() {
        Some(w) => {
            let w = w.to_f32s();
            let mut packed = vec![0.0f32; dims.i * nq * 4];
            for c in 0..cols {
                for k in 0..dims.i {
                    packed[k * nq * 4 + c] = w[c * dims.i + k];
                }
            }
            cx.constant(format!("{}.packed_w", node.name), packed)
        }
        None => {
            let src = cx.buf(node, wv)?;
            let packed = cx.scratch(format!("{}.packed_w", node.name), (dims.i * nq * 16) as u64);
            let items = dims.i * nq;
            let mut p = Words::new();
            p.u(0, dims.i).u(1, cols).u(2, nq).u(3, 1).u(4, dims.i).u(5, 0).u(6, items);
            let kernel = Kernel::new(Family::Matmul, "pack_b", &[("WG", cx.wg as u32)]);
            let groups = cx.groups(items);
            cx.push(ni, kernel, vec![(7, packed), (2, src)], groups, p.done());
            packed
        }
    };
    let x = cx.buf(node, node.inputs[0])?;
    let zero = cx.zeros(format!("{}.no_bias", node.name), 4);
    let mq = div_up(rows, 4);
    let items = mq * nq;
    let mut p = Words::new();
    p.u(0, rows).u(1, cols).u(2, dims.i).u(3, nq).u(4, dims.i).u(5, 1).u(6, 1).u(7, 1).u(8, 1).u(9, 1);
    p.f(18, 1.0).f(19, 0.0).u(20, 0).u(29, items).u(30, mq).u(31, cols).u(32, 0);
    let kernel = Kernel::new(Family::Matmul, "matmul", &[("ACT", 0), ("WG", cx.wg as u32)]);
    let groups = cx.groups(items);
    cx.push(ni, kernel, vec![(1, xw), (2, x), (3, packed_w), (4, zero)], groups, p.done());
    Ok(xw)
}

/// R [D, G*H, H] in the cells' layout: vec4 (d*H + k)*H + j holds R[d][g*H + j][k] in lane g.
fn packed_r(cx: &mut Ctx, ni: usize, node: &Node, dims: Dims) -> Result<Buf> {
    let Dims { d, g, h, .. } = dims;
    let rv = node.inputs[2];
    let items = d * h * h;
    match cx.g.value(rv).constant() {
        Some(r) => {
            let r = r.to_f32s();
            let mut packed = vec![0.0f32; items * 4];
            for dd in 0..d {
                for gate in 0..g {
                    for j in 0..h {
                        for k in 0..h {
                            packed[((dd * h + k) * h + j) * 4 + gate] = r[((dd * g + gate) * h + j) * h + k];
                        }
                    }
                }
            }
            Ok(cx.constant(format!("{}.packed_r", node.name), packed))
        }
        None => {
            let src = cx.buf(node, rv)?;
            let packed = cx.scratch(format!("{}.packed_r", node.name), (items * 16) as u64);
            let kernel = Kernel::new(Family::Recurrent, "pack_r", &[("WG", cx.wg as u32)]);
            let groups = cx.groups(items);
            cx.push(ni, kernel, vec![(11, src), (12, packed)], groups, Words::new().u(0, items).u(1, h).u(2, g).done());
            Ok(packed)
        }
    }
}
