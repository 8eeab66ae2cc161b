"""Compare mlxfn with MLX's own export on the same function, in one run.

Every figure is a median over rounds that alternate the two sides, and is
reported next to MLX's with their ratio (mlxfn / MLX: below 1 is better).
Loads run in fresh processes (page cache warm for both files), so a first
call pays what a user's first call pays.

    python -m mlxfn.bench --model llama-1g      (also: mlxfn bench ...)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import mlx.core as mx

SIDES = ("mlxfn", "mlx")

# name: (LlamaConfig overrides, example token count, description)
MODELS: dict[str, tuple[dict[str, Any], str]] = {
    "llama-1g": (dict(vocab=32000, dims=2048, hidden=5632, heads=16, kv_heads=4, layers=3), "~1 GB float32"),
    "llama-4g": (dict(vocab=32000, dims=2048, hidden=5632, heads=16, kv_heads=4, layers=20), "~4 GB float32"),
    "small": (dict(vocab=256, dims=64, hidden=128, heads=4, kv_heads=2, layers=16), "~2,000 primitives"),
}


def build_model(name: str) -> Callable[..., Any]:
    """The seeded benchmark model called ``name`` (see MODELS)."""
    from .benchmodels import Llama, LlamaConfig, seeded

    overrides, _ = MODELS[name]
    return seeded(Llama(LlamaConfig(**overrides)), seed=0)


def export(side: str, path: Path, fun: Callable[..., Any], args: Sequence[mx.array]) -> None:
    """Export ``fun`` to ``path`` with one side's API ("mlxfn" or "mlx")."""
    import mlxfn

    if side == "mlxfn":
        mlxfn.export_function(path, fun, *args)
    else:
        mx.export_function(str(path), fun, *args)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def time_exports(
    fun: Callable[..., Any], args: Sequence[mx.array], out: Path, rounds: int, durable: bool
) -> dict[str, list[float]]:
    """Export on both sides, alternating which goes first, syncing between."""
    times: dict[str, list[float]] = {s: [] for s in SIDES}
    for r in range(rounds):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            path = out / f"export-{side}"
            os.sync()
            start = time.perf_counter()
            export(side, path, fun, args)
            if durable:
                _fsync(path)
            times[side].append(time.perf_counter() - start)
            path.unlink()
    return times


@dataclass
class Load:
    """One fresh process: import, first output, a second call, steady calls."""

    import_s: float
    first_s: float
    second_s: float
    steady_s: float
    base_rss_mb: float
    peak_rss_mb: float

    @property
    def overhead_s(self) -> float:
        return self.first_s - self.steady_s


def _rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's ru_maxrss survives exec (a child would report its parent's
    peak), so VmHWM, which is reset by exec, is read where it exists.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def child(side: str, path: str, inputs_path: str, steady_calls: int, output_path: str) -> None:
    """Runs in a fresh process; prints one JSON line, saves the first output."""
    import mlxfn

    inputs, kwargs = load_inputs(inputs_path)
    mx.eval(inputs, kwargs)
    base = _rss_mb()
    importer = mlxfn.import_function if side == "mlxfn" else mx.import_function
    t0 = time.perf_counter()
    fn = importer(path)
    t_import = time.perf_counter() - t0
    first = fn(*inputs, **kwargs)
    mx.eval(first)
    t_first = time.perf_counter() - t0
    peak = _rss_mb()
    mx.savez(output_path, *first)
    t1 = time.perf_counter()
    mx.eval(fn(*inputs, **kwargs))  # mlxfn compiles here
    t_second = time.perf_counter() - t1
    steady = []
    for _ in range(steady_calls):
        t = time.perf_counter()
        mx.eval(fn(*inputs, **kwargs))
        steady.append(time.perf_counter() - t)
    print(json.dumps(Load(t_import, t_first, t_second, statistics.median(steady), base, peak).__dict__))


def save_inputs(path: Path, args: Sequence[mx.array], kwargs: dict[str, mx.array]) -> None:
    """Save a call's inputs for the child processes (``load_inputs`` reads them)."""
    named = {f"arg_{i}": a for i, a in enumerate(args)}
    named.update({f"kw_{k}": v for k, v in kwargs.items()})
    mx.savez(str(path), **named)


def load_inputs(path: str) -> tuple[list[mx.array], dict[str, mx.array]]:
    """The positional and keyword inputs saved by ``save_inputs``."""
    named = mx.load(path)
    assert isinstance(named, dict)
    args = [named[f"arg_{i}"] for i in range(sum(k.startswith("arg_") for k in named))]
    kwargs = {k[3:]: v for k, v in named.items() if k.startswith("kw_")}
    return args, kwargs


def outputs_path(out: Path, side: str) -> Path:
    """Where a load round saves the first output of that side."""
    return out / f"outputs-{side}.npz"


def time_loads(paths: dict[str, Path], inputs_path: Path, rounds: int, steady_calls: int) -> dict[str, list[Load]]:
    """Import each file in fresh processes, alternating sides."""
    loads: dict[str, list[Load]] = {s: [] for s in SIDES}
    for r in range(rounds):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            saved = outputs_path(inputs_path.parent, side)
            cmd = [sys.executable, "-m", "mlxfn.bench", "--child", side, str(paths[side]), str(inputs_path), str(steady_calls), str(saved)]
            result = subprocess.run(cmd, check=True, capture_output=True, text=True)
            loads[side].append(Load(**json.loads(result.stdout.strip().splitlines()[-1])))
    return loads


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(rows: list[tuple[str, float, float, str]]) -> str:
    """Rows of (name, mlxfn, MLX, unit) as an aligned table with ratios."""
    lines = [f"{'':34}{'mlxfn':>11}{'MLX':>11}{'ratio':>8}"]
    for name, ours, theirs, unit in rows:
        ratio = f"{ours / theirs:8.2f}" if theirs else f"{'-':>8}"
        lines.append(f"{name:34}{ours:>10.3f}{unit}{theirs:>10.3f}{unit}{ratio}")
    return "\n".join(lines)


def node_count(path: Path) -> int:
    """Primitives in every trace of an mlxfn file."""
    from . import _mlxfn

    return sum(len(t["nodes"]) for t in _mlxfn.File.open(str(path)).traces())


def check_outputs(out: Path, expected: Sequence[mx.array]) -> None:
    """Both sides' imported outputs must equal the original's exactly."""
    for side in SIDES:
        got = list(mx.load(str(outputs_path(out, side))).values())
        same = len(got) == len(expected) and all(
            g.shape == e.shape and g.dtype == e.dtype and mx.array_equal(g, e).item() for g, e in zip(got, expected)
        )
        if not same:
            raise SystemExit(f"{side}: the imported function's output differs from the original's")


def run_model(name: str, out: Path, rounds: int, durable: bool, multi: bool) -> str:
    """The full comparison for one model; returns the printed report."""
    fun = build_model(name)
    tokens = mx.array([[17]])
    expected = fun(tokens)
    expected = [expected] if isinstance(expected, mx.array) else list(expected)
    mx.eval(expected)
    inputs_path = out / "inputs.npz"
    save_inputs(inputs_path, [tokens], {})
    report = [f"model {name} ({MODELS[name][1]}); {rounds} rounds per side, alternating"]
    rows: list[tuple[str, float, float, str]] = []
    exports = time_exports(fun, [tokens], out, rounds, durable=False)
    rows.append(("export, page cache", _median(exports["mlxfn"]), _median(exports["mlx"]), "s"))
    if durable:
        exports = time_exports(fun, [tokens], out, rounds, durable=True)
        rows.append(("export + fsync", _median(exports["mlxfn"]), _median(exports["mlx"]), "s"))
    paths = {side: out / f"model.{side}" for side in SIDES}
    for side, path in paths.items():
        export(side, path, fun, [tokens])
    sizes = {side: paths[side].stat().st_size / 1e6 for side in SIDES}
    report[0] += f", {node_count(paths['mlxfn'])} primitives"
    rows.append(("file size, MB", sizes["mlxfn"], sizes["mlx"], "M"))
    if multi:
        multi_row = multi_trace_sizes(fun, out)
    del fun  # free the model: the loads below must not compete with it for memory
    gc.collect()
    mx.clear_cache()
    steady_calls = 50 if name == "small" else 5
    loads = time_loads(paths, inputs_path, rounds, steady_calls)
    check_outputs(out, expected)
    report.append("both imports reproduce the original output exactly")

    rows += load_rows(loads)
    if multi:
        rows.append(multi_row)
    report.append(table(rows))
    for path in paths.values():
        path.unlink()
    return "\n".join(report)


def load_rows(loads: dict[str, list[Load]]) -> list[tuple[str, float, float, str]]:
    """The load figures of both sides, medians over rounds."""

    def med(side: str, attr: str) -> float:
        return _median([getattr(load, attr) for load in loads[side]])

    return [
        ("import_function call", med("mlxfn", "import_s"), med("mlx", "import_s"), "s"),
        ("import to first output", med("mlxfn", "first_s"), med("mlx", "first_s"), "s"),
        ("load overhead (first - steady)", med("mlxfn", "overhead_s"), med("mlx", "overhead_s"), "s"),
        ("second call (mlxfn compiles)", med("mlxfn", "second_s"), med("mlx", "second_s"), "s"),
        ("steady call", med("mlxfn", "steady_s"), med("mlx", "steady_s"), "s"),
        ("peak RSS at first output, MiB", med("mlxfn", "peak_rss_mb"), med("mlx", "peak_rss_mb"), "M"),
    ]


def run_file(path: Path, out: Path, rounds: int, steady_calls: int) -> str:
    """Load figures for a user's own file: it is converted to the other
    format (``mlxfn convert``), then both are imported side by side and
    called on zero-filled inputs of the file's first trace."""
    from . import _mlxfn
    from .convert import convert, example_inputs, signature_of_record

    kind, _ = _mlxfn.sniff(str(path))
    if kind == "unknown":
        raise SystemExit(f"{path}: not an mlxfn file nor a file written by MLX's exporter")
    other = "mlx" if kind == "mlxfn" else "mlxfn"
    paths = {kind: path, other: out / f"converted.{other}"}
    convert(path, paths[other], other)
    record = _mlxfn.File.open(str(paths["mlxfn"])).traces()[0]
    args, kwargs = example_inputs(signature_of_record(record))
    inputs_path = out / "inputs.npz"
    save_inputs(inputs_path, args, kwargs)
    loads = time_loads(paths, inputs_path, rounds, steady_calls)
    outputs = {side: list(mx.load(str(outputs_path(out, side))).values()) for side in SIDES}
    same = len(outputs["mlxfn"]) == len(outputs["mlx"]) and all(
        a.shape == b.shape and a.dtype == b.dtype and mx.array_equal(a, b, equal_nan=True).item()
        for a, b in zip(outputs["mlxfn"], outputs["mlx"])
    )
    sizes = {side: paths[side].stat().st_size / 1e6 for side in SIDES}
    report = [
        f"file {path} ({kind} format; the {other} side converted from it), {node_count(paths['mlxfn'])} primitives; "
        f"{rounds} rounds per side, alternating, zero-filled inputs of trace 0",
        "both imports give the same output" if same else "WARNING: the two imports' outputs differ",
        table([("file size, MB", sizes["mlxfn"], sizes["mlx"], "M"), *load_rows(loads)]),
    ]
    paths[other].unlink()
    return "\n".join(report)


def multi_trace_sizes(fun: Callable[..., Any], out: Path) -> tuple[str, float, float, str]:
    """8 sequence lengths of one model in one file: one copy of the weights?"""
    import mlxfn

    lengths = [1, 2, 4, 8, 16, 32, 64, 128]
    ours, theirs = out / "multi.mlxfn", out / "multi.mlx"
    with mlxfn.exporter(ours, fun) as exp:
        for n in lengths:
            exp(mx.zeros((1, n), dtype=mx.int32))
    mlx_exp = mx.exporter(str(theirs), fun)
    for n in lengths:
        mlx_exp(mx.zeros((1, n), dtype=mx.int32))
    mlx_exp.close()
    sizes = ours.stat().st_size / 1e6, theirs.stat().st_size / 1e6
    ours.unlink()
    theirs.unlink()
    return ("8-trace file size, MB", sizes[0], sizes[1], "M")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mlxfn bench`` command (also ``python -m mlxfn.bench``)."""
    parser = argparse.ArgumentParser(prog="mlxfn bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), action="append", help="repeatable; default llama-1g and small")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durable", action="store_true", help="also time exports with fsync on both sides")
    parser.add_argument("--multi", action="store_true", help="also compare an 8-trace export's file size")
    parser.add_argument("--out", type=Path, help="scratch directory (default: a temporary one)")
    parser.add_argument("--file", type=Path, action="append", help="repeatable: benchmark your own exported file (mlxfn or MLX format) against its conversion")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, path, inputs, calls, saved = args.child
        child(side, path, inputs, int(calls), saved)
        return 0
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out) as scratch:
        for file in args.file or []:
            print(run_file(file, Path(scratch), args.rounds, steady_calls=10), flush=True)
            print()
        for name in args.model or ([] if args.file else ["llama-1g", "small"]):
            print(run_model(name, Path(scratch), args.rounds, args.durable, args.multi), flush=True)
            print()
    print(f"mlx {mx.__version__}, {os.cpu_count()} CPU cores; ratio = mlxfn / MLX")
    return 0


if __name__ == "__main__":
    sys.exit(main())
