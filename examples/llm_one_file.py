"""An LLM in one file: every prompt length and every KV-cache length.

Exports an mlx-lm model's step function with ``shapeless=True``: the prefill
(tokens of any length, no cache) and the decode step (one token and a KV
cache of any length, as arrays) are traces of one function in one file.
mlxfn finds which sizes may vary by tracing again at other sizes, so the
imported function serves prompts and caches of every length from 1 to
32,768.  Then it generates greedily with the imported function, and checks
the tokens against mlx-lm's own generation (the model and its cache).

    python examples/llm_one_file.py [--arch llama|qwen2|mixtral] [--quantize]
                                    [--kind kv|concatenate|quantized|window] [--out DIR]

``--kind`` is mlx-lm's KV cache the step runs on:

- ``kv``: its default ``KVCache`` (a buffer grown by multiples of 256);
- ``concatenate``: its ``ConcatenateKVCache``;
- ``quantized``: its ``QuantizedKVCache`` (8-bit keys and values: each a
  packed array, scales and biases, so six arrays a layer);
- ``window``: a sliding window of ``WINDOW`` tokens, what mlx-lm's
  ``RotatingKVCache(max_size=WINDOW, keep=0)`` computes.  Past the window the
  cache no longer tells how many tokens came before, and RoPE needs that
  position: the decode step takes it as an input array (``offset``), which
  ``mx.fast.rope`` accepts.  mlx-lm's own ``RotatingKVCache`` cannot be
  traced with an array offset (it branches on the offset in Python), so the
  step keeps the window in ``WindowCache``: the last ``WINDOW`` keys and
  values in the order they came, with the same attention as mlx-lm's.

The model here is built from a tiny random config (mlx-lm's own classes);
for a real one, pass ``mlx_lm.load(...)``'s model to ``export`` instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_causal_mask
from mlx_lm.models.cache import ConcatenateKVCache, KVCache, QuantizedKVCache, RotatingKVCache, make_prompt_cache

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
CACHES = ("kv", "concatenate", "quantized", "window")  # see the module doc
KV_GROUP, KV_BITS = 32, 8  # the quantized cache's (a head must hold whole groups)
WINDOW = 24  # the sliding window's length in tokens


def sharpen(model: nn.Module) -> None:
    """Draw the model's matrices from the current seed, scaled so that
    attention is sharp (a wrong position shows in the tokens); norms and
    biases keep their own initial values."""
    model.update(
        nn.utils.tree_map(
            lambda p: mx.random.normal(p.shape) * (1.5 / p.shape[-1] ** 0.5) if p.ndim >= 2 else p,
            model.parameters(),
        )
    )


def tiny_model(arch: str, quantize: bool = False, seed: int = 0, layers: int = 2, **config: Any) -> nn.Module:
    """A seeded mlx-lm model of the architecture ``arch`` with ``layers``
    layers, 4-bit if ``quantize``; ``config`` overrides ``TINY``."""
    module_name, extra = ARCHS[arch]
    module = importlib.import_module(module_name)
    args: dict[str, Any] = {**TINY, **extra, "num_hidden_layers": layers, **config}
    model = module.Model(module.ModelArgs(model_type=arch, **args))
    mx.random.seed(seed)
    sharpen(model)
    if quantize:
        nn.quantize(model, group_size=32, bits=4)
    mx.eval(model.parameters())
    return model


class WindowCache:
    """The last ``window`` keys and values of one layer, in the order they
    came, and the position of the first new token (``offset``: a Python int
    for the prefill, an array for a decode step, given to RoPE).  Attention
    is mlx-lm's ``RotatingKVCache(max_size=window, keep=0)``'s: a prompt
    attends within the window by a mask, a decode step to the last
    ``window`` tokens, its own included."""

    def __init__(self, window: int, offset: int | mx.array = 0) -> None:
        self.window, self.offset = window, offset
        self.keys: mx.array | None = None
        self.values: mx.array | None = None

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        if self.keys is not None and self.values is not None:
            keys = mx.concatenate([self.keys, keys], axis=2)
            values = mx.concatenate([self.values, values], axis=2)
        self.keys, self.values = keys[..., -self.window :, :], values[..., -self.window :, :]
        if isinstance(self.offset, int):
            return keys, values  # a prompt: all of it, the mask keeps each token to its window
        return self.keys, self.values

    def make_mask(self, n: int, window_size: int | None = None, return_array: bool = False) -> Any:
        if n == 1:
            return None  # one token attends to the whole (trimmed) window
        if not isinstance(self.offset, int) or self.offset != 0:
            raise ValueError("WindowCache: several tokens after a prompt are not supported (decode one at a time)")
        return create_causal_mask(n, 0, window_size=self.window) if n > self.window or return_array else "causal"


def step_function(model: nn.Module, kind: str = "kv") -> Callable[..., tuple[mx.array, ...]]:
    """``step(tokens, *cache) -> (last logits, *cache)``: the prefill without a
    cache, the decode step with one (every layer's keys and values, exactly
    as long as the tokens seen: the ``kind`` of cache decides how they are
    kept, see the module doc).  ``kind="window"``: the decode step is
    ``step(tokens, offset, *cache)``, ``offset`` the number of tokens before
    ``tokens`` (an int32 array of shape ()), and the cache is the last
    ``WINDOW`` tokens'."""
    if kind not in CACHES:
        raise ValueError(f"kind must be one of {CACHES}, not {kind!r}")
    per_layer = 6 if kind == "quantized" else 2

    def load(arrays: tuple[mx.array, ...]) -> Any:
        """One layer's cache, holding ``arrays`` (none: an empty cache)."""
        if kind == "kv":
            c: Any = KVCache()
            if arrays:
                c.state = (arrays[0], arrays[1], arrays[0].shape[2])
        elif kind == "concatenate":
            c = ConcatenateKVCache()
            if arrays:
                c.state = arrays
        else:
            c = QuantizedKVCache(group_size=KV_GROUP, bits=KV_BITS)
            if arrays:
                c.state = (arrays[:3], arrays[3:], arrays[0].shape[2], KV_GROUP, KV_BITS)
        return c

    def step(tokens: mx.array, *arrays: mx.array) -> tuple[mx.array, ...]:
        if kind == "window":
            offset: int | mx.array = arrays[0] if arrays else 0
            caches: list[Any] = [WindowCache(WINDOW, offset) for _ in model.layers]
            for c, keys, values in zip(caches, arrays[1::2], arrays[2::2]):
                c.keys, c.values = keys, values
        else:
            caches = [
                load(arrays[i : i + per_layer])
                for i in range(0, len(arrays) or per_layer * len(model.layers), per_layer)
            ]
        logits = model(tokens, cache=caches)
        out = [logits[:, -1, :]]
        for c in caches:
            if kind == "window":
                out += [c.keys, c.values]
            elif kind == "quantized":
                keys, values = c.keys_and_values()
                out += [*keys, *values]
            else:
                out += list(c.keys_and_values())
        return tuple(out)

    return step


def export(model: nn.Module, path: Path, prompt: int = 8, cache: int = 5, kind: str = "kv") -> None:
    """Write the prefill and the decode step of ``model`` to ``path``.

    The example sizes only need to be ordinary ones (not 1, which switches
    the causal mask off): mlxfn probes the others."""
    step = step_function(model, kind)
    example_cache = step(mx.zeros((1, cache), mx.int32))[1:]
    offset = (mx.array(cache, mx.int32),) if kind == "window" else ()
    with mlxfn.exporter(path, step, shapeless=True) as exporter:
        exporter(mx.zeros((1, prompt), mx.int32))
        exporter(mx.zeros((1, 1), mx.int32), *offset, *example_cache)


def generate(step: Callable[..., Any], prompt: list[int], count: int, kind: str = "kv") -> list[int]:
    """Greedy decoding with a step function (the original or the imported one)."""
    logits, *cache = step(mx.array([prompt], dtype=mx.int32))
    tokens = []
    for position in range(len(prompt), len(prompt) + count):
        token = mx.argmax(logits, axis=-1).astype(mx.int32)
        tokens.append(int(token.item()))
        offset = [mx.array(position, mx.int32)] if kind == "window" else []
        logits, *cache = step(token.reshape(1, 1), *offset, *cache)
    return tokens


def mlx_lm_cache(model: nn.Module, kind: str = "kv") -> list[Any]:
    """mlx-lm's own cache for ``kind``: what the file's tokens are checked against."""
    if kind == "quantized":
        return [QuantizedKVCache(group_size=KV_GROUP, bits=KV_BITS) for _ in model.layers]
    if kind == "window":
        return [RotatingKVCache(max_size=WINDOW, keep=0) for _ in model.layers]
    return make_prompt_cache(model)  # its default KVCache


def generate_directly(model: nn.Module, prompt: list[int], count: int, kind: str = "kv") -> list[int]:
    """Greedy decoding with the model and mlx-lm's own cache, no export."""
    cache = mlx_lm_cache(model, kind)
    logits = model(mx.array([prompt], dtype=mx.int32), cache=cache)[:, -1, :]
    tokens = []
    for _ in range(count):
        token = mx.argmax(logits, axis=-1)
        tokens.append(int(token.item()))
        logits = model(token.reshape(1, 1).astype(mx.int32), cache=cache)[:, -1, :]
    return tokens


# ----------------------------------------------------------------------------
# State-space models (mlx-lm's mamba and its ArraysCache): mlx-lm runs the
# recurrence as a Python loop over the tokens, so each number of tokens is
# another graph and no trace follows the prompt's length.  A chunked step
# function does: ``step(tokens, *state) -> (last logits, *state)`` with the
# state (each layer's convolution window and SSM state, of fixed shapes) in
# and out, traced once per chunk length; a prompt is fed in chunks.

MAMBA = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=128,
    state_size=16,
    num_hidden_layers=2,
    conv_kernel=4,
    use_bias=False,
    use_conv_bias=True,
    time_step_rank=8,
)
CHUNKS = (8, 1)  # the chunk lengths traced, longest first


def tiny_mamba(seed: int = 0) -> nn.Module:
    """A seeded mlx-lm mamba model of the ``MAMBA`` config."""
    module = importlib.import_module("mlx_lm.models.mamba")
    model = module.Model(module.ModelArgs(model_type="mamba", **MAMBA))
    mx.random.seed(seed)
    sharpen(model)
    mx.eval(model.parameters())
    return model


def ssm_step_function(model: nn.Module) -> Callable[..., tuple[mx.array, ...]]:
    """``step(tokens, *state) -> (last logits, *state)``: every layer's
    convolution window and SSM state in and out (mlx-lm's ``ArraysCache``)."""
    from mlx_lm.models.cache import ArraysCache

    def step(tokens: mx.array, *state: mx.array) -> tuple[mx.array, ...]:
        caches = [ArraysCache(size=2) for _ in model.layers]
        for c, conv, ssm in zip(caches, state[0::2], state[1::2]):
            c[0], c[1] = conv, ssm
        logits = model(tokens, cache=caches)
        out = [logits[:, -1, :]]
        for c in caches:
            out += [c[0], c[1]]
        return tuple(out)

    return step


def empty_state(model: nn.Module) -> list[mx.array]:
    """Zero states of a batch of one (what a step without a state starts from)."""
    cache = make_prompt_cache(model)
    model(mx.zeros((1, 1), mx.int32), cache=cache)
    return [mx.zeros_like(a) for c in cache for a in (c[0], c[1])]


def export_ssm(model: nn.Module, path: Path) -> None:
    """Write the chunked step of a state-space ``model``, one trace per chunk length."""
    step, state = ssm_step_function(model), empty_state(model)
    with mlxfn.exporter(path, step, shapeless=True) as exporter:
        for chunk in CHUNKS:
            exporter(mx.zeros((1, chunk), mx.int32), *state)


def generate_chunked(step: Callable[..., Any], model: nn.Module, prompt: list[int], count: int) -> list[int]:
    """Greedy decoding with a chunked step: the prompt in chunks of ``CHUNKS``."""
    state = empty_state(model)
    logits, start = None, 0
    while start < len(prompt):
        chunk = next(c for c in CHUNKS if c <= len(prompt) - start)
        logits, *state = step(mx.array([prompt[start : start + chunk]], dtype=mx.int32), *state)
        start += chunk
    assert logits is not None, "an empty prompt"
    tokens = []
    for _ in range(count):
        token = mx.argmax(logits, axis=-1).astype(mx.int32)
        tokens.append(int(token.item()))
        logits, *state = step(token.reshape(1, 1), *state)
    return tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="llama")
    parser.add_argument("--quantize", action="store_true", help="4-bit weights (nn.quantize)")
    parser.add_argument("--kind", choices=CACHES, default="kv", help="mlx-lm's KV cache (see above)")
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.arch}-{args.kind}.mlxfn"
    heads = dict(num_attention_heads=2, num_key_value_heads=1) if args.kind == "quantized" else {}
    model = tiny_model(args.arch, args.quantize, **heads)  # a quantized cache: heads of whole groups
    start = time.perf_counter()
    export(model, path, kind=args.kind)
    print(f"exported {path} in {time.perf_counter() - start:.2f} s ({path.stat().st_size:,} bytes)")
    fn = mlxfn.import_function(path)
    for i, trace in enumerate(fn.traces):
        print(
            f"  trace {i}: {len(trace.signature.positional)} inputs, {len(trace.nodes)} nodes, "
            f"{trace.describe_dims() or 'one shape'}"
        )
    for length in (3, 17, 40):
        prompt = [(7 * i + 3) % 128 for i in range(length)]
        ours, theirs = generate(fn, prompt, 32, args.kind), generate_directly(model, prompt, 32, args.kind)
        print(f"prompt of {length}: {'same 32 tokens' if ours == theirs else 'DIFFERENT tokens'}: {ours[:8]} ...")
        if ours != theirs:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
