"""Trace an MLX function through MLX's own export callback.

MLX's tracer hands every primitive with its state, every constant and the
inputs/outputs to a callback.  This module turns that stream into a
self-contained SSA trace: value ids are the inputs, then the trace's
constants, then every node's outputs in order, so a reader can check that each
id is defined before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import mlx.core as mx

from ._signature import Signature

Shape = tuple[int, ...]
TensorInfo = tuple[Shape, mx.Dtype]


@dataclass(frozen=True)
class Node:
    """One primitive application: ``outputs = op(*inputs)`` with ``args`` as state."""

    op: str
    args: tuple[Any, ...]
    inputs: tuple[int, ...]
    outputs: tuple[TensorInfo, ...]
    shapeless: bool = False


@dataclass
class Trace:
    """One traced signature of a function, ready to write or to replay."""

    signature: Signature
    constants: list[mx.array]
    nodes: list[Node]
    outputs: list[int]
    output_infos: list[TensorInfo] = field(default_factory=list)

    @property
    def num_inputs(self) -> int:
        return len(self.signature.positional) + len(self.signature.keywords)


def _info(record: tuple[str, Sequence[int], mx.Dtype]) -> TensorInfo:
    return tuple(record[1]), record[2]


def trace_function(
    fun: Callable[..., Any],
    args: Sequence[mx.array],
    kwargs: Mapping[str, mx.array],
    shapeless: bool,
) -> Trace:
    """Trace ``fun(*args, **kwargs)`` with MLX and return the SSA trace.

    MLX validates the inputs and the outputs and raises its own ValueError for
    non-array ones, which is exactly the behaviour mlxfn promises.
    """
    records: list[dict[str, Any]] = []
    mx.export_function(records.append, fun, *args, shapeless=shapeless, **kwargs)
    return _build_trace(records, Signature.of(args, kwargs), shapeless)


def _build_trace(
    records: list[dict[str, Any]], signature: Signature, shapeless: bool
) -> Trace:
    ids: dict[str, int] = {}
    constants: list[mx.array] = []
    nodes: list[Node] = []
    outputs: list[str] = []
    output_infos: list[TensorInfo] = []

    def define(name: str) -> None:
        if name not in ids:
            ids[name] = len(ids)

    for rec in records:
        kind = rec["type"]
        if kind == "inputs":
            for name, _, _ in rec["inputs"]:
                define(name)
        elif kind == "outputs":
            outputs = [name for name, _, _ in rec["outputs"]]
            output_infos = [_info(r) for r in rec["outputs"]]
        elif kind == "constants":
            for name, value in rec["constants"]:
                define(name)
                constants.append(value)
        elif kind == "primitive":
            inputs = tuple(ids[name] for name, _, _ in rec["inputs"])
            for name, _, _ in rec["outputs"]:
                define(name)
            nodes.append(
                Node(
                    rec["name"],
                    tuple(rec["arguments"]),
                    inputs,
                    tuple(_info(r) for r in rec["outputs"]),
                    shapeless,
                )
            )
    return Trace(signature, constants, nodes, [ids[n] for n in outputs], output_infos)
