"""Matrix products, convolution and quantized matmul."""

from __future__ import annotations

import mlx.core as mx

from ..trace import Node
from .registry import register

# MLX's QuantizationMode enum, as the export callback reports it.
QUANTIZATION_MODES = {0: "affine", 1: "mxfp4", 2: "mxfp8", 3: "nvfp4"}


@register("Matmul")
def matmul(node: Node, xs: list[mx.array]) -> mx.array:
    return mx.matmul(xs[0], xs[1])


@register("AddMM")
def addmm(node: Node, xs: list[mx.array]) -> mx.array:
    alpha, beta = node.args
    a, b, c = xs
    return mx.addmm(c, a, b, alpha=alpha, beta=beta)


@register("Convolution")
def convolution(node: Node, xs: list[mx.array]) -> mx.array:
    stride, pad_lo, pad_hi, kernel_dilation, input_dilation, groups, flip = node.args
    return mx.conv_general(
        xs[0],
        xs[1],
        stride=list(stride),
        padding=(list(pad_lo), list(pad_hi)),
        kernel_dilation=list(kernel_dilation),
        input_dilation=list(input_dilation),
        groups=groups,
        flip=flip,
    )


@register("QuantizedMatmul")
def quantized_matmul(node: Node, xs: list[mx.array]) -> mx.array:
    group_size, bits, mode, transpose = node.args
    x, w, scales = xs[:3]
    biases = xs[3] if len(xs) > 3 else None
    return mx.quantized_matmul(
        x,
        w,
        scales,
        biases,
        transpose=transpose,
        group_size=group_size,
        bits=bits,
        mode=QUANTIZATION_MODES[mode],
    )
