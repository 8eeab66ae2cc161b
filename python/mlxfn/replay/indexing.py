"""Gather-style primitives, rebuilt from take / take_along_axis / searchsorted."""

from __future__ import annotations

import mlx.core as mx

from ..ir import Node
from .registry import register


@register("Gather")
def gather(node: Node, xs: list[mx.array]) -> mx.array:
    """``out[i..., s...] = a[idx0[i...] + s0, ..., s...]`` over the indexed axes.

    MLX's Gather output is the broadcast index shape followed by
    ``slice_sizes`` (one per axis of ``a``).  The common case (one indexed axis
    with slice size 1, e.g. an embedding lookup) is a ``take``.  Otherwise the
    indexed axes are taken one after another with ``take_along_axis`` on an
    array broadcast against the index shape, each index offset by
    ``arange(slice_size)`` when the slice is wider than 1.  Both keep shapes
    following the inputs, so shapeless traces stay correct.
    """
    axes, slice_sizes = list(node.args[0]), list(node.args[1])
    a, indices = xs[0], xs[1:]
    if any(s != a.shape[ax] for ax, s in enumerate(slice_sizes) if ax not in axes):
        a = a[tuple(slice(None) if ax in axes else slice(0, s) for ax, s in enumerate(slice_sizes))]
    if not indices:
        return a
    if len(indices) > 1:
        indices = list(mx.broadcast_arrays(*indices))
    n = indices[0].ndim
    if len(axes) == 1 and slice_sizes[axes[0]] == 1:
        ax = axes[0]
        out = mx.take(a, indices[0], axis=ax)
        if ax != 0 and n:
            perm = list(range(ax, ax + n)) + list(range(ax)) + list(range(ax + n, out.ndim))
            out = mx.transpose(out, perm)
        return mx.expand_dims(out, n + ax)
    out = mx.expand_dims(a, list(range(n))) if n else a
    trailing = list(range(n, n + a.ndim))
    for idx, ax in zip(indices, axes):
        pos = mx.expand_dims(idx, trailing)
        size = slice_sizes[ax]
        if size > 1:  # a wide slice starts at the index (MLX: no bounds check)
            shape = [1] * (n + a.ndim)
            shape[n + ax] = size
            pos = pos + mx.arange(size, dtype=idx.dtype).reshape(shape)
        out = mx.take_along_axis(out, pos, axis=n + ax)
    return out


@register("GatherAxis")
def gather_axis(node: Node, xs: list[mx.array]) -> mx.array:
    (axis,) = node.args
    return mx.take_along_axis(xs[0], xs[1], axis=axis)


@register("SearchSorted")
def search_sorted(node: Node, xs: list[mx.array]) -> mx.array:
    (right,) = node.args
    return mx.searchsorted(xs[0], xs[1], side="right" if right else "left")
