//! Reference resampling and sampling at computed coordinates: Resize, GridSample, RoiAlign.
//!
//! Written from ONNX's definitions, independently of the kernels' tables: Resize finds each
//! output position's source taps per axis the way ONNX's reference does (the n input indices
//! nearest the source coordinate, ties to the smaller, coefficients from the fractional
//! part) and sums over the product of every axis's taps at once (the kernels resample one
//! axis after another from tables computed at lowering). Floats are accumulated in f64;
//! GridSample's denormalised coordinates are computed in f32 as ONNX's reference does, so
//! that halfway cases of the nearest mode round the same way.

use super::{OpResult, floats, for_each_index, gather_axes, make};
use crate::ops::{
    CoordMode, GridMode, GridPadding, GridSampleAttrs, NearestMode, Op, ResizeAttrs, ResizeMode, RoiAlignAttrs,
};
use crate::tensor::{Tensor, numel, strides};

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let arity = |n: usize| -> OpResult<()> {
        if ins.len() == n { Ok(()) } else { Err(format!("takes {n} input(s), got {}", ins.len())) }
    };
    match op {
        Op::Resize(a) => {
            arity(1)?;
            Ok(vec![resize(ins[0], a)?])
        }
        Op::GridSample(a) => {
            arity(2)?;
            Ok(vec![grid_sample(ins[0], ins[1], a)?])
        }
        Op::RoiAlign(a) => {
            arity(3)?;
            Ok(vec![roi_align(ins[0], ins[1], ins[2], a)?])
        }
        _ => Err(format!("{} is not an operation of the sample family", op.name())),
    }
}

// ---------------------------------------------------------------------------------------------
// Resize
// ---------------------------------------------------------------------------------------------

/// The source taps of one output position along one axis: (input index, weight) pairs, or
/// None where tf_crop_and_resize maps outside the input (the extrapolation value).
type Taps = Option<Vec<(usize, f64)>>;

fn resize(x: &Tensor, a: &ResizeAttrs) -> OpResult<Tensor> {
    let shape = x.shape();
    let r = shape.len();
    if a.sizes.len() != r || a.scales.len() != r || a.roi.len() != r {
        return Err(format!("needs an output size, a scale and a region per axis of the rank-{r} input"));
    }
    let resized = a.resized_axes(shape);
    let mut tables: Vec<Vec<Taps>> = shape.iter().map(|&d| (0..d).map(|i| Some(vec![(i, 1.0)])).collect()).collect();
    for &axis in &resized {
        if shape[axis] == 0 && a.sizes[axis] > 0 {
            return Err(format!("axis {axis} of the input is empty; it cannot be resized"));
        }
        tables[axis] = axis_taps(a, axis, shape[axis]);
    }
    if let ResizeMode::Nearest(_) = a.mode {
        // One tap of weight 1 per position: a gather, for every element type.
        let index: Vec<Vec<Option<usize>>> =
            tables.iter().map(|t| t.iter().map(|taps| taps.as_ref().map(|v| v[0].0)).collect()).collect();
        return gather_axes(x, &index, a.extrapolation as f64);
    }
    let xd = floats(x, "input")?;
    let st = strides(shape);
    let mut out = Vec::with_capacity(numel(&a.sizes));
    for_each_index(&a.sizes, |idx| {
        let lists: Option<Vec<&[(usize, f64)]>> =
            idx.iter().enumerate().map(|(axis, &i)| tables[axis][i].as_deref()).collect();
        out.push(match lists {
            None => a.extrapolation as f64,
            Some(lists) => weighted_sum(&xd, &st, &lists),
        });
    });
    make(x.dtype(), a.sizes.clone(), out)
}

/// Sum over every combination of one tap per axis of the product of their weights times the
/// input element they name.
fn weighted_sum(xd: &[f64], st: &[usize], lists: &[&[(usize, f64)]]) -> f64 {
    let r = lists.len();
    let mut k = vec![0usize; r];
    let mut sum = 0.0;
    loop {
        let (mut w, mut off) = (1.0, 0);
        for axis in 0..r {
            let (i, wi) = lists[axis][k[axis]];
            w *= wi;
            off += i * st[axis];
        }
        sum += w * xd[off];
        let mut axis = r;
        loop {
            if axis == 0 {
                return sum;
            }
            axis -= 1;
            k[axis] += 1;
            if k[axis] < lists[axis].len() {
                break;
            }
            k[axis] = 0;
        }
    }
}

/// The taps of every output position of one resized axis.
fn axis_taps(a: &ResizeAttrs, axis: usize, in_len: usize) -> Vec<Taps> {
    let (out_len, scale, roi) = (a.sizes[axis], a.scales[axis], a.roi[axis]);
    (0..out_len)
        .map(|o| {
            let x = original_coord(a.coord, o, scale, in_len, out_len, roi);
            if a.coord == CoordMode::TfCropAndResize && (x < 0.0 || x > (in_len - 1) as f64) {
                return None;
            }
            let taps = match a.mode {
                ResizeMode::Nearest(m) => vec![(nearest_index(m, x, scale, in_len), 1.0)],
                ResizeMode::Linear | ResizeMode::Cubic { .. } => filter_taps(a, x, scale, in_len),
            };
            Some(taps)
        })
        .collect()
}

/// ONNX coordinate_transformation_mode: the input coordinate of output position `o`. The
/// resized length in floating point is `scale * in_len`.
fn original_coord(mode: CoordMode, o: usize, scale: f64, in_len: usize, out_len: usize, roi: (f64, f64)) -> f64 {
    let (x, len_in) = (o as f64, in_len as f64);
    let out_width = scale * len_in;
    match mode {
        CoordMode::HalfPixel => (x + 0.5) / scale - 0.5,
        CoordMode::HalfPixelSymmetric => {
            let adjustment = out_len as f64 / out_width;
            let center = len_in / 2.0;
            center * (1.0 - adjustment) + (x + 0.5) / scale - 0.5
        }
        CoordMode::PytorchHalfPixel => {
            if out_len > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordMode::AlignCorners => {
            if out_len > 1 {
                x * (len_in - 1.0) / (out_width - 1.0)
            } else {
                0.0
            }
        }
        CoordMode::Asymmetric => x / scale,
        CoordMode::TfHalfPixelForNn => (x + 0.5) / scale,
        CoordMode::TfCropAndResize => {
            let (start, end) = roi;
            let offset = start * (len_in - 1.0);
            if out_len > 1 {
                x * (end - start) * (len_in - 1.0) / (out_width - 1.0) + offset
            } else {
                (end - start) * (len_in - 1.0) / 2.0 + offset
            }
        }
    }
}

/// The nearest input index of source coordinate `x` (clamped to the axis).
fn nearest_index(mode: NearestMode, x: f64, scale: f64, in_len: usize) -> usize {
    let lower = x.floor();
    let ratio = x - lower;
    let r = if ratio == 0.0 {
        x
    } else {
        match mode {
            NearestMode::RoundPreferFloor => {
                if ratio <= 0.5 {
                    lower
                } else {
                    lower + 1.0
                }
            }
            NearestMode::RoundPreferCeil => {
                if ratio < 0.5 {
                    lower
                } else {
                    lower + 1.0
                }
            }
            NearestMode::Floor => lower,
            NearestMode::Ceil => lower + 1.0,
            NearestMode::Legacy => {
                if scale < 1.0 {
                    lower + 1.0
                } else {
                    lower
                }
            }
        }
    };
    r.clamp(0.0, (in_len - 1) as f64) as usize
}

/// Keys' cubic convolution kernel at distance `d` with coefficient `a`.
fn cubic_kernel(d: f64, a: f64) -> f64 {
    let d = d.abs();
    if d <= 1.0 {
        ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    } else if d < 2.0 {
        ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
    } else {
        0.0
    }
}

/// Linear or cubic taps of source coordinate `x`: ONNX's coefficients of the fractional part
/// `ratio` in (0, 1] over the input indices nearest `x`, then exclude_outside and the edge.
fn filter_taps(a: &ResizeAttrs, x: f64, scale: f64, in_len: usize) -> Vec<(usize, f64)> {
    let lower = x.floor();
    // The fractional part is taken in (0, 1]: an exact index counts as 1 past the previous.
    let ratio = if x == lower { 1.0 } else { x - lower };
    let mut coeffs: Vec<f64> = match (a.mode, a.antialias) {
        (ResizeMode::Linear, false) => vec![1.0 - ratio, ratio],
        (ResizeMode::Cubic { a: k }, false) => {
            let k = k as f64;
            vec![
                ((k * (ratio + 1.0) - 5.0 * k) * (ratio + 1.0) + 8.0 * k) * (ratio + 1.0) - 4.0 * k,
                ((k + 2.0) * ratio - (k + 3.0)) * ratio * ratio + 1.0,
                ((k + 2.0) * (1.0 - ratio) - (k + 3.0)) * (1.0 - ratio) * (1.0 - ratio) + 1.0,
                ((k * (2.0 - ratio) - 5.0 * k) * (2.0 - ratio) + 8.0 * k) * (2.0 - ratio) - 4.0 * k,
            ]
        }
        (mode, true) => {
            // The filter stretched by 1/scale when the axis shrinks.
            let s = scale.min(1.0);
            let (support, kernel): (f64, Box<dyn Fn(f64) -> f64>) = match mode {
                ResizeMode::Cubic { a: k } => (2.0, Box::new(move |d| cubic_kernel(d, k as f64))),
                _ => (1.0, Box::new(|d: f64| (1.0 - d.abs()).clamp(0.0, 1.0))),
            };
            let first = (-support / s).floor() as i64 + 1;
            let c: Vec<f64> = (first..2 - first).map(|i| kernel(s * (i as f64 - ratio))).collect();
            let total: f64 = c.iter().sum();
            c.into_iter().map(|v| v / total).collect()
        }
        (ResizeMode::Nearest(_), false) => unreachable!("nearest has one tap"),
    };
    let n = coeffs.len();
    let indices = nearest_indices(x, n);
    if a.exclude_outside {
        for (c, &i) in coeffs.iter_mut().zip(&indices) {
            if i < 0 || i >= in_len as i64 {
                *c = 0.0;
            }
        }
        let total: f64 = coeffs.iter().sum();
        if total != 0.0 {
            coeffs.iter_mut().for_each(|c| *c /= total);
        }
    }
    indices.iter().zip(coeffs).map(|(&i, c)| (i.clamp(0, in_len as i64 - 1) as usize, c)).collect()
}

/// The `n` integers nearest `x` (ties to the smaller one), in ascending order.
fn nearest_indices(x: f64, n: usize) -> Vec<i64> {
    let centre = x.floor() as i64;
    let mut candidates: Vec<i64> = (centre - n as i64 - 1..=centre + n as i64 + 1).collect();
    candidates.sort_by(|&p, &q| (x - p as f64).abs().total_cmp(&(x - q as f64).abs()).then(p.cmp(&q)));
    candidates.truncate(n);
    candidates.sort_unstable();
    candidates
}

// ---------------------------------------------------------------------------------------------
// GridSample
// ---------------------------------------------------------------------------------------------

fn grid_sample(x: &Tensor, grid: &Tensor, a: &GridSampleAttrs) -> OpResult<Tensor> {
    let (xs, gs) = (x.shape(), grid.shape());
    if !(3..=5).contains(&xs.len()) || gs.len() != xs.len() || gs[0] != xs[0] || gs[xs.len() - 1] != xs.len() - 2 {
        return Err(format!("input {xs:?} and grid {gs:?} do not match ([N, C, d1..dr] and [N, o1..or, r])"));
    }
    let r = xs.len() - 2;
    let (n, c) = (xs[0], xs[1]);
    let dims = &xs[2..];
    let out_spatial = &gs[1..=r];
    let positions = numel(out_spatial);
    let mut shape = vec![n, c];
    shape.extend_from_slice(out_spatial);
    if numel(&shape) == 0 {
        return make(x.dtype(), shape, vec![]);
    }
    if dims.contains(&0) {
        return Err(format!("the input {xs:?} has an empty spatial axis"));
    }
    let xd = floats(x, "input")?;
    let gd = grid.to_f32s();
    let plane = numel(dims);
    let mut out = vec![0.0; numel(&shape)];
    for b in 0..n {
        for p in 0..positions {
            // The grid holds the last axis's coordinate first.
            let g = &gd[(b * positions + p) * r..(b * positions + p + 1) * r];
            let coords: Vec<f64> = (0..r).map(|i| source_coord(g[r - 1 - i], dims[i], a)).collect();
            let taps: Vec<Vec<(i64, f64)>> = coords.iter().map(|&x| grid_taps(a.mode, x)).collect();
            for ch in 0..c {
                let data = &xd[(b * c + ch) * plane..(b * c + ch + 1) * plane];
                out[(b * c + ch) * positions + p] = sample_nd(data, dims, &taps, a);
            }
        }
    }
    make(x.dtype(), shape, out)
}

/// The input coordinate of normalised position `v` on an axis of `len` elements, after
/// rounding (nearest) and reflection into the input (reflection padding). Border padding
/// clamps the taps, not the coordinate, as PyTorch and onnxruntime do (the same for nearest
/// and linear; ONNX's Python reference clamps the coordinate, which moves cubic taps).
fn source_coord(v: f32, len: usize, a: &GridSampleAttrs) -> f64 {
    let l = len as f32;
    // Denormalised in f32, as ONNX's reference does.
    let mut x = if a.align_corners { (v + 1.0) / 2.0 * (l - 1.0) } else { ((v + 1.0) * l - 1.0) / 2.0 } as f64;
    if a.mode == GridMode::Nearest {
        x = x.round_ties_even();
    }
    let (lo, hi) = borders(len, a.align_corners);
    if a.padding == GridPadding::Reflection && (x < lo || x > hi) {
        x = reflect(x, lo, hi);
    }
    x
}

/// The extent of an axis: the outer edges of its end elements, or their centres.
fn borders(len: usize, align_corners: bool) -> (f64, f64) {
    if align_corners { (0.0, len as f64 - 1.0) } else { (-0.5, len as f64 - 0.5) }
}

/// `x` mirrored at `lo` and `hi` until it lies between them.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let flips = (dx / range).floor();
        let rest = dx - flips * range;
        if flips % 2.0 == 0.0 { lo + rest } else { hi - rest }
    } else if x > hi {
        let dx = x - hi;
        let flips = (dx / range).floor();
        let rest = dx - flips * range;
        if flips % 2.0 == 0.0 { hi - rest } else { lo + rest }
    } else {
        x
    }
}

/// (index, weight) taps of coordinate `x` along one axis.
fn grid_taps(mode: GridMode, x: f64) -> Vec<(i64, f64)> {
    match mode {
        // Rounded already: the integer part.
        GridMode::Nearest => vec![(x.trunc() as i64, 1.0)],
        GridMode::Linear => {
            let x0 = x.floor();
            let t = x - x0;
            vec![(x0 as i64, 1.0 - t), (x0 as i64 + 1, t)]
        }
        GridMode::Cubic => {
            let x0 = x.floor();
            let t = x - x0;
            (-1..=2).map(|k| (x0 as i64 + k, cubic_kernel(t - k as f64, -0.75))).collect()
        }
    }
}

/// The input element at integer position `i` of an axis under the padding mode: its index,
/// or None for zeros padding outside the axis.
fn padded_index(i: i64, len: usize, a: &GridSampleAttrs) -> Option<usize> {
    if (0..len as i64).contains(&i) {
        return Some(i as usize);
    }
    match a.padding {
        GridPadding::Zeros => None,
        GridPadding::Border => Some(i.clamp(0, len as i64 - 1) as usize),
        GridPadding::Reflection => {
            let (lo, hi) = borders(len, a.align_corners);
            Some((reflect(i as f64, lo, hi).trunc() as i64).clamp(0, len as i64 - 1) as usize)
        }
    }
}

/// The sum over every combination of one tap per axis.
fn sample_nd(data: &[f64], dims: &[usize], taps: &[Vec<(i64, f64)>], a: &GridSampleAttrs) -> f64 {
    let r = dims.len();
    let mut k = vec![0usize; r];
    let mut sum = 0.0;
    loop {
        let mut w = 1.0;
        let mut off = Some(0usize);
        for axis in 0..r {
            let (i, wi) = taps[axis][k[axis]];
            w *= wi;
            off = match (off, padded_index(i, dims[axis], a)) {
                (Some(o), Some(j)) => Some(o * dims[axis] + j),
                _ => None,
            };
        }
        if let Some(o) = off {
            sum += w * data[o];
        }
        let mut axis = r;
        loop {
            if axis == 0 {
                return sum;
            }
            axis -= 1;
            k[axis] += 1;
            if k[axis] < taps[axis].len() {
                break;
            }
            k[axis] = 0;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RoiAlign
// ---------------------------------------------------------------------------------------------

fn roi_align(x: &Tensor, rois: &Tensor, batch_indices: &Tensor, a: &RoiAlignAttrs) -> OpResult<Tensor> {
    let xs = x.shape();
    if xs.len() != 4 || rois.shape().len() != 2 || rois.shape()[1] != 4 || batch_indices.shape() != [rois.shape()[0]] {
        return Err(format!(
            "input {xs:?}, rois {:?} and batch_indices {:?} must be [N, C, H, W], [R, 4] and [R]",
            rois.shape(),
            batch_indices.shape()
        ));
    }
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let [oh, ow] = a.output;
    let regions = rois.shape()[0];
    let xd = floats(x, "input")?;
    let rd = floats(rois, "rois")?;
    let bi = batch_indices.to_i64s();
    let mut out = Vec::with_capacity(regions * c * oh * ow);
    for (k, &b) in bi.iter().enumerate() {
        if b < 0 || b >= n as i64 {
            return Err(format!("batch index {b} of region {k} is out of range for a batch of {n}"));
        }
        let region = Region::new(&rd[k * 4..k * 4 + 4], a);
        for ch in 0..c {
            let plane = &xd[((b as usize) * c + ch) * h * w..((b as usize) * c + ch + 1) * h * w];
            for py in 0..oh {
                for px in 0..ow {
                    out.push(region.pool(plane, h, w, py, px, a));
                }
            }
        }
    }
    make(x.dtype(), vec![regions, c, oh, ow], out)
}

/// One region of interest in input coordinates, with its bins and samples per bin.
struct Region {
    start: [f64; 2],
    bin: [f64; 2],
    samples: [usize; 2],
}

impl Region {
    fn new(roi: &[f64], a: &RoiAlignAttrs) -> Self {
        let scale = a.spatial_scale as f64;
        let shift = if a.half_pixel { 0.5 } else { 0.0 };
        let (x1, y1, x2, y2) =
            (roi[0] * scale - shift, roi[1] * scale - shift, roi[2] * scale - shift, roi[3] * scale - shift);
        let (mut rh, mut rw) = (y2 - y1, x2 - x1);
        if !a.half_pixel {
            // Malformed regions count as 1x1.
            rh = rh.max(1.0);
            rw = rw.max(1.0);
        }
        let bin = [rh / a.output[0] as f64, rw / a.output[1] as f64];
        let adaptive = |len: f64, bins: usize| (len / bins as f64).ceil().max(0.0) as usize;
        let samples = if a.sampling_ratio > 0 {
            [a.sampling_ratio, a.sampling_ratio]
        } else {
            [adaptive(rh, a.output[0]), adaptive(rw, a.output[1])]
        };
        Region { start: [y1, x1], bin, samples }
    }

    /// The average or maximum over the samples of bin (py, px).
    fn pool(&self, plane: &[f64], h: usize, w: usize, py: usize, px: usize, a: &RoiAlignAttrs) -> f64 {
        let [sy, sx] = self.samples;
        let count = (sy * sx).max(1) as f64;
        let mut acc: Option<f64> = None;
        for iy in 0..sy {
            let y = self.start[0] + py as f64 * self.bin[0] + (iy as f64 + 0.5) * self.bin[0] / sy as f64;
            for ix in 0..sx {
                let x = self.start[1] + px as f64 * self.bin[1] + (ix as f64 + 0.5) * self.bin[1] / sx as f64;
                let corners = bilinear_corners(plane, h, w, y, x);
                let v = if a.max {
                    corners.iter().map(|(wt, v)| wt * v).fold(f64::NEG_INFINITY, f64::max)
                } else {
                    corners.iter().map(|(wt, v)| wt * v).sum()
                };
                acc = Some(match acc {
                    None => v,
                    Some(m) if a.max => m.max(v),
                    Some(s) => s + v,
                });
            }
        }
        match acc {
            None => 0.0,
            Some(v) if a.max => v,
            Some(s) => s / count,
        }
    }
}

/// The four (weight, value) corners of a bilinear sample at (y, x); a sample more than one
/// element outside the plane has zero weights.
fn bilinear_corners(plane: &[f64], h: usize, w: usize, y: f64, x: f64) -> [(f64, f64); 4] {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
        return [(0.0, plane[0]); 4];
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut y0, mut x0) = (y as usize, x as usize);
    let y1 = if y0 >= h - 1 {
        y0 = h - 1;
        y = y0 as f64;
        y0
    } else {
        y0 + 1
    };
    let x1 = if x0 >= w - 1 {
        x0 = w - 1;
        x = x0 as f64;
        x0
    } else {
        x0 + 1
    };
    let (ly, lx) = (y - y0 as f64, x - x0 as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    [
        (hy * hx, plane[y0 * w + x0]),
        (hy * lx, plane[y0 * w + x1]),
        (ly * hx, plane[y1 * w + x0]),
        (ly * lx, plane[y1 * w + x1]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::ResizeAttrs;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), v.to_vec()).unwrap()
    }

    fn seq(shape: &[usize]) -> Tensor {
        let n = numel(shape);
        t(shape, &(1..=n).map(|i| i as f32).collect::<Vec<_>>())
    }

    fn close(got: &Tensor, shape: &[usize], want: &[f64], tol: f64) {
        assert_eq!(got.shape(), shape);
        let g = got.to_f64s();
        for (i, (a, b)) in g.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= tol, "element {i}: {a} vs {b}\n got {g:?}\n want {want:?}");
        }
    }

    fn resize1(x: &Tensor, attrs: ResizeAttrs) -> Tensor {
        eval(&Op::Resize(attrs), &[x]).unwrap().remove(0)
    }

    fn attrs(mode: ResizeMode, coord: CoordMode, input: &[usize], sizes: &[usize], scales: &[f64]) -> ResizeAttrs {
        ResizeAttrs { scales: scales.to_vec(), ..ResizeAttrs::to_sizes(mode, coord, input, sizes) }
    }

    #[test]
    fn nearest_modes_and_coordinates() {
        // Batch 2, 2 channels: the same index pattern on every plane.
        let x = seq(&[2, 2, 2, 2]);
        let a = attrs(
            ResizeMode::Nearest(NearestMode::Floor),
            CoordMode::Asymmetric,
            &[2, 2, 2, 2],
            &[2, 2, 4, 4],
            &[1., 1., 2., 2.],
        );
        let plane = |a: f64, b: f64, c: f64, d: f64| vec![a, a, b, b, a, a, b, b, c, c, d, d, c, c, d, d];
        let want: Vec<f64> = (0..4)
            .flat_map(|p| plane(4. * p as f64 + 1., 4. * p as f64 + 2., 4. * p as f64 + 3., 4. * p as f64 + 4.))
            .collect();
        close(&resize1(&x, a), &[2, 2, 4, 4], &want, 0.0);

        // One row [10, 20] to width 4. Asymmetric, scale 2: x_in = 0, .5, 1, 1.5.
        let x = t(&[1, 2], &[10., 20.]);
        let r = |nm, coord| resize1(&x, attrs(ResizeMode::Nearest(nm), coord, &[1, 2], &[1, 4], &[1., 2.]));
        use CoordMode::*;
        use NearestMode::*;
        close(&r(RoundPreferFloor, Asymmetric), &[1, 4], &[10., 10., 20., 20.], 0.0);
        close(&r(RoundPreferCeil, Asymmetric), &[1, 4], &[10., 20., 20., 20.], 0.0);
        close(&r(Floor, Asymmetric), &[1, 4], &[10., 10., 20., 20.], 0.0);
        close(&r(Ceil, Asymmetric), &[1, 4], &[10., 20., 20., 20.], 0.0);
        close(&r(Legacy, Asymmetric), &[1, 4], &[10., 10., 20., 20.], 0.0);
        // tf_half_pixel_for_nn: x_in = .25, .75, 1.25, 1.75.
        close(&r(RoundPreferFloor, TfHalfPixelForNn), &[1, 4], &[10., 20., 20., 20.], 0.0);
        close(&r(Floor, TfHalfPixelForNn), &[1, 4], &[10., 10., 20., 20.], 0.0);
        close(&r(Ceil, TfHalfPixelForNn), &[1, 4], &[20., 20., 20., 20.], 0.0);
        // half_pixel: x_in = -.25, .25, .75, 1.25 (negative clamps to 0).
        close(&r(RoundPreferCeil, HalfPixel), &[1, 4], &[10., 10., 20., 20.], 0.0);
        close(&r(Ceil, HalfPixel), &[1, 4], &[10., 20., 20., 20.], 0.0);
        // align_corners, 2 -> 4: x_in = 0, 1/3, 2/3, 1.
        close(&r(RoundPreferFloor, AlignCorners), &[1, 4], &[10., 10., 20., 20.], 0.0);
        // Legacy downscaling takes the ceiling: 10 -> 6 at scale 0.6 reads 0, 2, 4, 5, 7, 9.
        let x = seq(&[10]);
        let y = resize1(&x, attrs(ResizeMode::Nearest(Legacy), Asymmetric, &[10], &[6], &[0.6]));
        close(&y, &[6], &[1., 3., 5., 6., 8., 10.], 0.0);
    }

    #[test]
    fn nearest_moves_integers_and_extrapolates() {
        let x = Tensor::from_i64(crate::tensor::DType::I64, vec![4], vec![5, -6, 7, 8]).unwrap();
        let mut a =
            attrs(ResizeMode::Nearest(NearestMode::RoundPreferFloor), CoordMode::TfCropAndResize, &[4], &[3], &[0.75]);
        // roi [0.5, 1.5]: x_in = 1.5, 3, 4.5 (outside).
        a.roi = vec![(0.5, 1.5)];
        a.extrapolation = -3.0;
        let y = resize1(&x, a);
        assert_eq!(y.to_i64s(), vec![-6, 8, -3]);
    }

    #[test]
    fn linear_matches_hand_computed_values() {
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let lin = |coord, sizes: &[usize], scales: &[f64]| {
            resize1(&x, attrs(ResizeMode::Linear, coord, &[1, 1, 2, 2], sizes, scales))
        };
        // align_corners: x_in = 0, 1/3, 2/3, 1 on both axes; out[i][j] = 1 + j/3 + 2i/3.
        let want: Vec<f64> = (0..16).map(|k| 1.0 + (k % 4) as f64 / 3.0 + 2.0 * (k / 4) as f64 / 3.0).collect();
        close(&lin(CoordMode::AlignCorners, &[1, 1, 4, 4], &[1., 1., 2., 2.]), &[1, 1, 4, 4], &want, 1e-6);
        // half_pixel: x_in = -.25, .25, .75, 1.25 -> fractions 0, .25, .75, 1 (edge).
        let f = [0.0, 0.25, 0.75, 1.0];
        let want: Vec<f64> = (0..16).map(|k| 1.0 + f[k % 4] + 2.0 * f[k / 4]).collect();
        close(&lin(CoordMode::HalfPixel, &[1, 1, 4, 4], &[1., 1., 2., 2.]), &[1, 1, 4, 4], &want, 1e-6);
        // Down to 1x1: half_pixel reads (0.5, 0.5), the mean; pytorch_half_pixel reads (0, 0).
        close(&lin(CoordMode::HalfPixel, &[1, 1, 1, 1], &[1., 1., 0.5, 0.5]), &[1, 1, 1, 1], &[2.5], 1e-6);
        close(&lin(CoordMode::PytorchHalfPixel, &[1, 1, 1, 1], &[1., 1., 0.5, 0.5]), &[1, 1, 1, 1], &[1.0], 0.0);
        // Asymmetric 2 -> 3 along w only, scale 1.5: x_in = 0, 2/3, 4/3 (edge).
        let y = lin(CoordMode::Asymmetric, &[1, 1, 2, 3], &[1., 1., 1., 1.5]);
        close(&y, &[1, 1, 2, 3], &[1., 1. + 2. / 3., 2., 3., 3. + 2. / 3., 4.], 1e-6);
    }

    #[test]
    fn cubic_weights_and_exclude_outside() {
        // With a = -0.5 a linear ramp is reproduced exactly away from the edges.
        let x = seq(&[8]);
        let a = attrs(ResizeMode::Cubic { a: -0.5 }, CoordMode::AlignCorners, &[8], &[15], &[15.0 / 8.0]);
        let y = resize1(&x, a).to_f64s();
        // align_corners with the float length 15: x_in = o * 7 / 14 = o / 2.
        for (o, v) in y.iter().enumerate().skip(2).take(11) {
            assert!((v - (1.0 + o as f64 / 2.0)).abs() < 1e-9, "{o}: {v}");
        }
        // Halfway between 2 and 3 (indices 1, 2) with a = -0.5: weights -1/16, 9/16, 9/16, -1/16.
        let x = t(&[4], &[1., 2., 4., 8.]);
        let mut a = attrs(ResizeMode::Cubic { a: -0.5 }, CoordMode::Asymmetric, &[4], &[8], &[2.0]);
        let y = resize1(&x, a.clone()).to_f64s();
        assert!((y[3] - (-1.0 / 16.0 + 2.0 * 9.0 / 16.0 + 4.0 * 9.0 / 16.0 - 8.0 / 16.0)).abs() < 1e-6);
        // At x_in = 0.5 the tap at -1 reads the edge (1), or is excluded and the rest renormalised.
        assert!((y[1] - (-1.0 / 16.0 + 9.0 / 16.0 + 2.0 * 9.0 / 16.0 - 4.0 / 16.0)).abs() < 1e-6);
        a.exclude_outside = true;
        let y = resize1(&x, a).to_f64s();
        assert!((y[1] - (9.0 / 16.0 + 2.0 * 9.0 / 16.0 - 4.0 / 16.0) / (17.0 / 16.0)).abs() < 1e-6);
    }

    #[test]
    fn antialias_widens_the_filter_when_shrinking() {
        // 8 -> 4 linear with antialias: a triangle of half-width 2 input elements centred at
        // x_in = 2o + 0.5: taps 2o-1 .. 2o+2 with weights 1, 3, 3, 1 (/8), the edge clamped.
        let x = seq(&[8]);
        let mut a = attrs(ResizeMode::Linear, CoordMode::HalfPixel, &[8], &[4], &[0.5]);
        a.antialias = true;
        let y = resize1(&x, a.clone()).to_f64s();
        let want: Vec<f64> = (0..4)
            .map(|o: i64| {
                let v = |i: i64| (i.clamp(0, 7) + 1) as f64;
                (v(2 * o - 1) + 3.0 * v(2 * o) + 3.0 * v(2 * o + 1) + v(2 * o + 2)) / 8.0
            })
            .collect();
        close(&resize1(&x, a.clone()), &[4], &want, 1e-12);
        // Growing axes ignore antialias.
        let up = |aa| {
            let mut a = attrs(ResizeMode::Linear, CoordMode::HalfPixel, &[8], &[12], &[1.5]);
            a.antialias = aa;
            resize1(&x, a).to_f64s()
        };
        assert_eq!(up(true), up(false));
        assert_eq!(y.len(), 4);
    }

    #[test]
    fn tf_crop_and_resize_extrapolates() {
        // The ONNX case: roi rows 0.4..0.6 and columns 0.6..0.8 of a 4x4 ramp, 3x3 output.
        let x = seq(&[1, 1, 4, 4]);
        let mut a =
            attrs(ResizeMode::Linear, CoordMode::TfCropAndResize, &[1, 1, 4, 4], &[1, 1, 3, 3], &[1., 1., 0.75, 0.75]);
        a.roi = vec![(0.0, 1.0), (0.0, 1.0), (0.4, 0.6), (0.6, 1.2)];
        a.extrapolation = 10.0;
        // Rows at 1.2, 1.5, 1.8; columns at 1.8, 2.7, 3.6 (outside).
        let v = |r: f64, c: f64| 1.0 + 4.0 * r + c;
        let want = [v(1.2, 1.8), v(1.2, 2.7), 10., v(1.5, 1.8), v(1.5, 2.7), 10., v(1.8, 1.8), v(1.8, 2.7), 10.];
        close(&resize1(&x, a), &[1, 1, 3, 3], &want, 1e-5);
    }

    #[test]
    fn grid_sample_modes_and_padding() {
        // A 1x1x2x3 input sampled at normalised positions.
        let x = t(&[1, 1, 2, 3], &[1., 2., 3., 4., 5., 6.]);
        let gs = |grid: &[f32], mode, padding, align_corners| {
            let g = t(&[1, 1, grid.len() / 2, 2], grid);
            let a = GridSampleAttrs { mode, padding, align_corners };
            eval(&Op::GridSample(a), &[&x, &g]).unwrap().remove(0).to_f64s()
        };
        use GridMode::*;
        use GridPadding::*;
        // align_corners: (-1, -1) is element (0, 0), (1, 1) element (1, 2), (0, 0) the centre.
        assert_eq!(gs(&[-1., -1., 1., 1., 0., 0.], Linear, Zeros, true), vec![1., 6., 3.5]);
        // Without align_corners (-1, -1) is the outer corner: a quarter of element (0, 0).
        assert_eq!(gs(&[-1., -1.], Linear, Zeros, false), vec![0.25]);
        assert_eq!(gs(&[-1., -1.], Linear, Border, false), vec![1.0]);
        // x = 1.5 (normalised 2/3 with align_corners over 3 columns is 1.666..): reflection of
        // a position beyond the right edge: x_in = 2.5 -> 1.5 with align_corners.
        let v = gs(&[1.5, -1.], Linear, Reflection, true);
        assert!((v[0] - 2.5).abs() < 1e-6, "{v:?}");
        // Nearest rounds halfway to even: x_in = 0.5 -> 0, 1.5 -> 2 (align_corners, 3 columns).
        assert_eq!(gs(&[-0.5, -1., 0.5, -1.], Nearest, Zeros, true), vec![1., 3.]);
        // Cubic at an element centre is the element itself.
        assert_eq!(gs(&[0., 1.], Cubic, Border, true), vec![5.]);
    }

    #[test]
    fn roi_align_average_of_bilinear_samples() {
        // A 1x1x4x4 ramp; one region covering (0,0)..(2,2) pooled to 1x1 with 2x2 samples.
        let x = seq(&[1, 1, 4, 4]);
        let rois = t(&[1, 4], &[0., 0., 2., 2.]);
        let bi = Tensor::from_i64(crate::tensor::DType::I64, vec![1], vec![0]).unwrap();
        let a = RoiAlignAttrs { max: false, output: [1, 1], sampling_ratio: 2, spatial_scale: 1.0, half_pixel: false };
        let y = eval(&Op::RoiAlign(a), &[&x, &rois, &bi]).unwrap().remove(0);
        // Samples at 0.5 and 1.5 on both axes: the ramp's mean there, 1 + 4 * 1 + 1.
        close(&y, &[1, 1, 1, 1], &[6.0], 1e-12);
        // half_pixel shifts the region by -0.5: samples at 0 and 1: 1 + 4 * 0.5 + 0.5.
        let y = eval(&Op::RoiAlign(RoiAlignAttrs { half_pixel: true, ..a }), &[&x, &rois, &bi]).unwrap().remove(0);
        close(&y, &[1, 1, 1, 1], &[3.5], 1e-12);
        // A batch index outside the batch is an error.
        let bad = Tensor::from_i64(crate::tensor::DType::I64, vec![1], vec![1]).unwrap();
        assert!(eval(&Op::RoiAlign(a), &[&x, &rois, &bad]).is_err());
    }
}
