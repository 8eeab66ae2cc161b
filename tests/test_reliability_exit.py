"""Processes that import, call and exit end with status 0, every time.

mlxfn 0.1 loaded constants through ``mx.load`` of a Python stream; MLX's
reader of a Python stream takes the GIL in its destructor, which could run on
one of MLX's threads while the interpreter was finalizing, and about one
process in ten died at exit (``terminate called without an active
exception``, SIGABRT, status 134), ``mlxfn convert`` and ``inspect``
included.  Loading no longer goes through Python at all; this runs 32 fresh
processes of every kind that loads constants and requires a clean exit from
each (a 10 % failure rate would pass 32 runs by chance 3 % of the time).

Calls from other threads: MLX keeps a compile cache per thread whose entries
take the GIL when destroyed, and a thread's cache is destroyed after
``join()`` returns, racing the interpreter's finalization: mlxfn 0.2 aborted
at exit in 45-100 % of the processes that called an imported function from a
worker thread (20 % when two run at once, as here).  ``mlxfn._runner`` now drops each thread's compiled
functions when the thread ends; this runs fresh processes that call from a
``threading.Thread``, from a ``ThreadPoolExecutor`` that is never shut down,
and on the main and a worker thread at once, and requires status 0 and the
original function's outputs from each.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import pytest

import mlxfn

CALL = textwrap.dedent(
    """
    import sys
    import mlx.core as mx
    import mlxfn
    fn = mlxfn.import_function(sys.argv[1], load=sys.argv[2])
    mx.eval(fn(mx.ones((1, 16, 16, 3))))
    print(fn.load_mode.mode)
    """
)


# argv: file, inputs.npy, expected.npy, how.  Prints "ok" when every call
# matched the original function's output; a wrong output or an exception
# (even on a worker thread) is a missing "ok".
THREADED = textwrap.dedent(
    """
    import sys, threading
    from concurrent.futures import ThreadPoolExecutor
    import mlx.core as mx
    import mlxfn
    fn = mlxfn.import_function(sys.argv[1])
    x, expected = mx.load(sys.argv[2]), mx.load(sys.argv[3])
    mx.eval(x, expected)  # made here: a thread cannot evaluate another's lazy arrays
    matched = []

    def call():
        (out,) = fn(x)
        mx.eval(out)
        matched.append(mx.allclose(out, expected, atol=1e-5).item())

    def calls(n):
        for _ in range(n):
            call()

    how = sys.argv[4]
    if how == "thread":  # the issue's shape: one call, then the thread and the process end
        t = threading.Thread(target=calls, args=(1,))
        t.start()
        t.join()
    elif how == "pool":  # never shut down: the interpreter's exit joins its workers
        pool = ThreadPoolExecutor(max_workers=2)
        for future in [pool.submit(call) for _ in range(6)]:
            future.result()
    else:  # "both": the main thread and a worker at the same time
        t = threading.Thread(target=calls, args=(3,))
        t.start()
        calls(3)
        t.join()
    print("ok" if len(matched) == (1 if how == "thread" else 6) and all(matched) else f"wrong {matched}")
    """
)


@pytest.fixture(scope="module")
def conv_net() -> nn.Module:
    mx.random.seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    mx.eval(net.parameters())
    return net


@pytest.fixture(scope="module")
def conv_file(conv_net: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exit") / "conv.mlxfn"
    mlxfn.export_function(path, conv_net, mx.ones((1, 16, 16, 3)))
    return path


def run_all(commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(run, commands))


def test_every_process_that_loads_constants_exits_cleanly(conv_file: Path, tmp_path: Path) -> None:
    python = sys.executable
    commands = [[python, "-c", CALL, str(conv_file), "map"] for _ in range(14)]
    commands += [[python, "-c", CALL, str(conv_file), "copy"] for _ in range(10)]
    commands += [
        [python, "-m", "mlxfn.cli", "convert", str(conv_file), str(tmp_path / f"c{i}.mlx"), "--to", "mlx"]
        for i in range(4)
    ]
    commands += [[python, "-m", "mlxfn.cli", "inspect", str(conv_file)] for _ in range(4)]
    runs = run_all(commands)
    failed = [(r.args[-2:], r.returncode, r.stderr.strip()[-300:]) for r in runs if r.returncode != 0]
    assert len(runs) == 32 and not failed, failed
    assert [r.stdout.strip() for r in runs[:24]] == ["map"] * 14 + ["copy"] * 10


def test_every_process_that_calls_from_other_threads_exits_cleanly(
    conv_net: nn.Module, conv_file: Path, tmp_path: Path
) -> None:
    mx.random.seed(1)
    x = mx.random.normal((1, 16, 16, 3))
    mx.save(str(tmp_path / "x.npy"), x)
    mx.save(str(tmp_path / "expected.npy"), conv_net(x))
    hows = ["thread", "pool", "both"] * 10  # before the fix, 6 of these 30 aborted (2 cores)
    files = [str(conv_file), str(tmp_path / "x.npy"), str(tmp_path / "expected.npy")]
    runs = run_all([[sys.executable, "-c", THREADED, *files, how] for how in hows])
    failed = [(how, r.returncode, r.stdout.strip(), r.stderr.strip()[-300:]) for how, r in zip(hows, runs)]
    failed = [f for f in failed if f[1] != 0 or f[2] != "ok"]
    assert not failed, failed
