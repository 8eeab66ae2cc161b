"""How an imported trace runs, call after call.

A replay (``replay.build_replay``) rebuilds the graph in Python, node by node.
``mx.compile`` traces it once and then replays MLX's tape from C++, so later
calls pay no Python per node; by default it also *fuses* elementwise chains,
and on CPU every new fused kernel is compiled with the system C++ compiler:
seconds on a machine whose MLX kernel cache (``$TMPDIR/mlx``) is empty.
Measured here on the 1,943-node benchmark graph, cold: 5.3 s at the call
that compiles, against 8 ms for a call of MLX's own import.

So, on CPU with the C++ bridge:

- the first call compiles **without fusion** (MLX's compile mode ``no_fuse``,
  which only the bridge can set): the trace that checks every node's shape
  is also the compile, and later calls replay the tape;
- the call after ``FUSE_AFTER_CALLS`` calls compiles again **with fusion**:
  a long-running process pays the kernel builds once and then runs faster
  (0.005 s against 0.008 s per call on that graph, warm);
- once a trace has been fused, a marker in MLX's kernel cache directory
  says its kernels are built: later processes fuse after
  ``FUSE_AFTER_CALLS_CACHED`` calls.  Fusing then costs a trace and loading
  the cached kernels (~20 ms on that graph) against ~2 ms saved per call,
  so it still waits a few calls rather than slowing the first ones.

Without the bridge (macOS, CUDA) the first call replays in Python and the
second compiles with fusion, as before.  With compilation disabled
(``mx.disable_compile()``, ``MLX_DISABLE_COMPILE``) every call replays.

Threads.  MLX keeps its compile cache per thread (a ``thread_local`` in
``mlx/compile.cpp``): a compiled function called on a new thread traces
there again, and the entry it leaves holds a Python object whose destructor
takes the GIL.  A thread's cache is destroyed after the thread has left
Python (its C++ thread-local destructors run after ``Thread.join()`` has
returned), so an entry still there can meet an interpreter that is
finalizing: ``take_gil`` then ends the thread with ``pthread_exit``, whose
unwinding through that destructor calls ``std::terminate`` and the process
aborts at exit (status 134).  So each thread gets its own compiled
functions, held in a ``threading.local``: CPython drops a thread's
``threading.local`` values while that thread still holds the GIL, before
``join()`` returns, and dropping a compiled function erases its entries from
its thread's cache.  Nothing Python-owned is left for the thread-local
destructor.  Calls on a worker thread stay compiled: measured on a
581-node graph, a steady call costs 0.9-1.2 ms on the main thread and
1.1-1.2 ms on a worker, against 2.4-3.7 ms for the Python replay.  Each
thread pays one trace, which MLX's per-thread cache would make it pay anyway.
(A daemon thread still inside MLX when the interpreter exits aborts it
whatever mlxfn does: plain ``mx.eval`` there does too.)
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx

from . import _native
from ._mlx import MLX_VERSION

FUSE_AFTER_CALLS = 64
FUSE_AFTER_CALLS_CACHED = 8
Replay = Callable[..., tuple[mx.array, ...]]


def compile_enabled() -> bool:
    """Whether ``mx.compile`` compiles now (a compiled function traces once)."""
    calls = 0

    def probe(x: mx.array) -> mx.array:
        nonlocal calls
        calls += 1
        return x

    compiled = mx.compile(probe)
    x = mx.array(0)
    compiled(x)
    compiled(x)
    return calls == 1


def _no_fuse() -> Callable[..., Any] | None:
    """``trace_without_fusion(fn, *args)`` where the bridge can set MLX's
    compile mode in this process (``_native.no_fuse``), else None."""
    return _native.no_fuse()


def _marker(key: str) -> Path:
    """Where a fused trace leaves its marker: beside MLX's CPU kernels."""
    return Path(tempfile.gettempdir()) / "mlx" / MLX_VERSION / "cpu" / "mlxfn" / key


def _compiled(replay: Replay, shapeless: bool = False) -> Replay:
    # A new function object each time: mx.compile caches by function identity.
    compiled: Replay = mx.compile(lambda *xs: replay(*xs), shapeless=shapeless)
    return compiled


class _PerThread(threading.local):
    """One thread's compiled function for a runner: ``(fused, function)``.

    A ``threading.local`` value is dropped when its thread ends (while that
    thread still holds the GIL) or when the runner is dropped; either way
    the compiled function goes, and with it its entries in the thread's MLX
    compile cache (see the module doc)."""

    compiled: tuple[bool, Replay] | None = None


class Runner:
    """Runs one trace (at one set of sizes) with the policy of the module doc.

    ``key`` names the trace for the fused-kernel marker (None: no marker).
    ``plain_first``: the first call replays in Python (the sizes of a dynamic
    trace may never come again: a decode step's cache grows every call).
    ``legacy_shapeless``: a format-1 shapeless trace, replayed the way MLX
    does (``mx.compile(shapeless=True)`` from the second call)."""

    def __init__(
        self, replay: Replay, key: str | None, plain_first: bool = False, legacy_shapeless: bool = False
    ) -> None:
        self._replay = replay
        self._key = key
        self._plain_first = plain_first
        self._legacy = legacy_shapeless
        self._plan = ""
        self._calls = 0
        self._stage = "replay"  # what calls run now: "replay", "compiled" or "fused"
        self._threads = _PerThread()
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """What the next call runs: "replay", "compiled" (no fusion) or "fused"."""
        return self._stage

    def __call__(self, *inputs: mx.array) -> tuple[mx.array, ...]:
        with self._lock:
            self._calls += 1
            run = self._next()
        return run(*inputs)

    def _choose(self) -> str:
        """How this runner compiles, decided at its first call."""
        if self._legacy:
            return "legacy"
        if not compile_enabled():
            return "replay"
        if _no_fuse() is None:
            return "fuse-second"
        return "fuse-cached" if self._key is not None and _marker(self._key).exists() else "fuse-late"

    def _on_this_thread(self, fused: bool) -> Replay:
        """This thread's compiled function, made at its first call here.

        A thread's first call traces (MLX's compile cache is per thread);
        without fusion that trace runs with the bridge's compile mode
        ``no_fuse``.  Making a fused one drops this thread's unfused one."""
        held = self._threads.compiled
        if held is not None and held[0] == fused:
            return held[1]
        self._threads.compiled = None  # the unfused one goes before the fused trace
        # A thread's default stream is made at its first use; a compiled call
        # made before it exists traces twice (mlx 0.32.4): make it first.
        mx.default_stream(mx.default_device())
        without_fusion = None
        if not fused:
            without_fusion = _no_fuse()
            assert without_fusion is not None  # unfused compiles are chosen only with the bridge
        compiled = _traced_alone(_compiled(self._replay, shapeless=self._legacy), without_fusion)
        self._threads.compiled = (fused, compiled)
        return compiled

    def _fuse(self) -> Replay:
        self._stage = "fused"
        return self._on_this_thread(fused=True)

    def _next(self) -> Replay:
        """What this call runs (called with the lock held)."""
        if self._stage == "fused":
            return self._on_this_thread(fused=True)
        first = self._calls == 1
        if first and self._plain_first:
            return self._replay  # decided later: a decode step's sizes may never come again
        if not self._plan:
            self._plan = self._choose()
        if self._plan == "replay" or (first and self._plan in ("legacy", "fuse-second")):
            return self._replay
        if self._plan in ("legacy", "fuse-second"):
            return self._fuse()
        # "fuse-late", "fuse-cached": the tape without fused kernels first
        if self._stage == "compiled" and self._calls > (
            FUSE_AFTER_CALLS_CACHED if self._plan == "fuse-cached" else FUSE_AFTER_CALLS
        ):
            if self._key is not None and self._plan == "fuse-late":
                _leave_marker(self._key)
            return self._fuse()
        self._stage = "compiled"
        return self._on_this_thread(fused=False)


# MLX's compile mode is one setting for the whole process: while one thread
# traces without fusion, another thread's trace would be unfused too (or the
# reverse).  mlxfn's traces take turns; calls after a trace take no lock.
_TRACING = threading.Lock()


def _traced_alone(compiled: Replay, without_fusion: Callable[..., Any] | None) -> Replay:
    """``compiled``, whose first call (the trace) holds ``_TRACING``, made
    through ``without_fusion`` (MLX's compile mode ``no_fuse``) when given."""
    traced = False

    def call(*xs: mx.array) -> tuple[mx.array, ...]:
        nonlocal traced
        if traced:
            return compiled(*xs)
        with _TRACING:
            out: tuple[mx.array, ...] = without_fusion(compiled, *xs) if without_fusion else compiled(*xs)
        traced = True
        return out

    return call


def _leave_marker(key: str) -> None:
    try:
        path = _marker(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:  # a read-only temporary directory: later processes just fuse later
        pass


__all__ = ["Runner", "compile_enabled", "FUSE_AFTER_CALLS", "FUSE_AFTER_CALLS_CACHED"]
