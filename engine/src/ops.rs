//! Operations of the graph IR and their attributes.
//!
//! Axes are those of the full tensor, batch included (axis 0 is the batch), as in ONNX.
//! Operations that would mix the batch with other dimensions are rejected when the graph is
//! built, because the batch is chosen at run time.

/// An activation function, standalone or fused into the write-back of a conv or matmul.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// max(x, 0)
    Relu,
    /// x if x >= 0 else alpha * x
    LeakyRelu {
        /// Slope for negative inputs.
        alpha: f32,
    },
    /// min(max(x, min), max); ReLU6 is Clip { 0, 6 }.
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// 1 / (1 + exp(-x))
    Sigmoid,
    /// max(0, min(1, alpha * x + beta))
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// x * max(0, min(1, x / 6 + 1/2))
    HardSwish,
    /// x * sigmoid(x)
    Silu,
    /// GELU: x * Phi(x) with the exact erf form, or the tanh approximation.
    Gelu {
        /// Use the tanh approximation (ONNX `approximate="tanh"`).
        tanh_approx: bool,
    },
    /// tanh(x)
    Tanh,
    /// erf(x) (the error function; ONNX Erf)
    Erf,
}

impl Activation {
    /// Kernel code of the activation (the `ACT` override constant of the shaders) and its two
    /// parameters.
    pub fn code(&self) -> (u32, f32, f32) {
        match *self {
            Activation::Relu => (1, 0.0, 0.0),
            Activation::LeakyRelu { alpha } => (2, alpha, 0.0),
            Activation::Clip { min, max } => (3, min, max),
            Activation::Sigmoid => (4, 0.0, 0.0),
            Activation::HardSigmoid { alpha, beta } => (5, alpha, beta),
            Activation::HardSwish => (6, 0.0, 0.0),
            Activation::Silu => (7, 0.0, 0.0),
            Activation::Gelu { tanh_approx: false } => (8, 0.0, 0.0),
            Activation::Gelu { tanh_approx: true } => (9, 0.0, 0.0),
            Activation::Tanh => (10, 0.0, 0.0),
            Activation::Erf => (11, 0.0, 0.0),
        }
    }

    /// Applies the activation to one value (the CPU reference's definition).
    pub fn apply(&self, x: f32) -> f32 {
        let xd = x as f64;
        let y = match *self {
            Activation::Relu => xd.max(0.0),
            Activation::LeakyRelu { alpha } => {
                if xd >= 0.0 {
                    xd
                } else {
                    alpha as f64 * xd
                }
            }
            Activation::Clip { min, max } => xd.max(min as f64).min(max as f64),
            Activation::Sigmoid => 1.0 / (1.0 + (-xd).exp()),
            Activation::HardSigmoid { alpha, beta } => (alpha as f64 * xd + beta as f64).clamp(0.0, 1.0),
            Activation::HardSwish => xd * (xd / 6.0 + 0.5).clamp(0.0, 1.0),
            Activation::Silu => xd / (1.0 + (-xd).exp()),
            Activation::Gelu { tanh_approx: false } => 0.5 * xd * (1.0 + libm::erf(xd / std::f64::consts::SQRT_2)),
            Activation::Gelu { tanh_approx: true } => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * xd * (1.0 + (c * (xd + 0.044715 * xd * xd * xd)).tanh())
            }
            Activation::Tanh => xd.tanh(),
            Activation::Erf => libm::erf(xd),
        };
        y as f32
    }

    /// Short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::LeakyRelu { .. } => "LeakyRelu",
            Activation::Clip { .. } => "Clip",
            Activation::Sigmoid => "Sigmoid",
            Activation::HardSigmoid { .. } => "HardSigmoid",
            Activation::HardSwish => "HardSwish",
            Activation::Silu => "Silu",
            Activation::Gelu { .. } => "Gelu",
            Activation::Tanh => "Tanh",
            Activation::Erf => "Erf",
        }
    }
}

/// Attributes of a 2-D convolution. Inputs: x [N, C, H, W], w [M, C/groups, kH, kW]
/// (constant), optional bias [M] (constant).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Number of groups; equal to C for depthwise.
    pub groups: usize,
    /// Activation fused into the write-back.
    pub activation: Option<Activation>,
}

impl Default for ConvAttrs {
    fn default() -> Self {
        ConvAttrs { stride: [1, 1], pads: [0; 4], dilation: [1, 1], groups: 1, activation: None }
    }
}

/// Attributes of a transposed 2-D convolution. Inputs: x [N, C, H, W], w [C, M/groups, kH, kW]
/// (constant), optional bias [M]. Output size: (H-1)*s - pad_begin - pad_end + d*(k-1) + 1 +
/// output_padding.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTransposeAttrs {
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Extra rows/columns added at the bottom/right of the output (h, w).
    pub output_padding: [usize; 2],
    /// Number of groups.
    pub groups: usize,
    /// Activation fused into the write-back.
    pub activation: Option<Activation>,
}

impl Default for ConvTransposeAttrs {
    fn default() -> Self {
        ConvTransposeAttrs {
            stride: [1, 1],
            pads: [0; 4],
            dilation: [1, 1],
            output_padding: [0, 0],
            groups: 1,
            activation: None,
        }
    }
}

/// Attributes of Gemm: Y = alpha * A' B' + beta * C, A' = A or A^T, B' = B or B^T. A is the
/// activation [N, K] (transposing it would mix the batch in, so `trans_a` must be false), B
/// [K, M] or [M, K] is usually a constant, C broadcasts to [N, M].
#[derive(Clone, Debug, PartialEq)]
pub struct GemmAttrs {
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of C.
    pub beta: f32,
    /// Transpose A (unsupported for a batched A).
    pub trans_a: bool,
    /// Transpose B.
    pub trans_b: bool,
    /// Activation fused into the write-back.
    pub activation: Option<Activation>,
}

impl Default for GemmAttrs {
    fn default() -> Self {
        GemmAttrs { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false, activation: None }
    }
}

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window.
    Max,
    /// Average over the window.
    Average,
}

/// Attributes of max/average pooling over [N, C, H, W].
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    /// Max or average.
    pub kind: PoolKind,
    /// Window (h, w).
    pub kernel: [usize; 2],
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation (h, w), max pooling only.
    pub dilation: [usize; 2],
    /// Output size rounds up instead of down.
    pub ceil_mode: bool,
    /// Average pooling divides by the whole window, padding included.
    pub count_include_pad: bool,
}

impl PoolAttrs {
    /// A pooling with the given window and stride and no padding.
    pub fn new(kind: PoolKind, kernel: [usize; 2], stride: [usize; 2]) -> Self {
        PoolAttrs { kind, kernel, stride, pads: [0; 4], dilation: [1, 1], ceil_mode: false, count_include_pad: false }
    }
}

/// Elementwise binary operation with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
}

impl BinaryOp {
    /// Kernel code (the `OP` override constant).
    pub fn code(&self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
        }
    }

    /// Applies the operation to two values.
    pub fn apply(&self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// Padding modes of Pad.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// Fill with a constant.
    Constant(f32),
    /// Mirror without repeating the edge.
    Reflect,
    /// Repeat the edge value.
    Edge,
}

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
}

/// How a resize maps output to input coordinates (ONNX coordinate_transformation_mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    /// (x + 0.5) / scale - 0.5
    HalfPixel,
    /// like half_pixel, but 0 when the output length is 1
    PytorchHalfPixel,
    /// x * (in - 1) / (out - 1)
    AlignCorners,
    /// x / scale
    Asymmetric,
    /// (x + 0.5) / scale (nearest only, TensorFlow style)
    TfHalfPixelForNn,
}

/// Resize interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// Nearest neighbour.
    Nearest(NearestMode),
    /// Bilinear.
    Linear,
}

/// Attributes of a spatial resize of [N, C, H, W].
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeAttrs {
    /// Interpolation.
    pub mode: ResizeMode,
    /// Coordinate mapping.
    pub coord: CoordMode,
    /// Output height and width.
    pub out_hw: [usize; 2],
    /// Scale factors (h, w) used by the coordinate mapping; out/in when sizes were given.
    pub scales: [f32; 2],
}

/// Attributes of local response normalisation across channels.
#[derive(Clone, Debug, PartialEq)]
pub struct LrnAttrs {
    /// Number of channels summed over.
    pub size: usize,
    /// Scale.
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Additive bias (ONNX `bias`, often k).
    pub bias: f32,
}

/// An operation of the graph IR.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// 2-D convolution: x, w, [bias].
    Conv(ConvAttrs),
    /// Transposed 2-D convolution: x, w, [bias].
    ConvTranspose(ConvTransposeAttrs),
    /// General matrix multiply: a, b, [c].
    Gemm(GemmAttrs),
    /// Batched matrix multiply with numpy broadcasting of the leading dimensions: a, b.
    MatMul {
        /// Activation fused into the write-back.
        activation: Option<Activation>,
    },
    /// Max or average pooling.
    Pool(PoolAttrs),
    /// Global max or average pooling over all spatial axes: [N, C, S...] to [N, C, 1, ...].
    GlobalPool(PoolKind),
    /// Elementwise binary with broadcasting, then an optional activation (fused by
    /// [`crate::optimize`], e.g. the ReLU after a residual add).
    Binary {
        /// The operation.
        op: BinaryOp,
        /// Activation fused into the write-back.
        activation: Option<Activation>,
    },
    /// Elementwise activation.
    Unary(Activation),
    /// Softmax along one axis.
    Softmax {
        /// The axis.
        axis: usize,
    },
    /// Layer normalisation over the axes from `axis` to the last: x, scale, [bias].
    LayerNorm {
        /// First normalised axis.
        axis: usize,
        /// Added to the variance.
        epsilon: f32,
    },
    /// Batch normalisation in inference form: x, scale, bias, mean, var (constants).
    BatchNorm {
        /// Added to the variance.
        epsilon: f32,
    },
    /// Concatenation along an axis.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Split along an axis into pieces of the given sizes (one output each).
    Split {
        /// The axis.
        axis: usize,
        /// Size of each piece.
        sizes: Vec<usize>,
    },
    /// Strided slice. `starts`, `ends`, `steps` per entry of `axes`, ONNX semantics
    /// (negative indices count from the end, negative steps go backwards; clamped).
    Slice {
        /// Axes sliced.
        axes: Vec<usize>,
        /// First index per axis.
        starts: Vec<i64>,
        /// End (exclusive) per axis.
        ends: Vec<i64>,
        /// Step per axis.
        steps: Vec<i64>,
    },
    /// Same data, new per-sample shape (the batch dimension is kept). Flatten, squeeze and
    /// unsqueeze are reshapes too.
    Reshape {
        /// The new shape without the batch dimension.
        shape: Vec<usize>,
    },
    /// Permutation of axes (axis 0 must stay first).
    Transpose {
        /// Output axis i is input axis perm[i].
        perm: Vec<usize>,
    },
    /// Padding of each axis (begin, end).
    Pad {
        /// (begin, end) per axis, batch included (must be 0 there).
        pads: Vec<(usize, usize)>,
        /// How to fill.
        mode: PadMode,
    },
    /// Spatial resize.
    Resize(ResizeAttrs),
    /// Mean over axes.
    ReduceMean {
        /// Axes reduced (never 0).
        axes: Vec<usize>,
        /// Keep reduced axes as size 1.
        keepdims: bool,
    },
    /// Local response normalisation across channels.
    Lrn(LrnAttrs),
}

impl Op {
    /// The operation's name for messages (ONNX spelling where there is one).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::Gemm(_) => "Gemm",
            Op::MatMul { .. } => "MatMul",
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "MaxPool",
                PoolKind::Average => "AveragePool",
            },
            Op::GlobalPool(PoolKind::Max) => "GlobalMaxPool",
            Op::GlobalPool(PoolKind::Average) => "GlobalAveragePool",
            Op::Binary { op, .. } => match op {
                BinaryOp::Add => "Add",
                BinaryOp::Sub => "Sub",
                BinaryOp::Mul => "Mul",
                BinaryOp::Div => "Div",
            },
            Op::Unary(a) => a.name(),
            Op::Softmax { .. } => "Softmax",
            Op::LayerNorm { .. } => "LayerNormalization",
            Op::BatchNorm { .. } => "BatchNormalization",
            Op::Concat { .. } => "Concat",
            Op::Split { .. } => "Split",
            Op::Slice { .. } => "Slice",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Pad { .. } => "Pad",
            Op::Resize(_) => "Resize",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Lrn(_) => "LRN",
        }
    }
}
