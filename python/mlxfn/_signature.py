"""Call conventions shared by export and import: input forms and signatures.

MLX accepts arrays as varargs plus keyword arrays, a single list/tuple of
arrays, a single dict of arrays, or a ``(sequence, dict)`` pair.  mlxfn accepts
exactly the same forms and raises the same ValueError for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mlx.core as mx

from .ir import Signature, Trace

_FORMS = (
    "Inputs can either be a variable number of positional and keyword arrays "
    "or a single tuple and/or dictionary of arrays."
)


def _all_arrays(values: Sequence[Any]) -> bool:
    return all(isinstance(v, mx.array) for v in values)


def _array_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, mx.array) for k, v in value.items())


def split_inputs(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], prefix: str
) -> tuple[list[mx.array], dict[str, mx.array]]:
    """Normalise the accepted input forms to (positional arrays, keyword arrays)."""

    def fail() -> ValueError:
        return ValueError(f"{prefix} {_FORMS}")

    if not args:
        if not _array_dict(kwargs):
            raise fail()
        return [], dict(kwargs)
    if isinstance(args[0], mx.array):
        if not _all_arrays(args) or not _array_dict(kwargs):
            raise fail()
        return list(args), dict(kwargs)
    if kwargs or len(args) > 2:
        raise fail()
    first = args[0]
    if len(args) == 1:
        if isinstance(first, (list, tuple)) and _all_arrays(first):
            return list(first), {}
        if _array_dict(first):
            return [], dict(first)
        raise fail()
    second = args[1]
    if isinstance(first, (list, tuple)) and _all_arrays(first) and _array_dict(second):
        return list(first), dict(second)
    raise fail()


def no_match_error(prefix: str, traces: Sequence[Trace | Signature], call: Signature) -> ValueError:
    """The ValueError for a call that matches no trace, listing every signature
    (with the ranges of a dynamic trace's sizes)."""
    listed = "\n".join(f" {i + 1}. " + t.describe().replace("\n", "\n ") for i, t in enumerate(traces))
    called = call.describe().replace("Function with", "Called with", 1)
    return ValueError(
        f"{prefix} No imported function found which matches the given positional "
        f"and keyword arguments. Possible functions include:\n{listed}\n\n{called}"
    )
