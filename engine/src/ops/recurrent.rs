//! Recurrent layers (LSTM, GRU, RNN) with ONNX semantics: attributes ([`RecurrentAttrs`]:
//! cell, direction, hidden size, the cell's activation functions, clip, input/forget
//! coupling, linear-before-reset, layout, which optional inputs are present) and shape and
//! type inference.
//!
//! Inputs, in order, the optional ones only when [`RecurrentInputs`] says they are present:
//! X, W, R, B, sequence_lens, initial_h, initial_c (LSTM), P (LSTM peepholes). Outputs:
//! Y, Y_h and (LSTM) Y_c, always all of them (an importer keeps those a model uses).
//!
//! Shapes (D directions, G gates: 4 for LSTM, 3 for GRU, 1 for RNN; H hidden size):
//! X `[T, N, I]` (`[N, T, I]` batch-major), W `[D, G*H, I]`, R `[D, G*H, H]`, B `[D, 2*G*H]`,
//! sequence_lens `[N]`, initial_h / initial_c / Y_h / Y_c `[D, N, H]` (`[N, D, H]`
//! batch-major), P `[D, 3*H]`, Y `[T, D, N, H]` (`[N, T, D, H]` batch-major).

use super::{Check, In, Infer, Op};

/// The cell of a recurrent layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurrentCell {
    /// Long short-term memory: gates i, o, f, c; functions f, g, h.
    Lstm,
    /// Gated recurrent unit: gates z, r, h; functions f, g.
    Gru,
    /// Plain recurrent layer: one gate; function f.
    Rnn,
}

impl RecurrentCell {
    /// The ONNX op type.
    pub fn name(self) -> &'static str {
        match self {
            RecurrentCell::Lstm => "LSTM",
            RecurrentCell::Gru => "GRU",
            RecurrentCell::Rnn => "RNN",
        }
    }

    /// Gates (blocks of H rows of W and R).
    pub fn gates(self) -> usize {
        match self {
            RecurrentCell::Lstm => 4,
            RecurrentCell::Gru => 3,
            RecurrentCell::Rnn => 1,
        }
    }

    /// Activation functions per direction.
    pub fn functions(self) -> usize {
        match self {
            RecurrentCell::Lstm => 3,
            RecurrentCell::Gru => 2,
            RecurrentCell::Rnn => 1,
        }
    }

    /// The default activation functions of one direction.
    pub fn default_activations(self) -> &'static [CellActivation] {
        use CellActivation::{Sigmoid, Tanh};
        match self {
            RecurrentCell::Lstm => &[Sigmoid, Tanh, Tanh],
            RecurrentCell::Gru => &[Sigmoid, Tanh],
            RecurrentCell::Rnn => &[Tanh],
        }
    }
}

/// The direction(s) a recurrent layer runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurrentDirection {
    /// First step to last.
    Forward,
    /// Last step to first (within each sequence's length).
    Reverse,
    /// Both: direction 0 forward, direction 1 reverse.
    Bidirectional,
}

impl RecurrentDirection {
    /// Number of directions (D).
    pub fn count(self) -> usize {
        if self == RecurrentDirection::Bidirectional { 2 } else { 1 }
    }

    /// True when direction `d` runs from the last step to the first.
    pub fn is_reversed(self, d: usize) -> bool {
        match self {
            RecurrentDirection::Forward => false,
            RecurrentDirection::Reverse => true,
            RecurrentDirection::Bidirectional => d == 1,
        }
    }
}

/// An activation function of a recurrent cell (ONNX's list for RNN, GRU and LSTM).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CellActivation {
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh(x)
    Tanh,
    /// max(x, 0)
    Relu,
    /// alpha * x + beta
    Affine {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// x if x >= 0 else alpha * x
    LeakyRelu {
        /// Slope of negative inputs.
        alpha: f32,
    },
    /// x if x > alpha else 0
    ThresholdedRelu {
        /// Threshold.
        alpha: f32,
    },
    /// alpha * tanh(beta * x)
    ScaledTanh {
        /// Output scale.
        alpha: f32,
        /// Input scale.
        beta: f32,
    },
    /// max(0, min(1, alpha * x + beta))
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// x if x > 0 else alpha * (e^x - 1)
    Elu {
        /// Scale of negative inputs.
        alpha: f32,
    },
    /// x / (1 + |x|)
    Softsign,
    /// ln(1 + e^x)
    Softplus,
}

impl CellActivation {
    /// The function in f64 (the reference's definition).
    pub fn apply(self, x: f64) -> f64 {
        use CellActivation::*;
        match self {
            Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Tanh => x.tanh(),
            Relu => x.max(0.0),
            Affine { alpha, beta } => alpha as f64 * x + beta as f64,
            LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha as f64 * x
                }
            }
            ThresholdedRelu { alpha } => {
                if x > alpha as f64 {
                    x
                } else {
                    0.0
                }
            }
            ScaledTanh { alpha, beta } => alpha as f64 * (beta as f64 * x).tanh(),
            HardSigmoid { alpha, beta } => (alpha as f64 * x + beta as f64).clamp(0.0, 1.0),
            Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha as f64 * (x.exp() - 1.0)
                }
            }
            Softsign => x / (1.0 + x.abs()),
            Softplus => {
                if x > 30.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
        }
    }

    /// The kernels' code of the function with its two parameters (`shaders/recurrent.wgsl`).
    pub fn code(self) -> (u32, f32, f32) {
        use CellActivation::*;
        match self {
            Sigmoid => (0, 0.0, 0.0),
            Tanh => (1, 0.0, 0.0),
            Relu => (2, 0.0, 0.0),
            Affine { alpha, beta } => (3, alpha, beta),
            LeakyRelu { alpha } => (4, alpha, 0.0),
            ThresholdedRelu { alpha } => (5, alpha, 0.0),
            ScaledTanh { alpha, beta } => (6, alpha, beta),
            HardSigmoid { alpha, beta } => (7, alpha, beta),
            Elu { alpha } => (8, alpha, 0.0),
            Softsign => (9, 0.0, 0.0),
            Softplus => (10, 0.0, 0.0),
        }
    }

    /// The function named as ONNX names it (case-insensitive), taking its alpha and beta
    /// from the given iterators where it has them (ONNX consumes `activation_alpha` and
    /// `activation_beta` in the order of the functions that use them); a parameter not
    /// given takes the default of the ONNX operator of that name (Affine 1, 0; LeakyRelu
    /// 0.01; ThresholdedRelu 1; ScaledTanh 1, 1; HardSigmoid 0.2, 0.5; Elu 1).
    pub fn parse(
        name: &str,
        alphas: &mut impl Iterator<Item = f32>,
        betas: &mut impl Iterator<Item = f32>,
    ) -> Option<CellActivation> {
        use CellActivation::*;
        let mut alpha = |d: f32| alphas.next().unwrap_or(d);
        Some(match name.to_ascii_lowercase().as_str() {
            "sigmoid" => Sigmoid,
            "tanh" => Tanh,
            "relu" => Relu,
            "affine" => Affine { alpha: alpha(1.0), beta: betas.next().unwrap_or(0.0) },
            "leakyrelu" => LeakyRelu { alpha: alpha(0.01) },
            "thresholdedrelu" => ThresholdedRelu { alpha: alpha(1.0) },
            "scaledtanh" => ScaledTanh { alpha: alpha(1.0), beta: betas.next().unwrap_or(1.0) },
            "hardsigmoid" => HardSigmoid { alpha: alpha(0.2), beta: betas.next().unwrap_or(0.5) },
            "elu" => Elu { alpha: alpha(1.0) },
            "softsign" => Softsign,
            "softplus" => Softplus,
            _ => return None,
        })
    }
}

/// Which optional inputs a recurrent node has (in this order after X, W, R).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecurrentInputs {
    /// B: the input and recurrent biases.
    pub bias: bool,
    /// sequence_lens: each batch entry's number of valid steps.
    pub sequence_lens: bool,
    /// initial_h: the initial hidden state (zeros when absent).
    pub initial_h: bool,
    /// initial_c: the initial cell state (LSTM; zeros when absent).
    pub initial_c: bool,
    /// P: the peephole weights (LSTM; zeros when absent).
    pub peepholes: bool,
}

/// The input index of each optional input present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecurrentSlots {
    /// B.
    pub bias: Option<usize>,
    /// sequence_lens.
    pub sequence_lens: Option<usize>,
    /// initial_h.
    pub initial_h: Option<usize>,
    /// initial_c.
    pub initial_c: Option<usize>,
    /// P.
    pub peepholes: Option<usize>,
}

/// Attributes of a recurrent layer (ONNX LSTM, GRU, RNN).
#[derive(Clone, Debug, PartialEq)]
pub struct RecurrentAttrs {
    /// The cell.
    pub cell: RecurrentCell,
    /// The direction(s).
    pub direction: RecurrentDirection,
    /// H.
    pub hidden_size: usize,
    /// The cell's functions of each direction, direction 0 first
    /// (`cell.functions() * direction.count()` entries).
    pub activations: Vec<CellActivation>,
    /// The gates' arguments to their activation functions are clamped to [-clip, clip]
    /// (LSTM's cell state on its way to h is not).
    pub clip: Option<f32>,
    /// LSTM: the forget gate is 1 - the input gate.
    pub input_forget: bool,
    /// GRU: the reset gate multiplies the recurrent product (with its bias) instead of the
    /// previous hidden state.
    pub linear_before_reset: bool,
    /// ONNX `layout = 1`: X, Y and the states are batch-major.
    pub batch_major: bool,
    /// The optional inputs present.
    pub inputs: RecurrentInputs,
}

impl RecurrentAttrs {
    /// Attributes with ONNX's defaults for a cell, direction and hidden size, no optional
    /// input.
    pub fn new(cell: RecurrentCell, direction: RecurrentDirection, hidden_size: usize) -> Self {
        let activations = cell.default_activations().repeat(direction.count());
        RecurrentAttrs {
            cell,
            direction,
            hidden_size,
            activations,
            clip: None,
            input_forget: false,
            linear_before_reset: false,
            batch_major: false,
            inputs: RecurrentInputs::default(),
        }
    }

    /// Where each optional input is among the node's inputs.
    pub fn slots(&self) -> RecurrentSlots {
        let mut next = 3;
        let mut take = |present: bool| {
            present.then(|| {
                next += 1;
                next - 1
            })
        };
        let i = self.inputs;
        RecurrentSlots {
            bias: take(i.bias),
            sequence_lens: take(i.sequence_lens),
            initial_h: take(i.initial_h),
            initial_c: take(i.initial_c),
            peepholes: take(i.peepholes),
        }
    }

    /// Number of inputs the node takes.
    pub fn arity(&self) -> usize {
        let i = self.inputs;
        3 + [i.bias, i.sequence_lens, i.initial_h, i.initial_c, i.peepholes].iter().filter(|&&b| b).count()
    }

    /// Activation function `which` (0 = f, 1 = g, 2 = h) of direction `d`.
    pub fn activation(&self, d: usize, which: usize) -> CellActivation {
        self.activations[d * self.cell.functions() + which]
    }

    /// (T, N) from the shape of X.
    pub fn steps_and_batch(&self, x: &[usize]) -> (usize, usize) {
        if self.batch_major { (x[1], x[0]) } else { (x[0], x[1]) }
    }

    /// Shape of a state (initial_h, initial_c, Y_h, Y_c) for N batch entries.
    pub fn state_shape(&self, n: usize) -> Vec<usize> {
        let (d, h) = (self.direction.count(), self.hidden_size);
        if self.batch_major { vec![n, d, h] } else { vec![d, n, h] }
    }

    /// Shape of Y for T steps and N batch entries.
    pub fn y_shape(&self, t: usize, n: usize) -> Vec<usize> {
        let (d, h) = (self.direction.count(), self.hidden_size);
        if self.batch_major { vec![n, t, d, h] } else { vec![t, d, n, h] }
    }

    /// Checks the attributes on their own.
    fn check(&self) -> std::result::Result<(), String> {
        let cell = self.cell;
        if self.hidden_size == 0 || self.hidden_size > 1 << 20 {
            return Err(format!("hidden_size {} must be in 1..=2^20", self.hidden_size));
        }
        let want = cell.functions() * self.direction.count();
        if self.activations.len() != want {
            return Err(format!(
                "{} activation functions given, a {:?} {} takes {want} ({} per direction)",
                self.activations.len(),
                self.direction,
                cell.name(),
                cell.functions()
            ));
        }
        if let Some(c) = self.clip
            && (c.is_nan() || c <= 0.0)
        {
            return Err(format!("clip must be positive, got {c}"));
        }
        if cell != RecurrentCell::Lstm && (self.input_forget || self.inputs.initial_c || self.inputs.peepholes) {
            return Err(format!("input_forget, initial_c and P belong to LSTM, not {}", cell.name()));
        }
        if cell != RecurrentCell::Gru && self.linear_before_reset {
            return Err(format!("linear_before_reset belongs to GRU, not {}", cell.name()));
        }
        Ok(())
    }
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let Op::Recurrent(a) = op else { unreachable!("recurrent family") };
    a.check()?;
    let c = Check { ins };
    let n_in = a.arity();
    c.arity(n_in, n_in)?;
    c.need_rank(0, 3, "X")?;
    c.need_float(0, "X")?;
    let dt = c.dtype(0);
    let (d, g, h) = (a.direction.count(), a.cell.gates(), a.hidden_size);
    let x = c.shape(0);
    let (t, n) = a.steps_and_batch(x);
    let i = x[2];
    if t == 0 {
        return Err(format!("X {x:?} has no time steps; a recurrent layer needs at least one"));
    }
    let expect = |k: usize, what: &str, shape: Vec<usize>| -> std::result::Result<(), String> {
        if c.shape(k) != shape.as_slice() {
            return Err(format!(
                "{what} '{}' has shape {:?}, a {} with {d} direction(s), hidden size {h} and input size {i} needs {shape:?}",
                ins[k].name,
                c.shape(k),
                a.cell.name()
            ));
        }
        if c.dtype(k) != dt {
            return Err(format!(
                "{what} '{}' is {} but X is {dt}; ONNX requires the same type",
                ins[k].name,
                c.dtype(k)
            ));
        }
        Ok(())
    };
    expect(1, "W", vec![d, g * h, i])?;
    expect(2, "R", vec![d, g * h, h])?;
    let s = a.slots();
    if let Some(k) = s.bias {
        expect(k, "B", vec![d, 2 * g * h])?;
    }
    if let Some(k) = s.sequence_lens {
        if !c.dtype(k).is_int() {
            return Err(format!("sequence_lens '{}' must be integers, it is {}", ins[k].name, c.dtype(k)));
        }
        if c.shape(k) != [n] {
            return Err(format!("sequence_lens '{}' has shape {:?}, the batch is {n}", ins[k].name, c.shape(k)));
        }
        if let Some(v) = ins[k].konst
            && let Some(bad) = v.to_i64s().into_iter().find(|&l| l < 0 || l > t as i64)
        {
            return Err(format!("sequence_lens holds {bad}, outside 0..={t} (the steps of X)"));
        }
    }
    for (slot, what) in [(s.initial_h, "initial_h"), (s.initial_c, "initial_c")] {
        if let Some(k) = slot {
            expect(k, what, a.state_shape(n))?;
        }
    }
    if let Some(k) = s.peepholes {
        expect(k, "P", vec![d, 3 * h])?;
    }
    let mut outs = vec![(dt, a.y_shape(t, n)), (dt, a.state_shape(n))];
    if a.cell == RecurrentCell::Lstm {
        outs.push((dt, a.state_shape(n)));
    }
    Ok(outs)
}
