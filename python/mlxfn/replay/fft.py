"""The FFT primitive: one n-dimensional transform over ``axes``.

State: axes, inverse, real, odd_out.  A real forward transform is ``rfftn``;
a real inverse one is ``irfftn`` whose last output length is
``2 * (n - 1) + odd_out`` (not recoverable from the input alone, hence
odd_out); the complex ones are ``fftn`` / ``ifftn``.  Sizes are the inputs'
own, so no padding or cropping is added.
"""

from __future__ import annotations

import mlx.core as mx

from ..ir import Node
from .registry import register


@register("FFT")
def fft(node: Node, xs: list[mx.array]) -> mx.array:
    axes, inverse, real, odd_out = node.args
    axes = list(axes)
    (x,) = xs
    if not real:
        return (mx.fft.ifftn if inverse else mx.fft.fftn)(x, axes=axes)
    if not inverse:
        return mx.fft.rfftn(x, axes=axes)
    sizes = [x.shape[ax] for ax in axes]
    sizes[-1] = 2 * (sizes[-1] - 1) + int(odd_out)
    return mx.fft.irfftn(x, s=tuple(sizes), axes=axes)
