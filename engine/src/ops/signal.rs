//! Signal processing and small numerical kernels of `shaders/signal.wgsl`: discrete and
//! short-time Fourier transforms, window functions, the mel filter bank, determinants and the
//! causal recurrence of linear attention (a scan over the sequence, as an IIR filter is).
//! Attributes and shape and type inference.
//!
//! Complex values are held as ONNX holds them: a last axis of size 2 (real, imaginary); a
//! real signal has a last axis of size 1.

use super::{Check, In, Infer, Op, check_axis};
use crate::tensor::DType;

/// Attributes of a discrete Fourier transform (ONNX `DFT`, its length and axis resolved).
#[derive(Clone, Debug, PartialEq)]
pub struct DftAttrs {
    /// The transformed axis (never the last, which holds the complex parts).
    pub axis: usize,
    /// The transform length N (`dft_length`): the signal is cut or padded with zeros to it.
    pub length: usize,
    /// The inverse transform (e^{+i...}, scaled by 1/N).
    pub inverse: bool,
    /// Forward: only the N/2 + 1 non-redundant bins of a real signal's spectrum. Inverse:
    /// the input is such a one-sided spectrum and the output the real signal (last axis 1).
    pub onesided: bool,
}

impl DftAttrs {
    /// Output bins along the axis.
    pub fn bins(&self) -> usize {
        if self.onesided && !self.inverse { self.length / 2 + 1 } else { self.length }
    }

    /// Size of the output's last axis: 2 (complex), or 1 for the inverse of a one-sided
    /// spectrum (a real signal).
    pub fn out_parts(&self) -> usize {
        if self.onesided && self.inverse { 1 } else { 2 }
    }
}

/// Attributes of a short-time Fourier transform (ONNX `STFT`, its sizes resolved).
#[derive(Clone, Debug, PartialEq)]
pub struct StftAttrs {
    /// Samples between the starts of two frames.
    pub step: usize,
    /// Samples per frame, the length of each frame's transform.
    pub frame_length: usize,
    /// Only the frame_length / 2 + 1 non-redundant bins (real signals).
    pub onesided: bool,
}

impl StftAttrs {
    /// Frames of a signal of `len` samples.
    pub fn frames(&self, len: usize) -> usize {
        1 + (len - self.frame_length) / self.step
    }

    /// Bins per frame.
    pub fn bins(&self) -> usize {
        if self.onesided { self.frame_length / 2 + 1 } else { self.frame_length }
    }
}

/// A window function (`HannWindow`, `HammingWindow`, `BlackmanWindow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// sin^2(pi n / N)
    Hann,
    /// 25/46 - 21/46 cos(2 pi n / N)
    Hamming,
    /// 0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N)
    Blackman,
}

impl WindowKind {
    /// The ONNX op type.
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Hann => "HannWindow",
            WindowKind::Hamming => "HammingWindow",
            WindowKind::Blackman => "BlackmanWindow",
        }
    }

    /// Value n of a window of `size` values (N = size if periodic, else size - 1), in f64.
    pub fn value(self, n: usize, size: usize, periodic: bool) -> f64 {
        let big_n = if periodic { size as f64 } else { size as f64 - 1.0 };
        let x = n as f64 / big_n;
        let pi = std::f64::consts::PI;
        match self {
            WindowKind::Hann => (pi * x).sin().powi(2),
            WindowKind::Hamming => 25.0 / 46.0 - (1.0 - 25.0 / 46.0) * (2.0 * pi * x).cos(),
            WindowKind::Blackman => 0.42 - 0.5 * (2.0 * pi * x).cos() + 0.08 * (4.0 * pi * x).cos(),
        }
    }
}

/// Attributes of linear attention's recurrence.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearAttentionAttrs {
    /// Query heads (a multiple of the key/value heads, each state shared by a group).
    pub q_heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Output scale.
    pub scale: f32,
    /// The state decays by exp(decay) before each update (an input follows the state).
    pub gated: bool,
    /// Delta rule: the value written is beta * (v - S^T k) (beta is the last input).
    pub delta: bool,
}

/// The longest transform: each output bin sums its whole signal (a direct transform, N^2
/// work), with a table of N twiddles.
pub(crate) const MAX_TRANSFORM_LENGTH: usize = 1 << 16;

fn check_length(n: usize, what: &str) -> std::result::Result<(), String> {
    if n == 0 || n > MAX_TRANSFORM_LENGTH {
        Err(format!("{what} {n} must be in 1..={MAX_TRANSFORM_LENGTH} (transforms are computed directly, N^2 work)"))
    } else {
        Ok(())
    }
}

/// Checks a signal of complex parts: rank >= 2, float, last axis 1 or 2.
fn complex_signal(c: &Check, i: usize, what: &str) -> std::result::Result<usize, String> {
    c.need_float(i, what)?;
    let s = c.shape(i);
    match s.last() {
        Some(&p @ (1 | 2)) if s.len() >= 2 => Ok(p),
        _ => Err(format!(
            "{what} '{}' must end with an axis of 1 (real) or 2 (real, imaginary) values and have rank >= 2, has shape {s:?}",
            c.ins[i].name
        )),
    }
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    match op {
        Op::Dft(a) => {
            c.arity(1, 1)?;
            complex_signal(&c, 0, "input")?;
            let s = c.shape(0);
            check_axis(a.axis, s.len() - 1).map_err(|e| format!("{e} (the last axis holds the complex parts)"))?;
            check_length(a.length, "dft_length")?;
            if a.inverse && a.onesided && s[s.len() - 1] != 2 {
                return Err("the inverse of a one-sided spectrum needs complex input (last axis 2)".into());
            }
            let mut out = s.to_vec();
            out[a.axis] = a.bins();
            *out.last_mut().expect("rank >= 2") = a.out_parts();
            Ok(vec![(c.dtype(0), out)])
        }
        Op::Stft(a) => {
            c.arity(1, 2)?;
            complex_signal(&c, 0, "signal")?;
            c.need_rank(0, 3, "signal")?;
            let s = c.shape(0);
            if a.step == 0 {
                return Err("frame_step must be >= 1".into());
            }
            check_length(a.frame_length, "frame_length")?;
            if a.frame_length > s[1] {
                return Err(format!("frame_length {} is longer than the signal ({} samples)", a.frame_length, s[1]));
            }
            if ins.len() == 2 {
                c.need_float(1, "window")?;
                if c.shape(1) != [a.frame_length] {
                    return Err(format!(
                        "the window must have shape [{}] (the frame length), has {:?}",
                        a.frame_length,
                        c.shape(1)
                    ));
                }
                c.same_types(0)?;
            }
            Ok(vec![(c.dtype(0), vec![s[0], a.frames(s[1]), a.bins(), 2])])
        }
        Op::Det => {
            c.arity(1, 1)?;
            c.need_float(0, "input")?;
            let s = c.shape(0);
            if s.len() < 2 || s[s.len() - 1] != s[s.len() - 2] {
                return Err(format!("input must be square matrices [..., M, M], has shape {s:?}"));
            }
            Ok(vec![(c.dtype(0), s[..s.len() - 2].to_vec())])
        }
        Op::LinearAttention(a) => linear_attention(&c, a),
        Op::Window { .. } | Op::MelWeightMatrix { .. } => Err(format!(
            "{} has an output whose shape depends on its input values; it runs on the host between device graphs",
            op.name()
        )),
        _ => unreachable!("signal family"),
    }
}

/// The element types a window or mel filter bank may be made in (numbers: integer types
/// truncate the values).
pub(crate) fn check_output_type(t: DType) -> std::result::Result<(), String> {
    if t == DType::Bool { Err("output_datatype must be a numeric type, it is bool".into()) } else { Ok(()) }
}

/// [B, T, heads * size] inputs, the state, the decay and beta of linear attention.
fn linear_attention(c: &Check, a: &LinearAttentionAttrs) -> Infer {
    let want = 4 + a.gated as usize + a.delta as usize;
    c.arity(want, want)?;
    for (i, what) in [(0, "query"), (1, "key"), (2, "value"), (3, "state")] {
        c.need_float(i, what)?;
    }
    if a.q_heads == 0 || a.kv_heads == 0 || !a.q_heads.is_multiple_of(a.kv_heads) {
        return Err(format!("q_num_heads {} must be a positive multiple of kv_num_heads {}", a.q_heads, a.kv_heads));
    }
    let (q, k, v) = (c.shape(0), c.shape(1), c.shape(2));
    if q.len() != 3 || k.len() != 3 || v.len() != 3 || k[..2] != q[..2] || v[..2] != q[..2] {
        return Err(format!("query {q:?}, key {k:?} and value {v:?} must be [B, T, heads * size] alike"));
    }
    if !q[2].is_multiple_of(a.q_heads) || !k[2].is_multiple_of(a.kv_heads) || !v[2].is_multiple_of(a.kv_heads) {
        return Err(format!("the heads do not divide query {q:?}, key {k:?} or value {v:?}"));
    }
    let (dk, dv) = (q[2] / a.q_heads, v[2] / a.kv_heads);
    if k[2] / a.kv_heads != dk {
        return Err(format!("key heads hold {} values, query heads {dk}", k[2] / a.kv_heads));
    }
    let (b, t) = (q[0], q[1]);
    if c.shape(3) != [b, a.kv_heads, dk, dv] {
        return Err(format!("the state must have shape {:?}, has {:?}", [b, a.kv_heads, dk, dv], c.shape(3)));
    }
    let mut next = 4;
    if a.gated {
        let g = c.shape(next);
        c.need_float(next, "decay")?;
        if g.len() != 3 || g[..2] != [b, t] || !(g[2] == a.kv_heads || g[2] == a.kv_heads * dk) {
            return Err(format!(
                "decay must be [{b}, {t}, {}] or [{b}, {t}, {}], has {g:?}",
                a.kv_heads,
                a.kv_heads * dk
            ));
        }
        next += 1;
    }
    if a.delta {
        let be = c.shape(next);
        c.need_float(next, "beta")?;
        if be.len() != 3 || be[..2] != [b, t] || !(be[2] == a.kv_heads || be[2] == 1) {
            return Err(format!("beta must be [{b}, {t}, {}] or [{b}, {t}, 1], has {be:?}", a.kv_heads));
        }
    }
    Ok(vec![(c.dtype(0), vec![b, t, a.q_heads * dv]), (c.dtype(3), vec![b, a.kv_heads, dk, dv])])
}
