"""Read what can be read cheaply from a file written by MLX's own exporter.

MLX's file (``mx.export_function``, MLX 0.32) is a stream of little-endian
values: a string is a u64 length and its bytes, a vector a u64 count and its
items, an enum an i32, a dtype an i32 code and a u8 size, a shape a vector of
i32.  It begins with a header::

    string  MLX version
    i32     function count
    bool    shapeless
    string  metadata

then each function in turn: its keyword names (vector of strings), its input
ids (vector of u64), its inputs (vector of (shape, dtype)), its output ids,
and its tape.  A tape entry's primitive state is written with a layout that
depends on the primitive, so walking past the first function's tape would need
a decoder for every one of MLX's primitives.

So the header and the first function's signature are parsed here, with every
length checked against the file size; the signatures of *all* functions come
from MLX itself: :func:`probe_signatures` imports the file in a child process
(a damaged file can crash MLX's parser; the child's crash is reported, not
inherited) and calls it with an input count no function has, and MLX answers
with its ``ValueError`` listing every function's signature.  The first
function parsed here must be in that list, as a check on the listing.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass

from ._dtypes import DTYPE_TABLE as _DTYPES  # mlxfn's codes are MLX's Dtype::Val order
from .errors import FormatError
from .ir import Signature, TensorSpec, dtype_name

# Names as MLX prints them in its error messages ("bool", not "bool_").
_BY_NAME = {dtype_name(d).rstrip("_"): d for d in _DTYPES}

_MAX_RANK = 64
_PROBE_INPUTS = 65537  # more inputs than any exported function has


@dataclass(frozen=True)
class MlxHeader:
    """The header of an MLX file and the signature of its first function."""

    mlx_version: str
    function_count: int
    shapeless: bool
    metadata: str
    first: Signature | None
    file_size: int


class _Cursor:
    """Bounds-checked little-endian reads over the bytes of a file."""

    def __init__(self, data: bytes, path: str, size: int) -> None:
        self.data, self.path, self.size, self.pos = data, path, size, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(f"{self.path}: MLX file truncated or damaged while reading {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> int:
        value: int = struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]
        return value

    def count(self, what: str, item_size: int) -> int:
        n = self.unpack("Q", what)
        if n * item_size > self.size:
            raise FormatError(f"{self.path}: MLX file has an impossible {what} ({n})")
        return n

    def string(self, what: str) -> str:
        raw = self.take(self.count(what + " length", 1), what)
        return raw.decode("utf-8", errors="replace")

    def spec(self, what: str) -> TensorSpec:
        rank = self.count(what + " rank", 4)
        if rank > _MAX_RANK:
            raise FormatError(f"{self.path}: MLX file has an impossible {what} rank ({rank})")
        shape = tuple(self.unpack("i", what) for _ in range(rank))
        code, size = self.unpack("i", what), self.unpack("B", what)
        if not 0 <= code < len(_DTYPES) or _DTYPES[code].size != size:
            raise FormatError(f"{self.path}: MLX file has an unknown dtype in {what}")
        return TensorSpec(shape, _DTYPES[code])


def _read_prefix(path: str, size: int, need: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(min(size, need))


def read_header(path: str | os.PathLike[str]) -> MlxHeader:
    """Parse MLX's header and its first function's signature, never trusting a length."""
    path = os.fspath(path)
    size = os.stat(path).st_size
    need = 1 << 16
    while True:
        data = _read_prefix(path, size, need)
        cur = _Cursor(data, path, size)
        try:
            return _parse(cur, size)
        except FormatError:
            if len(data) >= size:
                raise
            need *= 16  # a long metadata string or signature: read further


def _parse(cur: _Cursor, size: int) -> MlxHeader:
    version = cur.string("MLX version")
    count = cur.unpack("i", "function count")
    shapeless = cur.unpack("B", "shapeless flag")
    metadata = cur.string("metadata")
    if count < 0 or shapeless > 1:
        raise FormatError(f"{cur.path}: not a file written by MLX's exporter (bad header)")
    first = None
    if count > 0:
        keys = [cur.string("keyword name") for _ in range(cur.count("keyword count", 8))]
        n_ids = cur.count("input count", 8)
        cur.take(8 * n_ids, "input ids")
        n_inputs = cur.count("input count", 13)
        if n_inputs != n_ids or len(keys) > n_inputs:
            raise FormatError(f"{cur.path}: MLX file's first function has inconsistent inputs")
        specs = [cur.spec(f"input {i}") for i in range(n_inputs)]
        n_pos = n_inputs - len(keys)
        first = Signature(tuple(specs[:n_pos]), tuple(zip(keys, specs[n_pos:])))
    return MlxHeader(version, count, bool(shapeless), metadata, first, size)


# ----------------------------------------------------------------------------
# All signatures, from MLX's own "no function matches" message.

_PROBE = """
import json, sys
import mlx.core as mx
try:
    fn = mx.import_function(sys.argv[1])
    x = mx.array(0)
    fn(*([x] * int(sys.argv[2])))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
else:
    print(json.dumps({"error": None, "message": ""}))
"""

_FUNCTION = re.compile(r"^ *\d+\. Function with (\d+) positional inputs and (\d+) keyword inputs:$")
_POSITIONAL = re.compile(r"^ +(\d+): \(([-\d,]*)\) (\w+)$")
_KEYWORD = re.compile(r'^ +"(.*)": \(([-\d,]*)\) (\w+)$')


def _spec(shape: str, dtype: str, path: str) -> TensorSpec:
    if dtype not in _BY_NAME:
        raise FormatError(f"{path}: MLX listed an unknown dtype {dtype!r}")
    return TensorSpec(tuple(int(d) for d in shape.split(",") if d), _BY_NAME[dtype])


def parse_listing(message: str, path: str) -> list[Signature]:
    """The signatures in MLX's ``[import_function::call] No imported function...`` error."""
    head, sep, rest = message.partition("Possible functions include:\n")
    if not sep or "No imported function found" not in head:
        first_line = message.strip().splitlines()[:1] or [""]
        raise FormatError(f"{path}: unexpected answer from MLX: {first_line[0]}")
    functions: list[tuple[tuple[int, int], list[TensorSpec], list[tuple[str, TensorSpec]]]] = []
    for line in rest.split("\nCalled with", 1)[0].splitlines():
        if m := _FUNCTION.match(line):
            functions.append(((int(m[1]), int(m[2])), [], []))
        elif functions and (m := _POSITIONAL.match(line)):
            functions[-1][1].append(_spec(m[2], m[3], path))
        elif functions and (m := _KEYWORD.match(line)):
            functions[-1][2].append((m[1], _spec(m[2], m[3], path)))
        elif line.strip():
            raise FormatError(f"{path}: could not parse MLX's list of functions: {line.strip()!r}")
    out = []
    for want, pos, kw in functions:
        if (len(pos), len(kw)) != want:
            raise FormatError(f"{path}: could not parse MLX's list of functions")
        out.append(Signature(tuple(pos), tuple(kw)))
    return out


def probe_signatures(path: str | os.PathLike[str], timeout: float = 300.0) -> list[Signature]:
    """Every function's signature: the file's first function first, then the
    others in the order MLX lists them (grouped by input count), which may
    differ from the file's order."""
    path = os.fspath(path)
    header = read_header(path)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, path, str(_PROBE_INPUTS)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise FormatError(f"{path}: MLX took over {timeout:.0f} s to read the file") from None
    if proc.returncode != 0:
        why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        tail = proc.stderr.strip().splitlines()[-1:] or [""]
        raise FormatError(f"{path}: MLX could not read the file ({why}) {tail[0]}".rstrip())
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    if answer["error"] is None:
        raise FormatError(f"{path}: MLX accepted the probe call; cannot list its functions")
    if answer["error"] != "ValueError":
        first_line = answer["message"].strip().splitlines()[:1] or [""]
        raise FormatError(f"{path}: MLX could not read the file: {first_line[0]}")
    signatures = parse_listing(answer["message"], path)
    if len(signatures) != header.function_count or (header.first is not None and header.first not in signatures):
        raise FormatError(f"{path}: MLX's list of functions does not match the file's header")
    if header.first is not None:  # the one function whose place in the file is known
        signatures.remove(header.first)
        signatures.insert(0, header.first)
    return signatures
