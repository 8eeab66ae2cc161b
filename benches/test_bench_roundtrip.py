"""mlxfn vs MLX's own export on the same model, in the same run.

Run with ``make bench`` (``pytest benches --benchmark-only``); compare the
``mlxfn`` and ``mlx`` rows of each group.  Benchmarks are never timed
assertions: the machine is shared and noisy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import mlx.core as mx
import pytest

import mlxfn
from models import Llama, LlamaConfig, seeded

CONFIG = LlamaConfig(vocab=4096, dims=512, hidden=1408, layers=4, heads=8, kv_heads=2)
TOKENS = mx.array([[3]])

SIDES: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "mlxfn": (mlxfn.export_function, mlxfn.import_function),
    "mlx": (lambda p, *a, **k: mx.export_function(str(p), *a, **k), lambda p: mx.import_function(str(p))),
}


@pytest.fixture(scope="module")
def model() -> Llama:
    return seeded(Llama(CONFIG))


@pytest.fixture(scope="module")
def files(model: Llama, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bench")
    paths = {}
    for side, (export, _) in SIDES.items():
        paths[side] = out / f"model.{side}"
        export(paths[side], model, TOKENS)
    return paths


@pytest.mark.parametrize("side", SIDES)
def test_export(benchmark, side: str, model: Llama, tmp_path: Path) -> None:
    benchmark.group = "export"
    export, _ = SIDES[side]
    benchmark.pedantic(export, args=(tmp_path / "out", model, TOKENS), rounds=5, iterations=1)


@pytest.mark.parametrize("side", SIDES)
def test_import_call(benchmark, side: str, files: dict[str, Path]) -> None:
    benchmark.group = "import_function call"
    _, load = SIDES[side]
    benchmark.pedantic(load, args=(files[side],), rounds=10, iterations=1)


@pytest.mark.parametrize("side", SIDES)
def test_import_to_first_output(benchmark, side: str, files: dict[str, Path]) -> None:
    benchmark.group = "import to first output"
    _, load = SIDES[side]

    def first() -> None:
        mx.eval(load(files[side])(TOKENS))

    benchmark.pedantic(first, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("side", SIDES)
def test_steady_call(benchmark, side: str, files: dict[str, Path]) -> None:
    benchmark.group = "steady call"
    _, load = SIDES[side]
    fn = load(files[side])
    for _ in range(3):
        mx.eval(fn(TOKENS))
    benchmark.pedantic(lambda: mx.eval(fn(TOKENS)), rounds=20, iterations=1)
