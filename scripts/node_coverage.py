#!/usr/bin/env python3
"""Turn the node-case report of engine/tests/onnx_node.rs into the coverage table of docs/onnx.md.

Usage
-----
    POOLPIPE_NODE_REPORT=/tmp/report.json cargo test -p poolpipe-engine --test onnx_node
    python3 scripts/node_coverage.py /tmp/report.json > docs/onnx.md

One row per op type of the cases: the opsets its cases use, where it runs (device, host or
not supported), float cases passing / float cases, all cases passing / all cases, and the
reasons of the cases that fail (grouped, with counts).
"""

import collections
import json
import sys

HOST = {"NonZero", "NonMaxSuppression", "Unique", "Range", "ConstantOfShape"}
SHAPE = {"Constant", "Shape", "Size", "Identity", "Dropout", "EyeLike"}
# Ops whose place depends on what is known at compile time.
MIXED = {
    "TopK": "device (host for a computed k)",
    "Compress": "host (device for a constant condition)",
    "HannWindow": "host (compile time for a constant size)",
    "HammingWindow": "host (compile time for a constant size)",
    "BlackmanWindow": "host (compile time for a constant size)",
    "MelWeightMatrix": "host (compile time for constant inputs)",
}
BUILT = {"Attention", "InstanceNormalization", "GroupNormalization", "RMSNormalization",
         "MeanVarianceNormalization", "LpNormalization", "Tile", "DepthToSpace", "SpaceToDepth",
         "Mean", "Sum", "Max", "Min", "CastLike", "Flatten", "Squeeze", "Unsqueeze", "Upsample",
         "Einsum", "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss", "RotaryEmbedding", "SwiGLU",
         "Momentum", "Adagrad", "Adam", "AffineGrid", "CenterCropPad", "GlobalLpPool", "ConvInteger",
         "MatMulInteger", "QLinearConv", "QLinearMatMul", "CausalConvWithState"}


NOTES = [
    "*wrong values (Attention)* on four bfloat16 causal cases: the expected values come from a "
    "reference whose softmax sums in a bfloat16 accumulator, rounding after every addition (NumPy's "
    "`add.reduce` over ml_dtypes' bfloat16). The engine rounds each step of a 16-bit softmax "
    "(subtract the maximum, exp, sum, divide) to the type but sums in f32, which fixes the float16 "
    "and masked cases; matching the four others bit for bit would need a chain of kv-length "
    "bfloat16 additions, which ONNX does not ask for, and the cases' rtol (1e-3) is below one "
    "bfloat16 unit.",
    "*wrong values (DFT)* on the two inverse cases: their expected values hold single-precision FFT "
    "noise (NumPy 2 computes complex64 FFTs in float32 and gives 1.9e-7 where the exact value is 0); "
    "the engine's transform (twiddles from an f64 table) gives the exact 0, which the cases' atol "
    "(1e-7) rejects.",
    "Training-mode Dropout with a ratio above 0 and Bernoulli draw random numbers: their expected "
    "values cannot be reproduced. Dropout with ratio 0 (and its mask) passes.",
    "Control flow (If, Loop, Scan, Optional*) and ai.onnx.preview's FlexAttention (its score and "
    "probability modifiers are subgraphs) are not supported; string tensors are not supported.",
    "BitCast between 64-bit types needs 64-bit words, which the device does not hold (float64 is "
    "computed as f32, int64 as i32); a constant input still folds. A uint32 input of 2^31 or more "
    "is refused at upload, naming the tensor.",
    "Default-domain opsets below 7 are refused by design (the cases of `Not` at opset 1).",
    "Element types: float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz, e8m0) and float4e2m1 values are held "
    "as f32 rounded to their type after every operation that makes them (as float16 and bfloat16), "
    "int4/uint4/int2/uint2 as integers wrapped to their range. Integer reductions, ArgMax/ArgMin "
    "and max pooling of integers run in f32 on the device: exact up to 2^24; integer scans, "
    "scatters and bitwise ops are exact in i32. float64 is computed in f32; int64 and uint32 values "
    "must fit in int32.",
    "Quantised models: QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear run as device "
    "kernels; ConvInteger and MatMulInteger are exact (f32 products summed in chunks that stay below "
    "2^24, chunks summed in int32); QLinearConv and QLinearMatMul take that exact accumulator, scale "
    "it in f32 and requantise. A constant int8 (or narrower) weight read through DequantizeLinear "
    "stays packed on the device and is dequantised by a kernel, not folded at import.",
]


def main():
    report = json.load(open(sys.argv[1]))
    by_op = collections.defaultdict(list)
    for case in report:
        for op in case["ops"] or ["(none)"]:
            by_op[op].append(case)
    floats = [c for c in report if c["float"]]
    fp = sum(c["pass"] for c in floats)
    ap = sum(c["pass"] for c in report)
    out = []
    out.append("# ONNX coverage\n")
    out.append("ONNX's backend node cases, generated from the installed `onnx` package by "
               "`scripts/onnx_node_cases.py` (every input after the first becomes an initializer), "
               "imported, compiled and run on the GPU (lavapipe here) by `engine/tests/onnx_node.rs` "
               "and compared with each case's expected outputs (its own tolerances; ONNX's default "
               "rtol 1e-3, atol 1e-7). Copies named `*_expanded*` are left out. A float case is one "
               "whose first input is a float tensor.\n")
    out.append(f"**{fp}/{len(floats)} float cases pass ({100 * fp / len(floats):.1f}%), "
               f"{ap}/{len(report)} cases in all.**\n")
    out.append("Regenerate this page with:\n")
    out.append("```\nPOOLPIPE_NODE_REPORT=/tmp/report.json cargo test -p poolpipe-engine --test onnx_node\n"
               "python3 scripts/node_coverage.py /tmp/report.json > docs/onnx.md\n```\n")
    out.append("\"Runs on\": *device* (WGSL kernels), *host* (output shape depends on the data: the CPU "
               "between two device graphs when the inputs come from the data, folded when they are "
               "constants), *compile time* (always folded: every shape is static), *built* "
               "(decomposed at import into the engine's operations), *no* (not supported).\n")
    out.append("| op | opsets | runs on | float cases | all cases | what still fails |")
    out.append("|---|---|---|---|---|---|")
    for op in sorted(by_op):
        cases = by_op[op]
        opsets = sorted({c["opset"] for c in cases if c["opset"] >= 0})
        op_floats = [c for c in cases if c["float"]]
        unsupported = any(c["reason"].startswith("unsupported op") and op in c["reason"] for c in cases)
        if op in MIXED:
            where = MIXED[op]
        elif op in HOST:
            where = "host"
        elif op in SHAPE:
            where = "compile time"
        elif unsupported and not any(c["pass"] for c in cases):
            where = "no"
        elif op in BUILT:
            where = "built"
        else:
            where = "device"
        reasons = collections.Counter(c["reason"] for c in cases if not c["pass"])
        fails = "; ".join(f"{n}x {r.replace('|', '/')}" for r, n in reasons.most_common(3))
        if len(reasons) > 3:
            fails += f"; {sum(reasons.values()) - sum(n for _, n in reasons.most_common(3))} more"
        fl = f"{sum(c['pass'] for c in op_floats)}/{len(op_floats)}" if op_floats else "-"
        out.append(f"| {op} | {', '.join(map(str, opsets))} | {where} | {fl} | "
                   f"{sum(c['pass'] for c in cases)}/{len(cases)} | {fails} |")
    out.append("")
    reasons = collections.Counter(c["reason"] for c in floats if not c["pass"])
    out.append("## Why float cases still fail\n")
    out.append("| cases | reason |")
    out.append("|---|---|")
    for r, n in reasons.most_common():
        out.append(f"| {n} | {r.replace('|', '/')} |")
    out.append("")
    out.append("## Notes\n")
    for note in NOTES:
        out.append(f"- {note}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
