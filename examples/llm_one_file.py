"""An LLM in one file: every prompt length and every KV-cache length.

Exports an mlx-lm model's step function with ``shapeless=True``: the prefill
(tokens of any length, no cache) and the decode step (one token and a KV
cache of any length, as arrays) are two traces of one function in one file.
mlxfn finds which sizes may vary by tracing again at other sizes, so the
imported function serves prompts and caches of every length from 1 to
32,768.  Then it generates greedily with the imported function, and checks
the tokens against the original model run directly.

    python examples/llm_one_file.py [--arch llama|qwen2|mixtral] [--quantize] [--out DIR]

The model here is built from a tiny random config (mlx-lm's own classes);
for a real one, pass ``mlx_lm.load(...)``'s model to ``export`` instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import ConcatenateKVCache, KVCache, make_prompt_cache

import mlxfn

TINY = dict(
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
ARCHS = {
    "llama": ("mlx_lm.models.llama", {}),
    "qwen2": ("mlx_lm.models.qwen2", {}),  # biases in the q, k and v projections
    "mixtral": ("mlx_lm.models.mixtral", dict(num_local_experts=4, num_experts_per_tok=2)),
}


def tiny_model(arch: str, quantize: bool = False, seed: int = 0, layers: int = 2) -> nn.Module:
    """A seeded mlx-lm model of the architecture ``arch`` with ``layers``
    layers, 4-bit if ``quantize``."""
    import importlib

    module_name, extra = ARCHS[arch]
    module = importlib.import_module(module_name)
    config: dict[str, Any] = {**TINY, **extra, "num_hidden_layers": layers}
    model = module.Model(module.ModelArgs(model_type=arch, **config))
    mx.random.seed(seed)
    # Matrices scaled so that attention is sharp (a wrong position shows in
    # the tokens); norms and biases keep their own initial values.
    model.update(
        nn.utils.tree_map(
            lambda p: mx.random.normal(p.shape) * (1.5 / p.shape[-1] ** 0.5) if p.ndim >= 2 else p,
            model.parameters(),
        )
    )
    if quantize:
        nn.quantize(model, group_size=32, bits=4)
    mx.eval(model.parameters())
    return model


CACHES = ("kv", "concatenate")  # mlx-lm's default KVCache, or its ConcatenateKVCache


def step_function(model: nn.Module, kind: str = "kv") -> Callable[..., tuple[mx.array, ...]]:
    """``step(tokens, *cache) -> (last logits, *cache)``: the prefill without a
    cache, the decode step with one (keys and values of every layer, exactly
    as long as the tokens seen).

    ``kind="kv"``: mlx-lm's default ``KVCache``, which grows a buffer by
    multiples of 256 and returns the part in use (the graph holds
    ``ceil(n / 256) * 256``: mlxfn fits it).  ``kind="concatenate"``: its
    ``ConcatenateKVCache``, which concatenates (a smaller graph)."""
    if kind not in CACHES:
        raise ValueError(f"kind must be one of {CACHES}, not {kind!r}")

    def make() -> KVCache | ConcatenateKVCache:
        return KVCache() if kind == "kv" else ConcatenateKVCache()

    def step(tokens: mx.array, *arrays: mx.array) -> tuple[mx.array, ...]:
        caches = [make() for _ in model.layers]
        for c, keys, values in zip(caches, arrays[0::2], arrays[1::2]):
            if isinstance(c, KVCache):
                c.state = (keys, values, keys.shape[2])
            else:
                c.state = (keys, values)
        logits = model(tokens, cache=caches)
        out = [logits[:, -1, :]]
        for c in caches:
            out += list(c.keys_and_values())
        return tuple(out)

    return step


def export(model: nn.Module, path: Path, prompt: int = 8, cache: int = 5, kind: str = "kv") -> None:
    """Write the prefill and the decode step of ``model`` to ``path``.

    The example sizes only need to be ordinary ones (not 1, which switches
    the causal mask off): mlxfn probes the others."""
    step = step_function(model, kind)
    example_cache = step(mx.zeros((1, cache), mx.int32))[1:]
    with mlxfn.exporter(path, step, shapeless=True) as exporter:
        exporter(mx.zeros((1, prompt), mx.int32))
        exporter(mx.zeros((1, 1), mx.int32), *example_cache)


def generate(step: Callable[..., Any], prompt: list[int], count: int) -> list[int]:
    """Greedy decoding with a step function (the original or the imported one)."""
    logits, *cache = step(mx.array([prompt], dtype=mx.int32))
    tokens = []
    for _ in range(count):
        token = mx.argmax(logits, axis=-1).astype(mx.int32)
        tokens.append(int(token.item()))
        logits, *cache = step(token.reshape(1, 1), *cache)
    return tokens


def generate_directly(model: nn.Module, prompt: list[int], count: int) -> list[int]:
    """Greedy decoding with the model and mlx-lm's own KV cache, no export."""
    cache = make_prompt_cache(model)
    logits = model(mx.array([prompt], dtype=mx.int32), cache=cache)[:, -1, :]
    tokens = []
    for _ in range(count):
        token = mx.argmax(logits, axis=-1)
        tokens.append(int(token.item()))
        logits = model(token.reshape(1, 1).astype(mx.int32), cache=cache)[:, -1, :]
    return tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="llama")
    parser.add_argument("--quantize", action="store_true", help="4-bit weights (nn.quantize)")
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.arch}.mlxfn"
    model = tiny_model(args.arch, args.quantize)
    start = time.perf_counter()
    export(model, path)
    print(f"exported {path} in {time.perf_counter() - start:.2f} s ({path.stat().st_size:,} bytes)")
    fn = mlxfn.import_function(path)
    for i, trace in enumerate(fn.traces):
        print(
            f"  trace {i}: {len(trace.signature.positional)} inputs, {len(trace.nodes)} nodes, "
            f"{trace.describe_dims() or 'one shape'}"
        )
    for length in (3, 17, 40):
        prompt = [(7 * i + 3) % 128 for i in range(length)]
        ours, theirs = generate(fn, prompt, 32), generate_directly(model, prompt, 32)
        print(f"prompt of {length}: {'same 32 tokens' if ours == theirs else 'DIFFERENT tokens'}: {ours[:8]} ...")
        if ours != theirs:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
