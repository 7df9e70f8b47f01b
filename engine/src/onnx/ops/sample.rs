//! Resampling and sampling: Resize (opsets 10, 11, 13, 18, 19: roi, scales or sizes, axes,
//! keep_aspect_ratio_policy, every mode and coordinate transformation) and Upsample (opsets
//! 7 and 9) to the IR's Resize; GridSample (opsets 16, 20, 22: the mode names of both) and
//! RoiAlign (opsets 10, 16) to their IR ops; AffineGrid (opset 20) built from a MatMul of
//! theta with a constant base grid; CenterCropPad (opset 18) built from Slice and Pad.

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{
    CoordMode, GridMode, GridPadding, GridSampleAttrs, NearestMode, Op, PadMode, ResizeAttrs, ResizeMode, RoiAlignAttrs,
};
use crate::tensor::Tensor;

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let out = match cx.op() {
        "Resize" | "Upsample" => resize(cx)?,
        "GridSample" => grid_sample(cx)?,
        "RoiAlign" => roi_align(cx)?,
        "AffineGrid" => affine_grid(cx)?,
        "CenterCropPad" => center_crop_pad(cx)?,
        other => return Err(cx.err(format!("{other} is not a sample op"))),
    };
    cx.set(0, out);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Resize, Upsample
// ---------------------------------------------------------------------------------------------

/// What a Resize or Upsample node gives of its output: the axes it names and per axis a
/// scale or a size.
struct Request {
    axes: Vec<usize>,
    scales: Option<Vec<f64>>,
    sizes: Option<Vec<i64>>,
}

fn request(cx: &Ctx, rank: usize) -> Result<Request> {
    let nonempty = |v: Option<Vec<f64>>| v.filter(|v| !v.is_empty());
    let upsample = cx.op() == "Upsample";
    let (scales, sizes) = if upsample && cx.opset() < 9 {
        let s = cx.attrs.floats("scales").ok_or_else(|| cx.err("needs the scales attribute"))?;
        (Some(s.iter().map(|&v| v as f64).collect()), None)
    } else if upsample || cx.opset() < 11 {
        (nonempty(cx.floats(1, "scales")?), None)
    } else {
        (nonempty(cx.floats(2, "scales")?), cx.ints(3, "sizes")?.filter(|v| !v.is_empty()))
    };
    let axes = match cx.attrs.ints("axes") {
        Some(ax) => {
            let axes = super::axes(cx, &ax, rank)?;
            let mut sorted = axes.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != axes.len() {
                return Err(cx.err(format!("axes {ax:?} repeat an axis")));
            }
            axes
        }
        None => (0..rank).collect(),
    };
    Ok(Request { axes, scales, sizes })
}

fn resize(cx: &mut Ctx) -> Result<V> {
    let x = cx.need(0)?;
    let xs = cx.shape(&x);
    let rank = xs.len();
    let legacy = cx.op() == "Upsample" || cx.opset() < 11;
    let req = request(cx, rank)?;
    let n = req.axes.len();
    let mut sizes = xs.clone();
    let mut scales = vec![1.0f64; rank];
    match (&req.scales, &req.sizes) {
        (Some(_), Some(_)) => return Err(cx.err("gives both scales and sizes; ONNX allows only one of them")),
        (None, None) => return Err(cx.err("needs scales or sizes")),
        (Some(s), None) => {
            if s.len() != n {
                return Err(cx.err(format!("{} scales for {n} axes (the input is {xs:?})", s.len())));
            }
            for (&axis, &v) in req.axes.iter().zip(s) {
                if !(v.is_finite() && v > 0.0) {
                    return Err(cx.err(format!("scales {s:?} must be positive")));
                }
                scales[axis] = v;
                sizes[axis] = (xs[axis] as f64 * v).floor() as usize;
            }
        }
        (None, Some(sz)) => {
            if sz.len() != n {
                return Err(cx.err(format!("{} sizes for {n} axes (the input is {xs:?})", sz.len())));
            }
            let mut wanted = super::to_usize(cx, sz, "sizes")?;
            // A model exported at a fixed batch runs at others: a size of the batch axis
            // equal to the exported batch follows the run's.
            if let (Some((fixed, run)), Some(k)) = (cx.batch_change(), req.axes.iter().position(|&a| a == 0))
                && wanted[k] == fixed
                && xs[0] == run
            {
                wanted[k] = run;
            }
            if let Some(&axis) = req.axes.iter().find(|&&a| xs[a] == 0) {
                return Err(cx.err(format!("axis {axis} of the input {xs:?} is empty; it cannot be resized to a size")));
            }
            let ratio: Vec<f64> = req.axes.iter().zip(&wanted).map(|(&a, &s)| s as f64 / xs[a] as f64).collect();
            match cx.attrs.s("keep_aspect_ratio_policy", "stretch").as_str() {
                "stretch" => {
                    for ((&axis, &s), &r) in req.axes.iter().zip(&wanted).zip(&ratio) {
                        sizes[axis] = s;
                        scales[axis] = r;
                    }
                }
                policy @ ("not_larger" | "not_smaller") => {
                    let fold = if policy == "not_larger" { f64::min } else { f64::max };
                    let scale = ratio.iter().copied().reduce(fold).unwrap_or(1.0);
                    for &axis in &req.axes {
                        scales[axis] = scale;
                        // Rounded half up.
                        sizes[axis] = (scale * xs[axis] as f64 + 0.5).floor() as usize;
                    }
                }
                other => {
                    return Err(cx.err(format!(
                        "keep_aspect_ratio_policy '{other}' is not one of stretch, not_larger, not_smaller"
                    )));
                }
            }
        }
    }
    let a = &cx.attrs;
    let coord_name =
        if legacy { "asymmetric".to_string() } else { a.s("coordinate_transformation_mode", "half_pixel") };
    let coord = match coord_name.as_str() {
        "half_pixel" => CoordMode::HalfPixel,
        "half_pixel_symmetric" => CoordMode::HalfPixelSymmetric,
        "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
        "align_corners" => CoordMode::AlignCorners,
        "asymmetric" => CoordMode::Asymmetric,
        "tf_half_pixel_for_nn" => CoordMode::TfHalfPixelForNn,
        "tf_crop_and_resize" => CoordMode::TfCropAndResize,
        other => return Err(cx.err(format!("coordinate_transformation_mode '{other}' is not an ONNX mode"))),
    };
    let mode = match a.s("mode", "nearest").as_str() {
        "nearest" if legacy => ResizeMode::Nearest(NearestMode::Legacy),
        "nearest" => ResizeMode::Nearest(match a.s("nearest_mode", "round_prefer_floor").as_str() {
            "round_prefer_floor" => NearestMode::RoundPreferFloor,
            "round_prefer_ceil" => NearestMode::RoundPreferCeil,
            "floor" => NearestMode::Floor,
            "ceil" => NearestMode::Ceil,
            other => return Err(cx.err(format!("nearest_mode '{other}' is not an ONNX mode"))),
        }),
        "linear" | "bilinear" => ResizeMode::Linear,
        "cubic" if !legacy => ResizeMode::Cubic { a: a.f("cubic_coeff_a", -0.75) },
        other => return Err(cx.err(format!("mode '{other}' is not one of nearest, linear and cubic"))),
    };
    let mut roi = vec![(0.0, 1.0); rank];
    if coord == CoordMode::TfCropAndResize {
        // The region matters to this mode only (elsewhere it may be absent or empty).
        let r = cx.floats(1, "roi")?.filter(|r| !r.is_empty());
        let r = r.ok_or_else(|| cx.err("tf_crop_and_resize needs the roi input"))?;
        if r.len() != 2 * n {
            return Err(cx.err(format!("roi {r:?} must hold a start and an end per resized axis ({n} axes)")));
        }
        for (i, &axis) in req.axes.iter().enumerate() {
            roi[axis] = (r[i], r[n + i]);
        }
    }
    let attrs = ResizeAttrs {
        mode,
        coord,
        antialias: a.i("antialias", 0) != 0 && !matches!(mode, ResizeMode::Nearest(_)),
        exclude_outside: a.i("exclude_outside", 0) != 0,
        extrapolation: a.f("extrapolation_value", 0.0),
        sizes,
        scales,
        roi,
    };
    if attrs.resized_axes(&xs).is_empty() {
        return Ok(x);
    }
    cx.add1(Op::Resize(attrs), &[x])
}

// ---------------------------------------------------------------------------------------------
// GridSample, RoiAlign
// ---------------------------------------------------------------------------------------------

fn grid_sample(cx: &mut Ctx) -> Result<V> {
    let (x, grid) = (cx.need(0)?, cx.need(1)?);
    let a = &cx.attrs;
    // Opset 16 names the modes bilinear and bicubic, opset 20 linear and cubic.
    let mode = match a.s("mode", if cx.opset() < 20 { "bilinear" } else { "linear" }).as_str() {
        "nearest" => GridMode::Nearest,
        "linear" | "bilinear" => GridMode::Linear,
        "cubic" | "bicubic" => GridMode::Cubic,
        other => return Err(cx.err(format!("mode '{other}' is not one of linear, nearest and cubic"))),
    };
    let padding = match a.s("padding_mode", "zeros").as_str() {
        "zeros" => GridPadding::Zeros,
        "border" => GridPadding::Border,
        "reflection" => GridPadding::Reflection,
        other => return Err(cx.err(format!("padding_mode '{other}' is not one of zeros, border and reflection"))),
    };
    let attrs = GridSampleAttrs { mode, padding, align_corners: a.i("align_corners", 0) != 0 };
    cx.add1(Op::GridSample(attrs), &[x, grid])
}

fn roi_align(cx: &mut Ctx) -> Result<V> {
    let (x, rois, indices) = (cx.need(0)?, cx.need(1)?, cx.need(2)?);
    let a = &cx.attrs;
    let max = match a.s("mode", "avg").as_str() {
        "avg" => false,
        "max" => true,
        other => return Err(cx.err(format!("mode '{other}' is not one of avg and max"))),
    };
    // Opset 10 has no coordinate mode: its regions are not shifted (output_half_pixel).
    let default_coord = if cx.opset() < 16 { "output_half_pixel" } else { "half_pixel" };
    let half_pixel = match a.s("coordinate_transformation_mode", default_coord).as_str() {
        "half_pixel" => true,
        "output_half_pixel" => false,
        other => {
            return Err(cx.err(format!(
                "coordinate_transformation_mode '{other}' is not one of half_pixel and output_half_pixel"
            )));
        }
    };
    let (oh, ow, ratio) = (a.i("output_height", 1), a.i("output_width", 1), a.i("sampling_ratio", 0));
    if oh <= 0 || ow <= 0 || ratio < 0 {
        return Err(cx.err(format!(
            "output_height {oh} and output_width {ow} must be positive and sampling_ratio {ratio} not negative"
        )));
    }
    let attrs = RoiAlignAttrs {
        max,
        output: [oh as usize, ow as usize],
        sampling_ratio: ratio as usize,
        spatial_scale: a.f("spatial_scale", 1.0),
        half_pixel,
    };
    cx.add1(Op::RoiAlign(attrs), &[x, rois, indices])
}

// ---------------------------------------------------------------------------------------------
// AffineGrid, CenterCropPad (built)
// ---------------------------------------------------------------------------------------------

/// AffineGrid: grid[n, p, :] = theta[n] @ (x_p, y_p[, z_p], 1), the base positions evenly
/// spaced over [-1, 1] on each spatial axis (the last axis's coordinate first): a MatMul of
/// theta `[N, r, r + 1]` with the constant base grid `[r + 1, P]`, transposed to `[N, P, r]`
/// and reshaped to `[N, d1..dr, r]`.
fn affine_grid(cx: &mut Ctx) -> Result<V> {
    let theta = cx.need(0)?;
    let ts = cx.shape(&theta);
    let size = cx.ints(1, "size")?.ok_or_else(|| cx.err("needs the size input"))?;
    if size.len() != 4 && size.len() != 5 {
        return Err(cx.err(format!("size {size:?} must be [N, C, H, W] or [N, C, D, H, W]")));
    }
    let spatial = super::to_usize(cx, &size[2..], "size")?;
    let r = spatial.len();
    if ts.len() != 3 || ts[1] != r || ts[2] != r + 1 {
        return Err(cx.err(format!("theta {ts:?} must be [N, {r}, {}] for a {r}-D size {size:?}", r + 1)));
    }
    if !cx.dtype(&theta).is_float() {
        return Err(cx.err(format!("theta must be a float tensor, it is {}", cx.dtype(&theta))));
    }
    let align = cx.attrs.i("align_corners", 0) != 0;
    // The base grid is a constant of (r + 1) * positions values: capped as folded constants are.
    let positions = spatial
        .iter()
        .try_fold(r + 1, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= 1 << 28)
        .ok_or_else(|| cx.err(format!("size {size:?} makes a base grid of more than 2^28 values")))?
        / (r + 1);
    // Row k holds coordinate k (the last spatial axis first), the last row ones.
    let mut base = vec![1.0f64; (r + 1) * positions];
    let mut index = vec![0usize; r];
    for p in 0..positions {
        for (k, axis) in (0..r).rev().enumerate() {
            base[k * positions + p] = base_position(index[axis], spatial[axis], align);
        }
        for axis in (0..r).rev() {
            index[axis] += 1;
            if index[axis] < spatial[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    let base =
        Tensor::from_f64_as(cx.dtype(&theta), vec![r + 1, positions], base).map_err(|e| cx.err(e.to_string()))?;
    let base = cx.constant(base);
    let product = cx.add1(Op::MatMul { activation: None }, &[theta, base])?;
    let grid = cx.add1(Op::Transpose { perm: vec![0, 2, 1] }, &[product])?;
    let mut shape = vec![ts[0]];
    shape.extend_from_slice(&spatial);
    shape.push(r);
    cx.add1(Op::Reshape { shape }, &[grid])
}

/// Normalised position of element `i` of `len`: the centres of the end elements at -1 and 1
/// (align_corners), or their outer edges.
fn base_position(i: usize, len: usize, align_corners: bool) -> f64 {
    if align_corners {
        if len > 1 { -1.0 + 2.0 * i as f64 / (len - 1) as f64 } else { -1.0 }
    } else {
        (2 * i + 1) as f64 / len as f64 - 1.0
    }
}

/// CenterCropPad: a centred Slice of the axes that shrink (the extra element of an odd
/// difference cut at the end), then a zero Pad of the axes that grow (the extra element at
/// the end).
fn center_crop_pad(cx: &mut Ctx) -> Result<V> {
    let x = cx.need(0)?;
    let xs = cx.shape(&x);
    let rank = xs.len();
    let shape = cx.ints(1, "shape")?.ok_or_else(|| cx.err("needs the shape input"))?;
    let shape = super::to_usize(cx, &shape, "shape")?;
    let axes = match cx.attrs.ints("axes") {
        Some(ax) => super::axes(cx, &ax, rank)?,
        None => (0..rank).collect(),
    };
    if shape.len() != axes.len() {
        return Err(cx.err(format!("shape {shape:?} must give one length per axis of {axes:?}")));
    }
    let (mut crop_axes, mut starts, mut ends) = (vec![], vec![], vec![]);
    let mut pads = vec![(0usize, 0usize); rank];
    for (&axis, &want) in axes.iter().zip(&shape) {
        let have = xs[axis];
        if want < have {
            let start = (have - want) / 2;
            crop_axes.push(axis);
            starts.push(start as i64);
            ends.push((start + want) as i64);
        } else if want > have {
            let before = (want - have) / 2;
            pads[axis] = (before, want - have - before);
        }
    }
    let mut y = x;
    if !crop_axes.is_empty() {
        let steps = vec![1; crop_axes.len()];
        y = cx.add1(Op::Slice { axes: crop_axes, starts, ends, steps }, &[y])?;
    }
    if pads.iter().any(|&(b, e)| b > 0 || e > 0) {
        y = cx.add1(Op::Pad { pads, mode: PadMode::Constant(0.0) }, &[y])?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use crate::onnx::proto::*;
    use crate::onnx::{ImportOptions, load_bytes};
    use crate::tensor::{DType, Tensor};

    fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: data_type::FLOAT,
                    shape: Some(TensorShapeProto {
                        dim: dims.iter().map(|&d| Dimension { value: Some(DimValue::Value(d)) }).collect(),
                    }),
                }),
            }),
        }
    }

    fn attr(name: &str, f: impl FnOnce(&mut AttributeProto)) -> AttributeProto {
        let mut a = AttributeProto { name: name.into(), ..Default::default() };
        f(&mut a);
        a
    }

    fn tensor(name: &str, data_type: i32, dims: usize, raw: Vec<u8>) -> TensorProto {
        TensorProto { dims: vec![dims as i64], data_type, name: name.into(), raw_data: raw, ..Default::default() }
    }

    fn int64s(name: &str, v: &[i64]) -> TensorProto {
        tensor(name, data_type::INT64, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    fn floats(name: &str, v: &[f32]) -> TensorProto {
        tensor(name, data_type::FLOAT, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// A model of one Resize node on x `[1, 2, 3, 4]` at `opset`.
    fn resize_model(inputs: &[&str], attrs: Vec<AttributeProto>, inits: Vec<TensorProto>, opset: i64) -> Vec<u8> {
        let node = NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec!["y".into()],
            name: "resize".into(),
            op_type: "Resize".into(),
            domain: String::new(),
            attribute: attrs,
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
            producer_name: "test".into(),
            producer_version: String::new(),
            graph: Some(GraphProto {
                node: vec![node],
                name: "resize".into(),
                initializer: inits,
                input: vec![value("x", &[1, 2, 3, 4])],
                output: vec![value("y", &[])],
                value_info: vec![],
            }),
        }
        .encode_to_vec()
    }

    /// Imports and runs a model with the reference at batch `n`: the output or the error text.
    fn run(bytes: &[u8], n: usize) -> Result<Tensor, String> {
        let model = load_bytes(bytes, "resize.onnx", None, &ImportOptions::default()).map_err(|e| e.to_string())?;
        let x = Tensor::from_f64_as(DType::F32, vec![n, 2, 3, 4], (0..n * 24).map(|i| i as f64).collect()).unwrap();
        crate::reference::run_model(&model, &[x]).map(|mut o| o.remove(0)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_size_of_the_exported_batch_follows_the_run() {
        let bytes = resize_model(&["x", "", "", "sizes"], vec![], vec![int64s("sizes", &[1, 2, 6, 8])], 13);
        assert_eq!(run(&bytes, 1).unwrap().shape(), &[1, 2, 6, 8]);
        let y = run(&bytes, 3).unwrap();
        assert_eq!(y.shape(), &[3, 2, 6, 8]);
        // Nearest 2x: sample 2 of the output is the upsampled sample 2 of the input.
        assert_eq!(y.to_f64s()[2 * 96], 48.0);
    }

    #[test]
    fn resize_requests_that_cannot_be_met_are_errors_naming_them() {
        let s = |v: &str| attr("x", |a| a.s = v.as_bytes().to_vec());
        let named = |name: &str, mut a: AttributeProto| {
            a.name = name.into();
            a
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                resize_model(
                    &["x", "", "scales", "sizes"],
                    vec![],
                    vec![floats("scales", &[1., 1., 2., 2.]), int64s("sizes", &[1, 2, 6, 8])],
                    13,
                ),
                "both scales and sizes",
            ),
            (resize_model(&["x"], vec![], vec![], 13), "needs scales or sizes"),
            (
                resize_model(
                    &["x", "", "scales"],
                    vec![named("mode", s("area"))],
                    vec![floats("scales", &[1., 1., 2., 2.])],
                    13,
                ),
                "mode 'area'",
            ),
            (
                resize_model(
                    &["x", "scales"],
                    vec![named("mode", s("cubic"))],
                    vec![floats("scales", &[1., 1., 2., 2.])],
                    10,
                ),
                "mode 'cubic'",
            ),
            (
                resize_model(
                    &["x", "", "scales"],
                    vec![named("coordinate_transformation_mode", s("tf_crop_and_resize"))],
                    vec![floats("scales", &[1., 1., 2., 2.])],
                    13,
                ),
                "needs the roi input",
            ),
            (resize_model(&["x", "", "scales"], vec![], vec![floats("scales", &[2., 2.])], 13), "2 scales for 4 axes"),
            (
                resize_model(
                    &["x", "", "", "sizes"],
                    vec![named("keep_aspect_ratio_policy", s("fit"))],
                    vec![int64s("sizes", &[1, 2, 6, 8])],
                    18,
                ),
                "keep_aspect_ratio_policy 'fit'",
            ),
        ];
        for (bytes, want) in cases {
            let e = run(&bytes, 1).expect_err(want);
            assert!(e.contains(want), "{e} does not say {want}");
        }
    }
}
