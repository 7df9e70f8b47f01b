#!/usr/bin/env python3
"""Generate ONNX test models and onnxruntime oracle outputs for poolpipe's ONNX importer.

Usage
-----
    python3 scripts/gen_onnx_models.py OUT_DIR [--full] [--only NAME[,NAME...]] [--seed 0]
    python3 scripts/gen_onnx_models.py OUT_DIR --tasks [--full] [--only NAME,...] [--seed 0]
    python3 scripts/gen_onnx_models.py OUT_DIR --light [--random-weights] [--only NAME,...]
    python3 scripts/gen_onnx_models.py --list [--tasks | --light [--random-weights]]

Modes
-----
default   Thirteen synthetic models (a block or a small stack shaped like a CNN family), built
          with the ``onnx.helper`` API, with random weights (fixed seed derived from ``--seed``
          and the model name) and BatchNormalization with random scale, bias, mean and positive
          variance wherever the family has it:

            name                   opset  what
            resnet50_block         13     stem, 2 bottlenecks (1x1/2 projection), GAP, Flatten,
                                          Identity, Dropout, Gemm(transB=1)
            wide_resnet101_block   15     stem, wide bottleneck, stride-2 projection
            resnext_block          14     stem, 2 bottlenecks with grouped 3x3 (8 / 32 groups)
            mobilenetv2_block      11     inverted residuals, ReLU6 = Clip(min, max inputs)
            mobilenetv3_block      14     HardSwish, 5x5 depthwise, SE with HardSigmoid
            efficientnet_b0_block  12     MBConv, SiLU = x*Sigmoid(x), SE via ReduceMean(axes attr)
            convnext_t_block       20     7x7 dw, NHWC LayerNormalization, MatMul MLP, Gelu op
                                          (block 1) and the Div/Erf/Add/Mul form (block 2),
                                          layer scale (Constant), ReduceMean(axes input),
                                          Gemm(transB=0)
            inception_v3_block     11     1x7 / 7x1 convs, AvgPool(count_include_pad=0),
                                          Split(split attr), Concat; odd spatial sizes
            repvgg_block           16     3x3+BN, 1x1+BN, identity BN, Add / 3-input Sum
            fcn_head               13     dilated convs, Dropout, Resize linear (half_pixel and
                                          align_corners, sizes from Shape subgraphs), Softmax;
                                          2 outputs
            fpn_neck               17     Resize nearest (Constant scales, asymmetric), Reshape
                                          via Shape->Gather->Unsqueeze->Concat and with 0,
                                          Concat axis 2; 2 outputs
            nonlocal_block         15     batched MatMul attention, Softmax(-1), Transpose
            dbnet_head             13     text-detection decoder: ConvTranspose 2x2/2 with the
                                          default output_padding (absent, then [0, 0]), BN,
                                          Sigmoid probability map

          Sizes are reduced (inputs 32..64 pixels, narrow widths, 1..10 MFLOP per sample) unless
          ``--full`` asks for the real ones (224x224 mostly, real widths; 0.1..27 GFLOP; slow,
          never used by the tests).
--tasks   Seven task-level models instead, built the same way (random weights, reduced sizes
          unless ``--full``), in the forms real exporters write:

            name              opset  what
            yolo_detector     17     YOLOv5/v8 pieces: Conv+BN+SiLU, C2f (Split input) and C3,
                                     SPPF (MaxPool chain), nearest Resize + Concat neck; a detect
                                     head on two levels whose grid comes from Range/Expand and
                                     Range/Tile, Sigmoid/Exp decode, Concat over levels;
                                     MatMul to corners, NonMaxSuppression, Gather of the
                                     selected boxes and scores by computed flat indices;
                                     4 outputs (predictions, scores, selected, detections)
            ssd_head          13     class/box conv heads on three levels, NHWC Reshape/Concat,
                                     Softmax, ReduceMax, TopK (constant k), GatherND
                                     (batch_dims=1), SSD decode against a constant anchor table
                                     (Exp), NonMaxSuppression, GatherND of the selection;
                                     4 outputs (boxes, scores, selected, detections)
            deeplabv3plus     16     ASPP (dilated 3x3 at rates 2/4/6, GlobalAveragePool branch
                                     with bilinear Resize back), Dropout, ConvTranspose 4x4/2,
                                     low-level projection, Resize cubic (pytorch_half_pixel,
                                     cubic_coeff_a=-0.75) and linear (align_corners); 2 outputs
            face_detector     13     RetinaFace/MTCNN: PRelu with [C,1,1] and [1] slopes, FPN
                                     (nearest Resize to a Shape-built size), SSH, box/score/
                                     landmark heads, Softmax over 2; 48x64 input; 3 outputs
            crnn              14     grey 32x64 line, conv stack, (2,1)-strided MaxPools, Squeeze,
                                     Transpose to [T, N, C], two bidirectional LSTMs (the first
                                     with ConstantOfShape zero states), MatMul, LogSoftmax;
                                     output [T, N, classes] (batch on axis 1)
            vit_tiny          23     patch conv, class token Expand (Equal/Where/ConstantOfShape),
                                     position Add, a MatMul/Softmax attention block (Split +
                                     Squeeze of qkv) and an Attention-op block, LayerNorm, erf
                                     GELU, Gather of the class token, Gemm; 2 outputs
            qdq_resnet_block  13     a ResNet stem, basic block and projected bottleneck (BN
                                     folded) quantised by onnxruntime's quantize_static: QDQ
                                     format, uint8 activations (MinMax calibration, 8 samples),
                                     per-channel int8 weights, int32 biases, Relu kept

          Outputs whose row count depends on the data (NonMaxSuppression's selected [K, 3]
          (batch, class, box) and the rows gathered with it) are int64 or float32 as the graph
          says; their rows are batch-major.  An NMS score threshold is set when the model is
          built: the 90% quantile of the scores the NMS gets on a calibration batch (random
          weights put scores anywhere in [0, 1]).  Every TopK and NonMaxSuppression must decide
          robustly: the indices it outputs must not change when each value of its data inputs
          is moved by up to 1e-5 of its magnitude (|value|, at least 1% of the tensor's
          largest; 8 random trials; for TopK also: no two of the k + 1 largest values closer
          than that), and an NMS must keep at least two boxes per
          sample and suppress some box by IoU.  When an input fails this, the next input
          attempt is drawn (seed also derived from the attempt number; up to 16).  With
          ``--full`` (thousands of boxes) the first input is kept and the problems are printed
          as warnings and listed in the manifest ("decision_warnings").
--light   The "light" models shipped inside the onnx package
          (``onnx/backend/test/data/light/light_*.onnx``: AlexNet, DenseNet-121, Inception v1/v2,
          ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512; opset 9, IR 3, 224x224).  Their
          weights are ``ConstantOfShape`` with value 0.02, so all class scores are equal; the
          packaged expected output ``light_*_output_0.pb`` is what the onnx backend test gets
          from the deterministic input ``arange(n).reshape(shape) / n`` (see
          ``onnx.backend.test.runner.Runner.generate_dummy_data`` with ``random=False``).
          ``--random-weights`` also writes ``light_NAME_rw`` variants whose ConstantOfShape
          weights are random initializers (informative outputs; 5 to 550 MB per model).
--list    Print the model names of the selected mode, one per line, and exit.

Every model has one float32 input of shape [N, C, H, W] with a symbolic batch "N" (C = 3 except
crnn's 1; light models keep their fixed batch of 1 when a Reshape target hard-codes it) and
outputs whose first dimension is the batch, except crnn's [T, N, classes] and the
data-dependent outputs of the detectors.  Every model passes
``onnx.checker.check_model(model, full_check=True)``.

Files written into OUT_DIR for each model NAME
----------------------------------------------
NAME.onnx                   the model
NAME.b{B}.input.npy         float32 standard-normal input of batch B (B = 1 and 4; light models
                            with a fixed batch: B = 1 only); seed derived from --seed, NAME, B
                            (and the input attempt when it is not 0, --tasks only)
NAME.b{B}.out{K}.npy        output K (0-based, model output order) computed by onnxruntime with
                            the CPUExecutionProvider (default session options), in the output's
                            element type (int64 for NMS selections)
NAME.expected.npy           (--light, not _rw) the packaged output_0.pb as .npy
NAME.expected_input.npy     (--light, not _rw) the input that produced it
manifest.json               {"generator", "onnx_version", "onnxruntime_version",
                             "models": [{"name", "file", "source", "opset", "ir_version",
                             "inputs": [{"name", "shape"}], "outputs": [names],
                             "output_shapes", "batches", "flops_per_sample", "op_types",
                             "seed", ...}]}
                            --tasks entries add "output_dtypes" (numpy names), "batch_axes"
                            ({output: axis} where the batch is not axis 0), "rows_by_batch"
                            ({output: selection output} for data-dependent row counts),
                            "output_quanta" (per output: the scale of the DequantizeLinear that
                            produces it, else null), "input_attempt", "decisions" (per TopK /
                            NMS node and batch: the smallest relative TopK gap, or the boxes
                            kept per sample and what the per-class cap alone would keep) and
                            "decision_warnings" (--full only: the checks that failed).
                            Light entries add "expected", "expected_input" (null when the input
                            could not be determined), "expected_vs_ort_max_abs_diff" and, when
                            the batch stays fixed, "batch_note" with the reason.  Entries of an
                            existing OUT_DIR/manifest.json whose names are not regenerated are
                            kept, so the default and --light modes can share one directory.

Checks done for every model: the checker (with strict shape inference), onnxruntime runs at
every batch with finite outputs, and, where the batch is symbolic, sample 0 of the batch-4 run
equals a batch-1 run of that sample (catches hard-coded batch sizes; for a data-dependent output,
the rows whose batch index is 0 equal the batch-1 run's rows, integers exactly).  The script
exits non-zero with a message on any failure.

FLOPs are approximate: 2 * multiply-accumulates of Conv, MatMul and Gemm, per sample (the count
``poolpipe inspect`` checks against; ConvTranspose, LSTM and Attention are not counted).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

BATCHES = (1, 4)
RANDOM_WEIGHTS_SUFFIX = "_rw"
PRODUCER = "poolpipe/scripts/gen_onnx_models.py"


class GenError(Exception):
    """A failure that ends the script with a message and a non-zero exit status."""


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from a stable hash of the parts (Python's hash() is salted per process)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# ---------------------------------------------------------------------------------------------
# Graph builder
# ---------------------------------------------------------------------------------------------


class Builder:
    """Accumulates nodes and initializers of one graph; tensor values are referred to by name.

    Channel counts are passed explicitly by the model functions (the builder does not track
    shapes); output shapes are found afterwards by shape inference.
    """

    def __init__(self, name: str, opset: int, rng: np.random.Generator):
        self.name = name
        self.opset = opset
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.input = "input"
        self._counts: dict[str, int] = {}
        self._cache: dict[str, str] = {}

    # -- naming and raw nodes -----------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        n = self._counts.get(prefix, 0)
        self._counts[prefix] = n + 1
        return f"{prefix}_{n}"

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> str | list[str]:
        """Append a node; returns its output name (or list of names when n_out > 1)."""
        base = self.fresh(op.lower())
        outs = [base if n_out == 1 else f"{base}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=base, **attrs))
        return outs[0] if n_out == 1 else outs

    def init(self, prefix: str, array: np.ndarray) -> str:
        name = self.fresh(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array).copy(order="C"), name))
        return name

    def const(self, prefix: str, array: np.ndarray) -> str:
        """A Constant node (used for small constants, initializers hold the weights)."""
        name = self.fresh(prefix)
        tensor = numpy_helper.from_array(np.asarray(array).copy(order="C"), name + "_value")
        self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=tensor))
        return name

    def i64(self, prefix: str, values: list[int], node: bool = False) -> str:
        arr = np.array(values, dtype=np.int64)
        return self.const(prefix, arr) if node else self.init(prefix, arr)

    def scalar_const(self, value: float) -> str:
        """A float32 scalar Constant node, shared within the graph."""
        key = f"scalar:{value!r}"
        if key not in self._cache:
            self._cache[key] = self.const("scalar", np.array(value, dtype=np.float32))
        return self._cache[key]

    # -- random parameters --------------------------------------------------------------------

    def he(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)

    def small(self, shape: tuple[int, ...], scale: float = 0.1) -> np.ndarray:
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def uniform(self, shape: tuple[int, ...], lo: float, hi: float) -> np.ndarray:
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    # -- layers --------------------------------------------------------------------------------

    def conv(self, x: str, cin: int, cout: int, k: int | tuple[int, int], stride: int = 1,
             pads: list[int] | None = None, groups: int = 1, dilation: int = 1,
             bias: bool = False, gain: float = 1.0) -> str:
        kh, kw = (k, k) if isinstance(k, int) else k
        if pads is None:  # "same" padding for odd kernels at stride 1
            ph, pw = dilation * (kh - 1) // 2, dilation * (kw - 1) // 2
            pads = [ph, pw, ph, pw]
        fan_in = cin // groups * kh * kw
        inputs = [x, self.init("w", gain * self.he((cout, cin // groups, kh, kw), fan_in))]
        if bias:
            inputs.append(self.init("b", self.small((cout,))))
        attrs = dict(kernel_shape=[kh, kw], strides=[stride, stride], pads=pads)
        if groups != 1:
            attrs["group"] = groups
        if dilation != 1:
            attrs["dilations"] = [dilation, dilation]
        return self.node("Conv", inputs, **attrs)

    def bn(self, x: str, c: int, eps: float = 1e-5) -> str:
        scale = self.init("bn_scale", self.uniform((c,), 0.5, 1.5))
        bias = self.init("bn_bias", self.small((c,)))
        mean = self.init("bn_mean", self.small((c,)))
        var = self.init("bn_var", self.uniform((c,), 0.5, 1.5))
        return self.node("BatchNormalization", [x, scale, bias, mean, var], epsilon=eps)

    def act(self, x: str, kind: str | None) -> str:
        if kind is None:
            return x
        if kind == "relu":
            return self.node("Relu", [x])
        if kind == "relu6":  # Clip-11+: min and max are inputs
            return self.node("Clip", [x, self.scalar_const(0.0), self.scalar_const(6.0)])
        if kind == "hswish":
            return self.node("HardSwish", [x])
        if kind == "silu":  # x * sigmoid(x)
            return self.node("Mul", [x, self.node("Sigmoid", [x])])
        raise ValueError(f"unknown activation {kind}")

    def conv_bn(self, x: str, cin: int, cout: int, k: int | tuple[int, int], stride: int = 1,
                act: str | None = None, eps: float = 1e-5, **kw) -> str:
        return self.act(self.bn(self.conv(x, cin, cout, k, stride, **kw), cout, eps), act)

    def maxpool(self, x: str, k: int, stride: int, pad: int) -> str:
        return self.node("MaxPool", [x], kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4)

    def gemm(self, x: str, cin: int, cout: int, trans_b: bool = True) -> str:
        w = self.he((cout, cin) if trans_b else (cin, cout), cin)
        return self.node("Gemm", [x, self.init("fc_w", w), self.init("fc_b", self.small((cout,)))],
                         transB=int(trans_b))

    def unsqueeze(self, x: str, axes: list[int]) -> str:
        if self.opset >= 13:
            return self.node("Unsqueeze", [x, self.i64("axes", axes)])
        return self.node("Unsqueeze", [x], axes=axes)

    def reduce_mean(self, x: str, axes: list[int], keepdims: int) -> str:
        if self.opset >= 18:
            return self.node("ReduceMean", [x, self.i64("axes", axes, node=True)],
                             keepdims=keepdims)
        return self.node("ReduceMean", [x], axes=axes, keepdims=keepdims)

    def softmax(self, x: str, axis: int) -> str:
        # Before opset 13, Softmax flattens to 2-D around `axis`; the models here rely on the
        # per-axis semantics of Softmax-13.
        assert self.opset >= 13, "Softmax used below opset 13"
        return self.node("Softmax", [x], axis=axis)

    def layer_norm(self, x: str, c: int, eps: float = 1e-6) -> str:
        scale = self.init("ln_scale", 1.0 + self.small((c,)))
        bias = self.init("ln_bias", self.small((c,)))
        return self.node("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)

    def squeeze_excite(self, x: str, c: int, c_sq: int, inner: str, gate: str,
                       pool: str = "gap") -> str:
        """SE: pool, 1x1 conv (bias), inner activation, 1x1 conv (bias), gate, Mul."""
        if pool == "gap":
            s = self.node("GlobalAveragePool", [x])
        else:
            s = self.reduce_mean(x, [2, 3], keepdims=1)
        s = self.act(self.conv(s, c, c_sq, 1, bias=True), inner)
        s = self.conv(s, c_sq, c, 1, bias=True)
        if gate == "hsigmoid":  # PyTorch's hardsigmoid: relu6(x + 3) / 6
            s = self.node("HardSigmoid", [s], alpha=1.0 / 6.0, beta=0.5)
        else:
            s = self.node("Sigmoid", [s])
        return self.node("Mul", [x, s])


# ---------------------------------------------------------------------------------------------
# Model families
# ---------------------------------------------------------------------------------------------


def bottleneck(b: Builder, x: str, cin: int, width: int, cout: int, stride: int,
               groups: int = 1) -> str:
    """ResNet v1.5 bottleneck: 1x1, 3x3 (stride, groups), 1x1, each with BN; 1x1 projection
    with BN when the shape changes; residual Add; Relu."""
    y = b.conv_bn(x, cin, width, 1, act="relu")
    y = b.conv_bn(y, width, width, 3, stride, act="relu", groups=groups)
    y = b.conv_bn(y, width, cout, 1)
    if stride != 1 or cin != cout:
        x = b.conv_bn(x, cin, cout, 1, stride)
    return b.node("Relu", [b.node("Add", [y, x])])


def resnet_stem(b: Builder, cout: int) -> str:
    x = b.conv_bn(b.input, 3, cout, 7, 2, act="relu", pads=[3, 3, 3, 3])
    return b.maxpool(x, 3, 2, 1)


def resnet50_block(b: Builder, full: bool) -> list[str]:
    """Stem, two bottlenecks (the first with a strided projection), GAP, Flatten, Gemm."""
    s = 1 if full else 4
    classes = 1000 if full else 10
    x = resnet_stem(b, 64 // s)
    x = bottleneck(b, x, 64 // s, 128 // s, 512 // s, stride=2)
    x = bottleneck(b, x, 512 // s, 128 // s, 512 // s, stride=1)
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    x = b.node("Identity", [x])  # no-op the engine drops
    x = b.node("Dropout", [x])  # inference mode: identity
    return [b.gemm(x, 512 // s, classes, trans_b=True)]


def wide_resnet101_block(b: Builder, full: bool) -> list[str]:
    """Wide ResNet-101-2 layer2 entry: the 3x3 is twice as wide, stride-2 projection."""
    cin, width, cout = (256, 256, 512) if full else (32, 64, 128)
    x = resnet_stem(b, cin)
    return [bottleneck(b, x, cin, width, cout, stride=2)]


def resnext_block(b: Builder, full: bool) -> list[str]:
    """ResNeXt-50 32x4d layer1: grouped 3x3 bottlenecks (projection on the first)."""
    stem, width, cout, groups = (64, 128, 256, 32) if full else (16, 32, 64, 8)
    x = resnet_stem(b, stem)
    x = bottleneck(b, x, stem, width, cout, stride=1, groups=groups)
    return [bottleneck(b, x, cout, width, cout, stride=1, groups=groups)]


def inverted_residual(b: Builder, x: str, cin: int, cexp: int, cout: int, k: int, stride: int,
                      act: str, se: tuple[int, str, str, str] | None = None) -> str:
    """MobileNetV2/V3 / EfficientNet MBConv: [1x1 expand], depthwise kxk, [SE], 1x1 project,
    residual Add when stride 1 and cin == cout.  se = (squeeze channels, inner act, gate, pool)."""
    y = x
    if cexp != cin:
        y = b.conv_bn(y, cin, cexp, 1, act=act)
    y = b.conv_bn(y, cexp, cexp, k, stride, act=act, groups=cexp)
    if se is not None:
        c_sq, inner, gate, pool = se
        y = b.squeeze_excite(y, cexp, c_sq, inner, gate, pool)
    y = b.conv_bn(y, cexp, cout, 1)
    if stride == 1 and cin == cout:
        y = b.node("Add", [x, y])
    return y


def mobilenetv2_block(b: Builder, full: bool) -> list[str]:
    """MobileNetV2 stem and first three inverted residuals (t=1; t=6 stride 2; t=6 residual);
    ReLU6 as Clip with min/max inputs (opset 11)."""
    c = (32, 16, 24) if full else (16, 8, 12)
    x = b.conv_bn(b.input, 3, c[0], 3, 2, act="relu6")
    x = inverted_residual(b, x, c[0], c[0], c[1], 3, 1, "relu6")
    x = inverted_residual(b, x, c[1], 6 * c[1], c[2], 3, 2, "relu6")
    return [inverted_residual(b, x, c[2], 6 * c[2], c[2], 3, 1, "relu6")]


def mobilenetv3_block(b: Builder, full: bool) -> list[str]:
    """MobileNetV3-Large style: HardSwish stem, 5x5 depthwise bnecks with squeeze-excite
    (GAP, conv, Relu, conv, HardSigmoid, Mul); ReLU then HardSwish activation."""
    stem, e1, c1, e2 = (16, 64, 40, 120) if full else (16, 48, 24, 72)
    x = b.conv_bn(b.input, 3, stem, 3, 2, act="hswish")
    x = inverted_residual(b, x, stem, e1, c1, 5, 2, "relu",
                          se=(make_divisible(e1 // 4), "relu", "hsigmoid", "gap"))
    return [inverted_residual(b, x, c1, e2, c1, 5, 1, "hswish",
                              se=(make_divisible(e2 // 4), "relu", "hsigmoid", "gap"))]


def make_divisible(v: int, d: int = 8) -> int:
    return max(d, (v + d // 2) // d * d)


def efficientnet_b0_block(b: Builder, full: bool) -> list[str]:
    """EfficientNet-B0 stem and MBConv1 / MBConv6 (stride 2) / MBConv6 (residual) with SiLU as
    x*Sigmoid(x) and SE whose squeeze is ReduceMean(axes attribute, opset 12)."""
    c = (32, 16, 24) if full else (16, 8, 12)
    x = b.conv_bn(b.input, 3, c[0], 3, 2, act="silu")
    x = inverted_residual(b, x, c[0], c[0], c[1], 3, 1, "silu",
                          se=(max(1, c[0] // 4), "silu", "sigmoid", "reduce_mean"))
    x = inverted_residual(b, x, c[1], 6 * c[1], c[2], 3, 2, "silu",
                          se=(max(1, c[1] // 4), "silu", "sigmoid", "reduce_mean"))
    return [inverted_residual(b, x, c[2], 6 * c[2], c[2], 3, 1, "silu",
                              se=(max(1, c[2] // 4), "silu", "sigmoid", "reduce_mean"))]


def convnext_block(b: Builder, x: str, c: int, gelu_op: bool) -> str:
    """dw 7x7 (bias), NHWC LayerNorm, MatMul+Add to 4C, GELU, MatMul+Add back, layer scale
    (Constant node), NCHW, residual Add.  GELU is the Gelu op (opset 20) or the erf form."""
    y = b.conv(x, c, c, 7, groups=c, bias=True)
    y = b.node("Transpose", [y], perm=[0, 2, 3, 1])
    y = b.layer_norm(y, c)
    y = b.node("Add", [b.node("MatMul", [y, b.init("pw1_w", b.he((c, 4 * c), c))]),
                       b.init("pw1_b", b.small((4 * c,)))])
    if gelu_op:
        y = b.node("Gelu", [y], approximate="none")
    else:  # 0.5 * x * (1 + erf(x / sqrt(2))), as PyTorch exports it
        e = b.node("Erf", [b.node("Div", [y, b.scalar_const(math.sqrt(2.0))])])
        y = b.node("Mul", [b.node("Mul", [y, b.node("Add", [e, b.scalar_const(1.0)])]),
                           b.scalar_const(0.5)])
    y = b.node("Add", [b.node("MatMul", [y, b.init("pw2_w", b.he((4 * c, c), 4 * c))]),
                       b.init("pw2_b", b.small((c,)))])
    # Layer scale: ConvNeXt initialises it to 1e-6, which would hide the block; use O(1).
    y = b.node("Mul", [y, b.const("layer_scale", b.uniform((c,), 0.5, 1.0))])
    y = b.node("Transpose", [y], perm=[0, 3, 1, 2])
    return b.node("Add", [x, y])


def convnext_t_block(b: Builder, full: bool) -> list[str]:
    """ConvNeXt-T: 4x4/4 stem + channels-first LayerNorm, two blocks (first with the Gelu op,
    second with the erf formulation), head ReduceMean (axes input, opset 18+), LayerNorm,
    Gemm (transB=0)."""
    c, classes = (96, 1000) if full else (32, 10)
    x = b.conv(b.input, 3, c, 4, 4, pads=[0, 0, 0, 0], bias=True)
    x = b.node("Transpose", [x], perm=[0, 2, 3, 1])
    x = b.node("Transpose", [b.layer_norm(x, c)], perm=[0, 3, 1, 2])
    x = convnext_block(b, x, c, gelu_op=True)
    x = convnext_block(b, x, c, gelu_op=False)
    x = b.layer_norm(b.reduce_mean(x, [-2, -1], keepdims=0), c)
    return [b.gemm(x, c, classes, trans_b=False)]


def inception_v3_block(b: Builder, full: bool) -> list[str]:
    """Inception v3 InceptionC (Mixed_6b): 1x1; 1x1-1x7-7x1; 1x1-7x1-1x7-7x1-1x7; 3x3 avg pool
    (count_include_pad=0)-1x1; Concat.  The three input 1x1 convs are one conv followed by
    Split with the `split` attribute (opset 11).  BN eps 1e-3, odd spatial sizes."""
    cin, c7, cb = (768, 128, 192) if full else (48, 8, 12)

    def conv(t: str, ci: int, co: int, k: int | tuple[int, int], pads: list[int] | None = None):
        return b.conv_bn(t, ci, co, k, act="relu", eps=1e-3, pads=pads)

    k17, p17 = (1, 7), [0, 3, 0, 3]
    k71, p71 = (7, 1), [3, 0, 3, 0]
    x = b.conv_bn(b.input, 3, cin, 3, 2, act="relu", eps=1e-3, pads=[0, 0, 0, 0])
    x = b.maxpool(x, 3, 2, 0)
    fused = conv(x, cin, cb + 2 * c7, 1)
    b1, b7, bd = b.node("Split", [fused], n_out=3, axis=1, split=[cb, c7, c7])
    b7 = conv(b7, c7, c7, k17, p17)
    b7 = conv(b7, c7, cb, k71, p71)
    bd = conv(bd, c7, c7, k71, p71)
    bd = conv(bd, c7, c7, k17, p17)
    bd = conv(bd, c7, c7, k71, p71)
    bd = conv(bd, c7, cb, k17, p17)
    bp = b.node("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                count_include_pad=0)
    bp = conv(bp, cin, cb, 1)
    return [b.node("Concat", [b1, b7, bd, bp], axis=1)]


def repvgg_unit(b: Builder, x: str, cin: int, cout: int, stride: int) -> str:
    """RepVGG training-time block: 3x3+BN, 1x1+BN and (stride 1, cin == cout) identity BN,
    summed (Add for two branches, one 3-input Sum for three), Relu."""
    y3 = b.conv_bn(x, cin, cout, 3, stride)
    y1 = b.conv_bn(x, cin, cout, 1, stride, pads=[0, 0, 0, 0])
    if stride == 1 and cin == cout:
        s = b.node("Sum", [y3, y1, b.bn(x, cin)])
    else:
        s = b.node("Add", [y3, y1])
    return b.node("Relu", [s])


def repvgg_block(b: Builder, full: bool) -> list[str]:
    """RepVGG-A0 start: stride-2 unit, stride-1 unit, stride-2 unit, stride-1 unit, GAP, Gemm."""
    c1, c2, classes = (48, 96, 1000) if full else (16, 32, 10)
    x = repvgg_unit(b, b.input, 3, c1, 2)
    x = repvgg_unit(b, x, c1, c1, 1)
    x = repvgg_unit(b, x, c1, c2, 2)
    x = repvgg_unit(b, x, c2, c2, 1)
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    return [b.gemm(x, c2, classes)]


def shape_slice(b: Builder, x: str, start: int, end: int) -> str:
    """Shape(x)[start:end] via Shape + Slice (Slice-10+ takes starts/ends as inputs)."""
    return b.node("Slice", [b.node("Shape", [x]), b.i64("starts", [start]),
                            b.i64("ends", [end])])


def shape_gather(b: Builder, x: str, indices: list[int]) -> str:
    """Shape(x)[indices] via Shape + Gather."""
    return b.node("Gather", [b.node("Shape", [x]), b.i64("idx", indices)], axis=0)


def fcn_head(b: Builder, full: bool) -> list[str]:
    """FCN segmentation: two strided convs (output stride 4), dilated 3x3 convs (dilation 2 and
    4), head conv + Dropout + 1x1 classifier, bilinear Resize (half_pixel, `sizes` built from
    Shape subgraphs) to the input size, Softmax(axis=1).  Second output: aux classifier resized
    with align_corners (no softmax)."""
    c1, c2, c3, classes = (64, 256, 512, 21) if full else (16, 32, 32, 5)
    x = b.conv_bn(b.input, 3, c1, 3, 2, act="relu")
    x = b.conv_bn(x, c1, c2, 3, 2, act="relu")
    d2 = b.conv_bn(x, c2, c3, 3, dilation=2, act="relu")
    d4 = b.conv_bn(d2, c3, c3, 3, dilation=4, act="relu")
    h = b.conv_bn(d4, c3, c3 // 4, 3, act="relu")
    h = b.node("Dropout", [h])
    logits = b.conv(h, c3 // 4, classes, 1, bias=True)
    sizes = b.node("Concat", [shape_slice(b, logits, 0, 2), shape_slice(b, b.input, 2, 4)],
                   axis=0)
    up = b.node("Resize", [logits, "", "", sizes], mode="linear",
                coordinate_transformation_mode="half_pixel")
    out = b.softmax(up, axis=1)
    aux = b.conv(d2, c3, classes, 1, bias=True)
    aux_sizes = b.node("Concat", [shape_gather(b, aux, [0, 1]), shape_gather(b, b.input, [2, 3])],
                       axis=0)
    aux = b.node("Resize", [aux, "", "", aux_sizes], mode="linear",
                 coordinate_transformation_mode="align_corners")
    return [out, aux]


def fpn_neck(b: Builder, full: bool) -> list[str]:
    """FPN on three levels (strides 4, 8, 16): lateral 1x1 convs, top-down nearest Resize by
    Constant scales [1,1,2,2] (asymmetric; floor and round_prefer_floor) + Add, 3x3 output convs,
    each flattened to [N, F, -1] and concatenated on axis 2.  One Reshape target is built by
    Shape->Gather->Unsqueeze->Concat, the others use 0 (copy dim).  Second output: the coarsest
    output map."""
    stem, c3, c4, c5, f = (64, 256, 512, 1024, 256) if full else (16, 24, 32, 48, 16)
    x = b.conv_bn(b.input, 3, stem, 3, 2, act="relu")
    x3 = b.conv_bn(x, stem, c3, 3, 2, act="relu")
    x4 = b.conv_bn(x3, c3, c4, 3, 2, act="relu")
    x5 = b.conv_bn(x4, c4, c5, 3, 2, act="relu")
    l3, l4, l5 = (b.conv(t, c, f, 1, bias=True) for t, c in ((x3, c3), (x4, c4), (x5, c5)))
    scales = b.const("scales", np.array([1, 1, 2, 2], dtype=np.float32))

    def up(t: str, nearest_mode: str) -> str:
        return b.node("Resize", [t, "", scales], mode="nearest", nearest_mode=nearest_mode,
                      coordinate_transformation_mode="asymmetric")

    p5 = l5
    p4 = b.node("Add", [l4, up(p5, "floor")])
    p3 = b.node("Add", [l3, up(p4, "round_prefer_floor")])
    o3, o4, o5 = (b.conv(p, f, f, 3, bias=True) for p in (p3, p4, p5))
    # Target [N, F, -1] from Shape(o3)[0] (a scalar Gather), Unsqueeze to [1], Concat.
    index0 = b.init("idx", np.array(0, dtype=np.int64))
    batch = b.unsqueeze(b.node("Gather", [b.node("Shape", [o3]), index0], axis=0), [0])
    target3 = b.node("Concat", [batch, b.i64("rest", [f, -1])], axis=0)
    flat3 = b.node("Reshape", [o3, target3])
    flat4 = b.node("Reshape", [o4, b.i64("shape", [0, f, -1])])
    flat5 = b.node("Reshape", [o5, b.i64("shape", [0, f, -1], node=True)])
    return [b.node("Concat", [flat3, flat4, flat5], axis=2), o5]


def nonlocal_block(b: Builder, full: bool) -> list[str]:
    """Non-local block (embedded Gaussian, subsampled phi/g): theta/phi/g 1x1 convs, MaxPool 2x2
    on phi and g, Reshape [N, C', -1], Transpose, batched MatMul, Softmax(-1), MatMul with g,
    Transpose + Reshape back to [N, C', H, W], 1x1 conv + BN, residual Add."""
    widths, inner = ((64, 128, 512, 1024), 512) if full else ((16, 32), 16)
    hw = 224 if full else 32
    x, cin = b.input, 3
    for c in widths:
        x, cin = b.conv_bn(x, cin, c, 3, 2, act="relu"), c
        hw //= 2
    c = cin
    # Smaller theta/phi weights keep the attention Softmax from saturating (one-hot rows).
    theta = b.conv(x, c, inner, 1, bias=True, gain=0.5)
    phi = b.maxpool(b.conv(x, c, inner, 1, bias=True, gain=0.5), 2, 2, 0)
    g = b.maxpool(b.conv(x, c, inner, 1, bias=True), 2, 2, 0)
    flat = b.i64("shape", [0, inner, -1])
    theta_t = b.node("Transpose", [b.node("Reshape", [theta, flat])], perm=[0, 2, 1])
    phi_f = b.node("Reshape", [phi, flat])
    g_t = b.node("Transpose", [b.node("Reshape", [g, flat])], perm=[0, 2, 1])
    attn = b.softmax(b.node("MatMul", [theta_t, phi_f]), axis=-1)  # [N, HW, HW/4]
    y = b.node("Transpose", [b.node("MatMul", [attn, g_t])], perm=[0, 2, 1])  # [N, C', HW]
    y = b.node("Reshape", [y, b.i64("shape", [0, inner, hw, hw])])
    y = b.bn(b.conv(y, inner, c, 1, bias=True), c)
    return [b.node("Add", [x, y])]


def conv_transpose(b: Builder, x: str, cin: int, cout: int, k: int, stride: int,
                   explicit_zero_padding: bool = False) -> str:
    """ConvTranspose k x k / stride with a bias; output_padding left to its default (0) unless
    `explicit_zero_padding` writes output_padding=[0, 0] out."""
    inputs = [x, b.init("wt", b.he((cin, cout, k, k), cin * k * k)), b.init("bt", b.small((cout,)))]
    attrs = dict(kernel_shape=[k, k], strides=[stride, stride])
    if explicit_zero_padding:
        attrs["output_padding"] = [0, 0]
    return b.node("ConvTranspose", inputs, **attrs)


def dbnet_head(b: Builder, full: bool) -> list[str]:
    """DBNet text-detection head: a stride-4 backbone, 3x3 conv + BN + ReLU, two 2x2/2
    ConvTranspose (the first without output_padding, the second with output_padding=[0, 0]
    written out) with BN + ReLU between, Sigmoid: a probability map of the input's size."""
    c1, c = (64, 256) if full else (16, 32)
    x = b.conv_bn(b.input, 3, c1, 3, 2, act="relu")
    x = b.conv_bn(x, c1, c, 3, 2, act="relu")
    h = b.conv_bn(x, c, c // 4, 3, act="relu")
    h = b.act(b.bn(conv_transpose(b, h, c // 4, c // 4, 2, 2), c // 4), "relu")
    h = conv_transpose(b, h, c // 4, 1, 2, 2, explicit_zero_padding=True)
    return [b.node("Sigmoid", [h])]


# ---------------------------------------------------------------------------------------------
# Task-level models (--tasks): detection with NMS, segmentation, face, OCR, ViT, QDQ
# ---------------------------------------------------------------------------------------------


def scalar_i64(b: Builder, value: int) -> str:
    """A 0-d int64 initializer (a scalar Gather index, a Range bound)."""
    return b.init("k", np.array(value, dtype=np.int64))


def dim_of(b: Builder, x: str, axis: int) -> str:
    """Shape(x)[axis] as a 0-d int64 (Shape -> Gather with a scalar index)."""
    return b.node("Gather", [b.node("Shape", [x]), scalar_i64(b, axis)], axis=0)


def slice_last(b: Builder, x: str, start: int, end: int) -> str:
    """x[..., start:end] (Slice-13 with starts, ends and axes inputs)."""
    return b.node("Slice", [x, b.i64("starts", [start]), b.i64("ends", [end]),
                            b.i64("axes", [-1])])


def column(b: Builder, x: str, j: int) -> str:
    """x[:, j] of a 2-D tensor, as exporters write it: Gather(axis=1) with a scalar index."""
    return b.node("Gather", [x, scalar_i64(b, j)], axis=1)


def to_float(b: Builder, x: str) -> str:
    return b.node("Cast", [x], to=TensorProto.FLOAT)


def nms_inputs(b: Builder, max_per_class: int, iou: float) -> list[str]:
    """max_output_boxes_per_class, iou_threshold and score_threshold of NonMaxSuppression as
    one-element initializers (what PyTorch and TensorFlow exporters write); the score threshold
    is set by calibrate_nms once the model is built."""
    return [b.i64("max_out", [max_per_class]),
            b.init("iou_threshold", np.array([iou], dtype=np.float32)),
            b.init("score_threshold", np.array([0.0], dtype=np.float32))]


def resize_scales(b: Builder, x: str, scale: float, mode: str, ctm: str, **attrs) -> str:
    """Resize-13 by constant scales [1, 1, s, s] (roi empty)."""
    scales = b.const("scales", np.array([1, 1, scale, scale], dtype=np.float32))
    return b.node("Resize", [x, "", scales], mode=mode, coordinate_transformation_mode=ctm,
                  **attrs)


def resize_like(b: Builder, x: str, like: str, mode: str, ctm: str, **attrs) -> str:
    """Resize x to the spatial size of `like`: sizes = Concat(Shape(x)[0:2], Shape(like)[2:4]),
    the Shape subgraph of F.interpolate(x, size=like.shape[-2:])."""
    sizes = b.node("Concat", [shape_slice(b, x, 0, 2), shape_slice(b, like, 2, 4)], axis=0)
    return b.node("Resize", [x, "", "", sizes], mode=mode, coordinate_transformation_mode=ctm,
                  **attrs)


# -- YOLOv5 / YOLOv8 style detector -----------------------------------------------------------


def yolo_c2f(b: Builder, x: str, cin: int, cout: int, n: int = 1, shortcut: bool = True) -> str:
    """YOLOv8 C2f: 1x1 conv to 2c, Split (split input, opset 13+) in halves, n bottlenecks on
    the last part (each output kept), Concat of all parts, 1x1 conv; Conv+BN+SiLU throughout."""
    c = cout // 2
    y = b.conv_bn(x, cin, 2 * c, 1, act="silu")
    parts = list(b.node("Split", [y, b.i64("split", [c, c])], n_out=2, axis=1))
    for _ in range(n):
        t = b.conv_bn(parts[-1], c, c, 3, act="silu")
        t = b.conv_bn(t, c, c, 3, act="silu")
        parts.append(b.node("Add", [parts[-1], t]) if shortcut else t)
    return b.conv_bn(b.node("Concat", parts, axis=1), (2 + n) * c, cout, 1, act="silu")


def yolo_c3(b: Builder, x: str, cin: int, cout: int, n: int = 1) -> str:
    """YOLOv5 C3: two 1x1 branches, n residual bottlenecks (1x1, 3x3) on the first, Concat,
    1x1 conv."""
    c = cout // 2
    m = b.conv_bn(x, cin, c, 1, act="silu")
    for _ in range(n):
        t = b.conv_bn(b.conv_bn(m, c, c, 1, act="silu"), c, c, 3, act="silu")
        m = b.node("Add", [m, t])
    skip = b.conv_bn(x, cin, c, 1, act="silu")
    return b.conv_bn(b.node("Concat", [m, skip], axis=1), 2 * c, cout, 1, act="silu")


def yolo_sppf(b: Builder, x: str, c: int) -> str:
    """SPPF: 1x1 conv to c/2, three chained 5x5/1 MaxPools, Concat of the four, 1x1 conv."""
    h = c // 2
    y = b.conv_bn(x, c, h, 1, act="silu")
    pools = [y]
    for _ in range(3):
        pools.append(b.maxpool(pools[-1], 5, 1, 2))
    return b.conv_bn(b.node("Concat", pools, axis=1), 4 * h, c, 1, act="silu")


def yolo_grid(b: Builder, feature: str, tile: bool) -> str:
    """The [1, 1, ny, nx, 2] cell grid (x, y) of a [N, C, ny, nx] map, built from its shape as a
    dynamic-shape export does: Range over Shape(feature)[2] and [3], then the meshgrid either by
    Expand of Unsqueezed int64 ranges cast to float (tile=False) or by Tile of float ranges
    (tile=True)."""
    ny, nx = dim_of(b, feature, 2), dim_of(b, feature, 3)
    ny1, nx1 = b.unsqueeze(ny, [0]), b.unsqueeze(nx, [0])
    if tile:
        zero, one = b.scalar_const(0.0), b.scalar_const(1.0)
        xs = b.node("Range", [zero, to_float(b, nx), one])
        ys = b.node("Range", [zero, to_float(b, ny), one])
        gx = b.node("Tile", [b.unsqueeze(xs, [0]), b.node("Concat", [ny1, b.i64("one", [1])],
                                                             axis=0)])
        gy = b.node("Tile", [b.unsqueeze(ys, [1]), b.node("Concat", [b.i64("one", [1]), nx1],
                                                             axis=0)])
    else:
        zero, one = scalar_i64(b, 0), scalar_i64(b, 1)
        xs = to_float(b, b.node("Range", [zero, nx, one]))
        ys = to_float(b, b.node("Range", [zero, ny, one]))
        size = b.node("Concat", [ny1, nx1], axis=0)
        gx = b.node("Expand", [b.unsqueeze(xs, [0]), size])
        gy = b.node("Expand", [b.unsqueeze(ys, [1]), size])
    grid = b.node("Concat", [b.unsqueeze(gx, [-1]), b.unsqueeze(gy, [-1])], axis=-1)
    return b.unsqueeze(grid, [0, 1])


def yolo_detect_level(b: Builder, x: str, c: int, stride: int, anchors: list[tuple[int, int]],
                      classes: int, tile_grid: bool, exp_wh: bool) -> str:
    """One detect level: 1x1 conv to na*(5+C), view [N, na, 5+C, ny, nx], permute to
    [N, na, ny, nx, 5+C]; xy = (sigmoid*2 - 0.5 + grid) * stride; wh = exp(t) * anchor
    (YOLOv3/YOLOX, exp_wh) or (sigmoid*2)^2 * anchor (YOLOv5, Pow); objectness and class
    scores sigmoid; flattened to [N, na*ny*nx, 5+C]."""
    na, no = len(anchors), 5 + classes
    t = b.conv(x, c, na * no, 1, bias=True, gain=0.15)
    ny_nx = shape_slice(b, t, 2, 4)
    target = b.node("Concat", [b.i64("shape", [0, na, no]), ny_nx], axis=0)
    t = b.node("Transpose", [b.node("Reshape", [t, target])], perm=[0, 1, 3, 4, 2])
    s = b.node("Sigmoid", [t])
    grid = yolo_grid(b, x, tile_grid)
    xy = b.node("Sub", [b.node("Mul", [slice_last(b, s, 0, 2), b.scalar_const(2.0)]),
                        b.scalar_const(0.5)])
    xy = b.node("Mul", [b.node("Add", [xy, grid]), b.scalar_const(float(stride))])
    anchor_grid = b.init("anchor_grid", np.array(anchors, dtype=np.float32).reshape(1, na, 1, 1, 2))
    if exp_wh:
        wh = b.node("Exp", [slice_last(b, t, 2, 4)])
    else:
        wh = b.node("Pow", [b.node("Mul", [slice_last(b, s, 2, 4), b.scalar_const(2.0)]),
                            b.scalar_const(2.0)])
    y = b.node("Concat", [xy, b.node("Mul", [wh, anchor_grid]), slice_last(b, s, 4, no)], axis=-1)
    return b.node("Reshape", [y, b.i64("shape", [0, -1, no])])


def yolo_detector(b: Builder, full: bool) -> list[str]:
    """YOLOv5/YOLOv8-style detector with ONNX-Runtime NMS (the YOLOv7 "end2end" form).

    Backbone: Conv+BN+SiLU, C2f (Split, Concat), C3, SPPF (MaxPool chain); neck: nearest 2x
    Resize + Concat + C2f, stride-2 conv + Concat + C2f; head on two levels (strides 8, 16,
    two anchors each): sigmoid xy decode against a grid built from Range/Expand (level 1) and
    Range/Tile (level 2), wh by (2 sigmoid)^2 (level 1) and Exp (level 2) times the anchors,
    Concat over levels -> predictions [N, A, 5+C].  Post: scores = obj * cls transposed to
    [N, C, A], boxes by MatMul with the xywh -> xyxy matrix, NonMaxSuppression (at most 100 per
    class, IoU 0.45) -> selected [K, 3] (batch, class, box), then the boxes and scores of the
    selection by Gather on flattened tensors with computed indices (PyTorch's advanced
    indexing): detections [K, 7] = (batch, x1, y1, x2, y2, class, score)."""
    c1, c2, c3, c4 = (16, 32, 64, 128) if full else (8, 16, 24, 32)
    classes = 80 if full else 3
    x = b.conv_bn(b.input, 3, c1, 3, 2, act="silu")
    x = b.conv_bn(x, c1, c2, 3, 2, act="silu")
    x = yolo_c2f(b, x, c2, c2)
    p3 = yolo_c3(b, b.conv_bn(x, c2, c3, 3, 2, act="silu"), c3, c3)  # stride 8
    p4 = yolo_c2f(b, b.conv_bn(p3, c3, c4, 3, 2, act="silu"), c4, c4)  # stride 16
    p4 = yolo_sppf(b, p4, c4)
    up = resize_scales(b, p4, 2.0, "nearest", "asymmetric", nearest_mode="floor")
    n3 = yolo_c2f(b, b.node("Concat", [up, p3], axis=1), c4 + c3, c3, shortcut=False)
    down = b.conv_bn(n3, c3, c3, 3, 2, act="silu")
    n4 = yolo_c2f(b, b.node("Concat", [down, p4], axis=1), c3 + c4, c4, shortcut=False)
    preds = b.node("Concat", [
        yolo_detect_level(b, n3, c3, 8, [(10, 13), (16, 30)], classes, tile_grid=False,
                          exp_wh=False),
        yolo_detect_level(b, n4, c4, 16, [(30, 61), (62, 45)], classes, tile_grid=True,
                          exp_wh=True),
    ], axis=1)
    no = 5 + classes
    scores = b.node("Mul", [slice_last(b, preds, 5, no), slice_last(b, preds, 4, 5)])
    scores = b.node("Transpose", [scores], perm=[0, 2, 1])  # [N, C, A]
    to_xyxy = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]],
                       dtype=np.float32)
    boxes = b.node("MatMul", [slice_last(b, preds, 0, 4), b.init("to_xyxy", to_xyxy)])
    selected = b.node("NonMaxSuppression",
                      [boxes, scores, *nms_inputs(b, 100, 0.45)])
    batch, cls, box = (column(b, selected, j) for j in range(3))
    anchors_n = dim_of(b, boxes, 1)
    flat_box = b.node("Add", [b.node("Mul", [batch, anchors_n]), box])
    sel_boxes = b.node("Gather", [b.node("Reshape", [boxes, b.i64("shape", [-1, 4])]), flat_box],
                       axis=0)
    flat_score = b.node("Add", [b.node("Mul", [b.node("Add", [b.node("Mul", [
        batch, scalar_i64(b, classes)]), cls]), anchors_n]), box])
    sel_scores = b.node("Gather", [b.node("Reshape", [scores, b.i64("shape", [-1])]),
                                   flat_score], axis=0)
    detections = b.node("Concat", [b.unsqueeze(to_float(b, batch), [1]), sel_boxes,
                                   b.unsqueeze(to_float(b, cls), [1]),
                                   b.unsqueeze(sel_scores, [1])], axis=1)
    return [preds, scores, selected, detections]


# -- SSD / RetinaNet style head -------------------------------------------------------------


def ssd_anchors(sizes: list[int], image: int, ratios: tuple[float, ...]) -> np.ndarray:
    """Default boxes (cx, cy, w, h) in pixels, location-major then ratio, level by level."""
    out = []
    for size in sizes:
        step = image / size
        for i in range(size):
            for j in range(size):
                for r in ratios:
                    s = 2.5 * step
                    out.append(((j + 0.5) * step, (i + 0.5) * step, s * math.sqrt(r),
                                s / math.sqrt(r)))
    return np.array(out, dtype=np.float32)


def ssd_head(b: Builder, full: bool) -> list[str]:
    """SSD/RetinaNet-style head on three levels (strides 8, 16, 32): class and box 3x3 conv
    heads per level (3 anchors, C+1 classes with background 0), NHWC Transpose + Reshape to
    [N, -1, k], Concat over levels; Softmax over classes, background sliced off, ReduceMax over
    classes, TopK (k a constant) over the anchors; the top-k deltas and scores by GatherND
    (batch_dims=1), their anchors by Gather from a constant table; SSD decode (variances 0.1,
    0.2; Exp) to corners; NonMaxSuppression (IoU 0.35) on [N, k, 4] / [N, C, k]; the selected
    boxes and scores by GatherND.  Outputs: boxes [N, k, 4], scores [N, k, C], selected [K, 3],
    detections [K, 6] = (x1, y1, x2, y2, score, class)."""
    widths = (32, 64, 128, 128, 128) if full else (12, 16, 24, 24, 24)
    classes, na, top_k = (20, 3, 200) if full else (4, 3, 48)
    image = 300 if full else 64
    x = b.conv_bn(b.input, 3, widths[0], 3, 2, act="relu")
    x = b.conv_bn(x, widths[0], widths[1], 3, 2, act="relu")
    levels, sizes, c = [], [], widths[1]
    size = image // 4
    for w in widths[2:]:
        x, c, size = b.conv_bn(x, c, w, 3, 2, act="relu"), w, (size + 1) // 2
        levels.append((x, c))
        sizes.append(size)
    cls_parts, box_parts = [], []
    for feat, c in levels:
        h = b.conv_bn(feat, c, c, 3, act="relu")
        cls = b.conv(h, c, na * (classes + 1), 3, bias=True, gain=0.3)
        box = b.conv(h, c, na * 4, 3, bias=True, gain=0.5)
        cls_parts.append(b.node("Reshape", [b.node("Transpose", [cls], perm=[0, 2, 3, 1]),
                                            b.i64("shape", [0, -1, classes + 1])]))
        box_parts.append(b.node("Reshape", [b.node("Transpose", [box], perm=[0, 2, 3, 1]),
                                            b.i64("shape", [0, -1, 4])]))
    logits = b.node("Concat", cls_parts, axis=1)  # [N, T, C+1]
    deltas = b.node("Concat", box_parts, axis=1)  # [N, T, 4]
    fg = slice_last(b, b.softmax(logits, axis=-1), 1, classes + 1)  # [N, T, C]
    best = b.node("ReduceMax", [fg], axes=[2], keepdims=0)  # [N, T]
    _, top_i = b.node("TopK", [best, b.i64("k", [top_k])], n_out=2, axis=1)
    idx = b.unsqueeze(top_i, [2])  # [N, k, 1]
    d = b.node("GatherND", [deltas, idx], batch_dims=1)  # [N, k, 4]
    scores = b.node("GatherND", [fg, idx], batch_dims=1)  # [N, k, C]
    table = ssd_anchors(sizes, image, (1.0, 2.0, 0.5))
    a = b.node("Gather", [b.init("anchors", table), top_i], axis=0)  # [N, k, 4]
    a_xy, a_wh = slice_last(b, a, 0, 2), slice_last(b, a, 2, 4)
    cxcy = b.node("Add", [a_xy, b.node("Mul", [b.node("Mul", [slice_last(b, d, 0, 2),
                                                                b.scalar_const(0.1)]), a_wh])])
    wh = b.node("Mul", [a_wh, b.node("Exp", [b.node("Mul", [slice_last(b, d, 2, 4),
                                                            b.scalar_const(0.2)])])])
    half = b.node("Mul", [wh, b.scalar_const(0.5)])
    boxes = b.node("Concat", [b.node("Sub", [cxcy, half]), b.node("Add", [cxcy, half])], axis=-1)
    scores_t = b.node("Transpose", [scores], perm=[0, 2, 1])  # [N, C, k]
    selected = b.node("NonMaxSuppression",
                      [boxes, scores_t, *nms_inputs(b, 100, 0.35)])
    batch_box = b.node("Gather", [selected, b.i64("cols", [0, 2])], axis=1)  # [K, 2]
    det_boxes = b.node("GatherND", [boxes, batch_box])  # [K, 4]
    det_scores = b.node("GatherND", [scores_t, selected])  # [K]
    det_cls = to_float(b, column(b, selected, 1))
    detections = b.node("Concat", [det_boxes, b.unsqueeze(det_scores, [1]),
                                   b.unsqueeze(det_cls, [1])], axis=1)
    return [boxes, scores, selected, detections]


# -- DeepLabV3+ ---------------------------------------------------------------------------


def deeplabv3plus(b: Builder, full: bool) -> list[str]:
    """DeepLabV3+ on a small output-stride-8 backbone (the last stage dilated instead of
    strided).  ASPP: 1x1, three dilated 3x3 (rates 6/12/18 scaled to 2/4/6 for the small map),
    image pooling (GlobalAveragePool, 1x1 conv+BN+ReLU, bilinear Resize back to the map's size
    from a Shape subgraph, pytorch_half_pixel); Concat, 1x1 projection, Dropout.  Decoder:
    ConvTranspose 4x4/2 upsampling, low-level 1x1 projection, Concat, two 3x3 convs, 1x1
    logits; cubic Resize x4 (pytorch_half_pixel, cubic_coeff_a=-0.75, as PyTorch exports
    bicubic) to the input size.  Second output: an auxiliary 1x1 classifier on the ASPP output,
    bilinear Resize (align_corners) to the input size."""
    c1, c_low, c2, c3, aspp, low, dec, classes = (
        (64, 256, 512, 1024, 256, 48, 256, 21) if full else (12, 16, 24, 32, 16, 8, 16, 5))
    rates = (6, 12, 18) if full else (2, 4, 6)
    x = b.conv_bn(b.input, 3, c1, 3, 2, act="relu")
    low_feat = b.conv_bn(x, c1, c_low, 3, 2, act="relu")  # stride 4
    x = b.conv_bn(low_feat, c_low, c2, 3, 2, act="relu")  # stride 8
    x = b.conv_bn(x, c2, c3, 3, dilation=2, act="relu")
    branches = [b.conv_bn(x, c3, aspp, 1, act="relu")]
    branches += [b.conv_bn(x, c3, aspp, 3, dilation=r, act="relu") for r in rates]
    pooled = b.conv_bn(b.node("GlobalAveragePool", [x]), c3, aspp, 1, act="relu")
    branches.append(resize_like(b, pooled, x, "linear", "pytorch_half_pixel"))
    y = b.conv_bn(b.node("Concat", branches, axis=1), 5 * aspp, aspp, 1, act="relu")
    y = b.node("Dropout", [y])
    aux = b.conv(y, aspp, classes, 1, bias=True)
    up = b.node("ConvTranspose", [y, b.init("wt", b.he((aspp, aspp, 4, 4), aspp * 16)),
                                  b.init("bt", b.small((aspp,)))],
                kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1])
    up = b.act(b.bn(up, aspp), "relu")
    lowp = b.conv_bn(low_feat, c_low, low, 1, act="relu")
    d = b.node("Concat", [up, lowp], axis=1)
    d = b.conv_bn(d, aspp + low, dec, 3, act="relu")
    d = b.conv_bn(d, dec, dec, 3, act="relu")
    logits = b.conv(d, dec, classes, 1, bias=True)
    out = resize_scales(b, logits, 4.0, "cubic", "pytorch_half_pixel", cubic_coeff_a=-0.75)
    aux = resize_like(b, aux, b.input, "linear", "align_corners")
    return [out, aux]


# -- Face detector (RetinaFace / MTCNN style) ------------------------------------------------


def prelu(b: Builder, x: str, c: int, shared: bool = False) -> str:
    """PRelu with per-channel slopes of shape [C, 1, 1] (PyTorch's nn.PReLU(C) as exported,
    broadcast against [N, C, H, W]) or one shared slope of shape [1]."""
    slope = b.uniform((1,) if shared else (c, 1, 1), 0.05, 0.35)
    return b.node("PRelu", [x, b.init("prelu_slope", slope)])


def conv_bn_prelu(b: Builder, x: str, cin: int, cout: int, k: int, stride: int = 1,
                  shared: bool = False, **kw) -> str:
    return prelu(b, b.bn(b.conv(x, cin, cout, k, stride, **kw), cout), cout, shared)


def face_ssh(b: Builder, x: str, c: int) -> str:
    """RetinaFace's SSH context module: 3x3 branch (c/2), 5x5 as two 3x3 (c/4) and 7x7 as
    three 3x3 (c/4) sharing the first, Concat, Relu."""
    b3 = b.conv_bn(x, c, c // 2, 3)
    t = conv_bn_prelu(b, x, c, c // 4, 3)
    b5 = b.conv_bn(t, c // 4, c // 4, 3)
    b7 = b.conv_bn(conv_bn_prelu(b, t, c // 4, c // 4, 3), c // 4, c // 4, 3)
    return b.node("Relu", [b.node("Concat", [b3, b5, b7], axis=1)])


def face_detector(b: Builder, full: bool) -> list[str]:
    """RetinaFace/MTCNN-style face detector on a non-square input: Conv+BN+PRelu backbone
    (per-channel slopes [C, 1, 1]; one shared slope [1]), MaxPool, two-level FPN (1x1 laterals,
    nearest Resize to the lateral's size + Add, 3x3 merge), SSH context per level, and per
    level three 1x1 heads for two anchors: face/background (2), box (4) and five landmarks
    (10), each NHWC-transposed and reshaped to [N, -1, k], Concat over levels; Softmax over
    the 2 classes.  Outputs: scores [N, A, 2], boxes [N, A, 4], landmarks [N, A, 10]."""
    c1, c2, c3, c4, f, na = (16, 32, 64, 128, 64, 2) if full else (8, 12, 16, 24, 16, 2)
    x = conv_bn_prelu(b, b.input, 3, c1, 3, 2)
    x = b.maxpool(conv_bn_prelu(b, x, c1, c2, 3), 2, 2, 0)  # stride 4
    p1 = conv_bn_prelu(b, x, c2, c3, 3, 2)  # stride 8
    p2 = conv_bn_prelu(b, p1, c3, c4, 3, 2, shared=True)  # stride 16
    l1 = conv_bn_prelu(b, p1, c3, f, 1)
    l2 = conv_bn_prelu(b, p2, c4, f, 1)
    l1 = b.node("Add", [l1, resize_like(b, l2, l1, "nearest", "asymmetric",
                                        nearest_mode="floor")])
    l1 = conv_bn_prelu(b, l1, f, f, 3)
    heads: dict[str, list[str]] = {"cls": [], "box": [], "ldm": []}
    for level in (l1, l2):
        s = face_ssh(b, level, f)
        for key, k in (("cls", 2), ("box", 4), ("ldm", 10)):
            h = b.conv(s, f, na * k, 1, bias=True, gain=0.3 if key == "cls" else 1.0)
            h = b.node("Transpose", [h], perm=[0, 2, 3, 1])
            heads[key].append(b.node("Reshape", [h, b.i64("shape", [0, -1, k])]))
    scores = b.softmax(b.node("Concat", heads["cls"], axis=1), axis=-1)
    boxes = b.node("Concat", heads["box"], axis=1)
    landmarks = b.node("Concat", heads["ldm"], axis=1)
    return [scores, boxes, landmarks]


# -- CRNN text recogniser ---------------------------------------------------------------------


def lstm(b: Builder, x: str, cin: int, hidden: int, zero_state: bool) -> str:
    """Bidirectional ONNX LSTM on [T, N, cin] (PyTorch's uniform(-1/sqrt(H), 1/sqrt(H))
    weights), its Y [T, 2, N, H] transposed and reshaped to [T, N, 2H] as PyTorch exports a
    bidirectional nn.LSTM.  With zero_state, initial_h/initial_c are zeros [2, N, H] built
    from the batch by Shape -> Gather -> Concat -> ConstantOfShape (the dynamic-batch export);
    otherwise they are omitted."""
    bound = 1.0 / math.sqrt(hidden)
    w = b.init("lstm_w", b.uniform((2, 4 * hidden, cin), -bound, bound))
    r = b.init("lstm_r", b.uniform((2, 4 * hidden, hidden), -bound, bound))
    bias = b.init("lstm_b", b.uniform((2, 8 * hidden), -bound, bound))
    inputs = [x, w, r, bias]
    if zero_state:
        batch = b.unsqueeze(dim_of(b, x, 1), [0])
        shape = b.node("Concat", [b.i64("dirs", [2]), batch, b.i64("hidden", [hidden])], axis=0)
        zeros = b.node("ConstantOfShape", [shape],
                       value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))
        inputs += ["", zeros, zeros]
    y = b.node("LSTM", inputs, hidden_size=hidden, direction="bidirectional")
    y = b.node("Transpose", [y], perm=[0, 2, 1, 3])  # [T, N, 2, H]
    return b.node("Reshape", [y, b.i64("shape", [0, 0, -1])])


def crnn(b: Builder, full: bool) -> list[str]:
    """CRNN recogniser on a grey [N, 1, 32, W] text line: conv stack (ReLU, BN on the deeper
    convs) with 2x2 MaxPools, then (2, 2)/(2, 1) MaxPools padded in width, and a final 2x2
    valid conv to height 1; Squeeze the height, Transpose to [T, N, C]; two bidirectional LSTMs
    (the first with zero initial states from ConstantOfShape), each followed by a MatMul + Add
    embedding as in CRNN's BidirectionalLSTM; LogSoftmax over the classes: the CTC input
    [T, N, classes] (batch on axis 1)."""
    c = (64, 128, 256, 512) if full else (12, 16, 24, 32)
    hidden, classes = (256, 37) if full else (16, 11)
    x = b.maxpool(b.node("Relu", [b.conv(b.input, 1, c[0], 3, bias=True)]), 2, 2, 0)
    x = b.maxpool(b.node("Relu", [b.conv(x, c[0], c[1], 3, bias=True)]), 2, 2, 0)
    x = b.conv_bn(x, c[1], c[2], 3, act="relu")
    x = b.node("Relu", [b.conv(x, c[2], c[2], 3, bias=True)])
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 1], pads=[0, 1, 0, 1])
    x = b.conv_bn(x, c[2], c[3], 3, act="relu")
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 1], pads=[0, 1, 0, 1])
    x = b.conv_bn(x, c[3], c[3], 2, pads=[0, 0, 0, 0], act="relu")  # height 1
    seq = b.node("Transpose", [b.node("Squeeze", [x, b.i64("axes", [2])])], perm=[2, 0, 1])
    y = lstm(b, seq, c[3], hidden, zero_state=True)
    y = b.node("Add", [b.node("MatMul", [y, b.init("emb_w", b.he((2 * hidden, hidden),
                                                                   2 * hidden))]),
                       b.init("emb_b", b.small((hidden,)))])
    y = lstm(b, y, hidden, hidden, zero_state=False)
    y = b.node("Add", [b.node("MatMul", [y, b.init("fc_w", 4.0 * b.he((2 * hidden, classes),
                                                                        2 * hidden))]),
                       b.init("fc_b", b.small((classes,)))])
    return [b.node("LogSoftmax", [y], axis=2)]


# -- Small ViT --------------------------------------------------------------------------------


def linear(b: Builder, x: str, cin: int, cout: int, gain: float = 1.0) -> str:
    """MatMul by a [cin, cout] weight + Add bias (nn.Linear on a 3-D input, as exported)."""
    w = b.init("lin_w", (gain * b.rng.standard_normal((cin, cout)) / math.sqrt(cin))
               .astype(np.float32))
    return b.node("Add", [b.node("MatMul", [x, w]), b.init("lin_b", b.small((cout,)))])


def gelu_erf(b: Builder, x: str) -> str:
    """0.5 * x * (1 + erf(x / sqrt(2))), PyTorch's export of exact GELU before opset 20."""
    e = b.node("Erf", [b.node("Div", [x, b.scalar_const(math.sqrt(2.0))])])
    return b.node("Mul", [b.node("Mul", [x, b.node("Add", [e, b.scalar_const(1.0)])]),
                          b.scalar_const(0.5)])


def vit_mlp(b: Builder, x: str, d: int, hidden: int) -> str:
    y = linear(b, b.layer_norm(x, d), d, hidden)
    return b.node("Add", [x, linear(b, gelu_erf(b, y), hidden, d)])


def vit_block_matmul(b: Builder, x: str, d: int, heads: int, hidden: int) -> str:
    """timm's Block: LN, qkv Linear, view [N, T, 3, h, dh], permute [3, N, h, T, dh], Split +
    Squeeze into q, k, v, (q @ k^T) * dh^-0.5, Softmax(-1), @ v, back to [N, T, D], proj;
    residual; LN, MLP with erf GELU; residual."""
    dh = d // heads
    qkv = linear(b, b.layer_norm(x, d), d, 3 * d, gain=0.7)
    qkv = b.node("Reshape", [qkv, b.i64("shape", [0, 0, 3, heads, dh])])
    qkv = b.node("Transpose", [qkv], perm=[2, 0, 3, 1, 4])
    q, k, v = (b.node("Squeeze", [t, b.i64("axes", [0])])
               for t in b.node("Split", [qkv, b.i64("split", [1, 1, 1])], n_out=3, axis=0))
    att = b.node("MatMul", [q, b.node("Transpose", [k], perm=[0, 1, 3, 2])])
    att = b.softmax(b.node("Mul", [att, b.scalar_const(dh ** -0.5)]), axis=-1)
    o = b.node("Transpose", [b.node("MatMul", [att, v])], perm=[0, 2, 1, 3])
    o = linear(b, b.node("Reshape", [o, b.i64("shape", [0, 0, d])]), d, d)
    return vit_mlp(b, b.node("Add", [x, o]), d, hidden)


def vit_block_attention_op(b: Builder, x: str, d: int, heads: int, hidden: int) -> str:
    """The same block with the ONNX Attention op (opset 23) on 3-D q, k, v [N, T, D]
    (q_num_heads = kv_num_heads = heads, default scale dh^-0.5)."""
    h = b.layer_norm(x, d)
    q, k, v = (linear(b, h, d, d, gain=0.7) for _ in range(3))
    o = b.node("Attention", [q, k, v], q_num_heads=heads, kv_num_heads=heads)
    return vit_mlp(b, b.node("Add", [x, linear(b, o, d, d)]), d, hidden)


def vit_tiny(b: Builder, full: bool) -> list[str]:
    """ViT: patch-embedding conv (kernel = stride = patch), flatten + transpose to [N, P, D],
    class token expanded to the batch (Expand to [N, -1, -1] with the -1 replaced through
    Equal/Where/ConstantOfShape, as PyTorch exports expand), Concat, position embedding Add;
    a MatMul-attention block and an Attention-op block; final LayerNorm; class token by Gather;
    Gemm head.  Outputs: logits [N, classes], tokens [N, 1 + P, D]."""
    patch, d, heads, hidden, classes = (16, 192, 3, 768, 1000) if full else (8, 32, 2, 64, 10)
    hw = 224 if full else 32
    tokens = 1 + (hw // patch) ** 2
    x = b.conv(b.input, 3, d, patch, patch, pads=[0, 0, 0, 0], bias=True)
    x = b.node("Transpose", [b.node("Reshape", [x, b.i64("shape", [0, 0, -1])])], perm=[0, 2, 1])
    size = b.node("Concat", [b.unsqueeze(dim_of(b, x, 0), [0]), b.i64("keep", [-1, -1])],
                  axis=0)
    minus_one = b.i64("minus_one", [-1])
    ones = b.node("ConstantOfShape", [b.node("Shape", [size])],
                  value=helper.make_tensor("one", TensorProto.INT64, [1], [1]))
    size = b.node("Where", [b.node("Equal", [size, minus_one]), ones, size])
    cls = b.node("Expand", [b.init("cls_token", b.small((1, 1, d), 0.5)), size])
    x = b.node("Concat", [cls, x], axis=1)
    x = b.node("Add", [x, b.init("pos_embed", b.small((1, tokens, d), 0.5))])
    x = vit_block_matmul(b, x, d, heads, hidden)
    x = vit_block_attention_op(b, x, d, heads, hidden)
    x = b.layer_norm(x, d)
    head = b.node("Gather", [x, scalar_i64(b, 0)], axis=1)
    return [b.gemm(head, d, classes), x]


# -- QDQ-quantised ResNet block -------------------------------------------------------------


def qdq_resnet_float(b: Builder, full: bool) -> list[str]:
    """The float model quantised by quantize_qdq: a ResNet stem and stages as PyTorch exports
    them in eval mode (BatchNormalization folded into the conv bias): 3x3/2 stem + Relu, a
    basic block (two 3x3, identity Add, Relu), a bottleneck with a stride-2 1x1 projection
    (1x1, 3x3/2, 1x1, Add, Relu), GlobalAveragePool, Flatten, Gemm."""
    c1, width, c2, classes = (64, 128, 512, 1000) if full else (16, 8, 32, 10)
    x = b.node("Relu", [b.conv(b.input, 3, c1, 3, 2, bias=True)])
    y = b.node("Relu", [b.conv(x, c1, c1, 3, bias=True)])
    x = b.node("Relu", [b.node("Add", [b.conv(y, c1, c1, 3, bias=True), x])])
    y = b.node("Relu", [b.conv(x, c1, width, 1, bias=True)])
    y = b.node("Relu", [b.conv(y, width, width, 3, 2, bias=True)])
    y = b.conv(y, width, c2, 1, bias=True)
    proj = b.conv(x, c1, c2, 1, 2, pads=[0, 0, 0, 0], bias=True)
    x = b.node("Relu", [b.node("Add", [y, proj])])
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    return [b.gemm(x, c2, classes)]


def quantize_qdq(model: onnx.ModelProto, name: str, seed: int) -> onnx.ModelProto:
    """onnxruntime's static quantizer in QDQ format: uint8 activations (MinMax calibration on
    eight standard-normal samples), per-channel int8 weights and int32 biases behind
    DequantizeLinear, Relu kept between its DequantizeLinear and QuantizeLinear
    (QDQKeepRemovableActivations)."""
    import logging
    import tempfile

    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    inp = model.graph.input[0]
    shape = [1, *[int(d) for d in dims_of(inp)[1:]]]
    rng = np.random.default_rng(derived_seed(seed, name, "calibration"))
    samples = [{inp.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(samples)

        def get_next(self) -> dict | None:
            return next(self.it, None)

    logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" warnings
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "qdq.onnx")
        onnx.save(model, src)
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        extra_options={"QDQKeepRemovableActivations": True})
        quantized = onnx.load(dst)
    quantized.producer_name = PRODUCER
    return quantized


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[Builder, bool], list[str]]
    opset: int
    hw: int | tuple[int, int]  # reduced input size (square, or (H, W))
    hw_full: int | tuple[int, int]
    outputs: tuple[str, ...]
    channels: int = 3  # input channels
    # Outputs whose batch axis is not 0 (a recogniser's [T, N, classes]).
    batch_axes: Mapping[str, int] = field(default_factory=dict)
    # Outputs whose row count depends on the data (NonMaxSuppression): output name -> the
    # selection output whose column 0 gives each row's batch index (itself for the selection).
    rows_by_batch: Mapping[str, str] = field(default_factory=dict)
    # Rewrites the built float model (quantisation): (model, name, seed) -> model.
    transform: Callable[[onnx.ModelProto, str, int], onnx.ModelProto] | None = None


MODELS: dict[str, ModelSpec] = {
    "resnet50_block": ModelSpec(resnet50_block, 13, 48, 224, ("logits",)),
    "wide_resnet101_block": ModelSpec(wide_resnet101_block, 15, 48, 224, ("features",)),
    "resnext_block": ModelSpec(resnext_block, 14, 32, 224, ("features",)),
    "mobilenetv2_block": ModelSpec(mobilenetv2_block, 11, 32, 224, ("features",)),
    "mobilenetv3_block": ModelSpec(mobilenetv3_block, 14, 32, 224, ("features",)),
    "efficientnet_b0_block": ModelSpec(efficientnet_b0_block, 12, 32, 224, ("features",)),
    "convnext_t_block": ModelSpec(convnext_t_block, 20, 48, 224, ("logits",)),
    "inception_v3_block": ModelSpec(inception_v3_block, 11, 39, 71, ("features",)),
    "repvgg_block": ModelSpec(repvgg_block, 16, 32, 224, ("logits",)),
    "fcn_head": ModelSpec(fcn_head, 13, 48, 224, ("probs", "aux_logits")),
    "fpn_neck": ModelSpec(fpn_neck, 17, 64, 224, ("features", "p5")),
    "nonlocal_block": ModelSpec(nonlocal_block, 15, 32, 224, ("features",)),
    "dbnet_head": ModelSpec(dbnet_head, 13, 32, 640, ("prob",)),
}

DETECTIONS = {"selected": "selected", "detections": "selected"}

TASK_MODELS: dict[str, ModelSpec] = {
    "yolo_detector": ModelSpec(yolo_detector, 17, 64, 640,
                               ("predictions", "scores", "selected", "detections"),
                               rows_by_batch=DETECTIONS),
    "ssd_head": ModelSpec(ssd_head, 13, 64, 300, ("boxes", "scores", "selected", "detections"),
                          rows_by_batch=DETECTIONS),
    "deeplabv3plus": ModelSpec(deeplabv3plus, 16, 64, 512, ("logits", "aux_logits")),
    "face_detector": ModelSpec(face_detector, 13, (48, 64), (480, 640),
                               ("scores", "boxes", "landmarks")),
    "crnn": ModelSpec(crnn, 14, (32, 64), (32, 100), ("log_probs",), channels=1,
                      batch_axes={"log_probs": 1}),
    "vit_tiny": ModelSpec(vit_tiny, 23, 32, 224, ("logits", "tokens")),
    "qdq_resnet_block": ModelSpec(qdq_resnet_float, 13, 32, 224, ("logits",),
                                  transform=quantize_qdq),
}


def rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for n in graph.node:
        n.input[:] = [new if v == old else v for v in n.input]
        n.output[:] = [new if v == old else v for v in n.output]


def input_dims(spec: ModelSpec, full: bool) -> list[int | str]:
    """[N, C, H, W] of the model input, N symbolic."""
    hw = spec.hw_full if full else spec.hw
    h, w = (hw, hw) if isinstance(hw, int) else hw
    return ["N", spec.channels, h, w]


def build_model(name: str, spec: ModelSpec, full: bool, seed: int) -> onnx.ModelProto:
    b = Builder(name, spec.opset, np.random.default_rng(derived_seed(seed, name, "weights")))
    outs = spec.build(b, full)
    if len(outs) != len(spec.outputs):
        raise GenError(f"{name}: built {len(outs)} outputs, expected {len(spec.outputs)}")
    graph = helper.make_graph(
        b.nodes, name,
        [helper.make_tensor_value_info(b.input, TensorProto.FLOAT, input_dims(spec, full))],
        [], b.inits)
    for tensor, out in zip(outs, spec.outputs):
        rename_value(graph, tensor, out)
    opsets = [helper.make_opsetid("", spec.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER,
                              ir_version=helper.find_min_ir_version_for(opsets))
    # Output shapes: infer at batch 1, then make the batch dim symbolic; the row count of a
    # data-dependent output is named after its selection.  (make_model copied the graph: edit
    # model.graph from here on.)
    types = infer_at_batch1(model)
    for out in spec.outputs:
        elem, dims = types.get(out, (TensorProto.UNDEFINED, None))
        if out in spec.rows_by_batch:
            if dims is None or any(d is None for d in dims[1:]):
                raise GenError(f"{name}: could not infer the shape of output {out!r}: {dims}")
            dims = [f"{spec.rows_by_batch[out]}_rows", *dims[1:]]
        else:
            axis = spec.batch_axes.get(out, 0)
            if dims is None or any(d is None for d in dims) or dims[axis] != 1:
                raise GenError(f"{name}: could not infer the shape of output {out!r}: {dims}")
            dims = [*dims[:axis], "N", *dims[axis + 1:]]
        model.graph.output.append(helper.make_tensor_value_info(out, elem, dims))
    calibrate_nms(model, name, seed)
    if spec.transform is not None:
        model = spec.transform(model, name, seed)
    return model


# Share of the scores of a calibration batch that pass an NMS score threshold.
NMS_CANDIDATE_SHARE = 0.1


def calibrate_nms(model: onnx.ModelProto, name: str, seed: int) -> None:
    """Random weights put the scores anywhere between 0 and 1, so a fixed score threshold keeps
    nothing for one weight seed and everything for another.  Sets each NonMaxSuppression's
    score_threshold initializer to the (1 - NMS_CANDIDATE_SHARE) quantile of the scores it gets
    on four standard-normal calibration samples.  In place."""
    nodes = [n for n in model.graph.node
             if n.op_type == "NonMaxSuppression" and len(n.input) > 4 and n.input[4]]
    if not nodes:
        return
    inits = {t.name: t for t in model.graph.initializer}
    inp = real_inputs(model.graph)[0]
    rng = np.random.default_rng(derived_seed(seed, name, "nms calibration"))
    x = rng.standard_normal([4, *[int(d) for d in dims_of(inp)[1:]]]).astype(np.float32)
    values = node_inputs(model, nodes, x)
    for n in nodes:
        if n.input[4] not in inits:
            raise GenError(f"{name}: the score threshold of {n.name} is not an initializer")
        q = np.quantile(values[n.input[1]], 1.0 - NMS_CANDIDATE_SHARE)
        thr = np.array([q], dtype=np.float32)
        inits[n.input[4]].CopyFrom(numpy_helper.from_array(thr, n.input[4]))


# ---------------------------------------------------------------------------------------------
# Shapes and FLOPs
# ---------------------------------------------------------------------------------------------


def real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (IR < 4 models list initializers as inputs)."""
    inits = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in inits]


def dims_of(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    out: list[int | str | None] = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return out


def infer_shapes_at_batch1(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Shapes of all values with the batch fixed to 1 (data propagation folds shape subgraphs)."""
    return {name: dims for name, (_, dims) in infer_at_batch1(model).items()}


def infer_at_batch1(model: onnx.ModelProto) -> dict[str, tuple[int, list[int | None]]]:
    """Element type and shape of all values with the batch fixed to 1 (see
    infer_shapes_at_batch1); unknown dimensions are None."""
    m = copy.deepcopy(model)
    for vi in real_inputs(m.graph):
        d0 = vi.type.tensor_type.shape.dim[0]
        d0.Clear()
        d0.dim_value = 1
    del m.graph.output[:]
    for n in m.graph.node:  # expose every value so inference reports it
        for o in n.output:
            if o:
                m.graph.output.append(helper.make_empty_tensor_value_info(o))
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    found: dict[str, tuple[int, list[int | None]]] = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            found[vi.name] = (vi.type.tensor_type.elem_type,
                              [d if isinstance(d, int) else None for d in dims_of(vi)])
    for t in m.graph.initializer:
        found[t.name] = (t.data_type, list(t.dims))
    return found


def flops_per_sample(model: onnx.ModelProto) -> int | None:
    """2 * MACs of Conv, MatMul and Gemm at batch 1 (None when a shape is unknown)."""
    shapes = infer_shapes_at_batch1(model)
    total = 0
    for n in model.graph.node:
        if n.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        out = shapes.get(n.output[0])
        a, w = shapes.get(n.input[0]), shapes.get(n.input[1])
        if not out or not a or not w or None in out or None in a or None in w:
            return None
        if n.op_type == "Conv":  # weight [Cout, Cin/g, kh, kw]
            total += 2 * math.prod(out) * math.prod(w[1:])
        elif n.op_type == "MatMul":
            total += 2 * math.prod(out) * a[-1]
        else:
            trans_a = any(at.name == "transA" and at.i for at in n.attribute)
            total += 2 * math.prod(out) * (a[0] if trans_a else a[1])
    return int(total)


# ---------------------------------------------------------------------------------------------
# Running onnxruntime and writing files
# ---------------------------------------------------------------------------------------------


def session(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # light models warn about unused initializers
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def check(model: onnx.ModelProto, what: str) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # checker and shape-inference errors have several types
        raise GenError(f"{what}: onnx checker failed: {e}") from e


def input_seed(seed: int, name: str, batch: int, attempt: int = 0) -> int:
    """Seed of a model's input at a batch; attempt > 0 when earlier inputs made a decision of
    the model (TopK, NonMaxSuppression) too close to call (see decisions_of)."""
    parts: tuple[object, ...] = (seed, name, "input", batch)
    return derived_seed(*parts, attempt) if attempt else derived_seed(*parts)


def model_input(seed: int, name: str, input_shape: list, batch: int,
                attempt: int = 0) -> np.ndarray:
    rng = np.random.default_rng(input_seed(seed, name, batch, attempt))
    shape = [batch, *[int(d) for d in input_shape[1:]]]
    return rng.standard_normal(shape).astype(np.float32)


def batch_rows(y: np.ndarray, selection: np.ndarray, sample: int) -> np.ndarray:
    """The rows of a data-dependent output that belong to one sample of the batch."""
    return y[selection[:, 0] == sample]


def run_and_write(out_dir: str, name: str, sess: ort.InferenceSession, input_name: str,
                  input_shape: list, batches: tuple[int, ...], seed: int,
                  batch_axes: Mapping[str, int] | None = None,
                  rows_by_batch: Mapping[str, str] | None = None, attempt: int = 0) -> None:
    """Random inputs per batch, ORT outputs, files; verifies batch independence where B > 1.

    An output's batch is on axis 0 unless batch_axes names another axis; an output named in
    rows_by_batch has rows selected by the data, each belonging to the sample given in column
    0 of its selection output: sample 0's rows of the batch-B run must equal the rows of a
    batch-1 run (integers exactly)."""
    batch_axes, rows_by_batch = batch_axes or {}, rows_by_batch or {}
    out_names = [o.name for o in sess.get_outputs()]
    for batch in batches:
        x = model_input(seed, name, input_shape, batch, attempt)
        outs = sess.run(None, {input_name: x})
        named = dict(zip(out_names, outs))
        np.save(os.path.join(out_dir, f"{name}.b{batch}.input.npy"), x)
        for k, y in enumerate(outs):
            out = out_names[k]
            if out in rows_by_batch:
                rows_of = named[rows_by_batch[out]][:, 0]
                if len(rows_of) != y.shape[0] or np.any((rows_of < 0) | (rows_of >= batch)):
                    raise GenError(f"{name}: output {out} ({y.shape}) does not match the batch "
                                   f"indices of {rows_by_batch[out]} at batch {batch}")
            elif y.shape[batch_axes.get(out, 0)] != batch:
                raise GenError(f"{name}: output {out} has shape {y.shape} at batch "
                               f"{batch}")
            if not np.all(np.isfinite(y)):
                raise GenError(f"{name}: output {out} is not finite at batch {batch}")
            np.save(os.path.join(out_dir, f"{name}.b{batch}.out{k}.npy"),
                    np.ascontiguousarray(y))
        if batch > 1:
            singles = sess.run(None, {input_name: x[:1]})
            named1 = dict(zip(out_names, singles))
            for k, (y, y1) in enumerate(zip(outs, singles)):
                out = out_names[k]
                if out in rows_by_batch:
                    y = batch_rows(y, named[rows_by_batch[out]], 0)
                    exact = y.dtype.kind not in "iub" or np.array_equal(y, y1)
                    if np.any(named1[rows_by_batch[out]][:, 0] != 0) or y.shape != y1.shape \
                            or not exact:
                        raise GenError(f"{name}: output {out}: the rows of sample 0 of batch "
                                       f"{batch} ({y.shape}) differ from a batch-1 run "
                                       f"({y1.shape})")
                else:
                    y = np.take(y, [0], axis=batch_axes.get(out, 0))
                if not np.allclose(y, y1, rtol=1e-4, atol=1e-5):
                    err = float(np.max(np.abs(y - y1)))
                    raise GenError(f"{name}: output {out}: sample 0 of batch {batch} "
                                   f"differs from a batch-1 run (max abs diff {err:g})")


def op_types(model: onnx.ModelProto) -> list[str]:
    return sorted({n.op_type for n in model.graph.node})


def default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def output_quanta(model: onnx.ModelProto) -> list[float | None]:
    """Per output: the scale of the DequantizeLinear that produces it when that scale is a
    constant scalar (one quantisation step of the output), else None."""
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    quanta: list[float | None] = []
    for o in model.graph.output:
        n = producer.get(o.name)
        dequantized = n is not None and n.op_type == "DequantizeLinear"
        scale = consts.get(n.input[1]) if dequantized else None
        quanta.append(float(scale) if scale is not None and scale.size == 1 else None)
    return quanta


def generate_synthetic(out_dir: str, names: list[str], full: bool, seed: int,
                       models: dict[str, ModelSpec] | None = None) -> list[dict]:
    models = MODELS if models is None else models
    entries = []
    for name in names:
        t0 = time.perf_counter()
        spec = models[name]
        model = build_model(name, spec, full, seed)
        check(model, name)
        path = os.path.join(out_dir, f"{name}.onnx")
        onnx.save(model, path)
        inp = model.graph.input[0]
        attempt, decisions, warnings = choose_inputs(model, name, dims_of(inp), seed,
                                                     strict=not full)
        for w in warnings:
            print(f"warning: {name}: {w}", file=sys.stderr)
        run_and_write(out_dir, name, session(path), inp.name, dims_of(inp), BATCHES, seed,
                      spec.batch_axes, spec.rows_by_batch, attempt)
        flops = flops_per_sample(model)
        entry = {
            "name": name,
            "file": f"{name}.onnx",
            "source": "generated",
            "size": "full" if full else "reduced",
            "opset": default_opset(model),
            "ir_version": model.ir_version,
            "inputs": [{"name": inp.name, "shape": dims_of(inp)}],
            "outputs": [o.name for o in model.graph.output],
            "output_shapes": [dims_of(o) for o in model.graph.output],
            "batches": list(BATCHES),
            "flops_per_sample": flops,
            "op_types": op_types(model),
        }
        if name in TASK_MODELS:
            entry.update({
                "output_dtypes": [helper.tensor_dtype_to_np_dtype(
                    o.type.tensor_type.elem_type).name for o in model.graph.output],
                "batch_axes": dict(spec.batch_axes),
                "rows_by_batch": dict(spec.rows_by_batch),
                "output_quanta": output_quanta(model),
                "input_attempt": attempt,
                "decisions": decisions,
                "decision_warnings": warnings,
            })
        mflop = f"{flops / 1e6:.1f} MFLOP" if flops is not None else "? FLOP"
        picked = "".join(f", {d['op']} {d['node']} selects {d['selected_per_sample']} at "
                         f"batch {d['batch']}" for d in decisions
                         if d["op"] == "NonMaxSuppression")
        print(f"{name}: opset {entry['opset']}, {mflop}/sample{picked}, "
              f"{time.perf_counter() - t0:.2f}s", file=sys.stderr)
        entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------------------
# Decisions: TopK and NonMaxSuppression must not sit on a knife edge
# ---------------------------------------------------------------------------------------------

DECISION_OPS = ("NonMaxSuppression", "TopK")
# Relative size (of each value, see magnitude) of the perturbations a decision must survive:
# well above the float differences between onnxruntime and another executor (~1e-6).
DECISION_EPS = 1e-5
DECISION_FLOOR = 1e-2
DECISION_TRIALS = 8
MAX_INPUT_ATTEMPTS = 16


def choose_inputs(model: onnx.ModelProto, name: str, input_shape: list, seed: int,
                  strict: bool = True) -> tuple[int, list[dict], list[str]]:
    """The first input attempt (0, 1, ...) whose decisions are robust at every batch (see
    decisions_of), the decisions taken and, when not strict, the problems of attempt 0 (full-size
    detectors take thousands of decisions, some always close: their outputs are for timing, not
    for comparisons).  Attempt 0 for models without TopK or NMS."""
    nodes = [n for n in model.graph.node if n.op_type in DECISION_OPS]
    if not nodes:
        return 0, [], []
    problems: list[str] = []
    for attempt in range(MAX_INPUT_ATTEMPTS if strict else 1):
        decisions, problems = [], []
        for batch in BATCHES:
            x = model_input(seed, name, input_shape, batch, attempt)
            found, trouble = decisions_of(model, nodes, x, f"{name}/{batch}")
            decisions += [{"batch": batch, **d} for d in found]
            problems += [f"batch {batch}: {p}" for p in trouble]
        if not problems or not strict:
            return attempt, decisions, problems
    raise GenError(f"{name}: no input among {MAX_INPUT_ATTEMPTS} attempts gives robust, "
                   f"non-degenerate decisions; last: {'; '.join(problems)}")


def decisions_of(model: onnx.ModelProto, nodes: list[onnx.NodeProto], x: np.ndarray,
                 tag: str) -> tuple[list[dict], list[str]]:
    """Runs the model on x and checks each TopK / NonMaxSuppression node on the values it got.

    Robust: the indices it outputs stay the same under DECISION_TRIALS random perturbations of
    its data inputs, each value moved by up to DECISION_EPS of its magnitude (for TopK also:
    the gaps between the k + 1 largest values along the axis exceed that), so an executor with
    slightly different float rounding takes the same decisions.  Non-degenerate (NMS): every
    sample keeps at least two boxes, and IoU suppression removes some box (of some sample) that
    the per-class cap would have kept.
    Returns a summary per node and the problems found."""
    values = node_inputs(model, nodes, x)
    found, problems = [], []
    opset = default_opset(model)
    for node in nodes:
        args = [values[i] if i else None for i in node.input]
        ref = run_node(node, opset, args)
        label = f"{node.op_type} {node.name}"
        data = [0, 1] if node.op_type == "NonMaxSuppression" else [0]
        index_out = 0 if node.op_type == "NonMaxSuppression" else 1
        rng = np.random.default_rng(derived_seed(tag, node.name, "perturb"))
        for _ in range(DECISION_TRIALS):
            moved = list(args)
            for i in data:
                moved[i] = perturbed(args[i], rng)
            if not np.array_equal(run_node(node, opset, moved)[index_out], ref[index_out]):
                problems.append(f"{label}: the indices change under a {DECISION_EPS:g} "
                                "relative perturbation of its inputs")
                break
        summary = {"op": node.op_type, "node": node.name}
        if node.op_type == "TopK":
            gap = topk_gap(node, args)
            summary["min_relative_gap"] = gap
            if gap <= DECISION_EPS:
                problems.append(f"{label}: two of the k + 1 largest values are within "
                                f"{gap:.2g} (relative)")
        else:
            summary.update(nms_counts(args, ref[0]))
            kept, cap = summary["selected_per_sample"], summary["capped_candidates_per_sample"]
            problems += [f"{label}: sample {b} keeps {k} box(es)"
                         for b, k in enumerate(kept) if k < 2]
            if sum(kept) >= sum(cap):
                problems.append(f"{label}: IoU suppression removes nothing ({sum(kept)} of "
                                f"{sum(cap)} kept)")
        found.append(summary)
    return found, problems


def magnitude(v: np.ndarray) -> np.ndarray:
    """Per element, the size against which float differences are measured: |v|, but at least
    DECISION_FLOOR of the tensor's largest |value| (a value near 0 may be the difference of
    larger terms and carry their rounding)."""
    v = np.abs(v.astype(np.float64))
    return np.maximum(v, DECISION_FLOOR * float(np.max(v)) if v.size else 0.0)


def perturbed(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """v with each element moved by up to DECISION_EPS of its magnitude."""
    return (v + rng.uniform(-1, 1, v.shape) * DECISION_EPS * magnitude(v)).astype(v.dtype)


def topk_gap(node: onnx.NodeProto, args: list[np.ndarray | None]) -> float:
    """Smallest gap between neighbours among the k + 1 best values along TopK's axis, relative
    to their magnitude."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    x, k = args[0], int(np.asarray(args[1]).reshape(-1)[0])
    floor = DECISION_FLOOR * float(np.max(np.abs(x))) if x.size else 0.0
    v = np.sort(np.moveaxis(x, attrs.get("axis", -1), -1).astype(np.float64), axis=-1)
    if attrs.get("largest", 1):
        v = v[..., ::-1]
    top = v[..., :k + 1]
    gaps = np.abs(np.diff(top, axis=-1))
    if not gaps.size:
        return math.inf
    sizes = np.maximum(np.maximum(np.abs(top[..., 1:]), np.abs(top[..., :-1])), floor)
    return float(np.min(gaps / np.maximum(sizes, 1e-30)))


def nms_counts(args: list[np.ndarray | None], selected: np.ndarray) -> dict:
    """Boxes kept per sample, and per sample the sum over classes of min(boxes above the score
    threshold, max_output_boxes_per_class): what a NonMaxSuppression without IoU suppression
    would keep."""
    scores = args[1]
    max_out = int(args[2].reshape(-1)[0]) if len(args) > 2 and args[2] is not None else 0
    thr = float(args[4].reshape(-1)[0]) if len(args) > 4 and args[4] is not None else -math.inf
    above = (scores > thr).sum(axis=-1)  # [N, C]
    return {
        "selected_per_sample": [int(np.sum(selected[:, 0] == b)) for b in range(len(scores))],
        "capped_candidates_per_sample": [int(np.minimum(a, max_out).sum()) for a in above],
    }


def node_inputs(model: onnx.ModelProto, nodes: list[onnx.NodeProto],
                x: np.ndarray) -> dict[str, np.ndarray]:
    """The values of the nodes' inputs when the model runs on x (constants included)."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    wanted = [i for n in nodes for i in n.input if i and i not in values]
    types = infer_at_batch1(model)
    m = copy.deepcopy(model)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_tensor_value_info(v, types[v][0], None)
                          for v in dict.fromkeys(wanted))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in m.graph.output]
    values.update(zip(names, sess.run(names, {real_inputs(model.graph)[0].name: x})))
    return values


def run_node(node: onnx.NodeProto, opset: int,
             args: list[np.ndarray | None]) -> list[np.ndarray]:
    """Runs one node alone in onnxruntime on the given inputs (None: absent)."""
    ins = [f"in{i}" if a is not None else "" for i, a in enumerate(args)]
    outs = [f"out{i}" for i in range(len(node.output))]
    single = helper.make_node(node.op_type, ins, outs, **{
        a.name: helper.get_attribute_value(a) for a in node.attribute})
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for n, a in zip(ins, args) if a is not None]
    out_types = {"NonMaxSuppression": [TensorProto.INT64],
                 "TopK": [helper.np_dtype_to_tensor_dtype(args[0].dtype), TensorProto.INT64]}
    outputs = [helper.make_tensor_value_info(n, t, None)
               for n, t in zip(outs, out_types[node.op_type])]
    opsets = [helper.make_opsetid("", opset)]
    m = helper.make_model(helper.make_graph([single], "node", inputs, outputs),
                          opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {n: a for n, a in zip(ins, args) if a is not None})


# ---------------------------------------------------------------------------------------------
# Light models from the onnx package
# ---------------------------------------------------------------------------------------------


def light_dir() -> str:
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def light_names() -> list[str]:
    d = light_dir()
    if not os.path.isdir(d):
        return []
    return sorted(f[:-5] for f in os.listdir(d) if f.startswith("light_") and f.endswith(".onnx"))


def hard_coded_batch(model: onnx.ModelProto) -> str | None:
    """Why the batch cannot be made symbolic, or None.  Detects Reshape targets (initializers or
    Constant nodes) whose first entry is a literal 1 rather than 0 (copy) or -1."""
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    for n in model.graph.node:
        if n.op_type == "Reshape":
            target = consts.get(n.input[1])
            if target is None:
                return f"Reshape {n.name or n.output[0]} has a computed target"
            if target.size and int(target.reshape(-1)[0]) == 1:
                return (f"Reshape target {n.input[1]} = {target.tolist()} hard-codes batch 1")
    return None


def dummy_input(vi: onnx.ValueInfoProto) -> np.ndarray:
    """The input of onnx's backend test for light models (Runner.generate_dummy_data with
    random=False): arange(n).reshape(shape) / n, unknown dims taken as 1."""
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in dims_of(vi))
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def randomize_constant_weights(model: onnx.ModelProto, rng: np.random.Generator) -> int:
    """Replace every ConstantOfShape whose shape is an initializer by a random initializer of
    that shape (in place); returns how many.  The light models store all their large weights as
    ConstantOfShape(0.02), which makes every class score equal (the softmax outputs are all
    1/1000) and hides most engine bugs; random weights make the outputs informative.  The kind of
    values follows the consumer (seen through Unsqueeze/Reshape): He-normal for Conv weights,
    normal * sqrt(1/fan_in) for Gemm weights, [0.5, 1.5) for BatchNormalization scale and
    variance and for Mul factors, normal * 0.1 for everything else (biases, means, shifts).
    See also calibrate_classifier."""
    g = model.graph
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in g.node:
        for i, v in enumerate(n.input):
            consumers.setdefault(v, []).append((n, i))
    inits = {t.name: t for t in g.initializer}

    def role(value: str) -> tuple[str, int]:
        while True:
            uses = consumers.get(value, [])
            if len(uses) != 1:
                return ("", -1)
            node, index = uses[0]
            if node.op_type in ("Unsqueeze", "Reshape") and index == 0:
                value = node.output[0]
                continue
            return (node.op_type, index)

    keep_nodes, new_inits, dropped = [], [], set()
    for n in g.node:
        shape_init = inits.get(n.input[0]) if n.op_type == "ConstantOfShape" else None
        if shape_init is None:
            keep_nodes.append(n)
            continue
        shape = tuple(int(s) for s in numpy_helper.to_array(shape_init).reshape(-1))
        fan_in = max(1, math.prod(shape[1:]))
        op, index = role(n.output[0])
        if op == "Conv" and index == 1:
            arr = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
        elif op == "Gemm" and index == 1:
            arr = rng.standard_normal(shape) * math.sqrt(1.0 / fan_in)
        elif (op == "BatchNormalization" and index in (1, 4)) or op == "Mul":
            arr = rng.uniform(0.5, 1.5, shape)
        else:
            arr = rng.standard_normal(shape) * 0.1
        new_inits.append(numpy_helper.from_array(arr.astype(np.float32), n.output[0]))
        if len(consumers.get(n.input[0], [])) == 1:
            dropped.add(n.input[0])
    del g.node[:]
    g.node.extend(keep_nodes)
    kept_inits = [t for t in g.initializer if t.name not in dropped]
    del g.initializer[:]
    g.initializer.extend(kept_inits + new_inits)
    if model.ir_version < 4:  # IR < 4: every initializer must also be a graph input
        kept_inputs = [i for i in g.input if i.name not in dropped]
        del g.input[:]
        g.input.extend(kept_inputs)
        g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in new_inits)
    return len(new_inits)


def calibrate_classifier(model: onnx.ModelProto, x: np.ndarray, target_std: float = 2.0) -> None:
    """Random weights in a deep net easily give logits so large that the final Softmax is
    one-hot.  When an output is Softmax(Conv or Gemm [-> Relu/pooling/reshapes]), scale that
    layer's weight and bias (positively homogeneous path) so the logits have std target_std on x.
    In place; does nothing when the pattern is absent."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    outputs = {o.name for o in g.output}
    softmax = next((n for n in g.node if n.op_type == "Softmax" and n.output[0] in outputs), None)
    if softmax is None:
        return
    logits = softmax.input[0]
    layer = producer.get(logits)
    passthrough = ("Relu", "GlobalAveragePool", "AveragePool", "MaxPool", "Flatten", "Reshape",
                   "Dropout", "Identity")
    while layer is not None and layer.op_type in passthrough:
        layer = producer.get(layer.input[0])
    if layer is None or layer.op_type not in ("Conv", "Gemm"):
        return
    params = []
    for name in layer.input[1:3]:
        while name not in inits and name in producer and producer[name].op_type == "Reshape":
            name = producer[name].input[0]
        if name not in inits:
            return
        params.append(inits[name])
    g.output.append(helper.make_tensor_value_info(logits, TensorProto.FLOAT, None))
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
        y = sess.run([logits], {real_inputs(g)[0].name: x})[0]
    finally:
        g.output.pop()
    factor = target_std / max(float(np.std(y)), 1e-12)
    for t in params:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(factor), t.name))


def emit_light(out_dir: str, name: str, model: onnx.ModelProto, src: str | None,
               seed: int) -> dict:
    """Write one light model (symbolic batch where possible), its inputs and ORT outputs; with
    src (the packaged file) also the packaged expected output and the input that produced it."""
    t0 = time.perf_counter()
    check(model, name)
    inputs = real_inputs(model.graph)
    if len(inputs) != 1:
        raise GenError(f"{name}: expected one non-initializer input, found {len(inputs)}")
    inp = inputs[0]
    path = os.path.join(out_dir, f"{name}.onnx")
    reason = hard_coded_batch(model)
    batch_dims = [vi.type.tensor_type.shape.dim[0] for vi in (inp, *model.graph.output)]
    if reason is None and all(d.HasField("dim_value") and d.dim_value == 1 for d in batch_dims):
        for d in batch_dims:
            d.Clear()
            d.dim_param = "N"
        check(model, name + " (symbolic batch)")
        batches: tuple[int, ...] = BATCHES
    else:
        batches = (1,)
        reason = reason or "batch dimension is not a literal 1"
    if src is not None and batches == (1,):
        shutil.copyfile(src, path)  # unchanged: a byte-exact copy
    else:
        onnx.save(model, path)
    sess = session(path)
    run_and_write(out_dir, name, sess, inp.name, dims_of(inp), batches, seed)

    extra: dict = {}
    if src is not None:
        # Expected output shipped with the model, and the input the backend test feeds.
        extra = {"expected": None, "expected_input": None}
        pb = os.path.splitext(src)[0] + "_output_0.pb"
        if os.path.exists(pb):
            expected = numpy_helper.to_array(onnx.load_tensor(pb))
            np.save(os.path.join(out_dir, f"{name}.expected.npy"), expected)
            extra["expected"] = f"{name}.expected.npy"
            x = dummy_input(inp)
            y = sess.run(None, {inp.name: x})[0]
            diff = float(np.max(np.abs(y - expected))) if y.shape == expected.shape else None
            extra["expected_vs_ort_max_abs_diff"] = diff
            if diff is not None and np.allclose(y, expected, rtol=1e-3, atol=1e-7):
                np.save(os.path.join(out_dir, f"{name}.expected_input.npy"), x)
                extra["expected_input"] = f"{name}.expected_input.npy"
            else:
                print(f"warning: {name}: onnxruntime on the backend-test input does not "
                      f"reproduce output_0.pb; expected_input left null", file=sys.stderr)
    flops = flops_per_sample(model)
    entry = {
        "name": name,
        "file": f"{name}.onnx",
        "source": "onnx/backend/test/data/light" + (
            "" if src is not None else " (ConstantOfShape weights randomized)"),
        "opset": default_opset(model),
        "ir_version": model.ir_version,
        "inputs": [{"name": inp.name, "shape": dims_of(inp)}],
        "outputs": [o.name for o in model.graph.output],
        "output_shapes": [dims_of(o) for o in model.graph.output],
        "batches": list(batches),
        "flops_per_sample": flops,
        "op_types": op_types(model),
        **extra,
    }
    if batches == (1,):
        entry["batch_note"] = reason
    mflop = f"{flops / 1e6:.0f} MFLOP" if flops is not None else "? FLOP"
    print(f"{name}: opset {entry['opset']}, {mflop}/sample, batches {list(batches)}, "
          f"{time.perf_counter() - t0:.2f}s", file=sys.stderr)
    return entry


def generate_light(out_dir: str, names: list[str], seed: int, random_weights: bool) -> list[dict]:
    entries = []
    for name in names:
        src = os.path.join(light_dir(), f"{name}.onnx")
        entries.append(emit_light(out_dir, name, onnx.load(src), src, seed))
        if random_weights:
            model = onnx.load(src)
            rw_name = name + RANDOM_WEIGHTS_SUFFIX
            rng = np.random.default_rng(derived_seed(seed, rw_name, "weights"))
            if randomize_constant_weights(model, rng) == 0:
                raise GenError(f"{name}: no ConstantOfShape weights to randomize")
            inp = real_inputs(model.graph)[0]
            shape = [1, *[int(d) for d in dims_of(inp)[1:]]]
            calib = np.random.default_rng(derived_seed(seed, rw_name, "calibration"))
            calibrate_classifier(model, calib.standard_normal(shape).astype(np.float32))
            entries.append(emit_light(out_dir, rw_name, model, None, seed))
    return entries


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def write_manifest(out_dir: str, entries: list[dict]) -> None:
    """Merge into OUT_DIR/manifest.json: regenerated names are replaced, others kept."""
    path = os.path.join(out_dir, "manifest.json")
    old: list[dict] = []
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f).get("models", [])
        except (OSError, ValueError, AttributeError):
            old = []
    new_names = {e["name"] for e in entries}
    kept = [e for e in old if e.get("name") not in new_names
            and os.path.exists(os.path.join(out_dir, str(e.get("file"))))]
    manifest = {
        "generator": PRODUCER,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort.__version__,
        "models": kept + entries,
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Generate ONNX test models and onnxruntime reference outputs.",
        epilog="See the module docstring for the files written.")
    p.add_argument("out_dir", nargs="?", help="output directory (created if missing)")
    p.add_argument("--full", action="store_true", help="real model sizes (slow)")
    p.add_argument("--light", action="store_true",
                   help="the light_*.onnx models shipped in the onnx package instead")
    p.add_argument("--tasks", action="store_true",
                   help="the task-level models instead (detection with NMS, segmentation, "
                        "face, OCR, ViT, QDQ)")
    p.add_argument("--random-weights", action="store_true",
                   help=f"with --light: also write light_NAME{RANDOM_WEIGHTS_SUFFIX} copies whose "
                        "constant weights are replaced by random ones")
    p.add_argument("--only", help="comma-separated model names (light names without "
                                  f"{RANDOM_WEIGHTS_SUFFIX})")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--list", action="store_true", help="print the model names and exit")
    args = p.parse_args(argv)
    if args.light and args.full:
        p.error("--full applies to the generated models, not to --light")
    if args.light and args.tasks:
        p.error("--light and --tasks select different model sets; give one")
    if args.random_weights and not args.light:
        p.error("--random-weights needs --light")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    models = TASK_MODELS if args.tasks else MODELS
    available = light_names() if args.light else list(models)
    if args.light and not available:
        raise GenError(f"no light_*.onnx models found in {light_dir()}")
    if args.list:
        for name in available:
            print(name)
            if args.random_weights:
                print(name + RANDOM_WEIGHTS_SUFFIX)
        return 0
    if not args.out_dir:
        raise GenError("OUT_DIR is required (or use --list)")
    names = available
    if args.only:
        names = list(dict.fromkeys(n.strip() for n in args.only.split(",") if n.strip()))
        unknown = [n for n in names if n not in available]
        if unknown or not names:
            other = [n for n in unknown if n in (MODELS if args.tasks else TASK_MODELS)]
            hint = (f" ({', '.join(other)}: {'without' if args.tasks else 'with'} --tasks)"
                    if other and not args.light else "")
            raise GenError(f"unknown model name(s): {', '.join(unknown) or '(none given)'}"
                           f"{hint}; known: {', '.join(available)}")
    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.perf_counter()
    if args.light:
        entries = generate_light(args.out_dir, names, args.seed, args.random_weights)
    else:
        entries = generate_synthetic(args.out_dir, names, args.full, args.seed, models)
    for entry in entries:
        entry["seed"] = args.seed
    write_manifest(args.out_dir, entries)
    print(f"wrote {len(entries)} model(s) to {args.out_dir} in "
          f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # e.g. --list | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except (GenError, OSError) as e:
        print(f"gen_onnx_models: error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # unexpected: still a clear one-line reason, then the traceback
        print(f"gen_onnx_models: unexpected error: {type(e).__name__}: {e}", file=sys.stderr)
        raise
