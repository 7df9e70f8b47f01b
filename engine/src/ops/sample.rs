//! Sampling at computed coordinates (`shaders/sample.wgsl`): attributes and shape and type
//! inference of Resize (separable resampling of any axes of a tensor of any rank: nearest,
//! linear and cubic interpolation, antialiasing, every ONNX coordinate transformation),
//! GridSample (1-D to 3-D sampling at the normalised positions of a grid) and RoiAlign
//! (average or max pooling of bilinear samples over regions of interest).

use super::{Check, In, Infer, Op};

/// How a nearest-neighbour resize rounds the source coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    /// Round half down.
    RoundPreferFloor,
    /// Round half up.
    RoundPreferCeil,
    /// Floor.
    Floor,
    /// Ceil.
    Ceil,
    /// Resize before opset 11 and Upsample: floor on an axis that grows (or keeps its
    /// length), ceil on an axis that shrinks (onnxruntime's behaviour for those opsets).
    Legacy,
}

/// How a resize maps output to input coordinates (ONNX coordinate_transformation_mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    /// (x + 0.5) / scale - 0.5
    HalfPixel,
    /// like half_pixel, but 0 when the output length is 1
    PytorchHalfPixel,
    /// x * (in - 1) / (scale * in - 1)
    AlignCorners,
    /// x / scale
    Asymmetric,
    /// (x + 0.5) / scale (nearest only, TensorFlow style, opset 11)
    TfHalfPixelForNn,
    /// half_pixel centred: the offset that maps the middle of the input to the middle of the
    /// output when the output length was rounded down (ONNX half_pixel_symmetric)
    HalfPixelSymmetric,
    /// The region of interest `[start, end]` (normalised) of each axis stretched over the
    /// output, TensorFlow's crop_and_resize; positions outside the input take the
    /// extrapolation value.
    TfCropAndResize,
}

/// Resize interpolation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResizeMode {
    /// Nearest neighbour.
    Nearest(NearestMode),
    /// Linear (N-linear over the resized axes).
    Linear,
    /// Cubic convolution (Keys) with coefficient `a` (ONNX cubic_coeff_a).
    Cubic {
        /// The kernel's coefficient (-0.75 by default, -0.5 in TensorFlow).
        a: f32,
    },
}

/// Attributes of a resize of a tensor of any rank: every axis has an output length, a scale
/// and a region of interest; the axes whose mapping is not the identity are resampled one
/// after the other (the operation is separable).
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeAttrs {
    /// Interpolation.
    pub mode: ResizeMode,
    /// Coordinate mapping.
    pub coord: CoordMode,
    /// Linear and cubic filters are stretched by 1/scale when an axis shrinks (ONNX
    /// antialias).
    pub antialias: bool,
    /// Taps outside the input get weight 0 and the others are renormalised (ONNX
    /// exclude_outside); else they read the edge.
    pub exclude_outside: bool,
    /// Output value where tf_crop_and_resize maps outside the input.
    pub extrapolation: f32,
    /// Output length of every axis.
    pub sizes: Vec<usize>,
    /// Scale (output / input, as the coordinate mapping uses it) of every axis.
    pub scales: Vec<f64>,
    /// Region of interest (start, end) of every axis, normalised to the input; used by
    /// tf_crop_and_resize only ((0, 1) is the whole axis).
    pub roi: Vec<(f64, f64)>,
}

impl ResizeAttrs {
    /// A resize of every axis to `sizes` with the scales output / input and no region of
    /// interest (antialias, exclude_outside off).
    pub fn to_sizes(mode: ResizeMode, coord: CoordMode, input: &[usize], sizes: &[usize]) -> Self {
        ResizeAttrs {
            mode,
            coord,
            antialias: false,
            exclude_outside: false,
            extrapolation: 0.0,
            sizes: sizes.to_vec(),
            scales: input.iter().zip(sizes).map(|(&i, &o)| o as f64 / i.max(1) as f64).collect(),
            roi: vec![(0.0, 1.0); input.len()],
        }
    }

    /// The axes that are resampled, in order: those whose mapping is not the identity
    /// (another length, a scale other than 1 or a region of interest other than the whole
    /// axis), as ONNX's reference skips the others.
    pub fn resized_axes(&self, input: &[usize]) -> Vec<usize> {
        (0..input.len())
            .filter(|&a| {
                let scale_one = (self.scales[a] - 1.0).abs() <= 1e-9;
                let whole = self.coord != CoordMode::TfCropAndResize
                    || (self.roi[a].0.abs() <= 1e-9 && (self.roi[a].1 - 1.0).abs() <= 1e-9);
                !(scale_one && self.sizes[a] == input[a] && whole)
            })
            .collect()
    }
}

/// Interpolation of GridSample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridMode {
    /// The nearest sample (halfway rounds to even).
    Nearest,
    /// N-linear.
    Linear,
    /// N-cubic (Keys, a = -0.75).
    Cubic,
}

/// What GridSample reads outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridPadding {
    /// Zeros.
    Zeros,
    /// The nearest edge value.
    Border,
    /// The input mirrored at its borders, as often as needed.
    Reflection,
}

/// Attributes of GridSample: X `[N, C, d1..dr]`, grid `[N, o1..or, r]` (normalised positions,
/// the last axis first) to Y `[N, C, o1..or]`, for r = 1, 2 or 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridSampleAttrs {
    /// Interpolation.
    pub mode: GridMode,
    /// Reading outside the input.
    pub padding: GridPadding,
    /// -1 and 1 are the centres of the corner elements (else their outer edges).
    pub align_corners: bool,
}

/// Attributes of RoiAlign: X `[N, C, H, W]`, rois `[R, 4]` (x1, y1, x2, y2), batch indices
/// `[R]` to Y `[R, C, output_height, output_width]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoiAlignAttrs {
    /// Maximum (else average) of the samples of a bin.
    pub max: bool,
    /// Output height and width (bins per region).
    pub output: [usize; 2],
    /// Samples per bin along each axis; 0 adapts to the region (ceil(region / bins)).
    pub sampling_ratio: usize,
    /// Factor from roi coordinates to the input's.
    pub spatial_scale: f32,
    /// Shift the region by -0.5 (half_pixel); else output_half_pixel (regions at least 1x1).
    pub half_pixel: bool,
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    match op {
        Op::Resize(a) => resize(&c, a),
        Op::GridSample(a) => grid_sample(&c, a),
        Op::RoiAlign(a) => roi_align(&c, a),
        _ => Err(format!("{} is not an operation of the sample family", op.name())),
    }
}

fn resize(c: &Check, a: &ResizeAttrs) -> Infer {
    c.arity(1, 1)?;
    let x = c.shape(0);
    let r = x.len();
    if a.sizes.len() != r || a.scales.len() != r || a.roi.len() != r {
        return Err(format!(
            "needs an output size, a scale and a region per axis of the rank-{r} input (got {}, {} and {})",
            a.sizes.len(),
            a.scales.len(),
            a.roi.len()
        ));
    }
    if !matches!(a.mode, ResizeMode::Nearest(_)) {
        c.need_float(0, "input")?;
    }
    if let Some(s) = a.scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(format!("scales {:?} must be positive (found {s})", a.scales));
    }
    if a.roi.iter().any(|(s, e)| !s.is_finite() || !e.is_finite()) {
        return Err(format!("region of interest {:?} must be finite", a.roi));
    }
    if let ResizeMode::Cubic { a: k } = a.mode
        && !k.is_finite()
    {
        return Err(format!("cubic_coeff_a {k} must be finite"));
    }
    if a.coord == CoordMode::TfHalfPixelForNn && !matches!(a.mode, ResizeMode::Nearest(_)) {
        return Err("tf_half_pixel_for_nn applies to nearest mode only".into());
    }
    for axis in a.resized_axes(x) {
        if x[axis] == 0 && a.sizes[axis] > 0 {
            return Err(format!("axis {axis} of the input is empty; it cannot be resized to {}", a.sizes[axis]));
        }
    }
    Ok(vec![(c.dtype(0), a.sizes.clone())])
}

fn grid_sample(c: &Check, _a: &GridSampleAttrs) -> Infer {
    c.arity(2, 2)?;
    c.need_float(0, "input")?;
    c.need_float(1, "grid")?;
    let (x, g) = (c.shape(0), c.shape(1));
    if !(3..=5).contains(&x.len()) {
        return Err(format!("input must be [N, C, d1..dr] with 1 to 3 spatial axes, has shape {x:?}"));
    }
    let r = x.len() - 2;
    if g.len() != r + 2 || g[0] != x[0] || g[r + 1] != r {
        return Err(format!(
            "grid must be [N, o1..o{r}, {r}] for the input {x:?} (N = {}, {r} coordinates per position), has shape {g:?}",
            x[0]
        ));
    }
    if x[2..].contains(&0) && g[1..=r].iter().all(|&d| d > 0) && x[1] > 0 {
        return Err(format!("the input {x:?} has an empty spatial axis; there is nothing to sample"));
    }
    let mut out = vec![x[0], x[1]];
    out.extend_from_slice(&g[1..=r]);
    Ok(vec![(c.dtype(0), out)])
}

fn roi_align(c: &Check, a: &RoiAlignAttrs) -> Infer {
    c.arity(3, 3)?;
    c.need_float(0, "input")?;
    c.need_float(1, "rois")?;
    c.need_rank(0, 4, "input")?;
    c.need_rank(1, 2, "rois")?;
    c.need_rank(2, 1, "batch_indices")?;
    if !c.dtype(2).is_int() {
        return Err(format!("batch_indices must be integers, they are {}", c.dtype(2)));
    }
    let (x, rois, bi) = (c.shape(0), c.shape(1), c.shape(2));
    if rois[1] != 4 || bi[0] != rois[0] {
        return Err(format!(
            "rois must be [R, 4] and batch_indices [R]; they are {rois:?} and {bi:?} (one batch index per region)"
        ));
    }
    if a.output.contains(&0) {
        return Err(format!("output_height and output_width must be >= 1, got {:?}", a.output));
    }
    if !a.spatial_scale.is_finite() {
        return Err(format!("spatial_scale {} must be finite", a.spatial_scale));
    }
    if rois[0] > 0 && (x[0] == 0 || x[2] == 0 || x[3] == 0) {
        return Err(format!("the input {x:?} is empty; there is nothing to pool"));
    }
    if let Some(k) = c.ins[2].konst
        && let Some(bad) = k.to_i64s().into_iter().find(|&b| b < 0 || b >= x[0] as i64)
    {
        return Err(format!("batch index {bad} is out of range for a batch of {}", x[0]));
    }
    Ok(vec![(c.dtype(0), vec![rois[0], x[1], a.output[0], a.output[1]])])
}
