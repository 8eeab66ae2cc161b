"""Shapeless export serves what MLX's own shapeless import serves: empty
inputs, equal inputs exported at size 1, and a call the function itself
refuses raises MLX's ValueError (not a damaged-file error).

Each case is exported by mlxfn and by MLX (``Pair``) and called at several
sizes: mlxfn's outputs must equal MLX's import and the original function's,
bit for bit.  What mlxfn refuses where MLX answers is said in each test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

import mlxfn
from mlxfn.dynamic import MAX_SIZE
from mlxfn.errors import FormatError, ReplayError
from mlxfn.ir import Node, NodesAtOtherSizes, Trace
from mlxfn.replay import build_replay

from conftest import Pair, as_tuple, assert_same

NO_MATCH = "No imported function"


def ones(*shapes: tuple[int, ...]) -> list[mx.array]:
    return [mx.random.normal(s, key=mx.random.key(sum(s) + len(s))) for s in shapes]


def ranges(trace: Trace) -> list[tuple[tuple[tuple[int, int], ...], int, int]]:
    return sorted((d.axes, d.lo, d.hi) for d in trace.dims)


def check_at(p: Pair, fun: Callable[..., Any], *calls: tuple[tuple[int, ...], ...]) -> None:
    """Ours equals MLX's import and the original at each call, three times
    (the plain replay, then the compiled one)."""
    for shapes in calls:
        args = ones(*shapes)
        for _ in range(3):
            p.check(*args, original=fun)


# ----------------------------------------------------------------------------
# 1. Zero sizes.


def test_empty_inputs_are_served_where_the_graph_holds_at_zero(pair: Callable[..., Pair]) -> None:
    fun = lambda x, y: mx.exp(x) * 2 + y  # noqa: E731
    p = pair(fun, mx.ones((2, 3)), mx.ones((2, 3)), shapeless=True)
    (trace,) = p.ours.traces
    assert ranges(trace) == [(((0, 0), (1, 0)), 0, MAX_SIZE), (((0, 1), (1, 1)), 0, MAX_SIZE)]
    check_at(p, fun, ((0, 4), (0, 4)), ((3, 0), (3, 0)), ((0, 0), (0, 0)), ((2, 3), (2, 3)), ((5, 7), (5, 7)))


def test_reductions_over_an_empty_axis(pair: Callable[..., Pair]) -> None:
    fun = lambda x: (x.sum(axis=1), x.mean(axis=0), x.reshape(-1), mx.cumsum(x, axis=1))  # noqa: E731
    p = pair(fun, mx.ones((4, 6)), shapeless=True)
    (trace,) = p.ours.traces
    assert [(d.lo, d.hi) for d in trace.dims] == [(0, MAX_SIZE), (0, MAX_SIZE)]
    check_at(p, fun, ((3, 0),), ((0, 3),), ((0, 0),), ((9, 2),))  # not 1: MLX's import crashes there


def test_a_size_zero_the_function_refuses_stays_refused(tmp_path: Path) -> None:
    # max over an empty axis: MLX refuses to build it, so axis 0 starts at 1;
    # axis 1 may be empty (the maximum of every row of nothing is empty).
    fun = lambda x: x.max(axis=0)  # noqa: E731
    path = tmp_path / "max.mlxfn"
    mlxfn.export_function(path, fun, mx.ones((4, 6)), shapeless=True)
    fn = mlxfn.import_function(path)
    (trace,) = fn.traces
    assert ranges(trace) == [(((0, 0),), 1, MAX_SIZE), (((0, 1),), 0, MAX_SIZE)]
    (x,) = ones((3, 0))
    assert_same(fn(x), as_tuple(fun(x)))
    with pytest.raises(ValueError):
        fun(mx.ones((0, 3)))
    with pytest.raises(ValueError, match=rf"(?s){NO_MATCH}.*\(1\.\.32768, 0\.\.32768\)"):
        fn(mx.ones((0, 3)))


def test_a_graph_that_changes_at_zero_is_refused_at_zero(tmp_path: Path) -> None:
    # Another graph at 0 (MLX's import would replay the graph of 3 there):
    # mlxfn keeps the range from 1 and refuses 0, never a wrong answer.
    def fun(x: mx.array) -> mx.array:
        return x * 2 if x.shape[0] else mx.zeros_like(x) - 1

    path = tmp_path / "zero.mlxfn"
    mlxfn.export_function(path, fun, mx.ones((3,)), shapeless=True)
    fn = mlxfn.import_function(path)
    assert [(d.lo, d.hi) for t in fn.traces for d in t.dims] == [(1, MAX_SIZE)]
    assert_same(fn(mx.ones((5,))), (fun(mx.ones((5,))),))
    with pytest.raises(ValueError, match=rf"(?s){NO_MATCH}.*\(1\.\.32768\)"):
        fn(mx.ones((0,)))


def test_a_trace_made_below_the_example_serves_zero_too(tmp_path: Path) -> None:
    def fun(x: mx.array) -> mx.array:
        return x * 2 if x.shape[0] >= 10 else x + 1  # another graph below 10, which holds at 0

    path = tmp_path / "below.mlxfn"
    mlxfn.export_function(path, fun, mx.ones((16, 2)), shapeless=True)
    fn = mlxfn.import_function(path)
    assert sorted((d.lo, d.hi) for t in fn.traces for d in t.dims if (0, 0) in d.axes) == [(0, 9), (10, MAX_SIZE)]
    for n in (0, 1, 9, 10, 33):
        (x,) = ones((n, 2))
        assert_same(fn(x), (fun(x),))


# ----------------------------------------------------------------------------
# 2. Equal inputs of size 1, and size-1 axes that broadcast.


def test_equal_inputs_of_size_one_move_together(pair: Callable[..., Pair]) -> None:
    fun = lambda x, y: x + y  # noqa: E731
    p = pair(fun, mx.array([1.0]), mx.array([1.0]), shapeless=True)
    (trace,) = p.ours.traces
    assert ranges(trace) == [(((0, 0), (1, 0)), 0, MAX_SIZE)]
    check_at(p, fun, ((2,), (2,)), ((1,), (1,)), ((7,), (7,)), ((0,), (0,)), ((300,), (300,)))
    # MLX's import also broadcasts (5,) + (1,); mlxfn's axes share one size.
    with pytest.raises(ValueError, match=NO_MATCH):
        p.ours(mx.ones((5,)), mx.ones((1,)))


def test_size_one_axes_that_broadcast_stay_one(pair: Callable[..., Pair]) -> None:
    # (3, 1) + (1, 4): each 1 broadcasts against the other input's size.
    fun = lambda x, y: x + y  # noqa: E731
    p = pair(fun, mx.ones((3, 1)), mx.ones((1, 4)), shapeless=True)
    (trace,) = p.ours.traces
    assert ranges(trace) == [(((0, 0),), 0, MAX_SIZE), (((1, 1),), 0, MAX_SIZE)]
    check_at(p, fun, ((5, 1), (1, 7)), ((1, 1), (1, 1)), ((0, 1), (1, 2)), ((2, 1), (1, 2)))
    with pytest.raises(ValueError, match=NO_MATCH):  # the original refuses (3, 2) + (1, 4) too
        p.ours(mx.ones((3, 2)), mx.ones((1, 4)))


def test_size_one_columns_of_equal_inputs_move_together(pair: Callable[..., Pair]) -> None:
    fun = lambda x, y: x * y - y  # noqa: E731
    p = pair(fun, mx.ones((3, 1)), mx.ones((3, 1)), shapeless=True)
    (trace,) = p.ours.traces
    assert ranges(trace) == [(((0, 0), (1, 0)), 0, MAX_SIZE), (((0, 1), (1, 1)), 0, MAX_SIZE)]
    check_at(p, fun, ((5, 2), (5, 2)), ((1, 1), (1, 1)), ((0, 1), (0, 1)), ((4, 9), (4, 9)))


def test_a_size_one_axis_against_a_larger_one_stays_one(pair: Callable[..., Pair]) -> None:
    fun = lambda x, y: x + y  # noqa: E731
    p = pair(fun, mx.ones((2, 3)), mx.ones((1, 3)), shapeless=True)
    (trace,) = p.ours.traces
    # y's rows broadcast against x's: they stay 1 (the rows of x may vary, even to 1).
    assert ranges(trace) == [(((0, 0),), 0, MAX_SIZE), (((0, 1), (1, 1)), 0, MAX_SIZE)]
    check_at(p, fun, ((7, 3), (1, 3)), ((1, 3), (1, 3)), ((0, 3), (1, 3)), ((4, 5), (1, 5)))
    # MLX's import also serves (2, 3) + (2, 3) here; mlxfn keeps y's rows at 1.
    with pytest.raises(ValueError, match=NO_MATCH):
        p.ours(mx.ones((2, 3)), mx.ones((2, 3)))


def test_independent_inputs_of_size_one_keep_their_own_sizes(pair: Callable[..., Pair]) -> None:
    # An outer product: the two sizes need not agree, and a split fits them.
    fun = lambda x, y: x[:, None] * y[None]  # noqa: E731
    p = pair(fun, mx.array([1.0]), mx.array([1.0]), shapeless=True)
    (trace,) = p.ours.traces
    assert ranges(trace) == [(((0, 0),), 0, MAX_SIZE), (((1, 0),), 0, MAX_SIZE)]
    for shapes in (((3,), (5,)), ((2,), (2,)), ((1,), (4,))):
        args = ones(*shapes)
        assert_same(p.ours(*args), as_tuple(fun(*args)))


def test_exporter_with_several_traces_of_size_one(tmp_path: Path) -> None:
    fun = lambda x, y: mx.maximum(x, y) * 2  # noqa: E731
    path = tmp_path / "several.mlxfn"
    with mlxfn.exporter(path, fun, shapeless=True) as exporter:
        exporter(mx.ones((1,)), mx.ones((1,)))
        exporter(mx.ones((1, 1)), mx.ones((1, 1)))
    fn = mlxfn.import_function(path)
    assert len(fn.traces) == 2
    for shapes in (((2,), (2,)), ((9,), (9,)), ((0,), (0,)), ((2, 3), (2, 3)), ((1, 5), (1, 5)), ((4, 1), (4, 1))):
        args = ones(*shapes)
        assert_same(fn(*args), as_tuple(fun(*args)))


def test_a_batch_of_one_shared_by_a_token_and_a_cache(tmp_path: Path) -> None:
    # A decode step's shape: tokens (batch, 1) and a cache (batch, length, 4)
    # concatenated with them.  The batch axes sit at different positions from
    # the end; neither moves alone, together they do.
    def fun(tokens: mx.array, cache: mx.array) -> tuple[mx.array, ...]:
        new = tokens[..., None] * mx.arange(4, dtype=mx.float32)
        cache = mx.concatenate([cache, new], axis=1)
        return cache.sum(axis=1), cache

    path = tmp_path / "step.mlxfn"
    mlxfn.export_function(path, fun, mx.ones((1, 1)), mx.ones((1, 5, 4)), shapeless=True)
    fn = mlxfn.import_function(path)
    (trace,) = fn.traces
    batch = [d for d in trace.dims if (0, 0) in d.axes]
    assert len(batch) == 1 and set(batch[0].axes) == {(0, 0), (1, 0)}
    for b, n, t in ((2, 1, 5), (3, 1, 9), (1, 1, 0), (4, 2, 3)):
        args = ones((b, n), (b, t, 4))
        assert_same(fn(*args), fun(*args))


# ----------------------------------------------------------------------------
# 3. A call the function itself refuses: MLX's ValueError, not a damaged file.


def test_inputs_the_function_refuses_raise_its_value_error(pair: Callable[..., Pair]) -> None:
    fun = lambda x: x.reshape(-1, 2)  # noqa: E731
    p = pair(fun, mx.ones((4, 6)), shapeless=True)
    check_at(p, fun, ((3, 4),), ((1, 2),), ((0, 6),))
    with pytest.raises(ValueError, match="Cannot reshape"):
        fun(mx.ones((3, 3)))
    with pytest.raises(ValueError, match="Cannot reshape"):
        p.theirs(mx.ones((3, 3)))
    for _ in range(3):  # the plain replay, then a compiled one: the same error
        with pytest.raises(ValueError, match=r"trace 0 at sizes .*node 0 \(Reshape\).*Cannot reshape") as info:
            p.ours(mx.ones((3, 3)))
        assert not isinstance(info.value, FormatError), "not a damaged file"
    check_at(p, fun, ((5, 2),))  # and the function still serves the sizes it accepts


def test_a_refusal_at_the_traced_sizes_is_a_damaged_file() -> None:
    # A node whose state disagrees with its input at the sizes the trace was
    # traced at: every op accepted its inputs there at export, so it is the
    # file's fault (ReplayError); at other sizes, the inputs' (ValueError).
    damaged = Node("Reshape", ((5, -1),), (0,), (_spec((5, -1)),))  # 24 elements at the traced sizes
    trace = Trace(_signature((4, 6)), (), (damaged,), (1,), dims=(mlxfn.ir.Dim(((0, 0),), 1, 8),))
    at_base = trace.concrete(trace.base_sizes)
    at_other = trace.concrete((3,))
    assert not isinstance(at_base.nodes, NodesAtOtherSizes) and isinstance(at_other.nodes, NodesAtOtherSizes)
    with pytest.raises(ReplayError, match="node 0 .Reshape. does not replay"):
        build_replay(at_base.nodes, [], at_base.outputs, "t", check_shapes=True)(mx.ones((4, 6)))
    with pytest.raises(ValueError, match="node 0 .Reshape. refuses these inputs") as info:
        build_replay(at_other.nodes, [], at_other.outputs, "t", check_shapes=True)(mx.ones((3, 6)))
    assert not isinstance(info.value, FormatError)
    # Said explicitly, either way.
    with pytest.raises(ReplayError):
        build_replay(at_other.nodes, [], at_other.outputs, "t", other_sizes=False)(mx.ones((3, 6)))
    # A shape that disagrees with the file's record is the file's fault at any size.
    wrong = Node("Reshape", ((-1, 2),), (0,), (_spec((7, 2)),))
    with pytest.raises(ReplayError, match="the file records"):
        build_replay([wrong], [], [1], "t", check_shapes=True, other_sizes=True)(mx.ones((3, 6)))


def _spec(shape: tuple[int, ...]) -> mlxfn.ir.TensorSpec:
    return mlxfn.ir.TensorSpec(shape, mx.float32)


def _signature(shape: tuple[int, ...]) -> mlxfn.ir.Signature:
    return mlxfn.ir.Signature((_spec(shape),), ())
