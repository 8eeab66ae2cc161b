"""The C++ round trip: export with mlxfn, convert to MLX's format, run from C++.

Builds ``examples/cpp`` against the installed ``mlx`` wheel's headers and
library (they ship in the wheel; a C++ compiler is the only extra need) and
compares what the programs print with Python's outputs for the same file.
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
from mlxfn.convert import to_mlx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "cpp"
MLX_DIR = Path(mx.__file__).parent


def _why_not_buildable() -> str | None:
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return "no C++ compiler (g++ or $CXX) on PATH"
    if not (MLX_DIR / "include" / "mlx" / "mlx.h").exists():
        return f"the installed mlx wheel has no C++ headers under {MLX_DIR}/include"
    return None


pytestmark = pytest.mark.skipif(_why_not_buildable() is not None, reason=str(_why_not_buildable()))


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("cpp-build")
    subprocess.run(
        ["make", "-s", "-C", str(EXAMPLES), f"PYTHON={sys.executable}", f"BUILD={build}", f"-j{os.cpu_count() or 1}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return build


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
