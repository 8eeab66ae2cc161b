"""Calls through mlxfn's C++ runtime under Python (``mlxfn._bridge.NativeFunction``).

``mlxfn.import_function`` hands an mlxfn file to the runtime where the
bridge has it (``ImportedFunction.runtime == "native"``) and to the Python
replay elsewhere or where ``MLXFN_RUNTIME=python`` says so.  These tests hold
the native path to MLX's own import and to the original function, and check
what the runtime choice, the bytes import and the sharing between imports do.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn
from mlxfn import _native

from conftest import assert_same

NATIVE, WHY_NOT = _native.runtime()
# A Linux install always has the bridge (python -m mlxfn._native checks it),
# so only other platforms may lack the runtime.
if sys.platform == "linux":
    assert NATIVE is not None, WHY_NOT
needs_native = pytest.mark.skipif(NATIVE is None, reason=f"no C++ runtime on this platform: {WHY_NOT}")
pytestmark = needs_native

WEIGHT = mx.random.normal((1024, 1024), key=mx.random.key(3))
X = mx.random.normal((4, 1024), key=mx.random.key(4))
mx.eval(WEIGHT, X)  # on the main thread: threads read them, they do not compute them


def mlp(x: mx.array, *, scale: mx.array) -> mx.array:
    return mx.tanh(x @ WEIGHT[: x.shape[-1], :64]) * scale


@pytest.fixture(autouse=True)
def _default_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLXFN_RUNTIME", raising=False)


def test_an_import_runs_natively_and_equals_mlx_and_the_original(tmp_path: Path) -> None:
    path, theirs = tmp_path / "f.mlxfn", tmp_path / "f.mlx"
    x, scale = X[:, :32], mx.array(0.5)
    with mlxfn.exporter(path, mlp) as ex:
        ex(x, scale=scale)
        ex(X[:2, :16], scale=scale)  # a second trace, other shapes
    del ex
    with mx.exporter(str(theirs), mlp) as mex:
        mex(x, scale=scale)
        mex(X[:2, :16], scale=scale)
    fn = mlxfn.import_function(path)
    assert fn.runtime == "native"
    mlx_fn = mx.import_function(str(theirs))
    for args in [(x,), (X[:2, :16],)]:
        got = fn(*args, scale=scale)
        assert_same(got, mlx_fn(*args, scale=scale))
        assert_same(got, (mlp(*args, scale=scale),))
    with pytest.raises(ValueError, match=r"No imported function found"):
        fn(X[:3, :8], scale=scale)


def test_a_shapeless_trace_runs_natively_at_many_sizes(tmp_path: Path) -> None:
    path = tmp_path / "f.mlxfn"

    def attend(q: mx.array, k: mx.array) -> mx.array:
        return mx.softmax(q @ k.T / 4.0, axis=-1) @ k

    mlxfn.export_function(path, attend, X[:3, :16], X[:5, :16], shapeless=True)
    fn = mlxfn.import_function(path)
    assert fn.runtime == "native"
    for n in [1, 2, 5, 9, 33]:
        q, k = X[:3, :16] * n, X[:n, :16]
        assert mx.allclose(fn(q, k)[0], attend(q, k), atol=1e-5).item()


def test_mlxfn_runtime_chooses_the_python_replay_and_refuses_other_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.mlxfn"
    mlxfn.export_function(path, mx.exp, X)
    monkeypatch.setenv("MLXFN_RUNTIME", "python")
    fn = mlxfn.import_function(path)
    assert fn.runtime == "python (MLXFN_RUNTIME=python)"
    assert_same(fn(X), (mx.exp(X),))
    monkeypatch.setenv("MLXFN_RUNTIME", "native")
    assert mlxfn.import_function(path).runtime == "native"
    monkeypatch.setenv("MLXFN_RUNTIME", "fast")
    with pytest.raises(ValueError, match="MLXFN_RUNTIME='fast'"):
        mlxfn.import_function(path)


def test_copying_imports_of_one_file_share_the_native_function(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mlxfn", tmp_path / "b.mlxfn"
    mlxfn.export_function(a, lambda x: x @ WEIGHT, X)
    mlxfn.export_function(b, lambda x: (x @ WEIGHT) * 2, X)  # same weight, another file

    def added(fn: object) -> int:
        gc.collect()
        before = mx.get_active_memory()
        mx.eval(fn(X))  # type: ignore[operator]
        return mx.get_active_memory() - before

    first = mlxfn.import_function(a, load="copy")
    assert added(first) >= WEIGHT.nbytes  # the first import copies the weight
    again = mlxfn.import_function(a, load="copy")
    assert added(again) < WEIGHT.nbytes // 4  # shares it
    other = mlxfn.import_function(b, load="copy")
    assert added(other) >= WEIGHT.nbytes  # another file's bytes are its own
    assert_same(other(X), (first(X)[0] * 2,))


def test_a_shared_native_import_refuses_a_file_rewritten_before_its_first_call(tmp_path: Path) -> None:
    path = tmp_path / "a.mlxfn"
    mlxfn.export_function(path, lambda x: x @ WEIGHT, X)
    os.utime(path, (1_000_000_000, 1_000_000_000))  # an old file: a rewrite changes its times
    first = mlxfn.import_function(path, load="copy")
    mx.eval(first(X))
    second = mlxfn.import_function(path, load="copy")
    with open(path, "r+b") as f:  # one byte of the weight, in place
        f.seek(-64, os.SEEK_END)
        byte = f.read(1)[0]
        f.seek(-64, os.SEEK_END)
        f.write(bytes([byte ^ 1]))
    with pytest.raises(mlxfn.FormatError, match="changed on disk"):
        second(X)


def test_threads_call_one_native_import_at_once(tmp_path: Path) -> None:
    path = tmp_path / "f.mlxfn"
    scale = mx.array(2.0)
    mlxfn.export_function(path, mlp, X[:, :32], scale=scale)
    fn = mlxfn.import_function(path)
    assert fn.runtime == "native"
    want = mlp(X[:, :32], scale=scale)
    mx.eval(want)  # made on this thread: other threads read it, they do not compute it
    failures: list[str] = []

    def work() -> None:
        for _ in range(20):
            got = fn(X[:, :32], scale=scale)[0]
            if not mx.array_equal(got, want).item():
                failures.append("a thread got other outputs")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_native_function_from_bytes_equals_the_path_import(tmp_path: Path) -> None:
    from mlxfn import _bridge

    path = tmp_path / "f.mlxfn"
    scale = mx.array(3.0)
    mlxfn.export_function(path, mlp, X[:, :32], scale=scale)
    data = path.read_bytes()
    from_bytes = _bridge.NativeFunction.from_bytes(data)
    from_path = _bridge.NativeFunction(str(path), "copy")
    assert from_bytes.trace_count == from_path.trace_count == 1
    assert from_bytes.load_mode.startswith("copy")
    got = from_bytes([X[:, :32]], {"scale": scale})
    del from_bytes, data
    gc.collect()
    assert_same(got, from_path([X[:, :32]], {"scale": scale}))
    with pytest.raises(ValueError, match="load='map' is not possible for bytes"):
        _bridge.NativeFunction.from_bytes(path.read_bytes(), "map")
    with pytest.raises(ValueError, match="load must be"):
        _bridge.NativeFunction(str(path), "mmap")


def test_files_the_runtime_refuses_raise_what_mlxfn_raises(tmp_path: Path) -> None:
    path = tmp_path / "f.mlxfn"
    mlxfn.export_function(path, mx.exp, X)
    with pytest.raises(FileNotFoundError):
        _native.native_import(str(tmp_path / "missing.mlxfn"), "auto")
    truncated = tmp_path / "truncated.mlxfn"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(mlxfn.FormatError):
        _native.native_import(str(truncated), "auto")


def test_dropping_every_native_import_unmaps_the_file_and_frees_its_constants(tmp_path: Path) -> None:
    path = tmp_path / "unmap.mlxfn"
    mlxfn.export_function(path, lambda x: x @ WEIGHT, X)

    def mappings() -> int:
        return sum(str(path) in line for line in Path("/proc/self/maps").read_text().splitlines())

    for load in ["copy", "map"]:
        gc.collect()
        mx.synchronize()
        active = mx.get_active_memory()
        a, b = mlxfn.import_function(path, load=load), mlxfn.import_function(path, load=load)
        assert a.runtime == b.runtime == "native"
        mx.eval(a(X), b(X))
        assert mappings() > 0
        del a
        gc.collect()
        mx.eval(b(X))  # b still holds the function they share
        del b
        gc.collect()
        mx.synchronize()
        if sys.platform == "linux":
            assert mappings() == 0, f"load={load!r}: the file is still mapped"
        assert mx.get_active_memory() - active < WEIGHT.nbytes // 4, f"load={load!r}: the weight was not freed"


def test_import_function_of_bytes_equals_the_original_and_mlx(tmp_path: Path) -> None:
    path, theirs = tmp_path / "f.mlxfn", tmp_path / "f.mlx"
    scale = mx.array(1.5)
    mlxfn.export_function(path, mlp, X[:, :32], scale=scale, metadata="bundled")
    mx.export_function(str(theirs), mlp, X[:, :32], scale=scale)
    fn, metadata = mlxfn.import_function(path.read_bytes(), return_metadata=True, verify=True)
    assert (fn.runtime, fn.load_mode.mode, metadata) == ("native", "copy", "bundled")
    got = fn(X[:, :32], scale=scale)
    assert_same(got, mx.import_function(str(theirs))(X[:, :32], scale=scale))
    assert_same(got, (mlp(X[:, :32], scale=scale),))
    with pytest.raises(ValueError, match="No imported function found"):
        fn(X[:, :16], scale=scale)
    with pytest.raises(ValueError, match="load='map' is not possible for bytes"):
        mlxfn.import_function(path.read_bytes(), load="map")
    with pytest.raises(ValueError, match="load must be one of"):
        mlxfn.import_function(path.read_bytes(), load="mmap")


def test_bad_bytes_raise_what_a_bad_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "f.mlxfn"
    mlxfn.export_function(path, lambda x: x @ WEIGHT, X)
    data = path.read_bytes()
    with pytest.raises(mlxfn.FormatError):
        mlxfn.import_function(data[:100])
    with pytest.raises(mlxfn.FormatError):
        mlxfn.import_function(b"not an mlxfn file at all")
    damaged = bytearray(data)
    damaged[-64] ^= 1  # a byte of the weight: only verify=True reads it
    with pytest.raises(mlxfn.IntegrityError):
        mlxfn.import_function(bytes(damaged), verify=True)
    mlxfn.import_function(bytes(damaged))  # imported: constants are not checked without verify


def test_where_the_runtime_does_not_serve_a_file_the_replay_does_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlxfn import errors

    path = tmp_path / "f.mlxfn"
    mlxfn.export_function(path, mx.sin, X)

    def refuse(path: str, load: str) -> None:
        raise errors.FormatError(f"{path}: a primitive this runtime lacks")

    with monkeypatch.context() as m:
        m.setattr(_native, "native_import", refuse)
        fn = mlxfn.import_function(path)
        assert fn.runtime.startswith("python (the C++ runtime refused the file:")
        assert_same(fn(X), (mx.sin(X),))
        m.setenv("MLXFN_RUNTIME", "native")
        with pytest.raises(mlxfn.FormatError, match="a primitive this runtime lacks"):
            mlxfn.import_function(path)

    class WithCollectives:  # what the runtime reports for a file exported under mx.distributed
        primitives = ["AllReduce", "Sin"]

    other = tmp_path / "g.mlxfn"  # another file: nothing shared with the imports above
    mlxfn.export_function(other, mx.sin, X)
    with monkeypatch.context() as m:
        m.setattr(_native, "native_import", lambda path, load: WithCollectives())
        fn = mlxfn.import_function(other)
        assert fn.runtime == "python (the file has collectives, which the Python replay runs on the import's group)"
        assert_same(fn(X), (mx.sin(X),))
    with monkeypatch.context() as m:
        m.setattr(_native, "runtime", lambda: (None, "no bridge here"))
        assert mlxfn.import_function(other).runtime == "python (no bridge here)"
        m.setenv("MLXFN_RUNTIME", "native")
        with pytest.raises(RuntimeError, match="no bridge here"):
            mlxfn.import_function(other)
