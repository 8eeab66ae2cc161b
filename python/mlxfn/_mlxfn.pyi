"""Type stubs for the Rust binding (mlxfn._mlxfn), checked by mypy.stubtest."""

from collections.abc import Sequence
from typing import Any, final

__all__ = [
    "ALIGNED_CONSTANT_MIN",
    "AtomicFile",
    "ConstantView",
    "DTYPE_NAMES",
    "FORMAT_VERSION",
    "File",
    "LENGTH_PREFIX",
    "OLDEST_FORMAT_VERSION",
    "SEGMENT_ALIGNMENT",
    "SMALL_CONSTANT_ALIGNMENT",
    "read_mlx_header",
    "recognise",
    "register",
    "sniff",
    "write_file",
    "__version__",
]

DTYPE_NAMES: tuple[str, ...]
FORMAT_VERSION: int
OLDEST_FORMAT_VERSION: int
SEGMENT_ALIGNMENT: int
SMALL_CONSTANT_ALIGNMENT: int
ALIGNED_CONSTANT_MIN: int
LENGTH_PREFIX: int
__version__: str

# A trace as write_file takes it and File.traces returns it (mlxfn.ir.Trace
# converts both ways):
#   {"keyword_names": [str], "inputs": [(shape, dtype)], "constants": [int],
#    "nodes": [(op, args, input_ids, [(shape, dtype)], [(output, axis, expr)])],
#    "outputs": [int], "dims": [([(input, axis)], min, max)],
#    "constant_exprs": [(position, expr)]}
# An expression: {"constant": (num, den), "terms": [((num, den), [dim])], "integer": bool}.
_TraceRecord = dict[str, Any]

def register(errors: dict[str, type[BaseException]], dtypes: Sequence[Any]) -> None:
    """Hand the binding the package's exception classes and dtypes, once."""

def write_file(
    target: str | AtomicFile,
    graph: dict[str, Any],
    constants: Sequence[tuple[tuple[int, ...], Any, Any]],
    durable: bool = False,
) -> dict[str, int]:
    """Write into an AtomicFile (left for the caller to commit) or atomically
    to a path; constants are (shape, dtype, C-contiguous buffer)."""

def sniff(path: str) -> tuple[str, str | None]:
    """("mlxfn", None), ("mlx", mlx_version) or ("unknown", None)."""

def recognise(path: str) -> tuple[str, str | None]:
    """("mlxfn", None) or ("mlx", mlx_version); FormatError for anything else."""

def read_mlx_header(path: str) -> dict[str, Any]:
    """The header of MLX's file and its first function's signature."""

@final
class AtomicFile:
    """A locked temporary file beside a target, renamed over it by commit."""

    def __new__(cls, target: str) -> AtomicFile: ...
    @property
    def target(self) -> str: ...
    @property
    def temp_path(self) -> str: ...
    @property
    def pending(self) -> bool: ...
    def commit(self, durable: bool = False) -> None: ...
    def discard(self) -> None: ...

@final
class ConstantView:
    """Read-only buffer (format "B") over one constant's mapped bytes."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...

@final
class File:
    """An mlxfn file, mapped and validated."""

    @staticmethod
    def open(path: str) -> File: ...
    @property
    def path(self) -> str: ...
    @property
    def format_version(self) -> int: ...
    @property
    def mlxfn_version(self) -> str: ...
    @property
    def mlx_version(self) -> str: ...
    @property
    def metadata(self) -> str: ...
    @property
    def shapeless(self) -> bool: ...
    @property
    def num_traces(self) -> int: ...
    @property
    def num_constants(self) -> int: ...
    @property
    def file_size(self) -> int: ...
    @property
    def graph_checksum(self) -> int: ...
    def traces(self) -> list[_TraceRecord]: ...
    def constant_infos(self) -> list[tuple[tuple[int, ...], Any, int]]: ...
    def constant_hashes(self) -> list[int]: ...
    def constant_offsets(self) -> list[int]: ...
    def fileno(self) -> int: ...
    def copy_into(self, indices: Sequence[int], buffers: Sequence[Any]) -> None: ...
    def constant(self, index: int) -> ConstantView: ...
    def constant_pages(self, index: int) -> ConstantView | None:
        """The constant and its padding up to the next 16 KiB page boundary (None: not page-aligned)."""
    def check_unchanged(self) -> None:
        """FormatError if the file was truncated or rewritten in place since open."""
    def verify(self) -> None: ...
    def describe(self) -> dict[str, Any]: ...
