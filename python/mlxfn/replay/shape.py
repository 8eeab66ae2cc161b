"""Primitives that move, reshape, broadcast, slice or create arrays.

Where a primitive's output shape follows its inputs under ``shapeless=True``
(Broadcast with several inputs, BroadcastAxes, NumberOfElements), the handler
uses ops whose shapes also follow their inputs, so a shapeless replay stays
correct for new input shapes.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..ir import Node
from .registry import register


@register("Broadcast")
def broadcast(node: Node, xs: list[mx.array]) -> mx.array:
    (shape,) = node.args
    if len(xs) > 1:  # shapeless export: broadcast against the other inputs
        return mx.broadcast_arrays(*xs)[0]
    return mx.broadcast_to(xs[0], shape)


def _all_true(x: mx.array) -> mx.array:
    return mx.logical_or(mx.equal(x, x), mx.not_equal(x, x))  # NaN-proof


def _batch_shape_of(x: mx.array, ignore_axes: list[int]) -> mx.array:
    """An array shaped like ``x`` with the ignored axes cut to length 1.

    Its values are never used: it only carries ``x``'s batch shape into a
    broadcast whose shape follows the inputs at run time.  It is an argmax:
    under shapeless compile, Slice and Gather keep their traced sizes and the
    other reductions corrupt memory on an axis of length 1 (MLX 0.32.4).
    """
    carrier = _all_true(x)
    for ax in ignore_axes:
        carrier = mx.argmax(carrier, axis=ax, keepdims=True)
    return carrier


@register("BroadcastAxes")
def broadcast_axes(node: Node, xs: list[mx.array]) -> mx.array:
    (ignore_axes,) = node.args
    ignore = list(ignore_axes)
    x = xs[0]
    if not node.shapeless:
        shape: tuple[int, ...] = ()
        for a in xs:
            kept = [d for i, d in enumerate(a.shape) if i - a.ndim not in ignore]
            shape = mx.broadcast_shapes(shape, tuple(kept))
        full = list(shape)
        dims = len(ignore) + len(full)
        for ax in ignore:
            full.insert(dims + ax, x.shape[ax])
        return mx.broadcast_to(x, full)
    for other in xs[1:]:
        x = mx.broadcast_arrays(x, _batch_shape_of(other, ignore))[0]
    return x


@register("Reshape")
def reshape(node: Node, xs: list[mx.array]) -> mx.array:
    (shape,) = node.args
    return mx.reshape(xs[0], shape)


@register("Transpose")
def transpose(node: Node, xs: list[mx.array]) -> mx.array:
    (axes,) = node.args
    return mx.transpose(xs[0], axes)


@register("Squeeze")
def squeeze(node: Node, xs: list[mx.array]) -> mx.array:
    (axes,) = node.args
    return mx.squeeze(xs[0], axes)


@register("ExpandDims")
def expand_dims(node: Node, xs: list[mx.array]) -> mx.array:
    (axes,) = node.args
    return mx.expand_dims(xs[0], axes)


@register("Flatten")
def flatten(node: Node, xs: list[mx.array]) -> mx.array:
    start, end = node.args
    return mx.flatten(xs[0], start, end)


@register("Unflatten")
def unflatten(node: Node, xs: list[mx.array]) -> mx.array:
    axis, shape = node.args
    return mx.unflatten(xs[0], axis, shape)


@register("Concatenate")
def concatenate(node: Node, xs: list[mx.array]) -> mx.array:
    (axis,) = node.args
    return mx.concatenate(xs, axis=axis)


@register("Split")
def split(node: Node, xs: list[mx.array]) -> list[mx.array]:
    indices, axis = node.args
    return list(mx.split(xs[0], list(indices), axis=axis))


def _slices(start: tuple[int, ...], stop: tuple[int, ...], step: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(a, b, c) for a, b, c in zip(start, stop, step))


@register("Slice")
def slice_(node: Node, xs: list[mx.array]) -> mx.array:
    start, stop, step = node.args
    return xs[0][_slices(start, stop, step)]


@register("SliceUpdate")
def slice_update(node: Node, xs: list[mx.array]) -> mx.array:
    reduce_type, start, stop, step = node.args
    src, update = xs
    at = src.at[_slices(start, stop, step)]
    reducers = {0: at.maximum, 1: at.minimum, 2: at.add, 3: at.multiply}
    if reduce_type in reducers:
        return reducers[reduce_type](update)
    out = mx.array(src)  # a new wrapper: item assignment must not touch the input
    out[_slices(start, stop, step)] = update
    return out


@register("Pad")
def pad(node: Node, xs: list[mx.array]) -> mx.array:
    axes, low, high = node.args
    x, value = xs
    widths = [(0, 0)] * x.ndim
    for ax, lo, hi in zip(axes, low, high):
        widths[ax] = (lo, hi)
    return mx.pad(x, widths, constant_values=value)


@register("AsStrided")
def as_strided(node: Node, xs: list[mx.array]) -> mx.array:
    shape, strides, offset = node.args
    return mx.as_strided(xs[0], shape, strides, offset)


@register("Full")
def full(node: Node, xs: list[mx.array]) -> mx.array:
    (value,) = xs
    return mx.full(value.shape, value)


@register("Arange")
def arange(node: Node, xs: list[mx.array]) -> mx.array:
    start, stop, step = node.args
    dtype = node.outputs[0][1]
    return mx.arange(start, stop, step, dtype=dtype)


@register("NumberOfElements")
def number_of_elements(node: Node, xs: list[mx.array]) -> mx.array:
    """The product of ``x``'s sizes on ``axes`` (or its inverse), as ``dtype``.

    Shaped traces compute it in Python (in double, as MLX does).  Shapeless
    ones count at run time: along each axis, the argmax of a cumulative count
    of ones is the axis length minus one (see _batch_shape_of for why not a
    sum).  Counts are exact below 2**24 elements.
    """
    axes, inverted, dtype = node.args
    (x,) = xs
    if not node.shapeless:
        count = math.prod(x.shape[a] for a in axes)
        if inverted:  # in double, as MLX: the inverse of no elements is inf (a mean of nothing is nan)
            return mx.array(1.0 / count if count else math.inf, dtype=dtype)
        return mx.array(count, dtype=dtype)
    ones = _all_true(x).astype(mx.int32)
    count = mx.array(1, mx.int32)
    for ax in axes:
        last = mx.argmax(mx.cumsum(ones, axis=ax), axis=ax)
        count = count * (mx.take(mx.flatten(last), mx.array(0)).astype(mx.int32) + 1)
    count = count.astype(mx.float32)
    return (mx.reciprocal(count) if inverted else count).astype(dtype)


@register("DynamicSlice")
def dynamic_slice(node: Node, xs: list[mx.array]) -> mx.array:
    axes, slice_size = node.args
    return mx.slice(xs[0], xs[1], list(axes), list(slice_size))


@register("DynamicSliceUpdate")
def dynamic_slice_update(node: Node, xs: list[mx.array]) -> mx.array:
    (axes,) = node.args
    return mx.slice_update(xs[0], xs[1], xs[2], list(axes))


@register("Depends")
def depends(node: Node, xs: list[mx.array]) -> list[mx.array]:
    """The first outputs are the inputs, evaluated only after the rest."""
    k = len(node.outputs)
    return list(mx.depends(xs[:k], xs[k:]))
