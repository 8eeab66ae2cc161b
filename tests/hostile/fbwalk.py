"""Find fields of an mlxfn file's FlatBuffers graph by name, to damage them
precisely (tests/test_reliability_corruption.py).

Only what the tests need: tables, vectors and scalars of the schema in
rust/mlxfn-core/schema/mlxfn.fbs, read straight from the wire format (root
uoffset, vtables of u16 field offsets, u32-length-prefixed vectors).  A field
left at its default is absent from the buffer; ``field`` then returns None.
Positions are file offsets, so a test can overwrite the bytes in place and
recompute the checksums with ``fix_checksums``.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

HEADER = 64

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "rust" / "mlxfn-core" / "schema" / "mlxfn.fbs"


def _field_slots(schema: str) -> dict[str, list[str]]:
    """Each table's fields in declaration order (their vtable slots), read
    from the schema itself so that this walker cannot drift from it."""
    tables: dict[str, list[str]] = {}
    for name, body in re.findall(r"^table (\w+) \{(.*?)^\}", schema, flags=re.M | re.S):
        lines = (line.split("//")[0].strip() for line in body.splitlines())
        tables[name] = [line.split(":")[0].strip() for line in lines if line and not line.startswith("///")]
    return tables


SCHEMA = _field_slots(SCHEMA_FILE.read_text())


@dataclass(frozen=True)
class Table:
    data: bytes
    kind: str
    pos: int  # file offset of the table

    def _slot(self, name: str) -> int | None:
        vtable = self.pos - struct.unpack_from("<i", self.data, self.pos)[0]
        vsize = struct.unpack_from("<H", self.data, vtable)[0]
        entry = 4 + 2 * SCHEMA[self.kind].index(name)
        if entry >= vsize:
            return None
        offset = struct.unpack_from("<H", self.data, vtable + entry)[0]
        return self.pos + offset if offset else None

    def field(self, name: str) -> int | None:
        """File offset of a scalar field, None when it holds its default."""
        return self._slot(name)

    def _target(self, name: str) -> int:
        slot = self._slot(name)
        assert slot is not None, f"{self.kind}.{name} is absent"
        return slot + struct.unpack_from("<I", self.data, slot)[0]

    def vector(self, name: str) -> Vector:
        """The vector (or string) a field points to."""
        return Vector(self.data, self._target(name))

    def tables(self, name: str, kind: str) -> list[Table]:
        """The tables of a vector-of-tables field."""
        vec = self.vector(name)
        return [Table(self.data, kind, p + struct.unpack_from("<I", self.data, p)[0]) for p in vec.items(4)]


@dataclass(frozen=True)
class Vector:
    data: bytes
    pos: int  # file offset of the u32 length prefix

    @property
    def length(self) -> int:
        return struct.unpack_from("<I", self.data, self.pos)[0]

    def items(self, size: int) -> list[int]:
        """File offsets of the elements, each ``size`` bytes."""
        return [self.pos + 4 + i * size for i in range(self.length)]


def root(data: bytes) -> Table:
    """The Graph table of a whole mlxfn file's bytes."""
    return Table(data, "Graph", HEADER + struct.unpack_from("<I", data, HEADER)[0])


def fix_checksums(data: bytearray) -> bytes:
    """Recompute the flatbuffer's and the header's CRC-32 after an edit."""
    fb_off, fb_size = struct.unpack_from("<QQ", data, 16)
    if fb_off + fb_size <= len(data):
        struct.pack_into("<I", data, 56, zlib.crc32(bytes(data[fb_off : fb_off + fb_size])))
    struct.pack_into("<I", data, 60, zlib.crc32(bytes(data[:60])))
    return bytes(data)
