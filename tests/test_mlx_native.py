"""mlxfn.import_function hands files written by MLX's own exporter to MLX."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

import mlxfn

from conftest import assert_same


def test_imports_mlx_own_files(tmp_path: Path):
    fun = lambda x, y: (x @ y, x + 1)  # noqa: E731
    x, y = mx.ones((2, 3)), mx.ones((3, 4))
    path = tmp_path / "theirs.mlxfn"
    mx.export_function(str(path), fun, x, y=y, metadata="from mlx")
    fn, meta = mlxfn.import_function(path, return_metadata=True)
    assert meta == "from mlx"
    assert_same(fn(x, y=y), fun(x, y))
    assert_same(fn((x,), {"y": y}), fun(x, y))
