"""One rank of test_distributed.py's LLM test (``mlx.launch -n 2``).

Each rank builds the same seeded mlx-lm model, decodes greedily with it
unsharded, shards it (tensor parallel: ``model.shard(group)``; pipeline:
``model.model.pipeline(group)``), exports the sharded step function
(prefill and decode step, every length) to its own file, imports it and
decodes again.  It reports the token ids of each.  One more case runs
``examples/distributed/llm_per_rank.py`` as a user would: a model directory
in safetensors, loaded per rank, exported, served with ``--check``.

    mlx.launch --backend ring -n 2 --python PY llm_rank.py OUT_DIR
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import mlx.core as mx
from common import generate, record_handlers, report, step_function, tiny_model

import mlxfn

PROMPTS = ([5, 17, 99, 3, 42, 7, 64, 1], [9, 30, 2])
TOKENS = 5
# name -> (architecture, layers, how it is split over the ranks)
CASES = {
    "llama_tp": ("llama", 2, "shard"),
    "qwen2_tp": ("qwen2", 1, "shard"),
    "qwen3_moe_tp": ("qwen3_moe", 1, "shard"),
    "qwen2_pp": ("qwen2", 2, "pipeline"),
}


def run_case(out: Path, name: str, group: mx.distributed.Group) -> dict[str, Any]:
    arch, layers, split = CASES[name]
    model = tiny_model(arch, layers)
    unsharded = [generate(step_function(model), p, TOKENS) for p in PROMPTS]
    if split == "shard":
        model.shard(group)
    else:
        model.model.pipeline(group)
    mx.eval(model.parameters())  # the shards, not the sharding ops, are the file's constants
    step = step_function(model)
    path = out / f"{name}-rank{group.rank()}.mlxfn"
    example_cache = step(mx.zeros((1, 5), mx.int32))[1:]
    with mlxfn.exporter(path, step, shapeless=True) as exporter:
        exporter(mx.zeros((1, 8), mx.int32))
        exporter(mx.zeros((1, 1), mx.int32), *example_cache)
    imported = mlxfn.import_function(path)
    return {
        "unsharded": unsharded,
        "sharded": [generate(step, p, TOKENS) for p in PROMPTS],
        "imported": [generate(imported, p, TOKENS) for p in PROMPTS],
    }


def example() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "examples" / "distributed" / "llm_per_rank.py"
    spec = importlib.util.spec_from_file_location("llm_per_rank", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(out: Path, group: mx.distributed.Group) -> dict[str, Any]:
    """The example's pipeline-parallel Qwen2, from safetensors to served tokens."""
    from mlx_lm.utils import load_model

    llm_per_rank = example()
    model_dir = out / f"example-model-rank{group.rank()}"  # the same bytes on each rank
    llm_per_rank.make_model(model_dir, "qwen2", 2)
    unsharded, _ = load_model(model_dir, strict=False)
    want = [generate(step_function(unsharded), p, TOKENS) for p in PROMPTS]
    llm_per_rank.export(model_dir, out / "example-files", "pipeline")
    # serve --check: the tokens of the file, checked against mlx-lm's sharded model
    got = [llm_per_rank.serve(out / "example-files", p, TOKENS, model_dir) for p in PROMPTS]
    return {"unsharded": want, "sharded": got, "imported": got}


def main(out_dir: str, names: list[str]) -> None:
    group = mx.distributed.init()
    ran: set[str] = set()
    record_handlers(ran)
    results: dict[str, Any] = {name: run_case(Path(out_dir), name, group) for name in names or CASES}
    if not names:
        results["qwen2_pp_example"] = run_example(Path(out_dir), group)
    results["handlers"] = sorted(ran)
    report(out_dir, group.rank(), results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
