"""Type stubs for the Rust binding (mlxfn._mlxfn)."""

from typing import Any, Sequence

FORMAT_VERSION: int
SEGMENT_ALIGNMENT: int
SMALL_CONSTANT_ALIGNMENT: int
__version__: str

# A trace as write_file takes it and File.traces returns it:
#   {"keyword_names": [str], "inputs": [(shape, dtype)], "constants": [int],
#    "nodes": [(op, args, input_ids, [(shape, dtype)])], "outputs": [int]}
Trace = dict[str, Any]

def write_file(
    path: str,
    graph: dict[str, Any],
    constants: Sequence[tuple[tuple[int, ...], Any, Any]],
    dtype_table: Sequence[Any],
    durable: bool = False,
) -> dict[str, int]:
    """Write atomically; constants are (shape, dtype, C-contiguous buffer)."""

def sniff(path: str) -> tuple[str, str | None]:
    """("mlxfn", None), ("mlx", mlx_version) or ("unknown", None)."""

class ConstantView:
    """Read-only buffer (format "B") over one constant's mapped bytes."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

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
    def traces(self, dtype_table: Sequence[Any]) -> list[Trace]: ...
    def constant_infos(self, dtype_table: Sequence[Any]) -> list[tuple[tuple[int, ...], Any, int]]: ...
    def constant(self, index: int) -> ConstantView: ...
    def verify(self) -> None: ...
    def describe(self) -> dict[str, Any]: ...
