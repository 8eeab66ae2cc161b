"""Every mlx-lm architecture through one file with its default cache.

    python benches/survey_mlx_lm.py [--only llama,qwen2] [--tokens 8]

For each module of ``mlx_lm.models`` with a ``Model`` and a ``ModelArgs``:
a tiny model (hidden size 64, 2 layers, seeded) from a generic config
(``COMMON``: the fields most architectures share; an architecture that
needs another field without a default is listed as not built), then its
default cache (``make_prompt_cache``).  Where every layer's cache is mlx-lm's
``KVCache``: the one-file workflow of ``examples/llm_one_file.py`` (the
prefill and the decode step in one shapeless file), greedy generation for
prompts of 3, 17 and 40 tokens compared with mlx-lm's own (the model and
that cache).  Other caches are listed by class (see the README for the
rotating, quantized and state-space workflows).  Prints markdown for
docs/MLX_LM_SURVEY.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
import signal
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

COMMON: dict[str, Any] = dict(
    vocab_size=128,
    hidden_size=64,
    num_hidden_layers=2,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    rms_norm_eps=1e-5,
    layer_norm_eps=1e-5,
    layer_norm_epsilon=1e-5,
    norm_eps=1e-5,
    rope_theta=10000.0,
    max_position_embeddings=4096,
    tie_word_embeddings=False,
    attention_bias=False,
    mlp_bias=False,
    rope_scaling=None,
    partial_rotary_factor=1.0,
)
PROMPTS = (3, 17, 40)
MAX_PARAMETERS = 4_000_000  # a tiny model's; more means the config was not taken
LIMIT_S = 60  # seconds an architecture may take (build, export and generation)


class _TooLong(BaseException):  # not caught as an architecture's own error
    pass


def _too_long(signum: int, frame: Any) -> None:
    raise _TooLong


def build(name: str) -> nn.Module | str:
    """The tiny seeded model of module ``name``, or why there is none."""
    try:
        module = importlib.import_module(f"mlx_lm.models.{name}")
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a module that needs another package
        return f"not imported ({type(e).__name__})"
    if not hasattr(module, "Model") or not hasattr(module, "ModelArgs"):
        return "not a model"
    fields = dataclasses.fields(module.ModelArgs)
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [f for f in required if f not in COMMON and f != "model_type"]
    if missing:
        return f"not built (needs {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
    names = {f.name for f in fields}
    config = {k: v for k, v in COMMON.items() if k in names}
    try:
        model = module.Model(module.ModelArgs(model_type=name, **config))
        size = sum(v.size for _, v in tree_flatten(model.parameters()))
        if size > MAX_PARAMETERS:  # its own field names left at their full-size defaults
            return f"not built (its config names differ: {size / 1e6:.0f}M parameters)"
        mx.random.seed(0)
        model.update(
            nn.utils.tree_map(
                lambda p: mx.random.normal(p.shape) * (1.5 / p.shape[-1] ** 0.5) if p.ndim >= 2 else p,
                model.parameters(),
            )
        )
        mx.eval(model.parameters())
        model(mx.array([[1, 2, 3]], dtype=mx.int32), cache=make_prompt_cache(model))
    except Exception as e:  # noqa: BLE001 - an architecture this generic config does not fit
        return f"build fails ({type(e).__name__})"
    return model


def workflow(model: nn.Module, tokens: int) -> str:
    """The one-file workflow with mlx-lm's default ``KVCache``: ``pass`` or what went wrong."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "llm.mlxfn"
        start = time.perf_counter()
        llm_one_file.export(model, path, kind="kv")
        seconds = time.perf_counter() - start
        fn = mlxfn.import_function(path)
        for length in PROMPTS:
            prompt = [(7 * i + 3) % 128 for i in range(length)]
            expected = llm_one_file.generate_directly(model, prompt, tokens)
            try:
                got = llm_one_file.generate(fn, prompt, tokens)
            except ValueError as e:
                return f"refused at a prompt of {length} ({str(e).splitlines()[0][:60]})"
            if got != expected:
                return f"DIFFERENT tokens at a prompt of {length}"
        return f"pass ({len(fn.traces)} traces, export {seconds:.1f} s)"


def one(name: str, tokens: int) -> str:
    """What happens to architecture ``name``."""
    model = build(name)
    if isinstance(model, str):
        return model
    kinds = sorted({type(c).__name__ for c in make_prompt_cache(model)})
    if kinds != ["KVCache"]:
        return f"default cache {' + '.join(kinds)} (not run)"
    try:
        return "KVCache: " + workflow(model, tokens)
    except Exception as e:  # noqa: BLE001 - reported, never hidden
        traceback.print_exc(file=sys.stderr)
        return f"KVCache: error {type(e).__name__}: {str(e)[:80]}"


def survey(names: list[str], tokens: int) -> dict[str, list[str]]:
    outcomes: dict[str, list[str]] = {}
    signal.signal(signal.SIGALRM, _too_long)
    for name in names:
        signal.alarm(LIMIT_S)
        try:
            outcome = one(name, tokens)
        except _TooLong:
            outcome = f"over {LIMIT_S} s (not finished)"
        finally:
            signal.alarm(0)
        if outcome == "not a model":
            continue
        print(f"{name}: {outcome}", file=sys.stderr, flush=True)
        key = outcome.split(" (")[0] if not outcome.startswith("KVCache: pass") else "KVCache: pass"
        outcomes.setdefault(key, []).append(name if "pass" not in outcome else f"{name} {outcome.split('pass ')[1]}")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated module names")
    parser.add_argument("--tokens", type=int, default=8, help="tokens generated per prompt")
    args = parser.parse_args(argv)
    import mlx_lm.models

    skip = {"base", "cache", "rope_utils", "switch_layers", "activations", "pipeline", "ssm", "gated_delta", "mla"}
    names = args.only.split(",") if args.only else sorted(m.name for m in pkgutil.iter_modules(mlx_lm.models.__path__))
    outcomes = survey([n for n in names if n not in skip], args.tokens)
    for outcome, archs in sorted(outcomes.items()):
        print(f"- {outcome} ({len(archs)}): {', '.join(archs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
