"""``mlxfn bench``: how your own file loads with mlxfn, next to MLX's own import.

    mlxfn bench --file model.mlxfn [--rounds N] [--out DIR]   (also a file in MLX's format)

The file is converted to the other format, then each side imports it in fresh
processes, the order rotating, after an untimed round: mlxfn mapping its
constants, mlxfn copying them, and MLX.  Each process first uses MLX as a
program does before it loads a model (arrays of mixed sizes made, computed
and freed, a small matmul), then imports the file and calls it on zeros of
its first trace's signature.  Figures are medians over rounds, next to MLX's
with the ratio (below 1 is better).  Whole-model benchmarks are the
repository's ``benches/``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx

from . import _mlxfn
from ._mlx import MLX_VERSION
from .errors import MlxfnError

SIDES = ("mlxfn:map", "mlxfn:copy", "mlx")  # "mlxfn:<load>": import_function(path, load=<load>)
CALLS = 10  # calls timed one by one after the first output
UNAVAILABLE = 3  # a load process's status when its side cannot run here (its JSON says why)


class BenchError(MlxfnError):
    """A file cannot be benchmarked, or a load process failed (the message says why)."""


def use_mlx() -> None:
    """Use MLX as a program does before it loads a model.  MLX's allocator
    keeps the freed buffers and hands them out again."""
    arrays = [mx.full((n,), 0.5) for n in (1, 24, 1000, 4096, 1 << 16, 1 << 20)]
    arrays += [mx.arange(n, dtype=mx.int32) for n in (3, 500, 1 << 18)]
    arrays += [mx.ones((n,), mx.bfloat16) for n in (7, 1 << 12)]
    a = mx.random.normal((256, 256), key=mx.random.key(0))
    mx.eval(arrays, a @ a.T)


@dataclass
class Load:
    """One fresh process: import, the first calls one by one, memory at the first output (MiB)."""

    import_s: float
    calls_s: list[float]  # the first call and the next CALLS
    peak_rss_mb: float  # VmHWM
    anon_mb: float
    file_mb: float
    mode: str = ""  # how mlxfn loaded the constants

    @property
    def first_s(self) -> float:
        """From the import to the first output."""
        return self.import_s + self.calls_s[0]

    @property
    def steady_s(self) -> float:
        """The median of the last half of the calls."""
        return median(self.calls_s[len(self.calls_s) // 2 :])


def memory_mb() -> dict[str, float]:
    """VmHWM, RssAnon and RssFile of this process in MiB (0 without Linux's /proc)."""
    found = dict.fromkeys(("VmHWM", "RssAnon", "RssFile"), 0.0)
    try:
        with open("/proc/self/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in found:
                    found[name] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return found


def import_side(side: str, path: str) -> Any:
    """Import ``path`` the way ``side`` does."""
    if side == "mlx":
        return mx.import_function(path)
    import mlxfn

    return mlxfn.import_function(path, load=side.split(":")[1])


def first_calls(
    side: str, path: str, args: Sequence[mx.array], kwargs: dict[str, mx.array], output: str
) -> tuple[Load, Callable[[], None]]:
    """In a fresh process: use MLX, import ``path`` as ``side`` does, call it
    ``CALLS + 1`` times, save the first output (``mx.savez``).  Returns the
    figures and a function that makes one more call."""
    mx.eval(args, kwargs)
    use_mlx()
    start = time.perf_counter()
    fn = import_side(side, path)
    import_s = time.perf_counter() - start
    calls = []
    for k in range(CALLS + 1):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        mx.eval(out)
        calls.append(time.perf_counter() - start)
        if k == 0:
            memory = memory_mb()
            mx.savez(output, *out)
    mode = fn.load_mode.describe() if hasattr(fn, "load_mode") else ""
    load = Load(import_s, calls, memory["VmHWM"], memory["RssAnon"], memory["RssFile"], mode)
    return load, lambda: mx.eval(fn(*args, **kwargs))


def _child(side: str, path: str, mlxfn_file: str, output: str) -> int:
    """``python -m mlxfn.bench``: one load process, zeros for trace 0 of
    ``mlxfn_file`` as inputs; prints one JSON line."""
    from .convert import example_inputs
    from .ir import Trace

    signature = Trace.from_record(_mlxfn.File.open(mlxfn_file).traces()[0]).signature
    try:
        load, _ = first_calls(side, path, *example_inputs(signature), output)
    except ValueError as err:  # load="map" where it is not possible
        if "not possible here" not in str(err):
            raise
        print(json.dumps({"unavailable": str(err)}), flush=True)
        return UNAVAILABLE
    print(json.dumps(asdict(load)), flush=True)
    return 0


def run_child(cmd: Sequence[str], side: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One load process's JSON line; a process that failed raises BenchError."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode in (0, UNAVAILABLE) and lines:
        parsed: dict[str, Any] = json.loads(lines[-1])
        return parsed
    why = proc.stderr.strip().splitlines()
    raise BenchError(f"{side}: the load process failed (status {proc.returncode}): {why[-1] if why else 'no message'}")


def median(values: Sequence[float]) -> float:
    """The median (a benchmark figure is a median of rounds)."""
    return statistics.median(values)


Row = tuple[str, dict[str, float], str]  # name, side -> value, unit


def table(rows: Sequence[Row], sides: Sequence[str], baseline: str = "mlx") -> str:
    """Rows of figures per side as an aligned table, with each side's ratio to ``baseline``."""
    others = [s for s in sides if s != baseline]
    head = f"{'':36}" + "".join(f"{s:>15}" for s in sides) + "".join(f"{s + '/' + baseline:>19}" for s in others)
    lines = [head]
    for name, values, unit in rows:
        cells = "".join(f"{values[s]:>14.3f}{unit}" if s in values else f"{'-':>15}" for s in sides)
        base = values.get(baseline)
        ratios = "".join(f"{values[s] / base:>19.2f}" if base and s in values else f"{'-':>19}" for s in others)
        lines.append(f"{name:36}{cells}{ratios}")
    return "\n".join(lines)


def check_file(path: str) -> str:
    """The kind of ``path`` ("mlxfn" or "mlx") if it can be benchmarked; else the
    command's one-line errors (``cli.file_kind``) or BenchError."""
    from .cli import file_kind

    kind = file_kind(path)
    if kind == "mlxfn":
        from .ir import Trace

        for i, record in enumerate(_mlxfn.File.open(path).traces()):
            trace = Trace.from_record(record)
            if trace.state_follows_sizes:
                raise BenchError(
                    f"{path}: cannot be compared with MLX's own import: converting it to MLX's format is "
                    f"refused (trace {i} is dynamic, {trace.describe_dims()}, and its primitives' state "
                    "follows those sizes, which MLX's format cannot keep)"
                )
    return kind


def _saved(path: Path) -> list[mx.array]:
    loaded = mx.load(str(path))
    assert isinstance(loaded, dict)
    return [loaded[f"arr_{i}"] for i in range(len(loaded))]


def bench_file(path: str, kind: str, out: Path, rounds: int) -> str:
    """The load comparison of one file against its conversion; the report."""
    from .convert import convert

    other = "mlx" if kind == "mlxfn" else "mlxfn"
    formats = {kind: Path(path), other: out / f"converted.{other}"}
    convert(path, formats[other], other)
    loads: dict[str, list[Load]] = {side: [] for side in SIDES}
    notes = []
    for r in range(rounds + 1):  # the first round untimed: a machine's first memory touched is slow
        for side in SIDES[r % 3 :] + SIDES[: r % 3]:
            if side in loads:
                file = formats["mlx" if side == "mlx" else "mlxfn"]
                output = out / f"outputs-{side.replace(':', '-')}.npz"
                cmd = [sys.executable, "-m", "mlxfn.bench", side, str(file), str(formats["mlxfn"]), str(output)]
                fields = run_child(cmd, side)
                if "unavailable" in fields:
                    notes.append(f"{side}: not possible here: {fields['unavailable']}")
                    del loads[side]
                elif r > 0:
                    loads[side].append(Load(**fields))
    outputs = [_saved(out / f"outputs-{side.replace(':', '-')}.npz") for side in loads]
    same = all(
        len(o) == len(outputs[0])
        and all(a.dtype == b.dtype and mx.array_equal(a, b, equal_nan=True).item() for a, b in zip(o, outputs[0]))
        for o in outputs
    )

    def row(name: str, unit: str, get: Callable[[Load], float]) -> Row:
        return name, {side: median([get(load) for load in runs]) for side, runs in loads.items()}, unit

    nodes = sum(len(t["nodes"]) for t in _mlxfn.File.open(str(formats["mlxfn"])).traces())
    report = [
        f"file {path} ({kind} format; the {other} side converted from it), {nodes} primitives; "
        f"{rounds} rounds per side, zero-filled inputs of trace 0",
        *notes,
        f"mlxfn loads: {next(runs[0].mode for side, runs in loads.items() if side != 'mlx')}",
        "every import gives the same output" if same else "WARNING: the imports' outputs differ",
        table(
            [
                ("file size", {s: formats["mlx" if s == "mlx" else "mlxfn"].stat().st_size / 1e6 for s in loads}, "M"),
                row("import_function call", "s", lambda load: load.import_s),
                row("import to first output", "s", lambda load: load.first_s),
                row("first 3 calls", "s", lambda load: load.import_s + sum(load.calls_s[:3])),
                row("steady call", "s", lambda load: load.steady_s),
                row("peak RSS at first output", "M", lambda load: load.peak_rss_mb),
                row("  anonymous RSS at first output", "M", lambda load: load.anon_mb),
                row("  file-backed RSS at first output", "M", lambda load: load.file_mb),
            ],
            list(loads),
        ),
    ]
    formats[other].unlink()
    return "\n".join(report)


def run(files: Sequence[str], rounds: int, out: str | None = None) -> str:
    """``mlxfn bench``: the report for every file.  Every file is checked
    before anything is written; ``out`` (the scratch directory's parent) is
    created only then, and removed again on failure if it was created here."""
    if rounds < 1:
        raise BenchError(f"rounds must be at least 1, not {rounds}")
    kinds = [check_file(os.fspath(path)) for path in files]
    created = out is not None and not os.path.exists(out)
    if out is not None:
        os.makedirs(out, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=out) as scratch:
            reports = [bench_file(path, kind, Path(scratch), rounds) for path, kind in zip(files, kinds)]
    except BaseException:
        if created and out is not None and not os.listdir(out):
            os.rmdir(out)
        raise
    return "\n\n".join([*reports, f"mlx {MLX_VERSION}, {os.cpu_count()} CPU cores; ratio = side / MLX"])


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:]))
