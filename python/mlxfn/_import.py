"""Import: map the file, rebuild each trace from MLX ops on first use."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable

import mlx.core as mx

from . import _mlxfn
from ._load import LoadMode, Mapper, choose, load_constants
from ._signature import Signature, TensorSpec, no_match_error, split_inputs
from .errors import FormatError
from .replay import build_replay, check_handlers
from .trace import Node

PathLike = str | os.PathLike[str]
_CALL = "[import_function::call]"


class _TraceEntry:
    """A trace as read from the file, and its compiled replay once built."""

    def __init__(self, record: dict[str, Any], shapeless: bool) -> None:
        inputs = [TensorSpec(tuple(shape), dtype) for shape, dtype in record["inputs"]]
        names = list(record["keyword_names"])
        n_pos = len(inputs) - len(names)
        self.signature = Signature(tuple(inputs[:n_pos]), tuple(zip(names, inputs[n_pos:])))
        self.constants: list[int] = list(record["constants"])
        self.nodes = [
            Node(op, tuple(args), tuple(ins), tuple((tuple(s), d) for s, d in outs), shapeless)
            for op, args, ins, outs in record["nodes"]
        ]
        self.outputs: list[int] = list(record["outputs"])
        self.replay: Callable[..., tuple[mx.array, ...]] | None = None
        self.compiled: Callable[..., tuple[mx.array, ...]] | None = None


# Constants already in MLX memory, by content: every import of a file, and of
# any file holding the same weights, shares one copy while any of them lives.
# The key is the hash the file *stores*, so an array loaded from a damaged
# copy (imported without verify) sits under the good hash.  Arrays whose bytes
# were checked against it (loaded by a verify=True import) are also kept in
# _VERIFIED, and verify=True imports take only from there.
_Key = tuple[int, str, tuple[int, ...]]
_SHARED: "weakref.WeakValueDictionary[_Key, mx.array]" = weakref.WeakValueDictionary()
_VERIFIED: "weakref.WeakValueDictionary[_Key, mx.array]" = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


class ImportedFunction:
    """A function imported from an mlxfn file; call it like the original.

    ``import_function`` only maps and validates the file.  The first call of a
    trace makes its constants into arrays once (shared by every trace of the
    file, and by other imports of the same weights): mapped in place or
    copied, as ``load_mode`` says.  It replays the rebuilt graph op by op.  Later calls run it
    through ``mx.compile``, so they pay no Python per node.  The first call
    avoids compile because on CPU compile fuses elementwise chains into
    kernels built by the system C++ compiler (seconds for a large model the
    first time on a machine; MLX caches them on disk).  Shapeless traces always
    run compiled: ``mx.compile(shapeless=True)`` applies each primitive's own
    shape rules, as MLX's import does, so a shape MLX refuses is refused here.
    """

    def __init__(self, file: _mlxfn.File, verified: bool = False, load: str = "auto") -> None:
        self._file = file
        self._verified = verified  # file.verify() passed: its constants match their hashes
        self._load = choose(load)
        self._mapper = Mapper(file, self._load.how) if self._load.mode == "map" else None
        self._shapeless = file.shapeless
        self._traces = [_TraceEntry(r, file.shapeless) for r in file.traces()]
        for t, entry in enumerate(self._traces):
            check_handlers(entry.nodes, f"{file.path}: trace {t}")
        self._constant_infos = file.constant_infos()
        self._constant_keys = [
            (h, str(dtype), tuple(shape))
            for h, (shape, dtype, _) in zip(file.constant_hashes(), self._constant_infos)
        ]
        self._constants: dict[int, mx.array] = {}
        self._lock = threading.Lock()

    @property
    def metadata(self) -> str:
        return self._file.metadata

    @property
    def load_mode(self) -> LoadMode:
        """How this import turns constants into arrays: ``.mode`` is "map"
        (the arrays are the file's pages) or "copy"; ``.reason`` says why."""
        return self._load

    def _materialize(self, indices: list[int]) -> list[mx.array]:
        with _SHARED_LOCK:
            source = _VERIFIED if self._verified else _SHARED
            missing = []
            for i in dict.fromkeys(indices):
                if i in self._constants:
                    continue
                shared = source.get(self._constant_keys[i])
                if shared is None:
                    missing.append(i)
                else:
                    self._constants[i] = shared
            if missing:
                loaded = load_constants(self._file, self._load, self._mapper, self._constant_infos, missing)
                for i, arr in loaded.items():
                    _SHARED[self._constant_keys[i]] = arr
                    if self._verified:
                        _VERIFIED[self._constant_keys[i]] = arr
                self._constants.update(loaded)
        return [self._constants[i] for i in indices]

    def _runner(self, entry: _TraceEntry) -> Callable[..., tuple[mx.array, ...]]:
        """The function to run this call: plain replay first, compiled after."""
        with self._lock:
            if entry.replay is None:
                constants = self._materialize(entry.constants)
                where = f"{self._file.path}: trace {self._traces.index(entry)}"
                entry.replay = build_replay(
                    entry.nodes, constants, entry.outputs, where, check_shapes=not self._shapeless
                )
                if not self._shapeless:
                    return entry.replay
            if entry.compiled is None:
                entry.compiled = mx.compile(entry.replay, shapeless=self._shapeless)
            return entry.compiled

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[mx.array, ...]:
        positional, keywords = split_inputs(args, kwargs, _CALL)
        call = Signature.of(positional, keywords)
        for entry in self._traces:
            if entry.signature.matches(call, self._shapeless):
                inputs = positional + [keywords[k] for k in entry.signature.keyword_names]
                return self._runner(entry)(*inputs)
        raise no_match_error(_CALL, [t.signature for t in self._traces], call)


def _import_mlx_native(path: str) -> tuple[Callable[..., tuple[mx.array, ...]], str]:
    fn, metadata = mx.import_function(path, return_metadata=True)
    return fn, metadata


def import_function(
    file: PathLike, return_metadata: bool = False, *, verify: bool = False, load: str = "auto"
) -> Any:
    """Import a function exported by mlxfn (or by MLX's own exporter).

    ``verify=True`` checks every constant against the hash stored in the file
    (reading all of it) and raises :class:`mlxfn.IntegrityError` on a mismatch.

    ``load`` chooses how constants become arrays at a trace's first call:
    ``"auto"`` maps them where MLX can run on the mapped file (Linux CPU with
    the C++ bridge, unified memory) and copies them elsewhere; ``"map"``
    raises ``ValueError`` where mapping is impossible; ``"copy"`` always
    copies (a mapped import reads the file for as long as it lives, so
    choose it for files that may be rewritten in place).
    """
    path = os.fspath(file)
    if not isinstance(path, str):
        raise TypeError(f"file must be a str or os.PathLike[str], not {type(file).__name__}")
    kind, _ = _mlxfn.sniff(path)
    if kind == "mlx":
        fn, metadata = _import_mlx_native(path)
    elif kind == "mlxfn":
        handle = _mlxfn.File.open(path)
        if verify:
            handle.verify()
        fn = ImportedFunction(handle, verified=verify, load=load)
        metadata = handle.metadata
    elif os.path.getsize(path) == 0:
        raise FormatError(f"{path}: not an mlxfn file (the file is empty)")
    else:
        raise FormatError(f"{path}: not an mlxfn file nor a file written by MLX's exporter")
    return (fn, metadata) if return_metadata else fn
