"""C++ programs built with CMake against the installed package: ``examples/cpp``.

Builds ``examples/cpp`` the way a user does, with ``find_package(mlxfn
CONFIG)`` (``-Dmlxfn_DIR=$(python -m mlxfn --cmake-dir)``, which brings the
mlx wheel's headers and libmlx too), and compares what the programs print
with Python's outputs for the same file.  ``tests/wheel/consumer`` (the
installed wheel's check) imports mlxfn files with the C++ runtime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlxfn
from mlxfn.__main__ import cmake_dir
from mlxfn.convert import to_mlx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "cpp"
CONSUMER = ROOT / "tests" / "wheel" / "consumer"
# cmake is a test extra (pip installs it beside this Python).
CMAKE = shutil.which("cmake", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _why_not_buildable() -> str | None:
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler (c++ or $CXX) on PATH"
    if CMAKE is None:
        return "no cmake: pip install 'mlxfn[test]'"
    return None


pytestmark = pytest.mark.skipif(_why_not_buildable() is not None, reason=str(_why_not_buildable()))


def cmake_build(source: Path, build: Path) -> Path:
    """Configure and build the CMake project `source` against this mlxfn; its build folder."""
    assert CMAKE is not None
    configure = [CMAKE, "-S", str(source), "-B", str(build), f"-Dmlxfn_DIR={cmake_dir()}"]
    for cmd in (configure, [CMAKE, "--build", str(build), f"-j{os.cpu_count() or 1}"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return build


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cmake_build(EXAMPLES, tmp_path_factory.mktemp("cpp-build"))


def run(*cmd: str) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def parse_output_line(line: str) -> np.ndarray:
    """``output <i> <dtype> [<shape>] <values...>`` as printed by print_arrays.h."""
    _, _, _, shape, *values = line.split(" ")
    dims = [int(d) for d in shape.strip("[]").split(",") if d]
    return np.array([float(v) for v in values], dtype=np.float64).reshape(dims)


def test_run_function_with_positional_and_keyword_inputs(programs: Path, tmp_path: Path) -> None:
    mx.random.seed(3)
    w = mx.random.normal((16, 8))
    mx.eval(w)

    def f(x: mx.array, *, bias: mx.array) -> tuple[mx.array, mx.array]:
        y = mx.maximum(x @ w + bias, 0)
        return y, y.sum(axis=0).astype(mx.int32)

    x, bias = mx.random.normal((4, 16)), mx.random.normal((8,))
    src, dst, inputs = tmp_path / "f.mlxfn", tmp_path / "f.mlx", tmp_path / "in.safetensors"
    mlxfn.export_function(src, f, x, bias=bias, metadata="line one\nline two")
    to_mlx(src, dst)
    mx.save_safetensors(str(inputs), {"0": x, "bias": bias})

    lines = run(str(programs / "run_function"), str(dst), str(inputs)).splitlines()
    assert lines[0] == "metadata line one\\nline two"
    expected = mlxfn.import_function(src)(x, bias=bias)
    assert len(lines) == 1 + len(expected)
    for i, (line, want) in enumerate(zip(lines[1:], expected)):
        assert line.startswith(f"output {i} {'float32' if i == 0 else 'int32'} ")
        got = parse_output_line(line)
        np.testing.assert_array_equal(got, np.array(want).astype(np.float64))


def test_run_function_reports_bad_inputs(programs: Path, tmp_path: Path) -> None:
    src, dst, inputs = tmp_path / "g.mlxfn", tmp_path / "g.mlx", tmp_path / "in.safetensors"
    mlxfn.export_function(src, lambda x: x * 2, mx.ones((3,)))
    to_mlx(src, dst)
    mx.save_safetensors(str(inputs), {"0": mx.ones((5,))})  # wrong shape
    proc = subprocess.run([str(programs / "run_function"), str(dst), str(inputs)], capture_output=True, text=True)
    assert proc.returncode == 1 and "run_function:" in proc.stderr


def test_training_steps_from_cpp_match_python(programs: Path, tmp_path: Path) -> None:
    run(sys.executable, str(EXAMPLES / "export_mlp.py"), str(tmp_path))
    steps = 6
    out = run(
        str(programs / "train_mlp"),
        str(tmp_path / "train_step.mlx"),
        str(tmp_path / "train_state.safetensors"),
        str(steps),
    )
    cpp_losses = [float(line.split()[-1]) for line in out.splitlines()]
    assert len(cpp_losses) == steps

    saved = mx.load(str(tmp_path / "train_state.safetensors"))
    assert isinstance(saved, dict)
    state0 = [saved[f"state.{i}"] for i in range(sum(k.startswith("state.") for k in saved))]
    batch = {"X": saved["X"], "y": saved["y"]}

    def python_losses(step: object) -> list[float]:
        state, losses = list(state0), []
        for _ in range(steps):
            *state, loss = step(*state, **batch)  # type: ignore[operator]
            losses.append(loss.item())
        return losses

    # The same converted file run by MLX from Python: the same computation, the same figures.
    assert cpp_losses == pytest.approx(python_losses(mx.import_function(str(tmp_path / "train_step.mlx"))), rel=1e-8)
    # mlxfn's own import of the original file (compiled after its first call).
    mlxfn_losses = python_losses(mlxfn.import_function(tmp_path / "train_step.mlxfn"))
    assert cpp_losses == pytest.approx(mlxfn_losses, rel=1e-5)
    assert cpp_losses[-1] < cpp_losses[0]  # it trains


def test_cmake_dir_holds_the_package() -> None:
    proc = subprocess.run([sys.executable, "-m", "mlxfn", "--cmake-dir"], capture_output=True, text=True, check=True)
    found = Path(proc.stdout.strip())
    assert found == cmake_dir() and (found / "mlxfnConfig.cmake").is_file()
    assert (found.parent.parent.parent / "lib" / "libmlxfn.so").is_file()


def test_a_cmake_consumer_imports_mlxfn_files_from_path_and_bytes(tmp_path: Path) -> None:
    consumer = cmake_build(CONSUMER, tmp_path / "build") / "consumer"
    mx.random.seed(5)
    w = mx.random.normal((6, 3))

    def f(x: mx.array, *, scale: mx.array) -> tuple[mx.array, mx.array]:
        return mx.tanh(x @ w) * scale, x.max(axis=1)

    x, scale = mx.random.normal((2, 6)), mx.array(1.5)
    path, inputs = tmp_path / "f.mlxfn", tmp_path / "in.safetensors"
    mlxfn.export_function(path, f, x, scale=scale)
    mx.save_safetensors(str(inputs), {"arg0": x, "scale": scale})
    expected = f(x, scale=scale)
    for how in ([], ["--bytes"]):
        out = tmp_path / "out.safetensors"
        run(str(consumer), str(path), str(inputs), str(out), *how)
        got = mx.load(str(out))
        assert isinstance(got, dict) and len(got) == len(expected)
        for i, want in enumerate(expected):
            assert mx.array_equal(got[f"out{i}"], want).item(), (how, i)
