"""Scatter-style primitives: Scatter, ScatterAxis, MaskedScatter.

Scatter and ScatterAxis are rebuilt through ``array.at[...]`` (which emits
the same Scatter kernel, so duplicate indices accumulate in the same order),
``put_along_axis`` and item assignment.  MaskedScatter has no public op that
takes its batched form, so it is composed from cumsum / take_along_axis /
where, which only copies values and so is exact.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

from ..ir import Node
from .registry import register

# MLX's Scatter::ReduceType (Max, Min, Sum, Prod, None) as ArrayAt methods.
_AT_METHODS = {0: "maximum", 1: "minimum", 2: "add", 3: "multiply"}


def _apply(a: mx.array, key: Any, updates: mx.array, reduce_type: int) -> mx.array:
    """``a.at[key].<op>(updates)``, or assignment for reduce type None."""
    if reduce_type in _AT_METHODS:
        out: mx.array = getattr(a.at[key], _AT_METHODS[reduce_type])(updates)
        return out
    out = mx.array(a)  # a new wrapper: item assignment must not touch the input
    out[key] = updates
    return out


def _scatter_flat(
    a: mx.array, indices: list[mx.array], axes: list[int], updates: mx.array, reduce_type: int
) -> mx.array:
    """The general form (a slice wider than 1 on an indexed axis) on a flat view."""
    n = updates.ndim - a.ndim
    strides = [math.prod(a.shape[d + 1 :]) for d in range(a.ndim)]
    linear = mx.zeros(updates.shape, dtype=mx.int64)
    for d in range(a.ndim):
        shape = [1] * updates.ndim
        shape[n + d] = updates.shape[n + d]
        pos = mx.arange(updates.shape[n + d], dtype=mx.int64).reshape(shape)
        if d in axes:
            idx = indices[axes.index(d)].astype(mx.int64)
            idx = mx.where(idx < 0, idx + a.shape[d], idx)
            pos = pos + mx.expand_dims(idx, list(range(n, n + a.ndim)))
        linear = linear + pos * strides[d]
    flat = _apply(a.reshape(-1), linear.reshape(-1), updates.reshape(-1), reduce_type)
    return flat.reshape(a.shape)


@register("Scatter")
def scatter(node: Node, xs: list[mx.array]) -> mx.array:
    """``a[idx0[i...], ..., s...] (op)= updates[i..., s...]`` over the indexed axes.

    ``updates`` is the broadcast index shape followed by one slice dimension per
    axis of ``a`` (length 1 on indexed axes).  As an ``at[]`` key, the indexed
    axes get their index arrays and the others ``0:slice``; the update is laid
    out the way NumPy-style indexing expects (index dimensions in place when the
    indexed axes are adjacent, first otherwise).
    """
    reduce_type, axes = node.args
    axes = list(axes)
    a, indices, updates = xs[0], list(xs[1:-1]), xs[-1]
    n = updates.ndim - a.ndim
    slice_sizes = updates.shape[n:]
    if any(slice_sizes[d] != 1 for d in axes):
        return _scatter_flat(a, indices, axes, updates, reduce_type)
    key = [
        indices[axes.index(d)]
        if d in axes
        else slice(None)
        if slice_sizes[d] == a.shape[d]
        else slice(0, slice_sizes[d])
        for d in range(a.ndim)
    ]
    while key and isinstance(key[-1], slice) and key[-1] == slice(None):
        key.pop()  # as a[idx] would be written; at[] handles trailing slices less well
    u = mx.squeeze(updates, [n + d for d in axes]) if axes else updates
    first = min(axes) if axes else 0
    if axes and sorted(axes) == list(range(first, first + len(axes))) and first and n:
        perm = list(range(n, n + first)) + list(range(n)) + list(range(n + first, u.ndim))
        u = mx.transpose(u, perm)
    return _apply(a, tuple(key), u, reduce_type)


@register("ScatterAxis")
def scatter_axis(node: Node, xs: list[mx.array]) -> mx.array:
    """``put_along_axis``, or its Sum variant (the gradient of take_along_axis).

    Sum, shaped: a Scatter Sum whose other coordinates are a grid shaped like
    the indices (exact).  Sum, shapeless: Scatter cannot infer shapes, so the
    sum is the vjp of ``take_along_axis`` (which emits ScatterAxis Sum into
    zeros) added to ``a``: exact when ``a`` is zeros, as in every gradient, or
    when no two indices hit one element; otherwise it may differ in rounding.
    """
    reduce_type, axis = node.args
    a, idx, updates = xs
    if reduce_type == 1:  # None
        return mx.put_along_axis(a, idx, updates, axis=axis)
    updates = mx.broadcast_arrays(updates, idx)[0]
    if node.shapeless:
        take = lambda t: mx.take_along_axis(t, idx, axis=axis)  # noqa: E731
        return a + mx.vjp(take, [a], [updates])[1][0]
    axis = axis % a.ndim
    ones = mx.ones_like(idx, dtype=mx.int32)
    key = tuple(idx if d == axis else mx.cumsum(ones, axis=d) - 1 for d in range(a.ndim))
    return a.at[key].add(updates)


def _row_major_rank(mask: mx.array) -> mx.array:
    """For each element (per leading batch), how many True elements precede it
    in row-major order, inclusive.  Built from per-axis cumsums so that shapes
    follow the input."""
    p = mask.astype(mx.int32)
    rank = mx.cumsum(p, axis=-1)
    totals = p
    for axis in range(p.ndim - 2, 0, -1):
        totals = mx.sum(totals, axis=axis + 1, keepdims=True)
        rank = rank + mx.cumsum(totals, axis=axis, inclusive=False)
    return rank


@register("MaskedScatter")
def masked_scatter(node: Node, xs: list[mx.array]) -> mx.array:
    """Per batch (axis 0): the k-th True of ``mask`` (row-major) takes the k-th
    element of ``src``; other elements keep ``a``."""
    a, mask, src = xs
    scalar = a.ndim == 1
    if scalar:
        a, mask = mx.expand_dims(a, 1), mx.expand_dims(mask, 1)
    src = mx.flatten(src, 1) if src.ndim > 1 else mx.expand_dims(src, 1)
    pos = mx.maximum(_row_major_rank(mask) - 1, 0)
    src = mx.expand_dims(src, list(range(2, a.ndim))) if a.ndim > 2 else src
    out = mx.where(mask, mx.take_along_axis(src, pos, axis=1), a)
    return mx.squeeze(out, 1) if scalar else out
