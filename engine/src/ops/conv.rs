//! Convolutions over 1, 2 or 3 spatial axes ([N, C, D1, ..., Dn]): convolution, transposed
//! convolution, deformable convolution (2-D) and Col2Im (the scatter-add of column blocks
//! back into an image).
//!
//! Per-axis attributes hold one value per spatial axis, in the order of the tensor's axes;
//! pads hold the begin of every axis, then the end of every axis (ONNX's order).

use super::{Activation, Check, In, Infer, Op, pool_out, positive};

/// Attributes of a convolution. Inputs: x [N, C, D1..Dn] (n = 1..=3), w [M, C/groups, K1..Kn]
/// (a constant, or computed: a QDQ model's dequantised weights), optional bias `[M]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    /// Stride per spatial axis.
    pub stride: Vec<usize>,
    /// Padding: the begin of each spatial axis, then the end of each ([top, left, bottom,
    /// right] in 2-D).
    pub pads: Vec<usize>,
    /// Dilation per spatial axis.
    pub dilation: Vec<usize>,
    /// Number of groups; equal to C for depthwise.
    pub groups: usize,
    /// Activation fused into the write-back.
    pub activation: Option<Activation>,
}

impl ConvAttrs {
    /// Unit strides and dilations, no padding, one group, no activation, for `axes` spatial
    /// axes.
    pub fn spatial(axes: usize) -> Self {
        ConvAttrs {
            stride: vec![1; axes],
            pads: vec![0; 2 * axes],
            dilation: vec![1; axes],
            groups: 1,
            activation: None,
        }
    }
}

impl Default for ConvAttrs {
    /// The defaults of a 2-D convolution ([`ConvAttrs::spatial`] gives those of other ranks).
    fn default() -> Self {
        ConvAttrs::spatial(2)
    }
}

/// Attributes of a transposed convolution. Inputs: x [N, C, D1..Dn] (n = 1..=3), w [C,
/// M/groups, K1..Kn] (a constant or computed), optional bias `[M]`. Output size per axis: (D-1)*s -
/// pad_begin - pad_end + d*(k-1) + 1 + output_padding.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTransposeAttrs {
    /// Stride per spatial axis.
    pub stride: Vec<usize>,
    /// Padding: the begin of each spatial axis, then the end of each.
    pub pads: Vec<usize>,
    /// Dilation per spatial axis.
    pub dilation: Vec<usize>,
    /// Extra output added at the end of each spatial axis; 0 by default.
    pub output_padding: Vec<usize>,
    /// Number of groups.
    pub groups: usize,
    /// Activation fused into the write-back.
    pub activation: Option<Activation>,
}

impl ConvTransposeAttrs {
    /// Unit strides and dilations, no padding, one group, no activation, for `axes` spatial
    /// axes.
    pub fn spatial(axes: usize) -> Self {
        ConvTransposeAttrs {
            stride: vec![1; axes],
            pads: vec![0; 2 * axes],
            dilation: vec![1; axes],
            output_padding: vec![0; axes],
            groups: 1,
            activation: None,
        }
    }
}

impl Default for ConvTransposeAttrs {
    /// The defaults of a 2-D transposed convolution.
    fn default() -> Self {
        ConvTransposeAttrs::spatial(2)
    }
}

/// Attributes of a 2-D deformable convolution. Inputs: x [N, C, H, W], w [M, C/groups, KH,
/// KW], offset [N, offset_groups*KH*KW*2, OH, OW] ((dy, dx) of every tap), bias `[M]`,
/// optional mask [N, offset_groups*KH*KW, OH, OW]. Every tap samples x bilinearly at its
/// shifted position (zero outside the image) and is scaled by its mask.
#[derive(Clone, Debug, PartialEq)]
pub struct DeformConvAttrs {
    /// Stride (h, w).
    pub stride: Vec<usize>,
    /// Padding: top, left, bottom, right.
    pub pads: Vec<usize>,
    /// Dilation (h, w).
    pub dilation: Vec<usize>,
    /// Number of groups of channels (as a convolution's).
    pub groups: usize,
    /// Number of groups of input channels that share offsets and masks.
    pub offset_groups: usize,
}

/// Attributes of Col2Im: input [N, C*prod(block), L], the columns of the L sliding blocks
/// (L = the blocks' count over every axis), summed back into an image [N, C, image...].
#[derive(Clone, Debug, PartialEq)]
pub struct Col2ImAttrs {
    /// Spatial size of the image (1 to 3 axes).
    pub image: Vec<usize>,
    /// Spatial size of a block.
    pub block: Vec<usize>,
    /// Stride per spatial axis.
    pub stride: Vec<usize>,
    /// Padding of the image: the begin of each spatial axis, then the end of each.
    pub pads: Vec<usize>,
    /// Dilation per spatial axis.
    pub dilation: Vec<usize>,
}

/// The most spatial axes the convolutions and pooling of the engine take.
pub(crate) const MAX_SPATIAL: usize = 3;

/// Per-axis values of 1 to 3 spatial axes as three, the leading axes filled with `fill`: a 1-D
/// or 2-D sweep is a 3-D one whose first axes have unit size.
pub(crate) fn axes3(v: &[usize], fill: usize) -> [usize; 3] {
    let mut out = [fill; 3];
    out[3 - v.len()..].copy_from_slice(v);
    out
}

/// Begin and end pads of 1 to 3 spatial axes as three each (zeros on the leading axes).
pub(crate) fn pads3(pads: &[usize]) -> ([usize; 3], [usize; 3]) {
    let n = pads.len() / 2;
    (axes3(&pads[..n], 0), axes3(&pads[n..], 0))
}

/// Checks that `n` spatial axes have per-axis values: `per_axis` (name, values) with one
/// value each, and pads with two.
pub(crate) fn check_axes(n: usize, per_axis: &[(&str, &[usize])], pads: &[usize]) -> Result<(), String> {
    for (name, v) in per_axis {
        if v.len() != n {
            return Err(format!("{name} {v:?} must have {n} values, one per spatial axis"));
        }
    }
    if pads.len() != 2 * n {
        return Err(format!("pads {pads:?} must have {} values (the begins, then the ends)", 2 * n));
    }
    Ok(())
}

/// Output spatial sizes of a convolution sweep: one per axis of `input`.
pub(crate) fn conv_dims(
    input: &[usize],
    kernel: &[usize],
    stride: &[usize],
    pads: &[usize],
    dilation: &[usize],
) -> Result<Vec<usize>, String> {
    let n = input.len();
    (0..n)
        .map(|i| {
            pool_out(input[i], pads[i], pads[n + i], kernel[i], dilation[i], stride[i], false).ok_or_else(|| {
                format!(
                    "kernel {kernel:?} (dilation {dilation:?}) is larger than the padded input {:?}",
                    (0..n).map(|j| input[j] + pads[j] + pads[n + j]).collect::<Vec<_>>()
                )
            })
        })
        .collect()
}

/// Output spatial sizes of a transposed convolution: one per axis of `input`.
pub(crate) fn conv_transpose_dims(
    input: &[usize],
    kernel: &[usize],
    a: &ConvTransposeAttrs,
) -> Result<Vec<usize>, String> {
    let n = input.len();
    (0..n)
        .map(|i| {
            ((input[i] - 1) * a.stride[i] + a.dilation[i] * (kernel[i] - 1) + 1 + a.output_padding[i])
                .checked_sub(a.pads[i] + a.pads[n + i])
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("padding {:?} leaves an empty output", a.pads))
        })
        .collect()
}

/// Number of sliding blocks of Col2Im per spatial axis.
pub(crate) fn col2im_blocks(a: &Col2ImAttrs) -> Result<Vec<usize>, String> {
    conv_dims(&a.image, &a.block, &a.stride, &a.pads, &a.dilation)
}

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    match op {
        Op::Conv(a) => infer_conv(a, ins),
        Op::ConvTranspose(a) => infer_conv_transpose(a, ins),
        Op::DeformConv(a) => infer_deform_conv(a, ins),
        Op::Col2Im(a) => infer_col2im(a, ins),
        _ => unreachable!("conv family"),
    }
}

/// Checks the input and weight of a (transposed) convolution: x float [N, C, spatial...] with
/// 1 to 3 spatial axes, w of x's type and rank. Returns the spatial rank.
fn check_input_weight(c: &Check) -> Result<usize, String> {
    c.arity(2, 3)?;
    c.need_float(0, "input")?;
    let rank = c.rank(0);
    if !(3..=2 + MAX_SPATIAL).contains(&rank) {
        return Err(format!(
            "input must be [N, C, spatial...] with 1 to {MAX_SPATIAL} spatial axes, has shape {:?}",
            c.shape(0)
        ));
    }
    c.need_rank(1, rank, "weight")?;
    if c.dtype(1) != c.dtype(0) {
        return Err(format!("weight is {} but the input is {}", c.dtype(1), c.dtype(0)));
    }
    positive(c.shape(1), "weight dimensions")?;
    positive(c.shape(0), "input dimensions")?;
    Ok(rank - 2)
}

fn check_bias(c: &Check, i: usize, m: usize) -> Result<(), String> {
    if c.ins.len() > i && c.shape(i) != [m] {
        return Err(format!("bias must have shape [{m}], has {:?}", c.shape(i)));
    }
    Ok(())
}

fn infer_conv(a: &ConvAttrs, ins: &[In]) -> Infer {
    let c = Check { ins };
    let n = check_input_weight(&c)?;
    let (x, w) = (c.shape(0), c.shape(1));
    check_axes(n, &[("stride", &a.stride), ("dilation", &a.dilation)], &a.pads)?;
    positive(&a.stride, "stride")?;
    positive(&a.dilation, "dilation")?;
    positive(&[a.groups], "groups")?;
    if !x[1].is_multiple_of(a.groups) || !w[0].is_multiple_of(a.groups) {
        return Err(format!("groups {} must divide input channels {} and output channels {}", a.groups, x[1], w[0]));
    }
    if w[1] * a.groups != x[1] {
        return Err(format!(
            "weight {:?} expects {} input channels ({} per group x {} groups), input has {}",
            w,
            w[1] * a.groups,
            w[1],
            a.groups,
            x[1]
        ));
    }
    check_bias(&c, 2, w[0])?;
    let dims = conv_dims(&x[2..], &w[2..], &a.stride, &a.pads, &a.dilation)?;
    Ok(vec![(c.dtype(0), [vec![x[0], w[0]], dims].concat())])
}

fn infer_conv_transpose(a: &ConvTransposeAttrs, ins: &[In]) -> Infer {
    let c = Check { ins };
    let n = check_input_weight(&c)?;
    let (x, w) = (c.shape(0), c.shape(1));
    check_axes(n, &[("stride", &a.stride), ("dilation", &a.dilation), ("output_padding", &a.output_padding)], &a.pads)?;
    positive(&a.stride, "stride")?;
    positive(&a.dilation, "dilation")?;
    positive(&[a.groups], "groups")?;
    if w[0] != x[1] || !x[1].is_multiple_of(a.groups) {
        return Err(format!(
            "weight {:?} must have {} (input channels) rows divisible by groups {}",
            w, x[1], a.groups
        ));
    }
    let m = w[1] * a.groups;
    check_bias(&c, 2, m)?;
    for i in 0..n {
        if a.output_padding[i] >= a.stride[i].max(a.dilation[i]) {
            return Err(format!(
                "output_padding {:?} must be smaller than the stride or the dilation",
                a.output_padding
            ));
        }
    }
    let dims = conv_transpose_dims(&x[2..], &w[2..], a)?;
    Ok(vec![(c.dtype(0), [vec![x[0], m], dims].concat())])
}

fn infer_deform_conv(a: &DeformConvAttrs, ins: &[In]) -> Infer {
    let c = Check { ins };
    c.arity(4, 5)?;
    c.need_float(0, "input")?;
    c.need_rank(0, 4, "input (deformable convolution is 2-D)")?;
    c.need_rank(1, 4, "weight")?;
    c.need_rank(2, 4, "offset")?;
    c.need_rank(3, 1, "bias")?;
    let t = c.same_types(0)?;
    let (x, w, off) = (c.shape(0), c.shape(1), c.shape(2));
    positive(x, "input dimensions")?;
    positive(w, "weight dimensions")?;
    check_axes(2, &[("stride", &a.stride), ("dilation", &a.dilation)], &a.pads)?;
    positive(&a.stride, "stride")?;
    positive(&a.dilation, "dilation")?;
    positive(&[a.groups, a.offset_groups], "group and offset_group")?;
    if !x[1].is_multiple_of(a.groups) || !w[0].is_multiple_of(a.groups) || w[1] * a.groups != x[1] {
        return Err(format!(
            "weight {w:?} does not fit {} input channels in {} groups (it must be [M, C/group, kH, kW] with group \
             dividing M)",
            x[1], a.groups
        ));
    }
    if !x[1].is_multiple_of(a.offset_groups) {
        return Err(format!("offset_group {} must divide the input channels {}", a.offset_groups, x[1]));
    }
    if c.shape(3) != [w[0]] {
        return Err(format!("bias must have shape [{}], has {:?}", w[0], c.shape(3)));
    }
    let dims = conv_dims(&x[2..], &w[2..], &a.stride, &a.pads, &a.dilation)?;
    let taps = a.offset_groups * w[2] * w[3];
    let want = [x[0], taps * 2, dims[0], dims[1]];
    if off != want {
        return Err(format!(
            "offset must have shape {want:?} (batch, offset_group x kH x kW x 2, output height, output width), has \
             {off:?}"
        ));
    }
    if ins.len() == 5 {
        let want = [x[0], taps, dims[0], dims[1]];
        if c.shape(4) != want {
            return Err(format!("mask must have shape {want:?}, has {:?}", c.shape(4)));
        }
    }
    Ok(vec![(t, vec![x[0], w[0], dims[0], dims[1]])])
}

fn infer_col2im(a: &Col2ImAttrs, ins: &[In]) -> Infer {
    let c = Check { ins };
    c.arity(1, 1)?;
    c.need_float(0, "input")?;
    c.need_rank(0, 3, "input")?;
    let n = a.image.len();
    if !(1..=MAX_SPATIAL).contains(&n) {
        return Err(format!("image_shape {:?} must have 1 to {MAX_SPATIAL} axes", a.image));
    }
    check_axes(n, &[("block_shape", &a.block), ("strides", &a.stride), ("dilations", &a.dilation)], &a.pads)?;
    positive(&a.image, "image_shape")?;
    positive(&a.block, "block_shape")?;
    positive(&a.stride, "strides")?;
    positive(&a.dilation, "dilations")?;
    let x = c.shape(0);
    let k: usize = a.block.iter().product();
    if x[1] == 0 || !x[1].is_multiple_of(k) {
        return Err(format!(
            "input dimension 1 ({}) must be a positive multiple of the block size {k} (block_shape {:?})",
            x[1], a.block
        ));
    }
    let blocks = col2im_blocks(a)?;
    let l: usize = blocks.iter().product();
    if x[2] != l {
        return Err(format!(
            "input dimension 2 ({}) must be the number of sliding blocks, {blocks:?} = {l}, of image_shape {:?}",
            x[2], a.image
        ));
    }
    Ok(vec![(c.dtype(0), [vec![x[0], x[1] / k], a.image.clone()].concat())])
}
