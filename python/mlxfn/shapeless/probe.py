"""One probe of a shapeless export: a trace of the function at some sizes,
read as its structure and its numbers (``Parts``).

A shapeless export traces the function at tens of sizes (``dynamic.py``),
and of each trace it keeps only what tells two traces apart: per node its
primitive, input value ids, outputs' dtypes and numbers of axes and the
skeleton of its state (every number blanked), and the numbers (the state's
ints and finite floats in order, then the outputs' sizes).  Two readers give
that same layout:

- ``read_records``: the records of MLX's export callback, read in Python;
- the bridge's ``read_probe`` (``bridge/probe.cpp``): MLX's callback read in
  C++, so that MLX never builds the records (a probe of a 32-layer LLM:
  about 35 ms instead of about 60).

Both give the same parts (``tests/test_shapeless_probe.py``), but for the
constants' array ids, which only MLX's C++ side knows.  Collectives are
the exception: their stand-ins become collective nodes on MLX's records
only (``distributed.rewrite``), so a trace that calls them is read in
Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mlx.core as mx

from .. import _native
from ..trace import capture, tracing

Number = int | float  # compared exactly; fractions only where a number is fitted
# A node: primitive, input value ids, (dtype, number of axes) of each
# output, skeleton of its state.
NodeKey = tuple[str, tuple[int, ...], tuple[tuple[Any, int], ...], Any]
# Per node: where its numbers start, where its output sizes start, and its
# first output's value id.
Layout = tuple[int, int, int]
# nodes, layout, numbers, positions of the floats among them, constants,
# output value ids, number of value ids, number of node outputs among them,
# and MLX's ids of the constants' arrays where the reader knows them (equal
# ids: the same array, whose data need not be compared).
Parts = tuple[
    list[NodeKey],
    list[Layout],
    list[Number],
    list[int],
    list[mx.array],
    tuple[int, ...],
    int,
    int,
    tuple[int, ...] | None,
]
Records = list[dict[str, Any]]


def is_number(value: Any) -> bool:
    """A leaf that may follow the sizes: an int, or a finite float."""
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


class Reader:
    """Reads ``fun``'s probes: with the bridge's reader where it loads
    (``native``) and the trace calls no collective, else from MLX's records
    in Python."""

    def __init__(self, fun: Callable[..., Any], native: bool = True) -> None:
        self._fun = fun
        self._read_probe = _native.read_probe() if native else None

    @property
    def native(self) -> bool:
        return self._read_probe is not None

    def read(
        self, args: Sequence[mx.array], kwargs: Mapping[str, mx.array], keep_records: bool
    ) -> tuple[Parts, Records | None]:
        """The parts of ``fun(*args, **kwargs)``'s trace, and MLX's records
        when ``keep_records`` (to build the trace: ``trace.build_trace``);
        raises what tracing raises."""
        if self._read_probe is not None:
            with tracing() as recorder:
                parts: Parts = self._read_probe(self._fun, list(args), dict(kwargs))
            if not recorder.calls:  # (collectives: their stand-ins are rewritten on records only)
                return parts, self.records(args, kwargs) if keep_records else None
        records = self.records(args, kwargs)
        return read_records(records), records

    def records(self, args: Sequence[mx.array], kwargs: Mapping[str, mx.array]) -> Records:
        """MLX's records of ``fun(*args, **kwargs)``'s trace, collectives rewritten."""
        return capture(self._fun, args, kwargs, True)


def _split(value: Any, out: list[Number], floats: list[int]) -> Any:
    """An argument's skeleton (hashable, every numeric leaf blanked), its
    numeric leaves appended to ``out`` in order (the positions of floats to
    ``floats``): one pass, as this runs for every node of every probe."""
    kind = type(value)
    if kind is int:
        out.append(value)
        return "#int"
    if kind is float:
        if math.isfinite(value):
            floats.append(len(out))
            out.append(value)
            return "#float"
        return ("float", repr(value))  # inf and nan: fixed, and nan == nan here
    if kind is tuple or kind is list:
        return (kind is tuple, tuple([_split(v, out, floats) for v in value]))
    if isinstance(value, mx.Dtype):
        return ("dtype", str(value))
    return (kind.__name__, value)


# The leaves whose ``repr`` names their value exactly (so that ``_kind``
# may key its memo by the ``repr`` of an argument list made of them alone).
_PLAIN = (int, float, bool, str, type(None))


def _plain(value: Any) -> bool:
    kind = type(value)
    if kind is tuple or kind is list:
        return all(_plain(v) for v in value)
    return kind in _PLAIN or isinstance(value, mx.Dtype)


# A node's kind (the ``repr`` of its arguments, and the dtype and number of
# axes of each output) -> its arguments' skeleton, numeric leaves and the
# positions of the floats among them, and its outputs' dtypes (by name) and
# numbers of axes: the same few hundred kinds come back in every layer and
# every probe (a 32-layer model: about 6,000 nodes per probe).
Kind = tuple[Any, tuple[Number, ...], tuple[int, ...], tuple[tuple[str, int], ...]]
_KINDS: dict[tuple[Any, ...], Kind] = {}
_KINDS_LIMIT = 1 << 16


def _kind(arguments: Any, outputs: Sequence[tuple[Any, Sequence[int], mx.Dtype]], key: tuple[Any, ...]) -> Kind:
    """A node's kind (see ``_KINDS``), kept where the ``repr`` of its
    arguments names them exactly (ints, floats, bools, strings and dtypes,
    in lists and tuples)."""
    values: list[Number] = []
    floats: list[int] = []
    skeleton = _split(arguments, values, floats)
    found = (skeleton, tuple(values), tuple(floats), tuple((str(dtype), len(shape)) for _, shape, dtype in outputs))
    if _plain(arguments):
        if len(_KINDS) >= _KINDS_LIMIT:
            _KINDS.clear()
        _KINDS[key] = found
    return found


def read_records(records: Records) -> Parts:
    """The parts of a trace from the records of MLX's export callback (value
    ids: the inputs, then the constants, then every node's outputs)."""
    ids: dict[str, int] = {}
    values: list[Number] = []
    floats: list[int] = []
    nodes: list[NodeKey] = []
    layout: list[Layout] = []
    constants: list[mx.array] = []
    output_names: list[str] = []
    number_of = ids.__getitem__
    kinds = _KINDS
    count = 0  # len(ids)
    computed = 0  # the ids of the nodes' outputs
    for rec in records:
        kind = rec["type"]
        if kind == "primitive":
            inputs = tuple([number_of(name) for name, _, _ in rec["inputs"]])
            out_records = rec["outputs"]
            arguments = rec["arguments"]
            if len(out_records) == 1:
                _, shape, dtype = out_records[0]
                key: tuple[Any, ...] = (repr(arguments), dtype, len(shape))
            else:
                key = (repr(arguments), *[(dtype, len(shape)) for _, shape, dtype in out_records])
            found = kinds.get(key)
            if found is None:
                found = _kind(arguments, out_records, key)
            skeleton, numbers, at, outs = found
            first = len(values)
            if at:
                floats += [first + k for k in at]
            values += numbers
            layout.append((first, len(values), count))
            for name, shape, _ in out_records:
                ids[name] = count
                count += 1
                values += shape
            computed += len(out_records)
            nodes.append((rec["name"], inputs, outs, skeleton))
            continue
        if kind == "inputs":
            for name, _, _ in rec["inputs"]:
                ids.setdefault(name, len(ids))
        elif kind == "constants":
            for name, value in rec["constants"]:
                ids.setdefault(name, len(ids))
                constants.append(value)
        elif kind == "outputs":
            output_names = [name for name, _, _ in rec["outputs"]]
        count = len(ids)
    outputs = tuple(ids[n] for n in output_names)
    return nodes, layout, values, floats, constants, outputs, len(ids), computed, None
