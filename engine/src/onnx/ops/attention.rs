//! Attention (opset 23 and later) built from matrix products, a softmax and elementwise
//! operations, as the operator's ONNX function body computes it: 3-D inputs split into
//! heads, a key/value cache concatenated (present_key/present_value), grouped-query heads
//! repeated, Q and K scaled by sqrt(scale), an optional softcap, the bias of a boolean or
//! additive mask, a causal mask (bottom-right aligned, offset by the cache), sliding windows
//! and key padding (`nonpad_kv_seqlen`), softmax (in `softmax_precision`), fully masked rows
//! zeroed, and the product with V; `qk_matmul_output` in any of its four modes.
//!
//! Masks, windows and padding are usually constants: the bias they make is folded when the
//! model is specialised, so the device runs the two products, the softmax and an add.
//!
//! RotaryEmbedding (opset 23) is built here too ([`rotary_embedding`]); LinearAttention
//! (opset 27) maps to the recurrence kernel of the signal family ([`linear_attention`]).

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{Activation, BinaryOp, Op, ReduceKind, SoftmaxKind};
use crate::tensor::{DType, Tensor};

fn reshape(cx: &mut Ctx, v: V, shape: Vec<usize>) -> Result<V> {
    cx.add1(Op::Reshape { shape }, &[v])
}

fn transpose(cx: &mut Ctx, v: V, perm: Vec<usize>) -> Result<V> {
    cx.add1(Op::Transpose { perm }, &[v])
}

/// A [rows, cols] constant of 0 where `allowed(i, j)` and -inf elsewhere.
fn bias_table(dtype: DType, rows: usize, cols: usize, allowed: impl Fn(i64, i64) -> bool) -> Result<Tensor> {
    let v = (0..rows * cols)
        .map(|k| if allowed((k / cols) as i64, (k % cols) as i64) { 0.0 } else { f64::NEG_INFINITY })
        .collect();
    Tensor::from_f64_as(dtype, vec![rows, cols], v)
}

/// [B, 1, rows, cols] of per-batch tables.
fn batched_bias(
    dtype: DType,
    offsets: &[i64],
    rows: usize,
    cols: usize,
    allowed: impl Fn(i64, i64, i64) -> bool,
) -> Result<Tensor> {
    let mut v = Vec::with_capacity(offsets.len() * rows * cols);
    for &o in offsets {
        for k in 0..rows * cols {
            v.push(if allowed((k / cols) as i64, (k % cols) as i64, o) { 0.0 } else { f64::NEG_INFINITY });
        }
    }
    Tensor::from_f64_as(dtype, vec![offsets.len(), 1, rows, cols], v)
}

/// Softmax over the last axis. Float16 and bfloat16 logits take the steps of the ONNX
/// definition one by one, each rounded to the type (x - max, exp, the sum, the division), as
/// the reference's 16-bit arithmetic does; wider types use the fused kernel (rounded once).
fn softmax_last(cx: &mut Ctx, logits: V) -> Result<V> {
    let axis = cx.rank(&logits) - 1;
    let dt = cx.dtype(&logits);
    if !matches!(dt, DType::F16 | DType::BF16) {
        return cx.add1(Op::Softmax { axis, kind: SoftmaxKind::Softmax }, &[logits]);
    }
    let max =
        cx.add1(Op::Reduce { kind: ReduceKind::Max, axes: vec![axis], keepdims: true }, std::slice::from_ref(&logits))?;
    // A row of -inf only (every key masked) subtracts 0, not -inf (no NaN).
    let masked = cx.add1(Op::IsInf { pos: false, neg: true }, std::slice::from_ref(&max))?;
    let zero = cx.constant(Tensor::scalar(dt, 0.0));
    let max = cx.add1(Op::Where, &[masked, zero, max])?;
    let shifted = cx.binary(BinaryOp::Sub, logits, max)?;
    let e = cx.add1(Op::Unary(Activation::Exp), &[shifted])?;
    let sum =
        cx.add1(Op::Reduce { kind: ReduceKind::Sum, axes: vec![axis], keepdims: true }, std::slice::from_ref(&e))?;
    cx.binary(BinaryOp::Div, e, sum)
}

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let (q, k, v) = (cx.need(0)?, cx.need(1)?, cx.need(2)?);
    let mask = cx.input(3);
    let (past_k, past_v) = (cx.input(4), cx.input(5));
    let nonpad = cx.ints(6, "nonpad_kv_seqlen")?;
    let dt = cx.dtype(&q);
    if !dt.is_float() {
        return Err(cx.err(format!("Q must be a float tensor, it is {dt}")));
    }
    let rank = cx.rank(&q);
    if rank != cx.rank(&k) || rank != cx.rank(&v) || !(rank == 3 || rank == 4) {
        return Err(cx.err("Q, K and V must all be 3-D or all 4-D"));
    }
    if past_k.is_some() != past_v.is_some() {
        return Err(cx.err("past_key and past_value must be given together"));
    }
    if nonpad.is_some() && past_k.is_some() {
        return Err(cx.err("nonpad_kv_seqlen cannot be combined with past_key/past_value"));
    }
    let attr_heads = |name: &str| cx.attrs.has(name).then(|| cx.attrs.i(name, 0));
    let (qh_attr, kvh_attr) = (attr_heads("q_num_heads"), attr_heads("kv_num_heads"));
    let batch = cx.shape(&q)[0];
    // Heads apart: [B, heads, S, head size].
    let (mut q, mut k, mut v) = (q, k, v);
    if rank == 3 {
        let (Some(qh), Some(kvh)) = (qh_attr, kvh_attr) else {
            return Err(cx.err("3-D inputs need the q_num_heads and kv_num_heads attributes"));
        };
        if qh <= 0 || kvh <= 0 {
            return Err(cx.err(format!("q_num_heads {qh} and kv_num_heads {kvh} must be positive")));
        }
        let split = |cx: &mut Ctx, t: V, heads: usize| -> Result<V> {
            let s = cx.shape(&t);
            if !s[2].is_multiple_of(heads) {
                return Err(cx.err(format!("hidden size {} is not a multiple of {heads} heads", s[2])));
            }
            let r = reshape(cx, t, vec![s[0], s[1], heads, s[2] / heads])?;
            transpose(cx, r, vec![0, 2, 1, 3])
        };
        q = split(cx, q, qh as usize)?;
        k = split(cx, k, kvh as usize)?;
        v = split(cx, v, kvh as usize)?;
    }
    let qs = cx.shape(&q);
    let head = qs[3];
    let scale = if cx.attrs.has("scale") { cx.attrs.f("scale", 1.0) as f64 } else { 1.0 / (head as f64).sqrt() };
    let sqrt_scale = cx.constant(Tensor::scalar(dt, scale.sqrt()));

    // The cache.
    if let Some(pk) = past_k.clone() {
        k = cx.add1(Op::Concat { axis: 2 }, &[pk, k])?;
    }
    if let Some(pv) = past_v {
        v = cx.add1(Op::Concat { axis: 2 }, &[pv, v])?;
    }
    cx.set(1, k.clone());
    cx.set(2, v.clone());
    let (sq, skv) = (qs[2], cx.shape(&k)[2]);
    let past_len = past_k.as_ref().map(|p| cx.shape(p)[2] as i64);

    // The additive bias [.., Sq, Skv] from the mask, causality, windows and padding.
    let neg_inf = cx.constant(Tensor::scalar(dt, f64::NEG_INFINITY));
    let zero = cx.constant(Tensor::scalar(dt, 0.0));
    let mut mask = mask;
    if let Some(m) = mask.clone() {
        let ms = cx.shape(&m);
        let last = *ms.last().unwrap_or(&0);
        if last < skv {
            // A shorter mask is padded with "not attended".
            let mut pads = vec![(0, 0); ms.len()];
            *pads.last_mut().expect("rank >= 1") = (0, skv - last);
            let fill = if cx.dtype(&m) == DType::Bool { 0.0 } else { f32::NEG_INFINITY };
            mask = Some(cx.add1(Op::Pad { pads, mode: crate::ops::PadMode::Constant(fill) }, &[m])?);
        }
    }
    let as_bias = |cx: &mut Ctx, m: V| -> Result<V> {
        if cx.dtype(&m) == DType::Bool { cx.add1(Op::Where, &[m, zero.clone(), neg_inf.clone()]) } else { Ok(m) }
    };
    let offsets: Option<Vec<i64>> = nonpad.as_ref().map(|n| n.iter().map(|&x| x - sq as i64).collect());
    let mut bias: Option<V> = None;
    if cx.attrs.i("is_causal", 0) != 0 {
        let base = match mask.clone() {
            Some(m) => as_bias(cx, m)?,
            None => cx.constant(Tensor::zeros_of(dt, vec![sq, skv])),
        };
        let causal = match &offsets {
            Some(o) => batched_bias(dt, o, sq, skv, |i, j, off| j <= i + off)?,
            None => {
                let off = past_len.unwrap_or(0);
                bias_table(dt, sq, skv, |i, j| j <= i + off)?
            }
        };
        let c = cx.constant(causal);
        bias = Some(cx.binary(BinaryOp::Add, base, c)?);
    } else if let Some(m) = mask.clone() {
        bias = Some(as_bias(cx, m)?);
    }
    let (left, right) = (cx.attrs.i("left_window_size", -1), cx.attrs.i("right_window_size", -1));
    if left >= 0 || right >= 0 {
        let allowed = |i: i64, j: i64, off: i64| {
            let d = i + off - j;
            (left < 0 || d <= left) && (right < 0 || -d <= right)
        };
        let window = match &offsets {
            Some(o) => batched_bias(dt, o, sq, skv, allowed)?,
            None => {
                let off = past_len.unwrap_or(0);
                bias_table(dt, sq, skv, |i, j| allowed(i, j, off))?
            }
        };
        let w = cx.constant(window);
        bias = Some(match bias {
            Some(b) => cx.binary(BinaryOp::Add, b, w)?,
            None => w,
        });
    }
    if let Some(n) = &nonpad {
        if n.len() != batch {
            return Err(cx.err(format!("nonpad_kv_seqlen has {} entries for a batch of {batch}", n.len())));
        }
        let mut vals = Vec::with_capacity(batch * skv);
        for &len in n {
            vals.extend((0..skv as i64).map(|j| if j < len { 0.0 } else { f64::NEG_INFINITY }));
        }
        let p = cx.constant(Tensor::from_f64_as(dt, vec![batch, 1, 1, skv], vals)?);
        bias = Some(match bias {
            Some(b) => cx.binary(BinaryOp::Add, b, p)?,
            None => p,
        });
    }

    // Grouped-query attention: each key/value head serves q_heads / kv_heads query heads.
    let qh = qs[1];
    let kvh = cx.shape(&k)[1];
    if qh != kvh {
        if !qh.is_multiple_of(kvh) || cx.shape(&v)[1] != kvh {
            return Err(cx.err(format!("{qh} query heads cannot share {kvh} key/value heads")));
        }
        let rep = qh / kvh;
        for t in [&mut k, &mut v] {
            let s = cx.shape(t);
            let r = reshape(cx, t.clone(), vec![s[0], s[1], 1, s[2], s[3]])?;
            let e = cx.add1(Op::Expand { shape: vec![s[0], s[1], rep, s[2], s[3]] }, &[r])?;
            *t = reshape(cx, e, vec![s[0], s[1] * rep, s[2], s[3]])?;
        }
    }

    // The scores.
    let qs_ = cx.binary(BinaryOp::Mul, q, sqrt_scale.clone())?;
    let ks_ = cx.binary(BinaryOp::Mul, k, sqrt_scale)?;
    let kt = transpose(cx, ks_, vec![0, 1, 3, 2])?;
    let mut qk = cx.add1(Op::MatMul { activation: None }, &[qs_, kt])?;
    if cx.attrs.has("softcap") {
        let c = cx.attrs.f("softcap", 0.0);
        if c > 0.0 {
            let cv = cx.constant(Tensor::scalar(dt, c as f64));
            let d = cx.binary(BinaryOp::Div, qk, cv.clone())?;
            let t = cx.add1(Op::Unary(Activation::Tanh), &[d])?;
            qk = cx.binary(BinaryOp::Mul, t, cv)?;
        }
    }
    let with_bias = match bias.clone() {
        Some(b) => cx.binary(BinaryOp::Add, qk.clone(), b)?,
        None => qk.clone(),
    };
    let mode = cx.attrs.i("qk_matmul_output_mode", 0);
    let mut qk_out = if mode == 2 { with_bias.clone() } else { qk };
    let precision = cx.attrs.has("softmax_precision").then(|| cx.attrs.i("softmax_precision", 1) as i32);
    let mut logits = with_bias;
    if let Some(code) = precision {
        let p =
            DType::from_onnx(code).ok_or_else(|| cx.err(format!("softmax_precision {code} is not a known type")))?;
        if p != dt {
            logits = cx.add1(Op::Cast { to: p }, &[logits])?;
        }
    }
    // A row with every key masked would softmax to NaN: its probabilities are 0.
    let mut probs = softmax_last(cx, logits)?;
    if let Some(b) = bias {
        let brank = cx.rank(&b);
        let row_max = cx.add1(Op::Reduce { kind: ReduceKind::Max, axes: vec![brank - 1], keepdims: true }, &[b])?;
        let masked = cx.add1(Op::IsInf { pos: false, neg: true }, &[row_max])?;
        let needed = match &masked {
            V::Const(t) => t.to_bools().iter().any(|&x| x),
            V::Act(_) => true,
        };
        if needed {
            let pz = cx.constant(Tensor::scalar(cx.dtype(&probs), 0.0));
            probs = cx.add1(Op::Where, &[masked, pz, probs])?;
        }
    }
    if cx.dtype(&probs) != dt {
        probs = cx.add1(Op::Cast { to: dt }, &[probs])?;
    }
    if mode == 3 {
        qk_out = probs.clone();
    }
    if cx.wants_output(3) {
        // Mode 1 (the product after softcap, without the mask) is mode 0's value.
        cx.set(3, qk_out);
    }
    let mut y = cx.add1(Op::MatMul { activation: None }, &[probs, v])?;
    if rank == 3 {
        let t = transpose(cx, y, vec![0, 2, 1, 3])?;
        let s = cx.shape(&t);
        y = reshape(cx, t, vec![s[0], s[1], s[2] * s[3]])?;
    }
    cx.set(0, y);
    Ok(())
}

/// A slice of the last axis.
fn last_axis_slice(cx: &mut Ctx, v: V, start: usize, end: usize, step: usize) -> Result<V> {
    let axis = cx.rank(&v) - 1;
    let op =
        Op::Slice { axes: vec![axis], starts: vec![start as i64], ends: vec![end as i64], steps: vec![step as i64] };
    cx.add1(op, &[v])
}

/// RotaryEmbedding (opset 23), built: the rotated part of each head (the first
/// `rotary_embedding_dim` values, halves or interleaved pairs) turned by the angles of the
/// cos/sin caches (rows picked by `position_ids`, a gather, when given; else caches already
/// [batch, sequence, dim / 2]), the rest passed through. 3-D inputs [batch, sequence,
/// hidden] are split into `num_heads` heads and joined back.
pub(super) fn rotary_embedding(cx: &mut Ctx) -> Result<()> {
    let (x, cos, sin) = (cx.need(0)?, cx.need(1)?, cx.need(2)?);
    let xs = cx.shape(&x);
    let dt = cx.dtype(&x);
    if !dt.is_float() {
        return Err(cx.err(format!("X must be a float tensor, it is {dt}")));
    }
    // Heads apart: [B, H, S, D] (4-D) or [B, S, H, D] (3-D, reshaped).
    let (work, seq_axis) = match xs.len() {
        4 => (x, 2),
        3 => {
            let heads = cx.attrs.i("num_heads", 0);
            if heads <= 0 || !xs[2].is_multiple_of(heads as usize) {
                return Err(cx.err(format!(
                    "a 3-D input needs num_heads (> 0, dividing the hidden size {}), got {heads}",
                    xs[2]
                )));
            }
            let h = heads as usize;
            (reshape(cx, x, vec![xs[0], xs[1], h, xs[2] / h])?, 1)
        }
        _ => return Err(cx.err(format!("X must be 3-D or 4-D, has shape {xs:?}"))),
    };
    let ws = cx.shape(&work);
    let head = ws[3];
    let rd = match cx.attrs.i("rotary_embedding_dim", 0) {
        0 => head,
        d if d > 0 && (d as usize) <= head && d % 2 == 0 => d as usize,
        d => return Err(cx.err(format!("rotary_embedding_dim {d} must be even and at most the head size {head}"))),
    };
    if !rd.is_multiple_of(2) {
        return Err(cx.err(format!("the rotated size {rd} must be even")));
    }
    let half = rd / 2;
    // The angles, [B, S, half], then shaped to broadcast over the heads.
    let pick = |cx: &mut Ctx, cache: V| -> Result<V> {
        match cx.input(3) {
            Some(pos) => cx.add1(Op::Gather { axis: 0 }, &[cache, pos]),
            None => Ok(cache),
        }
    };
    let (cos, sin) = (pick(cx, cos)?, pick(cx, sin)?);
    let cs = cx.shape(&cos);
    if cs.len() != 3 || cs[2] != half || cx.shape(&sin) != cs {
        return Err(cx.err(format!(
            "the caches must give [batch, sequence, {half}] angles (rows picked by position_ids when given); they \
             give cos {cs:?}, sin {:?}",
            cx.shape(&sin)
        )));
    }
    let interleaved = cx.attrs.i("interleaved", 0) != 0;
    let mut angle_shape = if seq_axis == 2 { vec![cs[0], 1, cs[1], half] } else { vec![cs[0], cs[1], 1, half] };
    if interleaved {
        angle_shape.push(1);
    }
    let cos = reshape(cx, cos, angle_shape.clone())?;
    let sin = reshape(cx, sin, angle_shape)?;

    let rotated = if rd == head { work.clone() } else { last_axis_slice(cx, work.clone(), 0, rd, 1)? };
    let (x1, x2, pairs) = if interleaved {
        // [.., half, 2]: the even and odd values of each pair.
        let mut ps = ws.clone();
        ps[3] = half;
        ps.push(2);
        let pairs = reshape(cx, rotated, ps)?;
        let x1 = last_axis_slice(cx, pairs.clone(), 0, 1, 1)?;
        let x2 = last_axis_slice(cx, pairs, 1, 2, 1)?;
        (x1, x2, true)
    } else {
        let x1 = last_axis_slice(cx, rotated.clone(), 0, half, 1)?;
        let x2 = last_axis_slice(cx, rotated, half, rd, 1)?;
        (x1, x2, false)
    };
    let c1 = cx.binary(BinaryOp::Mul, cos.clone(), x1.clone())?;
    let s2 = cx.binary(BinaryOp::Mul, sin.clone(), x2.clone())?;
    let real = cx.binary(BinaryOp::Sub, c1, s2)?;
    let s1 = cx.binary(BinaryOp::Mul, sin, x1)?;
    let c2 = cx.binary(BinaryOp::Mul, cos, x2)?;
    let imag = cx.binary(BinaryOp::Add, s1, c2)?;
    let last = cx.rank(&real) - 1;
    let mut turned = cx.add1(Op::Concat { axis: last }, &[real, imag])?;
    if pairs {
        let mut rs = ws.clone();
        rs[3] = rd;
        turned = reshape(cx, turned, rs)?;
    }
    let mut y = if rd == head {
        turned
    } else {
        let rest = last_axis_slice(cx, work, rd, head, 1)?;
        cx.add1(Op::Concat { axis: 3 }, &[turned, rest])?
    };
    if xs.len() == 3 {
        y = reshape(cx, y, xs)?;
    }
    cx.set(0, y);
    Ok(())
}

/// LinearAttention (opset 27): the recurrence of its update rule (linear, gated, delta,
/// gated_delta) as one device kernel over the sequence; an absent past state is zeros.
pub(super) fn linear_attention(cx: &mut Ctx) -> Result<()> {
    let (q, k, v) = (cx.need(0)?, cx.need(1)?, cx.need(2)?);
    let (past, decay, beta) = (cx.input(3), cx.input(4), cx.input(5));
    let heads = |name: &str| cx.attrs.has(name).then(|| cx.attrs.i(name, 0));
    let (Some(hq), Some(hk)) = (heads("q_num_heads"), heads("kv_num_heads")) else {
        return Err(cx.err("q_num_heads and kv_num_heads are required"));
    };
    if hq <= 0 || hk <= 0 || hq % hk != 0 {
        return Err(cx.err(format!("q_num_heads {hq} must be a positive multiple of kv_num_heads {hk}")));
    }
    let rule = cx.attrs.s("update_rule", "gated_delta");
    let (gated, delta) = match rule.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        other => return Err(cx.err(format!("update_rule '{other}' is not linear, gated, delta or gated_delta"))),
    };
    if gated != decay.is_some() {
        return Err(cx.err(format!("update_rule '{rule}' {} the decay input", if gated { "needs" } else { "forbids" })));
    }
    if delta != beta.is_some() {
        return Err(cx.err(format!("update_rule '{rule}' {} the beta input", if delta { "needs" } else { "forbids" })));
    }
    let (qs, vs) = (cx.shape(&q), cx.shape(&v));
    if qs.len() != 3 || vs.len() != 3 {
        return Err(cx.err(format!("query {qs:?} and value {vs:?} must be [B, T, heads * size]")));
    }
    let (hq, hk) = (hq as usize, hk as usize);
    let dk = qs[2] / hq;
    let dv = vs[2] / hk;
    let scale = match cx.attrs.f("scale", 0.0) {
        0.0 => 1.0 / (dk.max(1) as f32).sqrt(),
        s => s,
    };
    let dt = cx.dtype(&q);
    let past = match past {
        Some(p) => p,
        None => cx.constant(Tensor::zeros_of(dt, vec![qs[0], hk, dk, dv])),
    };
    let mut ins = vec![q, k, v, past];
    ins.extend(decay);
    ins.extend(beta);
    let attrs = crate::ops::LinearAttentionAttrs { q_heads: hq, kv_heads: hk, scale, gated, delta };
    let outs = cx.add(Op::LinearAttention(attrs), &ins)?;
    for (i, o) in outs.into_iter().enumerate() {
        cx.set(i, o);
    }
    Ok(())
}
