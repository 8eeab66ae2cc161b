"""The benchmarks' load processes, made fair to both sides on these VMs.

``compare.py`` and ``test_bench_roundtrip.py`` import files in fresh
processes of this script (``python benches/harness.py SIDE FILE INPUTS
OUTPUT [--long N] [--hold]``); each uses MLX before it imports, as a program
that loads a model does (``mlxfn.bench.first_calls``, the same measurement as
``mlxfn bench``).  On top of ``mlxfn bench``, what the design notes on
benchmarking found necessary on a 2-core VM, and what whole-model runs add:

- ``settle``: wait after a large free before the next timed process (this VM
  hands freed memory back to its host ~2 s late; whichever side runs right
  after a free pays for it);
- an untimed first round of every side (the first GB touched after start-up
  is slow), peak RSS from VmHWM;
- ``Sides.cold_cache``: every process its own empty TMPDIR, so MLX's CPU
  kernels are built again (a user's first run);
- ``long``: call on to the Nth call and time 10 more (a serving process);
- ``pair_pss_mb``: two processes holding one file at once, their PSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx

from mlxfn.bench import SIDES, Load, Row, first_calls, import_side, median, run_child, table

__all__ = ["SIDES", "import_side", "median", "table"]  # re-exported for the scripts

HARNESS = Path(__file__).resolve()
SETTLE_S = 2.0  # this VM hands freed memory back to its host ~2 s late (DESIGN.md)


def settle() -> None:
    """Wait until memory freed just before is really free."""
    time.sleep(SETTLE_S)


def save_inputs(path: Path, args: Sequence[mx.array], kwargs: dict[str, mx.array]) -> None:
    """Save a call's inputs for the load processes (``load_inputs`` reads them)."""
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


def saved_outputs(path: Path) -> list[mx.array]:
    """The outputs saved by ``mx.savez(path, *outputs)``, in order."""
    loaded = mx.load(str(path))
    assert isinstance(loaded, dict)
    return [loaded[f"arr_{i}"] for i in range(len(loaded))]


def outputs_path(out: Path, side: str) -> Path:
    """Where a load process of ``side`` saves its first output."""
    return out / f"outputs-{side.replace(':', '-')}.npz"


def same_outputs(out: Path, sides: Sequence[str], expected: Sequence[mx.array] | None = None) -> bool:
    """Whether every side's saved first output equals the others' (and ``expected``), bit for bit."""
    outputs = [saved_outputs(outputs_path(out, side)) for side in sides]
    reference = list(expected) if expected is not None else outputs[0]
    return all(
        len(got) == len(reference)
        and all(
            a.shape == b.shape and a.dtype == b.dtype and mx.array_equal(a, b, equal_nan=True).item()
            for a, b in zip(got, reference)
        )
        for got in outputs
    )


@dataclass
class Run(Load):
    """One load process of the benchmarks: ``mlxfn bench``'s figures and a long run's."""

    long_s: float = 0.0  # a steady call after the long run, 0 without one


def import_as(side: str) -> str:
    """How ``side`` imports: "mlxfn:dynamic" is a shapeless export loaded as users do."""
    return "mlxfn:auto" if side == "mlxfn:dynamic" else side


def child_command(side: str, path: Path, inputs: Path, output: Path, long: int = 0, hold: bool = False) -> list[str]:
    """The command of one load process."""
    cmd = [sys.executable, str(HARNESS), side, str(path), str(inputs), str(output)]
    return cmd + ["--long", str(long)] + (["--hold"] if hold else [])


def child(argv: Sequence[str]) -> int:
    """One load process: one JSON line (with ``--hold``, then waits for a
    line on stdin before exiting, for PSS readings)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("side")
    parser.add_argument("file")
    parser.add_argument("inputs")
    parser.add_argument("output")
    parser.add_argument("--long", type=int, default=0)
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args(argv)
    inputs, kwargs = load_inputs(args.inputs)
    load, call = first_calls(import_as(args.side), args.file, inputs, kwargs, args.output)
    run = Run(**asdict(load))
    if args.long:
        for _ in range(len(load.calls_s), args.long):
            call()
        later = []
        for _ in range(10):
            start = time.perf_counter()
            call()
            later.append(time.perf_counter() - start)
        run.long_s = median(later)
    print(json.dumps({"pid": os.getpid(), **asdict(run)}), flush=True)
    if args.hold:
        sys.stdin.readline()
    return 0


@dataclass
class Sides:
    """What each side imports, and how its processes run.  With
    ``cold_cache`` set, every process gets a fresh, empty TMPDIR under it:
    MLX keeps the CPU kernels it builds at run time in TMPDIR/mlx."""

    files: dict[str, Path]  # side -> file
    inputs: Path
    cold_cache: Path | None = None
    settle: Callable[[], None] | None = None  # called before each process
    long: int = 0  # each process calls on to its long-th call, then times 10 more
    _children: int = field(default=0, repr=False)

    def child_env(self) -> dict[str, str]:
        """The environment of the next process."""
        if self.cold_cache is None:
            return dict(os.environ)
        self._children += 1
        fresh = self.cold_cache / f"child{self._children}"
        fresh.mkdir(parents=True)
        return {**os.environ, "TMPDIR": str(fresh)}

    def command(self, side: str, hold: bool = False) -> list[str]:
        output = outputs_path(self.inputs.parent, side)
        return child_command(side, self.files[side], self.inputs, output, self.long, hold)


def time_loads(sides: Sides, rounds: int) -> dict[str, list[Run]]:
    """Each side imported in ``rounds`` fresh processes, the order rotating,
    after an untimed round; ``sides.settle`` before each process."""
    loads: dict[str, list[Run]] = {s: [] for s in sides.files}
    order = list(sides.files)
    for r in range(rounds + 1):
        for side in order[r % len(order) :] + order[: r % len(order)]:
            if sides.settle is not None:
                sides.settle()
            fields = run_child(sides.command(side), side, env=sides.child_env())
            if "unavailable" in fields:
                raise SystemExit(f"{side}: {fields['unavailable']}")
            fields.pop("pid")
            if r > 0:
                loads[side].append(Run(**fields))
    return loads


def pair_pss_mb(sides: Sides, side: str) -> float:
    """Combined PSS of two processes that imported the same file and computed
    their first output (both alive at once), in MiB; 0 without Linux's /proc."""
    if not Path("/proc/self/smaps_rollup").exists():
        return 0.0
    cmd = sides.command(side, hold=True)
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


def load_rows(loads: dict[str, list[Run]]) -> list[Row]:
    """The figures of every side, medians over rounds."""

    def row(name: str, unit: str, get: Callable[[Run], float]) -> Row:
        return name, {side: median([get(run) for run in runs]) for side, runs in loads.items()}, unit

    long = any(run.long_s for runs in loads.values() for run in runs)
    return [
        row("import_function call", "s", lambda run: run.import_s),
        row("import to first output", "s", lambda run: run.first_s),
        row("load overhead (first - steady)", "s", lambda run: run.first_s - run.steady_s),
        row("second call", "s", lambda run: run.calls_s[1]),
        row("first 3 calls", "s", lambda run: run.import_s + sum(run.calls_s[:3])),
        row("10th call", "s", lambda run: run.calls_s[9]),
        row("steady call", "s", lambda run: run.steady_s),
        *([row("steady call after a long run", "s", lambda run: run.long_s)] if long else []),
        row("peak RSS at first output", "M", lambda run: run.peak_rss_mb),
        row("  anonymous RSS at first output", "M", lambda run: run.anon_mb),
        row("  file-backed RSS at first output", "M", lambda run: run.file_mb),
    ]


if __name__ == "__main__":
    sys.exit(child(sys.argv[1:]))
