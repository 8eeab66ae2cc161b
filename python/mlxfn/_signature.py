"""Call conventions shared by export and import: input forms and signatures.

MLX accepts arrays as varargs plus keyword arrays, a single list/tuple of
arrays, a single dict of arrays, or a ``(sequence, dict)`` pair.  mlxfn accepts
exactly the same forms and raises the same ValueError for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import mlx.core as mx

_FORMS = (
    "Inputs can either be a variable number of positional and keyword arrays "
    "or a single tuple and/or dictionary of arrays."
)


def _all_arrays(values: Sequence[Any]) -> bool:
    return all(isinstance(v, mx.array) for v in values)


def _array_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, mx.array) for k, v in value.items()
    )


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


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of one input or output of a trace."""

    shape: tuple[int, ...]
    dtype: mx.Dtype

    def describe(self) -> str:
        """One line for error messages: shape and dtype."""
        return f"{self.shape} {self.dtype}"


@dataclass(frozen=True)
class Signature:
    """The inputs of one trace: positional specs, then sorted keyword specs."""

    positional: tuple[TensorSpec, ...]
    keywords: tuple[tuple[str, TensorSpec], ...]

    @staticmethod
    def of(args: Sequence[mx.array], kwargs: Mapping[str, mx.array]) -> "Signature":
        spec = lambda a: TensorSpec(tuple(a.shape), a.dtype)  # noqa: E731
        return Signature(
            tuple(spec(a) for a in args),
            tuple((k, spec(kwargs[k])) for k in sorted(kwargs)),
        )

    @property
    def keyword_names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.keywords)

    def flat(self) -> tuple[TensorSpec, ...]:
        """Positional specs, then keyword specs in the order they were exported."""
        return self.positional + tuple(s for _, s in self.keywords)

    def matches(self, other: "Signature", shapeless: bool) -> bool:
        """Whether a call with signature ``other`` may run this trace."""
        if len(self.positional) != len(other.positional):
            return False
        if self.keyword_names != other.keyword_names:
            return False
        for mine, theirs in zip(self.flat(), other.flat()):
            if mine.dtype != theirs.dtype or len(mine.shape) != len(theirs.shape):
                return False
            if not shapeless and mine.shape != theirs.shape:
                return False
        return True

    def describe(self) -> str:
        """The signature as MLX lists it in its "no function matches" message."""
        lines = [
            f"Function with {len(self.positional)} positional inputs and "
            f"{len(self.keywords)} keyword inputs:"
        ]
        lines += [f"  {i + 1}: {s.describe()}" for i, s in enumerate(self.positional)]
        lines += [f'  "{k}": {s.describe()}' for k, s in self.keywords]
        return "\n".join(lines)


def no_match_error(prefix: str, signatures: Sequence[Signature], call: Signature) -> ValueError:
    """The ValueError for a call that matches no trace, listing every signature."""
    listed = "\n".join(
        f" {i + 1}. " + s.describe().replace("\n", "\n ") for i, s in enumerate(signatures)
    )
    called = call.describe().replace("Function with", "Called with", 1)
    return ValueError(
        f"{prefix} No imported function found which matches the given positional "
        f"and keyword arguments. Possible functions include:\n{listed}\n\n{called}"
    )
