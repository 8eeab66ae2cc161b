"""Processes that import, call and exit end with status 0, every time.

mlxfn 0.1 loaded constants through ``mx.load`` of a Python stream; MLX's
reader of a Python stream takes the GIL in its destructor, which could run on
one of MLX's threads while the interpreter was finalizing, and about one
process in ten died at exit (``terminate called without an active
exception``, SIGABRT, status 134), ``mlxfn convert`` and ``inspect``
included.  Loading no longer goes through Python at all; this runs 32 fresh
processes of every kind that loads constants and requires a clean exit from
each (a 10 % failure rate would pass 32 runs by chance 3 % of the time).
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


@pytest.fixture(scope="module")
def conv_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mx.random.seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    mx.eval(net.parameters())
    path = tmp_path_factory.mktemp("exit") / "conv.mlxfn"
    mlxfn.export_function(path, net, mx.ones((1, 16, 16, 3)))
    return path


def test_every_process_that_loads_constants_exits_cleanly(conv_file: Path, tmp_path: Path) -> None:
    python = sys.executable
    commands = [[python, "-c", CALL, str(conv_file), "map"] for _ in range(14)]
    commands += [[python, "-c", CALL, str(conv_file), "copy"] for _ in range(10)]
    commands += [
        [python, "-m", "mlxfn.cli", "convert", str(conv_file), str(tmp_path / f"c{i}.mlx"), "--to", "mlx"]
        for i in range(4)
    ]
    commands += [[python, "-m", "mlxfn.cli", "inspect", str(conv_file)] for _ in range(4)]

    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(run, commands))
    failed = [(r.args[-2:], r.returncode, r.stderr.strip()[-300:]) for r in runs if r.returncode != 0]
    assert len(runs) == 32 and not failed, failed
    assert [r.stdout.strip() for r in runs[:24]] == ["map"] * 14 + ["copy"] * 10
