"""What the rank scripts share: tiny seeded mlx-lm models, a step function
(prefill and decode step in one function), greedy decoding, and the JSON
report each rank writes for the test that launched it."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mlxfn.replay import registry

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))  # the ranks run as scripts
import llm_one_file  # noqa: E402  (examples/: the tiny config, its weights and the step function)

ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("mlx_lm.models.llama", {}),
    "qwen2": ("mlx_lm.models.qwen2", {}),
    "qwen3_moe": (
        "mlx_lm.models.qwen3_moe",
        dict(
            num_experts=4,
            num_experts_per_tok=2,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            moe_intermediate_size=64,
            head_dim=16,
            max_position_embeddings=4096,
            norm_topk_prob=True,
        ),
    ),
}


def tiny_model(arch: str, layers: int = 2, seed: int = 0) -> nn.Module:
    """The same seeded model on every rank (float32: sums in another order
    change the logits only in their last bits)."""
    module_name, extra = ARCHS[arch]
    module = importlib.import_module(module_name)
    mx.random.seed(seed)  # before the model: its biases are drawn as it is built
    config = {**llm_one_file.TINY, **extra, "num_hidden_layers": layers}
    model = module.Model(module.ModelArgs(model_type=arch, **config))
    llm_one_file.sharpen(model)
    mx.eval(model.parameters())
    return model


def step_function(model: nn.Module) -> Callable[..., tuple[mx.array, ...]]:
    """``step(tokens, *cache) -> (last logits, *cache)``: the prefill without
    a cache, the decode step with one (mlx-lm's ConcatenateKVCache: keys
    and values of each of the rank's layers, as long as the tokens seen)."""
    return llm_one_file.step_function(model, kind="concatenate")


generate = llm_one_file.generate


def record_handlers(ran: set[str]) -> None:
    """Note in ``ran`` the name of every handler the replays run (the
    coverage test counts handlers run by any test, ranks included)."""

    def recording(name: str, handler: registry.Handler) -> registry.Handler:
        def run(node: Any, xs: list[mx.array]) -> Any:
            ran.add(name)
            return handler(node, xs)

        return run

    registry._HANDLERS.update({n: recording(n, h) for n, h in registry._HANDLERS.items()})


def report(out_dir: str, rank: int, results: dict[str, Any]) -> None:
    """Write this rank's results for the launching test."""
    path = Path(out_dir) / f"rank{rank}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results))
    os.replace(tmp, path)
    print(f"rank {rank}: wrote {path}", file=sys.stderr)
