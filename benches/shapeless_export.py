"""What a one-file LLM export costs against MLX's own shaped export.

    python benches/shapeless_export.py [--layers 32] [--kind kv|concatenate] [--rounds 3] [--reader python]

mlx-lm's Llama (hidden size 64, ``--layers`` layers, random weights): the
time of mlxfn's shapeless export of its step function (the prefill and the
decode step in one file, every prompt and cache length:
``examples/llm_one_file.py``) against MLX's shaped export
(``mx.export_function``, ``shapeless=False``) of the prefill alone, in the
same process, medians of ``--rounds``.  The target (issue 18): a ratio of at
most 40.  ``--reader python`` reads the probes in Python, as a wheel without
the C++ bridge does (macOS), instead of with the bridge's ``read_probe``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx

from mlxfn import _native

from harness import median
from repo import example

llm_one_file = example("llm_one_file")


def timed(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--kind", choices=llm_one_file.CACHES, default="kv", help="mlx-lm's KV cache class")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reader", choices=("auto", "python"), default="auto", help="who reads the probes")
    args = parser.parse_args(argv)
    if args.reader == "python":
        _native.read_probe = lambda: None  # as without the bridge
    reader = "C++ (the bridge)" if _native.read_probe() is not None else "Python"

    model = llm_one_file.tiny_model("llama", layers=args.layers)
    step = llm_one_file.step_function(model, args.kind)
    with tempfile.TemporaryDirectory() as scratch:
        ours_path, theirs_path = Path(scratch) / "llm.mlxfn", Path(scratch) / "prefill.mlx"
        tokens = mx.zeros((1, 8), mx.int32)
        mx.export_function(str(theirs_path), step, tokens)  # untimed: first-use costs
        theirs = timed(lambda: mx.export_function(str(theirs_path), step, tokens), args.rounds)
        ours = timed(lambda: llm_one_file.export(model, ours_path, kind=args.kind), args.rounds)
    print(
        f"Llama, {args.layers} layers, hidden 64, {args.kind} cache (median of {args.rounds}; probes read in {reader})"
    )
    print(f"  MLX shaped export of the prefill:       {theirs * 1e3:9.1f} ms")
    print(f"  mlxfn one-file export (prefill+decode): {ours * 1e3:9.1f} ms")
    print(f"  ratio: {ours / theirs:.1f}x (target: <= 40x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
