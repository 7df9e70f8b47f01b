//! Operations of the graph IR, their attributes and their shape and type inference, one
//! file per op family (mirroring `shaders/`): `conv`, `matmul`, `pool`, `elementwise`,
//! `reduce`, `norm`, `layout`, `index`, `convert`, `host`, `sample`, `recurrent`, `quant` and `signal`.
//!
//! Axes are those of the full tensor, as in ONNX: the batch is an ordinary dimension (axis 0
//! of the model's inputs) once a graph is specialised for a batch size, so operations on any
//! axis are allowed. Every shape in a graph is static.
//!
//! Host operations (`host.rs`) have outputs whose shape depends on the data; they never
//! appear in a [`crate::Graph`]: they run on the CPU between two device graphs (a
//! [`crate::model::HostStep`] after a [`crate::model::Segment`]).

mod conv;
mod convert;
mod elementwise;
mod host;
mod index;
mod layout;
mod matmul;
mod norm;
mod pool;
mod quant;
mod recurrent;
mod reduce;
mod sample;
mod signal;

pub use conv::{Col2ImAttrs, DeformConvAttrs};
pub use conv::{ConvAttrs, ConvTransposeAttrs};
pub(crate) use conv::{MAX_SPATIAL, axes3, check_axes, col2im_blocks, conv_dims, conv_transpose_dims, pads3};
pub(crate) use elementwise::is_signed as is_signed_int;
pub use elementwise::{Activation, BinaryOp};
pub use host::NmsAttrs;
pub use index::ScatterReduction;
pub use layout::PadMode;
pub use matmul::GemmAttrs;
pub use norm::LrnAttrs;
pub use pool::{IndexOrder, LpPoolAttrs, MaxUnpoolAttrs};
pub use pool::{PoolAttrs, PoolKind};
pub(crate) use pool::{Window, unpool_dims};
pub use quant::{DequantizeAttrs, E8m0Round, QuantizeAttrs};
pub(crate) use quant::{Granularity, granularity, scale_index};
pub use recurrent::{
    CellActivation, RecurrentAttrs, RecurrentCell, RecurrentDirection, RecurrentInputs, RecurrentSlots,
};
pub use reduce::CumulativeKind;
pub use reduce::{ReduceKind, SoftmaxKind};
pub use sample::{
    CoordMode, GridMode, GridPadding, GridSampleAttrs, NearestMode, ResizeAttrs, ResizeMode, RoiAlignAttrs,
};
pub(crate) use signal::check_output_type as signal_check_output_type;
pub use signal::{DftAttrs, LinearAttentionAttrs, StftAttrs, WindowKind};

use crate::tensor::{DType, Tensor};

pub(crate) use layout::slice_axis;
pub(crate) use matmul::matmul_shape;
pub(crate) use pool::pool_out;
pub(crate) use reduce::reduced_shape;

/// An operation of the graph IR.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Convolution over 1 to 3 spatial axes: x, w, optional bias.
    Conv(ConvAttrs),
    /// Transposed convolution over 1 to 3 spatial axes: x, w, optional bias.
    ConvTranspose(ConvTransposeAttrs),
    /// General matrix multiply: a, b, optional c.
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
    /// Elementwise binary with numpy broadcasting, then an optional activation (fused by
    /// [`crate::optimize`], e.g. the ReLU after a residual add). Comparisons give bool.
    Binary {
        /// The operation.
        op: BinaryOp,
        /// Activation fused into the write-back (float results only).
        activation: Option<Activation>,
    },
    /// Elementwise function of one value (floats; `Abs`, `Neg`, `Sign` and `Relu` also on
    /// integers).
    Unary(Activation),
    /// Elementwise "is NaN" of a float tensor, giving bool.
    IsNaN,
    /// Elementwise "is infinite" of a float tensor (positive and/or negative), giving bool.
    IsInf {
        /// Detect +infinity.
        pos: bool,
        /// Detect -infinity.
        neg: bool,
    },
    /// Elementwise logical not of a bool tensor.
    Not,
    /// Elementwise selection `cond ? x : y` with broadcasting: cond (bool), x, y.
    Where,
    /// Element type conversion with ONNX `Cast` semantics.
    Cast {
        /// The target type.
        to: DType,
    },
    /// Reduction over axes (an empty list reduces nothing: the identity).
    Reduce {
        /// What is computed.
        kind: ReduceKind,
        /// Axes reduced.
        axes: Vec<usize>,
        /// Keep reduced axes as size 1.
        keepdims: bool,
    },
    /// Index of the largest or smallest value along an axis (int64).
    ArgReduce {
        /// Largest (ArgMax) or smallest (ArgMin).
        max: bool,
        /// The axis.
        axis: usize,
        /// Keep the axis as size 1.
        keepdims: bool,
        /// On ties, the last index instead of the first.
        last: bool,
    },
    /// Softmax, log-softmax or hardmax along one axis.
    Softmax {
        /// The axis.
        axis: usize,
        /// Which of the three.
        kind: SoftmaxKind,
    },
    /// Layer normalisation over the axes from `axis` to the last: x, scale, optional bias.
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
    /// Local response normalisation across channels.
    Lrn(LrnAttrs),
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
    /// Same data, new shape (with as many elements).
    Reshape {
        /// The new shape.
        shape: Vec<usize>,
    },
    /// Permutation of axes.
    Transpose {
        /// Output axis i is input axis `perm[i]`.
        perm: Vec<usize>,
    },
    /// Padding of each axis (begin, end).
    Pad {
        /// (begin, end) per axis.
        pads: Vec<(usize, usize)>,
        /// How to fill.
        mode: PadMode,
    },
    /// Numpy broadcast of the input to a shape (ONNX Expand with its shape resolved).
    Expand {
        /// The output shape.
        shape: Vec<usize>,
    },
    /// Gather along an axis: data, indices (integers; negative ones count from the end).
    Gather {
        /// The axis of `data` indexed.
        axis: usize,
    },
    /// Indices of the nonzero elements, [rank, count] int64 (host).
    NonZero,
    /// Non-maximum suppression (host): boxes, scores, optional
    /// max_output_boxes_per_class, iou_threshold, score_threshold; selected indices `[n, 3]` int64.
    NonMaxSuppression(NmsAttrs),
    /// Unique elements (host): Y, and optionally indices, inverse indices and counts.
    Unique {
        /// Sort the unique values (else first-occurrence order).
        sorted: bool,
        /// Unique slices along this axis, or unique elements of the flattened input.
        axis: Option<usize>,
    },
    /// A tensor of the given shape (the input, int64) filled with `value` (host when the
    /// shape is computed from the data).
    ConstantOfShape {
        /// The fill value (a one-element tensor of the output's type).
        value: Tensor,
    },
    /// start, start + delta, ... below limit (host: the length depends on the values):
    /// start, limit, delta (scalars of one type).
    Range,
    /// The k largest or smallest elements along an axis (host when k is computed): x, k;
    /// values and int64 indices.
    TopK {
        /// The axis.
        axis: usize,
        /// Largest (else smallest).
        largest: bool,
        /// Sorted output (else any order; the engine always sorts).
        sorted: bool,
    },
    /// Gather of single elements along an axis: data, indices (the data's rank, no larger off
    /// the axis; negative ones count from the end). The output has the indices' shape.
    GatherElements {
        /// The axis indexed.
        axis: usize,
    },
    /// Gather of slices by index tuples (the last dimension of the indices) after `batch_dims`
    /// leading dimensions shared by data and indices: data, indices.
    GatherNd {
        /// Leading dimensions shared by data and indices.
        batch_dims: usize,
    },
    /// A copy of the data with updates written at indices along an axis (ONNX ScatterElements
    /// and Scatter): data, indices, updates (the shape of the indices). Duplicate targets
    /// combine in update order.
    ScatterElements {
        /// The axis indexed.
        axis: usize,
        /// How an update combines with the value at its target.
        reduction: ScatterReduction,
    },
    /// A copy of the data with update slices written at index tuples: data, indices, updates.
    ScatterNd {
        /// How an update combines with the value at its target.
        reduction: ScatterReduction,
    },
    /// A KV-cache update (ONNX TensorScatter): past_cache, update, optional write_indices (one
    /// per batch); the update is written along `axis` from each batch's write index.
    TensorScatter {
        /// The sequence axis (not 0).
        axis: usize,
        /// Write positions wrap around the cache's length (else they must fit).
        circular: bool,
    },
    /// One-hot encoding: indices (integers or floats, truncated; negative ones count back from
    /// `depth`, out-of-range ones give only off values), values `[off, on]`.
    OneHot {
        /// Where the new axis of length `depth` goes in the output.
        axis: usize,
        /// Number of classes.
        depth: usize,
    },
    /// The upper or lower triangle of the last two dimensions (others set to zero).
    Trilu {
        /// Keep the upper triangle (else the lower).
        upper: bool,
        /// The diagonal: 0 the main one, positive above, negative below.
        k: i64,
    },
    /// Reverses the first `sequence_lens[b]` elements along the time axis of each batch `b`:
    /// input, sequence_lens.
    ReverseSequence {
        /// The batch axis.
        batch_axis: usize,
        /// The time axis.
        time_axis: usize,
    },
    /// The slices (or elements of the flattened input) whose condition is true (host: the
    /// output length depends on the condition): input, condition (bool, may be shorter).
    Compress {
        /// The axis, or None for the flattened input.
        axis: Option<usize>,
    },
    /// Cumulative sum or product along an axis (ONNX CumSum, CumProd).
    Cumulative {
        /// Sum or product.
        kind: CumulativeKind,
        /// The axis.
        axis: usize,
        /// Each output excludes its own element.
        exclusive: bool,
        /// Accumulate from the end of the axis.
        reverse: bool,
    },
    /// The k largest or smallest elements along an axis with k known when the graph is built
    /// (the device form of TopK): values and int64 indices, sorted, equal values by lower index,
    /// NaN larger than every number.
    TopKStatic {
        /// The axis.
        axis: usize,
        /// Elements kept.
        k: usize,
        /// Largest (else smallest).
        largest: bool,
    },
    /// Deformable 2-D convolution: x, w, offset, bias, optional mask.
    DeformConv(DeformConvAttrs),
    /// Column blocks [N, C*prod(block), L] summed back into an image [N, C, image...].
    Col2Im(Col2ImAttrs),
    /// Lp pooling.
    LpPool(LpPoolAttrs),
    /// Max unpooling: x, indices.
    MaxUnpool(MaxUnpoolAttrs),
    /// Resampling of any axes of a tensor of any rank (ONNX Resize and Upsample).
    Resize(ResizeAttrs),
    /// Sampling at the normalised positions of a grid: x, grid.
    GridSample(GridSampleAttrs),
    /// Average or max pooling of bilinear samples over regions: x, rois, batch_indices.
    RoiAlign(RoiAlignAttrs),
    /// A recurrent layer (ONNX LSTM, GRU, RNN): X, W, R and the optional inputs its
    /// attributes list; outputs Y, Y_h and (LSTM) Y_c.
    Recurrent(RecurrentAttrs),
    /// ONNX `Cast` with non-default conversion attributes: `saturate = 0` for float8
    /// targets, or a `round_mode` other than `up` for float8e8m0 ([`Op::Cast`] is the
    /// default conversion).
    CastWith {
        /// The target type.
        to: DType,
        /// Float8 targets: saturate beyond the range (else infinity or NaN).
        saturate: bool,
        /// float8e8m0 targets: the rounding.
        round: E8m0Round,
    },
    /// Reinterpretation of each element's bits as another type of the same width.
    BitCast {
        /// The target type.
        to: DType,
    },
    /// Linear quantisation: x, scale, optional zero point.
    QuantizeLinear(QuantizeAttrs),
    /// Linear dequantisation: x, scale, optional zero point.
    DequantizeLinear(DequantizeAttrs),
    /// uint8 quantisation with the scale and zero point of the input's range (0 included):
    /// x (float32); y, scale and zero point.
    DynamicQuantizeLinear,
    /// Elementwise bitwise not of an integer tensor.
    BitwiseNot,
    /// Discrete Fourier transform along an axis of a signal whose last axis holds the real
    /// part (size 1) or the real and imaginary parts (size 2); the output's last axis has
    /// size 2 (or 1 for the inverse of a one-sided spectrum).
    Dft(DftAttrs),
    /// Short-time Fourier transform: signal [batch, length, 1 or 2], optional window
    /// [frame length]; output [batch, frames, bins, 2].
    Stft(StftAttrs),
    /// A window function of the given length (the input, a scalar integer; host when it
    /// comes from the data).
    Window {
        /// Which window.
        kind: WindowKind,
        /// Periodic (length N + 1 window without its last value) or symmetric.
        periodic: bool,
        /// The output's element type.
        dtype: DType,
    },
    /// The triangular mel filter bank (host when its sizes come from the data): num_mel_bins,
    /// dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz; output [dft_length / 2 +
    /// 1, num_mel_bins].
    MelWeightMatrix {
        /// The output's element type.
        dtype: DType,
    },
    /// Determinant of each square matrix over the last two axes.
    Det,
    /// Linear attention's recurrence over the sequence (ONNX `LinearAttention`): query,
    /// key, value [B, T, heads * size], the state [B, kv heads, key size, value size], then
    /// the decay (gated rules) and beta (delta rules); output and the last state.
    LinearAttention(LinearAttentionAttrs),
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
            Op::Binary { op, .. } => op.name(),
            Op::Unary(a) => a.name(),
            Op::IsNaN => "IsNaN",
            Op::IsInf { .. } => "IsInf",
            Op::Not => "Not",
            Op::Where => "Where",
            Op::Cast { .. } => "Cast",
            Op::Reduce { kind, .. } => kind.name(),
            Op::ArgReduce { max: true, .. } => "ArgMax",
            Op::ArgReduce { max: false, .. } => "ArgMin",
            Op::Softmax { kind, .. } => kind.name(),
            Op::LayerNorm { .. } => "LayerNormalization",
            Op::BatchNorm { .. } => "BatchNormalization",
            Op::Lrn(_) => "LRN",
            Op::Concat { .. } => "Concat",
            Op::Split { .. } => "Split",
            Op::Slice { .. } => "Slice",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Pad { .. } => "Pad",
            Op::Expand { .. } => "Expand",
            Op::Gather { .. } => "Gather",
            Op::NonZero => "NonZero",
            Op::NonMaxSuppression(_) => "NonMaxSuppression",
            Op::Unique { .. } => "Unique",
            Op::TopK { .. } => "TopK",
            Op::Range => "Range",
            Op::ConstantOfShape { .. } => "ConstantOfShape",
            Op::GatherElements { .. } => "GatherElements",
            Op::GatherNd { .. } => "GatherND",
            Op::ScatterElements { .. } => "ScatterElements",
            Op::ScatterNd { .. } => "ScatterND",
            Op::TensorScatter { .. } => "TensorScatter",
            Op::OneHot { .. } => "OneHot",
            Op::Trilu { .. } => "Trilu",
            Op::ReverseSequence { .. } => "ReverseSequence",
            Op::Compress { .. } => "Compress",
            Op::Cumulative { kind, .. } => kind.name(),
            Op::TopKStatic { .. } => "TopK",
            Op::DeformConv(_) => "DeformConv",
            Op::Col2Im(_) => "Col2Im",
            Op::LpPool(_) => "LpPool",
            Op::MaxUnpool(_) => "MaxUnpool",
            Op::Resize(_) => "Resize",
            Op::GridSample(_) => "GridSample",
            Op::RoiAlign(_) => "RoiAlign",
            Op::Recurrent(a) => a.cell.name(),
            Op::CastWith { .. } => "Cast",
            Op::BitCast { .. } => "BitCast",
            Op::QuantizeLinear(_) => "QuantizeLinear",
            Op::DequantizeLinear(_) => "DequantizeLinear",
            Op::DynamicQuantizeLinear => "DynamicQuantizeLinear",
            Op::BitwiseNot => "BitwiseNot",
            Op::Dft(_) => "DFT",
            Op::Stft(_) => "STFT",
            Op::Window { kind, .. } => kind.name(),
            Op::MelWeightMatrix { .. } => "MelWeightMatrix",
            Op::Det => "Det",
            Op::LinearAttention(_) => "LinearAttention",
        }
    }

    /// True for operations whose output shape depends on the input values: they run on the
    /// host, never inside a graph.
    pub fn is_host(&self) -> bool {
        matches!(
            self,
            Op::NonZero
                | Op::NonMaxSuppression(_)
                | Op::Unique { .. }
                | Op::TopK { .. }
                | Op::Range
                | Op::ConstantOfShape { .. }
                | Op::Compress { .. }
                | Op::Window { .. }
                | Op::MelWeightMatrix { .. }
        )
    }
}

/// One input of a node as shape inference sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct In<'a> {
    /// Value name (for messages).
    pub name: &'a str,
    /// Element type.
    pub dtype: DType,
    /// Static shape.
    pub shape: &'a [usize],
    /// The value, when it is a constant.
    pub konst: Option<&'a Tensor>,
}

/// Type and shape of one output.
pub(crate) type Out = (DType, Vec<usize>);

/// Result of inference: a reason on failure (wrapped with the node by the caller).
pub(crate) type Infer = std::result::Result<Vec<Out>, String>;

/// The op families: one file each in `ops/`, `reference/`, `gpu/lower/` and `onnx/ops/`, and
/// (for device families) one WGSL module in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpFamily {
    /// Conv, ConvTranspose (1 to 3 spatial axes), DeformConv, Col2Im.
    Conv,
    /// Gemm, MatMul.
    Matmul,
    /// Pooling (max with indices, average, Lp; 1 to 3 spatial axes), global pooling, MaxUnpool.
    Pool,
    /// Binary (arithmetic, comparisons, logic, bitwise and shifts), unary, classification,
    /// Not, BitwiseNot, Where.
    Elementwise,
    /// Cast.
    Convert,
    /// Reductions, arg-reductions, softmax, layer norm, cumulative sums and products, TopK
    /// with a constant k.
    Reduce,
    /// Batch norm, LRN.
    Norm,
    /// Data movement.
    Layout,
    /// Gathers and scatters (Gather, GatherElements, GatherND, ScatterElements, ScatterND,
    /// TensorScatter), OneHot, Trilu, ReverseSequence.
    Index,
    /// Operations whose output shape depends on the data (run on the host).
    Host,
    /// Resampling and sampling at computed coordinates: resize, grid sampling, region pooling.
    Sample,
    /// Recurrent layers (LSTM, GRU, RNN).
    Recurrent,
    /// Quantisation and integer arithmetic of quantised models.
    Quant,
    /// Signal processing and small numerical kernels: DFT, STFT, windows, mel filter banks,
    /// Det, the recurrence of LinearAttention.
    Signal,
}

impl Op {
    /// The family the op belongs to.
    pub fn family(&self) -> OpFamily {
        match self {
            Op::Conv(_) | Op::ConvTranspose(_) => OpFamily::Conv,
            Op::Gemm(_) | Op::MatMul { .. } => OpFamily::Matmul,
            Op::Pool(_) | Op::GlobalPool(_) => OpFamily::Pool,
            Op::Binary { .. } | Op::Unary(_) | Op::IsNaN | Op::IsInf { .. } | Op::Not | Op::Where => {
                OpFamily::Elementwise
            }
            Op::Cast { .. } => OpFamily::Convert,
            Op::Reduce { .. } | Op::ArgReduce { .. } | Op::Softmax { .. } | Op::LayerNorm { .. } => OpFamily::Reduce,
            Op::BatchNorm { .. } | Op::Lrn(_) => OpFamily::Norm,
            Op::Concat { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Pad { .. }
            | Op::Expand { .. } => OpFamily::Layout,
            Op::Gather { .. } => OpFamily::Index,
            Op::NonZero
            | Op::NonMaxSuppression(_)
            | Op::Unique { .. }
            | Op::TopK { .. }
            | Op::Range
            | Op::ConstantOfShape { .. } => OpFamily::Host,
            Op::GatherElements { .. }
            | Op::GatherNd { .. }
            | Op::ScatterElements { .. }
            | Op::ScatterNd { .. }
            | Op::TensorScatter { .. }
            | Op::OneHot { .. }
            | Op::Trilu { .. }
            | Op::ReverseSequence { .. } => OpFamily::Index,
            Op::Compress { .. } => OpFamily::Host,
            Op::Cumulative { .. } | Op::TopKStatic { .. } => OpFamily::Reduce,
            Op::DeformConv(_) | Op::Col2Im(_) => OpFamily::Conv,
            Op::LpPool(_) | Op::MaxUnpool(_) => OpFamily::Pool,
            Op::Resize(_) | Op::GridSample(_) | Op::RoiAlign(_) => OpFamily::Sample,
            Op::Recurrent(_) => OpFamily::Recurrent,
            Op::CastWith { .. }
            | Op::BitCast { .. }
            | Op::QuantizeLinear(_)
            | Op::DequantizeLinear(_)
            | Op::DynamicQuantizeLinear => OpFamily::Quant,
            Op::BitwiseNot => OpFamily::Elementwise,
            Op::Dft(_)
            | Op::Stft(_)
            | Op::Window { .. }
            | Op::MelWeightMatrix { .. }
            | Op::Det
            | Op::LinearAttention(_) => OpFamily::Signal,
        }
    }

    /// True for operations whose outputs hold input values moved, not computed (no rounding
    /// of 16-bit floats is needed after them).
    pub fn moves_values(&self) -> bool {
        matches!(self.family(), OpFamily::Layout | OpFamily::Index)
            || matches!(self, Op::Where | Op::Cast { .. } | Op::TopKStatic { .. })
    }
}

/// Checks a node's inputs and attributes and infers its outputs' types and shapes.
pub(crate) fn infer(op: &Op, ins: &[In]) -> Infer {
    match op.family() {
        OpFamily::Conv => conv::infer(op, ins),
        OpFamily::Matmul => matmul::infer(op, ins),
        OpFamily::Pool => pool::infer(op, ins),
        OpFamily::Elementwise => elementwise::infer(op, ins),
        OpFamily::Convert => convert::infer(op, ins),
        OpFamily::Reduce => reduce::infer(op, ins),
        OpFamily::Norm => norm::infer(op, ins),
        OpFamily::Layout => layout::infer(op, ins),
        OpFamily::Index => index::infer(op, ins),
        OpFamily::Host => host::infer(op, ins),
        OpFamily::Sample => sample::infer(op, ins),
        OpFamily::Recurrent => recurrent::infer(op, ins),
        OpFamily::Quant => quant::infer(op, ins),
        OpFamily::Signal => signal::infer(op, ins),
    }
}

/// Checks shared by the families' inference.
pub(crate) struct Check<'a, 'b> {
    pub ins: &'b [In<'a>],
}

impl<'a> Check<'a, '_> {
    pub fn arity(&self, lo: usize, hi: usize) -> std::result::Result<(), String> {
        if self.ins.len() < lo || self.ins.len() > hi {
            Err(format!("takes {lo}..={hi} inputs, got {}", self.ins.len()))
        } else {
            Ok(())
        }
    }

    pub fn shape(&self, i: usize) -> &'a [usize] {
        self.ins[i].shape
    }

    pub fn dtype(&self, i: usize) -> DType {
        self.ins[i].dtype
    }

    pub fn rank(&self, i: usize) -> usize {
        self.ins[i].shape.len()
    }

    pub fn konst(&self, i: usize, what: &str) -> std::result::Result<&'a Tensor, String> {
        self.ins[i].konst.ok_or_else(|| {
            format!(
                "{what} ('{}') must be a constant (computed at run time, it is not supported by this operation)",
                self.ins[i].name
            )
        })
    }

    pub fn need_const(&self, i: usize, what: &str) -> std::result::Result<(), String> {
        self.konst(i, what).map(|_| ())
    }

    pub fn need_rank(&self, i: usize, rank: usize, what: &str) -> std::result::Result<(), String> {
        if self.rank(i) != rank {
            Err(format!("{what} '{}' must have rank {rank}, has shape {:?}", self.ins[i].name, self.shape(i)))
        } else {
            Ok(())
        }
    }

    pub fn need_float(&self, i: usize, what: &str) -> std::result::Result<(), String> {
        if self.dtype(i).is_float() {
            Ok(())
        } else {
            Err(format!("{what} '{}' must be a float tensor, it is {}", self.ins[i].name, self.dtype(i)))
        }
    }

    /// Every input from `from` on has the type of input `from`.
    pub fn same_types(&self, from: usize) -> std::result::Result<DType, String> {
        let t = self.dtype(from);
        for i in &self.ins[from..] {
            if i.dtype != t {
                return Err(format!(
                    "input '{}' is {} but '{}' is {t}; ONNX requires the same type",
                    i.name, i.dtype, self.ins[from].name
                ));
            }
        }
        Ok(t)
    }
}

/// Checks that an axis is within a rank.
pub(crate) fn check_axis(axis: usize, rank: usize) -> std::result::Result<(), String> {
    if axis >= rank { Err(format!("axis {axis} is out of range for rank {rank}")) } else { Ok(()) }
}

/// Checks that every value is at least 1.
pub(crate) fn positive(vals: &[usize], what: &str) -> std::result::Result<(), String> {
    if vals.contains(&0) { Err(format!("{what} must be >= 1, got {vals:?}")) } else { Ok(()) }
}

/// Numpy broadcast of two shapes.
pub(crate) fn broadcast(a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

/// Normalises a possibly negative ONNX axis against a rank.
pub fn norm_axis(axis: i64, rank: usize) -> std::result::Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 { Err(format!("axis {axis} is out of range for rank {rank}")) } else { Ok(a as usize) }
}
