"""Imports share loaded weights only where no one can tell (python/mlxfn/_import.py).

- mapped imports of the same unchanged file share arrays over its pages;
- copying imports of the same unchanged file share copies;
- copying imports whose files were verified (``verify=True``) share copies
  of equal hashes, across files;
- nothing else: a copying import never computes on a mapping (of its file or
  of an identical one), a damaged file never feeds an intact one, a file
  rewritten in place is a new file.

Copied weights are counted by MLX (``mx.get_active_memory``); mapped ones
are the file's pages, which MLX does not count: there, sharing shows as no
second mapping of the file's constants in ``/proc/self/maps``.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn
from mlxfn import _mlxfn
from mlxfn._native import mapping

WEIGHT = mx.random.normal((1024, 1024), key=mx.random.key(0))  # 4 MiB: its own aligned segment
OTHER = mx.random.normal((1024, 1024), key=mx.random.key(1))
mx.eval(WEIGHT, OTHER)
X = mx.ones((1, 1024))

needs_mapping = pytest.mark.skipif(mapping()[0] is None, reason="no mapping here: " + mapping()[1])
needs_proc = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc")


def active_after(fn) -> int:  # noqa: ANN001
    gc.collect()
    before = mx.get_active_memory()
    mx.eval(fn(X))
    return mx.get_active_memory() - before


def mappings(path: Path) -> int:
    """Mappings of the file: one per import (its graph) and one per C++ bridge mapping."""
    return sum(str(path) in line for line in Path("/proc/self/maps").read_text().splitlines())


def weight_of(fn) -> mx.array:  # noqa: ANN001
    """The array an import computes with for the weight (its one large constant)."""
    (arr,) = (a for a in fn._constants.values() if a.size == WEIGHT.size)
    return arr


def flip_weight_byte(path: Path) -> None:
    """Flip the exponent of the weight's first element, in place (the stored hash stays)."""
    (offset,) = _mlxfn.File.open(str(path)).constant_offsets()
    with open(path, "r+b") as f:
        f.seek(offset + 3)
        byte = f.read(1)[0]
        f.seek(offset + 3)
        f.write(bytes([byte ^ 0x01]))  # exponent: the value times or over 4


def age(path: Path) -> None:
    """Date the file in the past, so that a rewrite changes its modification time."""
    os.utime(path, (1_000_000_000, 1_000_000_000))


def same(out: tuple[mx.array, ...], want: mx.array) -> bool:
    return bool(mx.array_equal(out[0], want).item())


def test_copying_imports_of_one_file_share_and_of_another_file_do_not(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mlxfn", tmp_path / "b.mlxfn"
    mlxfn.export_function(a, lambda x: x @ WEIGHT, X)
    mlxfn.export_function(b, lambda x: (x @ WEIGHT) * 2, X)  # same weight, other file
    first = mlxfn.import_function(a, load="copy")
    assert active_after(first) >= WEIGHT.nbytes  # the first import loads it
    again = mlxfn.import_function(a, load="copy")
    assert active_after(again) < WEIGHT.nbytes // 4  # shares it
    assert weight_of(again) is weight_of(first)
    other = mlxfn.import_function(b, load="copy")
    assert active_after(other) >= WEIGHT.nbytes  # unverified: another file's bytes are its own
    assert weight_of(other) is not weight_of(first)
    assert same(other(X), first(X)[0] * 2)


def test_verified_copies_are_shared_across_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mlxfn", tmp_path / "b.mlxfn"
    mlxfn.export_function(a, lambda x: x @ WEIGHT, X)
    mlxfn.export_function(b, lambda x: (x @ WEIGHT) * 2, X)
    first = mlxfn.import_function(a, load="copy", verify=True)
    assert active_after(first) >= WEIGHT.nbytes
    other = mlxfn.import_function(b, load="copy", verify=True)
    assert active_after(other) < WEIGHT.nbytes // 4
    assert weight_of(other) is weight_of(first)
    assert same(other(X), first(X)[0] * 2)
    # An unverified import of a verified file takes the same bytes (its own
    # file's); one of a file no verified import read does not.
    unverified_a = mlxfn.import_function(a, load="copy")
    c = tmp_path / "c.mlxfn"
    shutil.copyfile(b, c)
    unverified_c = mlxfn.import_function(c, load="copy")
    mx.eval(unverified_a(X), unverified_c(X))
    assert weight_of(unverified_a) is weight_of(first)
    assert weight_of(unverified_c) is not weight_of(first)


@needs_mapping
@needs_proc
def test_mapped_imports_of_one_file_share_and_of_another_file_do_not(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mlxfn", tmp_path / "b.mlxfn"
    mlxfn.export_function(a, lambda x: x @ WEIGHT, X)
    mlxfn.export_function(b, lambda x: mx.tanh(x @ WEIGHT), X)  # same weight, other file
    gc.collect()
    before = mx.get_active_memory()
    first = mlxfn.import_function(a, load="map")
    assert first.load_mode.mode == "map"
    mx.eval(first(X))
    assert mappings(a) == 2  # the import's own and the mapping its weight lives in
    assert mx.get_active_memory() - before < WEIGHT.nbytes // 4, "MLX does not count mapped arrays"
    again = mlxfn.import_function(a, load="map")
    mx.eval(again(X))
    assert mappings(a) == 3, "the weight was mapped again"
    assert weight_of(again) is weight_of(first)
    other = mlxfn.import_function(b, load="map")
    mx.eval(other(X))
    assert mappings(b) == 2, "another file computes on its own pages"
    assert weight_of(other) is not weight_of(first)
    assert same(other(X), mx.tanh(first(X)[0]))


@needs_mapping
@pytest.mark.parametrize("verify", [False, True])
def test_a_copying_import_never_computes_on_the_pages_of_an_identical_mapped_file(tmp_path: Path, verify: bool) -> None:
    a, b, new = tmp_path / "a.mlxfn", tmp_path / "b.mlxfn", tmp_path / "new.mlxfn"
    mlxfn.export_function(a, lambda x: x @ WEIGHT, X)
    mlxfn.export_function(new, lambda x: x @ OTHER, X)  # same size, other weight
    shutil.copyfile(a, b)
    mapped = mlxfn.import_function(a, load="map", verify=verify)
    assert same(mapped(X), X @ WEIGHT)
    copied = mlxfn.import_function(b, load="copy", verify=verify)
    assert same(copied(X), X @ WEIGHT)
    assert weight_of(copied) is not weight_of(mapped)
    assert a.stat().st_size == new.stat().st_size
    with open(a, "r+b") as f:  # rewritten in place: the mapped pages change
        f.write(new.read_bytes())
    assert same(mapped(X), X @ OTHER), "the mapped import no longer reads a's pages: the test proves nothing"
    assert same(copied(X), X @ WEIGHT)
    assert same(mlxfn.import_function(b, load="copy", verify=verify)(X), X @ WEIGHT)


TRUNCATE_THE_MAPPED_TWIN = textwrap.dedent(
    """
    import os, shutil, sys
    import mlx.core as mx
    import mlxfn

    a, b = sys.argv[1], sys.argv[2]
    w = mx.random.normal((1024, 1024), key=mx.random.key(0))
    x = mx.ones((1, 1024))
    mlxfn.export_function(a, lambda x: x @ w, x)
    shutil.copyfile(a, b)
    mapped = mlxfn.import_function(a, load="map")
    mx.eval(mapped(x))
    copied = mlxfn.import_function(b, load="copy")
    mx.eval(copied(x))
    os.truncate(a, 0)  # the mapped import would die of SIGBUS now: it is not called again
    del mapped
    assert mx.array_equal(copied(x)[0], x @ w).item()
    assert mx.array_equal(mlxfn.import_function(b, load="copy")(x)[0], x @ w).item()
    print("survived")
    """
)


@needs_mapping
def test_truncating_a_mapped_file_never_kills_a_copying_import_of_its_twin(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", TRUNCATE_THE_MAPPED_TWIN, str(tmp_path / "a.mlxfn"), str(tmp_path / "b.mlxfn")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0 and "survived" in run.stdout, (run.returncode, run.stderr[-2000:])


@pytest.mark.parametrize("load", ["copy", "map"])
def test_a_damaged_copy_imported_without_verify_never_feeds_the_intact_file(tmp_path: Path, load: str) -> None:
    if load == "map" and mapping()[0] is None:
        pytest.skip("no mapping here")
    intact, damaged = tmp_path / "intact.mlxfn", tmp_path / "damaged.mlxfn"
    mlxfn.export_function(intact, lambda x: x @ WEIGHT, X)
    shutil.copyfile(intact, damaged)
    flip_weight_byte(damaged)
    gc.collect()
    bad = mlxfn.import_function(damaged, load=load)
    wrong = bad(X)[0]
    assert not mx.array_equal(wrong, X @ WEIGHT).item()
    for good in (mlxfn.import_function(intact, load=load), mlxfn.import_function(intact, load=load, verify=True)):
        assert same(good(X), X @ WEIGHT)
        assert weight_of(good) is not weight_of(bad)
    with pytest.raises(mlxfn.IntegrityError):
        mlxfn.import_function(damaged, load=load, verify=True)
    assert mx.array_equal(bad(X)[0], wrong).item()  # the damaged import keeps its own bytes


def test_a_file_rewritten_in_place_is_a_new_file(tmp_path: Path) -> None:
    """Same path, same inode, same size, same stored hash: the new bytes are
    what a new import computes with, as it would alone."""
    path = tmp_path / "a.mlxfn"
    mlxfn.export_function(path, lambda x: x @ WEIGHT, X)
    age(path)
    before = mlxfn.import_function(path, load="copy")
    assert same(before(X), X @ WEIGHT)
    flip_weight_byte(path)
    after = mlxfn.import_function(path, load="copy")
    assert not mx.array_equal(after(X)[0], X @ WEIGHT).item()
    assert weight_of(after) is not weight_of(before)
    assert same(before(X), X @ WEIGHT)


def test_a_shared_import_still_refuses_a_file_rewritten_before_its_first_call(tmp_path: Path) -> None:
    """An import that would share every array still refuses, at its first
    call, a file rewritten in place since it was imported: as it would alone."""
    path = tmp_path / "a.mlxfn"
    mlxfn.export_function(path, lambda x: x @ WEIGHT, X)
    age(path)
    first = mlxfn.import_function(path, load="copy")
    mx.eval(first(X))
    second = mlxfn.import_function(path, load="copy")
    flip_weight_byte(path)
    with pytest.raises(mlxfn.FormatError, match="changed on disk"):
        second(X)
    assert same(first(X), X @ WEIGHT)


@pytest.mark.parametrize("load", ["copy", "map"])
def test_shared_weights_are_freed_with_the_last_import(tmp_path: Path, load: str) -> None:
    if load == "map" and mapping()[0] is None:
        pytest.skip("no mapping here")
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
