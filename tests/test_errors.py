"""Bad files give a clear mlxfn exception naming the file and the problem."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn
from mlxfn import _mlxfn
from mlxfn.errors import FormatError, IntegrityError, MlxfnError, VersionError

HEADER = 64


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.mlxfn"
    w = mx.arange(20000, dtype=mx.float32).reshape(100, 200)  # one large segment
    b = mx.arange(8, dtype=mx.float32)  # a small packed constant
    mx.eval(w, b)  # evaluated arrays are constants; lazy ones would be traced
    mlxfn.export_function(path, lambda x: (x @ w, x[:, :8] + b), mx.ones((2, 100)), metadata="meta")
    return path


def write(tmp_path: Path, data: bytes, name: str = "bad.mlxfn") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def with_header_crc(data: bytearray) -> bytes:
    struct.pack_into("<I", data, 60, zlib.crc32(bytes(data[:60])))
    return bytes(data)


def test_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError) as info:
        mlxfn.import_function(tmp_path / "nope.mlxfn")
    assert "nope.mlxfn" in str(info.value)


def test_directory(tmp_path: Path):
    with pytest.raises(OSError):
        mlxfn.import_function(tmp_path)


@pytest.mark.parametrize("data", [b"", b"hello world, not a model", bytes(range(256)) * 4])
def test_not_an_mlxfn_file(tmp_path: Path, data: bytes):
    path = write(tmp_path, data)
    with pytest.raises(FormatError) as info:
        mlxfn.import_function(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MlxfnError)


def test_every_truncation_point_is_refused(tmp_path: Path, good_file: Path):
    data = good_file.read_bytes()
    points = sorted(set(range(0, 200)) | set(range(200, len(data), max(1, len(data) // 300))))
    for n in points:
        path = write(tmp_path, data[:n])
        with pytest.raises(FormatError) as info:
            mlxfn.import_function(path)
        assert str(path) in str(info.value), info.value


def test_newer_format_version(tmp_path: Path, good_file: Path):
    data = bytearray(good_file.read_bytes())
    struct.pack_into("<I", data, 8, 99)
    path = write(tmp_path, with_header_crc(data))
    with pytest.raises(VersionError, match="99"):
        mlxfn.import_function(path)


def test_header_checksum(tmp_path: Path, good_file: Path):
    data = bytearray(good_file.read_bytes())
    data[20] ^= 0x01  # flatbuffer size, without fixing the checksum
    with pytest.raises(FormatError, match="(?i)checksum|crc"):
        mlxfn.import_function(write(tmp_path, bytes(data)))


def test_header_offsets_out_of_bounds(tmp_path: Path, good_file: Path):
    for offset, value in [(16, 1 << 40), (24, 1 << 40), (32, 1 << 40), (40, 1 << 40), (48, 12)]:
        data = bytearray(good_file.read_bytes())
        struct.pack_into("<Q", data, offset, value)
        with pytest.raises(FormatError):
            mlxfn.import_function(write(tmp_path, with_header_crc(data)))


def test_flatbuffer_bit_flips_are_detected(tmp_path: Path, good_file: Path):
    data = good_file.read_bytes()
    (fb_size,) = struct.unpack_from("<Q", data, 24)
    for pos in range(HEADER, HEADER + fb_size, max(1, fb_size // 97)):
        flipped = bytearray(data)
        flipped[pos] ^= 0x10
        with pytest.raises(FormatError):
            mlxfn.import_function(write(tmp_path, bytes(flipped)))


def test_constant_bytes_flip_detected_only_when_verifying(tmp_path: Path, good_file: Path):
    data = bytearray(good_file.read_bytes())
    first = min(_mlxfn.File.open(str(good_file)).constant_offsets())
    data[first + 5] ^= 0xFF
    path = write(tmp_path, bytes(data))
    fn = mlxfn.import_function(path)  # not verified: loads, values differ
    assert fn(mx.ones((2, 100)))[0].shape == (2, 200)
    with pytest.raises(IntegrityError, match="constant"):
        mlxfn.import_function(path, verify=True)
    mlxfn.import_function(good_file, verify=True)
