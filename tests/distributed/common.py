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
from mlx_lm.models.cache import ConcatenateKVCache

from mlxfn.replay import registry

TINY: dict[str, Any] = dict(
    vocab_size=128,
    hidden_size=64,
    num_hidden_layers=2,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)
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
    model = module.Model(module.ModelArgs(model_type=arch, **{**TINY, **extra, "num_hidden_layers": layers}))
    # Matrices scaled so that attention is sharp: a wrong position shows in the tokens.
    model.update(
        nn.utils.tree_map(
            lambda p: mx.random.normal(p.shape) * (1.5 / p.shape[-1] ** 0.5) if p.ndim >= 2 else p,
            model.parameters(),
        )
    )
    mx.eval(model.parameters())
    return model


def step_function(model: nn.Module) -> Callable[..., tuple[mx.array, ...]]:
    """``step(tokens, *cache) -> (last logits, *cache)``: the prefill without
    a cache, the decode step with one (mlx-lm's ConcatenateKVCache: keys
    and values of each of the rank's layers, as long as the tokens seen)."""

    def step(tokens: mx.array, *arrays: mx.array) -> tuple[mx.array, ...]:
        caches = [ConcatenateKVCache() for _ in model.layers]
        for c, keys, values in zip(caches, arrays[0::2], arrays[1::2]):
            c.state = (keys, values)
        logits = model(tokens, cache=caches)
        out = [logits[:, -1, :]]
        for c in caches:
            out += [c.keys, c.values]
        return tuple(out)

    return step


def generate(step: Callable[..., Any], prompt: list[int], count: int) -> list[int]:
    """Greedy decoding with a step function (the original or an imported one)."""
    logits, *cache = step(mx.array([prompt], dtype=mx.int32))
    tokens = []
    for _ in range(count):
        token = mx.argmax(logits, axis=-1).astype(mx.int32)
        tokens.append(int(token.item()))
        logits, *cache = step(token.reshape(1, 1), *cache)
    return tokens


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
