//! The mapping of ONNX op types to IR operations, one file per op family (mirroring
//! `shaders/` and the reference executor), each handling the per-opset differences of its
//! ops. `shape.rs` holds the ops that only produce constants or aliases.

mod attention;
mod conv;
mod convert;
mod einsum;
mod elementwise;
mod host;
mod index;
mod layout;
mod loss;
mod matmul;
mod norm;
mod pool;
mod quant;
mod recurrent;
mod reduce;
mod sample;
mod shape;
mod signal;
pub(super) mod training;

use super::Ctx;
use crate::error::Result;

/// Every op type the importer maps, by family.
pub(super) const SUPPORTED: &[&str] = &[
    // conv
    "Conv",
    "ConvTranspose",
    // matmul
    "Attention",
    "Gemm",
    "MatMul",
    // pool
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "MaxPool",
    // elementwise
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "And",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "Ceil",
    "Celu",
    "Clip",
    "Cos",
    "Cosh",
    "Div",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "IsInf",
    "IsNaN",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "Max",
    "Mean",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pow",
    "PRelu",
    "Reciprocal",
    "Relu",
    "Round",
    "Selu",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Softplus",
    "Softsign",
    "Sqrt",
    "Sub",
    "Sum",
    "Swish",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Where",
    "Xor",
    // convert
    "Cast",
    "CastLike",
    // reduce
    "ArgMax",
    "ArgMin",
    "Hardmax",
    "LayerNormalization",
    "LogSoftmax",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Softmax",
    // norm
    "BatchNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "LRN",
    "LpNormalization",
    "MeanVarianceNormalization",
    "RMSNormalization",
    // layout
    "Concat",
    "DepthToSpace",
    "Expand",
    "Flatten",
    "Pad",
    "Reshape",
    "Slice",
    "SpaceToDepth",
    "Split",
    "Squeeze",
    "Tile",
    "Transpose",
    "Unsqueeze",
    // index
    "Gather",
    // host
    "NonMaxSuppression",
    "NonZero",
    "TopK",
    "Unique",
    // shape and constants
    "Constant",
    "ConstantOfShape",
    "Dropout",
    "Identity",
    "Range",
    "Shape",
    "Size",
    "Compress",
    "CumProd",
    "CumSum",
    "EyeLike",
    "GatherElements",
    "GatherND",
    "OneHot",
    "ReverseSequence",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "TensorScatter",
    "Trilu",
    "Col2Im",
    "DeformConv",
    "GlobalLpPool",
    "LpPool",
    "MaxUnpool",
    "AffineGrid",
    "CenterCropPad",
    "GridSample",
    "Resize",
    "RoiAlign",
    "Upsample",
    "GRU",
    "LSTM",
    "RNN",
    "BitCast",
    "ConvInteger",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "QLinearConv",
    "QLinearMatMul",
    "QuantizeLinear",
    "BitShift",
    "BitwiseAnd",
    "BitwiseNot",
    "BitwiseOr",
    "BitwiseXor",
    "SwiGLU",
    "BlackmanWindow",
    "DFT",
    "Det",
    "HammingWindow",
    "HannWindow",
    "MelWeightMatrix",
    "STFT",
    "NegativeLogLikelihoodLoss",
    "SoftmaxCrossEntropyLoss",
    "Einsum",
    "RotaryEmbedding",
    "CausalConvWithState",
    "LinearAttention",
];

/// True for op types the importer maps.
pub(super) fn supported(op: &str) -> bool {
    SUPPORTED.contains(&op)
}

/// Inputs an op cannot do without (later ones are optional or absent in the opset).
pub(super) fn min_inputs(op: &str, opset: i64) -> usize {
    match op {
        "Constant" => 0,
        "BatchNormalization" => 5,
        "Where" | "Range" | "InstanceNormalization" | "GroupNormalization" | "Attention" => 3,
        "Slice" if opset >= 10 => 3,
        "Reshape" => 2,
        "Upsample" if opset >= 9 => 2,
        "TopK" if opset >= 10 => 2,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "PRelu" | "Equal" | "Less" | "LessOrEqual" | "Greater"
        | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Gemm" | "MatMul" | "Conv" | "ConvTranspose"
        | "LayerNormalization" | "RMSNormalization" | "Gather" | "Expand" | "Tile" | "CastLike"
        | "NonMaxSuppression" => 2,
        "GatherElements" | "GatherND" | "TensorScatter" | "ReverseSequence" | "Compress" | "CumSum" | "CumProd" => 2,
        "ScatterElements" | "Scatter" | "ScatterND" | "OneHot" => 3,
        "Col2Im" | "DeformConv" => 3,
        "MaxUnpool" => 2,
        "GridSample" | "AffineGrid" | "CenterCropPad" => 2,
        "RoiAlign" => 3,
        "LSTM" | "GRU" | "RNN" => 3,
        "QuantizeLinear" | "DequantizeLinear" | "ConvInteger" | "MatMulInteger" => 2,
        "QLinearConv" | "QLinearMatMul" => 8,
        "BitShift" | "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" | "SwiGLU" | "STFT" => 2,
        "MelWeightMatrix" => 5,
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => 2,
        "Adagrad" | "Adam" | "Momentum" | "RotaryEmbedding" | "LinearAttention" => 3,
        "CausalConvWithState" => 2,
        _ => 1,
    }
}

/// Maps one node.
pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    match cx.op() {
        "Conv" | "ConvTranspose" => conv::map(cx),
        "Gemm" | "MatMul" => matmul::map(cx),
        "Attention" => attention::map(cx),
        "AveragePool" | "MaxPool" | "GlobalAveragePool" | "GlobalMaxPool" => pool::map(cx),
        "Cast" | "CastLike" => convert::map(cx),
        "ArgMax" | "ArgMin" | "Hardmax" | "LayerNormalization" | "LogSoftmax" | "Softmax" => reduce::map(cx),
        op if op.starts_with("Reduce") => reduce::map(cx),
        "BatchNormalization"
        | "GroupNormalization"
        | "InstanceNormalization"
        | "LRN"
        | "LpNormalization"
        | "MeanVarianceNormalization"
        | "RMSNormalization" => norm::map(cx),
        "Concat" | "DepthToSpace" | "Expand" | "Flatten" | "Pad" | "Reshape" | "Slice" | "SpaceToDepth" | "Split"
        | "Squeeze" | "Tile" | "Transpose" | "Unsqueeze" => layout::map(cx),
        "Gather" => index::map(cx),
        "NonMaxSuppression" | "NonZero" | "TopK" | "Unique" => host::map(cx),
        "Constant" | "ConstantOfShape" | "Dropout" | "Identity" | "Range" | "Shape" | "Size" => shape::map(cx),
        "GatherElements" | "GatherND" | "ScatterElements" | "Scatter" | "ScatterND" | "TensorScatter" | "OneHot"
        | "Trilu" | "ReverseSequence" | "EyeLike" => index::map(cx),
        "Compress" => host::map(cx),
        "CumSum" | "CumProd" => reduce::map(cx),
        "Col2Im" | "DeformConv" => conv::map(cx),
        "GlobalLpPool" | "LpPool" | "MaxUnpool" => pool::map(cx),
        "AffineGrid" | "CenterCropPad" | "GridSample" | "Resize" | "RoiAlign" | "Upsample" => sample::map(cx),
        "LSTM" | "GRU" | "RNN" => recurrent::map(cx),
        "BitCast"
        | "ConvInteger"
        | "DequantizeLinear"
        | "DynamicQuantizeLinear"
        | "MatMulInteger"
        | "QLinearConv"
        | "QLinearMatMul"
        | "QuantizeLinear" => quant::map(cx),
        "DFT" | "STFT" | "HannWindow" | "HammingWindow" | "BlackmanWindow" | "MelWeightMatrix" | "Det" => {
            signal::map(cx)
        }
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => loss::map(cx),
        "Einsum" => einsum::map(cx),
        "RotaryEmbedding" => attention::rotary_embedding(cx),
        "LinearAttention" => attention::linear_attention(cx),
        "CausalConvWithState" => signal::causal_conv_with_state(cx),
        // The training domain's optimisers (parse.rs admits them by domain, not SUPPORTED).
        "Adagrad" | "Adam" | "Momentum" => training::map(cx),
        _ => elementwise::map(cx),
    }
}

/// Normalises ONNX axes (negative ones count from the end) against a rank.
pub(super) fn axes(cx: &Ctx, ax: &[i64], rank: usize) -> Result<Vec<usize>> {
    ax.iter().map(|&a| crate::ops::norm_axis(a, rank).map_err(|e| cx.err(e))).collect()
}

/// One normalised axis.
pub(super) fn axis(cx: &Ctx, a: i64, rank: usize) -> Result<usize> {
    crate::ops::norm_axis(a, rank).map_err(|e| cx.err(e))
}

/// Non-negative integers.
pub(super) fn to_usize(cx: &Ctx, v: &[i64], what: &str) -> Result<Vec<usize>> {
    v.iter().map(|&x| usize::try_from(x).map_err(|_| cx.err(format!("{what} {v:?} must be non-negative")))).collect()
}
