"""Greedy decoding from one mlxfn file (in C++, and through Python's import
with each runtime) against mlx-lm in Python.

    python benches/native_decode.py [--model tiny32|mlxlm-llama] [--prompt 40] [--tokens 64] [--rounds 5] [--replay]

Exports a model's step function (``examples/llm_one_file.py`` with mlx-lm's
``ConcatenateKVCache``: any prompt and cache length, ``shapeless=True``),
builds ``examples/cpp/llm_generate.cpp`` against the runtime (native/) and
the installed mlx wheel, and times the decode steps (after the prefill) in
rounds that alternate the sides in one run:

- ``C++``: mlxfn's C++ runtime (``llm_generate``, which reports its own
  decode time per token: the process start, import and prefill are not in it);
- ``C++ no islands``: the same with ``MLXFN_ISLANDS=0``: the decode step's
  static islands (native/src/islands.h) are never compiled, every node runs
  on its own (the runtime before islands);
- ``mlxfn (Python)``: the file imported by ``mlxfn.import_function`` (the
  C++ runtime through the bridge, ``MLXFN_RUNTIME=native``);
- ``mlxfn (replay)``, with ``--replay``: the same file replayed in Python
  (``MLXFN_RUNTIME=python``, the fallback where the wheel has no bridge);
- ``mlx-lm``: the model with mlx-lm's own ``KVCache``, no export.

Every side must generate the same token ids.  Figures are medians per
decoded token; ratios are against ``mlx-lm``.  ``tiny32`` is the issue's
overhead-bound model (mlx-lm's Llama, 32 layers of 64); ``mlxlm-llama`` the
compute-bound one (benches/zoo.py).

``build_program`` (also used by tests/test_native.py) compiles a C++
program with the runtime's sources and the core's C ABI staticlib.
"""

from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

import mlxfn

from repo import ROOT, example

MLX_DIR = Path(mx.__file__).parent
BUILD = ROOT / "target" / "native-test"
CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ["-std=c++20", "-O2", "-fPIC", "-Wall", "-Wextra", "-Werror"]


def _compile(source: Path, headers: Sequence[Path]) -> Path:
    """``source`` compiled into BUILD, again only when it or a header changed."""
    obj = BUILD / f"{source.parent.name}-{source.stem}.o"
    newest = max(p.stat().st_mtime for p in [source, *headers])
    if not obj.exists() or obj.stat().st_mtime < newest:
        subprocess.run(
            [CXX, *CXXFLAGS, "-isystem", str(MLX_DIR / "include"), "-I", str(ROOT / "native" / "include")]
            + ["-c", str(source), "-o", str(obj)],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    return obj


def build_program(main: Path, name: str) -> Path:
    """``main`` linked with the runtime (native/src), the core's C ABI
    staticlib (``cargo build -p mlxfn-capi --release``) and the mlx wheel's
    libmlx (rpath to it); object files are kept in target/native-test."""
    BUILD.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["cargo", "build", "-p", "mlxfn-capi", "--release"], cwd=ROOT, check=True, capture_output=True, timeout=900
    )
    staticlib = ROOT / "target" / "release" / "libmlxfn_capi.a"
    headers = [*(ROOT / "native" / "src").glob("*.h"), *(ROOT / "native" / "include" / "mlxfn").glob("*.h")]
    sources = [*sorted((ROOT / "native" / "src").glob("*.cpp")), main]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        objects = list(pool.map(lambda s: _compile(s, headers), sources))
    program = BUILD / name
    lib = MLX_DIR / "lib"
    subprocess.run(
        [CXX, "-o", str(program), *map(str, objects), str(staticlib), f"-L{lib}", "-lmlx", f"-Wl,-rpath,{lib}"]
        + ["-lpthread", "-ldl", "-lm"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return program


def export_concatenate(model: nn.Module, path: Path) -> None:
    """The one-file step function with mlx-lm's ConcatenateKVCache."""
    llm = example("llm_one_file")
    if "kind" in inspect.signature(llm.export).parameters:
        llm.export(model, path, kind="concatenate")
    else:
        llm.export(model, path)


def build_model(name: str) -> nn.Module:
    if name == "tiny32":
        model: nn.Module = example("llm_one_file").tiny_model("llama", layers=32)
        return model
    from zoo import build

    return build(name)


def python_decode(step: Callable[..., Any], prompt: list[int], count: int) -> tuple[float, list[int]]:
    """Seconds per decoded token (after the prefill) and the tokens, with a
    step function (the imported file)."""
    logits, *cache = step(mx.array([prompt], dtype=mx.int32))
    tokens: list[int] = []
    start = 0.0
    for i in range(count):
        token = mx.argmax(logits, axis=-1).astype(mx.int32)
        tokens.append(int(token.item()))
        if i == 0:
            start = time.perf_counter()
        if i + 1 == count:
            break
        logits, *cache = step(token.reshape(1, 1), *cache)
    return (time.perf_counter() - start) / (count - 1), tokens


def mlx_lm_decode(model: nn.Module, prompt: list[int], count: int) -> tuple[float, list[int]]:
    """The same with the model and mlx-lm's own KV cache."""
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    logits = model(mx.array([prompt], dtype=mx.int32), cache=cache)[:, -1, :]
    tokens: list[int] = []
    start = 0.0
    for i in range(count):
        token = mx.argmax(logits, axis=-1)
        tokens.append(int(token.item()))
        if i == 0:
            start = time.perf_counter()
        if i + 1 == count:
            break
        logits = model(token.reshape(1, 1).astype(mx.int32), cache=cache)[:, -1, :]
    return (time.perf_counter() - start) / (count - 1), tokens


def cpp_decode(
    program: Path, path: Path, prompt: list[int], count: int, islands: bool = True
) -> tuple[float, list[int]]:
    env = {**os.environ, "MLXFN_ISLANDS": "1" if islands else "0"}
    proc = subprocess.run(
        [str(program), str(path), str(count), *map(str, prompt)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"llm_generate failed: {proc.stderr}")
    ms = float(proc.stderr.split("decode:")[1].split("ms/token")[0])
    return ms / 1e3, [int(t) for t in proc.stdout.split()]


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


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny32", "mlxlm-llama"], default="tiny32")
    parser.add_argument("--prompt", type=int, default=40, help="prompt length in tokens")
    parser.add_argument("--tokens", type=int, default=64, help="tokens to generate")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--replay", action="store_true", help="also time the Python replay (slow)")
    args = parser.parse_args(argv)

    program = build_program(ROOT / "examples" / "cpp" / "llm_generate.cpp", "llm_generate")
    model = build_model(args.model)
    vocab = 97 if args.model == "tiny32" else 4000
    prompt = [(7 * i + 3) % vocab + 1 for i in range(args.prompt)]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "llm.mlxfn"
        export_concatenate(model, path)
        imported = import_with(path, "native")
        sides: dict[str, Callable[[], tuple[float, list[int]]]] = {
            "C++": lambda: cpp_decode(program, path, prompt, args.tokens),
            "C++ no islands": lambda: cpp_decode(program, path, prompt, args.tokens, islands=False),
            "mlxfn (Python)": lambda: python_decode(imported, prompt, args.tokens),
            "mlx-lm": lambda: mlx_lm_decode(model, prompt, args.tokens),
        }
        if args.replay:
            replay = import_with(path, "python")
            sides["mlxfn (replay)"] = lambda: python_decode(replay, prompt, args.tokens)
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
