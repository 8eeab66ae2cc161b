"""Reductions, scans, sorts and softmax-like primitives."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from ..ir import Node
from .registry import register

# MLX's Reduce::ReduceType: And, Or, Sum, Prod, Min, Max.
_REDUCE: dict[int, Callable[..., mx.array]] = {
    0: mx.all,
    1: mx.any,
    2: mx.sum,
    3: mx.prod,
    4: mx.min,
    5: mx.max,
}

# MLX's Scan::ReduceType: Max, Min, Sum, Prod, LogAddExp.
_SCAN: dict[int, Callable[..., mx.array]] = {
    0: mx.cummax,
    1: mx.cummin,
    2: mx.cumsum,
    3: mx.cumprod,
    4: mx.logcumsumexp,
}


@register("Reduce", "And", "Or", "Sum", "Prod", "Min", "Max")
def reduce(node: Node, xs: list[mx.array]) -> mx.array:
    reduce_type, axes = node.args
    return _REDUCE[reduce_type](xs[0], axis=list(axes), keepdims=True)


@register("ArgReduce")
def arg_reduce(node: Node, xs: list[mx.array]) -> mx.array:
    reduce_type, axis = node.args
    fn = mx.argmax if reduce_type == 1 else mx.argmin
    return fn(xs[0], axis=axis, keepdims=True)


@register("Scan", "CumSum", "CumProd", "CumMin", "CumMax", "CumLogaddexp")
def scan(node: Node, xs: list[mx.array]) -> mx.array:
    reduce_type, axis, reverse, inclusive = node.args
    return _SCAN[reduce_type](xs[0], axis=axis, reverse=reverse, inclusive=inclusive)


@register("Softmax")
def softmax(node: Node, xs: list[mx.array]) -> mx.array:
    (precise,) = node.args
    return mx.softmax(xs[0], axis=-1, precise=precise)


@register("LogSumExp")
def logsumexp(node: Node, xs: list[mx.array]) -> mx.array:
    return mx.logsumexp(xs[0], axis=-1, keepdims=True)


@register("Sort")
def sort(node: Node, xs: list[mx.array]) -> mx.array:
    (axis,) = node.args
    return mx.sort(xs[0], axis=axis)


@register("ArgSort")
def argsort(node: Node, xs: list[mx.array]) -> mx.array:
    (axis,) = node.args
    return mx.argsort(xs[0], axis=axis)


@register("Partition")
def partition(node: Node, xs: list[mx.array]) -> mx.array:
    kth, axis = node.args
    return mx.partition(xs[0], kth, axis=axis)


@register("ArgPartition")
def argpartition(node: Node, xs: list[mx.array]) -> mx.array:
    kth, axis = node.args
    return mx.argpartition(xs[0], kth, axis=axis)
