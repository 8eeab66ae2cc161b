"""Gather-style primitives, rebuilt from take / take_along_axis."""

from __future__ import annotations

import mlx.core as mx

from ..trace import Node
from .registry import register


def _gather_check(node: Node) -> str | None:
    axes, slice_sizes = node.args
    for ax in axes:
        if slice_sizes[ax] != 1:
            return f"slice size {slice_sizes[ax]} on indexed axis {ax}"
    return None


@register("Gather", check=_gather_check)
def gather(node: Node, xs: list[mx.array]) -> mx.array:
    """``out[i..., s...] = a[idx0[i...], ..., s...]`` over the indexed axes.

    MLX's Gather output is the broadcast index shape followed by
    ``slice_sizes`` (length 1 on the indexed axes).  It is rebuilt by moving
    the indexed axes to the front, flattening them into one, taking along that
    axis with a linearised index, and re-inserting the length-1 axes.
    """
    axes, slice_sizes = node.args
    axes = list(axes)
    a, indices = xs[0], xs[1:]
    if any(s != a.shape[ax] for ax, s in enumerate(slice_sizes) if ax not in axes):
        a = a[tuple(slice(None) if ax in axes else slice(0, s) for ax, s in enumerate(slice_sizes))]
    if not indices:
        return a
    if len(indices) > 1:
        indices = mx.broadcast_arrays(*indices)
    # Negative indices count from the end, as in MLX's gather kernels.
    idx = [mx.where(i < 0, i + a.shape[ax], i) for i, ax in zip(indices, axes)]
    n = idx[0].ndim
    if len(axes) == 1:
        ax = axes[0]
        out = mx.take(a, idx[0], axis=ax)
        if ax != 0 and n:
            perm = list(range(ax, ax + n)) + list(range(ax)) + list(range(ax + n, out.ndim))
            out = mx.transpose(out, perm)
    else:
        others = [ax for ax in range(a.ndim) if ax not in axes]
        flat = mx.flatten(mx.transpose(a, axes + others), 0, len(axes) - 1)
        linear = idx[0].astype(mx.int64)
        for i, ax in zip(idx[1:], axes[1:]):
            linear = linear * a.shape[ax] + i.astype(mx.int64)
        out = mx.take(flat, linear, axis=0)
    return mx.expand_dims(out, [n + ax for ax in sorted(axes)])


@register("GatherAxis")
def gather_axis(node: Node, xs: list[mx.array]) -> mx.array:
    (axis,) = node.args
    return mx.take_along_axis(xs[0], xs[1], axis=axis)
