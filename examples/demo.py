"""Export and import a ~1 GB Llama-style model with mlxfn and with MLX's own API.

Builds a seeded decoder (float32, about 1 GB of weights), exports it with
``mlxfn.export_function`` and ``mx.export_function``, then imports each file in
a fresh process (page cache warm for both) and times: the import call, the
first output (what loading costs a user), and a steady call.  Both imports must
give the original model's output exactly.

    python examples/demo.py [--layers N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from models import Llama, LlamaConfig, seeded  # noqa: E402

CONFIG = dict(vocab=32000, dims=2048, hidden=5632, heads=16, kv_heads=4)
TOKENS = [[17]]  # one token: compute must not hide the cost of loading


def build(layers: int) -> Llama:
    return seeded(Llama(LlamaConfig(layers=layers, **CONFIG)), seed=0)


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def load_and_run(kind: str, path: str, out_npy: str) -> None:
    """Child process: import, first call, steady calls; print JSON timings."""
    import mlxfn

    tokens = mx.array(TOKENS)
    importer = mlxfn.import_function if kind == "mlxfn" else mx.import_function
    t0 = time.perf_counter()
    fn = importer(path)
    t_import = time.perf_counter() - t0
    out = fn(tokens)[0]
    mx.eval(out)
    t_first = time.perf_counter() - t0
    steady = []
    for _ in range(5):
        start = time.perf_counter()
        mx.eval(fn(tokens))
        steady.append(time.perf_counter() - start)
    np.save(out_npy, np.array(out))
    print(json.dumps({"import": t_import, "first": t_first, "steady": statistics.median(steady)}))


def fresh_process(kind: str, path: Path, out_npy: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), str(out_npy)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=3, help="decoder layers (3 gives ~1 GB)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "demo-out")
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process import rounds per side")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        load_and_run(*args.child)
        return

    import mlxfn

    args.out.mkdir(parents=True, exist_ok=True)
    ours, theirs = args.out / "llama.mlxfn", args.out / "llama.mlx"
    model = build(args.layers)
    nbytes = sum(v.nbytes for _, v in mlx_tree_flatten(model.parameters()))
    tokens = mx.array(TOKENS)
    expected = np.array(model(tokens))
    print(f"model: Llama-style, {args.layers} layers, {nbytes / 1e9:.2f} GB of float32 weights")

    t_ours, _ = timed(mlxfn.export_function, ours, model, tokens)
    t_theirs, _ = timed(mx.export_function, str(theirs), model, tokens)
    nodes = mlxfn_node_count(ours)

    rows = {"mlxfn": [], "mlx": []}
    for _ in range(args.rounds):  # interleaved, each import in a fresh process
        for kind, path in (("mlxfn", ours), ("mlx", theirs)):
            rows[kind].append(fresh_process(kind, path, args.out / f"{kind}.npy"))
    for kind in rows:
        got = np.load(args.out / f"{kind}.npy")
        if not np.array_equal(got, expected):
            raise SystemExit(f"{kind}: imported output differs from the original model")
    print(f"graph: {nodes} primitives; both imports reproduce the model's output exactly\n")

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[kind])

    lines = [
        ("export (page cache)", t_ours, t_theirs),
        ("file size (GB)", ours.stat().st_size / 1e9, theirs.stat().st_size / 1e9),
        ("import_function call", med("mlxfn", "import"), med("mlx", "import")),
        ("import to first output", med("mlxfn", "first"), med("mlx", "first")),
        ("steady call", med("mlxfn", "steady"), med("mlx", "steady")),
        (
            "load overhead (first - steady)",
            med("mlxfn", "first") - med("mlxfn", "steady"),
            med("mlx", "first") - med("mlx", "steady"),
        ),
    ]
    print(f"{'':32}{'mlxfn':>10}{'MLX':>10}{'ratio':>8}")
    for name, a, b in lines:
        unit = "" if "GB" in name else " s"
        print(f"{name:32}{a:>9.3f}{unit[-1:] or ' '}{b:>9.3f}{unit[-1:] or ' '}{a / b:>8.2f}")
    print(f"\nmedians of {args.rounds} fresh-process rounds per side, interleaved; "
          f"page cache warm for both files; {os.cpu_count()} CPU cores, mlx {mx.__version__}")


def mlx_tree_flatten(tree):
    from mlx.utils import tree_flatten

    return tree_flatten(tree)


def mlxfn_node_count(path: Path) -> int:
    from mlxfn import _mlxfn
    from mlxfn._dtypes import DTYPE_TABLE

    return sum(len(t["nodes"]) for t in _mlxfn.File.open(str(path)).traces(DTYPE_TABLE))


if __name__ == "__main__":
    main()
