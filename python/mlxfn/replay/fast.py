"""MLX's fused "fast" primitives (Custom primitives with a fallback).

On CPU, MLX traces the decomposed fallback of ``mx.fast.*`` instead, so a CPU
trace only shows ``Quantize``; GPU traces show the fused primitives.
"""

from __future__ import annotations

import mlx.core as mx

from ..trace import Node
from .linalg import QUANTIZATION_MODES
from .registry import register


@register("Quantize")
def quantize(node: Node, xs: list[mx.array]) -> mx.array | list[mx.array]:
    group_size, bits, mode, dequantize = node.args
    mode_name = QUANTIZATION_MODES[mode]
    if dequantize:
        w, scales = xs[:2]
        biases = xs[2] if len(xs) > 2 else None
        return mx.dequantize(
            w, scales, biases, group_size=group_size, bits=bits, mode=mode_name
        )
    return list(mx.quantize(xs[0], group_size=group_size, bits=bits, mode=mode_name))


@register("RMSNorm")
def rms_norm(node: Node, xs: list[mx.array]) -> mx.array:
    (eps,) = node.args
    weight = xs[1] if len(xs) > 1 else None
    return mx.fast.rms_norm(xs[0], weight, eps)


@register("LayerNorm")
def layer_norm(node: Node, xs: list[mx.array]) -> mx.array:
    (eps,) = node.args
    weight = xs[1] if len(xs) > 1 else None
    bias = xs[2] if len(xs) > 2 else None
    return mx.fast.layer_norm(xs[0], weight, bias, eps)
