"""Trace an MLX function through MLX's own export callback.

MLX's tracer hands every primitive with its state, every constant and the
inputs/outputs to a callback.  This module turns that stream into an
``ir.Trace``: value ids are the inputs, then the trace's constants, then
every node's outputs in order, so a reader can check that each id is
defined before it is used.

Four things MLX's tracer cannot record are replaced while it traces:

- collectives (``mx.distributed``): by stand-ins that ``distributed.rewrite``
  turns into collective nodes (see ``mlxfn.distributed``);
- ``mx.custom_function``s: MLX has no state for their ``CustomTransforms``
  primitive, so each is traced through its forward function alone.  The
  file holds the forward's ops: an imported function differentiates (and
  vmaps) them with MLX's own rules; the custom vjp, jvp and vmap are not
  kept;
- ``mx.contiguous``: MLX cannot export its ``Contiguous`` primitive, and
  being contiguous is a memory layout, not a value (every op gives the same
  values from a strided view), so on a tracing thread it gives its input
  back.  mlx-lm's Qwen3-Next, Qwen3.5, Kimi Linear and others call it in
  their forward pass (keeping a short convolution state);
- ``mx.compile``d functions that the traced one calls: where MLX fuses one
  into a ``Compiled`` primitive (mlx-lm's ``xielu`` activation, with its
  parameters among the inputs), it cannot export it.  While mlxfn traces,
  compilation is off (``compile_paused``: MLX's switch is process-wide),
  so they run their ops, which the file holds; the import compiles the
  whole trace anyway.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from . import distributed
from ._mlx import MLX_VERSION
from ._paused import Paused
from ._runner import compile_enabled
from .errors import UnsupportedPrimitiveError
from .ir import Node, Signature, TensorSpec, Trace


@dataclass
class Captured:
    """A trace and the arrays of its constants (``trace.constants`` are
    positions in ``constants``: 0, 1, 2, ...)."""

    trace: Trace
    constants: list[mx.array]


def _spec(record: tuple[str, Sequence[int], mx.Dtype]) -> TensorSpec:
    return TensorSpec(tuple(record[1]), record[2])


def trace_function(
    fun: Callable[..., Any],
    args: Sequence[mx.array],
    kwargs: Mapping[str, mx.array],
    shapeless: bool,
) -> Captured:
    """Trace ``fun(*args, **kwargs)`` with MLX.

    MLX validates the inputs and the outputs and raises its own ValueError for
    non-array ones, which is exactly the behaviour mlxfn promises.
    """
    return build_trace(capture(fun, args, kwargs, shapeless), Signature.of(args, kwargs))


def capture(
    fun: Callable[..., Any], args: Sequence[mx.array], kwargs: Mapping[str, mx.array], shapeless: bool
) -> list[dict[str, Any]]:
    """The records of MLX's export callback for ``fun(*args, **kwargs)``."""
    records: list[dict[str, Any]] = []
    export: Any = mx.export_function  # its stub types keyword inputs as its own options
    with tracing() as recorder:
        try:
            export(records.append, fun, *args, shapeless=shapeless, **kwargs)
        except ValueError as err:
            if "primitive Contiguous" not in str(err):
                raise
            raise UnsupportedPrimitiveError(
                f"{err}: mx.contiguous is not exportable; when it comes from weights that are not evaluated yet "
                "(mlx-lm's model.shard() makes them lazily), call mx.eval(model.parameters()) before exporting, "
                "so that the shards, not the sharding, are exported"
            ) from err
        except MemoryError as err:
            if "bad_array_new_length" not in str(err):
                raise
            raise UnsupportedPrimitiveError(
                "[export_function] MLX's tracer failed on a primitive it cannot describe (std::bad_array_new_length): "
                "most likely an mx.distributed collective that mlxfn did not see being called (an op imported "
                "with `from mlx.core.distributed import ...`); call it as mx.distributed.<op>(...)"
            ) from err
    return distributed.rewrite(records, recorder)


@contextlib.contextmanager
def tracing() -> Iterator[distributed.Recorder]:
    """While the block traces a function on this thread: collectives make
    stand-ins (recorded), custom functions call their forward, and
    ``mx.contiguous`` gives its input back (module doc)."""
    with distributed.intercepting() as recorder, _replaced_while_tracing(), compile_paused():
        yield recorder


# ``mx.compile`` off while an export traces (module doc), for the whole
# process as MLX's switch is: a compiled function called meanwhile, on any
# thread, runs uncompiled, with the same values.
compile_paused = Paused(compile_enabled, mx.disable_compile, mx.enable_compile)


# ----------------------------------------------------------------------------
# mx.custom_function traced through its forward, mx.contiguous as its input


_tracing = threading.local()  # .depth: how many captures this thread is in
_patch_lock = threading.Lock()
_patched = 0
_original_call: Any = None
_original_contiguous: Any = None
_layout_checked = False


def _forward_of(instance: Any) -> Callable[..., Any]:
    """The forward function of an ``mx.custom_function``.

    MLX keeps it in C++ and exposes it to the garbage collector only: its
    ``tp_traverse`` visits the type, then the forward, then the vjp, jvp
    and vmap functions that were set.  That order is checked once on a
    probe before it is trusted."""
    global _layout_checked
    if not _layout_checked:

        def forward(x: mx.array) -> mx.array:
            return x

        def vjp(x: mx.array, dx: mx.array, out: mx.array) -> mx.array:
            return dx

        probe = mx.custom_function(forward)
        probe.vjp(vjp)
        refs = gc.get_referents(probe)
        if refs[:3] != [type(probe), forward, vjp]:
            raise UnsupportedPrimitiveError(
                f"[export_function] this MLX ({MLX_VERSION}) hides the forward of an mx.custom_function "
                "where mlxfn cannot find it: a function that calls one cannot be exported"
            )
        _layout_checked = True
    refs = gc.get_referents(instance)
    if len(refs) < 2 or refs[0] is not type(instance) or not callable(refs[1]):
        raise UnsupportedPrimitiveError("[export_function] mlxfn cannot find the forward of an mx.custom_function")
    forward_fn: Callable[..., Any] = refs[1]
    return forward_fn


def _call(instance: Any, *args: Any, **kwargs: Any) -> Any:
    """``mx.custom_function.__call__`` while mlxfn traces: the forward alone
    on a tracing thread, MLX's call elsewhere."""
    if getattr(_tracing, "depth", 0):
        return _forward_of(instance)(*args, **kwargs)
    return _original_call(instance, *args, **kwargs)


def _contiguous(a: Any, allow_col_major: bool = False, *, stream: Any = None) -> Any:
    """``mx.contiguous`` while mlxfn traces: the array itself on a tracing
    thread (module doc), MLX's op elsewhere."""
    if getattr(_tracing, "depth", 0) and isinstance(a, mx.array):
        return a
    return _original_contiguous(a, allow_col_major, stream=stream)


@contextlib.contextmanager
def _replaced_while_tracing() -> Iterator[None]:
    """While the block runs, this thread's custom functions call their
    forward and its ``mx.contiguous`` gives its input back."""
    global _patched, _original_call, _original_contiguous
    with _patch_lock:
        if _patched == 0:
            _original_call = mx.custom_function.__call__
            mx.custom_function.__call__ = _call  # type: ignore[method-assign,assignment]
            _original_contiguous = mx.contiguous
            mx.contiguous = _contiguous
        _patched += 1
    _tracing.depth = getattr(_tracing, "depth", 0) + 1
    try:
        yield
    finally:
        _tracing.depth -= 1
        with _patch_lock:
            _patched -= 1
            if _patched == 0:
                mx.custom_function.__call__ = _original_call  # type: ignore[method-assign]
                mx.contiguous = _original_contiguous


def build_trace(records: list[dict[str, Any]], signature: Signature) -> Captured:
    """The trace described by the records of MLX's export callback."""
    ids: dict[str, int] = {}
    constants: list[mx.array] = []
    nodes: list[Node] = []
    outputs: list[str] = []

    def define(name: str) -> None:
        if name not in ids:
            ids[name] = len(ids)

    for rec in records:
        kind = rec["type"]
        if kind == "inputs":
            for name, _, _ in rec["inputs"]:
                define(name)
        elif kind == "outputs":
            outputs = [name for name, _, _ in rec["outputs"]]
        elif kind == "constants":
            for name, value in rec["constants"]:
                define(name)
                constants.append(value)
        elif kind == "primitive":
            inputs = tuple(ids[name] for name, _, _ in rec["inputs"])
            for name, _, _ in rec["outputs"]:
                define(name)
            nodes.append(Node(rec["name"], tuple(rec["arguments"]), inputs, tuple(_spec(r) for r in rec["outputs"])))
    trace = Trace(signature, tuple(range(len(constants))), tuple(nodes), tuple(ids[n] for n in outputs))
    return Captured(trace, constants)
