//! Reference signal processing and small numerical kernels: DFT (forward, inverse, one-sided,
//! the inverse of a one-sided spectrum), STFT, window functions, the mel filter bank and
//! determinants (LU with partial pivoting), linear attention's recurrence, in f64 with
//! twiddle angles reduced exactly (k * n mod N) before the sine and cosine.

use super::{OpResult, floats, make};
use crate::ops::{DftAttrs, LinearAttentionAttrs, Op, StftAttrs, WindowKind, signal_check_output_type};
use crate::tensor::{DType, Tensor};

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let arity = |lo: usize, hi: usize| -> OpResult<()> {
        if ins.len() < lo || ins.len() > hi {
            Err(format!("takes {lo}..={hi} inputs, got {}", ins.len()))
        } else {
            Ok(())
        }
    };
    if let Op::LinearAttention(a) = op {
        return linear_attention(ins, a);
    }
    Ok(vec![match op {
        Op::Dft(a) => {
            arity(1, 1)?;
            dft(ins[0], a)?
        }
        Op::Stft(a) => {
            arity(1, 2)?;
            stft(ins[0], ins.get(1).copied(), a)?
        }
        Op::Window { kind, periodic, dtype } => {
            arity(1, 1)?;
            window(ins[0], *kind, *periodic, *dtype)?
        }
        Op::MelWeightMatrix { dtype } => {
            arity(5, 5)?;
            mel_weight_matrix(ins, *dtype)?
        }
        Op::Det => {
            arity(1, 1)?;
            det(ins[0])?
        }
        _ => unreachable!("signal family"),
    }])
}

/// e^{i 2 pi (k n mod N) / N} as (cos, sin).
fn twiddle(k: usize, n: usize, big_n: usize) -> (f64, f64) {
    let r = ((k as u128 * n as u128) % big_n as u128) as f64;
    let angle = 2.0 * std::f64::consts::PI * r / big_n as f64;
    (angle.cos(), angle.sin())
}

/// The transform of one line of complex values `z` (zero beyond its end), as [`DftAttrs`]
/// defines it; one (re, im) per output position (im 0 for a real output).
fn transform(z: &[(f64, f64)], a: &DftAttrs) -> Vec<(f64, f64)> {
    let big_n = a.length;
    let at = |t: usize| z.get(t).copied().unwrap_or((0.0, 0.0));
    if a.inverse && a.onesided {
        // The real signal of a one-sided spectrum: its Hermitian extension transformed.
        let m = big_n / 2 + 1;
        return (0..big_n)
            .map(|n| {
                let mut acc = 0.0;
                for k in 0..big_n {
                    let (re, im) = if k < m {
                        at(k)
                    } else {
                        let (r, i) = at(big_n - k);
                        (r, -i)
                    };
                    let (c, s) = twiddle(k, n, big_n);
                    acc += re * c - im * s;
                }
                (acc / big_n as f64, 0.0)
            })
            .collect();
    }
    let sign = if a.inverse { 1.0 } else { -1.0 };
    let scale = if a.inverse { 1.0 / big_n as f64 } else { 1.0 };
    (0..a.bins())
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (n, &(xr, xi)) in z.iter().enumerate().take(big_n) {
                let (c, s) = twiddle(k, n, big_n);
                let s = sign * s;
                re += xr * c - xi * s;
                im += xr * s + xi * c;
            }
            (re * scale, im * scale)
        })
        .collect()
}

fn dft(x: &Tensor, a: &DftAttrs) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 2 || a.axis + 1 >= s.len() {
        return Err(format!("axis {} is not a signal axis of shape {s:?}", a.axis));
    }
    let parts = s[s.len() - 1];
    if !(parts == 1 || parts == 2) {
        return Err(format!("the last axis must hold 1 or 2 parts, has {parts}"));
    }
    let xd = floats(x, "input")?;
    let outer: usize = s[..a.axis].iter().product();
    let len = s[a.axis];
    let inner: usize = s[a.axis + 1..s.len() - 1].iter().product();
    let (bins, out_parts) = (a.bins(), a.out_parts());
    let mut out = vec![0.0; outer * bins * inner * out_parts];
    for o in 0..outer {
        for i in 0..inner {
            let z: Vec<(f64, f64)> = (0..len)
                .map(|t| {
                    let at = ((o * len + t) * inner + i) * parts;
                    (xd[at], if parts == 2 { xd[at + 1] } else { 0.0 })
                })
                .collect();
            for (k, (re, im)) in transform(&z, a).into_iter().enumerate() {
                let at = ((o * bins + k) * inner + i) * out_parts;
                out[at] = re;
                if out_parts == 2 {
                    out[at + 1] = im;
                }
            }
        }
    }
    let mut shape = s.to_vec();
    shape[a.axis] = bins;
    *shape.last_mut().expect("rank >= 2") = out_parts;
    make(x.dtype(), shape, out)
}

fn stft(x: &Tensor, window: Option<&Tensor>, a: &StftAttrs) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() != 3 || !(s[2] == 1 || s[2] == 2) {
        return Err(format!("signal must be [batch, length, 1 or 2], has shape {s:?}"));
    }
    if a.step == 0 || a.frame_length == 0 || a.frame_length > s[1] {
        return Err(format!("frame_step {} and frame_length {} do not fit {} samples", a.step, a.frame_length, s[1]));
    }
    let w = match window {
        Some(w) if w.shape() != [a.frame_length] => {
            return Err(format!("the window must have shape [{}], has {:?}", a.frame_length, w.shape()));
        }
        Some(w) => floats(w, "window")?,
        None => vec![1.0; a.frame_length],
    };
    let xd = floats(x, "signal")?;
    let (batch, len, parts) = (s[0], s[1], s[2]);
    let frames = a.frames(len);
    let dft = DftAttrs { axis: 1, length: a.frame_length, inverse: false, onesided: a.onesided };
    let mut out = Vec::with_capacity(batch * frames * a.bins() * 2);
    for b in 0..batch {
        for f in 0..frames {
            let z: Vec<(f64, f64)> = (0..a.frame_length)
                .map(|n| {
                    let at = (b * len + f * a.step + n) * parts;
                    (xd[at] * w[n], if parts == 2 { xd[at + 1] * w[n] } else { 0.0 })
                })
                .collect();
            for (re, im) in transform(&z, &dft) {
                out.push(re);
                out.push(im);
            }
        }
    }
    make(x.dtype(), vec![batch, frames, a.bins(), 2], out)
}

/// A scalar integer input (a size).
fn size_of(t: &Tensor, what: &str) -> OpResult<usize> {
    if t.len() != 1 || !t.dtype().is_int() {
        return Err(format!("{what} must be one integer, it is {} {:?}", t.dtype(), t.shape()));
    }
    let v = t.i64_at(0);
    if !(0..=1 << 28).contains(&v) {
        return Err(format!("{what} {v} must be in 0..=2^28"));
    }
    Ok(v as usize)
}

fn window(size: &Tensor, kind: WindowKind, periodic: bool, dtype: DType) -> OpResult<Tensor> {
    signal_check_output_type(dtype)?;
    let n = size_of(size, "size")?;
    let v = (0..n).map(|i| kind.value(i, n, periodic)).collect();
    make(dtype, vec![n], v)
}

/// The triangular mel filter bank, [dft_length / 2 + 1, num_mel_bins], as ONNX defines it
/// (band edges in whole spectrogram bins).
fn mel_weight_matrix(ins: &[&Tensor], dtype: DType) -> OpResult<Tensor> {
    signal_check_output_type(dtype)?;
    let mel_bins = size_of(ins[0], "num_mel_bins")?;
    let dft_length = size_of(ins[1], "dft_length")?;
    let sample_rate = size_of(ins[2], "sample_rate")?;
    if sample_rate == 0 {
        return Err("sample_rate must be >= 1".into());
    }
    let edge = |t: &Tensor, what: &str| -> OpResult<f64> {
        if t.len() != 1 || !t.dtype().is_float() {
            return Err(format!("{what} must be one float, it is {} {:?}", t.dtype(), t.shape()));
        }
        Ok(t.f64_at(0))
    };
    let (lower, upper) = (edge(ins[3], "lower_edge_hertz")?, edge(ins[4], "upper_edge_hertz")?);
    let spectrogram_bins = dft_length / 2 + 1;
    if spectrogram_bins.checked_mul(mel_bins).is_none_or(|n| n > 1 << 28) {
        return Err(format!("a [{spectrogram_bins}, {mel_bins}] filter bank is too large"));
    }
    // Mel scale of the edges (the logarithm in the edges' own precision, as ONNX's reference).
    let to_mel = |hz: f64| 2595.0 * ((hz as f32 / 700.0).ln_1p() as f64) / std::f64::consts::LN_10;
    let (low_mel, high_mel) = (to_mel(lower), to_mel(upper));
    let step = (high_mel - low_mel) / (mel_bins + 2) as f64;
    let bin_of = |i: usize| -> i64 {
        let hz = 700.0 * ((i as f64 * step + low_mel) / 2595.0 * std::f64::consts::LN_10).exp_m1();
        (((dft_length + 1) as f64 * hz) / sample_rate as f64).floor() as i64
    };
    let edges: Vec<i64> = (0..mel_bins + 2).map(bin_of).collect();
    let mut out = vec![0.0; spectrogram_bins * mel_bins];
    let mut put = |j: i64, i: usize, v: f64| -> OpResult<()> {
        if j < 0 || j as usize >= spectrogram_bins {
            return Err(format!(
                "mel band {i} reaches spectrogram bin {j}, outside 0..{spectrogram_bins}; check the edge frequencies against the sample rate"
            ));
        }
        out[j as usize * mel_bins + i] = v;
        Ok(())
    };
    for i in 0..mel_bins {
        let (lo, center, hi) = (edges[i], edges[i + 1], edges[i + 2]);
        if center == lo {
            put(center, i, 1.0)?;
        } else {
            for j in lo..=center {
                put(j, i, (j - lo) as f64 / (center - lo) as f64)?;
            }
        }
        if hi > center {
            for j in center..hi {
                put(j, i, (hi - j) as f64 / (hi - center) as f64)?;
            }
        }
    }
    make(dtype, vec![spectrogram_bins, mel_bins], out)
}

/// Determinant of each [M, M] matrix over the last two axes: LU with partial pivoting.
fn det(x: &Tensor) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 2 || s[s.len() - 1] != s[s.len() - 2] {
        return Err(format!("input must be square matrices [..., M, M], has shape {s:?}"));
    }
    let m = s[s.len() - 1];
    let xd = floats(x, "input")?;
    let count: usize = s[..s.len() - 2].iter().product();
    let out = (0..count).map(|b| lu_det(&mut xd[b * m * m..(b + 1) * m * m].to_vec(), m)).collect();
    make(x.dtype(), s[..s.len() - 2].to_vec(), out)
}

/// Determinant of a row-major m x m matrix (destroyed): Gaussian elimination with the
/// largest pivot of each column.
pub(crate) fn lu_det(a: &mut [f64], m: usize) -> f64 {
    let mut d = 1.0;
    for col in 0..m {
        let pivot = (col..m).max_by(|&i, &j| a[i * m + col].abs().total_cmp(&a[j * m + col].abs())).unwrap_or(col);
        if a[pivot * m + col] == 0.0 {
            return 0.0;
        }
        if pivot != col {
            for k in 0..m {
                a.swap(pivot * m + k, col * m + k);
            }
            d = -d;
        }
        let p = a[col * m + col];
        d *= p;
        for r in col + 1..m {
            let f = a[r * m + col] / p;
            for k in col..m {
                a[r * m + k] -= f * a[col * m + k];
            }
        }
    }
    d
}

/// Linear attention, token by token: per key/value head the state S [dk, dv] decays by
/// exp(g_t) (gated), takes k_t (x) v'_t with v'_t = beta_t (v_t - S^T k_t) (delta) or v_t,
/// and each query head of its group reads scale * q_t^T S.
fn linear_attention(ins: &[&Tensor], a: &LinearAttentionAttrs) -> OpResult<Vec<Tensor>> {
    let want = 4 + a.gated as usize + a.delta as usize;
    if ins.len() != want {
        return Err(format!("takes {want} inputs, got {}", ins.len()));
    }
    let (qs, vs) = (ins[0].shape(), ins[2].shape());
    if qs.len() != 3 || vs.len() != 3 || a.kv_heads == 0 || !a.q_heads.is_multiple_of(a.kv_heads) {
        return Err(format!("query {qs:?} and value {vs:?} must be [B, T, heads * size]"));
    }
    let (b, t) = (qs[0], qs[1]);
    let (hq, hk) = (a.q_heads, a.kv_heads);
    let (dk, dv) = (qs[2] / hq, vs[2] / hk);
    let group = hq / hk;
    let (q, k, v) = (floats(ins[0], "query")?, floats(ins[1], "key")?, floats(ins[2], "value")?);
    let mut state = floats(ins[3], "state")?;
    if state.len() != b * hk * dk * dv || k.len() != b * t * hk * dk {
        return Err("the key or state does not match the heads".into());
    }
    let decay = if a.gated { Some((floats(ins[4], "decay")?, ins[4].shape()[2])) } else { None };
    let beta = if a.delta { Some((floats(ins[want - 1], "beta")?, ins[want - 1].shape()[2])) } else { None };
    let scale = a.scale as f64;
    let mut out = vec![0.0; b * t * hq * dv];
    for bi in 0..b {
        for h in 0..hk {
            let s = &mut state[(bi * hk + h) * dk * dv..(bi * hk + h + 1) * dk * dv];
            for ti in 0..t {
                let row = bi * t + ti;
                let kt = &k[(row * hk + h) * dk..(row * hk + h + 1) * dk];
                if let Some((g, width)) = &decay {
                    for d in 0..dk {
                        let gd = if *width == hk { g[row * hk + h] } else { g[(row * hk + h) * dk + d] };
                        for m in 0..dv {
                            s[d * dv + m] *= gd.exp();
                        }
                    }
                }
                let mut vt: Vec<f64> = v[(row * hk + h) * dv..(row * hk + h + 1) * dv].to_vec();
                if let Some((be, width)) = &beta {
                    let bt = if *width == 1 { be[row] } else { be[row * hk + h] };
                    for (m, vm) in vt.iter_mut().enumerate() {
                        let retrieved: f64 = (0..dk).map(|d| s[d * dv + m] * kt[d]).sum();
                        *vm = bt * (*vm - retrieved);
                    }
                }
                for d in 0..dk {
                    for m in 0..dv {
                        s[d * dv + m] += kt[d] * vt[m];
                    }
                }
                for g in 0..group {
                    let head = h * group + g;
                    let qt = &q[(row * hq + head) * dk..(row * hq + head + 1) * dk];
                    for m in 0..dv {
                        let o: f64 = (0..dk).map(|d| qt[d] * s[d * dv + m]).sum();
                        out[(row * hq + head) * dv + m] = scale * o;
                    }
                }
            }
        }
    }
    Ok(vec![make(ins[0].dtype(), vec![b, t, hq * dv], out)?, make(ins[3].dtype(), vec![b, hk, dk, dv], state)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::new(shape, v).unwrap()
    }

    #[test]
    fn dft_of_an_impulse_is_flat_and_inverse_returns_the_signal() {
        let x = t(vec![1, 4, 1], vec![1.0, 0.0, 0.0, 0.0]);
        let a = DftAttrs { axis: 1, length: 4, inverse: false, onesided: false };
        let y = dft(&x, &a).unwrap();
        assert_eq!(y.shape(), [1, 4, 2]);
        assert_eq!(y.to_f32s(), vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        // A ramp there and back.
        let x = t(vec![1, 5, 1], vec![1.0, 2.0, -3.0, 0.5, 4.0]);
        let a = DftAttrs { axis: 1, length: 5, inverse: false, onesided: false };
        let spec = dft(&x, &a).unwrap();
        let back = dft(&spec, &DftAttrs { inverse: true, ..a.clone() }).unwrap();
        let b = back.to_f32s();
        for n in 0..5 {
            assert!((b[2 * n] - x.to_f32s()[n]).abs() < 1e-5 && b[2 * n + 1].abs() < 1e-5, "{b:?}");
        }
        // The one-sided spectrum's inverse is the real signal again (odd and even lengths).
        for len in [5, 6] {
            let x = t(vec![1, len, 1], (0..len).map(|i| (i as f32 * 0.7).sin() + 0.1).collect());
            let a = DftAttrs { axis: 1, length: len, inverse: false, onesided: true };
            let half = dft(&x, &a).unwrap();
            assert_eq!(half.shape(), [1, len / 2 + 1, 2]);
            let back = dft(&half, &DftAttrs { inverse: true, ..a }).unwrap();
            assert_eq!(back.shape(), [1, len, 1]);
            for (g, w) in back.to_f32s().iter().zip(x.to_f32s()) {
                assert!((g - w).abs() < 1e-5, "{g} vs {w}");
            }
        }
    }

    #[test]
    fn determinants_pivot_and_batch() {
        // Needs a row swap (zero first pivot): det = -(1*1 - 0) ... of [[0, 1], [1, 0]] = -1.
        let x = t(vec![2, 2, 2], vec![0.0, 1.0, 1.0, 0.0, 2.0, 1.0, 4.0, 3.0]);
        assert_eq!(det(&x).unwrap().to_f32s(), vec![-1.0, 2.0]);
        let singular = t(vec![3, 3], vec![1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 1.0, 1.0]);
        assert_eq!(det(&singular).unwrap().to_f32s(), vec![0.0]);
    }

    #[test]
    fn windows_match_their_formulas() {
        let size = Tensor::from_i64(DType::I64, vec![], vec![4]).unwrap();
        let hann = window(&size, WindowKind::Hann, true, DType::F32).unwrap().to_f32s();
        assert!(hann.iter().zip([0.0, 0.5, 1.0, 0.5]).all(|(g, w)| (g - w).abs() < 1e-6), "{hann:?}");
        let sym = window(&size, WindowKind::Hann, false, DType::F32).unwrap().to_f32s();
        assert!(sym.iter().zip([0.0, 0.75, 0.75, 0.0]).all(|(g, w)| (g - w).abs() < 1e-6), "{sym:?}");
    }
}
