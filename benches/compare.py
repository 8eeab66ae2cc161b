"""mlxfn against MLX's own export, whole models, in one run.

    python benches/compare.py --model llama-1g [--model small] [--rounds 3]
                              [--durable] [--multi] [--pss] [--cold] [--out DIR]

Exports the seeded model (benches/zoo.py) with mlxfn and with
``mx.export_function``, rounds alternating the sides after an untimed one,
then imports each file in fresh processes (benches/harness.py) that have
used MLX before they import, as programs do: mlxfn mapping its constants,
mlxfn copying them, and MLX.  Every figure is a median, next to MLX's with
the ratio (below 1 is better); every import must reproduce the original
output exactly.  Models include bfloat16 and 4-bit (``nn.quantize``) ones:
``--model small-bf16``, ``--model small-q4``, ``llama-1g-bf16``, ``llama-1g-q4``.

  --durable  also time exports with fsync on both sides
  --multi    also compare the size of an 8-trace file (8 sequence lengths)
  --pss      also measure two processes serving one file at once (their PSS)
  --cold     also time loads with an empty MLX kernel cache (a fresh TMPDIR):
             what a user's first run pays for CPU kernels built at run time
  --long N   every load process calls on to its Nth call, then times 10 more
             (the steady state of a process that keeps serving)
  --dynamic  also export with shapeless=True and load that file (mlxfn:dynamic):
             a trace for every sequence length, against the shaped one
  --tokens N the input's sequence length (default 1: one token)
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx

import mlxfn

from harness import SIDES, Sides, load_rows, median, pair_pss_mb, same_outputs, save_inputs, settle, table, time_loads
from zoo import MLX_LM, MODELS, build, describe

EXPORTERS = ("mlxfn", "mlx")


def export(side: str, path: Path, fun: Callable[..., Any], args: Sequence[mx.array]) -> None:
    """Export ``fun`` to ``path`` with one side's API."""
    if side == "mlxfn":
        mlxfn.export_function(path, fun, *args)
    else:
        mx.export_function(str(path), fun, *args)


def _fsync(path: Path) -> None:
    for target, flags in ((path, os.O_RDONLY), (path.parent, os.O_RDONLY)):
        fd = os.open(target, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def time_exports(
    fun: Callable[..., Any], args: Sequence[mx.array], out: Path, rounds: int, durable: bool
) -> dict[str, float]:
    """Median export time per side; the first round of each is untimed.
    Before each, dirty pages are written back and the memory of the file
    deleted last is left to settle (``settle``)."""
    times: dict[str, list[float]] = {s: [] for s in EXPORTERS}
    for r in range(rounds + 1):
        for side in EXPORTERS if r % 2 == 0 else EXPORTERS[::-1]:
            path = out / f"export-{side}"
            os.sync()
            settle()
            start = time.perf_counter()
            export(side, path, fun, args)
            if durable:
                _fsync(path)
            if r > 0:
                times[side].append(time.perf_counter() - start)
            path.unlink()
    return {side: median(t) for side, t in times.items()}


def multi_trace_sizes(fun: Callable[..., Any], out: Path) -> dict[str, float]:
    """File size (MB) of 8 sequence lengths of one model in one file."""
    lengths = [1, 2, 4, 8, 16, 32, 64, 128]
    ours, theirs = out / "multi.mlxfn", out / "multi.mlx"
    with mlxfn.exporter(ours, fun) as exp:
        for n in lengths:
            exp(mx.zeros((1, n), dtype=mx.int32))
    mlx_exp = mx.exporter(str(theirs), fun)
    for n in lengths:
        mlx_exp(mx.zeros((1, n), dtype=mx.int32))
    mlx_exp.close()
    sizes = {"mlxfn": ours.stat().st_size / 1e6, "mlx": theirs.stat().st_size / 1e6}
    ours.unlink()
    theirs.unlink()
    return sizes


def by_exporter(values: dict[str, float]) -> dict[str, float]:
    """Per-exporter figures laid out under the load sides (mlxfn's under both of its)."""
    return {"mlxfn:map": values["mlxfn"], "mlxfn:copy": values["mlxfn"], "mlx": values["mlx"]}


def run_model(name: str, out: Path, options: argparse.Namespace) -> str:
    """The full comparison for one model; returns the printed report."""
    fun = build(name)
    tokens = (mx.arange(options.tokens, dtype=mx.int32) % 200 + 3).reshape(1, -1)
    expected = [fun(tokens)]
    mx.eval(expected)
    inputs = out / "inputs.npz"
    save_inputs(inputs, [tokens], {})
    rows: list[tuple[str, dict[str, float], str]] = []
    rows.append(("export, page cache", by_exporter(time_exports(fun, [tokens], out, options.rounds, False)), "s"))
    if options.durable:
        rows.append(("export + fsync", by_exporter(time_exports(fun, [tokens], out, options.rounds, True)), "s"))
    files = {side: out / f"model.{side}" for side in EXPORTERS}
    for side, path in files.items():
        export(side, path, fun, [tokens])
    rows.append(("file size", by_exporter({s: p.stat().st_size / 1e6 for s, p in files.items()}), "M"))
    if options.multi:
        rows.append(("8-trace file size", by_exporter(multi_trace_sizes(fun, out)), "M"))
    if options.dynamic:
        files["dynamic"] = out / "model.dynamic"
        mlxfn.export_function(files["dynamic"], fun, tokens, shapeless=True)
        rows.append(("file size, dynamic export", {"mlxfn:dynamic": files["dynamic"].stat().st_size / 1e6}, "M"))
    nodes = sum(len(t["nodes"]) for t in mlxfn._mlxfn.File.open(str(files["mlxfn"])).traces())
    del fun  # the loads below must not compete with the model for memory
    gc.collect()
    mx.clear_cache()

    sides_used = (*SIDES, "mlxfn:dynamic") if options.dynamic else SIDES
    loaded = {"mlx": files["mlx"], "mlxfn:dynamic": files.get("dynamic")}
    files_used = {side: loaded.get(side) or files["mlxfn"] for side in sides_used}
    sides = Sides(files_used, inputs, settle=settle, long=options.long)
    loads = time_loads(sides, options.rounds)
    if not same_outputs(out, sides_used, expected):
        raise SystemExit(f"{name}: an imported function's output differs from the original's")
    rows += load_rows(loads)
    if options.pss:
        rows.append(("two processes, one file: total PSS", {s: pair_pss_mb(sides, s) for s in sides_used}, "M"))
    report = [
        f"model {name} ({describe(name)}, {nodes} primitives); {options.rounds} rounds per side after an untimed one",
        f"mlxfn:map loads by {loads['mlxfn:map'][0].mode}; every import reproduces the original output exactly",
        table(rows, sides_used),
    ]
    if options.cold:
        with tempfile.TemporaryDirectory() as fresh:
            sides.cold_cache = Path(fresh)
            cold = time_loads(sides, options.rounds)
            sides.cold_cache = None
        wanted = ("import to first output", "second call", "first 3 calls", "10th call", "steady call")
        report.append("empty MLX kernel cache (every process its own fresh TMPDIR):")
        report.append(table([r for r in load_rows(cold) if r[0] in wanted], sides_used))
    for path in files.values():
        path.unlink()
    return "\n".join(report)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", choices=sorted(MODELS) + sorted(MLX_LM), action="append", help="repeatable; default llama-1g"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--multi", action="store_true")
    parser.add_argument("--pss", action="store_true")
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--long", type=int, default=0)
    parser.add_argument("--dynamic", action="store_true")
    parser.add_argument("--tokens", type=int, default=1, help="the input's sequence length (default 1)")
    parser.add_argument("--out", type=Path, help="scratch directory (default: a temporary one)")
    options = parser.parse_args(argv)
    if options.out:
        options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=options.out) as scratch:
        for name in options.model or ["llama-1g"]:
            print(run_model(name, Path(scratch), options), flush=True)
            print()
    print(f"mlx {mx.__version__}, {os.cpu_count()} CPU cores; ratio = side / MLX")
    return 0


if __name__ == "__main__":
    sys.exit(main())
