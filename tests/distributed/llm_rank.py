"""One rank of test_distributed.py's LLM test (``mlx.launch -n 2``).

Each rank builds the same seeded mlx-lm model, decodes greedily with it
unsharded, shards it (tensor parallel: ``model.shard(group)``; pipeline:
``model.model.pipeline(group)``), exports the sharded step function
(prefill and decode step, every length) to its own file, imports it and
decodes again.  It reports the token ids of each.

    mlx.launch --backend ring -n 2 --python PY llm_rank.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path
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


def main(out_dir: str, names: list[str]) -> None:
    group = mx.distributed.init()
    ran: set[str] = set()
    record_handlers(ran)
    results: dict[str, Any] = {name: run_case(Path(out_dir), name, group) for name in names or CASES}
    results["handlers"] = sorted(ran)
    report(out_dir, group.rank(), results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
