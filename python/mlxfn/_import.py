"""Import: map the file, rebuild each trace from MLX ops on first use.

Calls run through mlxfn's C++ runtime (``libmlxfn.so`` through the bridge,
``_native.native_import``) where it is present: it rebuilds the graph in
C++, so a call pays no Python per node (a decode step, whose cache length
is new at every call, included).  The Python replay (``replay/``,
``_runner``) is the portable fallback: wheels without the bridge
(``MLXFN_NO_BRIDGE=1``, other platforms), and files the runtime is not
asked to serve here (collectives, which run on the ``group=`` given to the
import).  ``ImportedFunction.runtime`` says which runs, and why.

``MLXFN_RUNTIME`` chooses: ``auto`` (the default), ``python`` (always the
replay: the test suite runs both) or ``native`` (an error where the runtime
is missing; a file it is not asked to serve still replays, and says why).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from typing import Any

import mlx.core as mx

from . import _mlxfn, _native
from ._load import LoadMode, Mapper, check_load, choose, load_constants
from ._mlx import import_with_metadata
from ._runner import Runner
from ._signature import no_match_error, split_inputs
from .distributed import COLLECTIVES, group_for_import, recorded_group, running_on
from .ir import Signature, Trace
from .replay import build_replay, check_handlers

PathLike = str | os.PathLike[str]
_CALL = "[import_function::call]"
# Runners kept per dynamic trace: one per recent set of sizes (a compiled
# tape each); a decode step's sizes change every call, a prefill's repeat.
_RUNNERS_PER_TRACE = 16
RUNTIME_ENV = "MLXFN_RUNTIME"
_RUNTIMES = ("auto", "python", "native")


def runtime_choice() -> str:
    """``MLXFN_RUNTIME`` (read at each import), "auto" when unset."""
    value = os.environ.get(RUNTIME_ENV, "auto") or "auto"
    if value not in _RUNTIMES:
        raise ValueError(f"{RUNTIME_ENV}={value!r}: expected one of {', '.join(_RUNTIMES)}")
    return value


class _Entry:
    """One trace of the file and how it runs, per set of dynamic sizes."""

    def __init__(self, record: dict[str, Any], index: int, legacy_shapeless: bool) -> None:
        self.record = record
        self.head = Trace.from_record(record, legacy_shapeless, nodes=False)  # signature and sizes
        self._trace: Trace | None = None
        self.index = index
        self.legacy_shapeless = legacy_shapeless  # format 1: MLX's shapeless semantics
        self.runners: OrderedDict[tuple[int, ...], Runner] = OrderedDict()

    @property
    def trace(self) -> Trace:
        """The whole trace, decoded at its first use (a large graph's nodes cost)."""
        if self._trace is None:
            self._trace = Trace.from_record(self.record, self.legacy_shapeless)
        return self._trace

    def sizes_for(self, call: Signature) -> tuple[int, ...] | None:
        if self.legacy_shapeless:
            return () if self.head.signature.same_kinds(call) else None
        return self.head.sizes_for(call)


# Constants already in MLX memory, handed from one import to another only
# where no one can tell (the README's "Loading: mapped or copied"):
#
# - _SHARED, by the scope they were loaded in: mode ("map" or "copy") and the
#   identity of the file (device, inode, size, modification and change
#   times).  Mapped imports of one unchanged file share arrays over its
#   pages; copying imports of one unchanged file share copies.  A copying
#   import never takes a mapped array (it asked for private memory: a
#   rewrite or truncation of some other mapped file must not reach it), a
#   rewritten file is a new identity, and a damaged file feeds only imports
#   of the same bytes.
# - _VERIFIED, by content: copies whose bytes a verify=True import checked
#   against the hash its file stores.  Verified copying imports of any file
#   share them; no other import takes from there.
#
# Both are keyed first by the stored hash (dtype and shape follow), and hold
# weak references: an entry lives while some import holds the array.
_Key = tuple[int, str, tuple[int, ...]]
_Identity = tuple[int, int, int, int, int]
_Scope = tuple[str, _Identity]
_ScopedKey = tuple[int, str, tuple[int, ...], _Scope]
_SHARED: weakref.WeakValueDictionary[_ScopedKey, mx.array] = weakref.WeakValueDictionary()
_VERIFIED: weakref.WeakValueDictionary[_Key, mx.array] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


class _Native:
    """A function imported by the C++ runtime, held where imports of the same
    unchanged file in the same mode find it (``_NATIVE``): they share its
    constants and its rebuilt traces, as Python imports share ``_SHARED``."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn


_NATIVE: weakref.WeakValueDictionary[_Scope, _Native] = weakref.WeakValueDictionary()


def _identity(file: _mlxfn.File) -> _Identity | None:
    """The open file's identity: what an import of the same, unchanged file
    also finds (None for a file not read from disk: it shares nothing)."""
    fd = file.fileno()
    if fd < 0:
        return None
    st = os.fstat(fd)
    file.check_unchanged()  # the stat describes the bytes the import validated
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ImportedFunction:
    """A function imported from an mlxfn file; call it like the original.

    ``import_function`` only maps and validates the file.  The first call of a
    trace makes its constants into arrays once (shared by every trace of the
    file, and with other imports where no one can tell: mapped imports of
    the same unchanged file, copying imports of the same unchanged file,
    copying imports whose files were verified): mapped in place or copied,
    as ``load_mode`` says.  Calls run in mlxfn's C++ runtime where it is
    present (``runtime == "native"``: the constants are the runtime's, shared
    by imports of the same unchanged file in the same mode), else in the
    Python replay as ``mlxfn._runner`` decides: compiled without fused
    kernels first (no kernel builds on a cold machine), fused once the trace
    has been called often.  A dynamic trace (exported with
    ``shapeless=True``) serves every size in its ranges: its numbers are
    evaluated for the call's sizes and every node's output shape is checked
    on the first call at those sizes.
    """

    def __init__(
        self,
        file: _mlxfn.File,
        verified: bool = False,
        load: str = "auto",
        group: mx.distributed.Group | None = None,
        runtime: str = "auto",
    ) -> None:
        self._file = file
        self._verified = verified  # file.verify() passed: its constants match their hashes
        self._load = choose(load)
        self._legacy = file.shapeless and file.format_version == 1
        self._entry_list: list[_Entry] | None = None  # decoded where the Python replay needs them
        self._constant_infos = file.constant_infos()
        self._constant_keys = [
            (h, str(dtype), tuple(shape)) for h, (shape, dtype, _) in zip(file.constant_hashes(), self._constant_infos)
        ]
        identity = _identity(file)
        self._scope: _Scope | None = None if identity is None else (self._load.mode, identity)
        self._constants: dict[int, mx.array] = {}
        self._checksum = f"{file.graph_checksum:08x}"
        self._lock = threading.Lock()
        self._native: _Native | None = None
        self._native_checked = False  # the first native call checks the file is unchanged
        self._runtime_reason = self._open_native(runtime)
        self._group: mx.distributed.Group | None = None
        self._mapper: Mapper | None = None
        if self._native is None:
            for entry in self._entries:
                check_handlers([n[0] for n in entry.record["nodes"]], f"{file.path}: trace {entry.index}")
            collectives = [(n[0], n[1]) for e in self._entries for n in e.record["nodes"] if n[0] in COLLECTIVES]
            # The group the file's collectives run on (None: it has none).
            self._group = group_for_import(file.path, recorded_group(collectives, file.path), group)
            self._mapper = Mapper(file, self._load.how) if self._load.mode == "map" else None

    @property
    def _entries(self) -> list[_Entry]:
        """The file's traces as the Python replay reads them, decoded at first
        use: an import served by the C++ runtime decodes them only to word
        an error or for ``traces``."""
        if self._entry_list is None:
            self._entry_list = [_Entry(r, t, self._legacy) for t, r in enumerate(self._file.traces())]
        return self._entry_list

    def _open_native(self, runtime: str) -> str:
        """Import through the C++ runtime where it serves this file (sets
        ``_native``); returns why the Python replay runs instead, or ""."""
        if runtime == "python":
            return f"{RUNTIME_ENV}=python"
        native, why_not = _native.runtime()
        if native is None:
            if runtime == "native":
                raise RuntimeError(f"{RUNTIME_ENV}=native, but mlxfn's C++ runtime is not available: {why_not}")
            return why_not
        with _SHARED_LOCK:
            shared = None if self._scope is None else _NATIVE.get(self._scope)
            if shared is None:
                try:
                    shared = _Native(_native.native_import(self._file.path, self._load.mode))
                except (ValueError, RuntimeError) as err:  # refused here; the replay may serve it
                    if runtime == "native":
                        raise
                    return f"the C++ runtime refused the file: {err}"
                if COLLECTIVES.intersection(shared.fn.primitives):
                    return "the file has collectives, which the Python replay runs on the import's group"
                if self._scope is not None:
                    _NATIVE[self._scope] = shared
        self._native = shared
        return ""

    @property
    def runtime(self) -> str:
        """What runs calls: "native" (mlxfn's C++ runtime) or "python" (the
        replay), with the reason for the replay: "python (why)"."""
        return "native" if self._native is not None else f"python ({self._runtime_reason})"

    @property
    def metadata(self) -> str:
        return self._file.metadata

    @property
    def load_mode(self) -> LoadMode:
        """How this import turns constants into arrays: ``.mode`` is "map"
        (the arrays are the file's pages) or "copy"; ``.reason`` says why."""
        return self._load

    @property
    def traces(self) -> tuple[Trace, ...]:
        """The file's traces (``Trace.dims`` holds a dynamic trace's ranges)."""
        return tuple(e.trace for e in self._entries)

    def _materialize(self, indices: tuple[int, ...]) -> list[mx.array]:
        with _SHARED_LOCK:
            wanted = [i for i in dict.fromkeys(indices) if i not in self._constants]
            if wanted:
                # As an import that shares nothing: refuse a file rewritten in
                # place since the import, even when every array is shared.
                self._file.check_unchanged()
                missing = []
                for i in wanted:
                    shared = self._shared(self._constant_keys[i])
                    if shared is None:
                        missing.append(i)
                    else:
                        self._constants[i] = shared
                if missing:
                    self._constants.update(
                        load_constants(self._file, self._load, self._mapper, self._constant_infos, missing)
                    )
                for i in wanted:
                    key = self._constant_keys[i]
                    if self._scope is not None:
                        _SHARED.setdefault((*key, self._scope), self._constants[i])
                    if self._verified and self._load.mode == "copy":  # bytes verify() checked
                        _VERIFIED.setdefault(key, self._constants[i])
        return [self._constants[i] for i in indices]

    def _shared(self, key: _Key) -> mx.array | None:
        """An array another import loaded that this one may use as its own."""
        shared = None if self._scope is None else _SHARED.get((*key, self._scope))
        if shared is None and self._verified and self._load.mode == "copy":
            shared = _VERIFIED.get(key)
        return shared

    def _runner(self, entry: _Entry, sizes: tuple[int, ...]) -> Runner:
        """The runner of ``entry`` at ``sizes``: built at the first call at them."""
        with self._lock:
            runner = entry.runners.get(sizes)
            if runner is not None:
                entry.runners.move_to_end(sizes)
                return runner
            trace = entry.trace
            constants = self._materialize(trace.constants)
            for position, value in trace.constant_values(sizes).items():
                constants[position] = mx.array(value, dtype=constants[position].dtype).reshape(
                    constants[position].shape
                )
            concrete = trace.concrete(sizes)
            where = f"{self._file.path}: trace {entry.index}"
            if trace.dims:
                where += " at sizes " + ", ".join(f"d{d}={s}" for d, s in enumerate(sizes))
            replay = build_replay(
                concrete.nodes, constants, concrete.outputs, where, check_shapes=not entry.legacy_shapeless
            )
            key = f"{self._checksum}-{entry.index}-" + "x".join(map(str, sizes))
            runner = Runner(replay, key, plain_first=bool(trace.dims), legacy_shapeless=entry.legacy_shapeless)
            entry.runners[sizes] = runner
            if len(entry.runners) > _RUNNERS_PER_TRACE:
                entry.runners.popitem(last=False)
            return runner

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[mx.array, ...]:
        positional, keywords = split_inputs(args, kwargs, _CALL)
        if self._native is not None:
            if not self._native_checked:
                # As a Python import at its first call: refuse a file rewritten
                # in place since the import, even when a shared import did the loading.
                self._file.check_unchanged()
                self._native_checked = True
            try:
                return _call_native(self._native.fn, positional, keywords)
            except ValueError as err:
                if not str(err).startswith(f"{_CALL} No imported function found"):
                    raise
            # The runtime writes MLX's C++ text; Python callers get MLX's Python one.
            call = Signature.of(positional, keywords)
            raise no_match_error(_CALL, [e.head for e in self._entries], call) from None
        call = Signature.of(positional, keywords)
        for entry in self._entries:
            sizes = entry.sizes_for(call)
            if sizes is not None:
                inputs = positional + [keywords[k] for k in entry.head.signature.keyword_names]
                if self._group is None:
                    return self._runner(entry, sizes)(*inputs)
                with running_on(self._group):
                    return self._runner(entry, sizes)(*inputs)
        raise no_match_error(_CALL, [e.head for e in self._entries], call)


def _call_native(fn: Any, positional: list[mx.array], keywords: dict[str, mx.array]) -> tuple[mx.array, ...]:
    """A call of a ``NativeFunction``, its errors raised as mlxfn raises them."""
    try:
        return tuple(fn(positional, keywords))
    except RuntimeError as err:
        raise _native.python_error(err) from err.__cause__


class MemoryImportedFunction:
    """A function imported from an mlxfn file held in ``bytes`` (an app's
    bundled asset), by mlxfn's C++ runtime: the only runtime that reads a
    file from memory.  Its constants are copied at a trace's first call (an
    array over the bytes could outlive them), so ``load_mode`` is "copy"."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    @property
    def metadata(self) -> str:
        metadata: str = self._fn.metadata
        return metadata

    @property
    def load_mode(self) -> LoadMode:
        return LoadMode("copy", "copy", "imported from bytes, whose arrays could outlive them")

    @property
    def runtime(self) -> str:
        return "native"

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[mx.array, ...]:
        positional, keywords = split_inputs(args, kwargs, _CALL)
        return _call_native(self._fn, positional, keywords)


def _import_bytes(data: bytes, verify: bool, load: str, group: mx.distributed.Group | None) -> MemoryImportedFunction:
    check_load(load)
    if load == "map":
        raise ValueError(
            "[import_function] load='map' is not possible for bytes: an array over them could outlive them "
            "(import the file by its path to map it)"
        )
    if group is not None:
        raise ValueError("[import_function] group= is not possible for bytes: import the file by its path")
    return MemoryImportedFunction(_native.native_import_bytes(data, load, verify))


class MlxImportedFunction:
    """A function from a file in MLX's own format, imported by MLX itself
    (``mx.import_function``): calls go to MLX's function unchanged, so it
    behaves exactly as MLX's import (keyword inputs, ``mx.grad``,
    ``mx.vmap``).  MLX reads the constants from the file at the first call
    into its own memory: ``load_mode`` says "copy"."""

    def __init__(self, fn: Any, metadata: str) -> None:
        self._fn = fn
        self._metadata = metadata

    @property
    def metadata(self) -> str:
        return self._metadata

    @property
    def load_mode(self) -> LoadMode:
        return LoadMode("copy", "mlx", "a file in MLX's format is loaded by MLX itself")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)


def import_function(
    file: PathLike | bytes,
    return_metadata: bool = False,
    *,
    verify: bool = False,
    load: str = "auto",
    group: mx.distributed.Group | None = None,
) -> Any:
    """Import a function exported by mlxfn (or by MLX's own exporter).

    ``verify=True`` checks every constant against the hash stored in the file
    (reading all of it) and raises :class:`mlxfn.IntegrityError` on a mismatch.

    ``load`` chooses how constants become arrays at a trace's first call:
    ``"auto"`` maps them where MLX can run on the mapped file (Linux CPU with
    the C++ bridge, unified memory) and copies them elsewhere; ``"map"``
    raises ``ValueError`` where mapping is impossible; ``"copy"`` always
    copies (a mapped import reads the file for as long as it lives, so
    choose it for files that may be rewritten in place).  Any other value is
    a ``ValueError``, whatever the file.

    A file in MLX's own format is handed to ``mx.import_function`` (an
    :class:`MlxImportedFunction`, whose ``load_mode`` is a copy made by
    MLX): ``load="map"`` raises ``ValueError`` (MLX's loader copies its
    format), and so does ``verify=True`` (MLX's files store no hashes to
    check; ``mlxfn convert`` writes a file that has them).

    A file with collectives (exported under ``mx.distributed``) runs them
    on ``group``, by default the group of ``mx.distributed.init()``; it must
    have the size and rank that exported the file, else ``ValueError``
    naming both.  ``group`` is not used for a file without collectives.

    ``file`` may be the ``bytes`` of an mlxfn file (an app's bundled asset):
    it is imported by mlxfn's C++ runtime, which needs the bridge (else
    ``RuntimeError``), with its constants copied (``load="map"`` and
    ``group=`` raise ``ValueError``).

    A path that cannot be read as a file (a directory) raises
    ``RuntimeError``, as MLX; a missing file ``FileNotFoundError``.
    """
    if isinstance(file, bytes):
        memory = _import_bytes(file, verify, load, group)
        return (memory, memory.metadata) if return_metadata else memory
    path = os.fspath(file)
    if not isinstance(path, str):
        raise TypeError(f"file must be a str or os.PathLike[str], not {type(file).__name__}")
    check_load(load)
    if os.path.isdir(path):
        raise RuntimeError(f"[import_function] Unable to read {path}: it is a directory, not a file")
    kind, _ = _mlxfn.recognise(path)
    fn: ImportedFunction | MlxImportedFunction
    if kind == "mlx":
        if load == "map":
            raise ValueError(
                f"[import_function] load='map' is not possible for {path}: it is in MLX's format, "
                "which MLX's own loader copies into memory (`mlxfn convert` writes an mlxfn file that maps)"
            )
        if verify:
            raise ValueError(
                f"[import_function] verify=True is not possible for {path}: it is in MLX's format, "
                "whose files carry no hashes of their constants (`mlxfn convert` writes an mlxfn file that does)"
            )
        fn = MlxImportedFunction(*import_with_metadata(path))
    else:
        handle = _mlxfn.File.open(path)
        if verify:
            handle.verify()
        fn = ImportedFunction(handle, verified=verify, load=load, group=group, runtime=runtime_choice())
    return (fn, fn.metadata) if return_metadata else fn
