"""The demo: export and import a ~1 GB Llama-style model with mlxfn and MLX.

Builds a seeded decoder (float32, about 1 GB of weights), exports it with
``mlxfn.export_function`` and with ``mx.export_function``, imports each file
in fresh processes (page cache warm for both), checks that both imports give
exactly the original model's output, and prints export time, import time,
time to first output, per-call time and peak memory side by side.

    python examples/demo.py [--rounds N] [--out DIR]

The same comparison, for other models or your own settings: ``mlxfn bench``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlxfn import bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process rounds per side")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "demo-out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return bench.main(["--model", "llama-1g", "--rounds", str(args.rounds), "--out", str(args.out)])


if __name__ == "__main__":
    sys.exit(main())
