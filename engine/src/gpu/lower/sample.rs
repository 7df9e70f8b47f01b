//! Lowering of resampling and sampling at computed coordinates: Resize as one `resample`
//! pass per resampled axis (shrinking axes first), each output position of the axis a
//! weighted sum of input positions whose taps and weights are computed here into a constant
//! table (nearest, linear, cubic, antialias, exclude_outside and extrapolation alike;
//! `resample_nearest` moves words, for every element type); GridSample and RoiAlign as one
//! dispatch each, reading the grid, the regions and the batch indices from the data.
//!
//! The tables are computed from ONNX's definitions written out here in closed form (window
//! start, kernel at the distance to each tap), independently of the reference executor,
//! which follows ONNX's reference formulation; the kernel tests compare the two.

use super::{Buf, Class, Ctx, Words, class_of, istrides, node_err};
use crate::error::Result;
use crate::gpu::kernels::{Family, Kernel};
use crate::graph::Node;
use crate::ops::{
    CoordMode, GridMode, GridPadding, GridSampleAttrs, NearestMode, Op, ResizeAttrs, ResizeMode, RoiAlignAttrs,
};
use crate::tensor::numel;

pub(super) fn lower(cx: &mut Ctx, ni: usize, node: &Node) -> Result<()> {
    match &node.op {
        Op::Resize(a) => resize(cx, ni, node, a),
        Op::GridSample(a) => grid_sample(cx, ni, node, a),
        Op::RoiAlign(a) => roi_align(cx, ni, node, a),
        other => Err(node_err(node, format!("{} is not an operation of the sample family", other.name()))),
    }
}

// ---------------------------------------------------------------------------------------------
// Resize
// ---------------------------------------------------------------------------------------------

fn resize(cx: &mut Ctx, ni: usize, node: &Node, a: &ResizeAttrs) -> Result<()> {
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let shape = cx.shape(x);
    let nearest = matches!(a.mode, ResizeMode::Nearest(_));
    if !nearest && class_of(cx.dtype(x)) != Class::Float {
        return Err(node_err(node, "linear and cubic resizing need a float tensor".into()));
    }
    let mut axes = a.resized_axes(&shape);
    // Shrinking axes first: the later passes read fewer elements.
    let growth = |axis: usize| a.sizes[axis] as f64 / shape[axis].max(1) as f64;
    axes.sort_by(|&p, &q| growth(p).total_cmp(&growth(q)));
    let mut src = cx.buf(node, x)?;
    if axes.is_empty() {
        let st = istrides(&shape);
        return cx.copy(ni, node, Buf::Value(y), src, &shape, &st, &st, 0, 0);
    }
    let fill = fill_word(cx, node, a);
    let mut cur = shape.clone();
    for (k, &axis) in axes.iter().enumerate() {
        let (in_len, out_len) = (cur[axis], a.sizes[axis]);
        let mut next = cur.clone();
        next[axis] = out_len;
        let dst = if k + 1 == axes.len() {
            Buf::Value(y)
        } else {
            cx.scratch(format!("{}.axis{axis}", node.name), (numel(&next) * 4) as u64)
        };
        let rows = axis_rows(a, axis, in_len);
        let inner = numel(&cur[axis + 1..]);
        let items = numel(&next);
        let mut p = Words::new();
        p.u(0, items).u(1, in_len).u(2, out_len).u(3, inner);
        let (entry, words, bindings) = if nearest {
            p.u(4, fill as usize);
            let words = rows.iter().map(|r| r.taps.first().map_or(-1, |t| t.0 as i32) as u32).collect();
            ("resample_nearest", words, (4, 5))
        } else {
            let taps = rows.iter().map(|r| r.taps.len()).max().unwrap_or(0);
            p.u(4, taps);
            ("resample", table_words(&rows, taps, a.extrapolation), (1, 2))
        };
        let table = cx.words(format!("{}.axis{axis}.taps", node.name), words);
        let kernel = Kernel::new(Family::Sample, entry, &[("WG", cx.wg as u32)]);
        let groups = cx.groups(items);
        cx.push(ni, kernel, vec![(bindings.0, dst), (bindings.1, src), (3, table)], groups, p.done());
        src = dst;
        cur = next;
    }
    Ok(())
}

/// The output word where tf_crop_and_resize maps outside the input (nearest mode): the
/// extrapolation value in the element's device word.
fn fill_word(cx: &Ctx, node: &Node, a: &ResizeAttrs) -> u32 {
    let t = cx.dtype(node.inputs[0]);
    if class_of(t) == Class::Float {
        t.round_float(a.extrapolation).to_bits()
    } else {
        t.wrap(a.extrapolation as i64) as i32 as u32
    }
}

/// One output position of a resampled axis: its taps (input index, weight), none where it
/// lies outside the input (tf_crop_and_resize: the extrapolation value).
struct Row {
    taps: Vec<(usize, f64)>,
}

/// The table words of linear and cubic rows: per row a constant term (the extrapolation
/// value where the row has no taps, else 0), then `taps` (index, weight) pairs, index -1
/// where a row has fewer.
fn table_words(rows: &[Row], taps: usize, extrapolation: f32) -> Vec<u32> {
    let mut words = Vec::with_capacity(rows.len() * (1 + 2 * taps));
    for r in rows {
        let constant = if r.taps.is_empty() { extrapolation } else { 0.0 };
        words.push(constant.to_bits());
        for k in 0..taps {
            match r.taps.get(k) {
                Some(&(i, w)) => words.extend([i as u32, (w as f32).to_bits()]),
                None => words.extend([u32::MAX, 0]),
            }
        }
    }
    words
}

/// The rows of every output position of axis `axis` (input length `in_len`).
fn axis_rows(a: &ResizeAttrs, axis: usize, in_len: usize) -> Vec<Row> {
    let (out_len, scale) = (a.sizes[axis], a.scales[axis]);
    (0..out_len)
        .map(|o| {
            let x = input_coordinate(a, axis, o, in_len);
            let outside = a.coord == CoordMode::TfCropAndResize && !(0.0..=(in_len - 1) as f64).contains(&x);
            let taps = if outside {
                vec![]
            } else {
                match a.mode {
                    ResizeMode::Nearest(m) => vec![(nearest_tap(m, x, scale, in_len), 1.0)],
                    ResizeMode::Linear => filter_window(a, x, scale, in_len, 1.0, &|d| (1.0 - d.abs()).max(0.0)),
                    ResizeMode::Cubic { a: k } => filter_window(a, x, scale, in_len, 2.0, &|d| keys(d, k as f64)),
                }
            };
            Row { taps }
        })
        .collect()
}

/// Input coordinate of output position `o` of an axis (ONNX coordinate_transformation_mode;
/// the resized length in floating point is scale * input length).
fn input_coordinate(a: &ResizeAttrs, axis: usize, o: usize, in_len: usize) -> f64 {
    let (scale, out_len) = (a.scales[axis], a.sizes[axis]);
    let (o, n) = (o as f64, in_len as f64);
    let length_resized = scale * n;
    let half_pixel = (o + 0.5) / scale - 0.5;
    match a.coord {
        CoordMode::HalfPixel => half_pixel,
        CoordMode::PytorchHalfPixel if out_len > 1 => half_pixel,
        CoordMode::PytorchHalfPixel => 0.0,
        CoordMode::HalfPixelSymmetric => {
            let shift = n / 2.0 * (1.0 - out_len as f64 / length_resized);
            shift + (o + 0.5) / scale - 0.5
        }
        CoordMode::AlignCorners if out_len > 1 => o * (n - 1.0) / (length_resized - 1.0),
        CoordMode::AlignCorners => 0.0,
        CoordMode::Asymmetric => o / scale,
        CoordMode::TfHalfPixelForNn => (o + 0.5) / scale,
        CoordMode::TfCropAndResize => {
            let (start, end) = a.roi[axis];
            let from = start * (n - 1.0);
            if out_len > 1 {
                o * (end - start) * (n - 1.0) / (length_resized - 1.0) + from
            } else {
                (end - start) * (n - 1.0) / 2.0 + from
            }
        }
    }
}

/// The input index nearest coordinate `x`, clamped to the axis.
fn nearest_tap(mode: NearestMode, x: f64, scale: f64, in_len: usize) -> usize {
    let i = match mode {
        NearestMode::RoundPreferFloor => (x - 0.5).ceil(),
        NearestMode::RoundPreferCeil => (x + 0.5).floor(),
        NearestMode::Floor => x.floor(),
        NearestMode::Ceil => x.ceil(),
        NearestMode::Legacy if scale < 1.0 => x.ceil(),
        NearestMode::Legacy => x.floor(),
    };
    i.clamp(0.0, in_len as f64 - 1.0) as usize
}

/// Keys' cubic convolution kernel with coefficient `a` at distance `d`.
fn keys(d: f64, a: f64) -> f64 {
    let x = d.abs();
    if x <= 1.0 {
        (a + 2.0) * x.powi(3) - (a + 3.0) * x * x + 1.0
    } else if x < 2.0 {
        a * x.powi(3) - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
    } else {
        0.0
    }
}

/// The taps of a filter of half-width `support` (1 linear, 2 cubic) centred at `x`: a window
/// of 2 * ceil(support / s) indices whose first lies just past x - support / s (an exact index
/// counts as the end of the previous interval), weights `kernel((index - x) * s)` where `s` is
/// the scale when antialiasing a shrinking axis (the filter stretched by 1/s, weights
/// normalised), else 1. Then exclude_outside (weights outside the axis dropped, the rest
/// renormalised) and the edge (indices clamped).
fn filter_window(
    a: &ResizeAttrs,
    x: f64,
    scale: f64,
    in_len: usize,
    support: f64,
    kernel: &dyn Fn(f64) -> f64,
) -> Vec<(usize, f64)> {
    let s = if a.antialias { scale.min(1.0) } else { 1.0 };
    let half = (support / s).ceil() as i64;
    let left = if x.fract() == 0.0 { x as i64 - 1 } else { x.floor() as i64 };
    let first = left - half + 1;
    let mut taps: Vec<(i64, f64)> = (first..first + 2 * half).map(|i| (i, kernel((i as f64 - x) * s))).collect();
    if a.antialias {
        normalise(&mut taps);
    }
    if a.exclude_outside {
        for t in &mut taps {
            if t.0 < 0 || t.0 >= in_len as i64 {
                t.1 = 0.0;
            }
        }
        normalise(&mut taps);
    }
    taps.into_iter().map(|(i, w)| (i.clamp(0, in_len as i64 - 1) as usize, w)).collect()
}

/// Scales weights to a sum of 1 (a zero sum is left alone).
fn normalise(taps: &mut [(i64, f64)]) {
    let total: f64 = taps.iter().map(|t| t.1).sum();
    if total != 0.0 {
        taps.iter_mut().for_each(|t| t.1 /= total);
    }
}

// ---------------------------------------------------------------------------------------------
// GridSample, RoiAlign
// ---------------------------------------------------------------------------------------------

fn grid_sample(cx: &mut Ctx, ni: usize, node: &Node, a: &GridSampleAttrs) -> Result<()> {
    let (x, grid, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let xs = cx.shape(x);
    let r = xs.len() - 2;
    let items = cx.g.value(y).numel();
    let positions = numel(&cx.shape(grid)[1..=r]);
    let mut p = Words::new();
    p.u(0, items).u(1, xs[1]).u(2, r);
    for (k, &d) in xs[2..].iter().enumerate() {
        p.u(3 + k, d);
    }
    let padding = match a.padding {
        GridPadding::Zeros => 0,
        GridPadding::Border => 1,
        GridPadding::Reflection => 2,
    };
    p.u(6, positions).u(7, padding).u(8, a.align_corners as usize).u(9, numel(&xs[2..]));
    let mode = match a.mode {
        GridMode::Nearest => 0,
        GridMode::Linear => 1,
        GridMode::Cubic => 2,
    };
    let kernel = Kernel::new(Family::Sample, "grid_sample", &[("MODE", mode), ("WG", cx.wg as u32)]);
    let (xb, gb) = (cx.buf(node, x)?, cx.buf(node, grid)?);
    let groups = cx.groups(items);
    cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb), (6, gb)], groups, p.done());
    Ok(())
}

fn roi_align(cx: &mut Ctx, ni: usize, node: &Node, a: &RoiAlignAttrs) -> Result<()> {
    let (x, rois, indices, y) = (node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]);
    let xs = cx.shape(x);
    let items = cx.g.value(y).numel();
    let mut p = Words::new();
    p.u(0, items).u(1, xs[1]).u(2, xs[2]).u(3, xs[3]).u(4, a.output[0]).u(5, a.output[1]);
    p.u(6, a.sampling_ratio).f(7, a.spatial_scale).u(8, a.half_pixel as usize).u(9, xs[0]);
    let kernel = Kernel::new(Family::Sample, "roi_align", &[("MODE", a.max as u32), ("WG", cx.wg as u32)]);
    let (xb, rb, ib) = (cx.buf(node, x)?, cx.buf(node, rois)?, cx.buf(node, indices)?);
    let groups = cx.groups(items);
    cx.push(ni, kernel, vec![(1, Buf::Value(y)), (2, xb), (7, rb), (8, ib)], groups, p.done());
    Ok(())
}
