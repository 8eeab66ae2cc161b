"""The Rust binding alone: graphs and buffers in, the same graphs and bytes out."""

from __future__ import annotations

import gc
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlxfn import _mlxfn, errors
from mlxfn._dtypes import DTYPE_TABLE
from mlxfn.errors import ExportError, FormatError

# Every kind of state MLX's callback reports, CustomKernel's included: a list
# of (bool, bool, bool) tuples and a list of mixed bool/int/float scalars.
ARGS = [
    None,
    True,
    -3,
    2**62,
    1.5e-300,
    float("inf"),
    "void kernel() {}",
    mx.bfloat16,
    (4, -1, 2),
    [0, 1],
    [],
    [(True, False, True), (False, False, False)],
    [True, 7, 0.25],
    (),
]


def graph(nodes):
    return {
        "mlx_version": "0.32.4",
        "metadata": "m",
        "shapeless": False,
        "traces": [
            {
                "keyword_names": ["k"],
                "inputs": [((2, 3), mx.float32), ((), mx.int32)],
                "constants": [0, 1],
                "nodes": nodes,
                "outputs": [4, 0] if nodes else [3, 0],
                "dims": [],
                "constant_exprs": [],
            }
        ],
    }


def test_arguments_round_trip_with_their_types(tmp_path: Path):
    path = str(tmp_path / "g.mlxfn")
    nodes = [("CustomKernel", ARGS, [0, 2, 3], [((2, 3), mx.float32)], [])]
    consts = [((2,), mx.float16, b"\x00\x3c\x00\x40"), ((0, 5), mx.complex64, b"")]
    summary = _mlxfn.write_file(path, graph(nodes), consts)
    assert summary["constant_count"] == 2
    f = _mlxfn.File.open(path)
    (trace,) = f.traces()
    op, args, inputs, outputs, exprs = trace["nodes"][0]
    assert (op, inputs, outputs, exprs) == ("CustomKernel", [0, 2, 3], [((2, 3), mx.float32)], [])
    assert len(args) == len(ARGS)
    for got, want in zip(args, ARGS):
        assert got == want and type(got) is type(want), (got, want)
    assert f.constant_infos() == [((2,), mx.float16, 4), ((0, 5), mx.complex64, 0)]
    assert bytes(f.constant(0)) == b"\x00\x3c\x00\x40" and len(f.constant(1)) == 0


def test_a_dynamic_trace_round_trips(tmp_path: Path):
    """Sizes, expressions in arguments, output sizes and constant values."""
    path = str(tmp_path / "d.mlxfn")
    length = {"constant": (0, 1), "terms": [((1, 1), [0])], "integer": True}  # d0
    half = {"constant": (1, 2), "terms": [((1, 2), [0]), ((3, 1), [0, 0])], "integer": False}
    node = ("Reshape", [(1, length, -1), half], [0], [((1, 2, 3), mx.float32)], [(0, 1, length)])
    g = graph([node])
    g["traces"][0]["inputs"] = [((2, 3), mx.float32), ((), mx.int32)]
    g["traces"][0]["dims"] = [([(0, 0)], 1, 4096)]
    g["traces"][0]["constant_exprs"] = [(0, length)]
    consts = [((), mx.int32, b"\x02\x00\x00\x00"), ((1,), mx.uint8, b"x")]
    _mlxfn.write_file(path, g, consts)
    (trace,) = _mlxfn.File.open(path).traces()
    assert trace["nodes"] == [node]
    assert trace["dims"] == [([(0, 0)], 1, 4096)] and trace["constant_exprs"] == [(0, length)]
    bad = graph([("Reshape", [], [0], [((1, 2, 3), mx.float32)], [(0, 1, {**length, "constant": (5, 1)})])])
    bad["traces"][0]["dims"] = [([(0, 0)], 1, 4096)]
    with pytest.raises(ExportError, match="output 0 axis 1: its expression does not give the traced size 2"):
        _mlxfn.write_file(path, bad, consts)


def test_writer_refuses_what_it_cannot_store(tmp_path: Path):
    path = str(tmp_path / "g.mlxfn")
    with pytest.raises(TypeError, match="cannot store an argument of type object"):
        _mlxfn.write_file(path, graph([("Abs", [object()], [0], [((2, 3), mx.float32)], [])]), [])
    with pytest.raises(ExportError, match="uses value 9"):
        _mlxfn.write_file(path, graph([("Abs", [], [9], [((2, 3), mx.float32)], [])]), [((1,), mx.uint8, b"x")] * 2)
    with pytest.raises(ExportError, match="constant 0 has 3 bytes but shape \\[2\\] of UInt8 needs 2"):
        _mlxfn.write_file(path, graph([]), [((2,), mx.uint8, b"abc"), ((1,), mx.uint8, b"x")])
    assert list(tmp_path.iterdir()) == []


def test_constant_views_are_zero_copy_and_outlive_the_file(tmp_path: Path):
    path = str(tmp_path / "g.mlxfn")
    big = np.arange(300_000, dtype=np.float32)  # over ALIGNED_CONSTANT_MIN: page-aligned
    _mlxfn.write_file(path, graph([]), [(big.shape, mx.float32, big), ((1,), mx.uint8, b"x")])
    f = _mlxfn.File.open(path)
    view = f.constant(0)
    first = np.frombuffer(view, np.float32)
    second = np.frombuffer(f.constant(0), np.float32)
    assert first.ctypes.data == second.ctypes.data  # both point into the mapping
    offsets = f.describe()["segments"]
    assert any(off % _mlxfn.SEGMENT_ALIGNMENT == 0 and size == big.nbytes for off, size in offsets)
    del f, second
    gc.collect()
    assert np.array_equal(first, big)  # the mapping lives as long as a view
    with pytest.raises(TypeError, match="read-only"):
        memoryview(view)[0:1] = b"z"
    with pytest.raises(IndexError):
        _mlxfn.File.open(path).constant(2)


def test_sniff(tmp_path: Path):
    ours, theirs, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _mlxfn.write_file(str(ours), graph([]), [((1,), mx.uint8, b"x")] * 2)
    mx.export_function(str(theirs), lambda x: x + 1, mx.array(1.0))
    other.write_bytes(b"neither")
    assert _mlxfn.sniff(str(ours)) == ("mlxfn", None)
    assert _mlxfn.sniff(str(theirs)) == ("mlx", mx.__version__)
    assert _mlxfn.sniff(str(other)) == ("unknown", None)
    with pytest.raises(FileNotFoundError):
        _mlxfn.sniff(str(tmp_path / "missing"))
    with pytest.raises(FormatError):
        _mlxfn.File.open(str(other))


def test_copy_into_fills_mlx_memory_with_the_constants(tmp_path: Path):
    path = str(tmp_path / "g.mlxfn")
    a = np.arange(400_000, dtype=np.float32).reshape(400, 1000)
    b = np.array([1.5, -2.25], dtype=np.float64)
    _mlxfn.write_file(path, graph([]), [(a.shape, mx.float32, a), (b.shape, mx.float64, b)])
    f = _mlxfn.File.open(path)
    got_a, got_b = mx.zeros(a.shape), mx.zeros(b.shape, mx.float64)
    mx.eval(got_a, got_b)
    f.copy_into([1, 0], [memoryview(got_b).cast("B"), memoryview(got_a).cast("B")])
    assert np.array_equal(np.array(got_a), a) and np.array_equal(np.array(got_b), b)
    with pytest.raises(ValueError, match="constant 0 has 1600000 bytes, the destination 16"):
        f.copy_into([0], [memoryview(got_b).cast("B")])
    with pytest.raises(ValueError, match="read-only"):
        f.copy_into([1], [b.tobytes()])
    with pytest.raises(ValueError, match="2 indices for 1 buffers"):
        f.copy_into([0, 1], [memoryview(got_a).cast("B")])


def test_the_package_registered_its_classes_and_dtypes_once():
    classes = {name: getattr(errors, name) for name in errors.__all__}
    _mlxfn.register(classes, list(DTYPE_TABLE))  # the same objects again: fine
    with pytest.raises(RuntimeError, match="called again with other classes or dtypes"):
        _mlxfn.register({**classes, "FormatError": errors.VersionError}, list(DTYPE_TABLE))
    with pytest.raises(ValueError, match="needs 14 dtypes"):
        _mlxfn.register(classes, list(DTYPE_TABLE)[:3])


def test_atomic_file_commits_or_discards(tmp_path: Path):
    target = tmp_path / "out.txt"
    pending = _mlxfn.AtomicFile(str(target))
    assert pending.pending and Path(pending.temp_path).parent == tmp_path
    Path(pending.temp_path).write_text("done")
    assert not target.exists()
    pending.commit()
    assert target.read_text() == "done" and not pending.pending
    with pytest.raises(RuntimeError, match="already committed or discarded"):
        pending.commit()
    dropped = _mlxfn.AtomicFile(str(target))
    dropped.discard()
    dropped.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with pytest.raises(FileNotFoundError):
        _mlxfn.AtomicFile(str(tmp_path / "missing" / "x"))


def test_dtype_order_comes_from_the_core() -> None:
    """The dtype order is written once, in the Rust core: Python's table is
    MLX's dtypes looked up by the core's names, code by code."""
    assert len(_mlxfn.DTYPE_NAMES) == len(DTYPE_TABLE) == 14
    for name, dtype in zip(_mlxfn.DTYPE_NAMES, DTYPE_TABLE):
        assert str(dtype) == f"mlx.core.{name}"
