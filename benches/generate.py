"""Greedy generation through one mlxfn file against the model run directly.

    python benches/generate.py [--model mlxlm-llama] [--prompt 40] [--tokens 32] [--rounds 5]

Exports the model's step function (``examples/llm_one_file.py``: the prefill
and the decode step, any prompt and cache length, ``shapeless=True``) once,
imports it, and generates greedily, rounds alternating three sides in one
process:

- ``mlxfn``: the imported file (every decode step is a new cache length);
- ``step``: the same step function, not exported (mlx-lm's default
  ``KVCache``, set from the cache arrays at each step): what the file replays;
- ``mlx-lm``: the model with mlx-lm's own ``KVCache`` (``make_prompt_cache``).

MLX's own shapeless export cannot serve these lengths (docs/MLX_LM_SURVEY.md),
so the baseline is the model itself.  Every side must produce the same
token ids.  Figures are medians; ratios are against ``mlx-lm``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx

import mlxfn

from harness import median, table
from repo import example
from zoo import MLX_LM, build, describe

llm_one_file = example("llm_one_file")


def timed_generation(generate: Callable[[], list[int]]) -> tuple[float, list[int]]:
    start = time.perf_counter()
    tokens = generate()
    return time.perf_counter() - start, tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MLX_LM), default="mlxlm-llama")
    parser.add_argument("--prompt", type=int, default=40, help="prompt length in tokens")
    parser.add_argument("--tokens", type=int, default=32, help="tokens to generate")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    model = build(args.model)
    prompt = [(7 * i + 3) % 97 + 1 for i in range(args.prompt)]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "llm.mlxfn"
        start = time.perf_counter()
        llm_one_file.export(model, path)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        imported = mlxfn.import_function(path)
        import_s = time.perf_counter() - start
        step = llm_one_file.step_function(model)
        sides: dict[str, Callable[[], list[int]]] = {
            "mlxfn": lambda: llm_one_file.generate(imported, prompt, args.tokens),
            "step": lambda: llm_one_file.generate(step, prompt, args.tokens),
            "mlx-lm": lambda: llm_one_file.generate_directly(model, prompt, args.tokens),
        }
        first = {name: timed_generation(run) for name, run in sides.items()}  # untimed round, first mlxfn's calls
        expected = first["mlx-lm"][1]
        for name, (_, tokens) in first.items():
            if tokens != expected:
                raise SystemExit(f"{name}: generated {tokens}, the model {expected}")
        times: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                seconds, tokens = timed_generation(sides[name])
                if tokens != expected:
                    raise SystemExit(f"{name}: generated {tokens}, the model {expected}")
                times[name].append(seconds)

    per_token = {name: median(t) / (args.tokens + 1) for name, t in times.items()}
    rows = [
        (f"{args.tokens} tokens after {args.prompt}", {n: median(t) for n, t in times.items()}, "s"),
        ("per step (prefill + decodes)", per_token, "s"),
        ("first generation in the process", {n: first[n][0] for n in sides}, "s"),
    ]
    print(f"model {args.model} ({describe(args.model)}); {args.rounds} rounds after an untimed one")
    print(f"mlxfn: export {export_s:.2f} s, import_function {import_s:.3f} s; every side generates the same tokens")
    print(table(rows, list(sides), baseline="mlx-lm"))
    print(f"\nmlx {mx.__version__}; ratio = side / mlx-lm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
