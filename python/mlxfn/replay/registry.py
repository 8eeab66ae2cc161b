"""The registry of primitive handlers: one small function per MLX primitive.

A handler rebuilds one primitive with public MLX ops from the stored state
(``node.args``, exactly what MLX's export callback reports) and the input
arrays, and returns one array or a sequence of arrays (the node's outputs).
Handlers derive shapes from their inputs rather than from the recorded output
shapes, so the same handler serves shaped and shapeless traces.

A handler that covers only some states of its primitive registers a ``check``
that names what it cannot rebuild; export consults it, so mlxfn never writes a
file it cannot import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from ..ir import Node

Outputs = mx.array | Sequence[mx.array]
Handler = Callable[[Node, list[mx.array]], Outputs]
Check = Callable[[Node], str | None]

_HANDLERS: dict[str, Handler] = {}
_CHECKS: dict[str, Check] = {}


def register(*names: str, check: Check | None = None) -> Callable[[Handler], Handler]:
    """Register a handler under one or more primitive names."""

    def wrap(fn: Handler) -> Handler:
        for name in names:
            if name in _HANDLERS:
                raise RuntimeError(f"duplicate handler for primitive {name}")
            _HANDLERS[name] = fn
            if check is not None:
                _CHECKS[name] = check
        return fn

    return wrap


def handler_for(op: str) -> Handler | None:
    """The handler for a primitive name, or None when mlxfn cannot rebuild it."""
    return _HANDLERS.get(op)


def unsupported_reason(node: Node) -> str | None:
    """Why ``node`` cannot be rebuilt, or None when its handler covers it."""
    if node.op not in _HANDLERS:
        return "no handler for this primitive"
    check = _CHECKS.get(node.op)
    return check(node) if check is not None else None


def supported_primitives() -> frozenset[str]:
    """Every primitive name the registry can rebuild."""
    return frozenset(_HANDLERS)
