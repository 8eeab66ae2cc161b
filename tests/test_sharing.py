"""Imports share one copy of equal weights in a process (MLX loads them twice).

Copied weights are counted by MLX (``mx.get_active_memory``); mapped ones
are the file's pages, which MLX does not count: there, sharing shows as no
second mapping of the file's constants in ``/proc/self/maps``.
"""

from __future__ import annotations

import gc
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn

WEIGHT = mx.random.normal((1024, 1024), key=mx.random.key(0))  # 4 MiB
mx.eval(WEIGHT)
X = mx.ones((1, 1024))


def active_after(fn) -> int:
    gc.collect()
    before = mx.get_active_memory()
    mx.eval(fn(X))
    return mx.get_active_memory() - before


def mappings(path: Path) -> int:
    """Mappings of the file: one per import (its graph) and one per C++ bridge mapping."""
    return sum(str(path) in line for line in Path("/proc/self/maps").read_text().splitlines())


def test_two_imports_of_one_file_and_two_files_share_copied_weights(tmp_path: Path):
    a, b = tmp_path / "a.mlxfn", tmp_path / "b.mlxfn"
    mlxfn.export_function(a, lambda x: x @ WEIGHT, X)
    mlxfn.export_function(b, lambda x: (x @ WEIGHT) * 2, X)  # same weight, other graph
    first = mlxfn.import_function(a, load="copy")
    assert active_after(first) >= WEIGHT.nbytes  # the first import loads it
    again = mlxfn.import_function(a, load="copy")
    other = mlxfn.import_function(b, load="copy")
    assert active_after(again) < WEIGHT.nbytes // 4  # shares it
    assert active_after(other) < WEIGHT.nbytes // 4
    assert mx.array_equal(other(X)[0], first(X)[0] * 2).item()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc")
def test_two_imports_of_one_file_and_two_files_share_mapped_weights(tmp_path: Path):
    a, b = tmp_path / "a.mlxfn", tmp_path / "b.mlxfn"
    mlxfn.export_function(a, lambda x: x @ WEIGHT, X)
    mlxfn.export_function(b, lambda x: mx.tanh(x @ WEIGHT), X)  # no constant of its own
    gc.collect()
    before = mx.get_active_memory()
    first = mlxfn.import_function(a, load="map")
    assert first.load_mode.mode == "map"
    mx.eval(first(X))
    assert mappings(a) == 2  # the import's own and the mapping its weight lives in
    assert mx.get_active_memory() - before < WEIGHT.nbytes // 4, "MLX does not count mapped arrays"
    again, other = mlxfn.import_function(a, load="map"), mlxfn.import_function(b, load="map")
    mx.eval(again(X), other(X))
    assert mappings(a) == 3 and mappings(b) == 1, "the weight was mapped again"
    assert mx.array_equal(other(X)[0], mx.tanh(first(X)[0])).item()


@pytest.mark.parametrize("load", ["copy", "map"])
def test_shared_weights_are_freed_with_the_last_import(tmp_path: Path, load: str):
    path = tmp_path / "a.mlxfn"
    mlxfn.export_function(path, lambda x: x @ (WEIGHT + 1), X)
    gc.collect()
    baseline = mx.get_active_memory()
    fns = [mlxfn.import_function(path, load=load) for _ in range(3)]
    for fn in fns:
        mx.eval(fn(X))
    del fns, fn
    gc.collect()
    mx.clear_cache()
    assert mx.get_active_memory() - baseline < WEIGHT.nbytes // 4
    if Path("/proc/self/maps").exists():
        assert mappings(path) == 0, "a mapping outlived every import"
