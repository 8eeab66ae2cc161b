"""The C++ bridge (bridge/mlxfn_bridge.cpp): arrays over the mapped file.

On Linux CPU the bridge is built with the wheel (rust/mlxfn-py/build.rs) and
must pass its self-check, whatever MLX did before; then ``load="auto"``
maps.  Where it is missing or fails, loading copies, and says why.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlxfn
from mlxfn import _load, _mlxfn, _native, _runner

if sys.platform != "linux" or mx.cuda.is_available():
    pytest.skip("the C++ bridge maps on Linux CPU only; elsewhere loading copies", allow_module_level=True)

from mlxfn import _bridge as bridge  # noqa: E402  (built by make build: a failure here fails CI)


def test_the_bridge_is_built_for_this_mlx_and_passes_its_self_check() -> None:
    assert bridge.MLX_VERSION == mx.__version__
    assert bridge.version_problem() == ""
    assert bridge.self_check() == ""
    assert _load.choose("auto") == _load.LoadMode("map", "bridge", "")


def test_the_self_check_holds_whatever_mlx_did_before() -> None:
    """Recycled buffers in MLX's cache, many sizes, other threads: the same answer."""
    mx.eval(mx.zeros(8) + 1)  # the program: any MLX use frees a buffer
    assert bridge.self_check() == ""
    rng = np.random.default_rng(0)
    kept = []
    for i, size in enumerate(rng.integers(1, 1 << 18, size=1000)):
        a = mx.full((int(size),), float(i)) * 2
        mx.eval(a)
        if i % 7 == 0:
            kept.append(a)  # some stay alive, the rest go back to MLX's cache
        del a
    assert bridge.self_check() == ""
    answers: list[str] = []

    def from_a_thread() -> None:
        mx.eval(mx.ones((1000,)) @ mx.ones((1000, 3)))
        answers.append(bridge.self_check())

    threads = [threading.Thread(target=from_a_thread) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [""] * 4
    del kept
    gc.collect()
    assert bridge.self_check() == ""


USED_FIRST = textwrap.dedent(
    """
    import sys, threading
    import mlx.core as mx
    mx.eval(mx.zeros(8) + 1)
    for i in range(200):
        mx.eval(mx.ones((i * 97 + 1,)) * i)
    import mlxfn
    where = {}
    def load():
        fn = mlxfn.import_function(sys.argv[1])
        where["mode"] = fn.load_mode.describe()
        where["out"] = fn(mx.ones((16,)))[0].tolist()
    if sys.argv[2] == "thread":
        t = threading.Thread(target=load)
        t.start()
        t.join()
    else:
        load()
    print(where["mode"], where["out"][:3])
    """
)


@pytest.mark.parametrize("where", ["main", "thread"])
def test_a_program_that_used_mlx_first_maps(tmp_path: Path, where: str) -> None:
    path = tmp_path / "f.mlxfn"
    w = mx.arange(16, dtype=mx.float32)
    mlxfn.export_function(path, lambda x: x + w, mx.ones((16,)))
    out = subprocess.run(
        [sys.executable, "-c", USED_FIRST, str(path), where], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "map (C++ bridge) [1.0, 2.0, 3.0]"


def test_compiling_without_fusion_does_not_depend_on_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fusion policy asks whether the bridge fits this mlx, not the memory self-check."""
    monkeypatch.setattr(_native, "mapping", lambda: (None, "a test"))
    assert _load.choose("auto").mode == "copy"
    assert _native.no_fuse() is bridge.trace_without_fusion
    assert _runner._no_fuse() is bridge.trace_without_fusion


def test_wrap_reads_the_mapping_in_place_and_unmaps_with_the_last_array(tmp_path: Path) -> None:
    values = np.arange(3 * 1024, dtype=np.float32).reshape(3, 1024)
    path = tmp_path / "one.mlxfn"
    _mlxfn.write_file(
        str(path),
        {"mlx_version": "", "metadata": "", "shapeless": False, "traces": []},
        [(values.shape, mx.float32, values)],
    )
    f = _mlxfn.File.open(str(path))
    (offset,) = f.constant_offsets()
    mapping = bridge.Mapping(f.fileno(), f.file_size)
    arr = mapping.wrap(offset, [3, 1024], 10)
    assert isinstance(arr, mx.array) and arr.dtype == mx.float32 and mapping.live_arrays == 1
    assert np.array_equal(np.array(arr), values)
    view = np.frombuffer(f.constant(0), np.float32)  # the file's bytes, through the reader's own mapping
    assert np.array_equal(np.array(mx.compile(lambda a: a * 2)(arr)), view.reshape(3, 1024) * 2)
    assert np.array_equal(np.array(mx.grad(lambda a: (a * a).sum())(arr)), 2 * values)
    del arr
    gc.collect()
    mx.synchronize()
    assert mapping.live_arrays == 0
    with pytest.raises(ValueError, match="before offset .* hold .*, not the length 16"):
        mapping.wrap(offset + 64, [4], 10)  # inside the constant: no length before it
    with pytest.raises(ValueError, match="does not fit a mapping"):
        mapping.wrap(f.file_size - 8, [4], 10)
    with pytest.raises(ValueError, match="unknown dtype code 99"):
        mapping.wrap(offset, [4], 99)


def test_mapped_constants_are_never_written(tmp_path: Path) -> None:
    """MLX donates buffers it owns to outputs; a mapped constant it does not own."""
    w = mx.random.normal((256, 256))
    mx.eval(w)
    path = tmp_path / "w.mlxfn"
    mlxfn.export_function(path, lambda x: (mx.exp(x * 0 + w), w + 1, mx.softmax(w, axis=-1)), mx.ones((256, 256)))
    before = path.read_bytes()
    fn = mlxfn.import_function(path, load="map")
    for _ in range(3):  # the plain replay, then the compiled one
        out = fn(mx.ones((256, 256)))
        mx.eval(out)
    assert mx.array_equal(out[1], w + 1).item()
    del fn, out
    gc.collect()
    assert path.read_bytes() == before
    mlxfn.import_function(path, verify=True)


ANON = textwrap.dedent(
    """
    import sys
    import mlx.core as mx
    import mlxfn

    def anon_kb():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1])

    fn = mlxfn.import_function(sys.argv[1], load=sys.argv[2])
    x = mx.ones((1, 2048))
    mx.eval(x)
    before = anon_kb()
    mx.eval(fn(x))
    print(anon_kb() - before)
    """
)


def test_a_mapped_load_adds_almost_no_anonymous_memory(tmp_path: Path) -> None:
    ws = [mx.random.normal((2048, 2048), key=mx.random.key(i)) for i in range(4)]  # 64 MB
    mx.eval(ws)
    path = tmp_path / "big.mlxfn"
    mlxfn.export_function(path, lambda x: [x @ w for w in ws], mx.ones((1, 2048)))
    grown = {}
    for load in ("map", "copy"):
        child = subprocess.run(
            [sys.executable, "-c", ANON, str(path), load], capture_output=True, text=True, timeout=300
        )
        assert child.returncode == 0, child.stderr
        grown[load] = int(child.stdout.strip()) * 1024
    weights = 4 * 2048 * 2048 * 4
    assert grown["copy"] > 0.9 * weights, grown  # the copy is anonymous memory
    assert grown["map"] < 0.1 * weights, grown  # the mapped weights are the file's pages


def test_without_a_working_bridge_loading_copies_and_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_native, "mapping", lambda: (None, "the C++ bridge's self-check failed: a test"))
    path = tmp_path / "f.mlxfn"
    w = mx.arange(16, dtype=mx.float32)
    mx.eval(w)
    mlxfn.export_function(path, lambda x: x + w, mx.ones((16,)))
    fn = mlxfn.import_function(path)
    assert fn.load_mode == _load.LoadMode("copy", "copy", "the C++ bridge's self-check failed: a test")
    assert fn.load_mode.describe() == "copy (the C++ bridge's self-check failed: a test)"
    assert mx.array_equal(fn(mx.ones((16,)))[0], w + 1).item()
    with pytest.raises(ValueError, match="load='map' is not possible here: the C.. bridge's self-check failed"):
        mlxfn.import_function(path, load="map")
    with pytest.raises(ValueError, match="load must be one of 'auto', 'map', 'copy'"):
        mlxfn.import_function(path, load="mmap")


def test_a_missing_bridge_is_reported(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['mlxfn._bridge'] = None; import mlxfn._load as l; print(l.choose('auto').describe())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ})
    assert out.returncode == 0, out.stderr
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert out.stdout.startswith(
        f"copy (the C++ bridge is not built for this Python ({py}) and mlx (import of mlxfn._bridge halted"
    )


def test_the_stub_names_exactly_what_the_module_has() -> None:
    """stubtest cannot read nanobind's functions: hold _bridge.pyi and the module together by name."""
    import ast

    stub = ast.parse((Path(mlxfn.__file__).parent / "_bridge.pyi").read_text())
    declared = {n.name for n in stub.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    declared |= {n.target.id for n in stub.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert declared == {name for name in dir(bridge) if not name.startswith("_")}
    (mapping,) = (n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "Mapping")
    methods = {n.name for n in mapping.body if isinstance(n, ast.FunctionDef) and n.name != "__init__"}
    assert methods == {name for name in dir(bridge.Mapping) if not name.startswith("_")}


def test_copies_are_read_as_compute_needs_them_and_equal_the_file(tmp_path: Path) -> None:
    """load="copy" with the bridge: constants read by MLX's scheduler (a piece
    pool, one event each), equal to the file's bytes in every dtype, a
    constant of several 32 MiB pieces included."""
    consts = [
        mx.random.normal((3, 40 << 18), key=mx.random.key(0)),  # 120 MiB: 4 pieces
        mx.random.normal((257, 129), key=mx.random.key(1)).astype(mx.bfloat16),
        mx.arange(7, dtype=mx.int8),
        mx.array([True, False, True]),
    ]
    mx.eval(consts)
    path = tmp_path / "c.mlxfn"
    mlxfn.export_function(path, lambda x: [c * x.astype(c.dtype) for c in consts], mx.ones((1,), mx.int32))
    f = _mlxfn.File.open(str(path))
    infos = f.constant_infos()
    arrays = _load.copy_constants(f, infos, list(range(len(infos))))
    for i, (shape, dtype, _) in enumerate(infos):
        arr = arrays[i]
        assert arr.shape == tuple(shape) and arr.dtype == dtype
        assert bytes(memoryview(f.constant(i))) == bytes(_load.byte_view(arr)), i
    fn = mlxfn.import_function(path, load="copy")
    for out, c in zip(fn(mx.ones((1,), mx.int32)), consts):
        assert mx.array_equal(out, c).item()


def test_a_failed_read_is_an_error_naming_the_file_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(b"\0" * 4096)
    # The read may fail before read_constants returns (MLX reports a stream's
    # error at its next eval) or at the eval: either way, a RuntimeError.
    with (
        open(path, "rb") as handle,
        pytest.raises(RuntimeError, match=r"reading .*short.bin at offset 4096: the file ends there"),
    ):
        mx.eval(bridge.read_constants(handle.fileno(), str(path), [2048], [[1024]], [10]))  # 4096 bytes from 2048


def test_a_copy_is_read_once_and_compiled_calls_never_read_again(tmp_path: Path) -> None:
    """The scheduled reads leave plain arrays: a compiled trace holds them as
    constants, so cutting the file short after the first call changes nothing."""
    w = mx.random.normal((512, 512), key=mx.random.key(5))
    mx.eval(w)
    path = tmp_path / "once.mlxfn"
    mlxfn.export_function(path, lambda x: x @ w, mx.ones((2, 512)))
    fn = mlxfn.import_function(path, load="copy")
    first = fn(mx.ones((2, 512)))[0]
    mx.eval(first)
    os.truncate(path, 4096)
    for _ in range(5):  # compiled without fusion, then replayed
        assert mx.array_equal(fn(mx.ones((2, 512)))[0], first).item()
