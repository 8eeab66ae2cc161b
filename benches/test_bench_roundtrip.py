"""mlxfn against MLX's own export on the same model, in the same run.

``make bench`` runs these with timing (``pytest benches --benchmark-only``):
compare the rows of each group.  ``make test`` runs them once, untimed, as a
smoke test (``--benchmark-disable``).  The model is ``MLXFN_BENCH_MODEL``
(benches/zoo.py; default "medium", "small" for the smoke run).  Benchmarks
are never timed assertions: the machine is shared and noisy.  Whole-model
comparisons with ratios, fresh processes and memory: benches/compare.py.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

import mlxfn

from harness import child_command, import_side, save_inputs
from zoo import build

MODEL = os.environ.get("MLXFN_BENCH_MODEL", "medium")
TOKENS = mx.array([[3]])
LOADS = ("mlxfn:map", "mlxfn:copy", "mlx")

EXPORTS: dict[str, Callable[..., Any]] = {
    "mlxfn": mlxfn.export_function,
    "mlx": lambda path, *a, **k: mx.export_function(str(path), *a, **k),
}


@pytest.fixture(scope="module")
def model() -> Any:
    return build(MODEL)


@pytest.fixture(scope="module")
def files(model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bench")
    paths = {side: out / f"model.{side}" for side in EXPORTS}
    for side, path in paths.items():
        EXPORTS[side](path, model, TOKENS)
    save_inputs(out / "inputs.npz", [TOKENS], {})
    return {load: paths["mlx" if load == "mlx" else "mlxfn"] for load in LOADS}


@pytest.mark.parametrize("side", EXPORTS)
def test_export(benchmark, side: str, model: Any, tmp_path: Path) -> None:
    benchmark.group = f"{MODEL}: export"
    benchmark.pedantic(EXPORTS[side], args=(tmp_path / "out", model, TOKENS), rounds=5, iterations=1, warmup_rounds=1)
    assert (tmp_path / "out").stat().st_size > 0


@pytest.mark.parametrize("side", LOADS)
def test_import_call(benchmark, side: str, files: dict[str, Path]) -> None:
    benchmark.group = f"{MODEL}: import_function call"
    benchmark.pedantic(import_side, args=(side, str(files[side])), rounds=10, iterations=1)


@pytest.mark.parametrize("side", LOADS)
def test_import_to_first_output(benchmark, side: str, files: dict[str, Path]) -> None:
    """In this process: weights in the page cache, no import of the file alive."""
    benchmark.group = f"{MODEL}: import to first output (in process)"

    def first() -> None:
        mx.eval(import_side(side, str(files[side]))(TOKENS))

    benchmark.pedantic(first, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("side", LOADS)
def test_fresh_process_to_first_output(benchmark, side: str, files: dict[str, Path]) -> None:
    """A fresh process that uses MLX, imports and computes the first output
    and 10 more (Python and MLX start-up included, the same for every side)."""
    benchmark.group = f"{MODEL}: fresh process to 11 outputs"
    inputs = files["mlx"].parent / "inputs.npz"
    out = files["mlx"].parent / f"out-{side.replace(':', '-')}.npz"
    cmd = child_command(side, files[side], inputs, out)
    benchmark.pedantic(
        subprocess.run, args=(cmd,), kwargs={"check": True, "capture_output": True}, rounds=3, iterations=1
    )
    assert mx.array_equal(mx.load(str(out))["arr_0"], build(MODEL)(TOKENS)).item()


@pytest.mark.parametrize("side", LOADS)
def test_steady_call(benchmark, side: str, files: dict[str, Path]) -> None:
    benchmark.group = f"{MODEL}: steady call"
    fn = import_side(side, str(files[side]))
    for _ in range(3):
        mx.eval(fn(TOKENS))
    benchmark.pedantic(lambda: mx.eval(fn(TOKENS)), rounds=20, iterations=1)


@pytest.mark.parametrize("name", ["small-bf16", "small-q4", "small-q4-bf16"])
def test_bfloat16_and_4bit_models_import_exactly(name: str, tmp_path: Path) -> None:
    """The zoo's bfloat16 and nn.quantize'd models: every import gives the model's own output, bit for bit."""
    model = build(name)
    tokens = mx.array([[3, 7, 11]])
    expected = model(tokens)
    for side, export in EXPORTS.items():
        export(tmp_path / side, model, tokens)
    for load in LOADS:
        (got,) = import_side(load, str(tmp_path / ("mlx" if load == "mlx" else "mlxfn")))(tokens)
        assert got.dtype == expected.dtype == (mx.float32 if name == "small-q4" else mx.bfloat16)
        assert mx.array_equal(got, expected).item(), load
