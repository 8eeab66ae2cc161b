"""Matrix products, convolution and quantized matmul."""

from __future__ import annotations

import mlx.core as mx

from ..ir import Node
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


@register("BlockMaskedMM")
def block_masked_mm(node: Node, xs: list[mx.array]) -> mx.array:
    """Inputs: a, b, then the output mask (3 or 5 inputs), then the two
    operand masks (4 or 5 inputs), already broadcast and cast by MLX, so
    passing them back through ``block_masked_mm`` changes nothing."""
    (block_size,) = node.args
    a, b, *masks = xs
    mask_out = masks.pop(0) if len(masks) in (1, 3) else None
    mask_lhs, mask_rhs = masks if masks else (None, None)
    return mx.block_masked_mm(a, b, block_size, mask_out, mask_lhs, mask_rhs)


@register("GatherMM")
def gather_mm(node: Node, xs: list[mx.array]) -> mx.array:
    # A sorted flag is recorded only when the other index array was MLX's
    # default: leaving it out reproduces both the flag and the default.
    left_sorted, right_sorted = node.args
    a, b, lhs, rhs = xs
    return mx.gather_mm(
        a,
        b,
        None if right_sorted else lhs,
        None if left_sorted else rhs,
        sorted_indices=left_sorted or right_sorted,
    )


@register("GatherQMM")
def gather_qmm(node: Node, xs: list[mx.array]) -> mx.array:
    group_size, bits, mode, transpose, left_sorted, right_sorted = node.args
    mode_name = QUANTIZATION_MODES[mode]
    x, w, scales = xs[:3]
    biases = xs[3] if mode_name == "affine" else None
    lhs, rhs = xs[-2:]
    return mx.gather_qmm(
        x,
        w,
        scales,
        biases,
        None if right_sorted else lhs,
        None if left_sorted else rhs,
        transpose=transpose,
        group_size=group_size,
        bits=bits,
        mode=mode_name,
        sorted_indices=left_sorted or right_sorted,
    )
