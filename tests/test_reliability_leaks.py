"""Leaks: repeated export, import and call keep memory, file descriptors and
mappings flat; dropping the last import of a file unmaps it.

Imports share loaded constants through a process-wide cache of *weak*
references (``_SHARED`` and ``_VERIFIED`` in python/mlxfn/_import.py): an
entry lives exactly as long as some import holds the array, so once every
import of a file is gone its constants are freed and the cache forgets them.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn
from mlxfn import _import, _mlxfn

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc")

W = mx.random.normal((512, 512), key=mx.random.key(5))  # 1 MB: its own segment, mapped and copied
X = mx.ones((2, 512))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def mappings(path: Path) -> int:
    return sum(str(path) in line for line in Path("/proc/self/maps").read_text().splitlines())


def cached(path: Path) -> int:
    """Entries of the shared-constant caches holding one of the file's constants."""
    hashes = set(_mlxfn.File.open(str(path)).constant_hashes())
    return sum(key[0] in hashes for cache in (_import._SHARED, _import._VERIFIED) for key in list(cache.keys()))


def settle() -> None:
    gc.collect()
    mx.clear_cache()


def test_repeated_export_import_and_call_do_not_grow(tmp_path: Path) -> None:
    mx.eval(W)
    path = tmp_path / "leak.mlxfn"

    def round_trip(i: int) -> None:
        mlxfn.export_function(path, lambda a: a @ W + i, X)
        fn = mlxfn.import_function(path, verify=i % 2 == 1)
        fn(X)
        mx.eval(fn(X))  # the second call compiles

    for i in range(20):  # warm up allocator, compile and JIT caches
        round_trip(i % 4)
    settle()
    rss0, active0, fds0, objects0 = rss_mb(), mx.get_active_memory(), open_fds(), len(gc.get_objects())
    for i in range(300):
        round_trip(i % 4)
    settle()
    grew = {
        "MLX active bytes": mx.get_active_memory() - active0,
        "RSS MB": rss_mb() - rss0,
        "fds": open_fds() - fds0,
        "gc objects": len(gc.get_objects()) - objects0,
    }
    # 300 leaked copies of the weights would be 300 MB; a leaked import, one
    # fd (it holds its file open) and its mapping each.
    assert grew["MLX active bytes"] < 2 * W.nbytes, grew
    assert grew["RSS MB"] < 40, grew
    assert grew["fds"] <= 0, grew
    assert grew["gc objects"] < 300, grew
    assert mappings(path) == 0, "the file is still mapped with no import alive"
    assert cached(path) == 0


@pytest.mark.parametrize("load", ["copy", "map"])
def test_dropping_every_import_unmaps_the_file_and_frees_its_constants(tmp_path: Path, load: str) -> None:
    path = tmp_path / "unmap.mlxfn"
    w = mx.random.normal((256, 256))
    mx.eval(w)
    mlxfn.export_function(path, lambda a, w=w: a @ w, mx.ones((1, 256)))
    del w
    settle()
    fds0, active0 = open_fds(), mx.get_active_memory()
    # Each import maps the file once; a mapped load maps it once more for
    # the arrays made over it (the C++ bridge's mapping, without a descriptor).
    per_import = 2 if load == "map" else 1
    a, b = mlxfn.import_function(path, load=load), mlxfn.import_function(path, verify=True, load=load)
    mx.eval(a(mx.ones((1, 256))), b(mx.ones((1, 256))))
    # Mapped imports of one unchanged file share one set of arrays (one bridge
    # mapping); a verified copy is made apart and cached as verified too.
    assert mappings(path) == (3 if load == "map" else 2) and open_fds() == fds0 + 2
    assert cached(path) == (2 if load == "copy" else 1)
    del a
    settle()
    assert mappings(path) == per_import  # b still holds its file and the arrays' mapping
    assert cached(path) == (2 if load == "copy" else 1)
    del b
    settle()
    assert mappings(path) == 0 and open_fds() == fds0
    assert cached(path) == 0
    assert mx.get_active_memory() - active0 < 256 * 256 * 4 // 4
