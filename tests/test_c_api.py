"""The plain C API (``mlxfn/mlxfn_c.h``): mlxfn files called from C.

Compiles ``tests/c_api/call.c`` (C11) against the package's ``include/`` and
``lib/libmlxfn.so``, as a Swift or Rust binding would link it, runs it on an
exported file and compares the bytes it prints with the original function's
outputs and Python's import of the same file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlxfn

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(mlxfn.__file__).parent
MLX_LIB = Path(mx.__file__).parent / "lib"
CC = os.environ.get("CC", "gcc")
# MlxfnDType codes (mlxfn_core.h) of the dtypes this test uses.
CODES = {mx.float32: 10, mx.int32: 7, mx.bool_: 0, mx.float16: 9}
NUMPY = {10: np.float32, 7: np.int32, 0: np.bool_, 9: np.float16}


def _why_not_buildable() -> str | None:
    if shutil.which(CC) is None:
        return f"no C compiler ({CC}) on PATH"
    if not (PACKAGE / "lib" / "libmlxfn.so").exists():
        return "no libmlxfn.so in the package: build it (maturin develop)"
    return None


pytestmark = pytest.mark.skipif(_why_not_buildable() is not None, reason=str(_why_not_buildable()))


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("c-api") / "call"
    cmd = [CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", str(ROOT / "tests" / "c_api" / "call.c")]
    cmd += ["-I", str(PACKAGE / "include"), "-L", str(PACKAGE / "lib"), f"-Wl,-rpath,{PACKAGE / 'lib'}"]
    cmd += [f"-Wl,-rpath-link,{MLX_LIB}", "-lmlxfn", "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return exe


def run(
    program: Path, tmp_path: Path, file: Path, *inputs: tuple[str | None, mx.array], from_bytes: bool = False
) -> str:
    """What ``call`` prints for ``file`` on ``inputs`` ((name or None, array) pairs)."""
    specs = []
    for i, (name, a) in enumerate(inputs):
        raw = tmp_path / f"in{i}.bin"
        raw.write_bytes(np.ascontiguousarray(np.array(a)).tobytes())
        spec = f"{CODES[a.dtype]}:{','.join(str(d) for d in a.shape)}:{raw}"
        specs.append(spec if name is None else f"{name}={spec}")
    cmd = [str(program), *(["--bytes"] if from_bytes else []), str(file), *specs]
    # libmlxfn.so finds libmlx next to an installed wheel; in a checkout, here.
    env = {**os.environ, "LD_LIBRARY_PATH": str(MLX_LIB)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    return proc.stdout


def outputs(printed: str) -> list[np.ndarray]:
    """The arrays of ``output I DTYPE SHAPE HEX`` lines."""
    arrays: list[np.ndarray] = []
    for line in printed.splitlines():
        _, _, code, shape, data = line.split(" ")
        dims = [int(d) for d in shape.split(",") if d]
        arrays.append(np.frombuffer(bytes.fromhex(data), dtype=NUMPY[int(code)]).reshape(dims))
    return arrays


def assert_equal(got: list[np.ndarray], want: list[mx.array]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.array(w).dtype
        np.testing.assert_array_equal(g, np.array(w))


def f(x: mx.array, y: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    # A transposed output (not row-contiguous until the API makes it so), an int one, a bool one.
    z = mx.tanh(x @ y) + 1
    return z.T, (z * 10).astype(mx.int32), z > 1


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, mx.array, mx.array]:
    mx.random.seed(7)
    x, y = mx.random.normal((3, 4)), mx.random.normal((4, 5))
    path = tmp_path_factory.mktemp("file") / "f.mlxfn"
    mlxfn.export_function(path, f, x, y)
    return path, x, y


@pytest.mark.parametrize("from_bytes", [False, True], ids=["path", "bytes"])
def test_outputs_equal_python(
    program: Path, tmp_path: Path, exported: tuple[Path, mx.array, mx.array], from_bytes: bool
) -> None:
    path, x, y = exported
    got = outputs(run(program, tmp_path, path, (None, x), (None, y), from_bytes=from_bytes))
    assert_equal(got, list(f(x, y)))
    assert_equal(got, list(mlxfn.import_function(path)(x, y)))


def test_keyword_inputs(program: Path, tmp_path: Path) -> None:
    def g(x: mx.array, *, scale: mx.array) -> mx.array:
        return (x * scale).astype(mx.float16)

    x, scale = mx.arange(6, dtype=mx.float32).reshape(2, 3), mx.array(0.5)
    mlxfn.export_function(tmp_path / "g.mlxfn", g, x, scale=scale)
    got = outputs(run(program, tmp_path, tmp_path / "g.mlxfn", (None, x), ("scale", scale)))
    assert_equal(got, [g(x, scale=scale)])


def test_missing_file_is_an_error_message(program: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.mlxfn"
    printed = run(program, tmp_path, missing)
    assert printed.startswith("error 0 "), printed  # MlxfnErrorKind_NotFound
    assert str(missing) in printed
    with pytest.raises(FileNotFoundError):
        mlxfn.import_function(missing)


def test_call_matching_no_trace_gets_mlx_message(
    program: Path, tmp_path: Path, exported: tuple[Path, mx.array, mx.array]
) -> None:
    path, x, _ = exported
    printed = run(program, tmp_path, path, (None, x))
    assert printed.startswith("error "), printed
    assert "[import_function::call] No imported function found" in printed
