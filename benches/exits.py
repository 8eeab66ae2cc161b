"""Fresh processes of mixed kinds, counted by exit status (a target of the
"zero-copy for every user" work: every one must exit 0).

    python benches/exits.py [--processes 200]

Kinds, in turn: import and call on the main thread (mapped, copied), on a
worker ``Thread``, from a ``ThreadPoolExecutor`` never shut down, on the main
and a worker thread at once, ``mlxfn convert`` and ``mlxfn inspect``; two at
a time.  Every calling process checks its outputs against the original's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

import mlxfn

CALL = textwrap.dedent(
    """
    import sys, threading
    from concurrent.futures import ThreadPoolExecutor
    import mlx.core as mx
    mx.eval(mx.zeros(8) + 1)  # a program that has used MLX
    import mlxfn
    path, x_path, expected_path, how = sys.argv[1:5]
    fn = mlxfn.import_function(path, load="copy" if how == "copy" else "auto")
    x, expected = mx.load(x_path), mx.load(expected_path)
    mx.eval(x, expected)
    good = []
    def call():
        good.append(mx.array_equal(fn(x)[0], expected).item())
    if how == "thread":
        t = threading.Thread(target=call); t.start(); t.join()
    elif how == "pool":
        pool = ThreadPoolExecutor(max_workers=2)
        for f in [pool.submit(call) for _ in range(4)]: f.result()
    elif how == "both":
        t = threading.Thread(target=call); t.start(); call(); t.join()
    else:
        call()
    print("ok" if good and all(good) else "wrong")
    """
)
KINDS = ("main", "copy", "thread", "pool", "both", "convert", "inspect")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mx.random.seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
        mx.eval(net.parameters())
        x = mx.random.normal((1, 16, 16, 3))
        path = Path(tmp) / "conv.mlxfn"
        mlxfn.export_function(path, net, x)
        mx.save(f"{tmp}/x.npy", x)
        mx.save(f"{tmp}/expected.npy", net(x))
        py = sys.executable
        commands = []
        for i in range(args.processes):
            kind = KINDS[i % len(KINDS)]
            if kind == "convert":
                cmd = [py, "-m", "mlxfn.cli", "convert", str(path), f"{tmp}/c{i}.mlx", "--to", "mlx"]
            elif kind == "inspect":
                cmd = [py, "-m", "mlxfn.cli", "inspect", str(path)]
            else:
                cmd = [py, "-c", CALL, str(path), f"{tmp}/x.npy", f"{tmp}/expected.npy", kind]
            commands.append((kind, cmd))

        def run(item: tuple[str, list[str]]) -> tuple[str, int, bool]:
            kind, cmd = item
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            ok = kind in ("convert", "inspect") or done.stdout.strip() == "ok"
            return kind, done.returncode, ok

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(run, commands))
    by_kind = Counter((kind, status) for kind, status, _ in results)
    for kind in KINDS:
        statuses = {s: n for (k, s), n in sorted(by_kind.items()) if k == kind}
        print(f"{kind:8} " + ", ".join(f"{n} exited {s}" for s, n in statuses.items()))
    wrong = sum(not ok for *_, ok in results)
    clean = sum(status == 0 for _, status, _ in results)
    print(f"{clean} of {len(results)} exited 0; {wrong} computed a wrong output")
    return 0 if clean == len(results) and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
