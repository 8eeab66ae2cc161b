"""The interpreter: a trace replayed node by node with MLX ops, in Python.

The portable fallback of mlxfn's C++ runtime (``_import``): wheels without
the bridge, and files the runtime is not asked to serve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from ..errors import FormatError, MlxfnError, ReplayError
from ..ir import Node, NodesAtOtherSizes
from .registry import handler_for


def check_handlers(ops: Sequence[str], where: str) -> None:
    """Refuse a file's trace whose primitive has no handler (``where`` names it).

    mlxfn refuses such primitives at export, so in a file it means damage or
    a newer mlxfn: a FormatError at import, not a failure at the first call.
    """
    for index, op in enumerate(ops):
        if handler_for(op) is None:
            raise FormatError(
                f"{where}: node {index} has primitive {op!r}, which this mlxfn cannot "
                "rebuild (a damaged file, or one written by a newer mlxfn)"
            )


def build_replay(
    nodes: Sequence[Node],
    constants: Sequence[mx.array],
    outputs: Sequence[int],
    where: str = "trace",
    check_shapes: bool = False,
    other_sizes: bool | None = None,
) -> Callable[..., tuple[mx.array, ...]]:
    """Return ``replay(*inputs) -> tuple of outputs`` for one trace.

    Handlers are looked up once here, so the replay loop does no dictionary
    work.  A handler that fails, or (with ``check_shapes``, for shaped
    traces) produces another shape or dtype than the file recorded, raises
    :class:`ReplayError` naming ``where``, the node and its primitive: a file
    whose graph disagrees with itself never gives a silent wrong answer.

    ``other_sizes``: the nodes are a dynamic trace made concrete at sizes
    other than those it was traced at.  There an MLX op that refuses its
    inputs with a ``ValueError`` (``reshape(-1, 2)`` of an odd size) means
    inputs the function itself refuses, not a damaged file: it is raised as
    a plain ``ValueError`` naming ``where``, the node and MLX's message, as
    the original function raises MLX's.  At the traced sizes (where the
    function was traced, so every op accepted its inputs) it is a
    :class:`ReplayError`.  ``None`` (the default): whether ``nodes`` come
    from ``Trace.concrete`` at other sizes (``ir.NodesAtOtherSizes``).
    """
    steps = [(handler_for(node.op), node) for node in nodes]
    if any(handler is None for handler, _ in steps):
        check_handlers([n.op for n in nodes], where)
    consts = list(constants)
    out_ids = list(outputs)
    refusals = isinstance(nodes, NodesAtOtherSizes) if other_sizes is None else other_sizes

    def fail(index: int, node: Node, problem: str) -> ReplayError:
        return ReplayError(f"{where}: node {index} ({node.op}) {problem}")

    def replay(*inputs: mx.array) -> tuple[mx.array, ...]:
        env = [*inputs, *consts]
        for index, (handler, node) in enumerate(steps):
            try:
                result = handler(node, [env[i] for i in node.inputs])  # type: ignore[misc]
            except ReplayError:
                raise
            except ValueError as err:
                if refusals and not isinstance(err, MlxfnError):
                    raise ValueError(
                        f"{where}: node {index} ({node.op}) refuses these inputs, as the original function would: {err}"
                    ) from err
                raise fail(index, node, f"does not replay: {err}") from err
            except Exception as err:  # noqa: BLE001 - reported with the node that failed
                raise fail(index, node, f"does not replay: {err}") from err
            results = [result] if isinstance(result, mx.array) else list(result)
            if len(results) != len(node.outputs):
                raise fail(index, node, f"produced {len(results)} outputs, the file records {len(node.outputs)}")
            if check_shapes:
                for k, (arr, (shape, dtype)) in enumerate(zip(results, node.outputs)):
                    actual = arr.shape
                    same = actual == shape or (
                        -1 in shape and len(actual) == len(shape) and all(b in (a, -1) for a, b in zip(actual, shape))
                    )
                    if not same or arr.dtype != dtype:
                        raise fail(
                            index,
                            node,
                            f"output {k} is {tuple(arr.shape)} {arr.dtype}, the file records {tuple(shape)} {dtype}",
                        )
            env.extend(results)
        return tuple(env[i] for i in out_ids)

    return replay
