"""Trace an MLX function through MLX's own export callback.

MLX's tracer hands every primitive with its state, every constant and the
inputs/outputs to a callback.  This module turns that stream into an
``ir.Trace``: value ids are the inputs, then the trace's constants, then
every node's outputs in order, so a reader can check that each id is
defined before it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from .ir import Node, Signature, TensorSpec, Trace


@dataclass
class Captured:
    """A trace and the arrays of its constants (``trace.constants`` are
    positions in ``constants``: 0, 1, 2, ...)."""

    trace: Trace
    constants: list[mx.array]


def _spec(record: tuple[str, Sequence[int], mx.Dtype]) -> TensorSpec:
    return TensorSpec(tuple(record[1]), record[2])


def trace_function(
    fun: Callable[..., Any],
    args: Sequence[mx.array],
    kwargs: Mapping[str, mx.array],
    shapeless: bool,
) -> Captured:
    """Trace ``fun(*args, **kwargs)`` with MLX.

    MLX validates the inputs and the outputs and raises its own ValueError for
    non-array ones, which is exactly the behaviour mlxfn promises.
    """
    return build_trace(capture(fun, args, kwargs, shapeless), Signature.of(args, kwargs))


def capture(
    fun: Callable[..., Any], args: Sequence[mx.array], kwargs: Mapping[str, mx.array], shapeless: bool
) -> list[dict[str, Any]]:
    """The records of MLX's export callback for ``fun(*args, **kwargs)``."""
    records: list[dict[str, Any]] = []
    export: Any = mx.export_function  # its stub types keyword inputs as its own options
    export(records.append, fun, *args, shapeless=shapeless, **kwargs)
    return records


def build_trace(records: list[dict[str, Any]], signature: Signature) -> Captured:
    """The trace described by the records of MLX's export callback."""
    ids: dict[str, int] = {}
    constants: list[mx.array] = []
    nodes: list[Node] = []
    outputs: list[str] = []

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
        elif kind == "constants":
            for name, value in rec["constants"]:
                define(name)
                constants.append(value)
        elif kind == "primitive":
            inputs = tuple(ids[name] for name, _, _ in rec["inputs"])
            for name, _, _ in rec["outputs"]:
                define(name)
            nodes.append(Node(rec["name"], tuple(rec["arguments"]), inputs, tuple(_spec(r) for r in rec["outputs"])))
    trace = Trace(signature, tuple(range(len(constants))), tuple(nodes), tuple(ids[n] for n in outputs))
    return Captured(trace, constants)
