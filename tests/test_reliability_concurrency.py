"""Threads: one import called from many threads, many imports at once,
exports (shaped and shapeless) from two threads, and imports racing an
export of the same file.
Every result must equal the original function's."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx

import mlxfn
from mlxfn._runner import compile_enabled


def make_model(seed: int) -> Callable[[mx.array], mx.array]:
    key = mx.random.key(seed)
    w, b = mx.random.normal((64, 64), key=key), mx.random.normal((64,), key=mx.random.split(key)[0])
    mx.eval(w, b)
    return lambda x: mx.tanh(x @ w + b)


def run_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(i)`` on ``count`` threads released together; the errors."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def body(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def inputs_and_outputs(model: Callable[[mx.array], mx.array], shapes: list[tuple[int, ...]]):  # noqa: ANN201
    # Evaluated here: MLX evaluates an array on the stream of the thread that made it.
    xs = [mx.random.normal(shape, key=mx.random.key(100 + i)) for i, shape in enumerate(shapes)]
    ys = [model(x) for x in xs]
    mx.eval(xs, ys)
    return xs, ys


def test_one_import_called_from_many_threads(tmp_path: Path) -> None:
    model = make_model(1)
    path = tmp_path / "m.mlxfn"
    mlxfn.export_function(path, model, mx.ones((4, 64)))
    fn = mlxfn.import_function(path)  # first call (constants, then compile) happens in the threads
    xs, ys = inputs_and_outputs(model, [(4, 64)] * 8)

    def work(i: int) -> None:
        for _ in range(20):
            assert mx.array_equal(fn(xs[i])[0], ys[i]).item()

    assert run_threads(8, work) == []


def test_threads_calling_different_traces_of_one_import(tmp_path: Path) -> None:
    model = make_model(2)
    path = tmp_path / "traces.mlxfn"
    shapes = [(1, 64), (3, 64), (5, 64), (7, 64)]
    with mlxfn.exporter(path, model) as exporter:
        for shape in shapes:
            exporter(mx.ones(shape))
    fn = mlxfn.import_function(path)
    xs, ys = inputs_and_outputs(model, shapes * 2)  # two threads per trace

    def work(i: int) -> None:
        for _ in range(10):
            assert mx.array_equal(fn(xs[i])[0], ys[i]).item()

    assert run_threads(8, work) == []


def test_many_imports_of_one_file_loaded_at_once(tmp_path: Path) -> None:
    """Each thread imports the file and makes the first call: the loads race
    on the process-wide cache of shared constants."""
    model = make_model(3)
    path = tmp_path / "same.mlxfn"
    mlxfn.export_function(path, model, mx.ones((2, 64)))
    xs, ys = inputs_and_outputs(model, [(2, 64)] * 6)
    fns: list = [None] * 6

    def work(i: int) -> None:
        fns[i] = mlxfn.import_function(path, verify=i % 2 == 0)
        for _ in range(5):
            assert mx.array_equal(fns[i](xs[i])[0], ys[i]).item()

    assert run_threads(6, work) == []
    assert all(fn is not None for fn in fns)


def test_several_imports_alive_and_called_together(tmp_path: Path) -> None:
    models = [make_model(seed) for seed in range(4)]
    fns = []
    for i, model in enumerate(models):
        mlxfn.export_function(tmp_path / f"m{i}.mlxfn", model, mx.ones((2, 64)))
        fns.append(mlxfn.import_function(tmp_path / f"m{i}.mlxfn"))
    x = mx.random.normal((2, 64))
    expected = [model(x) for model in models]
    mx.eval(x, expected)

    def work(i: int) -> None:
        for round_ in range(10):
            j = (i + round_) % 4
            assert mx.array_equal(fns[j](x)[0], expected[j]).item()

    assert run_threads(4, work) == []


def test_two_threads_export_two_files(tmp_path: Path) -> None:
    models = [make_model(seed) for seed in (7, 8)]

    def work(i: int) -> None:
        for round_ in range(5):
            mlxfn.export_function(tmp_path / f"t{i}.mlxfn", models[i], mx.ones((round_ + 1, 64)))

    assert run_threads(2, work) == []
    assert sorted(os.listdir(tmp_path)) == ["t0.mlxfn", "t1.mlxfn"]
    x = mx.ones((5, 64))
    for i in range(2):
        assert mx.array_equal(mlxfn.import_function(tmp_path / f"t{i}.mlxfn")(x)[0], models[i](x)).item()


def test_two_threads_export_shapeless_files_and_leave_the_process_as_it_was(tmp_path: Path) -> None:
    """Shapeless exports pause Python's collector and MLX's compilation for
    the whole process (mlxfn/_paused.py, trace.compile_paused): two at once on
    two threads each get their file right, and both are back on after the
    last one ends."""
    models = [make_model(seed) for seed in (21, 22)]

    def work(i: int) -> None:
        for round_ in range(3):
            mlxfn.export_function(tmp_path / f"s{i}.mlxfn", models[i], mx.ones((round_ + 2, 64)), shapeless=True)

    assert run_threads(2, work) == []
    assert gc.isenabled() and compile_enabled()
    for i in range(2):
        fn = mlxfn.import_function(tmp_path / f"s{i}.mlxfn")
        for rows in (1, 7, 300):
            x = mx.random.normal((rows, 64), key=mx.random.key(rows))
            assert mx.allclose(fn(x)[0], models[i](x)).item()


def test_imports_racing_exports_of_the_same_file(tmp_path: Path) -> None:
    """One thread keeps replacing the file with one of two models while
    others import and call it: each import sees one complete model."""
    models = [make_model(seed) for seed in (11, 12)]
    path = tmp_path / "race.mlxfn"
    mlxfn.export_function(path, models[0], mx.ones((2, 64)))
    x = mx.random.normal((2, 64))
    expected = [model(x) for model in models]
    mx.eval(x, expected)
    seen = [0, 0]

    def work(i: int) -> None:
        if i == 0:
            for round_ in range(40):
                mlxfn.export_function(path, models[round_ % 2], mx.ones((2, 64)))
            return
        for _ in range(40):
            out = mlxfn.import_function(path, verify=True)(x)[0]
            match = [mx.array_equal(out, e).item() for e in expected]
            assert any(match), "an import saw neither model"
            seen[match.index(True)] += 1

    assert run_threads(3, work) == []
    assert sum(seen) == 80
    assert sorted(os.listdir(tmp_path)) == ["race.mlxfn"]
