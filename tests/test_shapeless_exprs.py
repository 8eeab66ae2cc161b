"""Sizes that follow the inputs' sizes through floor and ceiling division,
modulo, min and max (``mlxfn.ir.Op``, fitted by ``mlxfn.shapeless.fit``):
strided convolutions, ``n // 2``, buffers padded to a multiple of 256
(mlx-lm's ``KVCache``), windows.  Each function is exported once and called
at other sizes: outputs equal the original's, and MLX's own shapeless
import's where MLX serves the case."""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import pytest

import mlxfn
from mlxfn import _progress
from mlxfn.ir import Expr, Op, Trace, constant, size_of
from mlxfn.shapeless.fit import fit_steps

from conftest import Pair, as_tuple, assert_same

# ----------------------------------------------------------------------------
# The language and the fitter, without MLX.

d0 = size_of(0)


@pytest.mark.parametrize(
    ("expr", "python"),
    [
        (Op("floordiv", Expr.of(-1, [(1, (0,))], True), constant(2)), lambda n: (n - 1) // 2),
        (Op("ceildiv", d0, constant(3)), lambda n: -(-n // 3)),
        (Op("mod", Expr.of(-5, [(1, (0,))], True), constant(4)), lambda n: (n - 5) % 4),
        (Op("mod", d0, constant(-3)), lambda n: n % -3),
        (Op("min", d0, constant(4)), lambda n: min(n, 4)),
        (Op("max", Expr.of(-4, [(1, (0,))], True), constant(0)), lambda n: max(n - 4, 0)),
        (Op("mul", Op("ceildiv", d0, constant(256)), constant(256)), lambda n: ((n + 255) // 256) * 256),
        (Op("sub", d0, Op("floordiv", d0, d0)), lambda n: n - 1),  # by an expression
        (Op("floordiv", Expr.of(0, [(Fraction(1, 2), (0,))], True), constant(Fraction(3, 4))), lambda n: (2 * n) // 3),
    ],
)
def test_expressions_evaluate_as_python(expr: Op, python: Callable[[int], int]) -> None:
    for n in range(1, 600):
        assert expr.value([n]) == python(n), (str(expr), n)
    assert Expr.from_record(expr.to_record()) == expr  # the record the Rust writer takes, and back


def test_a_zero_divisor_or_a_fraction_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="divides by zero"):
        Op("floordiv", constant(1), d0).value([0])
    half = Op("min", Expr.of(0, [(Fraction(1, 2), (0,))], True), constant(10))
    assert half.value([4]) == 2
    with pytest.raises(ValueError, match="not a whole number"):
        half.value([5])


@pytest.mark.parametrize(
    ("python", "base"),
    [
        (lambda n: n // 2, 8),
        (lambda n: (n + 2 - 3) // 2 + 1, 8),  # Conv2d(k=3, stride=2, padding=1)
        (lambda n: (n - 3) // 2 + 1, 9),  # Conv1d(k=3, stride=2)
        (lambda n: ((n + 255) // 256) * 256, 8),  # KVCache's buffer, steps far from the base
        (lambda n: ((n + 255) // 256) * 256, 300),
        (lambda n: -(-n // 64), 8),
        (lambda n: n % 5 + 3, 8),
        (lambda n: 2 * n + n // 4, 8),
        (lambda n: min(n, 4), 8),  # the kink below the base
        (lambda n: min(n, 10), 8),  # in the window
        (lambda n: max(n - 100, 0), 8),  # far above
        (lambda n: min(2 * n, 7), 8),
    ],
)
def test_the_fitter_finds_steps_and_kinks(python: Callable[[int], int], base: int) -> None:
    asked: set[int] = set()

    def value(n: int) -> int:
        asked.add(n)
        return python(n)

    found = fit_steps(value, base, 0)
    assert found is not None
    assert all(found.value([n]) == python(n) for n in range(0, 5000)), str(found)
    assert len(asked) <= 60, "samples are traces: few of them"


def test_the_fitter_refuses_what_it_cannot_express() -> None:
    assert fit_steps(lambda n: n * n, 8, 0) is None
    # A clamp has two kinks: the one above is found, the range search stops at the other.
    clamp = fit_steps(lambda n: min(max(n, 6), 20), 10, 0)
    assert clamp is not None and [clamp.value([n]) for n in (5, 6, 20, 99)] == [5, 6, 20, 20]
    assert fit_steps(lambda n: None, 8, 0) is None
    # A form that holds near the base but not at 0 is returned; the range search stops there.
    conv = fit_steps(lambda n: 1 if n == 0 else (n - 1) // 2 + 1, 8, 0)
    assert conv is not None and conv.value([9]) == 5


# ----------------------------------------------------------------------------
# Exported functions, called at other sizes.


def export(tmp_path: Path, fun: Callable[..., Any], *args: mx.array) -> mlxfn.ImportedFunction:
    path = tmp_path / "f.mlxfn"
    mlxfn.export_function(path, fun, *args, shapeless=True)
    return mlxfn.import_function(path)


def ranges(trace: Trace) -> dict[tuple[tuple[int, int], ...], tuple[int, int]]:
    return {d.axes: (d.lo, d.hi) for d in trace.dims}


def has_op(trace: Trace) -> bool:
    exprs = [e for n in trace.nodes for _, _, e in n.output_exprs] + [
        a for n in trace.nodes for a in n.args if isinstance(a, Op)
    ]
    return any(isinstance(e, Op) for e in exprs)


def normal(*shape: int) -> mx.array:
    return mx.random.normal(shape, key=mx.random.key(sum(shape) + len(shape)))


def check(p: Pair, fun: Callable[..., Any], *shapes: tuple[int, ...]) -> None:
    for shape in shapes:
        x = normal(*shape)
        for _ in range(2):  # the plain replay, then the compiled one
            p.check(x, original=fun)


def test_strided_conv2d_follows_height_and_width_apart(pair: Callable[..., Pair]) -> None:
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    mx.eval(conv.parameters())
    p = pair(conv, mx.ones((1, 8, 8, 3)), shapeless=True)
    (trace,) = p.ours.traces
    assert ranges(trace)[((0, 1),)] == (1, 32768) and ranges(trace)[((0, 2),)] == (1, 32768)
    assert has_op(trace), "the broadcast of the bias: ceil(n / 2)"
    check(p, conv, (1, 9, 6, 3), (1, 16, 16, 3), (1, 31, 7, 3), (2, 1, 40, 3), (1, 8, 8, 3))


def test_strided_conv1d(pair: Callable[..., Pair]) -> None:
    conv = nn.Conv1d(3, 4, 3, stride=2)
    mx.eval(conv.parameters())
    p = pair(conv, mx.ones((1, 9, 3)), shapeless=True)
    (trace,) = p.ours.traces
    assert ranges(trace)[((0, 1),)] == (3, 32768)
    check(p, conv, (1, 3, 3), (1, 10, 3), (2, 33, 3), (1, 1000, 3))
    with pytest.raises(ValueError, match="No imported function"):
        p.ours(normal(1, 2, 3))  # the kernel does not fit: the function refuses it too


def test_avg_pool_serves_the_sizes_its_graph_holds_at(tmp_path: Path) -> None:
    # MLX pools an even size by a reshape and an odd one by as_strided: two
    # graphs, so only even sizes follow the trace (a trace per parity is
    # left to do); the channels and the batch follow.
    pool = nn.AvgPool2d(2)
    fn = export(tmp_path, pool, mx.ones((1, 8, 8, 3)))
    for shape in ((1, 8, 8, 3), (2, 8, 8, 5)):
        x = normal(*shape)
        assert_same(fn(x), (pool(x),))
    with pytest.raises(ValueError, match="No imported function"):
        fn(normal(1, 9, 6, 3))


def test_the_first_half(pair: Callable[..., Pair]) -> None:
    fun = lambda x: x[: x.shape[0] // 2] * 2  # noqa: E731
    p = pair(fun, mx.ones((8, 3)), shapeless=True)
    (trace,) = p.ours.traces
    # At 0 MLX leaves the slice out (it takes all of an empty x): the trace's
    # slice is proven to take all of x there too, so 0 is served.
    assert ranges(trace)[((0, 0),)] == (0, 32768)
    assert has_op(trace)
    for n in (0, 1, 2, 3, 9, 16, 31, 1001):
        x = normal(n, 3)
        assert_same(p.ours(x), as_tuple(fun(x)))  # MLX's import keeps the traced slice


def test_a_buffer_padded_to_a_multiple_of_256(tmp_path: Path) -> None:
    def fun(x: mx.array) -> mx.array:
        n = x.shape[0]
        return mx.concatenate([x, mx.zeros((((n + 255) // 256) * 256 - n, x.shape[1]))]) + 1

    fn = export(tmp_path, fun, mx.ones((8, 3)))
    (trace,) = fn.traces  # one trace, where each multiple of 256 took one before
    assert ranges(trace)[((0, 0),)][1] == 32768 and has_op(trace)
    for n in (1, 8, 255, 256, 257, 600, 1030):
        x = normal(n, 3)
        assert_same(fn(x), (fun(x),))


def test_mlx_lm_kv_cache_prefill(tmp_path: Path) -> None:
    cache_module = pytest.importorskip("mlx_lm.models.cache")

    def prefill(keys: mx.array, values: mx.array) -> tuple[mx.array, ...]:
        cache = cache_module.KVCache()  # a buffer of ((n + 255) // 256) * 256 positions
        k, v = cache.update_and_fetch(keys, values)
        return k * 2, v, cache.keys

    keys, values = normal(1, 2, 8, 4), normal(1, 2, 8, 4)
    fn = export(tmp_path, prefill, keys, values)
    # At each multiple of 256 MLX leaves the buffer's zeros, the update and
    # the fetch's slice out of the graph (they would copy the keys whole):
    # the trace's are proven to, so one trace serves every length.
    (trace,) = fn.traces
    assert ranges(trace)[((0, 2), (1, 2))] == (0, 32768) and has_op(trace)
    for n in (1, 7, 255, 256, 257, 512, 700, 1024):
        k, v = normal(1, 2, n, 4), normal(2, 2, n, 4)[:1]
        got = fn(k, v)
        assert got[2].shape[2] == ((n + 255) // 256) * 256
        assert_same(got, prefill(k, v))


def test_a_window_of_the_last_rows(pair: Callable[..., Pair]) -> None:
    fun = lambda x: x[-min(x.shape[0], 4) :] + 1  # noqa: E731
    p = pair(fun, mx.ones((8, 3)), shapeless=True)
    for n in (1, 3, 4, 5, 9, 100):
        x = normal(n, 3)
        assert_same(p.ours(x), as_tuple(fun(x)))


def test_a_start_clamped_at_zero_is_one_trace(tmp_path: Path) -> None:
    fun = lambda x: mx.zeros((max(x.shape[0] - 4, 0) + 1, 2)) + x.sum()  # noqa: E731
    fn = export(tmp_path, fun, mx.ones((8,)))
    (trace,) = fn.traces
    assert ranges(trace)[((0, 0),)] == (0, 32768) and has_op(trace)
    for n in (0, 1, 4, 5, 9, 100):
        x = normal(n)
        assert_same(fn(x), (fun(x),))


def test_files_with_expressions_are_format_3_and_others_stay_format_2(tmp_path: Path) -> None:
    plain, stepped = tmp_path / "plain.mlxfn", tmp_path / "stepped.mlxfn"
    mlxfn.export_function(plain, lambda x: x[1:] * 2, mx.ones((8,)), shapeless=True)
    mlxfn.export_function(stepped, lambda x: x[: x.shape[0] // 2], mx.ones((8,)), shapeless=True)
    assert mlxfn.FORMAT_VERSION == 3
    for path, version in ((plain, 2), (stepped, 3)):  # a version-2 reader still reads the plain one
        assert int.from_bytes(path.read_bytes()[8:12], "little") == version
        assert_same(mlxfn.import_function(path)(mx.ones((5,))), mlxfn.import_function(path)(mx.ones((5,))))


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_the_progress_line_counts_the_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    err = _Tty() if tty else io.StringIO()
    monkeypatch.setattr(_progress.sys, "stderr", err)
    monkeypatch.setattr(_progress, "SLOW", 0.0)  # a slow export, as a 32-layer model's
    export(tmp_path, lambda x: x[: x.shape[0] // 2] * 2, mx.ones((8, 3)))
    text = err.getvalue()
    if not tty:
        assert text == ""
        return
    lines = [line for line in text.split("\r") if line]
    counts = [int(line.split("traced at ")[1].split()[0]) for line in lines]
    assert counts == sorted(counts) and counts[-1] > 5, lines  # kept up to date while it probes
    assert lines[-1].startswith(f"mlxfn: shapeless export: traced at {counts[-1]} sizes, done in ")


def test_a_slice_that_takes_all_only_at_the_traced_size_is_not_trusted(tmp_path: Path) -> None:
    # Traced at 8, x[:8] is all of x and MLX leaves the slice out of the
    # graph: the trace has none.  At 9 the probe has one, so the trace must
    # not serve 9 as "all of x": the rows stay fixed at 8.
    fun = lambda x: x[:8] * 2  # noqa: E731
    fn = export(tmp_path, fun, mx.ones((8, 3)))
    for n in (1, 5, 8, 9, 12, 300):
        x = normal(n, 3)
        try:
            got = fn(x)
        except ValueError:
            continue  # refused: never a wrong answer
        assert_same(got, (fun(x),))
    with pytest.raises(ValueError, match="No imported function"):
        fn(normal(9, 3))


def test_a_probe_lacking_a_slice_that_does_not_copy_whole_is_another_graph(tmp_path: Path) -> None:
    # Traced at 10, x[:8] slices; at 8 MLX leaves the slice out and the fit
    # proves it takes all of x there (stop 8, size 8); at 7 the trace's
    # slice would still ask for 8 rows: not a no-op, refused or another trace.
    fun = lambda x: x[:8] + 1  # noqa: E731
    fn = export(tmp_path, fun, mx.ones((10, 3)))
    for n in (3, 7, 8, 9, 10, 40):
        x = normal(n, 3)
        try:
            got = fn(x)
        except ValueError:
            continue
        assert_same(got, (fun(x),))
    assert any(t.sizes_for(mlxfn.ir.Signature.of([normal(8, 3)], {})) for t in fn.traces)
