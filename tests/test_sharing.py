"""Imports share one copy of equal weights in a process (MLX loads them twice)."""

from __future__ import annotations

import gc
from pathlib import Path

import mlx.core as mx

import mlxfn

WEIGHT = mx.random.normal((1024, 1024), key=mx.random.key(0))  # 4 MiB
mx.eval(WEIGHT)
X = mx.ones((1, 1024))


def active_after(fn) -> int:
    gc.collect()
    before = mx.get_active_memory()
    mx.eval(fn(X))
    return mx.get_active_memory() - before


def test_two_imports_of_one_file_and_two_files_share_weights(tmp_path: Path):
    a, b = tmp_path / "a.mlxfn", tmp_path / "b.mlxfn"
    mlxfn.export_function(a, lambda x: x @ WEIGHT, X)
    mlxfn.export_function(b, lambda x: (x @ WEIGHT) * 2, X)  # same weight, other graph
    first = mlxfn.import_function(a)
    assert active_after(first) >= WEIGHT.nbytes  # the first import loads it
    again = mlxfn.import_function(a)
    other = mlxfn.import_function(b)
    assert active_after(again) < WEIGHT.nbytes // 4  # shares it
    assert active_after(other) < WEIGHT.nbytes // 4
    assert mx.array_equal(other(X)[0], first(X)[0] * 2).item()


def test_shared_weights_are_freed_with_the_last_import(tmp_path: Path):
    path = tmp_path / "a.mlxfn"
    mlxfn.export_function(path, lambda x: x @ (WEIGHT + 1), X)
    gc.collect()
    baseline = mx.get_active_memory()
    fns = [mlxfn.import_function(path) for _ in range(3)]
    for fn in fns:
        mx.eval(fn(X))
    del fns, fn
    gc.collect()
    mx.clear_cache()
    assert mx.get_active_memory() - baseline < WEIGHT.nbytes // 4
