"""Collectives: ``mx.distributed`` ops on the group of the import being called.

The nodes and their arguments are described in ``mlxfn.distributed``; the
last two arguments are the group size and the rank that wrote the file,
checked at import against the group (``distributed.group_for_import``) and
here again against the group the call runs on.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from ..distributed import current_group
from ..errors import ReplayError
from ..ir import Node
from .registry import register

_REDUCTIONS: dict[str, Callable[..., mx.array]] = {
    "sum": lambda x, group: mx.distributed.all_sum(x, group=group),
    "max": lambda x, group: mx.distributed.all_max(x, group=group),
    "min": lambda x, group: mx.distributed.all_min(x, group=group),
}


def _group(node: Node) -> mx.distributed.Group:
    """The group of this call, which must be the size and rank the node records."""
    size, rank = node.args[-2], node.args[-1]
    group = current_group()
    if (group.size(), group.rank()) != (size, rank):
        raise ReplayError(
            f"{node.op} was traced on rank {rank} of a group of {size}, but runs on rank "
            f"{group.rank()} of a group of {group.size()}"
        )
    return group


def _check_reduction(node: Node) -> str | None:
    return None if node.args and node.args[0] in _REDUCTIONS else f"no all-reduce {node.args[:1]}"


@register("AllReduce", check=_check_reduction)
def all_reduce(node: Node, xs: list[mx.array]) -> mx.array:
    return _REDUCTIONS[node.args[0]](xs[0], _group(node))


@register("AllGather")
def all_gather(node: Node, xs: list[mx.array]) -> mx.array:
    return mx.distributed.all_gather(xs[0], group=_group(node))


@register("ReduceScatter", check=lambda node: None if node.args[0] == "sum" else f"no reduce-scatter {node.args[0]}")
def reduce_scatter(node: Node, xs: list[mx.array]) -> mx.array:
    return mx.distributed.sum_scatter(xs[0], group=_group(node))


@register("Send")
def send(node: Node, xs: list[mx.array]) -> mx.array:
    return mx.distributed.send(xs[0], node.args[0], group=_group(node))


@register("Recv")
def recv(node: Node, xs: list[mx.array]) -> mx.array:
    """``recv_like`` of its input (only its shape and dtype), else ``recv`` of
    the recorded output's shape and dtype."""
    group = _group(node)
    if xs:
        return mx.distributed.recv_like(xs[0], node.args[0], group=group)
    (shape, dtype), *_ = node.outputs
    if -1 in shape:
        raise ReplayError("Recv: the size of the array it receives is not known at these sizes")
    return mx.distributed.recv(shape, dtype, node.args[0], group=group)
