"""Shapeless export that holds for real models: dynamic sizes found by tracing again.

MLX's shapeless export keeps the traced sizes in the state of reshapes,
slices, aranges and broadcasts, so its import computes wrong shapes (or
fails) at other sizes; a real LLM does not survive it.  mlxfn traces the
function again at other sizes instead, and keeps what it can prove:

1. **Candidates.** Input axes of size 2 or more, grouped by size (a KV cache's
   length appears in every key and value array) and, within a size, by
   position counted from the end.  Tracing with some axes one larger must
   give the same graph: the same primitives, wiring, dtypes and non-numeric
   state.  The groups of one size vary apart when each can; together when
   only all of them can; else the groups, then single axes, that can, and
   the unions of groups that can only together (a batch of one in the
   tokens and in a KV cache, at other positions from the end).  So axes of
   equal example size at the same position from the end share one size
   (give the example different sizes to keep them apart).  Axes of size 1
   are candidates too (a batch of one), and stay fixed where their size
   changes the graph (a decode step's one token) or where they broadcast
   against another input's size; axes of size 0 stay fixed.  Axes that
   each move alone but whose sizes no joint fit follows share one size
   again (two inputs of size 1 added: each broadcasts against the other
   alone, and the sum's size is the larger one).
2. **Fit.** Every number of the graph (argument leaves, int or float; output
   sizes; the values of scalar constants) becomes ``c0 + sum(ci * si)`` from
   unit steps of each size, with ``cij * si * sj`` terms when a joint check
   needs them, and must match exactly at other sizes.  All the sizes are
   fitted together first; one at a time only where that fails.  An integer
   that no polynomial follows is refitted where it is first mispredicted,
   along one size, as floor or ceiling division, modulo, min or max
   (``shapeless.fit``: a strided convolution's length, ``n // 2``, mlx-lm's
   ``KVCache`` buffer ``ceil(n / 256) * 256``, a window ``min(n, w)``); an
   expression fitted for one number is tried on the others first (a
   32-layer model has 64 such buffers, fitted once).  A constant array that
   changes with a size makes that size fixed.
3. **Range.** Sizes below and above the traced one are probed (0 to 4, 8,
   half the size, 64, 256, 2048 and ``MAX_SIZE``, bisection at a change),
   every size moved at once first and one at a time only where that fails:
   the trace serves the sizes around its own where the graph keeps its
   structure and every number its predicted value.  A probe may lack some
   of the trace's slices and slice updates, which MLX leaves out of a
   graph where they would copy their input whole (``x[:n]`` of an ``x`` of
   ``n``; the buffer of a prompt of 256 tokens): each is proven to copy
   whole there by the fit (starts 0, strides 1, the output's shape its
   input's), never assumed (``align``).  Empty inputs (size 0) are served
   where the graph holds there too; where it changes or the function fails
   at 0, the range starts at 1 and 0 is refused.
4. **Segments.** The sizes outside a range are traced again where the
   first change is (the other sizes at their example values), as many
   times as needed (up to ``MAX_SEGMENTS`` traces in all): one file serves
   every size from 1 to ``MAX_SIZE`` (a sliding window, a mixture-of-experts
   sort switching on, a one-token prompt without a mask: each gets its own
   trace), and 0 where a trace's graph holds at 0.

Probing costs one trace (no computation) per probe, read by
``shapeless.probe`` (in C++ where the bridge is, about 35 ms for a 32-layer
model; about 60 ms in Python), so the number of probes is the export's cost
(a one-file LLM takes about 60).  What it cannot see: a function whose
graph changes at a size between probes without changing its structure or
numbers at the probes.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import mlx.core as mx
import numpy as np

from . import distributed
from ._mlx import byte_view
from ._paused import collector_paused
from ._progress import counting
from .ir import Dim, Expr, Node, Shape, Signature, SizeExpr, TensorSpec, Trace
from .shapeless.fit import fit_steps
from .shapeless.probe import Number, Parts, Reader, Records, is_number, read_records
from .trace import Captured, build_trace, capture

MAX_SIZE = 1 << 15  # the largest size probed; larger sizes are refused at the call
MAX_SEGMENTS = 8

Axis = tuple[int, int]  # (input index in value-id order, axis)
Numbers = list[Fraction]


# ----------------------------------------------------------------------------
# What a trace is made of: its structure, and its numbers.


def _scalar(arr: mx.array) -> bool:
    """A constant whose value may follow the sizes: one finite real number."""
    if arr.size != 1 or arr.dtype in (mx.bool_, mx.complex64):
        return False
    value = arr.item()
    return isinstance(value, (int, float)) and math.isfinite(value)


def _same_array(a: mx.array, b: mx.array) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.size == 0:
        return True
    if np.frombuffer(byte_view(a), np.uint8).ctypes.data == np.frombuffer(byte_view(b), np.uint8).ctypes.data:
        return True
    return bool(mx.array_equal(a, b, equal_nan=True).item())


class Shot:
    """One probe: the trace at some sizes, its structure key and its numbers
    (``shapeless.probe``: read in C++ or from MLX's records; a probe's trace
    is built, from MLX's records, only when it becomes a trace of the file)."""

    def __init__(self, parts: Parts, signature: Signature, records: Records | None = None) -> None:
        self._records = records
        self.signature = signature
        self._captured: Captured | None = None
        nodes, layout, values, floats, self.constants, self.outputs, ids, computed, self.constant_ids = parts
        scalars = [_scalar(c) for c in self.constants]
        consts = tuple(("scalar", str(c.dtype), c.ndim) if sc else ("array",) for c, sc in zip(self.constants, scalars))
        self.node_numbers = len(values)  # the numbers of the nodes; then those of scalar constants
        self.fixed = ids - computed  # ids of inputs and constants
        self.scalar_numbers: dict[int, int] = {}  # constant's value id -> its number
        for index, (c, sc) in enumerate(zip(self.constants, scalars)):
            if sc:
                self.scalar_numbers[self.fixed - len(self.constants) + index] = len(values)
                value = c.item()
                assert isinstance(value, (int, float))
                if mx.issubdtype(c.dtype, mx.inexact):
                    floats.append(len(values))
                values.append(value)
        self.nodes = nodes
        self.layout = layout
        self.consts = consts
        self.key = (tuple(nodes), consts, self.outputs)
        self.values = values
        self._floats = frozenset(floats)
        # ``align``'s answers for this probe, by the base's id (the base kept alive beside them)
        self.aligned: dict[int, tuple[Shot, Match | None, list[Number | None] | None]] = {}

    @property
    def captured(self) -> Captured:
        """The trace itself (built once, on demand)."""
        if self._captured is None:
            if self._records is None:
                raise AssertionError("a probe's trace is built only at the base sizes")
            self._captured = build_trace(self._records, self.signature)
        return self._captured

    def is_int(self, k: int) -> bool:
        """Whether number ``k`` is an integer (a size, an axis, an int state)."""
        return k not in self._floats

    @functools.cached_property
    def shapes(self) -> frozenset[int]:
        """Which numbers are output sizes (derived: the others are state)."""
        return frozenset(k for i, (_, out, _) in enumerate(self.layout) for k in range(out, self.node_end(i)))

    @functools.cached_property
    def output_numbers(self) -> dict[int, tuple[int, int]]:
        """Value id of a node's output -> where its sizes are among the numbers, and how many."""
        found = {}
        for (_, start, first_id), (_, _, outs, _) in zip(self.layout, self.nodes):
            for o, (_, ndim) in enumerate(outs):
                found[first_id + o] = (start, ndim)
                start += ndim
        return found

    @property
    def has_records(self) -> bool:
        """Whether the trace can still be built (``captured``)."""
        return self._captured is not None or self._records is not None

    def keep_records(self, records: Records) -> None:
        """MLX's records of this probe's trace, read again (it becomes a segment's base)."""
        self._records = records

    def forget_records(self) -> None:
        """Drop MLX's records (a probe that will not become a trace)."""
        self._records = None

    def same_constants(self, other: Shot) -> bool:
        """The same constant arrays (scalars aside: their values are numbers)."""
        return self.consts == other.consts and all(self.same_constant(i, other, i) for i in range(len(self.constants)))

    def same_constant(self, i: int, other: Shot, j: int) -> bool:
        """Whether constant ``i`` is ``other``'s constant ``j`` (scalars aside:
        their values are numbers)."""
        if self.constant_ids is not None and other.constant_ids is not None:
            if self.constant_ids[i] == other.constant_ids[j]:
                return True  # one array (a weight)
        a, b = self.constants[i], other.constants[j]
        return _scalar(a) or _same_array(a, b)

    def same_structure(self, other: Shot) -> bool:
        """Same primitives, wiring, dtypes, state skeleton, and the same constant
        arrays (then this probe will not be a trace: its records go)."""
        same = self.key == other.key and self.same_constants(other)
        if same and other is not self:
            self.forget_records()
        return same

    def node_end(self, i: int) -> int:
        """Where the numbers of node ``i`` end."""
        return self.layout[i + 1][0] if i + 1 < len(self.layout) else self.node_numbers


@dataclass(frozen=True)
class Match:
    """How a probe's trace lines up with the base trace: the base's nodes
    missing from it that must be proven no-ops at the probe's sizes
    (``_no_op``), and where each base number is among the probe's numbers
    (-1: a number of a missing node or constant); ``positions`` is None
    when the two are the same structure (every number at its own position)."""

    skipped: tuple[int, ...] = ()
    positions: tuple[int, ...] | None = None

    def values(self, shot: Shot) -> list[Number | None]:
        """The probe's numbers in the base's positions (None: a missing node's)."""
        if self.positions is None:
            return list(shot.values)
        return [shot.values[k] if k >= 0 else None for k in self.positions]


SAME = Match()
_DEAD = -1  # a value of the base that the probe does not compute
# Nodes that MLX leaves out of a graph when they would copy their input:
# the input (by position) that stands for their output then.
_NO_OPS = {"Slice": 0, "SliceUpdate": 1}


def align(base: Shot, shot: Shot) -> tuple[Match, list[Number | None]] | None:
    """``_align`` and the probe's numbers in the base's positions, once per
    pair (the range search and every refitted number ask again)."""
    if shot is base:
        return SAME, list(base.values)  # (not kept in ``aligned``: a shot holding itself is a cycle)
    cached = shot.aligned.get(id(base))
    if cached is None:
        match = _align(base, shot)
        if match is not None:
            shot.forget_records()  # lined up with a base: it will not be a trace
        cached = (base, match, None if match is None else match.values(shot))
        shot.aligned[id(base)] = cached
    _, match, values = cached
    return None if match is None or values is None else (match, values)


def _align(base: Shot, shot: Shot) -> Match | None:
    """The probe ``shot`` lined up with ``base``, or None.

    MLX leaves a slice out of the graph when it takes all of its input, and
    a slice update when it covers all of its destination: mlx-lm's
    ``KVCache`` writes a prompt into a zero buffer of ``ceil(n / 256) * 256``
    and returns ``keys[..., :n, :]``, so at a multiple of 256 the buffer,
    its zeros, the update and the slice are gone.  So the probe's nodes may
    be the base's with some left out: a slice (its consumers read its input
    instead), a slice update (they read the update), or a node no kept node
    reads (the zeros).  The caller proves each slice and update a no-op at
    the probe's sizes (``_no_op``), never trusting it."""
    if base.key == shot.key and base.same_constants(shot):
        return SAME
    n_in = len(base.signature.flat())
    if len(base.nodes) < len(shot.nodes) or n_in != len(shot.signature.flat()):
        return None
    ids: dict[int, int] = {i: i for i in range(n_in)}  # base value id -> the probe's (_DEAD: not computed)
    consts: dict[int, int] = {}  # base constant id -> the probe's
    taken: dict[int, int] = {}  # and back

    def pair(x: int, y: int, pending: dict[int, int]) -> bool:
        """Whether base value ``x`` can be the probe's value ``y``."""
        if n_in <= x < base.fixed:  # a constant: paired on first use
            if not n_in <= y < shot.fixed:
                return False
            mine = consts.get(x, pending.get(x, y))
            theirs = taken.get(y, x)
            pending[x] = y
            return mine == y and theirs == x
        return ids.get(x, _DEAD) == y

    positions: list[int] = []
    skipped: list[int] = []
    j = 0
    for i, (name, inputs, outs, skeleton) in enumerate(base.nodes):
        first = base.layout[i][2]
        theirs = shot.nodes[j] if j < len(shot.nodes) else None
        pending: dict[int, int] = {}
        if (
            theirs is not None
            and theirs[0] == name
            and theirs[2:] == (outs, skeleton)
            and len(theirs[1]) == len(inputs)
            and all(pair(x, y, pending) for x, y in zip(inputs, theirs[1]))
        ):
            for x, y in pending.items():
                consts[x], taken[y] = y, x
            for o in range(len(outs)):
                ids[first + o] = shot.layout[j][2] + o
            positions += range(shot.layout[j][0], shot.node_end(j))
            j += 1
            continue
        stands = _NO_OPS.get(name)
        if stands is not None and len(outs) == 1 and len(inputs) > stands:
            source = inputs[stands]
            if n_in <= source < base.fixed:
                return None  # a constant sliced whole: left to another trace
            ids[first] = ids.get(source, _DEAD)
            skipped.append(i)
        else:
            for o in range(len(outs)):
                ids[first + o] = _DEAD
        positions += [-1] * (base.node_end(i) - base.layout[i][0])
    if j != len(shot.nodes) or len(base.outputs) != len(shot.outputs):
        return None
    pending = {}
    if not all(pair(x, y, pending) for x, y in zip(base.outputs, shot.outputs)):
        return None
    consts.update(pending)
    taken.update({y: x for x, y in pending.items()})
    if len(taken) != shot.fixed - n_in:
        return None  # a constant of the probe's that the base does not have
    for x, y in consts.items():
        if base.consts[x - n_in] != shot.consts[y - n_in] or not base.same_constant(x - n_in, shot, y - n_in):
            return None
    for x in sorted(base.scalar_numbers, key=base.scalar_numbers.__getitem__):
        mapped = consts.get(x)
        positions.append(-1 if mapped is None else shot.scalar_numbers[mapped])
    return Match(tuple(skipped), tuple(positions))


def _no_op(base: Shot, i: int, predicted: Sequence[Number | Fraction | None], inputs: Sequence[Shape]) -> bool:
    """Whether the base's slice or slice update ``i`` copies its input
    whole, by the numbers ``predicted`` at some sizes (``inputs``: the
    input shapes there): starts 0, strides 1, and an output of the shape of
    the input that stands for it."""
    name, args_in, outs, _ = base.nodes[i]
    first, out, _ = base.layout[i]
    ndim = outs[0][1]
    args = list(predicted[first:out])
    if name == "SliceUpdate":
        args = args[1:]  # the reduction (none, sum, ...): an update that covers all is whole either way
    if len(args) != 3 * ndim or any(a != 0 for a in args[:ndim]) or any(a != 1 for a in args[2 * ndim :]):
        return False
    shape = list(predicted[out : out + ndim])
    return shape == _shape_of(base, args_in[_NO_OPS[name]], predicted, inputs)


def _shape_of(base: Shot, x: int, predicted: Sequence[Number | Fraction | None], inputs: Sequence[Shape]) -> list[Any]:
    """The shape of value ``x`` of the base trace by ``predicted``."""
    if x < len(inputs):
        return list(inputs[x])
    if x < base.fixed:
        return list(base.constants[x - len(inputs)].shape)
    start, ndim = base.output_numbers[x]
    return list(predicted[start : start + ndim])


# ----------------------------------------------------------------------------
# Fitting every number as a multilinear polynomial of the sizes.


Terms = tuple[tuple[tuple[int, ...], int | Fraction], ...]  # a polynomial: (product of sizes, coefficient)
Plan = tuple[list[tuple[Terms, list[int]]], list[tuple[SizeExpr, list[int]]]]


@dataclass
class Fit:
    """Every number of the base trace as a multilinear polynomial of the
    symbols' sizes.  Most numbers never change: ``base`` holds them all, and
    ``varying[k][subset]`` the coefficient of the product of the sizes in
    ``subset`` (``()``: the constant) for the numbers ``k`` that do."""

    symbols: list[list[Axis]]
    sizes: list[int]  # the size of each symbol in the base trace
    base: list[Number]
    varying: dict[int, dict[tuple[int, ...], int | Fraction]]
    # Output sizes that follow the sizes in a way no polynomial captures (a
    # strided convolution's length, a pooled size): the primitive computes
    # them from its inputs and state, so they are neither fitted nor checked.
    free: set[int] = field(default_factory=set)
    # Integer numbers that follow one size in a way no polynomial does but
    # an expression with floor division, min or max does (``shapeless.fit``):
    # a strided convolution's length, ``n // 2``, a buffer padded to a
    # multiple of 256, a window ``min(n, w)``.
    special: dict[int, SizeExpr] = field(default_factory=dict)
    frozen: bool = False  # no more refitting (the ranges are being recomputed without it)
    # For refitting: the numbers sampled along each size (size -> the
    # probe's numbers in the base's positions), the expressions fitted
    # along it, and how many fits were made.
    lines: dict[int, dict[int, list[Number | None] | None]] = field(default_factory=dict)
    fitted: dict[int, list[SizeExpr]] = field(default_factory=dict)
    refits: int = 0
    _planned: tuple[tuple[int, ...], Plan] | None = None  # ``_plan``'s, and what it was made from

    def predict(self, sizes: Sequence[int]) -> list[Number | Fraction | None]:
        """Every number at ``sizes`` (None: a division by zero there)."""
        out: list[Number | Fraction | None] = list(self.base)
        polynomials, expressions = self._plan()
        for terms, ks in polynomials:
            total: int | Fraction = 0
            for subset, coeff in terms:
                product: int | Fraction = coeff
                for i in subset:
                    product *= sizes[i]
                total += product
            for k in ks:
                out[k] = total
        for e, ks in expressions:
            try:
                value: int | Fraction | None = e.exact(sizes)
            except ZeroDivisionError:
                value = None
            for k in ks:
                out[k] = value
        return out

    def _plan(self) -> Plan:
        """The numbers that follow the sizes grouped by their polynomial or
        expression, each evaluated once per prediction (a 32-layer model
        repeats a few dozen of them thousands of times)."""
        key = (id(self.varying), len(self.varying), id(self.special), len(self.special))
        if self._planned is None or self._planned[0] != key:
            polynomials: dict[Terms, list[int]] = {}
            for k, terms in self.varying.items():
                if k not in self.special:
                    polynomials.setdefault(tuple(sorted(terms.items())), []).append(k)
            expressions: dict[SizeExpr, list[int]] = {}
            for k, e in self.special.items():
                expressions.setdefault(e, []).append(k)
            self._planned = (key, (list(polynomials.items()), list(expressions.items())))
        return self._planned[1]

    def expr(self, k: int, integer: bool) -> SizeExpr | None:
        """Number ``k`` as an expression, or None when it is a constant."""
        if k in self.special:
            e = self.special[k]
            return replace(e, integer=integer) if not isinstance(e, Expr) else e._replace(integer=integer)
        terms = self.varying.get(k)
        if not terms or not any(subset and c for subset, c in terms.items()):
            return None
        parts = [(c, subset) for subset, c in sorted(terms.items()) if subset and c]
        return Expr.of(terms.get((), 0), parts, integer)


class Prober:
    """Traces ``fun`` at other sizes of its inputs (zero-filled), with a cache."""

    def __init__(
        self,
        reader: Reader,
        specs: Sequence[TensorSpec],
        keyword_names: Sequence[str],
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        self._reader = reader
        self._specs = list(specs)
        self._names = list(keyword_names)
        self._shots: dict[tuple[Shape, ...], Shot | None] = {}
        self._tick = tick  # called at each probe (the progress line)

    def around(self, specs: Sequence[TensorSpec]) -> Prober:
        """A prober of the same function around other sizes, sharing this
        one's probes (a segment's trace meets sizes its parent probed)."""
        other = Prober(self._reader, specs, self._names, self._tick)
        other._shots = self._shots
        return other

    def shapes(self, changes: Mapping[Axis, int]) -> tuple[Shape, ...]:
        shapes = [list(s.shape) for s in self._specs]
        for (i, axis), size in changes.items():
            shapes[i][axis] = size
        return tuple(tuple(s) for s in shapes)

    def shot(self, changes: Mapping[Axis, int]) -> Shot | None:
        """The trace with the given axes set to the given sizes (None if tracing fails)."""
        shapes = self.shapes(changes)
        known = self._shots.get(shapes)
        if shapes not in self._shots or (not changes and known is not None and not known.has_records):
            # (The trace at the base sizes is built: a probe of another
            # prober's that has dropped its records is traced again.)
            arrays = [mx.zeros(shape, spec.dtype) for shape, spec in zip(shapes, self._specs)]
            n_pos = len(arrays) - len(self._names)
            args, kwargs = arrays[:n_pos], dict(zip(self._names, arrays[n_pos:]))
            self._tick()
            try:
                if known is not None:  # read already: MLX's records to build its trace from
                    known.keep_records(self._reader.records(args, kwargs))
                    return known
                parts, records = self._reader.read(args, kwargs, keep_records=not changes)
            except Exception:  # noqa: BLE001 - a size the function does not accept
                self._shots[shapes] = None
            else:
                # Records read in Python are kept until the probe lines up
                # with a base trace (``Shot.same_structure``, ``align``): one
                # that does not may become the base of a segment.
                self._shots[shapes] = Shot(parts, Signature.of(args, kwargs), records)
        return self._shots[shapes]

    def probed(self, changes: Mapping[Axis, int]) -> bool:
        """Whether the trace at these sizes is known (made, or refused)."""
        return self.shapes(changes) in self._shots

    def seed(self, base: Shot) -> None:
        """Use ``base`` as the trace at the base sizes."""
        self._shots[self.shapes({})] = base


def _at(symbols: Sequence[Sequence[Axis]], sizes: Sequence[int]) -> dict[Axis, int]:
    return {axis: size for group, size in zip(symbols, sizes) for axis in group}


def _values(shot: Shot) -> list[Number]:
    return shot.values


def _differing(a: Sequence[object], b: Sequence[object]) -> Iterator[int]:
    """The positions where ``a`` and ``b`` differ (compared in C: a probe
    has tens of thousands of numbers, nearly all equal)."""
    return itertools.compress(itertools.count(), map(operator.ne, a, b))


def _subsets(k: int, largest: int) -> list[tuple[int, ...]]:
    return [c for r in range(largest + 1) for c in itertools.combinations(range(k), r)]


def _polynomial(
    prober: Prober, base: Shot, symbols: list[list[Axis]], sizes: list[int], order: int, step: int
) -> Fit | None:
    """The multilinear fit with products of up to ``order`` sizes, from the
    corners ``B + step * e_T`` for every subset T of at most ``order``
    symbols (finite differences), or None when a corner cannot be traced or
    has another structure."""
    corners: dict[tuple[int, ...], list[Number]] = {}
    for subset in _subsets(len(symbols), order):
        moved = [s + (step if i in subset else 0) for i, s in enumerate(sizes)]
        shot = base if not subset else prober.shot(_at(symbols, moved))
        if shot is None or not shot.same_structure(base):
            return None
        corners[subset] = _values(shot)
    n0 = corners[()]
    changing = {k for values in corners.values() for k in _differing(values, n0)}
    varying: dict[int, dict[tuple[int, ...], int | Fraction]] = {}
    # In the shifted sizes t_i = (s_i - B_i) / step: d_S = sum over T in S
    # of (-1)^|S - T| f(corner T); then expand prod over S of (s_i - B_i) / step.
    # Which corners each difference takes (with their signs), and what each
    # difference adds to each product of sizes: the same for every number.
    order_of = list(corners)
    differences = [
        (
            subset,
            [
                (order_of.index(tuple(subset[i] for i in sub)), (-1) ** (len(subset) - len(sub)))
                for sub in _subsets(len(subset), len(subset))
            ],
        )
        for subset in order_of
    ]
    expansions = {
        subset: [
            (kept, math.prod(-sizes[i] for i in subset if i not in kept))
            for kept in (tuple(subset[i] for i in keep) for keep in _subsets(len(subset), len(subset)))
        ]
        for subset in order_of
    }
    # Integers where every corner is an integer and the step is 1 (nearly
    # always: sizes); exact fractions otherwise.  Numbers with the same
    # values at every corner (the same in every layer) share their terms.
    exact = step == 1
    columns = list(corners.values())
    done: dict[tuple[bool, tuple[Number, ...]], dict[tuple[int, ...], Any]] = {}
    for k in sorted(changing):
        at = tuple([values[k] for values in columns])
        whole = exact and all(type(v) is int for v in at)
        terms = done.get((whole, at))  # (1 == 1.0: the kind of arithmetic in the key)
        if terms is None:
            terms = {}
            for subset, signed in differences:
                d: Any = 0
                for corner, sign in signed:
                    d += sign * (at[corner] if whole else Fraction(at[corner]))
                if not whole:
                    d /= step ** len(subset)
                for kept, factor in expansions[subset]:
                    terms[kept] = terms.get(kept, 0) + factor * d
            done[whole, at] = terms
        varying[k] = terms
    return Fit(symbols, list(sizes), list(n0), varying)


def _checks(sizes: Sequence[int]) -> list[tuple[list[int], bool]]:
    """Points where a fit is checked with every size moved, each with whether
    it must match: near ones must; one far point, ``2s + 5`` (a point the
    range search probes anyway: ``_above``), counts where the fit predicts it
    exactly, and is passed over where not (a far size may be past a change
    of the graph, which the range search finds)."""
    near = [[s + k for s in sizes] for k in (3, 2, 5, 4, 7, 6)]
    far = [2 * s + 5 for s in sizes]
    if max(far) > MAX_SIZE or math.prod(far) > JOINT_ELEMENTS:
        return [(p, True) for p in near]
    return [(near[0], True), (far, False)] + [(p, True) for p in near[1:]]


def fit(prober: Prober, base: Shot, symbols: list[list[Axis]], sizes: list[int]) -> Fit | None:
    """Fit every number to the symbols' sizes, degree 1 first, then with
    products of sizes (a batch times a length, flattened; the product of
    every axis, flattened), and check it exactly at other sizes; None when
    no such fit holds."""
    # Near the base: how far the fit holds is the range search's business.
    checks = _checks(sizes)
    linear = _polynomial(prober, base, symbols, sizes, 1, 1)
    if linear is None:
        return None
    if _holds(prober, base, linear, checks):
        return linear
    if len(symbols) < 2:
        return None
    for step in (1, 2):  # a corner the function refuses (an odd product) may work two steps on
        full = _polynomial(prober, base, symbols, sizes, len(symbols), step)
        if full is not None:
            return full if _holds(prober, base, full, checks) else None
    return None


def _holds(
    prober: Prober, base: Shot, result: Fit, points: Iterable[tuple[Sequence[int], bool]], needed: int = 2
) -> bool:
    """Whether the fit predicts ``needed`` of the points exactly (``_checks``).
    A point the function cannot be traced at is skipped (``reshape(2, -1)``
    needs an even number of elements); one it traces at must match where it
    must: every state number exactly; an output size that does not becomes
    free.  A point that need not match counts only where it does, exactly."""
    matched = 0
    for p, must in points:
        shot = prober.shot(_at(result.symbols, p))
        if shot is None:
            continue
        wrong = _wrong(shot, base, result, p)
        if not must:
            matched += wrong == set()
            if matched == needed:
                return True
            continue
        if wrong:
            wrong = _repair(prober, base, result, wrong, shot, p)
        if wrong is None or wrong - base.shapes:
            return False
        result.free |= wrong
        matched += 1
        if matched == needed:
            return True
    return False


def _wrong(shot: Shot | None, base: Shot, result: Fit, sizes: Sequence[int]) -> set[int] | None:
    """The numbers the fit mispredicts at ``sizes`` (free ones aside), or None
    when the trace there fails or has another structure."""
    aligned = None if shot is None else align(base, shot)
    if shot is None or aligned is None:
        return None
    match, values = aligned
    predicted = result.predict(sizes)
    inputs = [spec.shape for spec in shot.signature.flat()]
    if not all(_no_op(base, i, predicted, inputs) for i in match.skipped):
        return None
    if values == predicted:
        return set()  # the common case, compared in one step
    return {k for k in _differing(values, predicted) if values[k] is not None} - result.free


def _matches(shot: Shot | None, base: Shot, result: Fit, sizes: Sequence[int]) -> bool:
    return _wrong(shot, base, result, sizes) == set()


MAX_REPAIRS = 16  # numbers fitted anew per fit, found or not (each costs up to a few dozen probes)
MIN_REUSE_SAMPLES = 8  # sizes at which a number must follow an expression fitted for another


def _repair(
    prober: Prober, base: Shot, result: Fit, wrong: set[int], shot: Shot | None, sizes: Sequence[int]
) -> set[int] | None:
    """Refit the integer numbers in ``wrong`` (mispredicted at ``sizes``) as
    expressions of one size each with floor division, min or max
    (``shapeless.fit``), from traces along that size with the others at
    their base sizes; the numbers still mispredicted at ``sizes`` after
    that, or None when ``shot`` has another structure.  A number that an
    expression fitted for another number gives at every size sampled for
    it takes that expression without probing again (a 32-layer model has a
    buffer per layer, each ``ceil(n / 256) * 256``)."""
    if result.frozen:
        return wrong
    for k in sorted(wrong):
        if k in result.special or not base.is_int(k):
            continue
        moved = [i for i in range(len(result.symbols)) if sizes[i] != result.sizes[i]]
        # (A size that did not move: the number does not follow it alone.)
        oracles = {i: _oracle(prober, base, result, i, k) for i in moved}
        found = next(
            ((i, e) for i in moved for e in result.fitted.get(i, []) if _gives(e, oracles[i], result, i)),
            None,
        )
        for i in moved:
            if found is not None or result.refits >= MAX_REPAIRS:
                break
            result.refits += 1
            expr = fit_steps(oracles[i], result.sizes[i], i, 0, MAX_SIZE, sizes[i] if moved == [i] else None)
            if expr is not None:
                result.fitted.setdefault(i, []).append(expr)
                found = (i, expr)
        if found is not None:
            result.special[k] = found[1]
    return _wrong(shot, base, result, sizes)


def _oracle(prober: Prober, base: Shot, result: Fit, i: int, k: int) -> Callable[[int], int | None]:
    """Number ``k`` when size ``i`` is ``n`` (the others at their base
    sizes), None where unknown; the probes' numbers kept in ``result.lines``."""
    line = result.lines.setdefault(i, {})

    def value(n: int) -> int | None:
        if n not in line:
            point = list(result.sizes)
            point[i] = n
            other = prober.shot(_at(result.symbols, point))
            aligned = None if other is None else align(base, other)
            line[n] = None if aligned is None else aligned[1]  # missing slices: proven by the range search
        values = line[n]
        v = None if values is None else values[k]
        return v if type(v) is int else None

    return value


def _gives(expr: SizeExpr, value: Callable[[int], int | None], result: Fit, i: int) -> bool:
    """Whether ``expr`` gives ``value`` at every size sampled along size ``i``
    (at least ``MIN_REUSE_SAMPLES`` of them)."""
    point = list(result.sizes)
    known = 0
    for n in list(result.lines.get(i, {})):
        v = value(n)
        if v is None:
            continue
        point[i] = n
        try:
            if expr.exact(point) != v:
                return False
        except ZeroDivisionError:
            return False
        known += 1
    return known >= MIN_REUSE_SAMPLES


# ----------------------------------------------------------------------------
# Candidates and ranges.


MAX_SYMBOLS = 4  # dynamic sizes split apart at most (each costs its own probes)


Split = tuple[list[Axis], list[list[Axis]]]  # a group, and the parts it was split into
MAX_UNION_PROBES = 32  # probes spent on finding which stuck axes move together


def _groups(prober: Prober, base: Shot, specs: Sequence[TensorSpec]) -> tuple[list[list[Axis]], list[Split]]:
    """The groups of input axes that change size together (step 1 of the
    module doc), and the groups split into parts that each move alone (the
    parts may still need one size: two inputs of size 1 that each broadcast
    against the other move alone, but their sum's size is the larger one)."""
    by_size: dict[int, list[Axis]] = {}
    for i, spec in enumerate(specs):
        for axis, size in enumerate(spec.shape):
            if size >= 1:
                by_size.setdefault(size, []).append((i, axis))

    def moves(group: list[Axis], size: int) -> bool:
        shot = prober.shot({axis: size + 1 for axis in group})
        return shot is not None and shot.same_structure(base)

    # Each entry: the axes moving together, and their split into single axes
    # when each of those moves alone too (then they need not share a size).
    tied: list[tuple[list[Axis], list[list[Axis]] | None]] = []
    for size, group in sorted(by_size.items(), reverse=True):
        by_end: dict[int, list[Axis]] = {}
        for i, axis in group:
            by_end.setdefault(axis - len(specs[i].shape), []).append((i, axis))
        subs = list(by_end.values())
        stuck = [sub for sub in subs if not moves(sub, size)]
        # Stuck parts none of whose axes moves alone, and their unions that
        # move: axes at other positions from the end whose sizes must agree,
        # as a batch of one in the tokens (axis 0 of 2) and in a KV cache
        # (axis 0 of 4), concatenated with the new keys.
        singles = {id(sub): _singles(sub, size, moves) for sub in stuck}
        apart = [sub for sub in stuck if not singles[id(sub)]]
        unions = _unions(apart, functools.partial(moves, size=size)) if len(apart) > 1 else []
        joined = {axis for union in unions for axis in union}
        if len(subs) > 1 and any(axis not in joined for sub in stuck for axis in sub) and moves(group, size):
            tied.append((group, None))  # only all of them together, e.g. a square matrix's rows and columns
            continue
        tied += [(union, None) for union in unions]
        for sub in subs:
            if any(sub is s for s in stuck):
                tied += [(one, None) for one in singles[id(sub)]]  # more single sizes could not be kept anyway
            else:
                alone = _singles(sub, size, moves)
                tied.append((sub, alone if len(alone) == len(sub) > 1 else None))
    # Split the smallest groups first while the count stays small: two
    # inputs of one example length may vary apart, a KV cache's many arrays
    # keep one length (and one set of probes).
    groups = [group for group, _ in tied]
    splits: list[Split] = []
    for k in sorted(range(len(tied)), key=lambda k: len(tied[k][0])):
        group, split = tied[k]
        if split is not None and len(groups) - 1 + len(split) <= MAX_SYMBOLS:
            groups.remove(group)
            groups += split
            splits.append((group, split))
    return _by_size(groups, specs), splits


def _singles(sub: list[Axis], size: int, moves: Callable[[list[Axis], int], bool]) -> list[list[Axis]]:
    """The axes of ``sub`` that move alone (none for one axis; only what
    could stay within MAX_SYMBOLS, as each costs probes)."""
    return [[one] for one in sub if moves([one], size)] if 1 < len(sub) <= MAX_SYMBOLS else []


def _unions(stuck: list[list[Axis]], moves: Callable[[list[Axis]], bool]) -> list[list[Axis]]:
    """Unions of the ``stuck`` parts (none moves alone) that move together:
    each part with the fewest others that let it move (at most
    ``MAX_UNION_PROBES`` probes in all)."""
    found: list[list[Axis]] = []
    pending = list(stuck)
    budget = MAX_UNION_PROBES
    while len(pending) > 1 and budget > 0:
        first, rest = pending[0], pending[1:]
        taken: tuple[list[Axis], ...] | None = None
        for r in range(1, len(rest) + 1):
            for others in itertools.combinations(rest, r):
                if budget <= 0:
                    break
                budget -= 1
                if moves([axis for part in (first, *others) for axis in part]):
                    taken = others
                    break
            if taken is not None or budget <= 0:
                break
        if taken is None:
            pending = rest
            continue
        found.append([axis for part in (first, *taken) for axis in part])
        pending = [part for part in rest if not any(part is t for t in taken)]
    return found


def _by_size(groups: Iterable[list[Axis]], specs: Sequence[TensorSpec]) -> list[list[Axis]]:
    """Largest example size first (the order in which symbols are dropped)."""
    return sorted(groups, key=lambda g: -specs[g[0][0]].shape[g[0][1]])


def _first_change(ok: Callable[[int], bool], good: int, bad: int) -> int:
    """The size next to ``good`` (towards ``bad``) where ``ok`` first fails."""
    while abs(bad - good) > 1:
        middle = (good + bad) // 2
        if ok(middle):
            good = middle
        else:
            bad = middle
    return bad


def _extent(ok: Callable[[int], bool], base: int, probes: Iterable[int]) -> tuple[int, int | None]:
    """Walk ``probes`` away from ``base``: (the last size where ``ok`` holds
    throughout, the first size where it fails, or None)."""
    good = base
    for size in probes:
        if ok(size):
            good = size
        else:
            return _first_change(ok, good, size) - (1 if size > base else -1), _first_change(ok, good, size)
    return good, None


def _below(base: int) -> list[int]:
    """Sizes probed below the base, nearest first: small sizes are where
    graphs change (no mask at one token, windows, top-k), each probed, down
    to 0 (empty inputs: served where the graph holds there too, as MLX's
    shapeless import serves them)."""
    return sorted({s for s in (base - 1, base // 2, 8, 4, 3, 2, 1, 0) if 0 <= s < base}, reverse=True)


def _above(base: int) -> list[int]:
    """Sizes probed above the base: a change between two of them is found by
    bisection (a graph that changes and changes back between probes is not)."""
    sizes = [base + 1, base + 3, 2 * base + 5, 64, 256, 2048, MAX_SIZE]
    return sorted({s for s in sizes if base < s <= MAX_SIZE})


# ----------------------------------------------------------------------------
# The dynamic trace.


def _rebuild(value: Any, number: Callable[[], tuple[SizeExpr | None, bool]]) -> Any:
    """An argument with each number that follows the sizes as its expression
    (``number()``: the next number's, in the readers' order: ``shapeless.probe``).  Not a closure
    of ``_symbolic``: a recursive closure is a reference cycle, which kept
    every probe's base trace alive until the cyclic collector ran."""
    if is_number(value):
        e, _ = number()
        return value if e is None else e
    if isinstance(value, tuple):
        return tuple(_rebuild(v, number) for v in value)
    if isinstance(value, list):
        return [_rebuild(v, number) for v in value]
    return value


def _symbolic(base: Shot, result: Fit, dims: list[Dim]) -> Trace:
    """The base trace with every number that follows the sizes as an ``Expr``
    (a free output size as ``None``: computed by its primitive, unchecked)."""
    position = 0

    # A polynomial's expression, built once (numbers of every layer share them).
    built: dict[tuple[int, bool], tuple[dict[tuple[int, ...], int | Fraction], SizeExpr | None]] = {}

    def expr(k: int) -> SizeExpr | None:
        integer = base.is_int(k)
        terms = result.varying.get(k)
        if k in result.special or terms is None:
            return result.expr(k, integer)
        found = built.get((id(terms), integer))
        if found is None:
            found = built[id(terms), integer] = (terms, result.expr(k, integer))  # terms kept alive: ids stay unique
        return found[1]

    # The numbers that hold an expression (or are free): a node with none
    # of them is kept as it is (most nodes of a large model).
    exprs = {k: e for k in itertools.chain(result.varying, result.special) if (e := expr(k)) is not None}
    dynamic = set(exprs) | result.free

    def number() -> tuple[SizeExpr | None, bool]:
        nonlocal position
        k, position = position, position + 1
        return exprs.get(k), k in result.free

    nodes = []
    for i, n in enumerate(base.captured.trace.nodes):
        if position != base.layout[i][0]:
            raise AssertionError("a trace's numbers read out of order")
        end = base.node_end(i)
        if dynamic.isdisjoint(range(position, end)):
            nodes.append(n)
            position = end
            continue
        args = _rebuild(n.args, number)
        output_exprs: list[tuple[int, int, SizeExpr | None]] = []
        for o, spec in enumerate(n.outputs):
            for axis in range(len(spec.shape)):
                e, free = number()
                if free:
                    output_exprs.append((o, axis, None))
                elif e is not None:
                    output_exprs.append((o, axis, e))
        nodes.append(Node(n.op, args, n.inputs, n.outputs, tuple(output_exprs), n.shapeless))
    constant_exprs = []
    for index, c in enumerate(base.captured.constants):
        if _scalar(c):
            e, _ = number()
            if e is not None:
                constant_exprs.append((index, e))
    trace = base.captured.trace
    return replace(trace, nodes=tuple(nodes), dims=tuple(dims), constant_exprs=tuple(constant_exprs))


# The largest product of sizes probed with every size moved at once: a
# function may build arrays of that many elements while it is traced (32,768
# tokens in each of 32,768 batches would not fit), so the largest sizes are
# probed one at a time, the others at their example sizes.
JOINT_ELEMENTS = 1 << 22


class _Refitted(Exception):
    """Numbers were refitted during a range search: it starts again."""


def _dynamic(
    prober: Prober, base: Shot, specs: Sequence[TensorSpec], hints: Sequence[list[list[Axis]]] = ()
) -> tuple[Trace, list[Dim]] | None:
    """The dynamic trace around the base sizes, or None (no size can vary).
    ``hints``: sets of groups to try first, before looking for the groups
    (a segment tries its parent's sizes: each set costs a fit, the search
    a probe or more per size of the example)."""

    def size_of(group: list[Axis]) -> int:
        return specs[group[0][0]].shape[group[0][1]]

    # All the sizes together first (the fit's probes serve every symbol at
    # once).  While the joint fit fails: each size must follow on its own;
    # the parts of a split group share one size again (two inputs of size 1
    # added: each broadcasts alone, but the sum's size is the larger one,
    # which no polynomial follows); else the smallest size is dropped (the
    # groups are sorted by size).
    def alone(group: list[Axis]) -> bool:
        return fit(prober, base, [group], [size_of(group)]) is not None

    result = None
    for hint in hints:
        symbols = _by_size(hint, specs)
        result = fit(prober, base, symbols, [size_of(g) for g in symbols]) if symbols else None
        if result is not None:
            break
    if result is None:
        groups, splits = _groups(prober, base, specs)
        symbols = groups
        result = fit(prober, base, symbols, [size_of(g) for g in symbols]) if symbols else None
        if result is None:
            symbols = [g for g in groups if alone(g)]
    while result is None and symbols:
        result = fit(prober, base, symbols, [size_of(g) for g in symbols])
        if result is not None:
            break
        for whole, parts in splits:
            if all(part in symbols for part in parts) and alone(whole):
                symbols = _by_size([g for g in symbols if g not in parts] + [whole], specs)
                splits.remove((whole, parts))
                break
        else:
            symbols = symbols[:-1]
    if result is None:
        return None
    fit_result = result

    def holds(point: list[int]) -> bool:
        shot = prober.shot(_at(symbols, point))
        wrong = _wrong(shot, base, fit_result, point)
        if wrong:  # a number may step where no probe of the fit looked (a buffer of 256)
            before = len(fit_result.special)
            wrong = _repair(prober, base, fit_result, wrong, shot, point)
            if len(fit_result.special) != before:
                raise _Refitted  # what was found without those numbers may not stand
        return wrong == set()

    def holds_probed_alone(point: list[int]) -> bool:
        """Whether every size of ``point`` holds with the others at their base
        sizes, where each such probe is made already (the fit's corners): the
        joint probe would tell no more."""
        alone = [
            [size if j == i else base_size for j, base_size in enumerate(fit_result.sizes)]
            for i, size in enumerate(point)
        ]
        return all(prober.probed(_at(symbols, p)) for p in alone) and all(holds(p) for p in alone)

    def ranges() -> list[Dim]:
        # Every size is probed with all of them moved at once first, until
        # such a probe fails: where it holds, each size holds there (one
        # probe for all of them); the others are probed one size at a time.
        passed: list[set[int]] = [set() for _ in symbols]
        for walk in (_below, _above):
            # The walks end together (at 0 and at MAX_SIZE), the shorter
            # ones waiting at their base size.
            walks = [walk(s) for s in fit_result.sizes]
            longest = max(map(len, walks))
            padded = [[s] * (longest - len(w)) + w for w, s in zip(walks, fit_result.sizes)]
            for k in range(longest if len(symbols) > 1 else 0):
                point = [w[k] for w in padded]
                if math.prod(point) > JOINT_ELEMENTS:
                    break  # every size large at once: memory a trace may need (one at a time below)
                if not holds_probed_alone(point) and not holds(point):
                    break
                for i, size in enumerate(point):
                    passed[i].add(size)
        dims = []
        for i, group in enumerate(symbols):

            def ok(size: int, i: int = i) -> bool:
                if size in passed[i]:
                    return True
                point = list(fit_result.sizes)
                point[i] = size
                return holds(point)

            lo, _ = _extent(ok, fit_result.sizes[i], _below(fit_result.sizes[i]))
            hi, _ = _extent(ok, fit_result.sizes[i], _above(fit_result.sizes[i]))
            dims.append(Dim(tuple(group), lo, hi))
        return dims

    fitted, free = dict(result.special), set(result.free)
    while True:
        try:
            dims = ranges()
            break
        except _Refitted:
            continue  # the search again with the numbers refitted (the probes are kept)
    if result.special != fitted:
        # Numbers refitted on the way: check them with every size moved, and
        # search every range again with them (no more refitting).
        result.frozen = True
        if not _holds(prober, base, result, _checks(result.sizes)):
            result.special, result.free = fitted, free
        dims = ranges()
    return _symbolic(base, result, dims), dims


def trace_shapeless(
    fun: Callable[..., Any], args: Sequence[mx.array], kwargs: Mapping[str, mx.array]
) -> list[Captured]:
    """The traces of a shapeless export: a dynamic trace around the example's
    sizes, and more traces where the function's graph changes, until every
    size from 1 to ``MAX_SIZE`` is served (or ``MAX_SEGMENTS`` traces are
    made).  A function none of whose sizes can vary gives its one shaped
    trace."""
    with collector_paused(), counting("shapeless export: traced at", "sizes") as tick:
        return _trace_shapeless(fun, args, kwargs, tick)


def _trace_shapeless(
    fun: Callable[..., Any], args: Sequence[mx.array], kwargs: Mapping[str, mx.array], tick: Callable[[], None]
) -> list[Captured]:
    signature = Signature.of(args, kwargs)
    specs, names = signature.flat(), signature.keyword_names
    base, reader = _base(fun, args, kwargs, signature)
    prober = Prober(reader, specs, names, tick)
    prober.seed(base)
    captured = base.captured
    found = _dynamic(prober, base, specs)
    if found is None:
        return [captured]
    trace, dims = found
    out = [Captured(trace, captured.constants)]
    for dim in dims:  # fill the gaps of each size, the others at their example sizes
        covered = [(dim.lo, dim.hi)]
        while len(out) < MAX_SEGMENTS:
            gap = _first_gap(covered)
            if gap is None:
                break
            segment = _segment(prober, specs, dim.axes, gap, covered, [list(d.axes) for d in dims])
            if segment is None:
                break
            out.append(segment)
            own = [d for d in segment.trace.dims if d.axes == dim.axes]
            covered.append((own[0].lo, own[0].hi) if own else (gap, gap))
    return out


def _base(
    fun: Callable[..., Any], args: Sequence[mx.array], kwargs: Mapping[str, mx.array], signature: Signature
) -> tuple[Shot, Reader]:
    """The trace at the example's sizes (MLX's errors for inputs or outputs
    it refuses, collectives rewritten), and the reader of the export's
    probes: the bridge's, unless the trace calls collectives (probes read
    in Python from the start, see ``shapeless.probe``)."""
    records = capture(fun, args, kwargs, True)
    collectives = any(rec["type"] == "primitive" and rec["name"] in distributed.COLLECTIVES for rec in records)
    return Shot(read_records(records), signature, records), Reader(fun, native=not collectives)


def _first_gap(covered: list[tuple[int, int]]) -> int | None:
    """The smallest size in 1..MAX_SIZE that no range covers."""
    size = 1
    for lo, hi in sorted(covered):
        if lo > size:
            return size
        size = max(size, hi + 1)
    return size if size <= MAX_SIZE else None


def _segment(
    parent_prober: Prober,
    specs: Sequence[TensorSpec],
    axes: Sequence[Axis],
    size: int,
    covered: list[tuple[int, int]],
    parent: Sequence[list[Axis]] = (),
) -> Captured | None:
    """A trace with ``axes`` at ``size``: dynamic where it can be, clamped so
    that no two traces serve one size; None if the function fails there."""
    moved = [list(s.shape) for s in specs]
    for i, axis in axes:
        moved[i][axis] = size
    seg_specs = [TensorSpec(tuple(s), spec.dtype) for s, spec in zip(moved, specs)]
    prober = parent_prober.around(seg_specs)
    base = prober.shot({})
    if base is None:
        return None
    # The parent's sizes first; then without this segment's own (a size
    # that changes the graph here, as a one-token prompt's).
    others = [g for g in parent if g != list(axes)]
    found = _dynamic(prober, base, seg_specs, [list(parent), others] if others != list(parent) else [others])
    if found is None:
        return base.captured  # served at these sizes only
    trace, dims = found  # the segment's axes among them, or fixed at ``size``
    above = min((lo for lo, _ in covered if lo > size), default=MAX_SIZE + 1)
    below = max((hi for _, hi in covered if hi < size), default=-1)  # 0 too, where the graph holds there
    clamped = tuple(
        Dim(d.axes, max(d.lo, below + 1), min(d.hi, above - 1)) if d.axes == tuple(axes) else d for d in dims
    )
    return Captured(replace(trace, dims=clamped), base.captured.constants)


__all__ = ["trace_shapeless", "MAX_SIZE", "MAX_SEGMENTS", "Node"]
