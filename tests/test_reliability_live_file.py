"""The file of a live import is replaced, deleted or rewritten on disk.

``import_function`` maps the file and decodes its graph; a trace's first call
copies that trace's constants from the mapping into MLX memory, and nothing
reads the mapping after that.  The mapping holds the inode it was made from:

- replaced by rename (what mlxfn's writer does) or deleted: the import keeps
  serving the old contents, before and after its first call;
- rewritten in place (same inode: ``cp``, truncation) after every trace's
  first call: nothing left reads it, the import is unaffected;
- rewritten in place before a trace's first call: that call raises
  ``FormatError`` ("changed on disk") instead of computing with the new
  bytes or dying of SIGBUS past a shortened end (``File.check_unchanged``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

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


def test_replaced_or_deleted_file_keeps_serving_the_old_contents(tmp_path: Path) -> None:
    path = tmp_path / "live.mlxfn"
    old, new = make_model(1), make_model(2)
    mlxfn.export_function(path, old, X)
    called = mlxfn.import_function(path)
    assert same(called, old)  # constants copied into MLX memory
    not_called = mlxfn.import_function(path)  # constants still only in the mapping

    # Replaced by a new export (written beside it and renamed over it).
    mlxfn.export_function(path, new, X)
    assert same(called, old) and same(not_called, old)
    assert same(mlxfn.import_function(path), new)

    # Deleted: the mapping keeps the inode alive.
    fresh, fresh_not_called = mlxfn.import_function(path), mlxfn.import_function(path)
    assert same(fresh, new)
    path.unlink()
    assert same(fresh, new) and same(fresh_not_called, new)
    with pytest.raises(FileNotFoundError):
        mlxfn.import_function(path)


def test_in_place_rewrite_after_the_first_call_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "inplace.mlxfn"
    old = make_model(3)
    mlxfn.export_function(path, old, X)
    age(path)
    fn = mlxfn.import_function(path)
    assert same(fn, old)  # every constant of the only trace is now in MLX memory
    with open(path, "r+b") as f:  # what `cp other.mlxfn inplace.mlxfn` does: same inode
        f.truncate(0)
        f.write(b"\0" * 100)
    for _ in range(2):  # the plain replay, then the compiled one
        assert same(fn, old)


def test_in_place_rewrite_before_the_first_call_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "inplace.mlxfn"
    other = tmp_path / "other.mlxfn"
    old, new = make_model(4), make_model(5)
    mlxfn.export_function(path, old, X)
    mlxfn.export_function(other, new, X)
    assert path.stat().st_size == other.stat().st_size  # same layout, other weights
    age(path)
    fn = mlxfn.import_function(path)
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
    path = sys.argv[1]
    w = mx.random.normal((256, 256))
    mx.eval(w)
    mlxfn.export_function(path, lambda x: x @ w, mx.ones((1, 256)))
    fn = mlxfn.import_function(path)
    os.truncate(path, 20000)
    try:
        fn(mx.ones((1, 256)))
    except mlxfn.FormatError as err:
        print(err)
    """
)


def test_in_place_truncation_before_the_first_call_is_an_error_not_sigbus(tmp_path: Path) -> None:
    path = tmp_path / "cut.mlxfn"
    child = subprocess.run([sys.executable, "-c", TRUNCATED, str(path)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, f"the process died ({child.returncode}): {child.stderr[-2000:]}"
    assert f"{path}: the file changed on disk after it was imported (its size went from" in child.stdout
    assert "to 20000 bytes); import it again" in child.stdout
