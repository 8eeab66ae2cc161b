"""Damaged files: every truncation point, bit flips in every part of a file,
fields pointing past the end, huge counts, sizes that disagree, a newer
version.

The outcome must always be mlxfn's documented exception naming the file and
the problem (``FormatError``, ``VersionError``; ``ReplayError`` at the first
call for a graph that passes the checks but disagrees with itself), or, for
flips inside constant bytes, a normal import that ``verify=True`` refuses with
``IntegrityError``.  Never a crash: the exhaustive mutations run in a child
process (``hostile/mutate.py``) so that a crash fails the test instead of
killing the run.  Precise edits of one field go through ``hostile/fbwalk.py``,
with both checksums recomputed so that only the field checks can catch them.
"""

from __future__ import annotations

import gc
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn
from mlxfn import _mlxfn
from mlxfn.errors import FormatError, IntegrityError, MlxfnError, ReplayError, VersionError

from hostile.fbwalk import HEADER, Table, fix_checksums, root

MUTATE = Path(__file__).parent / "hostile" / "mutate.py"
# What a mutant may do: be refused at import with mlxfn's FormatError (or its
# VersionError), be refused at its first call with ReplayError (a graph that
# disagrees with itself) or MLX's ValueError for a call that no longer matches
# the (mutated) signature, or import and run (a mutation in metadata, a
# version string, or an argument that stays consistent).
ALLOWED = {
    "import: FormatError",
    "import: VersionError",
    "call: ReplayError",
    "call: ValueError",
    "imported and called",
}

# All three under 1 MiB: packed into segment 0 right after the graph, each
# at a multiple of 64 with its length in the 8 bytes before it.
W = mx.arange(100 * 64, dtype=mx.float32).reshape(100, 64) / 6400  # 25,600 bytes
B = mx.arange(8, dtype=mx.float32)  # 32 bytes
IDX = mx.array([3, 1, 2], dtype=mx.int32)  # 12 bytes
X = mx.ones((2, 100))


def model(x: mx.array) -> tuple[mx.array, ...]:
    return x @ W, x[:, :8] + B, mx.take(x, IDX, axis=1)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "small.mlxfn"
    mx.eval(W, B, IDX)
    mlxfn.export_function(path, model, X, metadata="meta")
    return path


@pytest.fixture(scope="module")
def expected() -> tuple[mx.array, ...]:
    out = model(X)
    mx.eval(out)
    return out


def refused(path: Path, *phrases: str, error: type[Exception] = FormatError) -> str:
    """Import ``path``: it must raise ``error`` naming the file and every phrase."""
    with pytest.raises(error) as info:
        mlxfn.import_function(path)
    message = str(info.value)
    assert str(path) in message, message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    return message


def run_mutants(path: Path, mode: str) -> dict:
    proc = subprocess.run([sys.executable, str(MUTATE), str(path), mode], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the importing process died ({proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def layout(path: Path) -> dict:
    return _mlxfn.File.open(str(path)).describe()


def constant_ranges(path: Path) -> list[tuple[int, int]]:
    """(file offset, length) of every stored constant, in constant order."""
    desc = layout(path)
    return [(desc["segments"][seg][0] + off, length) for seg, off, length in desc["constants"]]


# ----------------------------------------------------------------------------
# Not an mlxfn file at all.


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        mlxfn.import_function(tmp_path / "nope.mlxfn")
    assert "nope.mlxfn" in str(info.value)
    with pytest.raises(RuntimeError, match="it is a directory"):  # as MLX: RuntimeError
        mlxfn.import_function(tmp_path)


@pytest.mark.parametrize("data", [b"", b"hello world, not a model", bytes(range(256)) * 4])
def test_not_an_mlxfn_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "other.bin"
    path.write_bytes(data)
    with pytest.raises(FormatError) as info:
        mlxfn.import_function(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MlxfnError)


# ----------------------------------------------------------------------------
# Truncation and appended bytes.


def test_every_truncation_point(tmp_path: Path, small_file: Path) -> None:
    data = small_file.read_bytes()
    target = tmp_path / "cut.mlxfn"
    target.write_bytes(data)
    fd = os.open(target, os.O_RDWR)
    try:
        for n in range(len(data) - 1, -1, -1):  # shorten one byte at a time: no rewrite
            os.ftruncate(fd, n)
            if n >= HEADER:
                refused(target, f"truncated: the header says {len(data)} bytes, the file has {n}")
            elif n > 0:
                refused(target, f"truncated: {n} bytes, shorter than the 64-byte header")
            else:
                refused(target, "not an mlxfn file (the file is empty)")
    finally:
        os.close(fd)
    assert len(data) > 25_600  # header, graph, the constants: every region was cut


def test_appended_bytes(tmp_path: Path, small_file: Path) -> None:
    data = small_file.read_bytes()
    for extra in (1, 4096, 16384):
        path = tmp_path / "long.mlxfn"
        path.write_bytes(data + b"\0" * extra)
        refused(path, f"the header says {len(data)} bytes, the file has {len(data) + extra}: bytes were appended")


# ----------------------------------------------------------------------------
# Single-bit flips, checksums left as they are.


def test_every_header_bit_flip_is_caught_by_the_checksum(tmp_path: Path, small_file: Path) -> None:
    data = small_file.read_bytes()
    target = tmp_path / "flip.mlxfn"
    for bit in range(HEADER * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        target.write_bytes(flipped)
        if bit < 64:  # the magic number
            refused(target, "not an mlxfn file")
        else:
            refused(target, "corrupted header: header_crc32: checksum mismatch")


def test_every_graph_bit_flip_is_caught_by_its_checksum(tmp_path: Path, small_file: Path) -> None:
    data = small_file.read_bytes()
    (fb_size,) = struct.unpack_from("<Q", data, 24)
    target = tmp_path / "flip.mlxfn"
    target.write_bytes(data)
    with open(target, "r+b") as f:
        for bit in range(fb_size * 8):
            pos = HEADER + bit // 8
            f.seek(pos)
            f.write(bytes([data[pos] ^ (1 << (bit % 8))]))
            f.flush()
            refused(target, "corrupted graph: checksum mismatch")
            f.seek(pos)
            f.write(data[pos : pos + 1])
    assert fb_size > 1000


def test_bit_flips_in_segments(tmp_path: Path, small_file: Path, expected: tuple[mx.array, ...]) -> None:
    """A flip in a constant's bytes imports (and runs, with other values) and
    is found by verify=True, naming the constant.  A flip in the length
    written before a constant is refused at import, naming the constant.  A
    flip in padding (between the graph and the constants, between packed
    constants) touches no byte that is ever read: the file imports,
    verifies and computes the original outputs."""
    data = small_file.read_bytes()
    ranges = constant_ranges(small_file)
    assert [length for _, length in ranges] == [25600, 32, 12]
    target = tmp_path / "seg.mlxfn"

    def owner(pos: int) -> int | None:
        return next((i for i, (start, length) in enumerate(ranges) if start <= pos < start + length), None)

    def prefix_of(pos: int) -> int | None:
        return next((i for i, (start, _) in enumerate(ranges) if start - 8 <= pos < start), None)

    (fb_size,) = struct.unpack_from("<Q", data, 24)
    positions = set(range(HEADER + fb_size, len(data), 53))  # the padding after the graph included
    for start, length in ranges:
        positions |= {start, start + length - 1, start + length // 2} | set(range(start - 16, start + min(length, 64)))
    in_constants = in_prefixes = in_padding = 0
    for k, pos in enumerate(sorted(positions)):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << (k % 8)
        target.write_bytes(flipped)
        if (index := prefix_of(pos)) is not None:
            in_prefixes += 1
            refused(target, f"constant {index} has {ranges[index][1]} bytes but its length prefix says")
            continue
        fn = mlxfn.import_function(target)  # not verified: imports
        index = owner(pos)
        if index is None:
            in_padding += 1
            mlxfn.import_function(target, verify=True)
            if k % 10 == 0:  # a call reads every constant; a sample is enough
                outputs = fn(X)
                assert all(mx.array_equal(o, e).item() for o, e in zip(outputs, expected))
        else:
            in_constants += 1
            if k % 10 == 0:
                assert [o.shape for o in fn(X)] == [e.shape for e in expected]
            with pytest.raises(IntegrityError) as info:
                mlxfn.import_function(target, verify=True)
            assert str(target) in str(info.value) and f"constant {index} is corrupted" in str(info.value)
    assert in_constants > 500 and in_prefixes == 24 and in_padding >= 8


# ----------------------------------------------------------------------------
# Header fields, with the header checksum recomputed.


def with_header(data: bytes, fmt: str, offset: int, value: int) -> bytes:
    edited = bytearray(data)
    struct.pack_into(fmt, edited, offset, value)
    return fix_checksums(edited)


def test_newer_and_impossible_format_versions(tmp_path: Path, small_file: Path) -> None:
    data = small_file.read_bytes()
    path = tmp_path / "version.mlxfn"
    path.write_bytes(with_header(data, "<I", 8, 4))
    refused(path, "format version 4", "reads versions up to 3", "upgrade mlxfn", error=VersionError)
    path.write_bytes(with_header(data, "<I", 8, 0xFFFFFFFF))
    refused(path, f"format version {0xFFFFFFFF}", error=VersionError)
    path.write_bytes(with_header(data, "<I", 8, 0))
    refused(path, "format_version: 0 is not a version")
    # Version 1 kept its segments on 16 KiB pages: this layout is not one.
    path.write_bytes(with_header(data, "<I", 8, 1))
    refused(path, "segments_offset", "is not a multiple of 16384")
    # The graph's own copy of the version disagrees with the header's.
    graph = bytearray(data)
    struct.pack_into("<I", graph, root(data).field("format_version"), 1)
    path.write_bytes(fix_checksums(graph))
    refused(path, "the graph says format version 1, the header 2")


@pytest.mark.parametrize(
    ("name", "fmt", "offset", "value", "phrase"),
    [
        ("header_size", "<I", 12, 128, "header_size: 128, expected 64"),
        ("flatbuffer_offset", "<Q", 16, 4096, "flatbuffer_offset: 4096, expected 64"),
        ("flatbuffer_size past the end", "<Q", 24, 1 << 40, "flatbuffer_size: the flatbuffer ends at"),
        ("flatbuffer_size overflowing", "<Q", 24, 2**64 - 1, "flatbuffer_size"),
        ("segments_offset past the end", "<Q", 32, 1 << 40, "segments_size: the segments end at"),
        ("segments_offset into the graph", "<Q", 32, 128, "segments_offset: 128 overlaps the flatbuffer"),
        ("segments_offset unaligned", "<Q", 32, 16384 + 8, "is not a multiple of 64"),
        ("segments_size past the end", "<Q", 40, 1 << 40, "segments_size: the segments end at"),
        ("segments_size overflowing", "<Q", 40, 2**64 - 1, "segments_size"),
        ("file_size larger", "<Q", 48, 1 << 40, "the segments end at"),
        ("file_size zero", "<Q", 48, 0, "past the file size 0"),
    ],
)
def test_header_fields_out_of_range(
    tmp_path: Path, small_file: Path, name: str, fmt: str, offset: int, value: int, phrase: str
) -> None:
    path = tmp_path / "header.mlxfn"
    path.write_bytes(with_header(small_file.read_bytes(), fmt, offset, value))
    refused(path, "corrupted header", phrase)


# ----------------------------------------------------------------------------
# Fields of the graph, with both checksums recomputed.


def edit(data: bytes, pos: int | None, fmt: str, value: int) -> bytes:
    assert pos is not None, "the field holds its default and is not in the buffer"
    edited = bytearray(data)
    struct.pack_into(fmt, edited, pos, value)
    return fix_checksums(edited)


def tables(data: bytes) -> dict[str, Table | list[Table]]:
    graph = root(data)
    (trace,) = graph.tables("traces", "Trace")
    return {
        "graph": graph,
        "constants": graph.tables("constants", "Constant"),
        "segments": graph.tables("segments", "Segment"),
        "trace": trace,
        "nodes": trace.tables("nodes", "Node"),
    }


def test_constant_and_segment_offsets_past_the_end(tmp_path: Path, small_file: Path) -> None:
    data = small_file.read_bytes()
    t = tables(data)
    large, small, idx = t["constants"]  # all three packed in segment 0
    (seg0,) = t["segments"]
    ((_, size),) = layout(small_file)["segments"]
    idx_offset = struct.unpack_from("<Q", data, idx.field("offset"))[0]
    path = tmp_path / "tables.mlxfn"
    cases = [
        (
            idx.field("offset"),
            "<Q",
            size - 4,
            f"constant 2 (offset {size - 4}, length 12) runs past the end of segment 0 ({size} bytes)",
        ),
        (idx.field("offset"), "<Q", 2**64 - 8, "constant 2 (offset 18446744073709551608, length 12) runs past"),
        (idx.field("offset"), "<Q", idx_offset - 8, "is not aligned to 64 bytes"),
        (idx.field("length"), "<Q", 2**63, "runs past the end of segment 0"),
        (idx.field("length"), "<Q", 12 + 64, "runs past the end of segment 0"),
        (seg0.field("size"), "<Q", 1 << 40, "segment 0 (offset 0, size 1099511627776) is unaligned or outside"),
        (seg0.field("size"), "<Q", 2**64 - 1, "segment 0 (offset 0, size 18446744073709551615)"),
    ]
    for pos, fmt, value, phrase in cases:
        path.write_bytes(edit(data, pos, fmt, value))
        refused(path, "invalid graph", phrase)
    # Segment 0 is the default, absent from the buffer: a segment index out
    # of range is checked on a file with a large constant of its own segment.
    assert large.field("segment") is None


def test_segment_index_and_page_segment_out_of_range(tmp_path: Path) -> None:
    big = mx.arange(300_000, dtype=mx.float32)  # 1.2 MB: page-aligned, segment 1
    two = mx.array([2.0])  # packed: segment 0
    mx.eval(big, two)  # constants, not an Arange node
    path = tmp_path / "big.mlxfn"
    mlxfn.export_function(path, lambda x: x * two + big, mx.ones((300_000,)))
    data = path.read_bytes()
    t = tables(data)
    constant = next(c for c in t["constants"] if c.field("segment") is not None)
    seg0, seg1 = t["segments"]
    (offset, size) = layout(path)["segments"][1]
    assert offset % 16384 == 0 and size == big.nbytes
    area = struct.unpack_from("<Q", data, 40)[0]
    cases = [
        (constant.field("segment"), "<I", 2, "constant 1 is in segment 2 of 2"),
        (constant.field("segment"), "<I", 0xFFFFFFFF, "constant 1 is in segment 4294967295 of 2"),
        (
            seg1.field("size"),
            "<Q",
            1 << 40,
            f"segment 1 (offset {offset - layout(path)['segments_offset']}, size 1099511627776)",
        ),
        (seg1.field("offset"), "<Q", 2**64 - 16384, f"is unaligned or outside the segment area of {area} bytes"),
    ]
    target = tmp_path / "edited.mlxfn"
    for pos, fmt, value, phrase in cases:
        target.write_bytes(edit(data, pos, fmt, value))
        refused(target, "invalid graph", phrase)


def test_huge_counts(tmp_path: Path, small_file: Path) -> None:
    """Vector and string lengths far past the end of the graph: refused by the
    FlatBuffers verifier, before anything is allocated for them."""
    data = small_file.read_bytes()
    t = tables(data)
    graph, trace, node = t["graph"], t["trace"], t["nodes"][1]  # node 1: Slice, with args
    vectors = {
        "graph.traces": graph.vector("traces"),
        "graph.constants": graph.vector("constants"),
        "graph.segments": graph.vector("segments"),
        "graph.metadata": graph.vector("metadata"),
        "trace.nodes": trace.vector("nodes"),
        "trace.inputs": trace.vector("inputs"),
        "trace.outputs": trace.vector("outputs"),
        "node.args": node.vector("args"),
        "node.inputs": node.vector("inputs"),
        "node.op": node.vector("op"),
        "constant.shape": t["constants"][0].vector("shape"),
    }
    path = tmp_path / "counts.mlxfn"
    for vector in vectors.values():
        for count in (0xFFFFFFFF, 0x7FFFFFFF, 1 << 20):
            path.write_bytes(edit(data, vector.pos, "<I", count))
            refused(path, "corrupted graph")


def test_value_ids_and_constant_indices_out_of_range(tmp_path: Path, small_file: Path) -> None:
    data = small_file.read_bytes()
    t = tables(data)
    trace, nodes = t["trace"], t["nodes"]
    path = tmp_path / "ids.mlxfn"
    cases = [
        (nodes[0].vector("inputs").items(4)[1], 0xFFFFFFF0, "trace 0: node 0 (Matmul) uses value 4294967280"),
        (nodes[3].vector("inputs").items(4)[0], 7, "node 3 (Add) uses value 7 but only 7 are defined before it"),
        (trace.vector("constants").items(4)[2], 3, "trace 0: constant index 3 but the file has 3 constants"),
        (trace.vector("outputs").items(4)[0], 11, "output refers to value 11 but only 11 are defined"),
    ]
    for pos, value, phrase in cases:
        path.write_bytes(edit(data, pos, "<I", value))
        refused(path, "invalid graph", phrase)


def test_shape_or_dtype_disagreeing_with_the_stored_length(tmp_path: Path, small_file: Path) -> None:
    data = small_file.read_bytes()
    large, small, _ = tables(data)["constants"]
    (large_rows, large_cols) = large.vector("shape").items(8)
    (small_dim,) = small.vector("shape").items(8)
    path = tmp_path / "sizes.mlxfn"
    cases = [
        (small_dim, "<q", 9, "constant 1 has 32 bytes but shape [9] of Float32 needs 36"),
        (small_dim, "<q", 0, "constant 1 has 32 bytes but shape [0] of Float32 needs 0"),
        (large_cols, "<q", 65, "constant 0 has 25600 bytes but shape [100, 65] of Float32 needs 26000"),
        (large_rows, "<q", -100, "shape [-100, 64] of Float32 needs an impossible size"),
        (large_rows, "<q", 1 << 62, "needs an impossible size"),  # the product overflows u64
        (small.field("dtype"), "<B", 9, "shape [8] of Float16 needs 16"),
        (small.field("dtype"), "<B", 11, "shape [8] of Float64 needs 64"),
    ]
    for pos, fmt, value, phrase in cases:
        path.write_bytes(edit(data, pos, fmt, value))
        refused(path, "invalid graph", phrase)
    path.write_bytes(edit(data, small.field("dtype"), "<B", 99))
    refused(path, "corrupted graph", "constant 1: unknown dtype code 99")


def test_node_and_input_shapes_that_lie(tmp_path: Path, small_file: Path) -> None:
    """A node whose recorded output shape disagrees with what the replay
    computes is a ReplayError at the first call, naming trace, node and
    primitive; nothing is allocated from a recorded shape (2**40 rows here)."""
    data = small_file.read_bytes()
    t = tables(data)
    matmul_rows = t["nodes"][0].tables("outputs", "TensorInfo")[0].vector("shape").items(8)[0]
    path = tmp_path / "shapes.mlxfn"
    for rows in (3, 1 << 40):
        path.write_bytes(edit(data, matmul_rows, "<q", rows))
        fn = mlxfn.import_function(path)
        with pytest.raises(ReplayError) as info:
            fn(X)
        assert str(path) in str(info.value) and "trace 0" in str(info.value) and "Matmul" in str(info.value)
    path.write_bytes(edit(data, matmul_rows, "<q", -2))
    refused(path, "corrupted graph", "trace 0 node 0 output 0: negative dimension -2")
    # An input shape that lies makes the real input match no signature.
    input_rows = t["trace"].tables("inputs", "TensorInfo")[0].vector("shape").items(8)[0]
    path.write_bytes(edit(data, input_rows, "<q", 1 << 40))
    with pytest.raises(ValueError, match="1099511627776"):
        mlxfn.import_function(path)(X)


# ----------------------------------------------------------------------------
# Exhaustive mutations, in a child process.


def test_every_header_bit_with_checksums_fixed(small_file: Path) -> None:
    result = run_mutants(small_file, "header")
    assert result["total"] == 56 * 8
    assert set(result["outcomes"]) <= ALLOWED, result["outcomes"]
    assert result["unnamed"] == [], "errors that do not name the file"
    # A flipped field in the header is found, except in the flatbuffer's size
    # low bits (the graph verifies with a few bytes more or less of slack).
    assert result["outcomes"]["import: FormatError"] + result["outcomes"]["import: VersionError"] >= 420


def test_every_graph_byte_and_huge_words_with_checksums_fixed(small_file: Path) -> None:
    (fb_size,) = struct.unpack_from("<Q", small_file.read_bytes(), 24)
    result = run_mutants(small_file, "graph")
    assert result["total"] == fb_size + (fb_size - 3 + 3) // 4
    assert set(result["outcomes"]) <= ALLOWED, result["outcomes"]
    assert result["unnamed"] == []
    assert result["outcomes"]["import: FormatError"] > result["total"] // 2


# ----------------------------------------------------------------------------
# Weights shared between imports (python/mlxfn/_import.py, _SHARED).


def test_a_verified_import_never_uses_weights_loaded_from_a_damaged_copy(
    tmp_path: Path, small_file: Path, expected: tuple[mx.array, ...]
) -> None:
    """Imports share loaded constants by their stored hash.  A damaged copy
    imported without verify loads its damaged bytes under the good hash; a
    verify=True import of the good file must not pick those up."""
    data = bytearray(small_file.read_bytes())
    start, _ = constant_ranges(small_file)[0]
    data[start + 403] ^= 0x40  # the exponent of W[1, 36]: one output column changes
    damaged = tmp_path / "damaged.mlxfn"
    damaged.write_bytes(data)
    gc.collect()  # no import of the good file from an earlier test may still hold W
    unverified = mlxfn.import_function(damaged)
    wrong = unverified(X)[0]
    assert not mx.array_equal(wrong, expected[0]).item()
    verified = mlxfn.import_function(small_file, verify=True)
    assert mx.array_equal(verified(X)[0], expected[0]).item()
    # Verified bytes replace the damaged ones for later imports of either kind.
    assert mx.array_equal(mlxfn.import_function(small_file)(X)[0], expected[0]).item()
    assert mx.array_equal(unverified(X)[0], wrong).item()  # the damaged import keeps its own
