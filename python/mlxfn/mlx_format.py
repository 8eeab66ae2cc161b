"""Read what can be read cheaply from a file written by MLX's own exporter.

The header and the first function's signature are parsed by the Rust core
(``rust/mlxfn-core/src/mlx_format.rs`` describes MLX's layout): a tape
entry's state has a layout of its own for every primitive, so nothing past
the first function's tape can be read without a decoder for each of them.

The signatures of *all* functions therefore come from MLX itself.  MLX has
no API that lists them, so :func:`probe_signatures` asks in the one way MLX
answers: it imports the file in a child process
(a damaged file can crash MLX's parser; the child's crash is reported, not
inherited) and calls it with an input count no function has, and MLX answers
with its ``ValueError`` listing every function's signature.  The first
function parsed here must be in that list, as a check on the listing.  This depends on the wording of MLX's message
(checked for 0.32): a change makes ``mlxfn inspect`` and ``mlxfn convert``
of MLX files fail with a FormatError saying the listing could not be
parsed, never read a wrong signature.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass

from . import _mlxfn
from ._dtypes import DTYPE_TABLE as _DTYPES  # mlxfn's codes are MLX's Dtype::Val order
from .errors import FormatError
from .ir import Signature, TensorSpec, dtype_name

# Names as MLX prints them in its error messages ("bool", not "bool_").
_BY_NAME = {dtype_name(d).rstrip("_"): d for d in _DTYPES}

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


def read_header(path: str | os.PathLike[str]) -> MlxHeader:
    """MLX's header and its first function's signature (read by the Rust core,
    which checks every length against the file's size)."""
    path = os.fspath(path)
    raw = _mlxfn.read_mlx_header(path)
    first = None
    if raw["first"] is not None:
        names, inputs = raw["first"]
        first = Signature.from_specs([TensorSpec(tuple(s), d) for s, d in inputs], names)
    return MlxHeader(
        raw["mlx_version"], raw["function_count"], raw["shapeless"], raw["metadata"], first, os.stat(path).st_size
    )


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
