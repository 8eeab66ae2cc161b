"""The one door to mlxfn's C++ bridge (``mlxfn._bridge``, ``bridge/``).

The bridge ships in the wheel (built by ``rust/mlxfn-py/build.rs`` against
the mlx release that ``pyproject.toml`` pins) and does what Python cannot
ask of MLX.  Whether it can be used is asked here, once per process, and
each question gets an answer with its reason:

- :func:`mapping` -- can constants be arrays over the mapped file?  On Linux
  CPU through the bridge, after its self-check; on unified memory (Apple
  silicon) through MLX's own ``mx.asarray(copy=False)``.
- :func:`no_fuse` -- can a trace be compiled without fused kernels?  Needs
  only a bridge built for the loaded mlx (MLX's compile mode is C++ only).
- :func:`read_constants` -- copies that overlap compute, for the copy path.
- :func:`read_probe` -- a shapeless export's probe read in C++ (needs only
  a bridge built for the loaded mlx).
- :func:`runtime` -- can files be imported by mlxfn's C++ runtime
  (``libmlxfn.so``, which the bridge links to)?  :func:`native_import` does
  it, raising the exceptions mlxfn raises for a bad file.

The self-check builds its own probe buffers, so its answer does not depend
on what MLX did before it in the process (allocations, frees, threads).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import mlx.core as mx

_lock = threading.RLock()  # an answer may ask another (mapping asks bridge)
_answers: dict[str, tuple[Any, str]] = {}
T = TypeVar("T")


def _once(name: str, ask: Callable[[], tuple[T, str]]) -> tuple[T, str]:
    """``ask()``'s answer, computed once per process (from any thread)."""
    with _lock:
        if name not in _answers:
            _answers[name] = ask()
        value, reason = _answers[name]
        return value, reason


def _load_bridge() -> tuple[ModuleType | None, str]:
    try:
        from . import _bridge
    except ImportError as err:
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        return None, f"the C++ bridge is not built for this Python ({py}) and mlx ({err})"
    problem = _bridge.version_problem()
    if problem:
        return None, problem
    return _bridge, ""


def bridge() -> tuple[ModuleType | None, str]:
    """The bridge module when it loads and matches the loaded mlx, else (None, why not)."""
    return _once("bridge", _load_bridge)


def _ask_mapping() -> tuple[str | None, str]:
    if sys.platform == "darwin" and mx.metal.is_available():
        return "unified", ""
    module, why_not = bridge()
    if module is None:
        return None, why_not
    problem: str = module.self_check()
    if problem:
        return None, f"the C++ bridge's self-check failed: {problem}"
    return "bridge", ""


def mapping() -> tuple[str | None, str]:
    """How this process can map constants: ("bridge" | "unified", "") or (None, why not)."""
    return _once("mapping", _ask_mapping)


def no_fuse() -> Callable[..., Any] | None:
    """``trace_without_fusion(fn, *args)`` when the bridge can set MLX's compile mode, else None."""
    module, _ = bridge()
    if module is None:
        return None
    call: Callable[..., Any] = module.trace_without_fusion
    return call


def read_probe() -> Callable[..., Any] | None:
    """``read_probe(fun, args, kwargs)`` (bridge/probe.cpp: a probe of a
    shapeless export read in C++) where the bridge loads, else None (the
    shapeless export then reads MLX's records in Python)."""
    module, _ = bridge()
    if module is None:
        return None
    call: Callable[..., Any] = module.read_probe
    return call


def read_constants(
    fd: int, path: str, offsets: list[int], shapes: list[list[int]], dtype_codes: list[int]
) -> list[mx.array] | None:
    """Arrays being read from an open file into fresh MLX memory, each waited
    for only where compute first uses it; None where the bridge cannot map
    (then the caller reads them itself)."""
    module, _ = bridge()
    how, _ = mapping()
    if module is None or how != "bridge":  # no bridge, or not MLX's CPU allocator
        return None
    arrays: list[mx.array] = module.read_constants(fd, path, offsets, shapes, dtype_codes)
    return arrays


def runtime() -> tuple[Any | None, str]:
    """The bridge's ``NativeFunction`` class (mlxfn's C++ runtime) when it is
    there, else (None, why not)."""
    module, why_not = bridge()
    if module is None:
        return None, why_not
    native = getattr(module, "NativeFunction", None)
    if native is None:
        return None, "the C++ bridge was built without mlxfn's C++ runtime"
    return native, ""


def _python_error(kind: int, message: str) -> Exception:
    """The exception mlxfn raises in Python for the core's error ``kind``
    (``MlxfnErrorKind`` in native/include/mlxfn/mlxfn_core.h)."""
    from . import errors

    if kind == 0:
        return FileNotFoundError(message)
    if kind == 1:
        return OSError(message)
    by_kind: dict[int, type[Exception]] = {
        2: errors.FormatError,
        3: errors.VersionError,
        4: errors.IntegrityError,
        5: ValueError,
    }
    return by_kind.get(kind, RuntimeError)(message)


def python_error(err: RuntimeError) -> Exception:
    """What mlxfn raises in Python for ``err`` from a native call: the
    bridge's ``NativeError(kind, message)`` as its kind's exception, any
    other error unchanged."""
    module, _ = bridge()
    if module is not None and isinstance(err, module.NativeError):
        kind, message = err.args
        return _python_error(kind, message)
    return err


def native_import(path: str, load: str) -> Any:
    """``NativeFunction(path, load)``; a file the runtime refuses raises what
    mlxfn raises in Python for that kind of problem."""
    module, _ = bridge()
    native, why_not = runtime()
    if module is None or native is None:
        raise RuntimeError(f"mlxfn's C++ runtime is not available: {why_not}")
    try:
        return native(path, load)
    except module.NativeError as err:
        raise python_error(err) from None


def native_import_bytes(data: bytes, load: str, verify: bool) -> Any:
    """``NativeFunction.from_bytes(data, load, verify)``, refusals raised as
    :func:`native_import` raises them."""
    module, _ = bridge()
    native, why_not = runtime()
    if module is None or native is None:
        raise RuntimeError(f"[import_function] importing from bytes needs mlxfn's C++ runtime: {why_not}")
    try:
        return native.from_bytes(data, load, verify)
    except module.NativeError as err:
        raise python_error(err) from None


def describe() -> dict[str, str]:
    """What ``mlxfn inspect`` and bug reports show: the bridge and the two answers."""
    module, why_not = bridge()
    how, map_reason = mapping()
    return {
        "bridge": f"built for MLX {module.MLX_VERSION}" if module is not None else why_not,
        "map": how or map_reason,
        "no_fuse": "yes" if no_fuse() is not None else "no",
        "runtime": "C++ (libmlxfn)" if runtime()[0] is not None else runtime()[1],
    }


def main() -> int:
    """What the bridge answers here (``make build`` prints it); status 1 if a
    Linux install has no working bridge (a build that lost it)."""
    for key, value in describe().items():
        print(f"{key}: {value}")
    module, _ = bridge()
    return 1 if sys.platform == "linux" and module is None else 0
