//! Reductions along axes (sums, means, extrema, norms, log-sum-exp), arg-max/arg-min,
//! softmax and its log and hard variants, layer normalisation, cumulative sums and products,
//! TopK with a constant k: the operations of `shaders/reduce.wgsl`.

use std::collections::HashSet;

use super::{Check, In, Infer, Op, broadcast, check_axis};
use crate::tensor::DType;

/// What a reduction computes over its axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    /// Mean.
    Mean,
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Product.
    Prod,
    /// Sum of absolute values.
    L1,
    /// Square root of the sum of squares.
    L2,
    /// Log of the sum.
    LogSum,
    /// Log of the sum of exponentials.
    LogSumExp,
    /// Sum of squares.
    SumSquare,
}

impl ReduceKind {
    /// Kernel code (the `KIND` override constant of `reduce`).
    pub fn code(self) -> u32 {
        match self {
            ReduceKind::Mean => 0,
            ReduceKind::Max => 1,
            ReduceKind::Sum => 2,
            ReduceKind::Min => 3,
            ReduceKind::Prod => 4,
            ReduceKind::L1 => 5,
            ReduceKind::L2 => 6,
            ReduceKind::LogSum => 7,
            ReduceKind::LogSumExp => 8,
            ReduceKind::SumSquare => 9,
        }
    }

    /// The ONNX op type.
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Mean => "ReduceMean",
            ReduceKind::Sum => "ReduceSum",
            ReduceKind::Max => "ReduceMax",
            ReduceKind::Min => "ReduceMin",
            ReduceKind::Prod => "ReduceProd",
            ReduceKind::L1 => "ReduceL1",
            ReduceKind::L2 => "ReduceL2",
            ReduceKind::LogSum => "ReduceLogSum",
            ReduceKind::LogSumExp => "ReduceLogSumExp",
            ReduceKind::SumSquare => "ReduceSumSquare",
        }
    }

    /// The reduction of `values` (in f64).
    pub fn apply(self, values: &[f64]) -> f64 {
        let n = values.len() as f64;
        match self {
            ReduceKind::Mean => values.iter().sum::<f64>() / n,
            ReduceKind::Sum => values.iter().sum(),
            ReduceKind::Max => values
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, |m, v| if v.is_nan() || m.is_nan() { f64::NAN } else { m.max(v) }),
            ReduceKind::Min => values
                .iter()
                .copied()
                .fold(f64::INFINITY, |m, v| if v.is_nan() || m.is_nan() { f64::NAN } else { m.min(v) }),
            ReduceKind::Prod => values.iter().product(),
            ReduceKind::L1 => values.iter().map(|v| v.abs()).sum(),
            ReduceKind::L2 => values.iter().map(|v| v * v).sum::<f64>().sqrt(),
            ReduceKind::LogSum => values.iter().sum::<f64>().ln(),
            ReduceKind::LogSumExp => {
                let m = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if m.is_infinite() {
                    values.iter().map(|v| v.exp()).sum::<f64>().ln()
                } else {
                    m + values.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
                }
            }
            ReduceKind::SumSquare => values.iter().map(|v| v * v).sum(),
        }
    }

    /// True for the kinds defined on integers (computed exactly in i64).
    pub fn on_integers(self) -> bool {
        matches!(
            self,
            ReduceKind::Sum
                | ReduceKind::Max
                | ReduceKind::Min
                | ReduceKind::Prod
                | ReduceKind::L1
                | ReduceKind::SumSquare
                | ReduceKind::Mean
        )
    }
}

/// Softmax, its logarithm, or the one-hot of the first maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftmaxKind {
    /// exp(x - max) / sum
    Softmax,
    /// x - max - log(sum(exp(x - max)))
    LogSoftmax,
    /// 1 at the first maximum, 0 elsewhere
    Hardmax,
}

impl SoftmaxKind {
    /// The ONNX op type.
    pub fn name(self) -> &'static str {
        match self {
            SoftmaxKind::Softmax => "Softmax",
            SoftmaxKind::LogSoftmax => "LogSoftmax",
            SoftmaxKind::Hardmax => "Hardmax",
        }
    }

    /// Kernel code (the `KIND` override constant of `softmax`).
    pub fn code(self) -> u32 {
        match self {
            SoftmaxKind::Softmax => 0,
            SoftmaxKind::LogSoftmax => 1,
            SoftmaxKind::Hardmax => 2,
        }
    }
}

/// What a cumulative scan (CumSum, CumProd) accumulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CumulativeKind {
    /// Running sum.
    Sum,
    /// Running product.
    Prod,
}

impl CumulativeKind {
    /// The ONNX op type.
    pub fn name(self) -> &'static str {
        match self {
            CumulativeKind::Sum => "CumSum",
            CumulativeKind::Prod => "CumProd",
        }
    }

    /// Kernel code (the `KIND` override constant of `cumulative`).
    pub fn code(self) -> u32 {
        match self {
            CumulativeKind::Sum => 0,
            CumulativeKind::Prod => 1,
        }
    }
}

/// The output shape of a reduction of `shape` over `axes`.
pub(crate) fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    let mut out = vec![];
    for (i, &d) in shape.iter().enumerate() {
        if axes.contains(&i) {
            if keepdims {
                out.push(1);
            }
        } else {
            out.push(d);
        }
    }
    out
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    match op {
        Op::Reduce { kind, axes, keepdims } => {
            c.arity(1, 1)?;
            let t = c.dtype(0);
            let bool_ok = t == DType::Bool && matches!(kind, ReduceKind::Max | ReduceKind::Min);
            if !(t.is_float() || t.is_int() && kind.on_integers() || bool_ok) {
                return Err(format!("{} of a {t} tensor is not defined", kind.name()));
            }
            let mut seen = HashSet::new();
            for &a in axes {
                check_axis(a, c.rank(0))?;
                if !seen.insert(a) {
                    return Err(format!("axis {a} appears twice"));
                }
            }
            if axes.iter().any(|&a| c.shape(0)[a] == 0) && matches!(kind, ReduceKind::Mean) {
                return Err("the mean of an empty axis is not defined".into());
            }
            Ok(vec![(t, reduced_shape(c.shape(0), axes, *keepdims))])
        }
        Op::ArgReduce { axis, keepdims, .. } => {
            c.arity(1, 1)?;
            if c.dtype(0) == DType::Bool {
                return Err("input must be numbers, it is bool".into());
            }
            check_axis(*axis, c.rank(0))?;
            if c.shape(0)[*axis] == 0 {
                return Err(format!("axis {axis} is empty"));
            }
            Ok(vec![(DType::I64, reduced_shape(c.shape(0), &[*axis], *keepdims))])
        }
        Op::Softmax { axis, .. } => {
            c.arity(1, 1)?;
            c.need_float(0, "input")?;
            check_axis(*axis, c.rank(0))?;
            Ok(vec![(c.dtype(0), c.shape(0).to_vec())])
        }
        Op::LayerNorm { axis, epsilon } => {
            c.arity(2, 3)?;
            c.need_float(0, "input")?;
            check_axis(*axis, c.rank(0))?;
            if epsilon.is_nan() || *epsilon < 0.0 {
                return Err(format!("epsilon must be >= 0, got {epsilon}"));
            }
            let norm = &c.shape(0)[*axis..];
            for i in 1..ins.len() {
                let what = if i == 1 { "scale" } else { "bias" };
                c.need_const(i, what)?;
                let b = broadcast(norm, c.shape(i))?;
                if b != norm {
                    return Err(format!("{what} {:?} must broadcast to the normalised shape {norm:?}", c.shape(i)));
                }
            }
            Ok(vec![(c.dtype(0), c.shape(0).to_vec())])
        }
        Op::Cumulative { kind, axis, .. } => {
            c.arity(1, 1)?;
            let t = c.dtype(0);
            if !(t.is_float() || t.is_int()) {
                return Err(format!("{} of a {t} tensor is not defined", kind.name()));
            }
            check_axis(*axis, c.rank(0))?;
            Ok(vec![(t, c.shape(0).to_vec())])
        }
        Op::TopKStatic { axis, k, .. } => {
            c.arity(1, 1)?;
            let t = c.dtype(0);
            if t == DType::Bool {
                return Err("input must be numbers, it is bool".into());
            }
            check_axis(*axis, c.rank(0))?;
            let len = c.shape(0)[*axis];
            if *k > len {
                return Err(format!("k = {k} is larger than axis {axis} of length {len}"));
            }
            let mut shape = c.shape(0).to_vec();
            shape[*axis] = *k;
            Ok(vec![(t, shape.clone()), (DType::I64, shape)])
        }
        _ => unreachable!("reduce family"),
    }
}
