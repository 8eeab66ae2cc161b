"""Collectives of ``mx.distributed`` in exported files, and the group that runs them.

MLX 0.32.4 cannot export a collective, not even through its callback: its
tracer reads ``Sum AllReduce`` as a ``Sum`` reduction (``MemoryError:
std::bad_array_new_length``) and knows no state for AllGather, Send, Recv
or ReduceScatter.  So while mlxfn traces (:func:`intercepting`), each
``mx.distributed`` op called on the tracing thread returns a *stand-in*:
an ``AsStrided`` node of the op's input with the op's output shape and
dtype, whose offset marks the call.  :func:`rewrite` turns each stand-in's
record into the collective's own, with its parameters, the size of its
group and the rank that traced it, and drops what only stand-ins used.
Nothing is evaluated, so tracing never communicates.

Collectives in a file (node arguments; the last two are always the group
size and the writing rank):

    AllReduce      (kind, size, rank)   kind: "sum", "max" or "min"
    AllGather      (size, rank)
    ReduceScatter  ("sum", size, rank)
    Send           (dst, size, rank)
    Recv           (src, size, rank)    one input (recv_like: its shape and
                                        dtype, never its value) or none (recv)

Every collective of a file runs on one group: at import, the group of
``mx.distributed.init()`` or the ``group=`` given, which must have the
size and rank that wrote the file (:func:`group_for_import`).  The replay
(``replay/distributed.py``) runs them on it (:func:`current_group`).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

COLLECTIVES = frozenset({"AllReduce", "AllGather", "ReduceScatter", "Send", "Recv"})

# Stand-ins are AsStrided nodes whose offset is _MARK + a number unique in
# the process: no real strided view starts 7 EiB into its buffer.
_MARK = 0x6D6C7866 << 32  # "mlxf", below 2**63
_MARK_END = _MARK + (1 << 32)
_serial = itertools.count()
_made = 0  # stand-ins made in this process (none: no record can be one)


@dataclass(frozen=True)
class _Call:
    """One collective called during a trace."""

    op: str
    params: tuple[Any, ...]  # the arguments before the group size and rank
    size: int
    rank: int
    input_shape: tuple[int, ...] | None  # None: recv, which has no input


class Recorder:
    """The collectives one trace called, by the offset of their stand-ins."""

    def __init__(self) -> None:
        self.calls: dict[int, _Call] = {}

    def stand_in(self, call: _Call, source: mx.array, out: mx.array) -> mx.array:
        """An array shaped as ``out`` that depends on ``source`` and marks ``call``."""
        global _made
        mark = _MARK + next(_serial) % (1 << 32)
        _made += 1
        self.calls[mark] = call
        return mx.as_strided(source, tuple(out.shape), None, mark)


_local = threading.local()  # .recorder: the Recorder of this thread's trace
_install_lock = threading.Lock()
_installed = 0
_originals: dict[str, Any] = {}


def _recorder() -> Recorder | None:
    recorder: Recorder | None = getattr(_local, "recorder", None)
    return recorder


def _group(group: mx.distributed.Group | None) -> mx.distributed.Group:
    return group if group is not None else mx.distributed.init()


def _substitute(
    op: str, params: tuple[Any, ...], x: mx.array | None, group: Any, call_original: Callable[[], mx.array]
) -> mx.array:
    """The result of an ``mx.distributed`` op (the collective ``op`` with
    ``params``, on ``x``) while this module's wrappers are in place.

    MLX's own op is called first: it validates the arguments (raising its
    own errors) and gives the output's shape and dtype; its lazy result is
    never part of the trace.  A group of one has nothing to communicate:
    MLX's result (``x`` itself) is returned as it is."""
    real = call_original()
    recorder = _recorder()
    g = _group(group)
    if recorder is None or g.size() == 1:
        return real
    call = _Call(op, params, g.size(), g.rank(), None if x is None else tuple(x.shape))
    source = x if x is not None else mx.zeros((), real.dtype)
    return recorder.stand_in(call, source, real)


def _wrappers() -> dict[str, Callable[..., mx.array]]:
    """Replacements for the ops of ``mx.distributed``, same signatures."""
    orig = _originals

    def all_sum(x: mx.array, *, group: Any = None, stream: Any = None) -> mx.array:
        return _substitute("AllReduce", ("sum",), x, group, lambda: orig["all_sum"](x, group=group, stream=stream))

    def all_max(x: mx.array, *, group: Any = None, stream: Any = None) -> mx.array:
        return _substitute("AllReduce", ("max",), x, group, lambda: orig["all_max"](x, group=group, stream=stream))

    def all_min(x: mx.array, *, group: Any = None, stream: Any = None) -> mx.array:
        return _substitute("AllReduce", ("min",), x, group, lambda: orig["all_min"](x, group=group, stream=stream))

    def all_gather(x: mx.array, *, group: Any = None, stream: Any = None) -> mx.array:
        return _substitute("AllGather", (), x, group, lambda: orig["all_gather"](x, group=group, stream=stream))

    def sum_scatter(x: mx.array, *, group: Any = None, stream: Any = None) -> mx.array:
        return _substitute(
            "ReduceScatter",
            ("sum",),
            x,
            group,
            lambda: orig["sum_scatter"](x, group=group, stream=stream),
        )

    def send(x: mx.array, dst: int, *, group: Any = None, stream: Any = None) -> mx.array:
        return _substitute("Send", (int(dst),), x, group, lambda: orig["send"](x, dst, group=group, stream=stream))

    def recv(shape: Sequence[int], dtype: mx.Dtype, src: int, *, group: Any = None, stream: Any = None) -> mx.array:
        return _substitute(
            "Recv",
            (int(src),),
            None,
            group,
            lambda: orig["recv"](shape, dtype, src, group=group, stream=stream),
        )

    def recv_like(x: mx.array, src: int, *, group: Any = None, stream: Any = None) -> mx.array:
        return _substitute("Recv", (int(src),), x, group, lambda: orig["recv_like"](x, src, group=group, stream=stream))

    return {f.__name__: f for f in (all_sum, all_max, all_min, all_gather, sum_scatter, send, recv, recv_like)}


def _install() -> None:
    """Put the wrappers in ``mx.distributed`` (once for every open trace).

    They act only on a thread that is tracing: another thread calling
    ``mx.distributed`` meanwhile gets MLX's op unchanged."""
    global _installed
    with _install_lock:
        if _installed == 0:
            module: Any = mx.distributed
            wrappers = _wrappers()
            for name, wrapper in wrappers.items():
                _originals[name] = getattr(module, name)
                wrapper.__doc__ = _originals[name].__doc__
                setattr(module, name, wrapper)
        _installed += 1


def _uninstall() -> None:
    global _installed
    with _install_lock:
        _installed -= 1
        if _installed == 0:
            module: Any = mx.distributed
            for name, original in _originals.items():
                setattr(module, name, original)


@contextlib.contextmanager
def intercepting() -> Iterator[Recorder]:
    """While the block runs, this thread's ``mx.distributed`` calls make stand-ins."""
    recorder = Recorder()
    outer = _recorder()
    _local.recorder = recorder
    _install()
    try:
        yield recorder
    finally:
        _uninstall()
        _local.recorder = outer


# ----------------------------------------------------------------------------
# Turning stand-ins into collectives (on the records of MLX's export callback)


def _is_mark(record: dict[str, Any]) -> bool:
    args = record["arguments"]
    return (
        record["name"] == "AsStrided" and len(args) == 3 and isinstance(args[2], int) and _MARK <= args[2] < _MARK_END
    )


def rewrite(records: list[dict[str, Any]], recorder: Recorder) -> list[dict[str, Any]]:
    """MLX's records with each stand-in made the collective it marks.

    A stand-in's input is the collective's input, or (when that is not
    one-dimensional) MLX's ``Flatten``/``Reshape`` of it: the collective
    takes the array before it.  Nodes and constants that only stand-ins
    used are dropped."""
    if _made == 0:
        return records  # no stand-in made in this process: none to find (a shapeless export reads every probe)
    if not any(r["type"] == "primitive" and _is_mark(r) for r in records):
        return records
    producers = {name: rec for rec in records if rec["type"] == "primitive" for name, _, _ in rec["outputs"]}
    out = []
    for rec in records:
        if rec["type"] == "primitive" and _is_mark(rec):
            rec = _collective_record(rec, recorder, producers)
        out.append(rec)
    return _drop_unused(out)


def _collective_record(rec: dict[str, Any], recorder: Recorder, producers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    call = recorder.calls.get(rec["arguments"][2])
    if call is None:
        raise RuntimeError(
            "[export_function] an mx.distributed result made while tracing another function reached this "
            "trace (a collective's output kept between calls?): trace the function that computes it"
        )
    inputs: list[Any] = []
    if call.input_shape is not None:
        (source,) = rec["inputs"]
        if tuple(source[1]) != call.input_shape:  # MLX flattened the input for its as_strided
            (source,) = producers[source[0]]["inputs"]
        if tuple(source[1]) != call.input_shape:
            raise RuntimeError(f"[export_function] mlxfn could not find the input of an mx.distributed {call.op}")
        inputs = [source]
    return {
        "type": "primitive",
        "name": call.op,
        "arguments": [*call.params, call.size, call.rank],
        "inputs": inputs,
        "outputs": rec["outputs"],
    }


def _drop_unused(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records without the nodes and constants no output depends on.

    MLX's tape holds only what its outputs need, in order; a node that
    nothing uses now was used by a stand-in alone."""
    used = {name for rec in records if rec["type"] == "outputs" for name, _, _ in rec["outputs"]}
    live: set[int] = set()
    for index in range(len(records) - 1, -1, -1):
        rec = records[index]
        if rec["type"] == "primitive" and any(name in used for name, _, _ in rec["outputs"]):
            live.add(index)
            used.update(name for name, _, _ in rec["inputs"])
    out = []
    for index, rec in enumerate(records):
        if rec["type"] == "primitive" and index not in live:
            continue
        if rec["type"] == "constants":
            rec = {**rec, "constants": [(name, value) for name, value in rec["constants"] if name in used]}
        out.append(rec)
    return out


# ----------------------------------------------------------------------------
# Import: the group a file's collectives run on


def group_of(op: str, args: Sequence[Any]) -> tuple[int, int] | None:
    """``(size, rank)`` recorded in a collective node, or None for another node."""
    if op not in COLLECTIVES:
        return None
    size, rank = args[-2], args[-1]
    if not (isinstance(size, int) and isinstance(rank, int) and 0 <= rank < size):
        raise ValueError(f"a {op} node records no valid group size and rank: {list(args)}")
    return size, rank


def recorded_group(nodes: Sequence[tuple[str, Sequence[Any]]], where: str) -> tuple[int, int] | None:
    """The ``(size, rank)`` that wrote the collectives among ``nodes``
    (``(op, args)`` pairs), or None when there are none."""
    found: tuple[int, int] | None = None
    for op, args in nodes:
        group = group_of(op, args)
        if group is None:
            continue
        if found is not None and group != found:
            raise ValueError(
                f"{where}: its collectives were traced on groups of different sizes or ranks "
                f"({_describe(found)} and {_describe(group)})"
            )
        found = group
    return found


def _describe(group: tuple[int, int]) -> str:
    size, rank = group
    return f"rank {rank} of a group of {size} process{'es' if size != 1 else ''}"


def group_for_import(
    path: str, recorded: tuple[int, int] | None, group: mx.distributed.Group | None
) -> mx.distributed.Group | None:
    """The group a file's collectives run on; a ValueError naming both
    when it is not the size and rank that wrote the file.

    No collective in the file: None (no group is needed, none is made)."""
    if recorded is None:
        return None
    g = _group(group)
    mine = (g.size(), g.rank())
    if mine != recorded:
        source = "the group given" if group is not None else "mx.distributed.init()"
        raise ValueError(
            f"[import_function] {path} was exported on {_describe(recorded)}, but this process is "
            f"{_describe(mine)} ({source}): import it on rank {recorded[1]} of a group of {recorded[0]}, "
            "or import this rank's own file"
        )
    return g


_current: contextvars.ContextVar[mx.distributed.Group | None] = contextvars.ContextVar("mlxfn_group", default=None)


@contextlib.contextmanager
def running_on(group: mx.distributed.Group | None) -> Iterator[None]:
    """Run the collectives of the replays called in the block on ``group``."""
    token = _current.set(group)
    try:
        yield
    finally:
        _current.reset(token)


def current_group() -> mx.distributed.Group:
    """The group of the import being called (``mx.distributed.init()`` outside one)."""
    return _group(_current.get())
