"""Greedy decoding through one imported mlxfn file in Python: mlxfn's C++
runtime against the Python replay and against mlx-lm running the model.

    python benches/decode.py [--model tiny32|mlxlm-llama] [--prompt 40] [--tokens 64] [--rounds 5]

Exports a model's step function (``examples/llm_one_file.py`` with mlx-lm's
``ConcatenateKVCache``: any prompt and cache length, ``shapeless=True``),
imports it twice and times the decode steps (after the prefill) in rounds
that alternate the sides in one run:

- ``mlxfn (native)``: ``mlxfn.import_function`` with the C++ runtime
  (``MLXFN_RUNTIME=native``);
- ``mlxfn (python)``: the same file replayed in Python (``MLXFN_RUNTIME=python``);
- ``mlx-lm``: the model with mlx-lm's own ``KVCache``, no export.

Every side must generate the same token ids.  Figures are medians per
decoded token; ratios are against ``mlx-lm`` (the issue's targets: <= 0.5x
for ``tiny32``, mlx-lm's Llama of 32 layers of 64, bound by overhead;
<= 1.0x for ``mlxlm-llama``, bound by compute).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx

import mlxfn
from native_decode import build_model, export_concatenate, median, mlx_lm_decode, python_decode


def import_with(path: Path, runtime: str) -> Any:
    """``mlxfn.import_function(path)`` with ``MLXFN_RUNTIME=runtime``."""
    saved = os.environ.get("MLXFN_RUNTIME")
    os.environ["MLXFN_RUNTIME"] = runtime
    try:
        fn = mlxfn.import_function(path)
    finally:
        if saved is None:
            del os.environ["MLXFN_RUNTIME"]
        else:
            os.environ["MLXFN_RUNTIME"] = saved
    if not fn.runtime.startswith(runtime):
        raise SystemExit(f"asked for the {runtime} runtime, got {fn.runtime}")
    return fn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny32", "mlxlm-llama"], default="tiny32")
    parser.add_argument("--prompt", type=int, default=40, help="prompt length in tokens")
    parser.add_argument("--tokens", type=int, default=64, help="tokens to generate")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    model = build_model(args.model)
    vocab = 97 if args.model == "tiny32" else 4000
    prompt = [(7 * i + 3) % vocab + 1 for i in range(args.prompt)]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "llm.mlxfn"
        export_concatenate(model, path)
        native, replay = import_with(path, "native"), import_with(path, "python")
        sides: dict[str, Callable[[], tuple[float, list[int]]]] = {
            "mlxfn (native)": lambda: python_decode(native, prompt, args.tokens),
            "mlxfn (python)": lambda: python_decode(replay, prompt, args.tokens),
            "mlx-lm": lambda: mlx_lm_decode(model, prompt, args.tokens),
        }
        expected = sides["mlx-lm"]()[1]
        times: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(args.rounds + 1):  # the first round is untimed
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                seconds, tokens = sides[name]()
                if tokens != expected:
                    raise SystemExit(f"{name}: generated {tokens}, mlx-lm {expected}")
                if r > 0:
                    times[name].append(seconds)

    base = median(times["mlx-lm"])
    print(f"model {args.model}; {args.tokens} tokens after a prompt of {args.prompt}; {args.rounds} rounds")
    print(f"{'side':<16} {'ms/token':>9} {'ratio':>7}")
    for name, t in times.items():
        print(f"{name:<16} {1e3 * median(t):9.2f} {median(t) / base:7.2f}x")
    print(f"\nmlx {mx.__version__}; every side generated the same token ids; ratio = side / mlx-lm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
