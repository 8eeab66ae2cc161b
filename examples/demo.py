"""The demo: export and import a ~1 GB Llama-style model with mlxfn and MLX.

Builds a seeded decoder (float32, about 1 GB of weights), exports it with
``mlxfn.export_function`` and with ``mx.export_function``, imports each file
in fresh processes (page cache warm for both): mlxfn mapping the weights,
mlxfn copying them, and MLX.  It checks that every import gives exactly the
original model's output, and prints export time, import time, time to first
output, per-call time and memory side by side, with ratios to MLX.

    python examples/demo.py [--rounds N] [--out DIR]

The same comparison for other models and options: ``python benches/compare.py --help``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPARE = ROOT / "benches" / "compare.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process rounds per side")
    parser.add_argument("--out", type=Path, default=ROOT / "demo-out")
    args = parser.parse_args()
    options = ["--model", "llama-1g", "--pss", "--rounds", str(args.rounds), "--out", str(args.out)]
    return subprocess.call([sys.executable, str(COMPARE), *options])


if __name__ == "__main__":
    sys.exit(main())
