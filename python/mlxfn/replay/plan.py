"""Turn a trace into a Python function that replays it with MLX ops."""

from __future__ import annotations

from typing import Callable, Sequence

import mlx.core as mx

from ..errors import UnsupportedPrimitiveError
from ..trace import Node
from .registry import handler_for


class ReplayError(RuntimeError):
    """A handler produced something other than what the trace recorded."""


def build_replay(
    nodes: Sequence[Node],
    constants: Sequence[mx.array],
    outputs: Sequence[int],
) -> Callable[..., tuple[mx.array, ...]]:
    """Return ``replay(*inputs) -> tuple of outputs`` for one trace.

    Handlers are looked up once here, so a primitive without a handler fails
    before anything runs, and the replay loop itself does no dictionary work.
    """
    steps = []
    for index, node in enumerate(nodes):
        handler = handler_for(node.op)
        if handler is None:
            raise UnsupportedPrimitiveError(
                f"mlxfn has no handler for primitive {node.op} (node {index})"
            )
        steps.append((handler, node))
    consts = list(constants)
    out_ids = list(outputs)

    def replay(*inputs: mx.array) -> tuple[mx.array, ...]:
        env = [*inputs, *consts]
        for handler, node in steps:
            result = handler(node, [env[i] for i in node.inputs])
            if isinstance(result, mx.array):
                env.append(result)
            else:
                if len(result) != len(node.outputs):
                    raise ReplayError(
                        f"primitive {node.op} produced {len(result)} outputs, "
                        f"the trace recorded {len(node.outputs)}"
                    )
                env.extend(result)
        return tuple(env[i] for i in out_ids)

    return replay
