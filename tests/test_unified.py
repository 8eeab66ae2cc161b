"""The unified-memory route (Apple silicon), checked by reading what mlxfn hands MLX.

No Mac here: ``mx.asarray(copy=False)`` is replaced by a stand-in that records
the buffer MLX would adopt and copies it.  What is checked is mlxfn's side of
Metal's no-copy contract (``newBufferWithBytesNoCopy``: a page-aligned start,
whole pages): every large constant is offered as its own whole 16 KiB pages,
and the array is a view of their first bytes with the constant's values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

import mlxfn
from mlxfn import _load, _mlxfn, _native

PAGE = _mlxfn.SEGMENT_ALIGNMENT


def test_every_large_constant_is_adopted_as_whole_pages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Large constants (>= 1 MiB) of lengths that are not whole pages, one bfloat16; one small.
    ws = [
        mx.random.normal((515, 513), key=mx.random.key(1)),
        mx.random.normal((1100, 513), key=mx.random.key(2)).astype(mx.bfloat16),
        mx.arange(5, dtype=mx.float32),
    ]
    mx.eval(ws)
    path = tmp_path / "u.mlxfn"
    mlxfn.export_function(path, lambda x: [x + w.sum() for w in ws], mx.ones((2,)))
    adopted: list[tuple[int, int]] = []
    real_asarray = mx.asarray

    def metal_asarray(host: Any, copy: bool = True) -> mx.array:
        assert copy is False
        adopted.append((host.ctypes.data, host.nbytes))
        return real_asarray(np.array(host))  # a copy stands in for the adoption

    monkeypatch.setattr(mx, "asarray", metal_asarray)
    monkeypatch.setattr(_native, "mapping", lambda: ("unified", ""))
    fn = mlxfn.import_function(path)
    assert fn.load_mode == _load.LoadMode("map", "unified", "")
    outs = fn(mx.ones((2,)))
    for out, w in zip(outs, ws):
        assert mx.array_equal(out, mx.ones((2,)) + w.sum()).item()
    assert len(adopted) == 2  # the two large constants; the small one is copied
    for start, length in adopted:
        assert start % PAGE == 0 and length % PAGE == 0, (start, length)


def test_adopted_arrays_view_the_region_with_the_constants_dtype_and_shape(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_asarray = mx.asarray
    monkeypatch.setattr(mx, "asarray", lambda host, copy=True: real_asarray(np.array(host)))
    w = mx.random.normal((600, 1001), key=mx.random.key(3)).astype(mx.bfloat16)  # 1,201,200 bytes
    mx.eval(w)
    path = tmp_path / "b.mlxfn"
    mlxfn.export_function(path, lambda x: x * w, mx.ones((600, 1001), mx.bfloat16))
    f = _mlxfn.File.open(str(path))
    (index,) = [i for i, (_, _, n) in enumerate(f.constant_infos()) if n == w.nbytes]
    pages = f.constant_pages(index)
    assert pages is not None and len(pages) == -(-w.nbytes // PAGE) * PAGE
    view = memoryview(pages)
    assert bytes(view[: w.nbytes]) == bytes(memoryview(f.constant(index)))
    assert set(bytes(view[w.nbytes :])) <= {0}  # the last constant: zero padding to the page end
    arr = _load._adopt(f, index, (600, 1001), mx.bfloat16)
    assert arr is not None and arr.dtype == mx.bfloat16 and arr.shape == (600, 1001)
    assert mx.array_equal(arr, w).item()
