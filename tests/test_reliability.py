"""Concurrency, leaks, and files changed under an import."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn

# ----------------------------------------------------------------------------
# Concurrency.


def weights(seed: int) -> tuple[mx.array, mx.array]:
    key = mx.random.key(seed)
    w, b = mx.random.normal((64, 64), key=key), mx.random.normal((64,), key=mx.random.split(key)[0])
    mx.eval(w, b)
    return w, b


def make_model(seed: int):  # noqa: ANN201 - a closure over its weights
    w, b = weights(seed)
    return lambda x: mx.tanh(x @ w + b)


def run_threads(count: int, work) -> list[BaseException]:  # noqa: ANN001
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


def test_one_import_called_from_many_threads(tmp_path: Path) -> None:
    model = make_model(1)
    path = tmp_path / "m.mlxfn"
    mlxfn.export_function(path, model, mx.ones((4, 64)))
    fn = mlxfn.import_function(path)  # first call (constants, compile) happens in the threads
    inputs = [mx.random.normal((4, 64), key=mx.random.key(100 + i)) for i in range(8)]
    expected = [model(x) for x in inputs]
    mx.eval(inputs, expected)

    def work(i: int) -> None:
        for _ in range(20):
            assert mx.array_equal(fn(inputs[i])[0], expected[i]).item()

    assert run_threads(8, work) == []


def test_several_imports_alive_and_called_together(tmp_path: Path) -> None:
    models = [make_model(seed) for seed in range(4)]
    fns = []
    for i, model in enumerate(models):
        mlxfn.export_function(tmp_path / f"m{i}.mlxfn", model, mx.ones((2, 64)))
        fns.append(mlxfn.import_function(tmp_path / f"m{i}.mlxfn"))
    x = mx.random.normal((2, 64))
    expected = [model(x) for model in models]
    mx.eval(x, expected)  # MLX evaluates an array on the stream (thread) that made it

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
    x = mx.ones((5, 64))
    for i in range(2):
        assert mx.array_equal(mlxfn.import_function(tmp_path / f"t{i}.mlxfn")(x)[0], models[i](x)).item()


# ----------------------------------------------------------------------------
# Leaks.


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_repeated_export_and_import_do_not_grow(tmp_path: Path) -> None:
    w = mx.random.normal((512, 512))  # 1 MB: its own segment, mapped and copied
    mx.eval(w)
    path = tmp_path / "leak.mlxfn"
    x = mx.ones((2, 512))

    def round_trip(i: int) -> None:
        mlxfn.export_function(path, lambda a: a @ w + i, x)
        fn = mlxfn.import_function(path)
        fn(x)
        mx.eval(fn(x))  # the second call compiles

    for i in range(20):  # warm up allocator caches and compile caches
        round_trip(i % 4)
    gc.collect()
    mx.clear_cache()
    rss0, active0 = rss_mb(), mx.get_active_memory()
    for i in range(300):
        round_trip(i % 4)
    gc.collect()
    mx.clear_cache()
    assert mx.get_active_memory() - active0 < 2 * w.nbytes, "MLX memory grew"
    assert rss_mb() - rss0 < 40, f"RSS grew by {rss_mb() - rss0:.1f} MB over 300 rounds"
    assert not mapped(path), "the file is still mapped with no import alive"


def test_dropping_every_import_unmaps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "unmap.mlxfn"
    w = mx.random.normal((256, 256))
    mx.eval(w)
    mlxfn.export_function(path, lambda a: a @ w, mx.ones((1, 256)))
    a, b = mlxfn.import_function(path), mlxfn.import_function(path)
    mx.eval(a(mx.ones((1, 256))))
    assert mapped(path)
    del a
    gc.collect()
    assert mapped(path)  # b still holds it
    del b
    gc.collect()
    assert not mapped(path)


# ----------------------------------------------------------------------------
# The file changes on disk while an import is alive.


def test_deleted_or_replaced_file_keeps_serving_the_old_contents(tmp_path: Path) -> None:
    path = tmp_path / "live.mlxfn"
    old, new = make_model(1), make_model(2)
    x = mx.ones((3, 64))
    mlxfn.export_function(path, old, x)
    called = mlxfn.import_function(path)
    mx.eval(called(x))  # constants copied into MLX memory
    not_called = mlxfn.import_function(path)  # constants still only in the mapping

    # Replaced by a new export (written beside it and renamed over it).
    mlxfn.export_function(path, new, x)
    for fn in (called, not_called):
        assert mx.array_equal(fn(x)[0], old(x)).item()
    assert mx.array_equal(mlxfn.import_function(path)(x)[0], new(x)).item()

    # Deleted: the mapping keeps the inode alive.
    fresh = mlxfn.import_function(path)
    path.unlink()
    assert mx.array_equal(fresh(x)[0], new(x)).item()
    assert mx.array_equal(not_called(x)[0], old(x)).item()
    with pytest.raises(FileNotFoundError):
        mlxfn.import_function(path)


def test_in_place_overwrite_after_the_first_call_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "inplace.mlxfn"
    old = make_model(3)
    x = mx.ones((3, 64))
    mlxfn.export_function(path, old, x)
    fn = mlxfn.import_function(path)
    mx.eval(fn(x))  # every constant of the trace is now in MLX memory
    with open(path, "r+b") as f:  # what `cp other.mlxfn live.mlxfn` does: same inode
        f.truncate(0)
        f.write(b"\0" * 100)
    for _ in range(2):
        assert mx.array_equal(fn(x)[0], old(x)).item()
