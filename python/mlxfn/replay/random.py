"""Random number primitives: every MLX sampler reduces to RandomBits.

MLX exposes no public op that emits RandomBits for an arbitrary shape, so the
handler computes the same bits with array ops: the Threefry-2x32 block cipher
(20 rounds, Salmon et al., "Parallel random numbers: as easy as 1, 2, 3")
applied to the counters in the order MLX's kernel lays them out.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..ir import Node
from .registry import register

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(x: mx.array, r: int) -> mx.array:
    return mx.bitwise_or(mx.left_shift(x, r), mx.right_shift(x, 32 - r))


def threefry2x32(k0: mx.array, k1: mx.array, c0: mx.array, c1: mx.array) -> tuple[mx.array, mx.array]:
    """Threefry-2x32 of counters (c0, c1) under key (k0, k1); all uint32, broadcast."""
    ks = (k0, k1, mx.bitwise_xor(mx.bitwise_xor(k0, k1), mx.array(_PARITY, mx.uint32)))
    x0, x1 = c0 + ks[0], c1 + ks[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = mx.bitwise_xor(_rotl(x1, r), x0)
        x0 = x0 + ks[(block + 1) % 3]
        x1 = x1 + ks[(block + 2) % 3] + mx.array(block + 1, mx.uint32)
    return x0, x1


_WIDTH_DTYPES = {1: mx.uint8, 2: mx.uint16, 4: mx.uint32}


@register("RandomBits")
def random_bits(node: Node, xs: list[mx.array]) -> mx.array:
    shape, width = node.args
    keys = mx.reshape(xs[0], (-1, 2))
    num_keys = keys.shape[0]
    bytes_per_key = width * (math.prod(shape) // num_keys)
    words = -(-bytes_per_key // 4)
    half, odd = words // 2, words % 2
    k0, k1 = keys[:, :1], keys[:, 1:]
    c0 = mx.arange(half, dtype=mx.uint32)
    first, second = threefry2x32(k0, k1, c0, c0 + (half + odd))
    parts = [first]
    if odd:  # the middle word: counter (half, 0), first half of the hash
        parts.append(threefry2x32(k0, k1, mx.array([half], mx.uint32), mx.array([0], mx.uint32))[0])
    parts.append(second)
    bits = mx.concatenate(parts, axis=1).view(mx.uint8)[:, :bytes_per_key]
    return mx.reshape(mx.contiguous(bits).view(_WIDTH_DTYPES[width]), shape)
