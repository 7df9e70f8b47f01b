//! The mapping of ONNX op types to IR operations, one file per op family (mirroring
//! `shaders/` and the reference executor), each handling the per-opset differences of its
//! ops. `shape.rs` holds the ops that only produce constants or aliases.

mod attention;
mod conv;
mod convert;
mod elementwise;
mod host;
mod index;
mod layout;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod shape;
// [index] begin
// [index] end
// [conv-pool] begin
// [conv-pool] end
// [sample] begin
// [sample] end
// [recurrent] begin
// [recurrent] end
// [quant] begin
mod quant;
// [quant] end
// [misc] begin
// [misc] end

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
    "Resize",
    "Slice",
    "SpaceToDepth",
    "Split",
    "Squeeze",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Upsample",
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
    // [index] begin
    // [index] end
    // [conv-pool] begin
    // [conv-pool] end
    // [sample] begin
    // [sample] end
    // [recurrent] begin
    // [recurrent] end
    // [quant] begin
    "BitCast",
    "ConvInteger",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "QLinearConv",
    "QLinearMatMul",
    "QuantizeLinear",
    // [quant] end
    // [misc] begin
    // [misc] end
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
        // [index] begin
        // [index] end
        // [conv-pool] begin
        // [conv-pool] end
        // [sample] begin
        // [sample] end
        // [recurrent] begin
        // [recurrent] end
        // [quant] begin
        "QuantizeLinear" | "DequantizeLinear" | "ConvInteger" | "MatMulInteger" => 2,
        "QLinearConv" | "QLinearMatMul" => 8,
        // [quant] end
        // [misc] begin
        // [misc] end
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
        "Concat" | "DepthToSpace" | "Expand" | "Flatten" | "Pad" | "Reshape" | "Resize" | "Slice" | "SpaceToDepth"
        | "Split" | "Squeeze" | "Tile" | "Transpose" | "Unsqueeze" | "Upsample" => layout::map(cx),
        "Gather" => index::map(cx),
        "NonMaxSuppression" | "NonZero" | "TopK" | "Unique" => host::map(cx),
        "Constant" | "ConstantOfShape" | "Dropout" | "Identity" | "Range" | "Shape" | "Size" => shape::map(cx),
        // [index] begin
        // [index] end
        // [conv-pool] begin
        // [conv-pool] end
        // [sample] begin
        // [sample] end
        // [recurrent] begin
        // [recurrent] end
        // [quant] begin
        "BitCast"
        | "ConvInteger"
        | "DequantizeLinear"
        | "DynamicQuantizeLinear"
        | "MatMulInteger"
        | "QLinearConv"
        | "QLinearMatMul"
        | "QuantizeLinear" => quant::map(cx),
        // [quant] end
        // [misc] begin
        // [misc] end
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
