"""Seeded Llama-style decoders: the models the benchmarks, the demo and the
tests export.

Weights are random but reproducible, so both sides of a comparison export
the same function.  ``MODELS`` names the benchmark sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map_with_path


@dataclass
class LlamaConfig:
    vocab: int = 64
    dims: int = 32
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    rope_base: float = 10000.0


class Attention(nn.Module):
    """Grouped-query attention with RoPE and a causal mask."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads = cfg.heads, cfg.kv_heads
        self.head_dim = cfg.dims // cfg.heads
        self.q = nn.Linear(cfg.dims, cfg.heads * self.head_dim, bias=False)
        self.k = nn.Linear(cfg.dims, cfg.kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(cfg.dims, cfg.kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(cfg.heads * self.head_dim, cfg.dims, bias=False)
        self.rope = nn.RoPE(self.head_dim, base=cfg.rope_base)

    def __call__(self, x: mx.array) -> mx.array:
        b, length, _ = x.shape
        q = self.q(x).reshape(b, length, self.heads, -1).transpose(0, 2, 1, 3)
        k = self.k(x).reshape(b, length, self.kv_heads, -1).transpose(0, 2, 1, 3)
        v = self.v(x).reshape(b, length, self.kv_heads, -1).transpose(0, 2, 1, 3)
        q, k = self.rope(q), self.rope(k)
        o = mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(self.head_dim), mask="causal")
        return self.o(o.transpose(0, 2, 1, 3).reshape(b, length, -1))


class Block(nn.Module):
    """Pre-norm decoder block: attention, then a SwiGLU MLP."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg)
        self.n1 = nn.RMSNorm(cfg.dims)
        self.n2 = nn.RMSNorm(cfg.dims)
        self.gate = nn.Linear(cfg.dims, cfg.hidden, bias=False)
        self.up = nn.Linear(cfg.dims, cfg.hidden, bias=False)
        self.down = nn.Linear(cfg.hidden, cfg.dims, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        x = x + self.attn(self.n1(x))
        h = self.n2(x)
        return x + self.down(nn.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    """Llama-style decoder: embedding, blocks, RMSNorm and an untied output projection."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab, cfg.dims)
        self.blocks = [Block(cfg) for _ in range(cfg.layers)]
        self.norm = nn.RMSNorm(cfg.dims)
        self.head = nn.Linear(cfg.dims, cfg.vocab, bias=False)

    def __call__(self, tokens: mx.array) -> mx.array:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


# name: (LlamaConfig overrides, description).  Two keys are not LlamaConfig's:
# "dtype" (the parameters' dtype, default float32) and "bits" (the model is
# then nn.quantize'd from that dtype: that many bits, groups of QUANT_GROUP).
MODELS: dict[str, tuple[dict[str, Any], str]] = {
    "llama-1g": (dict(vocab=32000, dims=2048, hidden=5632, heads=16, kv_heads=4, layers=3), "~1 GB float32"),
    "llama-4g": (dict(vocab=32000, dims=2048, hidden=5632, heads=16, kv_heads=4, layers=20), "~4 GB float32"),
    "medium": (dict(vocab=4096, dims=512, hidden=1408, heads=8, kv_heads=2, layers=4), "~30 MB float32"),
    "small": (dict(vocab=256, dims=64, hidden=128, heads=4, kv_heads=2, layers=16), "~2,000 primitives"),
    # What users load: bfloat16 checkpoints, and 4-bit ones.  The 4-bit models
    # are quantized from float32 (float32 scales, biases and norms): on CPU a
    # 4-bit matmul with bfloat16 scales is ~8x slower (11 s a call at 1 GB),
    # which would bury the load figures; small-q4-bf16 has mlx-lm's usual
    # bfloat16 scales, at a size where that costs nothing.
    "llama-1g-bf16": (
        dict(vocab=32000, dims=2048, hidden=5632, heads=16, kv_heads=4, layers=8, dtype="bfloat16"),
        "~1 GB bfloat16, 8 layers",
    ),
    "llama-1g-q4": (
        dict(vocab=32000, dims=4096, hidden=11008, heads=32, kv_heads=8, layers=8, bits=4),
        "~1 GB 4-bit (nn.quantize, groups of 64, float32 scales), 8 Llama-7B-sized layers",
    ),
    "small-bf16": (
        dict(vocab=256, dims=64, hidden=128, heads=4, kv_heads=2, layers=16, dtype="bfloat16"),
        "small in bfloat16",
    ),
    "small-q4": (
        dict(vocab=256, dims=64, hidden=128, heads=4, kv_heads=2, layers=16, bits=4),
        "small, 4-bit (nn.quantize, groups of 64, float32 scales)",
    ),
    "small-q4-bf16": (
        dict(vocab=256, dims=64, hidden=128, heads=4, kv_heads=2, layers=16, dtype="bfloat16", bits=4),
        "small, 4-bit (nn.quantize, groups of 64, bfloat16 scales)",
    ),
}
QUANT_GROUP = 64


# mlx-lm's own model classes (mlx_lm.models.<module>), from a small config.
MLX_LM: dict[str, tuple[str, dict[str, Any], str]] = {
    "mlxlm-llama": (
        "llama",
        dict(
            vocab_size=4096,
            hidden_size=512,
            num_hidden_layers=8,
            intermediate_size=1408,
            num_attention_heads=8,
            num_key_value_heads=2,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            tie_word_embeddings=False,
        ),
        "mlx-lm's Llama, 8 layers, ~60 MB float32",
    ),
    # examples/llm_one_file.py's tiny Llama (its TINY config, read at build).
    "mlxlm-tiny": ("llama", {}, "mlx-lm's Llama, 2 layers of 64, for smoke runs"),
}


def build(name: str) -> nn.Module:
    """The seeded benchmark model called ``name`` (MODELS, or MLX_LM)."""
    if name in MLX_LM:
        import importlib

        module_name, config, _ = MLX_LM[name]
        if name == "mlxlm-tiny":
            from repo import example

            config = example("llm_one_file").TINY
        module = importlib.import_module(f"mlx_lm.models.{module_name}")
        return seeded(module.Model(module.ModelArgs(model_type=module_name, **config)), seed=0)
    overrides = dict(MODELS[name][0])
    dtype = getattr(mx, overrides.pop("dtype", "float32"))
    bits = overrides.pop("bits", None)
    model = Llama(LlamaConfig(**overrides))
    if dtype != mx.float32:
        model.set_dtype(dtype)
    if bits is None:
        return seeded(model, seed=0)
    return seeded_quantized(model, bits, seed=0)


def seeded_quantized(model: Llama, bits: int, seed: int = 0) -> nn.Module:
    """``seeded``, then ``nn.quantize(model, QUANT_GROUP, bits)``, one part of
    the model at a time: a ~1 GB 4-bit model never holds its ~6.7 GB of
    float32 weights at once."""
    mx.random.seed(seed)
    parts = ["embed", *(f"blocks.{i}." for i in range(len(model.blocks))), "norm", "head"]
    for part in parts:

        def fill(path: str, p: mx.array, part: str = part) -> mx.array:
            return _random_like(p) if path.startswith(part) else p

        def chosen(path: str, m: nn.Module, part: str = part) -> bool:
            return path.startswith(part) and hasattr(m, "to_quantized")

        model.update(tree_map_with_path(fill, model.parameters()))
        nn.quantize(model, QUANT_GROUP, bits, class_predicate=chosen)
        mx.eval([p for path, p in tree_flatten(model.parameters()) if path.startswith(part)])
    return model


def describe(name: str) -> str:
    """One line about the model called ``name``."""
    return MLX_LM[name][2] if name in MLX_LM else MODELS[name][1]


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give a model reproducible random parameters and evaluate them.

    Quantized weights and frozen statistics keep their meaning: integer arrays
    are left alone and variances stay positive.
    """
    mx.random.seed(seed)

    def fill(path: str, p: mx.array) -> mx.array:
        if not mx.issubdtype(p.dtype, mx.floating):
            return p
        value = _random_like(p)
        return mx.abs(value) + 0.5 if path.endswith("running_var") else value

    model.update(tree_map_with_path(fill, model.parameters()))
    mx.eval(model.parameters())
    return model


def _random_like(p: mx.array) -> mx.array:
    """Random values of ``p``'s shape and dtype; an integer array (quantized
    weights) is left alone."""
    if not mx.issubdtype(p.dtype, mx.floating):
        return p
    return mx.random.normal(p.shape).astype(p.dtype) * 0.2
