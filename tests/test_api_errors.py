"""Arguments and paths the API refuses, and an exporter left open at exit.

As MLX where MLX has an answer (a directory is a RuntimeError naming the
path; an exporter never closed still writes its file); where mlxfn adds
arguments (``load=``, ``verify=``) that a file in MLX's format cannot honour,
a ValueError saying why rather than silence.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn

from conftest import assert_same

X = mx.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
W = mx.array([[1.0, -1.0], [0.5, 2.0], [3.0, 0.0]])


def fun(x: mx.array, w: mx.array) -> mx.array:
    return mx.tanh(x @ w) + 1


@pytest.fixture
def mlx_file(tmp_path: Path) -> Path:
    path = tmp_path / "theirs.mlxfn"
    mx.export_function(str(path), fun, X, w=W, metadata="from mlx")
    return path


@pytest.fixture
def our_file(tmp_path: Path) -> Path:
    path = tmp_path / "ours.mlxfn"
    mlxfn.export_function(path, fun, X, w=W)
    return path


# ----------------------------------------------------------------------------
# load= and verify=


@pytest.mark.parametrize("which", ["mlx_file", "our_file"])
@pytest.mark.parametrize("load", ["bogus", "MAP", ""])
def test_an_unknown_load_is_refused_for_every_file(request: pytest.FixtureRequest, which: str, load: str) -> None:
    path = request.getfixturevalue(which)
    with pytest.raises(ValueError, match="load must be one of 'auto', 'map', 'copy'"):
        mlxfn.import_function(path, load=load)


def test_a_file_in_mlx_format_cannot_be_mapped(mlx_file: Path) -> None:
    with pytest.raises(ValueError, match=r"load='map' is not possible .*MLX's format.*copies") as info:
        mlxfn.import_function(mlx_file, load="map")
    assert str(mlx_file) in str(info.value)


def test_a_file_in_mlx_format_cannot_be_verified(mlx_file: Path) -> None:
    with pytest.raises(ValueError, match="verify=True is not possible .*carry no hashes") as info:
        mlxfn.import_function(mlx_file, verify=True)
    assert str(mlx_file) in str(info.value)


@pytest.mark.parametrize("load", ["auto", "copy"])
def test_a_file_in_mlx_format_says_mlx_copies_it(mlx_file: Path, load: str) -> None:
    fn, metadata = mlxfn.import_function(mlx_file, return_metadata=True, load=load)
    assert metadata == "from mlx" == fn.metadata
    mode = fn.load_mode
    assert (mode.mode, mode.how) == ("copy", "mlx")
    assert "MLX's format" in mode.reason and "MLX itself" in mode.reason
    assert mode.describe() == f"copy ({mode.reason})"


def test_a_file_in_mlx_format_calls_exactly_as_mlx_import(mlx_file: Path) -> None:
    ours = mlxfn.import_function(mlx_file)
    theirs = mx.import_function(str(mlx_file))
    want = theirs(X, w=W)
    assert_same(ours(X, w=W), want)
    assert_same(ours((X,), {"w": W}), want)
    with pytest.raises(ValueError):
        ours(X, W)  # exported with w as a keyword: MLX's own error
    grad = mx.grad(lambda x: ours(x, w=W)[0].sum())(X)
    assert_same((grad,), (mx.grad(lambda x: theirs(x, w=W)[0].sum())(X),))
    assert_same((grad,), (mx.grad(lambda x: fun(x, W).sum())(X),))
    xs = mx.stack([X, X * 2])
    assert_same(mx.vmap(lambda x: ours(x, w=W))(xs), mx.vmap(lambda x: theirs(x, w=W))(xs))


# ----------------------------------------------------------------------------
# A directory where a file should be


def test_importing_a_directory_is_a_runtime_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        mx.import_function(str(tmp_path))  # what MLX raises
    with pytest.raises(RuntimeError, match="is a directory") as info:
        mlxfn.import_function(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_exporting_to_a_directory_is_a_runtime_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        mx.export_function(str(tmp_path), fun, X, W)  # what MLX raises
    with pytest.raises(RuntimeError):
        mx.exporter(str(tmp_path), fun)
    with pytest.raises(RuntimeError, match="is a directory") as info:
        mlxfn.export_function(tmp_path, fun, X, W)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(RuntimeError, match="is a directory"):
        mlxfn.exporter(tmp_path, fun)
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == [], "nothing written beside it either"


# ----------------------------------------------------------------------------
# An exporter never closed


LEFT_OPEN = textwrap.dedent(
    """
    import sys
    import mlx.core as mx
    import mlxfn

    w = mx.array([[1.0, -1.0], [0.5, 2.0], [3.0, 0.0]])
    e = mlxfn.exporter(sys.argv[1], lambda x: mx.tanh(x @ w) + 1, metadata="left open")
    e(mx.ones((2, 3)))
    e(mx.ones((5, 3)))
    print("exiting")
    """
)


def test_an_exporter_left_open_writes_the_whole_file_at_exit(tmp_path: Path) -> None:
    """A script that never closes its exporter (as MLX's, whose exporter
    writes as it goes) finds the complete file after it exits."""
    path = tmp_path / "left-open.mlxfn"
    run = subprocess.run([sys.executable, "-c", LEFT_OPEN, str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "exiting" in run.stdout, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr[-2000:]
    fn, metadata = mlxfn.import_function(path, return_metadata=True)
    assert metadata == "left open"
    for rows in (2, 5):
        x = mx.ones((rows, 3))
        assert_same(fn(x), (mx.tanh(x @ W) + 1,))
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "a temporary was left beside it"
