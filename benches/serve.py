"""One process serving two model files from worker threads: mlxfn against MLX's own import.

    python benches/serve.py [--model llama-1g --model llama-1g-q4] [--threads 4] [--calls 20]
                            [--rounds 3] [--main-thread] [--settle S] [--out DIR]

Exports two different seeded models (benches/zoo.py) with mlxfn and with
``mx.export_function``.  Then, for each side (mlxfn mapping, mlxfn copying,
MLX), fresh processes (rounds rotating the order after an untimed one,
memory left to settle before each) use MLX, import both files, and call them
from THREADS worker threads, CALLS calls each, every thread alternating
between the two models.  Figures are medians over rounds, next to MLX's with
the ratio (below 1 is better):

- the time from the first ``import_function`` to the first output of each
  model, and of both;
- the steady call: the median over the second half of every thread's calls
  (the other threads running meanwhile), and calls per second, all threads;
- anonymous and peak RSS after the last call.

MLX's own imported functions cannot be called from worker threads (see
MLX_ON_WORKERS below): its process makes the same calls from its main thread.
``--main-thread`` makes every side do so, for a like-for-like per-call figure.

Every output of every call must equal the original model's.  The exit status
of every process is printed: a process that recorded its figures and then
died at exit (status 134, an abort) is reported as such, and makes this
script's own status 1.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import mlx.core as mx

import mlxfn
from mlxfn.bench import memory_mb, use_mlx

from harness import SETTLE_S, SIDES, import_as, import_side, load_inputs, median, save_inputs, saved_outputs, table
from zoo import MLX_LM, MODELS, build, describe

SCRIPT = Path(__file__).resolve()
# Threads and MLX's own import: MLX 0.32.4's imported functions run only on the thread that owns Stream(cpu, 0),
# the main thread: on any other, even one that imported the file itself, a call
# raises "There is no Stream(cpu, 0) in current thread".  So MLX's process makes
# the same calls (threads x calls, alternating the models) from its main thread,
# as a server built on mx.import_function must, and checks after its timed calls
# that a worker thread still cannot call (the report shows what it raised).


def child(side: str, out: str, threads: int, calls: int, main_thread: bool, models: list[tuple[str, str]]) -> int:
    """One serving process: prints one JSON line, then exits (its status is the parent's to see)."""
    inputs = [load_inputs(path) for _, path in models]
    mx.eval(inputs)
    use_mlx()
    start = time.perf_counter()
    fns = [import_side(import_as(side), path) for path, _ in models]
    import_s = time.perf_counter() - start
    count = len(fns)
    serial = main_thread or side == "mlx"  # the main thread makes every call (see "Threads and MLX's own import")
    workers = 1 if serial else threads
    # Per worker: every call as (model, end since the first import, seconds); its first output of each model.
    calls_done: list[list[tuple[int, float, float]]] = [[] for _ in range(workers)]
    firsts: list[list[Any]] = [[None] * count for _ in range(workers)]
    problems: list[str] = []
    barrier = threading.Barrier(workers)

    def work(t: int, n: int) -> None:
        try:
            barrier.wait()
            for k in range(n):
                m = (t + k) % count
                args, kwargs = inputs[m]
                begin = time.perf_counter()
                output = fns[m](*args, **kwargs)
                mx.eval(output)
                end = time.perf_counter()
                calls_done[t].append((m, end - start, end - begin))
                if firsts[t][m] is None:
                    firsts[t][m] = output
                elif not all(mx.array_equal(a, b).item() for a, b in zip(output, firsts[t][m])):
                    problems.append(f"thread {t}, call {k}: model {m}'s output changed")
        except BaseException as err:  # noqa: BLE001 - reported by the parent
            problems.append(f"thread {t}: {type(err).__name__}: {err}")

    begin = time.perf_counter()
    if serial:
        work(0, calls * threads)
    else:
        pool = [threading.Thread(target=work, args=(t, calls)) for t in range(threads)]
        for worker in pool:
            worker.start()
        for worker in pool:
            worker.join()
    wall = time.perf_counter() - begin
    memory = memory_mb()
    on_workers = "" if side != "mlx" else worker_error(fns[0], inputs[0])
    for m in range(count):
        mine = [f[m] for f in firsts if f[m] is not None]
        if not mine:
            problems.append(f"model {m} was never called")
            continue
        if not all(all(mx.array_equal(a, b).item() for a, b in zip(f, mine[0])) for f in mine[1:]):
            problems.append(f"threads disagree on model {m}'s output")
        mx.savez(str(Path(out) / f"serve-{side.replace(':', '-')}-{m}.npz"), *mine[0])
    every = [c for done in calls_done for c in done]
    result = {
        "import_s": import_s,
        "first_s": [min((end for model, end, _ in every if model == m), default=0.0) for m in range(count)],
        "steady_s": median([s for done in calls_done for _, _, s in done[len(done) // 2 :]] or [0.0]),
        "calls_per_s": len(every) / wall,
        "anon_mb": memory["RssAnon"],
        "peak_rss_mb": memory["VmHWM"],
        "mode": fns[0].load_mode.describe() if hasattr(fns[0], "load_mode") else "",
        "problems": problems,
        "worker_error": on_workers,
    }
    print(json.dumps(result), flush=True)
    return 0


def worker_error(fn: Any, inputs: tuple[list[mx.array], dict[str, mx.array]]) -> str:
    """What calling ``fn`` from a new thread raises ("" if it works)."""
    error: list[str] = []

    def call() -> None:
        try:
            mx.eval(fn(*inputs[0], **inputs[1]))
        except Exception as err:  # noqa: BLE001 - the answer
            error.append(f"{type(err).__name__}: {err}")

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    return error[0] if error else ""


def child_command(
    side: str, out: Path, threads: int, calls: int, main_thread: bool, models: list[tuple[Path, Path]]
) -> list[str]:
    paths = [str(p) for pair in models for p in pair]
    return [sys.executable, str(SCRIPT), "--child", side, str(out), str(threads), str(calls), str(main_thread), *paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = sorted(MODELS) + sorted(MLX_LM)
    parser.add_argument("--model", choices=names, action="append", help="twice; default llama-1g and llama-1g-q4")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--calls", type=int, default=20, help="calls per thread")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--main-thread", action="store_true", help="every side calls from its main thread")
    parser.add_argument("--settle", type=float, default=SETTLE_S, help="seconds to wait before each process")
    parser.add_argument("--out", type=Path, help="scratch directory (default: a temporary one)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, out, threads, calls, main_thread, *paths = args.child
        pairs = list(zip(paths[::2], paths[1::2]))
        return child(side, out, int(threads), int(calls), main_thread == "True", pairs)
    models = args.model or ["llama-1g", "llama-1g-q4"]
    if len(models) != 2 or models[0] == models[1]:
        parser.error("give two different models (--model A --model B)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out) as scratch:
        report, clean = serve(models, Path(scratch), args)
    print(report)
    print(f"\nmlx {mx.__version__}, {os.cpu_count()} CPU cores; ratio = side / MLX")
    return 0 if clean else 1


def serve(models: list[str], out: Path, options: argparse.Namespace) -> tuple[str, bool]:
    """Export both models, time every side's serving processes; the report,
    and whether every process exited with status 0."""
    threads, calls, rounds = options.threads, options.calls, options.rounds
    expected: list[list[mx.array]] = []
    files: dict[str, list[tuple[Path, Path]]] = {side: [] for side in SIDES}
    for i, name in enumerate(models):
        fun = build(name)
        tokens = (mx.arange(1, dtype=mx.int32) + 3 + i).reshape(1, -1)
        expected.append([fun(tokens)])
        mx.eval(expected[-1])
        inputs = out / f"inputs{i}.npz"
        save_inputs(inputs, [tokens], {})
        mlxfn.export_function(out / f"model{i}.mlxfn", fun, tokens)
        mx.export_function(str(out / f"model{i}.mlx"), fun, tokens)
        for side in SIDES:
            files[side].append((out / f"model{i}.{'mlx' if side == 'mlx' else 'mlxfn'}", inputs))
        del fun  # the processes below must not compete with the models for memory
        gc.collect()
    mx.clear_cache()

    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    statuses: dict[str, list[int]] = {side: [] for side in SIDES}
    last_error: dict[str, str] = {}
    for r in range(rounds + 1):
        for side in SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]:
            time.sleep(options.settle)
            cmd = child_command(side, out, threads, calls, options.main_thread, files[side])
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
            statuses[side].append(proc.returncode)
            stderr = proc.stderr.strip().splitlines()
            if proc.returncode != 0 and stderr:
                last_error[side] = stderr[-1]
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if not lines:
                why = " | ".join(stderr[-5:])
                raise SystemExit(f"{side}: the serving process recorded nothing (status {proc.returncode}): {why}")
            result = json.loads(lines[-1])
            if result["problems"]:
                raise SystemExit(f"{side}: {'; '.join(result['problems'][:5])}")
            for m, want in enumerate(expected):
                got = saved_outputs(out / f"serve-{side.replace(':', '-')}-{m}.npz")
                if len(got) != len(want) or not all(
                    a.dtype == b.dtype and mx.array_equal(a, b).item() for a, b in zip(got, want)
                ):
                    raise SystemExit(f"{side}: {models[m]}'s output differs from the original model's")
            if r > 0:
                runs[side].append(result)

    def row(name: str, unit: str, get: Any) -> tuple[str, dict[str, float], str]:
        return name, {side: median([get(run) for run in runs[side]]) for side in SIDES}, unit

    on_threads = "main thread" if options.main_thread else f"{threads} threads; mlx 1"
    rows = [
        row("import_function of both", "s", lambda run: run["import_s"]),
        *(row(f"first output of {name}", "s", lambda run, m=m: run["first_s"][m]) for m, name in enumerate(models)),
        row("first outputs of both", "s", lambda run: max(run["first_s"])),
        row(f"steady call, {on_threads}", "s", lambda run: run["steady_s"]),
        row("calls per second, all threads", " ", lambda run: run["calls_per_s"]),
        row("anonymous RSS after the calls", "M", lambda run: run["anon_mb"]),
        row("peak RSS", "M", lambda run: run["peak_rss_mb"]),
    ]
    report = [
        f"one process, two files: {models[0]} ({describe(models[0])}) and {models[1]} ({describe(models[1])}); "
        f"{threads} threads x {calls} calls, each alternating between them"
        + (", all made from the main thread" if options.main_thread else "")
        + f"; {rounds} rounds per side after an untimed one",
        f"mlxfn:map loads by {runs['mlxfn:map'][0]['mode']}; every call of every side gave the models' own outputs",
        table(rows, SIDES),
        f"mlx: the main thread makes all {threads * calls} calls; from a worker thread its imported function "
        + (f"raises {why!r}" if (why := runs["mlx"][0]["worker_error"]) else "now works: give it the threads"),
        "exit status of each process (untimed round first): "
        + "; ".join(f"{side} {' '.join(map(str, statuses[side]))}" for side in SIDES),
    ]
    for side in SIDES:
        if any(statuses[side]):
            report.append(
                f"WARNING: {side}: processes exited with a non-zero status after recording their figures: "
                f"{last_error.get(side, 'no message')}"
            )
    return "\n".join(report), not any(any(codes) for codes in statuses.values())


if __name__ == "__main__":
    sys.exit(main())
