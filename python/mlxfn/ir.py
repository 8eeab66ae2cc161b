"""The one model of a traced function, shared by every stage of the pipeline.

    trace.py (MLX's export callback) -> Trace -> records -> the Rust writer
    the Rust reader -> records -> Trace -> replay/ (and graph, convert, cli)

A ``Trace`` is an SSA program: value ids count its inputs (positional, then
keyword inputs sorted by name), its constants, then every node's outputs.
``to_record``/``from_record`` are the only conversions to and from what the
binding (``mlxfn._mlxfn``) takes and returns: plain tuples, lists and dicts.

A *dynamic* trace (``dims`` not empty) serves a range of sizes: each ``Dim``
names the input axes that share one size and the sizes the trace serves; the
numbers of the graph that follow those sizes are ``Expr`` objects
(polynomials of the sizes) or ``Op`` trees over them (floor and ceiling
division, modulo, min, max: ``SizeExpr``), in node arguments, in
``output_exprs`` and in ``constant_exprs``; and
``Trace.concrete(sizes)`` evaluates them into an ordinary trace.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cached_property
from typing import Any, NamedTuple

import mlx.core as mx

Shape = tuple[int, ...]


def dtype_name(dtype: mx.Dtype) -> str:
    """A dtype's name without the ``mlx.core.`` prefix: ``float32``."""
    return str(dtype).removeprefix("mlx.core.")


class TensorSpec(NamedTuple):
    """Shape and dtype of one input or output."""

    shape: Shape
    dtype: mx.Dtype

    def describe(self, dims: Mapping[int, Dim] | None = None) -> str:
        """``(1, 8) mlx.core.int32``; dynamic axes (``dims``: axis -> Dim) as their range."""
        if not dims:
            return f"{self.shape} {self.dtype}"
        axes = [dims[a].describe_range() if a in dims else str(d) for a, d in enumerate(self.shape)]
        return f"({', '.join(axes)}) {self.dtype}"


@dataclass(frozen=True)
class Signature:
    """The inputs of one trace: positional specs, then sorted keyword specs."""

    positional: tuple[TensorSpec, ...]
    keywords: tuple[tuple[str, TensorSpec], ...]

    @staticmethod
    def of(args: Sequence[mx.array], kwargs: Mapping[str, mx.array]) -> Signature:
        """The signature of a call with these arrays."""
        return Signature(
            tuple(TensorSpec(tuple(a.shape), a.dtype) for a in args),
            tuple((k, TensorSpec(tuple(kwargs[k].shape), kwargs[k].dtype)) for k in sorted(kwargs)),
        )

    @staticmethod
    def from_specs(specs: Sequence[TensorSpec], keyword_names: Sequence[str]) -> Signature:
        """From every input's spec in value-id order and the keyword names (the last ones)."""
        n_pos = len(specs) - len(keyword_names)
        return Signature(tuple(specs[:n_pos]), tuple(zip(keyword_names, specs[n_pos:])))

    @property
    def keyword_names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.keywords)

    def flat(self) -> tuple[TensorSpec, ...]:
        """Positional specs, then keyword specs, in value-id order."""
        return self.positional + tuple(s for _, s in self.keywords)

    def same_kinds(self, other: Signature) -> bool:
        """Same input count, keyword names, ranks and dtypes (sizes aside)."""
        return (
            len(self.positional) == len(other.positional)
            and self.keyword_names == other.keyword_names
            and all(a.dtype == b.dtype and len(a.shape) == len(b.shape) for a, b in zip(self.flat(), other.flat()))
        )

    def describe(self, dims: Sequence[Dim] = ()) -> str:
        """The signature as MLX lists it in its "no function matches" message."""
        by_input: dict[int, dict[int, Dim]] = {}
        for dim in dims:
            for i, axis in dim.axes:
                by_input.setdefault(i, {})[axis] = dim
        flat = self.flat()
        n_pos = len(self.positional)
        lines = [f"Function with {n_pos} positional inputs and {len(self.keywords)} keyword inputs:"]
        lines += [f"  {i + 1}: {flat[i].describe(by_input.get(i))}" for i in range(n_pos)]
        lines += [
            f'  "{k}": {flat[n_pos + j].describe(by_input.get(n_pos + j))}' for j, (k, _) in enumerate(self.keywords)
        ]
        return "\n".join(lines)


def _fraction(value: int | Fraction) -> str:
    if isinstance(value, int) or value.denominator == 1:
        return str(int(value))
    return f"{value.numerator}/{value.denominator}"


class Expr(NamedTuple):
    """``constant + sum(coeff * product of the sizes of dims)``: a number of a
    dynamic trace that follows its sizes.  Exact: the constant and the
    coefficients are ints or fractions (ints when whole, which is nearly
    always, so evaluating costs integer arithmetic); an ``integer``
    expression must come out whole for the sizes of a call."""

    constant: int | Fraction
    terms: tuple[tuple[int | Fraction, tuple[int, ...]], ...] = ()
    integer: bool = True

    @staticmethod
    def of(constant: int | Fraction, terms: Sequence[tuple[int | Fraction, Sequence[int]]], integer: bool) -> Expr:
        """The expression in normal form: whole fractions as ints."""
        return Expr(_whole(constant), tuple((_whole(c), tuple(dims)) for c, dims in terms), integer)

    def exact(self, sizes: Sequence[int]) -> int | Fraction:
        """The value at ``sizes``, exact."""
        total = self.constant
        for coeff, dims in self.terms:
            product = coeff
            for d in dims:
                product *= sizes[d]
            total += product
        return total

    def value(self, sizes: Sequence[int]) -> int | float:
        """The number for the dynamic ``sizes`` (ValueError if an integer is not whole)."""
        return _number(self, self.exact(sizes), sizes)

    def __str__(self) -> str:
        def term(c: int | Fraction, dims: tuple[int, ...]) -> str:
            product = "*".join(f"d{d}" for d in dims)
            return product if c == 1 else f"-{product}" if c == -1 else f"{_fraction(c)}*{product}"

        parts = [term(c, dims) for c, dims in self.terms]
        if self.constant or not parts:
            parts.append(_fraction(self.constant))
        return " + ".join(parts).replace("+ -", "- ")

    def to_record(self) -> dict[str, Any]:
        def pair(v: int | Fraction) -> tuple[int, int]:
            return (v, 1) if isinstance(v, int) else (v.numerator, v.denominator)

        return {
            "constant": pair(self.constant),
            "terms": [(pair(c), list(dims)) for c, dims in self.terms],
            "integer": self.integer,
        }

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> SizeExpr:
        """An ``Expr``, or an ``Op`` for a record with a program (format 3)."""
        if record.get("program"):
            return Op.from_steps(record["program"], bool(record["integer"]))
        num, den = record["constant"]
        terms = tuple((n if d == 1 else Fraction(n, d), tuple(dims)) for (n, d), dims in record["terms"])
        return Expr(num if den == 1 else Fraction(num, den), terms, bool(record["integer"]))


def _whole(value: int | Fraction) -> int | Fraction:
    if isinstance(value, Fraction) and value.denominator == 1:
        return value.numerator
    return value


# The operations of an expression program (``Op``), by their code in the
# file (code 0: a polynomial ``Expr``).  Exact on fractions; floor and
# ceiling division and ``%`` as Python's, ``%`` taking the divisor's sign.
OPS = ("add", "sub", "mul", "floordiv", "ceildiv", "mod", "min", "max")
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "mod": "%"}


def _apply(op: str, a: int | Fraction, b: int | Fraction) -> int | Fraction:
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "floordiv":
        return a // b
    if op == "ceildiv":
        return -((-a) // b)
    if op == "mod":
        return _whole(a % b)
    if op == "min":
        return min(a, b)
    if op == "max":
        return max(a, b)
    raise ValueError(f"unknown expression op {op!r}")


@dataclass(frozen=True)
class Op:
    """``a <op> b`` for two size expressions (a polynomial ``Expr`` or
    another ``Op``): the integer operations no polynomial captures, such as
    a strided convolution's length ``(n + 2p - k) // s + 1``, a buffer
    padded to a multiple of 256 ``((n + 255) // 256) * 256`` or a window
    ``min(n, w)``.  ``integer`` is the root's (as ``Expr.integer``); the
    operands are evaluated exactly, as fractions."""

    op: str  # one of OPS
    a: SizeExpr
    b: SizeExpr
    integer: bool = True

    def exact(self, sizes: Sequence[int]) -> int | Fraction:
        """The value at ``sizes``, exact (ZeroDivisionError for a zero divisor)."""
        return _apply(self.op, self.a.exact(sizes), self.b.exact(sizes))

    def value(self, sizes: Sequence[int]) -> int | float:
        """The number for the dynamic ``sizes`` (ValueError if an integer is
        not whole or a divisor is zero)."""
        try:
            total = self.exact(sizes)
        except ZeroDivisionError:
            raise ValueError(f"{self} divides by zero for the sizes {tuple(sizes)}") from None
        return _number(self, total, sizes)

    def __str__(self) -> str:
        if self.op in ("min", "max"):
            return f"{self.op}({self.a}, {self.b})"
        a, b = (f"({e})" if " " in str(e) else str(e) for e in (self.a, self.b))
        if self.op == "ceildiv":
            return f"ceil({a} / {b})"
        return f"{a} {_SYMBOLS[self.op]} {b}"

    def steps(self) -> list[tuple[int, tuple[int, int], list[Any], int, int]]:
        """The program: every step after its operands, this one last."""
        out: list[tuple[int, tuple[int, int], list[Any], int, int]] = []

        def emit(e: SizeExpr) -> int:
            if isinstance(e, Expr):
                record = e.to_record()
                out.append((0, record["constant"], record["terms"], 0, 0))
            else:
                a, b = emit(e.a), emit(e.b)
                out.append((OPS.index(e.op) + 1, (0, 1), [], a, b))
            return len(out) - 1

        emit(self)
        return out

    def to_record(self) -> dict[str, Any]:
        return {"constant": (0, 1), "terms": [], "integer": self.integer, "program": self.steps()}

    @staticmethod
    def from_steps(steps: Sequence[Sequence[Any]], integer: bool) -> SizeExpr:
        done: list[SizeExpr] = []
        for code, constant, terms, a, b in steps:
            if code == 0:
                done.append(Expr.from_record({"constant": constant, "terms": terms, "integer": True}))
            else:
                done.append(Op(OPS[code - 1], done[a], done[b]))
        root = done[-1]
        return replace(root, integer=integer) if isinstance(root, Op) else root._replace(integer=integer)


SizeExpr = Expr | Op  # a number that follows the sizes


def size_of(dim: int) -> Expr:
    """The size of dim ``dim``."""
    return Expr(0, ((1, (dim,)),))


def constant(value: int | Fraction) -> Expr:
    """A constant."""
    return Expr(_whole(value))


def _number(expr: SizeExpr, total: int | Fraction, sizes: Sequence[int]) -> int | float:
    if not expr.integer:
        return float(total)
    if isinstance(total, Fraction):
        if total.denominator != 1:
            raise ValueError(f"{expr} is {_fraction(total)} for the sizes {tuple(sizes)}, not a whole number")
        return total.numerator
    return total


@dataclass(frozen=True)
class Dim:
    """A dynamic size: the (input, axis) pairs that share it and the sizes
    ``lo..hi`` (inclusive) the trace serves."""

    axes: tuple[tuple[int, int], ...]
    lo: int
    hi: int

    def describe_range(self) -> str:
        return f"{self.lo}..{self.hi}"


def _is_expr_record(value: Any) -> bool:
    return isinstance(value, dict) and "constant" in value and "terms" in value


def _args_from_record(value: Any) -> Any:
    if _is_expr_record(value):
        return Expr.from_record(value)
    if isinstance(value, tuple):
        return tuple(_args_from_record(v) for v in value)
    if isinstance(value, list):
        return [_args_from_record(v) for v in value]
    return value


@functools.lru_cache(maxsize=4096)
def _expr_record(expr: SizeExpr) -> dict[str, Any]:
    """``expr.to_record()``, once per distinct expression: a 32-layer model's
    trace holds the same few dozen thousands of times (the record is only
    read)."""
    return expr.to_record()


def _args_to_record(value: Any) -> Any:
    kind = type(value)  # the common kinds first: a large graph has tens of thousands of arguments
    if kind is int or kind is float or kind is bool:
        return value
    if kind is tuple:
        return tuple([_args_to_record(v) for v in value])
    if kind is list:
        return [_args_to_record(v) for v in value]
    if isinstance(value, (Expr, Op)):
        return _expr_record(value)
    if isinstance(value, tuple):
        return tuple(_args_to_record(v) for v in value)
    return value


def _evaluate(value: Any, sizes: Sequence[int]) -> Any:
    if isinstance(value, (Expr, Op)):
        return value.value(sizes)
    if isinstance(value, tuple):
        return tuple(_evaluate(v, sizes) for v in value)
    if isinstance(value, list):
        return [_evaluate(v, sizes) for v in value]
    return value


def has_expr(value: Any) -> bool:
    """Whether an argument (tree) holds an ``Expr`` or ``Op``."""
    if isinstance(value, (Expr, Op)):
        return True
    return isinstance(value, (tuple, list)) and any(has_expr(v) for v in value)


@dataclass(frozen=True)
class Node:
    """One primitive application: ``outputs = op(*inputs)`` with ``args`` as state.

    ``shapeless`` marks a node of a format-1 shapeless file, replayed with
    MLX's own shapeless semantics (``mx.compile(shapeless=True)``)."""

    op: str
    args: tuple[Any, ...]
    inputs: tuple[int, ...]
    outputs: tuple[TensorSpec, ...]
    output_exprs: tuple[tuple[int, int, SizeExpr | None], ...] = ()
    shapeless: bool = False

    def concrete(self, sizes: Sequence[int]) -> Node:
        """The node at the dynamic ``sizes``: every ``Expr`` evaluated.  An
        output axis whose size no expression captures (``None``) gets the
        size -1: the primitive computes it from its inputs and state, and
        the replay does not check it."""
        if not self.output_exprs and not has_expr(self.args):
            return self
        shapes = [list(o.shape) for o in self.outputs]
        for out, axis, expr in self.output_exprs:
            shapes[out][axis] = -1 if expr is None else int(expr.value(sizes))
        outputs = tuple(TensorSpec(tuple(s), o.dtype) for s, o in zip(shapes, self.outputs))
        return Node(self.op, _evaluate(self.args, sizes), self.inputs, outputs, (), self.shapeless)

    def to_record(self, dynamic: bool = True) -> tuple[Any, ...]:
        """``dynamic=False``: a node of a trace without dims, whose
        arguments hold no expressions (as ``from_record``)."""
        outputs = [(o.shape, o.dtype) for o in self.outputs]
        if not dynamic:
            return (self.op, list(self.args), list(self.inputs), outputs, [])
        exprs = [(out, axis, None if e is None else _expr_record(e)) for out, axis, e in self.output_exprs]
        return (self.op, list(_args_to_record(self.args)), list(self.inputs), outputs, exprs)

    @staticmethod
    def from_record(record: Sequence[Any], shapeless: bool = False, dynamic: bool = True) -> Node:
        """``dynamic=False``: the trace has no dynamic sizes, so its arguments
        hold no expressions and are taken as they are (a large graph's
        nodes are decoded at its first call)."""
        op, args, inputs, outputs, exprs = record
        if not dynamic:
            specs = tuple(TensorSpec(tuple(s), d) for s, d in outputs)
            return Node(op, tuple(args), tuple(inputs), specs, (), shapeless)
        return Node(
            op,
            tuple(_args_from_record(a) for a in args),
            tuple(inputs),
            tuple(TensorSpec(tuple(s), d) for s, d in outputs),
            tuple((out, axis, None if e is None else Expr.from_record(e)) for out, axis, e in exprs),
            shapeless,
        )


class NodesAtOtherSizes(tuple[Node, ...]):
    """The nodes of a dynamic trace made concrete at sizes other than those
    it was traced at (``Trace.concrete``).  The replay tells by this type
    who is at fault when an MLX op refuses its inputs: at the traced sizes
    every op accepted them at export (a refusal there means a damaged file),
    at other sizes the inputs may be ones the function itself refuses."""

    __slots__ = ()


@dataclass(frozen=True)
class Trace:
    """One traced signature of a function, as written and as replayed.

    ``constants`` index a constant table: the tracer's own list of arrays,
    or the file's table once written."""

    signature: Signature
    constants: tuple[int, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[int, ...]
    dims: tuple[Dim, ...] = ()
    constant_exprs: tuple[tuple[int, SizeExpr], ...] = ()

    @property
    def num_inputs(self) -> int:
        return len(self.signature.positional) + len(self.signature.keywords)

    @property
    def base_sizes(self) -> tuple[int, ...]:
        """The sizes the trace was traced at, one per dim."""
        flat = self.signature.flat()
        return tuple(flat[d.axes[0][0]].shape[d.axes[0][1]] for d in self.dims)

    def sizes_for(self, call: Signature) -> tuple[int, ...] | None:
        """The dynamic sizes of a call this trace serves, or None if it does not
        (another input count, keyword, rank, dtype, fixed size or range)."""
        if not self.signature.same_kinds(call):
            return None
        mine, theirs = self.signature.flat(), call.flat()
        dynamic = {axis for d in self.dims for axis in d.axes}
        for i, (a, b) in enumerate(zip(mine, theirs)):
            if any(x != y for axis, (x, y) in enumerate(zip(a.shape, b.shape)) if (i, axis) not in dynamic):
                return None
        sizes = []
        for d in self.dims:
            values = {theirs[i].shape[axis] for i, axis in d.axes}
            if len(values) != 1:
                return None
            (value,) = values
            if not d.lo <= value <= d.hi:
                return None
            sizes.append(value)
        return tuple(sizes)

    def concrete(self, sizes: Sequence[int]) -> Trace:
        """The trace at the dynamic ``sizes``: an ordinary trace without dims.
        Constants whose value follows the sizes are listed by
        ``constant_values``."""
        if not self.dims:
            return self
        flat = [list(s.shape) for s in self.signature.flat()]
        for d, size in zip(self.dims, sizes):
            for i, axis in d.axes:
                flat[i][axis] = size
        specs = [TensorSpec(tuple(s), spec.dtype) for s, spec in zip(flat, self.signature.flat())]
        signature = Signature.from_specs(specs, self.signature.keyword_names)
        nodes = list(self.nodes)
        for index in self._nodes_following_sizes:
            nodes[index] = nodes[index].concrete(sizes)
        concrete = tuple(nodes) if tuple(sizes) == self.base_sizes else NodesAtOtherSizes(nodes)
        return replace(self, signature=signature, nodes=concrete, dims=(), constant_exprs=())

    @cached_property
    def _nodes_following_sizes(self) -> tuple[int, ...]:
        """The nodes with an expression: found once, as a decode step's
        trace is made concrete at every new cache length."""
        return tuple(i for i, n in enumerate(self.nodes) if n.output_exprs or has_expr(n.args))

    def constant_values(self, sizes: Sequence[int]) -> dict[int, int | float]:
        """Position in ``constants`` -> the value that scalar constant takes at ``sizes``."""
        return {position: expr.value(sizes) for position, expr in self.constant_exprs}

    def describe(self) -> str:
        """The signature as listed in "no function matches" errors, ranges included."""
        return self.signature.describe(self.dims)

    @property
    def state_follows_sizes(self) -> bool:
        """Whether a primitive's state or a constant changes with the dynamic
        sizes (not only output shapes, which MLX's shapeless import infers)."""
        return bool(self.constant_exprs) or any(has_expr(n.args) for n in self.nodes)

    def describe_dims(self) -> str:
        """The dynamic sizes in words: ``d0 (input 0 axis 1) in 2..32768``."""
        return "; ".join(
            f"d{k} ({', '.join(f'input {i} axis {a}' for i, a in d.axes)}) in {d.describe_range()}"
            for k, d in enumerate(self.dims)
        )

    def to_record(self) -> dict[str, Any]:
        dynamic = bool(self.dims or self.constant_exprs)
        return {
            "keyword_names": list(self.signature.keyword_names),
            "inputs": [(s.shape, s.dtype) for s in self.signature.flat()],
            "constants": list(self.constants),
            "nodes": [n.to_record(dynamic) for n in self.nodes],
            "outputs": list(self.outputs),
            "dims": [([tuple(a) for a in d.axes], d.lo, d.hi) for d in self.dims],
            "constant_exprs": [(p, _expr_record(e)) for p, e in self.constant_exprs],
        }

    @staticmethod
    def from_record(record: Mapping[str, Any], shapeless: bool = False, nodes: bool = True) -> Trace:
        """A trace as the binding returns it; ``shapeless`` for format-1
        shapeless files (MLX's semantics).  ``nodes=False`` leaves the nodes
        out: what a call is matched against, cheap to build for a large graph."""
        specs = [TensorSpec(tuple(s), d) for s, d in record["inputs"]]
        dynamic = bool(record["dims"] or record["constant_exprs"])
        return Trace(
            Signature.from_specs(specs, list(record["keyword_names"])),
            tuple(record["constants"]),
            tuple(Node.from_record(n, shapeless, dynamic) for n in record["nodes"]) if nodes else (),
            tuple(record["outputs"]),
            tuple(Dim(tuple((i, a) for i, a in axes), lo, hi) for axes, lo, hi in record["dims"]),
            tuple((p, Expr.from_record(e)) for p, e in record["constant_exprs"]),
        )
