"""Import every mutation of one mlxfn file; run in a child process by
tests/test_hostile_files.py so that a crash is a failed test, not a dead run.

    python mutate.py FILE MODE   ->  one JSON line: outcome counts

MODE "header": every single-bit flip of the 64-byte header, with the header
checksum recomputed so the flip reaches the field checks.  MODE "graph":
every byte of the flatbuffer flipped (x ^= 0x5A) and every aligned 4-byte
word set to 0xFFFFFFFF (a huge count or offset), with both checksums
recomputed so each mutation reaches the FlatBuffers verifier and the
semantic checks.  Each import either raises mlxfn's FormatError, or gives
a function that is then called: its call must return or raise a Python
exception.  Anything else (a crash) kills this process, which the test sees.
"""

from __future__ import annotations

import collections
import json
import os
import struct
import sys
import tempfile
import zlib

import mlx.core as mx

import mlxfn
from mlxfn.errors import FormatError

HEADER = 64


def fix_checksums(data: bytearray) -> bytes:
    (fb_off, fb_size) = struct.unpack_from("<QQ", data, 16)
    if fb_off + fb_size <= len(data):
        struct.pack_into("<I", data, 56, zlib.crc32(bytes(data[fb_off : fb_off + fb_size])))
    struct.pack_into("<I", data, 60, zlib.crc32(bytes(data[:60])))
    return bytes(data)


def mutations(data: bytes, mode: str):
    if mode == "header":
        for bit in range(56 * 8):  # the two checksums themselves are recomputed
            m = bytearray(data)
            m[bit // 8] ^= 1 << (bit % 8)
            yield f"header bit {bit}", fix_checksums(m)
        return
    (fb_size,) = struct.unpack_from("<Q", data, 24)
    for pos in range(HEADER, HEADER + fb_size):
        m = bytearray(data)
        m[pos] ^= 0x5A
        yield f"graph byte {pos}", fix_checksums(m)
    for pos in range(HEADER, HEADER + fb_size - 3, 4):
        m = bytearray(data)
        m[pos : pos + 4] = b"\xff\xff\xff\xff"
        yield f"graph word {pos}", fix_checksums(m)


def main(path: str, mode: str) -> None:
    data = open(path, "rb").read()
    outcomes: collections.Counter[str] = collections.Counter()
    unnamed: list[str] = []
    x = mx.ones((2, 100))
    with tempfile.TemporaryDirectory() as d:
        target = os.path.join(d, "mutant.mlxfn")
        for what, mutant in mutations(data, mode):
            with open(target, "wb") as f:
                f.write(mutant)
            try:
                fn = mlxfn.import_function(target)
            except FormatError as err:
                outcomes[f"import: {type(err).__name__}"] += 1
                if target not in str(err):
                    unnamed.append(f"{what}: {err}")
                continue
            try:
                mx.eval(fn(x))
                outcomes["imported and called"] += 1
            except Exception as err:  # noqa: BLE001 - any Python exception is a clean outcome
                outcomes[f"call: {type(err).__name__}"] += 1
    print(json.dumps({"outcomes": outcomes, "unnamed": unnamed[:5], "total": sum(outcomes.values())}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
