"""Constants out of a mapped mlxfn file into MLX arrays.

Two ways, chosen once per process and reported to the user:

- **map**: the arrays *are* the file's mapped pages, no copy.  On Linux CPU
  through the C++ bridge (``bridge/``), after its self-check passed; on
  unified memory (Apple silicon) through MLX's own ``mx.asarray(copy=False)``
  of page-aligned constants.  Loading costs nothing up front; the first
  call faults the pages in from the page cache, and processes that map one
  file share its pages.
- **copy**: fresh MLX memory filled from the mapping on several threads
  without the GIL (``File.copy_into``).  Used where MLX cannot run on
  foreign memory (CUDA), where the bridge is missing or failed its
  self-check, and on request (``import_function(path, load="copy")``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import numpy as np

from . import _mlxfn, _native
from ._dtypes import DTYPE_TABLE
from ._mlx import byte_view
from ._progress import progress

if TYPE_CHECKING:
    from . import _bridge

LOAD_MODES = ("auto", "map", "copy")
log = logging.getLogger("mlxfn")

ConstantInfo = tuple[tuple[int, ...], mx.Dtype, int]


@dataclass(frozen=True)
class LoadMode:
    """How a file's constants become arrays: ``mode`` is "map" or "copy";
    ``how`` the mechanism ("bridge", "unified" or "copy"); ``reason`` why
    (for a copy: why not map)."""

    mode: str
    how: str
    reason: str

    def describe(self) -> str:
        """One line for people: "map (C++ bridge)", "copy (the bridge ...)"."""
        names = {"bridge": "C++ bridge", "unified": "unified memory"}
        return f"map ({names[self.how]})" if self.mode == "map" else f"copy ({self.reason})"


def check_load(load: str) -> None:
    """A ValueError for a ``load=`` that is none of ``LOAD_MODES``, whatever the file."""
    if load not in LOAD_MODES:
        raise ValueError(f"load must be one of {', '.join(map(repr, LOAD_MODES))}, not {load!r}")


def choose(load: str) -> LoadMode:
    """The load mode for ``import_function(path, load=...)``."""
    check_load(load)
    if load == "copy":
        return LoadMode("copy", "copy", "load='copy' was requested")
    how, why_not = _native.mapping()
    if how is not None:
        return LoadMode("map", how, "")
    if load == "map":
        raise ValueError(f"[import_function] load='map' is not possible here: {why_not}")
    return LoadMode("copy", "copy", why_not)


def _allocate(shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
    """Evaluated MLX memory for a constant, its contents to be overwritten
    (zeroed by MLX: without the bridge Python has nothing uninitialised)."""
    arr = mx.zeros(shape, dtype)
    mx.eval(arr)
    return arr


def copy_constants(file: _mlxfn.File, infos: Sequence[ConstantInfo], indices: Sequence[int]) -> dict[int, mx.array]:
    """Copy constants into fresh MLX memory, read in parallel, without the GIL.

    With the bridge the arrays come back at once, their reads scheduled:
    compute waits for each constant where it first uses it, so a first call
    overlaps reading with computing, as MLX's own import does.  Without it,
    every constant is read before this returns.  The caller has checked that
    the file is unchanged (``File.check_unchanged``)."""
    filled = [i for i in indices if infos[i][2] > 0]
    arrays = {i: mx.zeros(tuple(infos[i][0]), infos[i][1]) for i in indices if infos[i][2] == 0}
    offsets = file.constant_offsets()
    reading = _native.read_constants(
        file.fileno(),
        file.path,
        [offsets[i] for i in filled],
        [list(infos[i][0]) for i in filled],
        [DTYPE_TABLE.index(infos[i][1]) for i in filled],
    )
    if reading is not None:
        arrays.update(zip(filled, reading))
        return arrays
    arrays.update((i, _allocate(tuple(infos[i][0]), infos[i][1])) for i in filled)
    with progress(f"loading {file.path}:", sum(infos[i][2] for i in filled)):
        file.copy_into(filled, [byte_view(arrays[i]) for i in filled])
    return arrays


class Mapper:
    """Turns constants of one open file into arrays over its mapped pages."""

    def __init__(self, file: _mlxfn.File, how: str) -> None:
        self._file = file
        self._how = how
        self._offsets = file.constant_offsets()
        self._mapping: _bridge.Mapping | None = None  # made at the first wrap

    def _wrap(self, index: int, info: ConstantInfo) -> mx.array | None:
        shape, dtype, nbytes = info
        if nbytes == 0:
            return mx.zeros(tuple(shape), dtype)
        if self._how == "unified":
            return _adopt(self._file, index, tuple(shape), dtype)
        offset = self._offsets[index]
        if self._mapping is None:
            from . import _bridge  # chosen only after _native.mapping() said "bridge"

            self._mapping = _bridge.Mapping(self._file.fileno(), self._file.file_size)
        try:
            arr: mx.array = self._mapping.wrap(offset, list(shape), DTYPE_TABLE.index(dtype))
        except ValueError as err:  # no length prefix: a format 1 file
            log.debug("%s: constant %d is copied: %s", self._file.path, index, err)
            return None
        return arr

    def map_constants(self, infos: Sequence[ConstantInfo], indices: Sequence[int]) -> dict[int, mx.array]:
        """Arrays over the mapping; constants that cannot be mapped are copied."""
        self._file.check_unchanged()
        arrays: dict[int, mx.array] = {}
        unmapped = []
        for i in indices:
            arr = self._wrap(i, infos[i])
            if arr is None:
                unmapped.append(i)
            else:
                arrays[i] = arr
        if unmapped:
            arrays.update(copy_constants(self._file, infos, unmapped))
        return arrays


def _adopt(file: _mlxfn.File, index: int, shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array | None:
    """Unified memory: MLX adopts a constant's whole-page region, or None (then it is copied).

    Metal's no-copy buffers (``newBufferWithBytesNoCopy``, behind MLX's
    ``mx.asarray(copy=False)``) want a page-aligned start and a length of
    whole pages, as llama.cpp wraps its mapped file; so MLX adopts the
    constant with what follows it up to the next 16 KiB boundary (padding,
    at most the next constant's length prefix: read-only bytes nobody
    writes), and the array is a view of its first bytes."""
    pages = file.constant_pages(index)
    if pages is None:
        return None
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.size
    region: np.ndarray[Any, Any] = np.frombuffer(memoryview(pages), dtype=np.uint8)
    try:
        adopted = mx.asarray(region, copy=False)
    except (ValueError, TypeError) as err:
        log.debug("constant %d is copied: MLX did not adopt its pages: %s", index, err)
        return None
    arr = adopted[:nbytes].view(dtype).reshape(shape)
    mx.eval(arr)
    return arr


def load_constants(
    file: _mlxfn.File, mode: LoadMode, mapper: Mapper | None, infos: Sequence[ConstantInfo], indices: Sequence[int]
) -> dict[int, mx.array]:
    """The constants ``indices`` of ``file`` as evaluated arrays, by ``mode``."""
    nbytes = sum(infos[i][2] for i in indices)
    if mode.mode == "map" and mapper is not None:
        log.debug("%s: mapping %d constants (%d bytes) by %s", file.path, len(indices), nbytes, mode.how)
        return mapper.map_constants(infos, indices)
    log.debug("%s: copying %d constants (%d bytes): %s", file.path, len(indices), nbytes, mode.reason)
    return copy_constants(file, infos, indices)
