"""Export: trace with MLX, check every primitive can be rebuilt, write atomically."""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any

import mlx.core as mx
import numpy as np

from . import _mlxfn
from ._mlx import MLX_VERSION, array_view, byte_view
from ._paused import collector_paused
from ._progress import progress
from ._signature import split_inputs
from .dynamic import trace_shapeless
from .errors import UnsupportedPrimitiveError
from .ir import Signature, Trace
from .replay import unsupported_reason
from .trace import Captured, compile_paused, trace_function

PathLike = str | os.PathLike[str]


def _check_metadata(metadata: object) -> str:
    if metadata is None:
        return ""
    if not isinstance(metadata, str):
        raise TypeError(f"metadata must be a str or None, not {type(metadata).__name__}")
    return metadata


def _check_supported(trace: Trace) -> None:
    for index, node in enumerate(trace.nodes):
        reason = unsupported_reason(node)
        if reason is not None:
            raise UnsupportedPrimitiveError(
                f"[export_function] mlxfn cannot export primitive {node.op} (node {index}): {reason}"
            )


def _serves(trace: Trace, signature: Signature) -> bool:
    """Whether calls of ``signature`` would run ``trace``."""
    return trace.sizes_for(signature) is not None


def _contiguous_bytes(arr: mx.array) -> memoryview:
    """The constant's bytes in logical (row-major) order, without a copy when possible.

    MLX's own exporter writes a strided or broadcast constant's raw buffer and
    so imports wrong values; a non-contiguous constant is made contiguous here.
    """
    if arr.size == 0:
        return memoryview(b"")
    if not array_view(arr).c_contiguous:
        arr = mx.contiguous(arr)
        mx.eval(arr)
    return byte_view(arr)


class _ConstantTable:
    """Constants of every trace in one file, deduplicated by buffer identity.

    Several traces of one model hold the same weight arrays: they are passed to
    the writer once.  The writer also dedupes equal contents by hash.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[tuple[int, ...], mx.Dtype, memoryview]] = []
        self._index: dict[tuple[int, int, tuple[int, ...], str], int] = {}

    def add(self, arr: mx.array) -> int:
        raw = _contiguous_bytes(arr)
        address = np.frombuffer(raw, dtype=np.uint8).ctypes.data if raw.nbytes else 0
        key = (address, raw.nbytes, tuple(arr.shape), str(arr.dtype))
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.entries)
            self.entries.append((tuple(arr.shape), arr.dtype, raw))
        return index


def write_traces(target: _mlxfn.AtomicFile, traces: list[Captured], shapeless: bool, metadata: str) -> dict[str, int]:
    """Write traces into ``target`` (committed by the caller)."""
    table = _ConstantTable()
    graph_traces = []
    with collector_paused():  # the records of every node (_paused.py)
        for captured in traces:
            indices = tuple(table.add(captured.constants[i]) for i in captured.trace.constants)
            graph_traces.append(replace(captured.trace, constants=indices).to_record())
    graph = {
        "mlx_version": MLX_VERSION,
        "metadata": metadata,
        "shapeless": shapeless,
        "traces": graph_traces,
    }
    with progress(f"writing {target.target}:", sum(raw.nbytes for _, _, raw in table.entries)):
        return _mlxfn.write_file(target, graph, table.entries)


def _open_target(path: str) -> _mlxfn.AtomicFile:
    """The locked temporary file an export writes; a RuntimeError naming the
    path, as MLX's, when it is a directory or its directory is missing or not
    writable."""
    if os.path.isdir(path):
        raise RuntimeError(f"[export_function] Failed to open {path}: it is a directory, not a file")
    try:
        return _mlxfn.AtomicFile(path)
    except OSError as err:
        raise RuntimeError(f"[export_function] Failed to open {path}: {err.strerror or err}") from err


class FunctionExporter:
    """Collects several traces of one function and writes them to one file.

    As MLX's exporter: the path is opened at construction (a missing or
    unwritable directory raises there), and a ``with`` block left by an
    exception keeps the traces made before it.  Unlike MLX's, the file
    appears only when it is complete: traces go to a locked temporary file,
    renamed over the path by :meth:`close` (or at the end of the block; an
    exporter never closed writes when it is collected or, at the latest, when
    the interpreter exits).  A block that made no trace before its exception
    writes nothing.
    """

    def __init__(self, file: PathLike, fun: Callable[..., Any], shapeless: bool, metadata: str) -> None:
        self._path = os.fspath(file)
        self._fun = fun
        self._shapeless = shapeless
        self._metadata = metadata
        self._traces: list[Captured] = []
        self._closed = True  # until the target is open
        self._target = _open_target(self._path)
        self._closed = False
        _OPEN.add(self)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if self._closed:
            raise RuntimeError("[export_function] Attempting to write after exporting is closed.")
        positional, keywords = split_inputs(args, kwargs, "[export_function]")
        signature = Signature.of(positional, keywords)
        if any(_serves(c.trace, signature) for c in self._traces):
            raise RuntimeError(
                "[export_function] Attempting to export a function twice with the same signature is not allowed."
            )
        # A large graph's nodes (_paused.py); compilation off once for every probe (trace.py).
        with collector_paused(), compile_paused():
            if self._shapeless:
                traces = trace_shapeless(self._fun, positional, keywords)
            else:
                traces = [trace_function(self._fun, positional, keywords, False)]
        for captured in traces:
            _check_supported(captured.trace)
        self._traces += [c for c in traces if not any(_serves(t.trace, c.trace.signature) for t in self._traces)]

    def close(self) -> None:
        """Write the file (once); later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        _OPEN.discard(self)
        try:
            write_traces(self._target, self._traces, self._shapeless, self._metadata)
            self._target.commit()
        finally:
            self._target.discard()  # after a failed write: no temporary left

    def _abandon(self) -> None:
        self._closed = True
        _OPEN.discard(self)
        self._target.discard()

    def __enter__(self) -> FunctionExporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and not self._traces:
            self._abandon()  # nothing was exported: no file
            return
        self.close()  # as MLX: the traces made before an exception are kept

    def __del__(self) -> None:
        # MLX's exporter writes as it goes; an unclosed mlxfn exporter writes
        # when it is collected (or at exit, _close_open_exporters), so code
        # that never calls close() still works.
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # noqa: BLE001 - nothing can be raised from __del__
                pass


# Exporters not yet closed.  One still open when the interpreter exits (a
# script's module-level `e = mlxfn.exporter(...)`) is closed by an atexit
# hook, while imports and MLX still work: collected later, during shutdown,
# its close() could not write.
_OPEN: weakref.WeakSet[FunctionExporter] = weakref.WeakSet()


@atexit.register
def _close_open_exporters() -> None:
    """Write every exporter left open; the first failure is raised (and
    printed by Python) once every other exporter has been written."""
    failure: BaseException | None = None
    for open_exporter in list(_OPEN):
        try:
            open_exporter.close()
        except Exception as err:  # noqa: BLE001 - the others are still written
            failure = failure or err
    if failure is not None:
        raise failure


def exporter(
    file: PathLike,
    fun: Callable[..., Any],
    *,
    shapeless: bool = False,
    metadata: str | None = None,
) -> FunctionExporter:
    """Make an exporter that writes several traces of ``fun`` to ``file``."""
    return FunctionExporter(file, fun, shapeless, _check_metadata(metadata))


def export_function(
    file_or_callback: PathLike | Callable[[dict[str, Any]], Any],
    fun: Callable[..., Any],
    *args: Any,
    shapeless: bool = False,
    metadata: str | None = None,
    **kwargs: Any,
) -> None:
    """Export ``fun`` traced on the example inputs, like ``mx.export_function``.

    With a callback instead of a path, MLX's own export runs and the callback
    receives exactly what MLX gives it.
    """
    if not isinstance(file_or_callback, (str, os.PathLike)):
        if metadata:
            raise ValueError(
                "[export_function] The metadata argument is only supported when "
                "exporting to a file, not when using a callback."
            )
        mx.export_function(file_or_callback, fun, *args, shapeless=shapeless, **kwargs)
        return
    with exporter(file_or_callback, fun, shapeless=shapeless, metadata=metadata) as exp:
        exp(*args, **kwargs)
