"""The file of a live import is replaced, deleted or rewritten on disk.

``import_function`` maps the file and decodes its graph; a trace's first call
makes that trace's constants into arrays: over the mapping (``load="map"``,
the default where MLX can run on it) or copied out of it (``load="copy"``).
A mapping holds the inode it was made from:

- replaced by rename (what mlxfn's writer does) or deleted: the import keeps
  serving the old contents, before and after its first call, in both modes;
- rewritten in place (same inode: ``cp``, truncation) before a trace's first
  call: that call raises ``FormatError`` ("changed on disk") instead of
  computing with the new bytes or dying of SIGBUS past a shortened end
  (``File.check_unchanged``), in both modes;
- rewritten in place after the first call: a copying import no longer reads
  the file and is unaffected; a mapping import computes with the new bytes,
  and dies of SIGBUS if the file was cut short under it, as any mmap-based
  loader (llama.cpp, safetensors).  Replace files by rename, or import them
  with ``load="copy"``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn
from mlxfn.errors import FormatError

X = mx.ones((3, 64))


def make_model(seed: int) -> Callable[[mx.array], mx.array]:
    key = mx.random.key(seed)
    w, b = mx.random.normal((64, 64), key=key), mx.random.normal((64,), key=mx.random.split(key)[0])
    mx.eval(w, b)
    return lambda x: mx.tanh(x @ w + b)


def same(fn, model) -> bool:  # noqa: ANN001
    return mx.array_equal(fn(X)[0], model(X)).item()


def age(path: Path) -> None:
    """Date the file in the past: a rewrite within the clock tick of the
    export would otherwise keep the same modification time."""
    os.utime(path, (1_000_000_000, 1_000_000_000))


@pytest.mark.parametrize("load", ["copy", "map"])
def test_replaced_or_deleted_file_keeps_serving_the_old_contents(tmp_path: Path, load: str) -> None:
    path = tmp_path / "live.mlxfn"
    old, new = make_model(1), make_model(2)
    mlxfn.export_function(path, old, X)
    called = mlxfn.import_function(path, load=load)
    assert same(called, old)  # constants made into arrays
    not_called = mlxfn.import_function(path, load=load)  # constants still only in the file

    # Replaced by a new export (written beside it and renamed over it).
    mlxfn.export_function(path, new, X)
    assert same(called, old) and same(not_called, old)
    assert same(mlxfn.import_function(path, load=load), new)

    # Deleted: the mapping keeps the inode alive.
    fresh, fresh_not_called = mlxfn.import_function(path, load=load), mlxfn.import_function(path, load=load)
    assert same(fresh, new)
    path.unlink()
    assert same(fresh, new) and same(fresh_not_called, new)
    with pytest.raises(FileNotFoundError):
        mlxfn.import_function(path)


def test_in_place_rewrite_after_the_first_call_is_harmless_to_a_copying_import(tmp_path: Path) -> None:
    path = tmp_path / "inplace.mlxfn"
    old = make_model(3)
    mlxfn.export_function(path, old, X)
    age(path)
    fn = mlxfn.import_function(path, load="copy")
    assert same(fn, old)  # every constant of the only trace is now in MLX memory
    with open(path, "r+b") as f:  # what `cp other.mlxfn inplace.mlxfn` does: same inode
        f.truncate(0)
        f.write(b"\0" * 100)
    for _ in range(2):  # the plain replay, then the compiled one
        assert same(fn, old)


def test_a_mapping_import_computes_with_bytes_rewritten_in_place(tmp_path: Path) -> None:
    path, other = tmp_path / "inplace.mlxfn", tmp_path / "other.mlxfn"
    old, new = make_model(6), make_model(7)
    mlxfn.export_function(path, old, X)
    mlxfn.export_function(other, new, X)
    assert path.stat().st_size == other.stat().st_size  # same layout, other weights
    fn = mlxfn.import_function(path, load="map")
    assert same(fn, old)  # the arrays are the file's pages now
    with open(path, "r+b") as f:
        f.write(other.read_bytes())
    assert same(fn, new), "the documented limit of a mapping import changed: update README and FORMAT.md"


@pytest.mark.parametrize("load", ["copy", "map"])
def test_in_place_rewrite_before_the_first_call_is_refused(tmp_path: Path, load: str) -> None:
    path = tmp_path / "inplace.mlxfn"
    other = tmp_path / "other.mlxfn"
    old, new = make_model(4), make_model(5)
    mlxfn.export_function(path, old, X)
    mlxfn.export_function(other, new, X)
    assert path.stat().st_size == other.stat().st_size  # same layout, other weights
    age(path)
    fn = mlxfn.import_function(path, load=load)
    with open(path, "r+b") as f:  # same size, same inode, new bytes
        f.write(other.read_bytes())
    with pytest.raises(FormatError) as info:
        fn(X)
    assert str(path) in str(info.value) and "changed on disk after it was imported" in str(info.value)
    assert same(mlxfn.import_function(path), new)  # importing it again is the remedy


# Truncated in place before the first call: reading the mapping past the new
# end would be SIGBUS, so this runs in a child and must end with the error.
TRUNCATED = textwrap.dedent(
    """
    import os, sys
    import mlx.core as mx
    import mlxfn
    path, load = sys.argv[1], sys.argv[2]
    w = mx.random.normal((256, 256))
    mx.eval(w)
    mlxfn.export_function(path, lambda x: x @ w, mx.ones((1, 256)))
    fn = mlxfn.import_function(path, load=load)
    os.truncate(path, 20000)
    try:
        fn(mx.ones((1, 256)))
    except mlxfn.FormatError as err:
        print(err)
    """
)


@pytest.mark.parametrize("load", ["copy", "map"])
def test_in_place_truncation_before_the_first_call_is_an_error_not_sigbus(tmp_path: Path, load: str) -> None:
    path = tmp_path / "cut.mlxfn"
    child = subprocess.run(
        [sys.executable, "-c", TRUNCATED, str(path), load], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, f"the process died ({child.returncode}): {child.stderr[-2000:]}"
    assert f"{path}: the file changed on disk after it was imported (its size went from" in child.stdout
    assert "to 20000 bytes); import it again" in child.stdout


# Truncated in place after the first call: the limit of a mapping import
# (README, "Replacing a file that is in use"), next to the remedy.
TRUNCATED_AFTER = textwrap.dedent(
    """
    import os, sys
    import mlx.core as mx
    import mlxfn
    path, load = sys.argv[1], sys.argv[2]
    w = mx.random.normal((1024, 1024))
    mx.eval(w)
    mlxfn.export_function(path, lambda x: x @ w, mx.ones((1, 1024)))
    fn = mlxfn.import_function(path, load=load)
    mx.eval(fn(mx.ones((1, 1024))))
    os.truncate(path, 0)
    mx.eval(fn(mx.ones((1, 1024))))
    print("survived")
    """
)


def test_truncation_after_the_first_call_kills_a_mapping_import_not_a_copying_one(tmp_path: Path) -> None:
    runs = {}
    for load in ("copy", "map"):
        path = tmp_path / f"cut-{load}.mlxfn"
        runs[load] = subprocess.run(
            [sys.executable, "-c", TRUNCATED_AFTER, str(path), load], capture_output=True, text=True, timeout=120
        )
    assert runs["copy"].returncode == 0 and "survived" in runs["copy"].stdout, runs["copy"].stderr[-2000:]
    assert runs["map"].returncode == -signal.SIGBUS, "the documented limit of a mapping import changed"
