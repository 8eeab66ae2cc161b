"""Shapeless export with dynamic sizes (python/mlxfn/dynamic.py), on small
functions whose behaviour at other sizes is known: right answers at every
size served, clear refusals elsewhere, never a wrong answer or a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlxfn
from mlxfn.dynamic import MAX_SIZE

from conftest import assert_same


def export(tmp_path: Path, fun, *args, **kwargs) -> mlxfn.ImportedFunction:
    path = tmp_path / "f.mlxfn"
    mlxfn.export_function(path, fun, *args, shapeless=True, **kwargs)
    return mlxfn.import_function(path)


def test_reduction_over_an_axis_of_length_one_is_right_not_a_crash(tmp_path: Path) -> None:
    # mx.compile(shapeless=True) segfaults here (MLX 0.32.4); mlxfn replays the concrete graph.
    code = textwrap.dedent(
        """
        import sys
        import mlx.core as mx
        import mlxfn
        fun = lambda x: (x.sum(axis=1), x.max(axis=0))
        mlxfn.export_function(sys.argv[1], fun, mx.ones((3, 4)), shapeless=True)
        fn = mlxfn.import_function(sys.argv[1])
        x = mx.arange(5, dtype=mx.float32).reshape(5, 1)
        for _ in range(3):
            got = fn(x)
            assert all(mx.array_equal(g, e).item() for g, e in zip(got, fun(x)))
        print("right")
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "r.mlxfn")], capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0 and child.stdout.strip() == "right", (child.returncode, child.stderr[-2000:])


def test_state_that_follows_the_sizes_is_evaluated_per_call(tmp_path: Path) -> None:
    def fun(x: mx.array) -> tuple[mx.array, ...]:
        n = x.shape[0]
        mask = mx.arange(n)[:, None] >= mx.arange(n)[None]  # a causal mask: Arange of n
        return (mx.where(mask, x @ x.T, -1.0), x.reshape(n // 1, -1)[1:, :2], mx.cumsum(x[: n - 1], axis=0))

    fn = export(tmp_path, fun, mx.random.normal((8, 3), key=mx.random.key(0)))
    main = fn.traces[0]
    assert [(d.axes, d.lo, d.hi) for d in main.dims] == [(((0, 0),), 1, MAX_SIZE), (((0, 1),), 2, MAX_SIZE)]
    for n, m in ((1, 3), (2, 3), (5, 2), (8, 7), (19, 3), (300, 5)):
        x = mx.random.normal((n, m), key=mx.random.key(n))
        for _ in range(2):  # the plain replay, then the compiled one
            assert_same(fn(x), fun(x))
    # One column: x[:, :2] clips, its numbers leave the fit; a trace of its own serves it.
    assert any(t.dims and t.signature.positional[0].shape[1] == 1 for t in fn.traces[1:])
    assert_same(fn(mx.ones((4, 1))), fun(mx.ones((4, 1))))
    with pytest.raises(ValueError, match=r"(?s)No imported function.*\(1\.\.32768, 2\.\.32768\)"):
        fn(mx.ones((MAX_SIZE + 1, 3)))


def test_a_size_the_numbers_cannot_follow_is_refused_at_the_call(tmp_path: Path) -> None:
    fun = lambda x: x.reshape(2, -1)  # noqa: E731  needs an even number of elements
    fn = export(tmp_path, fun, mx.ones((4, 6)))
    (trace,) = fn.traces
    assert len(trace.dims) == 2  # rows and columns: the output size (rows * columns / 2) is MLX's to compute
    assert_same(fn(mx.ones((6, 2))), (fun(mx.ones((6, 2))),))
    assert_same(fn(mx.ones((3, 5))[:, :4]), (fun(mx.ones((3, 4))),))
    with pytest.raises(ValueError, match="node 0 .Reshape. refuses these inputs.*Cannot reshape") as info:
        fn(mx.ones((3, 3)))  # 9 / 2: the function itself refuses it too
    assert not isinstance(info.value, mlxfn.FormatError), "MLX's ValueError, not a damaged file's"
    with pytest.raises(ValueError):
        fun(mx.ones((3, 3)))


def test_a_graph_that_changes_with_the_size_gets_a_trace_per_piece(tmp_path: Path) -> None:
    def fun(x: mx.array) -> mx.array:
        if x.shape[0] > 20:  # another graph above 20, as a sliding window or an MoE sort does
            return mx.sort(x, axis=0)[-20:] * 2
        return x.cumsum(axis=0)

    fn = export(tmp_path, fun, mx.ones((8, 2)))
    ranges = sorted(
        (t.dims[0].lo, t.dims[0].hi) if t.dims else (t.signature.positional[0].shape[0],) * 2 for t in fn.traces
    )
    assert ranges == [(0, 20), (21, MAX_SIZE)], ranges  # an empty input too: the graph holds at 0
    for n in (0, 1, 7, 20, 21, 64):
        x = mx.random.normal((n, 2), key=mx.random.key(n))
        assert_same(fn(x), (fun(x),))


def test_a_constant_built_from_a_size_keeps_that_size_fixed(tmp_path: Path) -> None:
    def fun(x: mx.array) -> mx.array:
        positions = mx.array(np.arange(x.shape[1]))  # a constant, not a graph node
        return x + positions

    x = mx.ones((1, 8))
    fn = export(tmp_path, fun, x)
    (trace,) = fn.traces
    assert [d.axes for d in trace.dims] == [((0, 0),)], "the batch may vary, the length may not"
    for y in (x, mx.ones((3, 8))):
        assert_same(fn(y), (fun(y),))
    with pytest.raises(ValueError, match="No imported function"):
        fn(mx.ones((1, 9)))


def test_a_function_whose_graph_differs_between_two_traces_gets_no_dynamic_size(tmp_path: Path) -> None:
    calls = []

    def fun(x: mx.array) -> mx.array:
        calls.append(1)
        return x * 2 if len(calls) % 2 else x * 3

    fn = export(tmp_path, fun, mx.ones((4,)))
    assert all(t.dims == () for t in fn.traces)
    with pytest.raises(ValueError, match="No imported function"):
        fn(mx.ones((5,)))


def test_scalar_constants_that_follow_the_sizes(tmp_path: Path) -> None:
    def fun(x: mx.array, cache: mx.array) -> mx.array:
        offset = cache.shape[0]  # as a RoPE offset: an int turned into a constant
        return mx.fast.rope(x, 4, traditional=False, base=10000.0, scale=1.0, offset=offset) + cache.sum()

    x, cache = mx.random.normal((1, 2, 1, 4), key=mx.random.key(1)), mx.ones((5,))
    fn = export(tmp_path, fun, x, cache)
    (trace,) = fn.traces
    assert trace.dims and trace.constant_exprs, "the offset constant follows the cache length"
    for length in (1, 5, 6, 40):
        c = mx.ones((length,))
        assert_same(fn(x, c), (fun(x, c),))


def test_dynamic_traces_convert_to_mlx_only_when_mlx_can_express_them(tmp_path: Path) -> None:
    from mlxfn.convert import ConvertError, to_mlx

    elementwise, sliced = tmp_path / "e.mlxfn", tmp_path / "s.mlxfn"
    mlxfn.export_function(elementwise, lambda x: mx.exp(x).sum(axis=-1), mx.ones((2, 3)), shapeless=True)
    mlxfn.export_function(sliced, lambda x: x[: x.shape[0] - 1], mx.ones((4,)), shapeless=True)
    to_mlx(elementwise, tmp_path / "e.mlx")  # only output shapes follow the sizes: MLX infers those
    theirs = mx.import_function(str(tmp_path / "e.mlx"))
    assert_same(theirs(mx.ones((5, 7))), (mx.exp(mx.ones((5, 7))).sum(axis=-1),))
    with pytest.raises(ConvertError, match=r"trace 0 is dynamic \(d0 \(input 0 axis 0\) in .*\) and the state"):
        to_mlx(sliced, tmp_path / "s.mlx")
    assert not (tmp_path / "s.mlx").exists()
