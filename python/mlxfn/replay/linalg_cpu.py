"""Linear-algebra primitives that MLX runs only on the CPU stream.

Each is the public ``mx.linalg`` op that emits it, on ``stream=mx.cpu`` as
MLX requires (these primitives have no GPU kernels).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ..ir import Node
from .registry import register


@register("QRF")
def qrf(node: Node, xs: list[mx.array]) -> list[mx.array]:
    return list(mx.linalg.qr(xs[0], stream=mx.cpu))


@register("SVD")
def svd(node: Node, xs: list[mx.array]) -> mx.array | list[mx.array]:
    (compute_uv,) = node.args
    result: Any = mx.linalg.svd(xs[0], compute_uv=bool(compute_uv), stream=mx.cpu)  # one array or three
    return list(result) if compute_uv else result


@register("Inverse")
def inverse(node: Node, xs: list[mx.array]) -> mx.array:
    tri, upper = node.args
    if tri:
        return mx.linalg.tri_inv(xs[0], upper=upper, stream=mx.cpu)
    return mx.linalg.inv(xs[0], stream=mx.cpu)


@register("Cholesky")
def cholesky(node: Node, xs: list[mx.array]) -> mx.array:
    (upper,) = node.args
    return mx.linalg.cholesky(xs[0], upper=upper, stream=mx.cpu)


@register("Eig")
def eig(node: Node, xs: list[mx.array]) -> mx.array | list[mx.array]:
    (compute_eigenvectors,) = node.args
    if compute_eigenvectors:
        return list(mx.linalg.eig(xs[0], stream=mx.cpu))
    return mx.linalg.eigvals(xs[0], stream=mx.cpu)


@register("Eigh")
def eigh(node: Node, xs: list[mx.array]) -> mx.array | list[mx.array]:
    uplo, compute_eigenvectors = node.args
    if compute_eigenvectors:
        return list(mx.linalg.eigh(xs[0], UPLO=uplo, stream=mx.cpu))
    return mx.linalg.eigvalsh(xs[0], UPLO=uplo, stream=mx.cpu)
