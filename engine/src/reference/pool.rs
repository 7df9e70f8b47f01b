//! Reference pooling over 1 to 3 spatial axes (each computed as a 3-D sweep whose leading
//! axes have unit size), global pooling and max unpooling.

use super::{OpResult, floats, make};
use crate::ops::{IndexOrder, LpPoolAttrs, MAX_SPATIAL, MaxUnpoolAttrs, Op, PoolAttrs, PoolKind, Window, axes3, pads3};
use crate::tensor::{DType, Tensor, numel};

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let want = if matches!(op, Op::MaxUnpool(_)) { 2 } else { 1 };
    if ins.len() != want {
        return Err(format!("takes {want} input(s), got {}", ins.len()));
    }
    let x = ins[0];
    match op {
        Op::Pool(a) => pool(x, a),
        Op::LpPool(a) => Ok(vec![lp_pool(x, a)?]),
        Op::GlobalPool(kind) => Ok(vec![global_pool(x, *kind)?]),
        Op::MaxUnpool(a) => Ok(vec![max_unpool(x, ins[1], a)?]),
        _ => unreachable!("pool family"),
    }
}

/// A window sweep over 3 axes: input, output, kernel, stride, dilation, begin and end pads.
struct Sweep {
    input: [usize; 3],
    out: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    dilation: [usize; 3],
    pad_begin: [usize; 3],
    pad_end: [usize; 3],
}

impl Sweep {
    /// The sweep of `w` over the spatial sizes of x [N, C, spatial...].
    fn new(x: &Tensor, w: &Window) -> OpResult<(Sweep, Vec<usize>)> {
        let s = x.shape();
        if !(3..=2 + MAX_SPATIAL).contains(&s.len()) {
            return Err(format!("input must be [N, C, spatial...] with 1 to {MAX_SPATIAL} spatial axes, has {s:?}"));
        }
        w.check(s.len() - 2)?;
        let dims = w.out_dims(&s[2..])?;
        let (pad_begin, pad_end) = pads3(w.pads);
        let sweep = Sweep {
            input: axes3(&s[2..], 1),
            out: axes3(&dims, 1),
            kernel: axes3(w.kernel, 1),
            stride: axes3(w.stride, 1),
            dilation: axes3(w.dilation, 1),
            pad_begin,
            pad_end,
        };
        Ok((sweep, [s[..2].to_vec(), dims].concat()))
    }

    /// Calls `f(position, inside)` for every tap of the window at output `o`, in row-major
    /// order of the taps: `position` is the tap's place in the input (-1 on an axis before
    /// it), `inside` whether it lies in the input. Taps past the end padding are cut.
    fn taps(&self, o: [usize; 3], mut f: impl FnMut([i64; 3], bool)) {
        let at =
            |ax: usize, k: usize| (o[ax] * self.stride[ax] + k * self.dilation[ax]) as i64 - self.pad_begin[ax] as i64;
        let cut = |ax: usize, p: i64| p >= (self.input[ax] + self.pad_end[ax]) as i64;
        let inside = |ax: usize, p: i64| p >= 0 && p < self.input[ax] as i64;
        for kz in 0..self.kernel[0] {
            let z = at(0, kz);
            if cut(0, z) {
                break;
            }
            for ky in 0..self.kernel[1] {
                let y = at(1, ky);
                if cut(1, y) {
                    break;
                }
                for kx in 0..self.kernel[2] {
                    let xx = at(2, kx);
                    if cut(2, xx) {
                        break;
                    }
                    f([z, y, xx], inside(0, z) && inside(1, y) && inside(2, xx));
                }
            }
        }
    }

    /// Calls `f(plane, output position)` for every output, in row-major order.
    fn outputs(&self, planes: usize, mut f: impl FnMut(usize, [usize; 3])) {
        for plane in 0..planes {
            for z in 0..self.out[0] {
                for y in 0..self.out[1] {
                    for x in 0..self.out[2] {
                        f(plane, [z, y, x]);
                    }
                }
            }
        }
    }

    /// Flat index of an inside position within its plane.
    fn flat(&self, p: [i64; 3]) -> usize {
        (p[0] as usize * self.input[1] + p[1] as usize) * self.input[2] + p[2] as usize
    }
}

/// Max pooling takes the first largest in-bounds tap (padding taps are ignored; a window with
/// no in-bounds tap gives f32::MIN and index -1, like onnxruntime) and, when asked, its index:
/// (n*C + c) * plane + its spatial position flattened row- or column-major. Average pooling
/// follows PyTorch: the window is cut at the end of the padding, its size there is the
/// count_include_pad divisor, and the sum runs over the (dilated) taps inside the input,
/// whose count is the other divisor.
fn pool(x: &Tensor, a: &PoolAttrs) -> OpResult<Vec<Tensor>> {
    if a.indices.is_some() && a.kind != PoolKind::Max {
        return Err("only max pooling outputs indices".into());
    }
    let (sw, shape) = Sweep::new(x, &a.window())?;
    let plane: usize = sw.input.iter().product();
    // Integers (max pooling only) are exact in f64.
    let xd = if a.kind == PoolKind::Max && x.dtype().is_int() { x.to_f64s() } else { floats(x, "input")? };
    let [d, h, w] = sw.input;
    let column_major = a.indices == Some(IndexOrder::ColumnMajor);
    let mut out = Vec::with_capacity(numel(&shape));
    let mut idx = Vec::with_capacity(if a.indices.is_some() { numel(&shape) } else { 0 });
    sw.outputs(shape[0] * shape[1], |pl, o| {
        let xp = &xd[pl * plane..][..plane];
        match a.kind {
            PoolKind::Max => {
                let mut best: Option<(f64, [i64; 3])> = None;
                sw.taps(o, |p, inside| {
                    if inside {
                        let v = xp[sw.flat(p)];
                        if best.is_none_or(|(b, _)| v > b) {
                            best = Some((v, p));
                        }
                    }
                });
                out.push(best.map_or(f32::MIN as f64, |(v, _)| v));
                if a.indices.is_some() {
                    idx.push(best.map_or(-1, |(_, p)| {
                        let (z, y, xx) = (p[0] as usize, p[1] as usize, p[2] as usize);
                        let within = if column_major { z + y * d + xx * d * h } else { (z * h + y) * w + xx };
                        (pl * plane + within) as i64
                    }));
                }
            }
            PoolKind::Average => {
                let (mut sum, mut inside, mut in_pad) = (0f64, 0usize, 0usize);
                sw.taps(o, |p, is_in| {
                    in_pad += 1;
                    if is_in {
                        sum += xp[sw.flat(p)];
                        inside += 1;
                    }
                });
                let divisor = if a.count_include_pad { in_pad } else { inside };
                out.push(if divisor > 0 { sum / divisor as f64 } else { 0.0 });
            }
        }
    });
    let mut outs = vec![make(x.dtype(), shape.clone(), out)?];
    if a.indices.is_some() {
        outs.push(Tensor::from_i64(DType::I64, shape, idx).map_err(|e| e.to_string())?);
    }
    Ok(outs)
}

/// (sum of |x|^p over the window's taps inside the input)^(1/p); padding counts as zeros.
fn lp_pool(x: &Tensor, a: &LpPoolAttrs) -> OpResult<Tensor> {
    if !(a.p > 0.0 && a.p.is_finite()) {
        return Err(format!("p must be positive, is {}", a.p));
    }
    let (sw, shape) = Sweep::new(x, &a.window())?;
    let plane: usize = sw.input.iter().product();
    let xd = floats(x, "input")?;
    let p = a.p as f64;
    let mut out = Vec::with_capacity(numel(&shape));
    sw.outputs(shape[0] * shape[1], |pl, o| {
        let xp = &xd[pl * plane..][..plane];
        let mut sum = 0f64;
        sw.taps(o, |pos, inside| {
            if inside {
                sum += xp[sw.flat(pos)].abs().powf(p);
            }
        });
        out.push(sum.powf(1.0 / p));
    });
    make(x.dtype(), shape, out)
}

/// Max or mean over all spatial dimensions of [N, C, spatial...] to [N, C, 1, ...].
fn global_pool(x: &Tensor, kind: PoolKind) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(format!("input must be [N, C, spatial...], has shape {s:?}"));
    }
    let inner = numel(&s[2..]);
    let xd = floats(x, "input")?;
    let out: Vec<f64> = if inner == 0 {
        vec![f64::NAN; s[0] * s[1]]
    } else {
        xd.chunks(inner)
            .map(|plane| match kind {
                PoolKind::Max => plane.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                PoolKind::Average => plane.iter().sum::<f64>() / plane.len() as f64,
            })
            .collect()
    };
    let mut shape = vec![s[0], s[1]];
    shape.extend(std::iter::repeat_n(1, s.len() - 2));
    make(x.dtype(), shape, out)
}

/// Writes every x value at its index into the default output (zeros elsewhere), in order (a
/// later duplicate index wins); indices outside the default output are skipped. Then the
/// default output is placed at the start of every axis of the full output, zeros after it.
fn max_unpool(x: &Tensor, indices: &Tensor, a: &MaxUnpoolAttrs) -> OpResult<Tensor> {
    let s = x.shape();
    if !(3..=2 + MAX_SPATIAL).contains(&s.len()) || indices.shape() != s {
        return Err(format!(
            "input {s:?} must be [N, C, spatial...] with 1 to {MAX_SPATIAL} spatial axes, indices {:?} of its shape",
            indices.shape()
        ));
    }
    crate::ops::check_axes(s.len() - 2, &[("kernel", &a.kernel), ("stride", &a.stride)], &a.pads)?;
    if s.contains(&0) || a.kernel.contains(&0) || a.stride.contains(&0) {
        return Err("input dimensions, kernel and stride must be >= 1".into());
    }
    let dims = crate::ops::unpool_dims(&s[2..], a)?;
    let default = [s[..2].to_vec(), dims].concat();
    let full = a.output_shape.clone().unwrap_or_else(|| default.clone());
    if full.len() != default.len() || full.iter().zip(&default).any(|(&f, &d)| f < d) || full[..2] != default[..2] {
        return Err(format!("output_shape {full:?} is smaller than the default output {default:?}"));
    }
    let xd = floats(x, "input")?;
    let total = numel(&default);
    let mut dense = vec![0f64; total];
    for (v, i) in xd.iter().zip(indices.to_i64s()) {
        if (0..total as i64).contains(&i) {
            dense[i as usize] = *v;
        }
    }
    let mut out = vec![0f64; numel(&full)];
    let full_strides = crate::tensor::strides(&full);
    super::for_each_index(&default, |idx| {
        let src = idx.iter().zip(crate::tensor::strides(&default)).map(|(i, s)| i * s).sum::<usize>();
        let dst = idx.iter().zip(&full_strides).map(|(i, s)| i * s).sum::<usize>();
        out[dst] = dense[src];
    });
    make(x.dtype(), full, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), v.to_vec()).unwrap()
    }

    #[test]
    fn max_pool_indices_row_and_column_major() {
        // One 3x3 plane (second channel) pooled by 2x2 windows with stride 1.
        let x: Vec<f32> = vec![0.0; 9].into_iter().chain([1., 9., 2., 3., 4., 5., 8., 6., 7.]).collect();
        let mut a = PoolAttrs::new(PoolKind::Max, &[2, 2], &[1, 1]);
        a.indices = Some(IndexOrder::RowMajor);
        let y = pool(&t(&[1, 2, 3, 3], &x), &a).unwrap();
        assert_eq!(&y[0].data()[4..], &[9., 9., 8., 7.]);
        // Row-major within the plane, offset by the plane (9).
        assert_eq!(&y[1].to_i64s()[4..], &[10, 10, 15, 17]);
        a.indices = Some(IndexOrder::ColumnMajor);
        let y = pool(&t(&[1, 2, 3, 3], &x), &a).unwrap();
        // (row, col) -> row + col * 3.
        assert_eq!(&y[1].to_i64s()[4..], &[12, 12, 11, 17]);
    }

    #[test]
    fn max_pool_ties_take_the_first_tap() {
        let mut a = PoolAttrs::new(PoolKind::Max, &[3], &[1]);
        a.indices = Some(IndexOrder::RowMajor);
        let y = pool(&t(&[1, 1, 4], &[5., 5., 1., 5.]), &a).unwrap();
        assert_eq!(y[1].to_i64s(), [0, 1]);
    }

    #[test]
    fn lp_pool_is_the_p_norm_of_the_inside_taps() {
        let a = LpPoolAttrs {
            p: 3.0,
            kernel: vec![2],
            stride: vec![2],
            pads: vec![1, 1],
            dilation: vec![1],
            ceil_mode: false,
        };
        let y = lp_pool(&t(&[1, 1, 4], &[-2., 1., 2., 3.]), &a).unwrap();
        // Windows [pad, -2], [1, 2], [3, pad].
        let want = [2f32, 9f32.powf(1. / 3.), 3.];
        for (g, w) in y.data().iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn average_pool_3d_with_count_include_pad() {
        let x = t(&[1, 1, 2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let mut a = PoolAttrs::new(PoolKind::Average, &[2, 2, 2], &[2, 2, 2]);
        a.pads = vec![1, 1, 1, 1, 1, 1];
        let y = pool(&x, &a).unwrap();
        assert_eq!(y[0].shape(), [1, 1, 2, 2, 2]);
        // Each window holds exactly one input cell.
        assert_eq!(y[0].data(), x.data());
        a.count_include_pad = true;
        let y = pool(&x, &a).unwrap();
        let want: Vec<f32> = x.data().iter().map(|v| v / 8.0).collect();
        assert_eq!(y[0].data(), want.as_slice());
    }

    #[test]
    fn max_unpool_inverts_max_pool_positions() {
        let xv = t(&[1, 1, 2, 2], &[5., 6., 7., 8.]);
        let idx = Tensor::from_i64(DType::I64, vec![1, 1, 2, 2], vec![5, 7, 13, 15]).unwrap();
        let a = MaxUnpoolAttrs { kernel: vec![2, 2], stride: vec![2, 2], pads: vec![0; 4], output_shape: None };
        let y = max_unpool(&xv, &idx, &a).unwrap();
        assert_eq!(y.shape(), [1, 1, 4, 4]);
        assert_eq!(y.data(), &[0., 0., 0., 0., 0., 5., 0., 6., 0., 0., 0., 0., 0., 7., 0., 8.]);
        // A larger output keeps the default one at its start; out-of-range indices are skipped.
        let idx = Tensor::from_i64(DType::I64, vec![1, 1, 2, 2], vec![5, 7, 13, 99]).unwrap();
        let a = MaxUnpoolAttrs { output_shape: Some(vec![1, 1, 5, 5]), ..a };
        let y = max_unpool(&xv, &idx, &a).unwrap();
        assert_eq!(y.data()[6], 5.);
        assert_eq!(y.data()[16], 7.);
        assert_eq!(y.data().iter().sum::<f32>(), 5. + 6. + 7.);
    }
}
