//! Reference recurrent layers (LSTM, GRU, RNN): a plain loop over directions, batch entries
//! and time steps in f64, written from ONNX's equations (gates in ONNX's order: LSTM i, o,
//! f, c; GRU z, r, h). Each batch entry runs for its own sequence length: its steps past
//! the end give zero outputs, a reverse direction starts at its last valid step, and its
//! final states are those of its last valid step (zeros for a length of 0, as onnxruntime
//! gives). Clip bounds every gate's argument to its activation function (not the cell
//! state's argument to LSTM's h, as onnxruntime does).

use super::{OpResult, floats, make};
use crate::ops::{Op, RecurrentAttrs, RecurrentCell};
use crate::tensor::Tensor;

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let Op::Recurrent(a) = op else { return Err(format!("{} is not a recurrent layer", op.name())) };
    if ins.len() != a.arity() {
        return Err(format!("takes {} inputs, got {}", a.arity(), ins.len()));
    }
    Layer::new(a, ins)?.run()
}

/// The inputs of one layer, as f64, with the sizes.
struct Layer<'a> {
    a: &'a RecurrentAttrs,
    x: Vec<f64>,
    w: Vec<f64>,
    r: Vec<f64>,
    b: Option<Vec<f64>>,
    lens: Vec<usize>,
    h0: Option<Vec<f64>>,
    c0: Option<Vec<f64>>,
    p: Option<Vec<f64>>,
    dtype: crate::tensor::DType,
    t: usize,
    n: usize,
    i: usize,
    d: usize,
    g: usize,
    h: usize,
}

impl<'a> Layer<'a> {
    fn new(a: &'a RecurrentAttrs, ins: &[&Tensor]) -> OpResult<Self> {
        let xs = ins[0].shape();
        if xs.len() != 3 {
            return Err(format!("X must have rank 3, has shape {xs:?}"));
        }
        let (t, n) = a.steps_and_batch(xs);
        let (d, g, h, i) = (a.direction.count(), a.cell.gates(), a.hidden_size, xs[2]);
        let want = |k: usize, what: &str, shape: &[usize]| -> OpResult<Vec<f64>> {
            if ins[k].shape() != shape {
                return Err(format!("{what} has shape {:?}, expected {shape:?}", ins[k].shape()));
            }
            floats(ins[k], what)
        };
        let s = a.slots();
        let lens = match s.sequence_lens {
            None => vec![t; n],
            Some(k) => {
                if ins[k].shape() != [n] || !ins[k].dtype().is_int() {
                    return Err(format!(
                        "sequence_lens must be {n} integers, is {} {:?}",
                        ins[k].dtype(),
                        ins[k].shape()
                    ));
                }
                let mut v = vec![];
                for l in ins[k].to_i64s() {
                    if l < 0 || l > t as i64 {
                        return Err(format!("sequence_lens holds {l}, outside 0..={t} (the steps of X)"));
                    }
                    v.push(l as usize);
                }
                v
            }
        };
        let state = a.state_shape(n);
        Ok(Layer {
            a,
            x: floats(ins[0], "X")?,
            w: want(1, "W", &[d, g * h, i])?,
            r: want(2, "R", &[d, g * h, h])?,
            b: s.bias.map(|k| want(k, "B", &[d, 2 * g * h])).transpose()?,
            lens,
            h0: s.initial_h.map(|k| want(k, "initial_h", &state)).transpose()?,
            c0: s.initial_c.map(|k| want(k, "initial_c", &state)).transpose()?,
            p: s.peepholes.map(|k| want(k, "P", &[d, 3 * h])).transpose()?,
            dtype: ins[0].dtype(),
            t,
            n,
            i,
            d,
            g,
            h,
        })
    }

    /// Flat index of a state element (direction d, batch entry n, unit j).
    fn state_at(&self, d: usize, n: usize, j: usize) -> usize {
        if self.a.batch_major { (n * self.d + d) * self.h + j } else { (d * self.n + n) * self.h + j }
    }

    /// Flat index of Y at step t.
    fn y_at(&self, t: usize, d: usize, n: usize, j: usize) -> usize {
        if self.a.batch_major {
            ((n * self.t + t) * self.d + d) * self.h + j
        } else {
            ((t * self.d + d) * self.n + n) * self.h + j
        }
    }

    /// The row of X at step t of batch entry n.
    fn x_row(&self, t: usize, n: usize) -> &[f64] {
        let row = if self.a.batch_major { n * self.t + t } else { t * self.n + n };
        &self.x[row * self.i..(row + 1) * self.i]
    }

    /// Row `row` of W (or R) of direction d times v (bias not included).
    fn times(m: &[f64], cols: usize, rows: usize, d: usize, row: usize, v: &[f64]) -> f64 {
        let base = (d * rows + row) * cols;
        m[base..base + cols].iter().zip(v).map(|(a, b)| a * b).sum()
    }

    /// Input bias (`recurrent` false) or recurrent bias of gate `gate`, unit j.
    fn bias(&self, d: usize, recurrent: bool, gate: usize, j: usize) -> f64 {
        let gh = self.g * self.h;
        self.b.as_ref().map_or(0.0, |b| b[d * 2 * gh + usize::from(recurrent) * gh + gate * self.h + j])
    }

    /// Gate `gate` of unit j: W x + Wb (the input part).
    fn input_part(&self, d: usize, gate: usize, j: usize, x: &[f64]) -> f64 {
        let row = gate * self.h + j;
        Self::times(&self.w, self.i, self.g * self.h, d, row, x) + self.bias(d, false, gate, j)
    }

    /// Gate `gate` of unit j: R h + Rb (the recurrent part).
    fn recurrent_part(&self, d: usize, gate: usize, j: usize, h: &[f64]) -> f64 {
        let row = gate * self.h + j;
        Self::times(&self.r, self.h, self.g * self.h, d, row, h) + self.bias(d, true, gate, j)
    }

    fn clip(&self, v: f64) -> f64 {
        self.a.clip.map_or(v, |c| v.clamp(-(c as f64), c as f64))
    }

    /// One step of direction d: the new hidden and cell states from the input row and the
    /// previous states.
    fn step(&self, d: usize, x: &[f64], h: &[f64], c: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let a = self.a;
        let f = |which: usize, v: f64| a.activation(d, which).apply(self.clip(v));
        let gate = |k: usize, j: usize, hv: &[f64]| self.input_part(d, k, j, x) + self.recurrent_part(d, k, j, hv);
        let hs = self.h;
        match a.cell {
            RecurrentCell::Rnn => ((0..hs).map(|j| f(0, gate(0, j, h))).collect(), vec![]),
            RecurrentCell::Gru => {
                let z: Vec<f64> = (0..hs).map(|j| f(0, gate(0, j, h))).collect();
                let r: Vec<f64> = (0..hs).map(|j| f(0, gate(1, j, h))).collect();
                let rh: Vec<f64> = r.iter().zip(h).map(|(r, h)| r * h).collect();
                let cand: Vec<f64> = (0..hs)
                    .map(|j| {
                        let arg = if a.linear_before_reset {
                            self.input_part(d, 2, j, x) + r[j] * self.recurrent_part(d, 2, j, h)
                        } else {
                            self.input_part(d, 2, j, x) + self.recurrent_part(d, 2, j, &rh)
                        };
                        f(1, arg)
                    })
                    .collect();
                ((0..hs).map(|j| (1.0 - z[j]) * cand[j] + z[j] * h[j]).collect(), vec![])
            }
            RecurrentCell::Lstm => {
                let p = |k: usize, j: usize| self.p.as_ref().map_or(0.0, |p| p[(d * 3 + k) * hs + j]);
                let mut h_new = vec![0.0; hs];
                let mut c_new = vec![0.0; hs];
                for j in 0..hs {
                    // Gates i, o, f, c; peepholes i, o, f.
                    let i = f(0, gate(0, j, h) + p(0, j) * c[j]);
                    let fg = if a.input_forget { 1.0 - i } else { f(0, gate(2, j, h) + p(2, j) * c[j]) };
                    let cand = f(1, gate(3, j, h));
                    c_new[j] = fg * c[j] + i * cand;
                    let o = f(0, gate(1, j, h) + p(1, j) * c_new[j]);
                    // The cell state is not clipped before h: clip bounds the gates' arguments.
                    h_new[j] = o * a.activation(d, 2).apply(c_new[j]);
                }
                (h_new, c_new)
            }
        }
    }

    fn run(&self) -> OpResult<Vec<Tensor>> {
        let (t, n, d, hs) = (self.t, self.n, self.d, self.h);
        let mut y = vec![0.0; t * d * n * hs];
        let mut yh = vec![0.0; d * n * hs];
        let mut yc = vec![0.0; d * n * hs];
        for dir in 0..d {
            let reversed = self.a.direction.is_reversed(dir);
            for b in 0..n {
                let initial = |s: &Option<Vec<f64>>| -> Vec<f64> {
                    (0..hs).map(|j| s.as_ref().map_or(0.0, |v| v[self.state_at(dir, b, j)])).collect()
                };
                let (mut h, mut c) = (initial(&self.h0), initial(&self.c0));
                let len = self.lens[b];
                for s in 0..len {
                    let step = if reversed { len - 1 - s } else { s };
                    let (h_new, c_new) = self.step(dir, self.x_row(step, b), &h, &c);
                    for (j, &v) in h_new.iter().enumerate() {
                        y[self.y_at(step, dir, b, j)] = v;
                    }
                    h = h_new;
                    c = c_new;
                }
                if len > 0 {
                    for j in 0..hs {
                        yh[self.state_at(dir, b, j)] = h[j];
                        if let Some(&v) = c.get(j) {
                            yc[self.state_at(dir, b, j)] = v;
                        }
                    }
                }
            }
        }
        let mut outs = vec![make(self.dtype, self.a.y_shape(t, n), y)?, make(self.dtype, self.a.state_shape(n), yh)?];
        if self.a.cell == RecurrentCell::Lstm {
            outs.push(make(self.dtype, self.a.state_shape(n), yc)?);
        }
        Ok(outs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{CellActivation, RecurrentDirection};
    use crate::tensor::DType;

    fn t(shape: Vec<usize>, v: Vec<f64>) -> Tensor {
        Tensor::from_f64_as(DType::F32, shape, v).unwrap()
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} != {b:?}");
        }
    }

    /// An RNN with one unit and identity-like weights follows h_t = tanh(x_t + 0.5 h_{t-1}) by
    /// hand, forward and reverse.
    #[test]
    fn rnn_by_hand_forward_and_reverse() {
        let x = t(vec![3, 1, 1], vec![0.5, -1.0, 2.0]);
        let (w, r) = (t(vec![1, 1, 1], vec![1.0]), t(vec![1, 1, 1], vec![0.5]));
        let fwd = RecurrentAttrs::new(RecurrentCell::Rnn, RecurrentDirection::Forward, 1);
        let out = eval(&Op::Recurrent(fwd), &[&x, &w, &r]).unwrap();
        let mut h = 0.0f64;
        let mut want = vec![];
        for xv in [0.5, -1.0, 2.0] {
            h = (xv + 0.5 * h).tanh();
            want.push(h);
        }
        close(&out[0].to_f64s(), &want);
        close(&out[1].to_f64s(), &[h]);
        let rev = RecurrentAttrs::new(RecurrentCell::Rnn, RecurrentDirection::Reverse, 1);
        let out = eval(&Op::Recurrent(rev), &[&x, &w, &r]).unwrap();
        let mut h = 0.0f64;
        let mut want = vec![0.0; 3];
        for (k, xv) in [0.5, -1.0, 2.0].into_iter().enumerate().rev() {
            h = (xv + 0.5 * h).tanh();
            want[k] = h;
        }
        close(&out[0].to_f64s(), &want);
        close(&out[1].to_f64s(), &[h]);
    }

    /// Sequence lengths: steps past a sequence's end are zero, a reverse direction starts at
    /// the sequence's last step, the final state is that of the last valid step, and a
    /// length of 0 gives a zero final state.
    #[test]
    fn sequence_lengths_cut_each_batch_entry() {
        // T = 3, N = 3 with lengths 3, 2, 0; one unit; x = 1 everywhere; h = relu(x + h).
        let x = t(vec![3, 3, 1], vec![1.0; 9]);
        let (w, r) = (t(vec![2, 1, 1], vec![1.0, 1.0]), t(vec![2, 1, 1], vec![1.0, 1.0]));
        let lens = Tensor::from_i64(DType::I32, vec![3], vec![3, 2, 0]).unwrap();
        let h0 = t(vec![2, 3, 1], vec![10.0; 6]);
        let mut a = RecurrentAttrs::new(RecurrentCell::Rnn, RecurrentDirection::Bidirectional, 1);
        a.activations = vec![CellActivation::Relu; 2];
        a.inputs.sequence_lens = true;
        a.inputs.initial_h = true;
        let out = eval(&Op::Recurrent(a), &[&x, &w, &r, &lens, &h0]).unwrap();
        // Y [T, D, N, 1]: forward counts up from 10; reverse counts up from the last step.
        let y = out[0].to_f64s();
        let at = |t: usize, d: usize, n: usize| y[(t * 2 + d) * 3 + n];
        assert_eq!([at(0, 0, 0), at(1, 0, 0), at(2, 0, 0)], [11.0, 12.0, 13.0]);
        assert_eq!([at(0, 0, 1), at(1, 0, 1), at(2, 0, 1)], [11.0, 12.0, 0.0]);
        assert_eq!([at(0, 1, 0), at(1, 1, 0), at(2, 1, 0)], [13.0, 12.0, 11.0]);
        assert_eq!([at(0, 1, 1), at(1, 1, 1), at(2, 1, 1)], [12.0, 11.0, 0.0]);
        assert!((0..3).all(|t| at(t, 0, 2) == 0.0 && at(t, 1, 2) == 0.0));
        // Y_h [D, N, 1]: the last valid step's state; zero for length 0.
        assert_eq!(out[1].to_f64s(), vec![13.0, 12.0, 0.0, 13.0, 12.0, 0.0]);
    }

    /// LSTM with input_forget and peepholes against the equations written out for one unit.
    #[test]
    fn lstm_one_unit_with_peepholes_and_coupled_forget_gate() {
        let x = t(vec![2, 1, 1], vec![0.3, -0.7]);
        let w = t(vec![1, 4, 1], vec![0.5, -0.2, 0.9, 0.4]);
        let r = t(vec![1, 4, 1], vec![0.1, 0.3, -0.6, 0.8]);
        let b = t(vec![1, 8], vec![0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]);
        let p = t(vec![1, 3], vec![0.2, -0.3, 0.4]);
        let mut a = RecurrentAttrs::new(RecurrentCell::Lstm, RecurrentDirection::Forward, 1);
        a.inputs.bias = true;
        a.inputs.peepholes = true;
        a.input_forget = true;
        a.clip = Some(0.5);
        let out = eval(&Op::Recurrent(a), &[&x, &w, &r, &b, &p]).unwrap();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let cl = |v: f64| v.clamp(-0.5, 0.5);
        let (mut h, mut c) = (0.0f64, 0.0f64);
        let mut ys = vec![];
        for xv in [0.3, -0.7] {
            let g = |k: usize, wv: f64, rv: f64| {
                wv * xv + rv * h + [0.01, 0.02, 0.03, 0.04][k] + [0.05, 0.06, 0.07, 0.08][k]
            };
            let i = sig(cl(g(0, 0.5, 0.1) + 0.2 * c));
            let f = 1.0 - i;
            let cand = cl(g(3, 0.4, 0.8)).tanh();
            c = f * c + i * cand;
            let o = sig(cl(g(1, -0.2, 0.3) - 0.3 * c));
            h = o * c.tanh();
            ys.push(h);
        }
        close(&out[0].to_f64s(), &ys);
        close(&out[1].to_f64s(), &[h]);
        close(&out[2].to_f64s(), &[c]);
    }

    /// Batch-major layout gives the transposes of the default layout's outputs.
    #[test]
    fn batch_major_layout_transposes_inputs_and_outputs() {
        let mut rng = crate::Rng::new(5);
        let (tt, n, i, h) = (3, 2, 4, 5);
        let x = Tensor::random(vec![tt, n, i], &mut rng, -1.0, 1.0);
        let w = Tensor::random(vec![2, 3 * h, i], &mut rng, -0.5, 0.5);
        let r = Tensor::random(vec![2, 3 * h, h], &mut rng, -0.5, 0.5);
        let h0 = Tensor::random(vec![2, n, h], &mut rng, -1.0, 1.0);
        let mut a = RecurrentAttrs::new(RecurrentCell::Gru, RecurrentDirection::Bidirectional, h);
        a.inputs.initial_h = true;
        let seq = eval(&Op::Recurrent(a.clone()), &[&x, &w, &r, &h0]).unwrap();
        let perm =
            |t: &Tensor, p: &[usize]| super::super::eval(&Op::Transpose { perm: p.to_vec() }, &[t]).unwrap().remove(0);
        a.batch_major = true;
        let bm = eval(&Op::Recurrent(a), &[&perm(&x, &[1, 0, 2]), &w, &r, &perm(&h0, &[1, 0, 2])]).unwrap();
        close(&perm(&seq[0], &[2, 0, 1, 3]).to_f64s(), &bm[0].to_f64s());
        close(&perm(&seq[1], &[1, 0, 2]).to_f64s(), &bm[1].to_f64s());
    }

    #[test]
    fn activation_parameters_are_consumed_in_order_with_onnx_defaults() {
        let (alphas, betas) = (vec![0.3f32, 1.5], vec![0.4f32]);
        let (mut al, mut be) = (alphas.into_iter(), betas.into_iter());
        let names = ["Relu", "HardSigmoid", "ScaledTanh", "LeakyRelu"];
        let got: Vec<_> = names.iter().map(|n| CellActivation::parse(n, &mut al, &mut be).unwrap()).collect();
        assert_eq!(
            got,
            vec![
                CellActivation::Relu,
                CellActivation::HardSigmoid { alpha: 0.3, beta: 0.4 },
                CellActivation::ScaledTanh { alpha: 1.5, beta: 1.0 },
                CellActivation::LeakyRelu { alpha: 0.01 },
            ]
        );
        assert!(CellActivation::parse("Gelu", &mut al, &mut be).is_none());
    }
}
