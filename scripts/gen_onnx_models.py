#!/usr/bin/env python3
"""Generate ONNX test models and onnxruntime oracle outputs for poolpipe's ONNX importer.

Usage
-----
    python3 scripts/gen_onnx_models.py OUT_DIR [--full] [--only NAME[,NAME...]] [--seed 0]
    python3 scripts/gen_onnx_models.py OUT_DIR --light [--random-weights] [--only NAME,...]
    python3 scripts/gen_onnx_models.py --list [--light [--random-weights]]

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

Every model has one float32 input of shape [N, 3, H, W] with a symbolic batch "N" (light models
keep their fixed batch of 1 when a Reshape target hard-codes it) and outputs whose first
dimension is the batch.  Every model passes ``onnx.checker.check_model(model, full_check=True)``.

Files written into OUT_DIR for each model NAME
----------------------------------------------
NAME.onnx                   the model
NAME.b{B}.input.npy         float32 standard-normal input of batch B (B = 1 and 4; light models
                            with a fixed batch: B = 1 only); seed derived from --seed, NAME, B
NAME.b{B}.out{K}.npy        output K (0-based, model output order) computed by onnxruntime with
                            the CPUExecutionProvider (default session options)
NAME.expected.npy           (--light, not _rw) the packaged output_0.pb as .npy
NAME.expected_input.npy     (--light, not _rw) the input that produced it
manifest.json               {"generator", "onnx_version", "onnxruntime_version",
                             "models": [{"name", "file", "source", "opset", "ir_version",
                             "inputs": [{"name", "shape"}], "outputs": [names],
                             "output_shapes", "batches", "flops_per_sample", "op_types",
                             "seed", ...}]}
                            Light entries add "expected", "expected_input" (null when the input
                            could not be determined), "expected_vs_ort_max_abs_diff" and, when
                            the batch stays fixed, "batch_note" with the reason.  Entries of an
                            existing OUT_DIR/manifest.json whose names are not regenerated are
                            kept, so the default and --light modes can share one directory.

Checks done for every model: the checker (with strict shape inference), onnxruntime runs at
every batch with finite outputs, and, where the batch is symbolic, sample 0 of the batch-4 run
equals a batch-1 run of that sample (catches hard-coded batch sizes).  The script exits non-zero
with a message on any failure.

FLOPs are approximate: 2 * multiply-accumulates of Conv, MatMul and Gemm, per sample.
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
from dataclasses import dataclass
from typing import Callable

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


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[Builder, bool], list[str]]
    opset: int
    hw: int  # reduced input size
    hw_full: int
    outputs: tuple[str, ...]


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


def rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for n in graph.node:
        n.input[:] = [new if v == old else v for v in n.input]
        n.output[:] = [new if v == old else v for v in n.output]


def build_model(name: str, spec: ModelSpec, full: bool, seed: int) -> onnx.ModelProto:
    b = Builder(name, spec.opset, np.random.default_rng(derived_seed(seed, name, "weights")))
    hw = spec.hw_full if full else spec.hw
    outs = spec.build(b, full)
    if len(outs) != len(spec.outputs):
        raise GenError(f"{name}: built {len(outs)} outputs, expected {len(spec.outputs)}")
    graph = helper.make_graph(
        b.nodes, name,
        [helper.make_tensor_value_info(b.input, TensorProto.FLOAT, ["N", 3, hw, hw])],
        [], b.inits)
    for tensor, out in zip(outs, spec.outputs):
        rename_value(graph, tensor, out)
    opsets = [helper.make_opsetid("", spec.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER,
                              ir_version=helper.find_min_ir_version_for(opsets))
    # Output shapes: infer at batch 1, then make the leading (batch) dim symbolic.  (make_model
    # copied the graph: edit model.graph from here on.)
    shapes = infer_shapes_at_batch1(model)
    for out in spec.outputs:
        dims = shapes.get(out)
        if dims is None or any(d is None for d in dims) or dims[0] != 1:
            raise GenError(f"{name}: could not infer the shape of output {out!r}: {dims}")
        model.graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT,
                                                                ["N", *dims[1:]]))
    return model


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
    shapes: dict[str, list[int | None]] = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [d if isinstance(d, int) else None for d in dims_of(vi)]
    for t in m.graph.initializer:
        shapes[t.name] = list(t.dims)
    return shapes


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


def run_and_write(out_dir: str, name: str, sess: ort.InferenceSession, input_name: str,
                  input_shape: list, batches: tuple[int, ...], seed: int) -> None:
    """Random inputs per batch, ORT outputs, files; verifies batch independence where B > 1."""
    out_names = [o.name for o in sess.get_outputs()]
    for batch in batches:
        rng = np.random.default_rng(derived_seed(seed, name, "input", batch))
        shape = [batch, *[int(d) for d in input_shape[1:]]]
        x = rng.standard_normal(shape).astype(np.float32)
        outs = sess.run(None, {input_name: x})
        np.save(os.path.join(out_dir, f"{name}.b{batch}.input.npy"), x)
        for k, y in enumerate(outs):
            if y.shape[0] != batch:
                raise GenError(f"{name}: output {out_names[k]} has shape {y.shape} at batch "
                               f"{batch}")
            if not np.all(np.isfinite(y)):
                raise GenError(f"{name}: output {out_names[k]} is not finite at batch {batch}")
            np.save(os.path.join(out_dir, f"{name}.b{batch}.out{k}.npy"),
                    np.ascontiguousarray(y))
        if batch > 1:
            singles = sess.run(None, {input_name: x[:1]})
            for k, (y, y1) in enumerate(zip(outs, singles)):
                if not np.allclose(y[:1], y1, rtol=1e-4, atol=1e-5):
                    err = float(np.max(np.abs(y[:1] - y1)))
                    raise GenError(f"{name}: output {out_names[k]}: sample 0 of batch {batch} "
                                   f"differs from a batch-1 run (max abs diff {err:g})")


def op_types(model: onnx.ModelProto) -> list[str]:
    return sorted({n.op_type for n in model.graph.node})


def default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def generate_synthetic(out_dir: str, names: list[str], full: bool, seed: int) -> list[dict]:
    entries = []
    for name in names:
        t0 = time.perf_counter()
        spec = MODELS[name]
        model = build_model(name, spec, full, seed)
        check(model, name)
        path = os.path.join(out_dir, f"{name}.onnx")
        onnx.save(model, path)
        inp = model.graph.input[0]
        run_and_write(out_dir, name, session(path), inp.name, dims_of(inp), BATCHES, seed)
        flops = flops_per_sample(model)
        entries.append({
            "name": name,
            "file": f"{name}.onnx",
            "source": "generated",
            "size": "full" if full else "reduced",
            "opset": spec.opset,
            "ir_version": model.ir_version,
            "inputs": [{"name": inp.name, "shape": dims_of(inp)}],
            "outputs": [o.name for o in model.graph.output],
            "output_shapes": [dims_of(o) for o in model.graph.output],
            "batches": list(BATCHES),
            "flops_per_sample": flops,
            "op_types": op_types(model),
        })
        mflop = f"{flops / 1e6:.1f} MFLOP" if flops is not None else "? FLOP"
        print(f"{name}: opset {spec.opset}, {mflop}/sample, "
              f"{time.perf_counter() - t0:.2f}s", file=sys.stderr)
    return entries


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
    if args.random_weights and not args.light:
        p.error("--random-weights needs --light")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    available = light_names() if args.light else list(MODELS)
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
            raise GenError(f"unknown model name(s): {', '.join(unknown) or '(none given)'}; "
                           f"known: {', '.join(available)}")
    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.perf_counter()
    if args.light:
        entries = generate_light(args.out_dir, names, args.seed, args.random_weights)
    else:
        entries = generate_synthetic(args.out_dir, names, args.full, args.seed)
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
