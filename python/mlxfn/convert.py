"""Convert between mlxfn files and MLX's own export format, through public APIs.

mlxfn -> MLX: import the file with mlxfn, then run MLX's ``mx.exporter`` once
per trace with zero-filled example inputs of that trace's signature.

MLX -> mlxfn: import the file with ``mx.import_function``, list its functions'
signatures (:func:`mlxfn.mlx_format.probe_signatures`), then run mlxfn's
exporter once per signature.  MLX's imported constants are lazy ``Load``
primitives that cannot be traced, so each function is first evaluated once on
zero inputs, which loads its constants (the cost of one call per trace).

Both keep every trace, keyword names, the metadata and the shapeless flag, and
write to a temporary file renamed into place, so a failure leaves no ``dst``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx

from . import _mlxfn
from ._export import exporter as mlxfn_exporter
from ._import import ImportedFunction
from ._mlx import import_with_metadata
from .errors import MlxfnError
from .ir import Signature, TensorSpec, Trace
from .mlx_format import MlxHeader, probe_signatures, read_header
from .trace import Captured, trace_function

PathLike = str | os.PathLike[str]


class ConvertError(MlxfnError):
    """A file could not be converted (the message says which trace and why)."""


def example_inputs(signature: Signature) -> tuple[list[mx.array], dict[str, mx.array]]:
    """Zero-filled arrays matching ``signature``: positional, then keywords."""

    def zeros(spec: TensorSpec) -> mx.array:
        return mx.zeros(spec.shape, spec.dtype)

    return [zeros(s) for s in signature.positional], {k: zeros(s) for k, s in signature.keywords}


def to_mlx(src: PathLike, dst: PathLike) -> int:
    """Write the mlxfn file ``src`` in MLX's format to ``dst``; return the trace count."""
    src, dst = os.fspath(src), os.fspath(dst)
    handle = _mlxfn.File.open(src)
    traces = [Trace.from_record(r) for r in handle.traces()]
    for i, trace in enumerate(traces):
        if trace.state_follows_sizes:
            raise ConvertError(
                f"{src}: trace {i} is dynamic ({trace.describe_dims()}) and the state of its primitives "
                "follows those sizes; MLX's format keeps the traced state, so MLX would compute wrong "
                "shapes at other sizes: export with shapeless=False (one trace per shape) to convert"
            )
    signatures = [t.signature for t in traces]
    fn = ImportedFunction(handle)
    target = _mlxfn.AtomicFile(dst)
    try:
        exp = mx.exporter(target.temp_path, fn, shapeless=handle.shapeless, metadata=handle.metadata)
        try:
            # MLX's exporter must not be called again after a trace raised
            # (it crashes): stop at the first failure.
            for i, signature in enumerate(signatures):
                args, kwargs = example_inputs(signature)
                try:
                    exp(*args, **kwargs)
                except Exception as err:  # noqa: BLE001 - reported with the trace index
                    raise ConvertError(f"{src}: trace {i} cannot be written in MLX's format: {err}") from None
        finally:
            exp.close()
            del exp  # closes MLX's file descriptor before the rename
        target.commit()
    finally:
        target.discard()
    return len(signatures)


def load_mlx(src: PathLike) -> tuple[MlxHeader, list[Signature], Callable[..., Any], str]:
    """Import MLX's file ``src`` ready to trace: header, signatures, function, metadata.

    Each function is evaluated once on zero inputs so its constants are loaded.
    """
    src = os.fspath(src)
    header = read_header(src)
    signatures = probe_signatures(src)
    fn, metadata = import_with_metadata(src)
    for signature in signatures:
        args, kwargs = example_inputs(signature)
        mx.eval(fn(*args, **kwargs))
    return header, signatures, fn, metadata


def to_mlxfn(src: PathLike, dst: PathLike) -> int:
    """Write MLX's file ``src`` in mlxfn's format to ``dst``; return the trace count."""
    src, dst = os.fspath(src), os.fspath(dst)
    header, signatures, fn, metadata = load_mlx(src)
    with mlxfn_exporter(dst, fn, shapeless=header.shapeless, metadata=metadata) as exp:
        for i, signature in enumerate(signatures):
            args, kwargs = example_inputs(signature)
            try:
                exp(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - reported with the trace index
                raise ConvertError(f"{src}: function {i} cannot be written by mlxfn: {err}") from None
    return len(signatures)


def trace_mlx_file(src: PathLike) -> tuple[MlxHeader, list[Captured]]:
    """Every function of MLX's file ``src`` as mlxfn traces (for ``mlxfn graph``)."""
    header, signatures, fn, _ = load_mlx(src)
    traces = []
    for signature in signatures:
        args, kwargs = example_inputs(signature)
        traces.append(trace_function(fn, args, kwargs, header.shapeless))
    return header, traces


def convert(src: PathLike, dst: PathLike, to: str) -> tuple[str, int]:
    """Convert ``src`` to format ``to`` (``"mlx"`` or ``"mlxfn"``) at ``dst``.

    Returns (source kind, trace count).
    """
    if to not in ("mlx", "mlxfn"):
        raise ValueError(f"unknown target format {to!r} (choose mlx or mlxfn)")
    src = os.fspath(src)
    kind, _ = _mlxfn.recognise(os.fspath(src))
    if kind == to:
        raise ConvertError(f"{src}: already in {'MLX' if to == 'mlx' else 'mlxfn'}'s format")
    count = to_mlx(src, dst) if to == "mlx" else to_mlxfn(src, dst)
    return kind, count


__all__: Sequence[str] = [
    "ConvertError",
    "convert",
    "to_mlx",
    "to_mlxfn",
    "trace_mlx_file",
    "example_inputs",
    "load_mlx",
]
