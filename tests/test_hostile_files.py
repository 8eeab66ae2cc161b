"""Hostile files: every header bit, every graph byte, huge values, constant flips.

``tests/test_errors.py`` covers the common damage (truncation, a few flips);
this file mutates exhaustively.  Checksums are recomputed after each mutation
so that it reaches the FlatBuffers verifier and the semantic checks behind
them; the mutants are imported in a child process (``hostile/mutate.py``) so
that a crash fails the test instead of killing the run.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn
from mlxfn import _mlxfn
from mlxfn.errors import FormatError, IntegrityError

MUTATE = Path(__file__).parent / "hostile" / "mutate.py"
# What a mutant may do: be refused at import with mlxfn's FormatError (or its
# VersionError), be refused at its first call with ReplayError (a graph that
# disagrees with itself) or MLX's ValueError for a call that no longer matches
# the (mutated) signature, or import and run (a mutation in metadata, a
# version string, or an argument that stays consistent).
ALLOWED = {"import: FormatError", "import: VersionError", "call: ReplayError", "call: ValueError", "imported and called"}


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "small.mlxfn"
    w = mx.arange(20000, dtype=mx.float32).reshape(100, 200) / 20000
    b = mx.arange(8, dtype=mx.float32)
    mx.eval(w, b)
    mlxfn.export_function(path, lambda x: (x @ w, x[:, :8] + b), mx.ones((2, 100)), metadata="meta")
    return path


def run_mutants(path: Path, mode: str) -> dict:
    proc = subprocess.run([sys.executable, str(MUTATE), str(path), mode], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the importing process died ({proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


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


def test_every_header_bit_flip_is_caught_by_the_checksum(tmp_path: Path, small_file: Path) -> None:
    data = small_file.read_bytes()
    target = tmp_path / "flip.mlxfn"
    for bit in range(64 * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        target.write_bytes(flipped)
        with pytest.raises(FormatError) as info:
            mlxfn.import_function(target)
        assert str(target) in str(info.value)


def constant_ranges(path: Path) -> list[tuple[int, int]]:
    """(file offset, length) of every stored constant (padding excluded)."""
    layout = _mlxfn.File.open(str(path)).describe()
    segments = layout["segments"]
    return [(segments[seg][0] + off, length) for seg, off, length in layout["constants"]]


def test_constant_flips_found_by_verify_and_harmless_otherwise(tmp_path: Path, small_file: Path) -> None:
    data = small_file.read_bytes()
    target = tmp_path / "const.mlxfn"
    x = mx.ones((2, 100))
    positions = [
        start + i for start, length in constant_ranges(small_file) for i in range(0, length, max(1, length // 40))
    ]
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 0x04
        target.write_bytes(flipped)
        outputs = mlxfn.import_function(target)(x)  # unverified: imports and runs
        assert [o.shape for o in outputs] == [(2, 200), (2, 8)]
        with pytest.raises(IntegrityError) as info:
            mlxfn.import_function(target, verify=True)
        assert str(target) in str(info.value) and "constant" in str(info.value)
    assert len(positions) >= 60
