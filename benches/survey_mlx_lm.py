"""Every mlx-lm architecture through one file with its default cache.

    python benches/survey_mlx_lm.py [--only llama,qwen2] [--tokens 8] [--caches]

For each module of ``mlx_lm.models`` with a ``Model`` and a ``ModelArgs``:
a tiny model (hidden size 64, 2 layers, vocabulary 128, seeded) from the
fields most architectures share (``COMMON``) and the architecture's own
(``CONFIGS``: mixtures of experts get 4 experts of 32, sliding windows
``WINDOW`` tokens), then its default cache (``make_prompt_cache``).  Where
every layer's cache is mlx-lm's ``KVCache``: the one-file workflow of
``examples/llm_one_file.py`` (the prefill and the decode step in one
shapeless file), greedy generation for prompts of 3, 17 and 40 tokens
compared with mlx-lm's own (the model and its default cache).  Where the
default cache mixes in ``RotatingKVCache`` (or ``ChunkedKVCache``) whose
window is longer than every prompt and its generated tokens, the same
workflow runs on plain ``KVCache``s and is compared with mlx-lm's generation
on its real default cache: "window never reached" (the rotating cache never
rotates, so it equals a plain one).  Where layers keep an ``ArraysCache``
(state-space and recurrent layers, alone or beside attention): a chunked
step function, the state and any keys and values in and out, the prompt fed
in chunks of ``CHUNKS``.  Other caches are listed by class.  Each
architecture runs in a process of its own (``LIMIT_S`` seconds at most).
``--caches`` builds only (no export).  Prints markdown for
docs/MLX_LM_SURVEY.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import json
import pkgutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.models.cache import make_prompt_cache

import mlxfn

from repo import example

llm_one_file = example("llm_one_file")

# The example's tiny config, with the fields most other architectures name too.
COMMON: dict[str, Any] = dict(
    llm_one_file.TINY,
    head_dim=16,
    layer_norm_eps=1e-5,
    layer_norm_epsilon=1e-5,
    norm_eps=1e-5,
    max_position_embeddings=4096,
    attention_bias=False,
    mlp_bias=False,
    rope_scaling=None,
    partial_rotary_factor=1.0,
)
PROMPTS = (3, 17, 40)
WINDOW = 64  # sliding windows and attention chunks: longer than every prompt and its generated tokens
MAX_PARAMETERS = 4_000_000  # a tiny model's; more means the config was not taken
CHUNKS = (8, 1)  # the chunk lengths of a state-space model's step, longest first
LIMIT_S = 60  # seconds an architecture may take (its process: build, export and generation)

# fmt: off
# Shared field groups: a mixture of experts, DeepSeek's latent attention with routed experts, linear attention.
MOE: dict[str, Any] = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
ROUTED: dict[str, Any] = dict(
    n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=32, n_group=1, topk_group=1,
    routed_scaling_factor=1.0, first_k_dense_replace=1, norm_topk_prob=True,
)
MLA: dict[str, Any] = dict(kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16)
LINEAR: dict[str, Any] = dict(
    linear_num_value_heads=2, linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
    linear_conv_kernel_dim=4,
)
SCALES: dict[str, Any] = dict(
    logits_scaling=1.0, attention_multiplier=1.0, embedding_multiplier=1.0, residual_multiplier=1.0,
)
SLIDE = ["sliding_attention", "full_attention"]
ROPES: dict[str, Any] = dict(full_attention=dict(rope_theta=10000.0), sliding_attention=dict(rope_theta=10000.0))
MISTRAL_ROPE: dict[str, Any] = dict(
    rope_type="default", rope_theta=10000.0, llama_4_scaling_beta=0.0, original_max_position_embeddings=4096,
)

# Each architecture's own fields, merged over COMMON (a "text_config" is merged over COMMON on its own).
CONFIGS: dict[str, dict[str, Any]] = {
    "Klear": dict(**MOE, mlp_only_layers=[], decoder_sparse_step=1, n_shared_experts=1, norm_topk_prob=True),
    "afm7": dict(hidden_dim=64, num_layers=2, num_kv_reuse_layers=1, num_heads=4, num_kv_heads=2),
    "afmoe": dict(**MOE, layer_types=SLIDE, num_dense_layers=1, sliding_window=WINDOW, mup_enabled=False),
    "apertus": dict(post_norm=False, qk_norm=True),
    "baichuan_m1": dict(sliding_window=WINDOW, sliding_window_layers=[0], conv_window=2),
    "bailing_hybrid": dict(
        **MOE, **MLA, num_shared_experts=1, n_group=1, topk_group=1, first_k_dense_replace=1, layer_group_size=2,
        group_norm_size=1, routed_scaling_factor=1.0,
    ),
    "bailing_moe": dict(**MOE, num_shared_experts=1, norm_topk_prob=True, first_k_dense_replace=1),
    "bailing_moe_linear": dict(
        **MOE, num_shared_experts=1, norm_topk_prob=True, first_k_dense_replace=1, layer_group_size=2, group_norm_size=1
    ),
    "bailing_moe_v3": dict(
        **MOE, **MLA, moe_shared_expert_intermediate_size=32, num_shared_experts=1, n_group=1, topk_group=1,
        layer_group_size=2, first_k_dense_replace=1,
    ),
    "bitnet": dict(),
    "cohere2": dict(sliding_window=WINDOW, sliding_window_pattern=2),
    "dbrx": dict(
        d_model=64, n_layers=2, n_heads=4, ffn_config=dict(ffn_hidden_size=64, moe_num_experts=4, moe_top_k=2),
        attn_config=dict(kv_n_heads=2, clip_qkv=8.0, rope_theta=10000.0),
    ),
    "deepseek_v2": dict(**ROUTED, **MLA, rope_scaling=dict(factor=1.0)),
    "deepseek_v3": dict(**ROUTED, **MLA),
    "deepseek_v32": dict(**ROUTED, **MLA, index_head_dim=16, index_n_heads=2, index_topk=16),
    "deepseek_v41": dict(
        **ROUTED, q_lora_rank=16, qk_rope_head_dim=8, o_groups=2, o_lora_rank=16, sliding_window=WINDOW,
        index_n_heads=2, index_head_dim=16, index_topk=16, hc_mult=2,
    ),
    "dots1": dict(**ROUTED),
    "ernie4_5": dict(use_bias=False),
    "ernie4_5_moe": dict(use_bias=False, moe_num_experts=4, moe_k=2, moe_intermediate_size=32),
    "exaone": dict(num_layers=2),
    "exaone4": dict(sliding_window=WINDOW, sliding_window_pattern="LG"),
    "exaone_moe": dict(
        **MOE, num_shared_experts=1, n_group=1, topk_group=1, sliding_window=WINDOW, layer_types=SLIDE,
        is_moe_layer=[False, True],
    ),
    "falcon_h1": dict(mamba_d_ssm=64, mamba_d_head=16, mamba_n_heads=4, mamba_d_state=16, mamba_chunk_size=16),
    "gear": dict(layer_types=["conv_mixer", "sliding_attention"], sliding_window=WINDOW),
    "gemma3": dict(text_config=dict(model_type="gemma3_text", sliding_window=WINDOW, sliding_window_pattern=2)),
    "gemma3_text": dict(sliding_window=WINDOW, sliding_window_pattern=2, query_pre_attn_scalar=16),
    "gemma3n": dict(
        text_config=dict(
            num_kv_shared_layers=0, vocab_size_per_layer_input=128, sliding_window=WINDOW, layer_types=SLIDE,
            activation_sparsity_pattern=[0.0, 0.0], hidden_size_per_layer_input=16, altup_num_inputs=2,
            altup_coef_clip=1.0, altup_correct_scale=True, altup_active_idx=0, laurel_rank=8,
            rope_local_base_freq=10000.0, final_logit_softcapping=30.0,
        )
    ),
    "gemma4": dict(text_config=dict(
        global_head_dim=16, vocab_size_per_layer_input=128, num_kv_shared_layers=0, hidden_size_per_layer_input=16,
        sliding_window=WINDOW, sliding_window_pattern=2,
    )),
    "gemma4_text": dict(
        global_head_dim=16, vocab_size_per_layer_input=128, num_kv_shared_layers=0, hidden_size_per_layer_input=16,
        sliding_window=WINDOW, sliding_window_pattern=2,
    ),
    "glm4_moe": dict(**ROUTED, use_qk_norm=True, partial_rotary_factor=0.5),
    "glm4_moe_lite": dict(**ROUTED, **MLA),
    "glm_moe_dsa": dict(
        **ROUTED, **MLA, index_head_dim=16, index_n_heads=2, index_topk=16, topk_method="noaux_tc",
        scoring_func="sigmoid", moe_layer_freq=1, rope_parameters=dict(rope_theta=10000.0),
    ),
    "gpt2": dict(n_ctx=1024, n_embd=64, n_head=4, n_layer=2, n_positions=1024),
    "gpt_bigcode": dict(n_embd=64, n_layer=2, n_inner=128, n_head=4, n_positions=1024),
    "gpt_neox": dict(rotary_emb_base=10000.0, rotary_pct=0.25),
    "gpt_oss": dict(num_local_experts=4, num_experts_per_tok=2, sliding_window=WINDOW),
    "gptj": dict(n_embd=64, n_head=4, n_layer=2, rotary_dim=8, n_positions=1024),
    "granite": dict(**SCALES),
    "granitemoe": dict(**SCALES, num_local_experts=4, num_experts_per_tok=2),
    "granitemoehybrid": dict(
        **SCALES, num_local_experts=4, num_experts_per_tok=2, shared_intermediate_size=64, mamba_n_heads=4,
        mamba_d_head=16, mamba_proj_bias=False, mamba_d_state=16, mamba_d_conv=4, mamba_n_groups=1,
        mamba_conv_bias=False, layer_types=["mamba", "attention"],
    ),
    "hunyuan": dict(
        moe_topk=2, num_experts=4, num_shared_expert=1, use_mixed_mlp_moe=True, use_qk_norm=True, use_cla=False,
        cla_share_factor=1, rope_scaling=dict(alpha=1.0, type="dynamic", factor=1.0),
    ),
    "iquestloopcoder": dict(loop_window_size=WINDOW),
    "jamba": dict(
        num_hidden_layers=2, attn_layer_offset=1, attn_layer_period=2, expert_layer_offset=1, expert_layer_period=2,
        mamba_d_conv=4, mamba_d_state=16, mamba_expand=2, num_experts=4, num_experts_per_tok=2,
    ),
    "kimi_k25": dict(text_config=dict(**ROUTED, **MLA)),
    "kimi_k3": dict(text_config=dict(
        **MLA, linear_attn_config=dict(num_heads=4, head_dim=16, short_conv_kernel_size=4, kda_layers=[1]),
        num_experts=4, num_experts_per_token=2, moe_intermediate_size=32,
    )),
    "kimi_linear": dict(
        **MLA, linear_attn_config=dict(num_heads=4, head_dim=16, kda_layers=[1]), model_max_length=4096,
        num_experts=4, moe_intermediate_size=32,
    ),
    "kimi_vl": dict(text_config=dict(**ROUTED, **MLA)),
    "laguna": dict(**MOE, shared_expert_intermediate_size=32, sliding_window=WINDOW, layer_types=SLIDE),
    "lfm2": dict(
        conv_bias=False, conv_L_cache=3, block_dim=64, block_ff_dim=128, block_multiple_of=4,
        block_ffn_dim_multiplier=1.0, block_auto_adjust_ff_dim=False, full_attn_idxs=[1],
    ),
    "lfm2-vl": dict(text_config=dict(model_type="lfm2",
        conv_bias=False, conv_L_cache=3, block_dim=64, block_ff_dim=128, block_multiple_of=4,
        block_ffn_dim_multiplier=1.0, block_auto_adjust_ff_dim=False, full_attn_idxs=[1],
    )),
    "lfm2_moe": dict(
        **MOE, norm_topk_prob=True, use_expert_bias=True, num_dense_layers=1, conv_bias=False, conv_L_cache=3,
        full_attn_idxs=[1],
    ),
    "lille-130m": dict(block_size=1024, n_embd=64, n_head=4, n_kv_heads=2, n_layer=2),
    "llama4": dict(text_config=dict(
        num_hidden_layers=4, attention_chunk_size=WINDOW, interleave_moe_layer_step=2, intermediate_size_mlp=128,
        num_experts_per_tok=1, num_local_experts=2, use_qk_norm=True,
    )),
    "llama4_text": dict(intermediate_size_mlp=128, no_rope_layers=[0, 1], use_qk_norm=True),
    "longcat_flash": dict(
        **MLA, attention_method="MLA", zero_expert_type="identity", ffn_hidden_size=128, moe_topk=2,
        expert_ffn_hidden_size=32, n_routed_experts=4, zero_expert_num=2, num_layers=2, routed_scaling_factor=1.0,
        mla_scale_q_lora=True, mla_scale_kv_lora=True,
    ),
    "longcat_flash_ngram": dict(
        **MLA, ffn_hidden_size=128, moe_topk=2, expert_ffn_hidden_size=32, n_routed_experts=4, zero_expert_num=2,
        num_layers=2, routed_scaling_factor=1.0, mla_scale_q_lora=True, mla_scale_kv_lora=True,
    ),
    "mamba": dict(state_size=16, conv_kernel=4, use_bias=False, use_conv_bias=True, time_step_rank=8),
    "mamba2": dict(
        num_heads=8, head_dim=16, state_size=16, conv_kernel=4, n_groups=1, use_bias=False, use_conv_bias=True,
        time_step_limit=(0.0, float("inf")), time_step_rank="auto",
    ),
    "mellum": dict(**MOE, norm_topk_prob=True, sliding_window=WINDOW, layer_types=SLIDE, rope_parameters=ROPES),
    "mimo_v2_flash": dict(
        **ROUTED, hybrid_layer_pattern=[0, 1], moe_layer_freq=[0, 1], add_swa_attention_sink_bias=True,
        add_full_attention_sink_bias=False, sliding_window_size=WINDOW, topk_method="noaux_tc",
        scoring_func="sigmoid", layernorm_epsilon=1e-5, swa_rope_theta=10000.0, swa_num_attention_heads=4,
        swa_num_key_value_heads=2, v_head_dim=16, swa_head_dim=16, swa_v_head_dim=16,
    ),
    "minicpm": dict(dim_model_base=64, scale_depth=1.0, scale_emb=1.0),
    "minicpm3": dict(**MLA, rope_scaling={}, dim_model_base=64, scale_depth=1.0, scale_emb=1.0),
    "minimax": dict(num_experts_per_tok=2, num_local_experts=4, shared_intermediate_size=64, rotary_dim=8),
    "minimax_m3_vl": dict(text_config=dict(
        intermediate_size=32, dense_intermediate_size=128, shared_intermediate_size=32, num_local_experts=4,
        num_experts_per_tok=2,
    )),
    "ministral3": dict(rope_parameters=MISTRAL_ROPE),
    "mistral3": dict(text_config=dict(model_type="llama")),
    "mistral4": dict(**ROUTED, **MLA, rope_parameters=MISTRAL_ROPE),
    "muse_glimmer": dict(sliding_window=WINDOW),
    "muse_spark": dict(text_config=dict(
        sliding_window=WINDOW, layer_types=SLIDE, post_norm_eps=1e-5, rope_parameters=dict(rope_theta=10000.0),
        layer_rope_theta=[10000.0, 10000.0], final_logit_softcapping=30.0, output_multiplier=1.0,
        num_local_experts=4, num_experts_per_tok=2, moe_hidden_size=32, moe_intermediate_size=32,
    )),
    "nemotron": dict(hidden_act="relu2"),
    "nemotron-nas": dict(
        block_configs=[dict(attention=dict(n_heads_in_group=2), ffn=dict(ffn_mult=2.0))] * 2,
    ),
    "nemotron_h": dict(
        mamba_num_heads=4, mamba_head_dim=16, mamba_proj_bias=False, ssm_state_size=16, conv_kernel=4, n_groups=1,
        use_bias=False, use_conv_bias=True, hybrid_override_pattern=["M", "*"],
    ),
    "olmo3": dict(sliding_window=WINDOW, layer_types=SLIDE),
    "olmo_hybrid": dict(**LINEAR, linear_allow_neg_eigval=False),
    "olmoe": dict(num_experts=4, num_experts_per_tok=2),
    "openelm": dict(
        num_transformer_layers=2, model_dim=64, ffn_dim_divisor=8, num_query_heads=[4, 4], num_kv_heads=[2, 2],
        ffn_multipliers=[2.0, 2.0],
    ),
    "phi3small": dict(dense_attention_every_n_layers=2, ff_intermediate_size=128, gegelu_limit=20.0),
    "phixtral": dict(num_vocab=128, model_dim=64, num_heads=4, num_layers=2, rotary_dim=8, num_local_experts=4),
    "pixtral": dict(text_config=dict(model_type="llama")),
    "plamo": dict(n_shared_head=2),
    "plamo2": dict(
        hidden_size_per_head=16, attention_window_size=WINDOW, mamba_d_state=16, mamba_num_heads=4,
        mamba_chunk_size=16,
    ),
    "plamo3": dict(window_size=WINDOW, sliding_window_pattern=2),
    "prism_hadamard_qwen35": dict(text_config=dict(**LINEAR, full_attention_interval=2)),
    "qwen": dict(kv_channels=16),
    "qwen2_moe": dict(**MOE, shared_expert_intermediate_size=64),
    "qwen2_vl": dict(text_config=dict(model_type="qwen2")),
    "qwen3_5": dict(text_config=dict(**LINEAR, full_attention_interval=2)),
    "qwen3_5_moe": dict(
        text_config=dict(**LINEAR, **MOE, full_attention_interval=2, shared_expert_intermediate_size=32),
    ),
    "qwen3_moe": dict(**MOE, decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True),
    "qwen3_next": dict(
        **LINEAR, **MOE, decoder_sparse_step=1, shared_expert_intermediate_size=32, mlp_only_layers=[],
        full_attention_interval=2,
    ),
    "qwen3_vl": dict(text_config=dict(model_type="qwen3")),
    "qwen3_vl_moe": dict(
        text_config=dict(model_type="qwen3_moe", **MOE, decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True),
    ),
    "recurrent_gemma": dict(
        conv1d_width=4, logits_soft_cap=30.0, attention_window_size=WINDOW,
        block_types=["recurrent", "attention"],
    ),
    "rwkv7": dict(a_low_rank_dim=8, v_low_rank_dim=8, gate_low_rank_dim=8, decay_low_rank_dim=8),
    "solar_open": dict(**ROUTED),
    "spark2_5": dict(sliding_window=WINDOW, layer_types=SLIDE, rope_parameters=ROPES),
    "stablelm": dict(use_qkv_bias=False, partial_rotary_factor=0.25),
    "step3p5": dict(
        num_attention_groups=2, sliding_window=WINDOW, layer_types=SLIDE, moe_num_experts=4, moe_top_k=2,
        moe_intermediate_size=32, share_expert_dim=32, moe_layers_enum="1",
    ),
}
# fmt: on


def config_of(name: str, module: Any) -> dict[str, Any]:
    """COMMON with the architecture's own fields over it, keeping only the fields its ``ModelArgs`` takes."""
    own = dict(CONFIGS.get(name, {}))
    if "text_config" in own:
        own["text_config"] = {**COMMON, "model_type": name, **own["text_config"]}
    merged = {**COMMON, **own, "model_type": name}
    names = set(inspect.signature(module.ModelArgs).parameters)
    return {k: v for k, v in merged.items() if k in names}


def build(name: str) -> nn.Module | str:
    """The tiny seeded model of module ``name``, or why there is none."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said):  # olmo prints which package it needs, then exits
            module = importlib.import_module(f"mlx_lm.models.{name}")
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a module that needs another package
        return f"not imported ({type(e).__name__}: {(said.getvalue().strip() or str(e))[:60]})"
    if not hasattr(module, "Model") or not hasattr(module, "ModelArgs"):
        return "not a model"
    mx.random.seed(0)  # the parameters a model draws itself (vectors, which sharpen leaves) too
    try:
        model = module.Model(module.ModelArgs(**config_of(name, module)))
    except Exception as e:  # noqa: BLE001 - a config this table does not fit yet
        return f"not built ({type(e).__name__}: {str(e)[:80]})"
    size = sum(v.size for _, v in tree_flatten(model.parameters()))
    if size > MAX_PARAMETERS:  # its own field names left at their full-size defaults
        return f"not built ({size / 1e6:.0f}M parameters: a field left at its full-size default)"
    mx.random.seed(0)
    llm_one_file.sharpen(model)
    mx.eval(model.parameters())
    try:
        mx.eval(model(mx.array([[1, 2, 3]], dtype=mx.int32), cache=make_prompt_cache(model)))
    except Exception as e:  # noqa: BLE001 - reported with its error
        return f"forward fails ({type(e).__name__}: {str(e)[:80]})"
    return model


def cache_classes(cache: list[Any]) -> str:
    """The default cache's classes, e.g. ``KVCache + RotatingKVCache`` or ``CacheList(ArraysCache, KVCache)``."""

    def one(c: Any) -> str:
        inner = getattr(c, "caches", None)
        if type(c).__name__ == "CacheList" and inner is not None:
            return f"CacheList({', '.join(sorted({type(i).__name__ for i in inner}))})"
        return type(c).__name__

    return " + ".join(sorted({one(c) for c in cache}))


def window(c: Any) -> int | None:
    """How many tokens a rotating or chunked cache holds before it drops any (None: a plain ``KVCache``)."""
    name = type(c).__name__
    if name == "RotatingKVCache":
        return int(c.max_size)
    if name == "ChunkedKVCache":
        return int(c.chunk_size)
    return None


def workflow(model: nn.Module, tokens: int) -> tuple[str, str]:
    """The one-file workflow with mlx-lm's ``KVCache``, compared with mlx-lm's generation on its default cache."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "llm.mlxfn"
        start = time.perf_counter()
        llm_one_file.export(model, path, kind="kv")
        seconds = time.perf_counter() - start
        return compared(model, mlxfn.import_function(path), llm_one_file.generate, tokens, seconds)


def compared(
    model: nn.Module, fn: mlxfn.ImportedFunction, generate: Any, tokens: int, seconds: float
) -> tuple[str, str]:
    """Greedy tokens through the file (``generate(fn, prompt, tokens)``)
    against mlx-lm's own generation on its default cache, for each prompt."""
    for length in PROMPTS:
        prompt = [(7 * i + 3) % 128 for i in range(length)]
        expected = llm_one_file.generate_directly(model, prompt, tokens)
        try:
            got = generate(fn, prompt, tokens)
        except ValueError as e:
            return "refused", f"at a prompt of {length}: {str(e).splitlines()[0][:60]}"
        if got != expected:
            return "DIFFERENT tokens", f"at a prompt of {length}: {got} != mlx-lm's {expected}"
    return "same tokens as mlx-lm", f"{len(fn.traces)} traces, {seconds:.1f} s"


def state_step(model: nn.Module) -> Any:
    """``step(tokens, *state, *kv) -> (last logits, *state, *kv)``: every ``ArraysCache``'s
    arrays (fixed shapes) in and out, then every attention layer's keys and values (a plain
    ``KVCache``, as long as the tokens seen).  The first chunk takes none: every cache starts
    empty, as in mlx-lm (a zero state is not always an empty one: recurrent_gemma's first token
    is scaled differently).  The chunked step of ``examples/llm_one_file.py`` for any number of
    arrays a layer, with attention layers beside them."""
    from mlx_lm.models.cache import ArraysCache, KVCache

    sizes = [len(c.cache) if isinstance(c, ArraysCache) else 0 for c in make_prompt_cache(model)]  # 0: keys, values

    def step(tokens: mx.array, *arrays: mx.array) -> tuple[mx.array, ...]:
        given = iter(arrays)
        caches: list[Any] = [ArraysCache(size=size) if size else KVCache() for size in sizes]
        for c, size in zip(caches, sizes):  # the state first, then keys and values
            for i in range(size if arrays else 0):
                c[i] = next(given)
        for c in caches:
            if isinstance(c, KVCache) and arrays:
                keys, values = next(given), next(given)
                c.state = (keys, values, keys.shape[2])
        logits = model(tokens, cache=caches)
        state = [a for c in caches if isinstance(c, ArraysCache) for a in c.cache]
        kv = [a for c in caches if isinstance(c, KVCache) for a in c.keys_and_values()]
        return (logits[:, -1, :], *state, *kv)

    return step


def generate_chunked(fn: Any, prompt: list[int], tokens: int) -> list[int]:
    """Greedy decoding with a chunked step: the prompt in chunks of ``CHUNKS``, then a token a step."""
    logits, arrays, done = None, [], 0
    while done < len(prompt):
        chunk = next(c for c in CHUNKS if c <= len(prompt) - done)
        logits, *arrays = fn(mx.array([prompt[done : done + chunk]], dtype=mx.int32), *arrays)
        done += chunk
    got = []
    for _ in range(tokens):
        token = mx.argmax(logits, axis=-1).astype(mx.int32)
        got.append(int(token.item()))
        logits, *arrays = fn(token.reshape(1, 1), *arrays)
    return got


def chunked_workflow(model: nn.Module, tokens: int) -> tuple[str, str]:
    """The chunked step exported with shapeless traces (each chunk length, as the first chunk
    and after one), the prompt fed in chunks; compared with mlx-lm's generation on its default
    cache (the whole prompt at once)."""
    step = state_step(model)
    for length in PROMPTS:  # the step itself, without export
        prompt = [(7 * i + 3) % 128 for i in range(length)]
        if generate_chunked(step, prompt, tokens) != llm_one_file.generate_directly(model, prompt, tokens):
            return "not exported", f"the step without mlxfn differs from mlx-lm at a prompt of {length}"
    after = step(mx.zeros((1, CHUNKS[0]), mx.int32))[1:]  # the state, keys and values after a chunk
    calls = [[mx.zeros((1, chunk), mx.int32)] for chunk in CHUNKS]
    calls += [[mx.zeros((1, chunk), mx.int32), *after] for chunk in CHUNKS]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "ssm.mlxfn"
        start = time.perf_counter()
        with mlxfn.exporter(path, step, shapeless=True) as exporter:
            for call in calls:
                try:
                    exporter(*call)
                except RuntimeError as e:  # MLX's "export a function twice with the same signature"
                    if "twice" not in str(e):
                        raise
        seconds = time.perf_counter() - start
        return compared(model, mlxfn.import_function(path), generate_chunked, tokens, seconds)


def one(name: str, tokens: int, run: bool) -> tuple[str, str]:
    """What happens to architecture ``name``: (outcome, detail)."""
    model = build(name)
    if isinstance(model, str):
        outcome, _, detail = model.partition(" (")
        return outcome, detail.removesuffix(")")
    cache = make_prompt_cache(model)
    kinds = cache_classes(cache)
    windows = [w for w in map(window, cache) if w is not None]
    if "ArraysCache" in kinds and set(kinds.split(" + ")) <= {"ArraysCache", "KVCache", "RotatingKVCache"}:
        if windows and min(windows) < max(PROMPTS) + tokens:
            return f"{kinds}: window of {min(windows)} reached, not run", ""
        if not run:
            return f"{kinds}: built", ""
        try:
            outcome, detail = chunked_workflow(model, tokens)
        except Exception as e:  # noqa: BLE001 - reported, never hidden
            traceback.print_exc(file=sys.stderr)
            outcome, detail = "error", f"{type(e).__name__}: {str(e)[:80]}"
        label = f"{kinds}, window of {min(windows)} never reached" if windows else kinds
        return f"{label}, chunked step (chunks of {'/'.join(map(str, CHUNKS))}): {outcome}", detail
    if "ArraysCache" in kinds:
        return f"{kinds}: chunked step function needed (see tests/test_llm_ssm.py), not run", ""
    if set(kinds.split(" + ")) - {"KVCache", "RotatingKVCache", "ChunkedKVCache"}:
        return f"{kinds}: not run (the example's step holds one KVCache a layer)", ""
    if len(cache) != len(model.layers):
        layers = f"{len(cache)} caches for {len(model.layers)} layers"
        return f"{kinds}: {layers}, not run (the example's step keeps one a layer)", ""
    if windows and min(windows) < max(PROMPTS) + tokens:
        return f"{kinds}: window of {min(windows)} reached, not run", ""
    if not run:
        return f"{kinds}: built", ""
    label = f"{kinds}, window of {min(windows)} never reached" if windows else kinds
    try:
        outcome, detail = workflow(model, tokens)
    except Exception as e:  # noqa: BLE001 - reported, never hidden
        traceback.print_exc(file=sys.stderr)
        outcome, detail = "error", f"{type(e).__name__}: {str(e)[:80]}"
    return f"{label}: {outcome}", detail


def in_child(name: str, tokens: int, run: bool) -> tuple[str, str]:
    """``one(name)`` in a process of its own: an architecture that crashes the process or
    runs past ``LIMIT_S`` is an outcome, not the end of the survey."""
    command = [sys.executable, __file__, "--child", name, "--tokens", str(tokens)] + ([] if run else ["--caches"])
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        return f"over {LIMIT_S} s", "not finished"
    if done.returncode < 0:
        return "process crashed", signal.Signals(-done.returncode).name
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return "process failed", f"exit status {done.returncode}"
    outcome, detail = json.loads(lines[-1])
    return str(outcome), str(detail)


def survey(names: list[str], tokens: int, run: bool) -> dict[str, list[str]]:
    outcomes: dict[str, list[str]] = {}
    for name in names:
        start = time.perf_counter()
        outcome, detail = in_child(name, tokens, run)
        if outcome == "not a model":
            continue
        print(f"{name}: {outcome} ({detail}) [{time.perf_counter() - start:.1f} s]", file=sys.stderr, flush=True)
        outcomes.setdefault(outcome, []).append(f"{name} ({detail})" if detail else name)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated module names")
    parser.add_argument("--tokens", type=int, default=8, help="tokens generated per prompt")
    parser.add_argument("--caches", action="store_true", help="build and list default caches only (no export)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one architecture, its outcome as a JSON line
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one(args.child, args.tokens, not args.caches)))
        return 0
    import mlx_lm.models

    skip = {"base", "cache", "rope_utils", "switch_layers", "activations", "pipeline", "ssm", "gated_delta", "mla"}
    names = args.only.split(",") if args.only else sorted(m.name for m in pkgutil.iter_modules(mlx_lm.models.__path__))
    start = time.perf_counter()
    outcomes = survey([n for n in names if n not in skip], args.tokens, not args.caches)
    for outcome, archs in sorted(outcomes.items()):
        print(f"- {outcome} ({len(archs)}): {', '.join(archs)}")
    print(f"{sum(map(len, outcomes.values()))} architectures in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
