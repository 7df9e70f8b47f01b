//! Matrix products: Gemm and batched MatMul on the 4x4-tiled matmul kernel. A constant B is
//! packed at compile time (split into column chunks when it exceeds a storage binding); an
//! activation B is packed by a `pack_b` dispatch.

use super::{Buf, Ctx, Words, act_of, div_up, node_err};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::{GemmAttrs, Op, broadcast};

/// A product with a constant B: sizes, A strides, scaling, bias broadcasting and activation.
#[derive(Clone, Copy)]
struct Dense {
    rows: usize,
    kdim: usize,
    n: usize,
    sam: usize,
    sak: usize,
    trans_b: bool,
    alpha: f32,
    beta: f32,
    has_bias: bool,
    c_sm: usize,
    c_sn: usize,
    act: u32,
    fa: f32,
    fb: f32,
}

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    match &node.op {
        Op::Gemm(a) => gemm(cx, ni, node, a),
        Op::MatMul { activation } => matmul(cx, ni, node, *activation),
        _ => unreachable!("matmul family"),
    }
}

/// Packs B [mats][K][N] (or its per-matrix transpose) into vec4 rows.
fn pack_const_b(cx: &mut Ctx, name: String, data: &[f32], mats: usize, kdim: usize, n: usize, trans: bool) -> Buf {
    let nq = div_up(n, 4);
    let mut packed = vec![0.0f32; mats * kdim * nq * 4];
    for mat in 0..mats {
        for kk in 0..kdim {
            for j in 0..n {
                let src = if trans { mat * n * kdim + j * kdim + kk } else { mat * kdim * n + kk * n + j };
                packed[(mat * kdim + kk) * nq * 4 + j] = data[src];
            }
        }
    }
    cx.constant(name, packed)
}

/// A `pack_b` dispatch writing an activation B ([mats][K][N], strides per K and N) into a
/// packed scratch buffer.
#[allow(clippy::too_many_arguments)]
fn pack_activation_b(
    cx: &mut Ctx,
    ni: usize,
    node: &Node,
    src: Buf,
    mats: usize,
    kdim: usize,
    n: usize,
    s_k: usize,
    s_n: usize,
) -> Buf {
    let nq = div_up(n, 4);
    let scratch = cx.scratch(format!("{}.packed_b", node.name), (mats * kdim * nq * 16) as u64);
    let items = mats * kdim * nq;
    let mut p = Words::new();
    p.u(0, kdim).u(1, n).u(2, nq).u(3, s_k).u(4, s_n).u(5, kdim * n).u(6, items);
    let kernel = Kernel::new(Family::Matmul, "pack_b", &[("WG", cx.wg as u32)]);
    let groups = cx.groups(items);
    cx.push(ni, kernel, vec![(7, scratch), (2, src)], groups, p.done());
    scratch
}

/// C of a Gemm broadcast to [M, N]: strides of a row and of a column (0 where it broadcasts).
fn c_strides(shape: &[usize]) -> (usize, usize) {
    let (rows, cols) = match shape.len() {
        0 => (1, 1),
        1 => (1, shape[0]),
        _ => (shape[shape.len() - 2], shape[shape.len() - 1]),
    };
    (if rows == 1 { 0 } else { cols }, usize::from(cols != 1))
}

fn gemm(cx: &mut Ctx, ni: usize, node: &Node, a: &GemmAttrs) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let sa = cx.shape(x);
    let sb = cx.shape(node.inputs[1]);
    let (m, kdim) = if a.trans_a { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
    let (sam, sak) = if a.trans_a { (1, m) } else { (kdim, 1) };
    let n = cx.shape(y)[1];
    let (act, fa, fb) = act_of(a.activation);
    let xb = cx.buf(node, x)?;
    let (cbuf, c_sm, c_sn) = match node.inputs.get(2) {
        Some(&cv) => {
            let (sm, sn) = c_strides(&cx.shape(cv));
            (Some(cx.buf(node, cv)?), sm, sn)
        }
        None => (None, 0, 0),
    };
    let b_const = cx.g.value(node.inputs[1]).constant().cloned();
    if cx.naive {
        let Some(bt) = &b_const else {
            return Err(node_err(node, "the naive baseline kernel needs a constant B".into()));
        };
        if cbuf.is_some() && (c_sm != 0 || a.beta != 1.0) || a.alpha != 1.0 || a.trans_a {
            return Err(node_err(
                node,
                "the naive baseline kernel only supports alpha = beta = 1, no transposed A and a per-column C".into(),
            ));
        }
        let raw = cx.constant(format!("{}.b", node.name), bt.to_f32s());
        let bias = match cbuf {
            Some(b) if c_sn == 1 => b,
            _ => cx.zeros(format!("{}.bias", node.name), n),
        };
        let (sbk, sbn) = if a.trans_b { (1, kdim) } else { (n, 1) };
        let kernel = Kernel::new(Family::Naive, "naive_matmul", &[("ACT", act), ("WG", cx.wg as u32)]);
        let items = m * n;
        let mut p = Words::new();
        p.u(0, m).u(1, n).u(2, kdim).u(3, kdim).u(4, 1).u(5, sbk).u(6, sbn).u(7, items);
        let groups = cx.groups(items);
        cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb), (5, raw), (4, bias)], groups, p.done());
        return Ok(());
    }
    let has_bias = cbuf.is_some();
    let cb = match cbuf {
        Some(b) => b,
        None => cx.zeros(format!("{}.c", node.name), 4),
    };
    match b_const {
        Some(bt) => {
            let dense = Dense {
                rows: m,
                kdim,
                n,
                sam,
                sak,
                trans_b: a.trans_b,
                alpha: a.alpha,
                beta: a.beta,
                has_bias,
                c_sm,
                c_sn,
                act,
                fa,
                fb,
            };
            push_dense(cx, ni, node, xb, &bt.to_f32s(), cb, dense);
        }
        None => {
            let src = cx.buf(node, node.inputs[1])?;
            let (s_k, s_n) = if a.trans_b { (1, sb[1]) } else { (sb[1], 1) };
            let bb = pack_activation_b(cx, ni, node, src, 1, kdim, n, s_k, s_n);
            let (mq, nq) = (div_up(m, 4), div_up(n, 4));
            let items = mq * nq;
            let mut p = Words::new();
            p.u(0, m).u(1, n).u(2, kdim).u(3, nq).u(4, sam).u(5, sak).u(6, 1).u(7, 1).u(8, 1).u(9, 1);
            p.f(18, a.alpha).f(19, a.beta).u(20, has_bias as usize).u(21, c_sm).u(22, c_sn);
            p.f(27, fa).f(28, fb).u(29, items).u(30, mq).u(31, n).u(32, 0);
            let kernel = Kernel::new(Family::Matmul, "matmul", &[("ACT", act), ("WG", cx.wg as u32)]);
            let groups = cx.groups(items);
            cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb), (3, bb), (4, cb)], groups, p.done());
        }
    }
    Ok(())
}

/// A product with a constant 2-D B ([K, N], or [N, K] when `trans_b`) as matmul dispatches
/// over column chunks, each chunk's packed B within the device's binding limit.
fn push_dense(cx: &mut Ctx, ni: usize, node: &Node, a: Buf, b: &[f32], c: Buf, d: Dense) {
    // Columns per chunk: a multiple of 4 whose packed rows fit one binding.
    let per_col = (d.kdim.max(1) * 4) as u64;
    let fit = ((cx.max_binding / per_col) as usize / 4 * 4).max(4);
    let chunks = d.n.div_ceil(fit).max(1);
    let kernel = Kernel::new(Family::Matmul, "matmul", &[("ACT", d.act), ("WG", cx.wg as u32)]);
    for ci in 0..chunks {
        let n0 = ci * fit;
        let w = fit.min(d.n - n0);
        // Columns n0..n0+w of B' = B or B^T, packed as [K][w].
        let cols: Vec<f32> = (0..d.kdim)
            .flat_map(|k| (n0..n0 + w).map(move |j| if d.trans_b { b[j * d.kdim + k] } else { b[k * d.n + j] }))
            .collect();
        let name = if chunks == 1 { format!("{}.packed_b", node.name) } else { format!("{}.packed_b{ci}", node.name) };
        let bb = pack_const_b(cx, name, &cols, 1, d.kdim, w, false);
        let m = d.rows;
        let (mq, nq) = (div_up(m, 4), div_up(w, 4));
        let items = mq * nq;
        let mut p = Words::new();
        p.u(0, m).u(1, w).u(2, d.kdim).u(3, nq).u(4, d.sam).u(5, d.sak).u(6, 1).u(7, 1).u(8, 1).u(9, 1);
        p.f(18, d.alpha).f(19, d.beta).u(20, d.has_bias as usize).u(21, d.c_sm).u(22, d.c_sn);
        p.f(27, d.fa).f(28, d.fb).u(29, items).u(30, mq).u(31, d.n).u(32, n0);
        let groups = cx.groups(items);
        cx.push(ni, kernel.clone(), vec![(1, Buf::Value(node.outputs[0])), (2, a), (3, bb), (4, c)], groups, p.done());
    }
}

fn matmul(cx: &mut Ctx, ni: usize, node: &Node, activation: Option<crate::ops::Activation>) -> Result<()> {
    let (av, bv, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let (act, fa, fb) = act_of(activation);
    // 1-D operands as numpy promotes them (the buffer layout is the same).
    let sa = {
        let s = cx.shape(av);
        if s.len() == 1 { vec![1, s[0]] } else { s }
    };
    let sb = {
        let s = cx.shape(bv);
        if s.len() == 1 { vec![s[0], 1] } else { s }
    };
    let (m, kdim, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
    let nq = div_up(n, 4);
    let b_const = cx.g.value(bv).constant().cloned();
    let ab = cx.buf(node, av)?;
    let zero = cx.zeros(format!("{}.c", node.name), 4);

    // Constant 2-D B: every leading dimension of A folds into the rows.
    if let (Some(bt), 2) = (&b_const, sb.len()) {
        let rows = sa[..sa.len() - 1].iter().product();
        let dense = Dense {
            rows,
            kdim,
            n,
            sam: kdim,
            sak: 1,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
            has_bias: false,
            c_sm: 0,
            c_sn: 0,
            act,
            fa,
            fb,
        };
        push_dense(cx, ni, node, ab, &bt.to_f32s(), zero, dense);
        return Ok(());
    }

    let out_b = broadcast(&sa[..sa.len() - 2], &sb[..sb.len() - 2]).map_err(|e| node_err(node, e))?;
    if out_b.len() > 4 {
        return Err(node_err(node, format!("{} batch dimensions; at most 4 are supported", out_b.len())));
    }
    let b_mats: usize = sb[..sb.len() - 2].iter().product();
    let bbuf = match &b_const {
        Some(bt) => pack_const_b(cx, format!("{}.packed_b", node.name), &bt.to_f32s(), b_mats, kdim, n, false),
        None => {
            let src = cx.buf(node, bv)?;
            pack_activation_b(cx, ni, node, src, b_mats, kdim, n, n, 1)
        }
    };
    // Per-batch-dim offsets of A (elements) and packed B (vec4s); 0 where broadcast.
    let offsets = |dims: &[usize], mat: usize| -> Vec<usize> {
        let off = out_b.len() - dims.len();
        let mut st = vec![0; out_b.len()];
        let mut acc = mat;
        for i in (0..dims.len()).rev() {
            st[off + i] = if dims[i] == 1 { 0 } else { acc };
            acc *= dims[i];
        }
        st
    };
    let a_st = offsets(&sa[..sa.len() - 2], m * kdim);
    let b_st = offsets(&sb[..sb.len() - 2], kdim * nq);
    let pad = 4 - out_b.len();
    let mut d4 = [1usize; 4];
    let (mut a4, mut b4) = ([0usize; 4], [0usize; 4]);
    d4[pad..].copy_from_slice(&out_b);
    a4[pad..].copy_from_slice(&a_st);
    b4[pad..].copy_from_slice(&b_st);
    let mats: usize = out_b.iter().product();
    let mq = div_up(m, 4);
    let items = mats * mq * nq;
    let mut p = Words::new();
    p.u(0, m).u(1, n).u(2, kdim).u(3, nq).u(4, kdim).u(5, 1).u(6, mats).u(7, d4[1]).u(8, d4[2]).u(9, d4[3]);
    for i in 0..4 {
        p.u(10 + i, a4[i]).u(14 + i, b4[i]);
    }
    p.f(18, 1.0).f(19, 0.0).f(27, fa).f(28, fb).u(29, items).u(30, mq).u(31, n).u(32, 0);
    let kernel = Kernel::new(Family::Matmul, "matmul", &[("ACT", act), ("WG", cx.wg as u32)]);
    let groups = cx.groups(items);
    cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, ab), (3, bbuf), (4, zero)], groups, p.done());
    Ok(())
}
