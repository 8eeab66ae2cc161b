"""Load figures of mlxfn against MLX's own import, in fresh processes.

    mlxfn bench --file model.mlxfn [--rounds N]     (also a file in MLX's format)

The file is converted to the other format (``mlxfn convert``), then each side
is imported in fresh processes, rounds alternating the order, page cache
warm for both files: mlxfn mapping its constants, mlxfn copying them, and
MLX.  Every figure is a median, shown next to MLX's with the ratio (below 1
is better).  ``benches/compare.py`` uses the same machinery for whole
models, exports included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx

from ._mlx import MLX_VERSION

# A side: how a file is imported.  "mlxfn:map" and "mlxfn:copy" are
# mlxfn.import_function(load=...), "mlx" is mx.import_function;
# benches/compare.py adds "mlxfn:dynamic" (a shapeless export, mapped).
SIDES = ("mlxfn:map", "mlxfn:copy", "mlx")
CALLS = 10  # calls timed one by one after the first output


@dataclass
class Load:
    """One fresh process: import, the first calls one by one, memory."""

    import_s: float
    calls_s: list[float]  # the first call (to first output) and the next CALLS
    steady_s: float  # the median of the last half of the calls
    peak_rss_mb: float
    anon_mb: float  # resident anonymous memory at first output
    file_mb: float  # resident file-backed memory at first output
    mode: str = ""  # how mlxfn loaded the constants
    long_s: float = 0.0  # a steady call after a long run (MLXFN_BENCH_LONG), 0 without

    @property
    def first_s(self) -> float:
        """From the import to the first output."""
        return self.import_s + self.calls_s[0]

    @property
    def overhead_s(self) -> float:
        """What loading adds to the first call."""
        return self.first_s - self.steady_s


def _status_mb(*keys: str) -> dict[str, float]:
    """Fields of /proc/self/status in MiB (0 where Linux's /proc is missing)."""
    found = dict.fromkeys(keys, 0.0)
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

    mode = side.split(":")[1]
    return mlxfn.import_function(path, load="auto" if mode == "dynamic" else mode)


def child(side: str, path: str, inputs_path: str, output_path: str, hold: bool) -> None:
    """Runs in a fresh process; prints one JSON line (and, with ``hold``,
    waits for a line on stdin before exiting, for PSS readings)."""
    inputs, kwargs = load_inputs(inputs_path)
    mx.eval(inputs, kwargs)
    t0 = time.perf_counter()
    fn = import_side(side, path)
    t_import = time.perf_counter() - t0
    calls = []
    for k in range(CALLS + 1):
        t = time.perf_counter()
        out = fn(*inputs, **kwargs)
        mx.eval(out)
        calls.append(time.perf_counter() - t)
        if k == 0:
            memory = _status_mb("VmHWM", "RssAnon", "RssFile")
            mx.savez(output_path, *out)
    # A long run (MLXFN_BENCH_LONG=N): call on to the Nth call, then time 10
    # more: the steady state of a process that keeps serving (mlxfn fuses
    # its kernels after mlxfn._runner.FUSE_AFTER_CALLS calls).
    long_calls = int(os.environ.get("MLXFN_BENCH_LONG", "0"))
    for _ in range(len(calls), long_calls):
        mx.eval(fn(*inputs, **kwargs))
    long_s = 0.0
    if long_calls:
        later = []
        for _ in range(10):
            t = time.perf_counter()
            mx.eval(fn(*inputs, **kwargs))
            later.append(time.perf_counter() - t)
        long_s = median(later)
    mode = fn.load_mode.describe() if hasattr(fn, "load_mode") else ""
    load = Load(
        t_import,
        calls,
        median(calls[len(calls) // 2 :]),
        memory["VmHWM"],
        memory["RssAnon"],
        memory["RssFile"],
        mode,
        long_s,
    )
    print(json.dumps({"pid": os.getpid(), **asdict(load)}), flush=True)
    if hold:
        sys.stdin.readline()


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


def _child_command(side: str, path: Path, inputs: Path, output: Path, hold: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "mlxfn.bench", "--child", side, str(path), str(inputs), str(output)]
    return cmd + ["--hold"] if hold else cmd


def _parse(stdout: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return parsed


def outputs_path(out: Path, side: str) -> Path:
    """Where a load child of ``side`` saves its first output."""
    return out / f"outputs-{side.replace(':', '-')}.npz"


@dataclass
class Sides:
    """What each side imports, and where the children's files go.  With
    ``cold_cache`` set, every child gets a fresh, empty TMPDIR under it: MLX
    keeps the CPU kernels it builds at run time in TMPDIR/mlx."""

    files: dict[str, Path]  # side -> file
    inputs: Path
    cold_cache: Path | None = None
    settle: Callable[[], None] | None = None  # called before each child (let freed memory settle)
    _children: int = field(default=0, repr=False)

    def child_env(self) -> dict[str, str]:
        """The environment of the next child process."""
        if self.cold_cache is None:
            return dict(os.environ)
        self._children += 1
        fresh = self.cold_cache / f"child{self._children}"
        fresh.mkdir(parents=True)
        return {**os.environ, "TMPDIR": str(fresh)}


def time_loads(sides: Sides, rounds: int) -> dict[str, list[Load]]:
    """Each side imported in ``rounds`` fresh processes, the order rotating;
    one untimed round first (the first GB a VM touches after start-up is
    slow, whichever side touches it)."""
    loads: dict[str, list[Load]] = {s: [] for s in sides.files}
    order = list(sides.files)
    for r in range(rounds + 1):
        for side in order[r % len(order) :] + order[: r % len(order)]:
            out = outputs_path(sides.inputs.parent, side)
            cmd = _child_command(side, sides.files[side], sides.inputs, out)
            if sides.settle is not None:
                sides.settle()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=sides.child_env())
            if proc.returncode != 0:
                raise SystemExit(f"{side}: the load process failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
            if r > 0:
                fields = _parse(proc.stdout)
                fields.pop("pid")
                loads[side].append(Load(**fields))
    return loads


def pair_pss_mb(sides: Sides, side: str) -> float:
    """Combined PSS of two processes that imported the same file and computed
    their first output (both alive at once), in MiB; 0 without Linux's /proc."""
    if not Path("/proc/self/smaps_rollup").exists():
        return 0.0
    out = outputs_path(sides.inputs.parent, side)
    cmd = _child_command(side, sides.files[side], sides.inputs, out, hold=True)
    procs = [
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=sides.child_env())
        for _ in range(2)
    ]
    try:
        total = 0.0
        for proc in procs:
            assert proc.stdout is not None
            pid = json.loads(proc.stdout.readline())["pid"]
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        return total
    finally:
        for proc in procs:
            proc.communicate("go\n", timeout=120)


def median(values: Sequence[float]) -> float:
    """The median (a benchmark figure is a median of rounds)."""
    return statistics.median(values)


def load_rows(loads: dict[str, list[Load]]) -> list[tuple[str, dict[str, float], str]]:
    """The load figures of every side, medians over rounds: (row, side -> value, unit)."""

    def row(name: str, unit: str, get: Any) -> tuple[str, dict[str, float], str]:
        return name, {side: median([get(load) for load in runs]) for side, runs in loads.items()}, unit

    return [
        row("import_function call", "s", lambda load: load.import_s),
        row("import to first output", "s", lambda load: load.first_s),
        row("load overhead (first - steady)", "s", lambda load: load.overhead_s),
        row("second call", "s", lambda load: load.calls_s[1]),
        row("first 3 calls", "s", lambda load: load.import_s + sum(load.calls_s[:3])),
        row("10th call", "s", lambda load: load.calls_s[9]),
        row("steady call", "s", lambda load: load.steady_s),
        *(
            [row("steady call after a long run", "s", lambda load: load.long_s)]
            if any(run.long_s for runs in loads.values() for run in runs)
            else []
        ),
        row("peak RSS at first output", "M", lambda load: load.peak_rss_mb),
        row("  anonymous RSS at first output", "M", lambda load: load.anon_mb),
        row("  file-backed RSS at first output", "M", lambda load: load.file_mb),
    ]


def table(rows: Sequence[tuple[str, dict[str, float], str]], sides: Sequence[str], baseline: str = "mlx") -> str:
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


def _saved(path: Path) -> dict[str, mx.array]:
    loaded = mx.load(str(path))
    assert isinstance(loaded, dict)
    return loaded


def same_outputs(out: Path, sides: Sequence[str], expected: Sequence[mx.array] | None = None) -> bool:
    """Whether every side's saved first output equals the others' (and ``expected``)."""
    outputs = [list(_saved(outputs_path(out, side)).values()) for side in sides]
    reference = list(expected) if expected is not None else outputs[0]
    return all(
        len(got) == len(reference)
        and all(
            a.shape == b.shape and a.dtype == b.dtype and mx.array_equal(a, b, equal_nan=True).item()
            for a, b in zip(got, reference)
        )
        for got in outputs
    )


def run_file(path: Path, out: Path, rounds: int) -> str:
    """The load comparison for a user's own file, against its conversion."""
    from . import _mlxfn
    from .convert import convert, example_inputs
    from .ir import Trace

    kind, _ = _mlxfn.recognise(str(path))
    other = "mlx" if kind == "mlxfn" else "mlxfn"
    formats = {kind: path, other: out / f"converted.{other}"}
    convert(path, formats[other], other)
    handle = _mlxfn.File.open(str(formats["mlxfn"]))
    args, kwargs = example_inputs(Trace.from_record(handle.traces()[0]).signature)
    inputs = out / "inputs.npz"
    save_inputs(inputs, args, kwargs)
    files = {side: formats["mlx" if side == "mlx" else "mlxfn"] for side in SIDES}
    loads = time_loads(Sides(files, inputs), rounds)
    nodes = sum(len(t["nodes"]) for t in handle.traces())
    sizes = {side: files[side].stat().st_size / 1e6 for side in SIDES}
    report = [
        f"file {path} ({kind} format; the {other} side converted from it), {nodes} primitives; "
        f"{rounds} rounds per side, zero-filled inputs of trace 0",
        f"mlxfn loads: {loads['mlxfn:map'][0].mode}",
        "both imports give the same output" if same_outputs(out, SIDES) else "WARNING: the imports' outputs differ",
        table([("file size", sizes, "M"), *load_rows(loads)], SIDES),
    ]
    formats[other].unlink()
    return "\n".join(report)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mlxfn bench`` command."""
    parser = argparse.ArgumentParser(
        prog="mlxfn bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--file", type=Path, action="append", help="repeatable: an exported file (mlxfn or MLX format)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="scratch directory (default: a temporary one)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, path, inputs, saved = args.child
        child(side, path, inputs, saved, args.hold)
        return 0
    if not args.file:
        parser.error("give --file FILE (whole-model comparisons: python benches/compare.py, see the README)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out) as scratch:
        for file in args.file:
            print(run_file(file, Path(scratch), args.rounds), flush=True)
            print()
    print(f"mlx {MLX_VERSION}, {os.cpu_count()} CPU cores; ratio = side / MLX")
    return 0


if __name__ == "__main__":
    sys.exit(main())
