//! Einsum, built from Transpose, Reshape, Slice, Expand, ReduceSum and MatMul.
//!
//! The equation is parsed into one label per axis (an ellipsis stands for the broadcast
//! axes, right-aligned across the inputs; without `->` the output is the ellipsis axes, then
//! the labels used once, in ASCII order, as numpy does). Each input first loses its repeated
//! labels (the diagonal: the two axes moved last, merged, and every (n + 1)-th element kept)
//! and the labels nobody else needs (summed). Inputs are then combined left to right: the
//! labels both hold and need later are batch axes, those both hold and no one needs are
//! contracted, the rest are kept, so each pair is one batched matrix product [batch, M, K] x
//! [batch, K, N] (size-1 axes broadcast against the other operand first). A last transpose
//! puts the labels in the output's order.

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{Op, ReduceKind};

/// An axis label: a letter's code, or `ELLIPSIS + j` for broadcast axis j.
type Label = u32;
const ELLIPSIS: Label = 1000;

/// A value with one label per axis.
struct Term {
    v: V,
    labels: Vec<Label>,
}

/// The labels of one side of the equation: letters and at most one ellipsis (its position).
fn parse_term(cx: &Ctx, term: &str) -> Result<(Vec<Label>, Option<usize>)> {
    let mut labels = vec![];
    let mut ellipsis = None;
    let mut rest = term;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if ellipsis.is_some() {
                return Err(cx.err(format!("'{term}' has more than one ellipsis")));
            }
            ellipsis = Some(labels.len());
            rest = r;
            continue;
        }
        let c = rest.chars().next().expect("not empty");
        if !c.is_ascii_alphabetic() {
            return Err(cx.err(format!("'{c}' in '{term}' is not a label (labels are letters; '...' broadcasts)")));
        }
        labels.push(c as Label);
        rest = &rest[1..];
    }
    Ok((labels, ellipsis))
}

/// An input's labels with its ellipsis replaced by the broadcast axes it covers (the last
/// `rank - letters` of the `width` broadcast axes).
fn expand_term(cx: &Ctx, (labels, ellipsis): &(Vec<Label>, Option<usize>), rank: usize) -> Result<Vec<Label>> {
    match ellipsis {
        None if labels.len() != rank => {
            Err(cx.err(format!("a term has {} labels for an input of rank {rank}", labels.len())))
        }
        None => Ok(labels.clone()),
        Some(at) => {
            let covered = rank
                .checked_sub(labels.len())
                .ok_or_else(|| cx.err(format!("a term has {} labels for an input of rank {rank}", labels.len())))?;
            let mut out = labels[..*at].to_vec();
            out.extend((0..covered).map(|j| ELLIPSIS + j as Label));
            out.extend_from_slice(&labels[*at..]);
            Ok(out)
        }
    }
}

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let equation: String = cx.attrs.s("equation", "").chars().filter(|c| !c.is_whitespace()).collect();
    let inputs = cx.present();
    if inputs.is_empty() {
        return Err(cx.err("takes at least one input"));
    }
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation.as_str(), None),
    };
    let sides: Vec<&str> = lhs.split(',').collect();
    if sides.len() != inputs.len() {
        return Err(cx.err(format!(
            "equation '{equation}' has {} input terms for {} inputs",
            sides.len(),
            inputs.len()
        )));
    }
    let dt = cx.dtype(&inputs[0]);
    if inputs.iter().any(|v| cx.dtype(v) != dt) {
        return Err(cx.err("every input must have the same type"));
    }
    let (terms, width) = labelled_inputs(cx, &sides, &inputs)?;
    let output = output_labels(cx, rhs, &terms, width)?;

    // Each input alone: diagonals, then the labels no one else needs summed.
    let mut diag = vec![];
    for t in terms {
        diag.push(diagonals(cx, t)?);
    }
    let all: Vec<Vec<Label>> = diag.iter().map(|t| t.labels.clone()).collect();
    let mut terms = vec![];
    for (k, t) in diag.into_iter().enumerate() {
        let keep: Vec<Label> = t
            .labels
            .iter()
            .copied()
            .filter(|l| output.contains(l) || all.iter().enumerate().any(|(j, ls)| j != k && ls.contains(l)))
            .collect();
        terms.push(sum_out(cx, t, &keep)?);
    }

    // Pairs, left to right.
    let mut acc = terms.remove(0);
    for (k, t) in terms.into_iter().enumerate() {
        let later: Vec<Label> = all[k + 2..].iter().flatten().copied().chain(output.iter().copied()).collect();
        acc = combine(cx, acc, t, &later)?;
    }
    let acc = sum_out(cx, acc, &output)?;
    let perm = output
        .iter()
        .map(|l| acc.labels.iter().position(|m| m == l))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| cx.err("an output label was lost while building the products (a bug)"))?;
    let y = transpose(cx, acc.v, perm)?;
    cx.set(0, y);
    Ok(())
}

/// Each input with one label per axis; also the number of broadcast axes. Broadcast axes are
/// numbered from the right: an input covering `e` of `width` of them holds the last `e`.
fn labelled_inputs(cx: &Ctx, sides: &[&str], inputs: &[V]) -> Result<(Vec<Term>, usize)> {
    let parsed: Vec<_> = sides.iter().map(|s| parse_term(cx, s)).collect::<Result<_>>()?;
    let covered: Vec<usize> = parsed
        .iter()
        .zip(inputs)
        .map(|((l, e), v)| if e.is_some() { cx.rank(v).saturating_sub(l.len()) } else { 0 })
        .collect();
    let width = covered.iter().copied().max().unwrap_or(0);
    let mut terms = vec![];
    for ((p, v), &e) in parsed.iter().zip(inputs).zip(&covered) {
        let mut labels = expand_term(cx, p, cx.rank(v))?;
        for l in labels.iter_mut().filter(|l| **l >= ELLIPSIS) {
            *l += (width - e) as Label;
        }
        terms.push(Term { v: v.clone(), labels });
    }
    Ok((terms, width))
}

/// The output's labels: as written after `->` (the ellipsis standing for the `width`
/// broadcast axes), or numpy's implicit output (the broadcast axes, then the labels used
/// once, in ASCII order).
fn output_labels(cx: &Ctx, rhs: Option<&str>, terms: &[Term], width: usize) -> Result<Vec<Label>> {
    let broadcast = (0..width).map(|j| ELLIPSIS + j as Label);
    let Some(r) = rhs else {
        let count = |l: Label| terms.iter().map(|t| t.labels.iter().filter(|&&m| m == l).count()).sum::<usize>();
        let mut once: Vec<Label> =
            terms.iter().flat_map(|t| t.labels.iter().copied()).filter(|&l| l < ELLIPSIS && count(l) == 1).collect();
        once.sort_unstable();
        return Ok(broadcast.chain(once).collect());
    };
    let (mut labels, ellipsis) = parse_term(cx, r)?;
    match ellipsis {
        Some(at) => {
            labels.splice(at..at, broadcast);
        }
        None if width > 0 => {
            return Err(cx.err(format!(
                "the output '{r}' has no '...' for the inputs' broadcast axes; add it (as numpy requires)"
            )));
        }
        None => {}
    }
    for l in &labels {
        if !terms.iter().any(|t| t.labels.contains(l)) {
            return Err(cx.err(format!("output label '{}' is in no input", label_name(*l))));
        }
    }
    let mut seen = labels.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != labels.len() {
        return Err(cx.err(format!("the output '{r}' repeats a label")));
    }
    Ok(labels)
}

/// A label as the equation writes it.
fn label_name(l: Label) -> String {
    if l >= ELLIPSIS { "...".into() } else { char::from_u32(l).map_or("?".into(), String::from) }
}

/// A term without repeated labels: for each repeat, the diagonal of the two axes.
fn diagonals(cx: &mut Ctx, mut t: Term) -> Result<Term> {
    while let Some((p, q)) = first_repeat(&t.labels) {
        let shape = cx.shape(&t.v);
        if shape[p] != shape[q] {
            return Err(cx.err(format!(
                "label '{}' stands for axes of sizes {} and {}; a repeated label takes a diagonal of equal sizes",
                label_name(t.labels[p]),
                shape[p],
                shape[q]
            )));
        }
        let n = shape[p];
        let rest: Vec<usize> = (0..shape.len()).filter(|&i| i != p && i != q).collect();
        let perm: Vec<usize> = rest.iter().copied().chain([p, q]).collect();
        let moved = transpose(cx, t.v, perm)?;
        let mut merged: Vec<usize> = rest.iter().map(|&i| shape[i]).collect();
        merged.push(n * n);
        let flat = cx.add1(Op::Reshape { shape: merged.clone() }, &[moved])?;
        let axis = merged.len() - 1;
        let slice =
            Op::Slice { axes: vec![axis], starts: vec![0], ends: vec![(n * n) as i64], steps: vec![n as i64 + 1] };
        t.v = cx.add1(slice, &[flat])?;
        let label = t.labels[p];
        t.labels = rest.iter().map(|&i| t.labels[i]).chain([label]).collect();
    }
    Ok(t)
}

fn first_repeat(labels: &[Label]) -> Option<(usize, usize)> {
    (0..labels.len()).find_map(|p| (p + 1..labels.len()).find(|&q| labels[q] == labels[p]).map(|q| (p, q)))
}

fn transpose(cx: &mut Ctx, v: V, perm: Vec<usize>) -> Result<V> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) { Ok(v) } else { cx.add1(Op::Transpose { perm }, &[v]) }
}

/// Sums the axes whose labels are not in `keep`.
fn sum_out(cx: &mut Ctx, t: Term, keep: &[Label]) -> Result<Term> {
    let axes: Vec<usize> = (0..t.labels.len()).filter(|&i| !keep.contains(&t.labels[i])).collect();
    if axes.is_empty() {
        return Ok(t);
    }
    let labels = t.labels.iter().copied().filter(|l| keep.contains(l)).collect();
    let v = cx.add1(Op::Reduce { kind: ReduceKind::Sum, axes, keepdims: false }, &[t.v])?;
    Ok(Term { v, labels })
}

/// Broadcasts the size-1 axes of `t` whose label has size `n > 1` in `sizes`.
fn broadcast_to(cx: &mut Ctx, t: Term, size_of: impl Fn(Label) -> Option<usize>) -> Result<Term> {
    let shape = cx.shape(&t.v);
    let target: Vec<usize> =
        t.labels.iter().zip(&shape).map(|(&l, &d)| if d == 1 { size_of(l).unwrap_or(1) } else { d }).collect();
    if target == shape {
        return Ok(t);
    }
    let v = cx.add1(Op::Expand { shape: target }, &[t.v])?;
    Ok(Term { v, labels: t.labels })
}

/// The product of two terms summed over the labels both hold and `later` does not need,
/// as one batched matrix product: [batch, a only, shared] x [batch, shared, b only].
fn combine(cx: &mut Ctx, a: Term, b: Term, later: &[Label]) -> Result<Term> {
    // Labels only one side holds and nobody needs are summed first.
    let a_keep: Vec<Label> = a.labels.iter().copied().filter(|l| later.contains(l) || b.labels.contains(l)).collect();
    let b_keep: Vec<Label> = b.labels.iter().copied().filter(|l| later.contains(l) || a.labels.contains(l)).collect();
    let (a, b) = (sum_out(cx, a, &a_keep)?, sum_out(cx, b, &b_keep)?);
    let (sa, sb) = (cx.shape(&a.v), cx.shape(&b.v));
    let size = |labels: &[Label], shape: &[usize], l: Label| labels.iter().position(|&m| m == l).map(|i| shape[i]);
    for (i, &l) in a.labels.iter().enumerate() {
        if let Some(d) = size(&b.labels, &sb, l)
            && d != sa[i]
            && d != 1
            && sa[i] != 1
        {
            return Err(cx.err(format!("label '{}' has sizes {} and {} in two inputs", label_name(l), sa[i], d)));
        }
    }
    let (al, bl) = (a.labels.clone(), b.labels.clone());
    let a = broadcast_to(cx, a, |l| size(&bl, &sb, l))?;
    let b = broadcast_to(cx, b, |l| size(&al, &sa, l))?;
    let (sa, sb) = (cx.shape(&a.v), cx.shape(&b.v));
    let batch: Vec<Label> = al.iter().copied().filter(|l| bl.contains(l) && later.contains(l)).collect();
    let shared: Vec<Label> = al.iter().copied().filter(|l| bl.contains(l) && !later.contains(l)).collect();
    let a_only: Vec<Label> = al.iter().copied().filter(|l| !bl.contains(l)).collect();
    let b_only: Vec<Label> = bl.iter().copied().filter(|l| !al.contains(l)).collect();
    let pos = |labels: &[Label], l: &Label| labels.iter().position(|m| m == l).expect("label present");
    let dims = |labels: &[Label], shape: &[usize], of: &[Label]| -> Vec<usize> {
        of.iter().map(|l| shape[pos(labels, l)]).collect()
    };
    let (db, dm, dk, dn) =
        (dims(&al, &sa, &batch), dims(&al, &sa, &a_only), dims(&al, &sa, &shared), dims(&bl, &sb, &b_only));
    let prod = |d: &[usize]| d.iter().product::<usize>();
    let perm_a: Vec<usize> = batch.iter().chain(&a_only).chain(&shared).map(|l| pos(&al, l)).collect();
    let perm_b: Vec<usize> = batch.iter().chain(&shared).chain(&b_only).map(|l| pos(&bl, l)).collect();
    let ta = transpose(cx, a.v, perm_a)?;
    let tb = transpose(cx, b.v, perm_b)?;
    let ma = cx.add1(Op::Reshape { shape: vec![prod(&db), prod(&dm), prod(&dk)] }, &[ta])?;
    let mb = cx.add1(Op::Reshape { shape: vec![prod(&db), prod(&dk), prod(&dn)] }, &[tb])?;
    let p = cx.add1(Op::MatMul { activation: None }, &[ma, mb])?;
    let shape: Vec<usize> = db.iter().chain(&dm).chain(&dn).copied().collect();
    let v = cx.add1(Op::Reshape { shape }, &[p])?;
    Ok(Term { v, labels: batch.into_iter().chain(a_only).chain(b_only).collect() })
}
