"""Checks an installed mlxfn wheel the way a user meets it (``make test-wheel``).

Run by the Python of a fresh virtual environment into which the wheel built
by ``pip wheel .`` was installed, from a directory outside the checkout.  The
program uses MLX before it imports anything, keeps two models, calls from
threads, and requires: mlxfn is the installed one (not the checkout's), its
imports map through the C++ bridge, and every output equals the original
function's and MLX's own import's.  Exit status 0 only if all of that holds.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

# A program that has used MLX: arrays made, evaluated and freed in many sizes.
for i in range(300):
    mx.eval(mx.ones((i * 131 + 1,)) * i)

import mlxfn  # noqa: E402  (after MLX use, on purpose)

outcomes: list[bool] = []


def check(ok: bool, what: str) -> None:
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    outcomes.append(ok)


def model(seed: int) -> nn.Module:
    mx.random.seed(seed)
    net = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 8))
    mx.eval(net.parameters())
    return net


checkout = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
installed = Path(mlxfn.__file__).resolve()
check(checkout is None or not installed.is_relative_to(checkout), f"mlxfn is the installed wheel ({installed.parent})")
bridges = sorted(p.name for p in installed.parent.glob("_bridge*"))
check(any(name.endswith(".so") for name in bridges), f"the wheel carries the C++ bridge ({', '.join(bridges)})")

x = mx.random.normal((4, 64), key=mx.random.key(7))
with tempfile.TemporaryDirectory() as tmp:
    nets = [model(1), model(2)]
    paths = []
    for n, net in enumerate(nets):
        path = Path(tmp) / f"net{n}.mlxfn"
        mlxfn.export_function(path, net, x)
        mx.export_function(str(path.with_suffix(".mlx")), net, x)
        paths.append(path)
    fns = [mlxfn.import_function(p) for p in paths]
    for n, fn in enumerate(fns):
        check(fn.load_mode.describe() == "map (C++ bridge)", f"model {n} maps after MLX use: {fn.load_mode.describe()}")
        expected = nets[n](x)
        (mlx_own,) = mx.import_function(str(paths[n].with_suffix(".mlx")))(x)
        (out,) = fn(x)
        check(mx.array_equal(out, expected).item(), f"model {n} equals the original function")
        check(mx.array_equal(out, mlx_own).item(), f"model {n} equals MLX's own import")

    results: dict[tuple[int, int], bool] = {}

    def serve(worker: int) -> None:
        for call in range(20):
            n = (worker + call) % 2
            (out,) = fns[n](x)
            results[(worker, call)] = mx.array_equal(out, nets[n](x)).item()

    threads = [threading.Thread(target=serve, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(len(results) == 80 and all(results.values()), "two models called from 4 threads: every output equal")

    inspect = subprocess.run(
        [str(Path(sys.executable).parent / "mlxfn"), "inspect", str(paths[0])], capture_output=True, text=True
    )
    check(inspect.returncode == 0 and "map (C++ bridge)" in inspect.stdout, "the mlxfn command inspects the file")

print(f"wheel check: {outcomes.count(True)} passed, {outcomes.count(False)} failed")
sys.exit(0 if all(outcomes) else 1)
