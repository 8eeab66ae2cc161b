"""The ``mlxfn`` command: look inside an exported file without running it."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any, Sequence

from . import _mlxfn
from ._dtypes import DTYPE_TABLE
from .errors import MlxfnError


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def summarize(path: str) -> dict[str, Any]:
    """Everything ``inspect`` shows, from the header and the flatbuffer only."""
    handle = _mlxfn.File.open(path)
    infos = handle.constant_infos(DTYPE_TABLE)
    traces = []
    used_by: Counter[int] = Counter()
    for record in handle.traces(DTYPE_TABLE):
        names = list(record["keyword_names"])
        inputs = record["inputs"]
        n_pos = len(inputs) - len(names)
        used_by.update(set(record["constants"]))
        traces.append(
            {
                "positional": [f"{_shape(s)} {d}" for s, d in inputs[:n_pos]],
                "keywords": {k: f"{_shape(s)} {d}" for k, (s, d) in zip(names, inputs[n_pos:])},
                "nodes": len(record["nodes"]),
                "primitives": dict(Counter(n[0] for n in record["nodes"]).most_common()),
                "constants": len(record["constants"]),
            }
        )
    return {
        "file": path,
        "format_version": handle.format_version,
        "mlxfn_version": handle.mlxfn_version,
        "mlx_version": handle.mlx_version,
        "metadata": handle.metadata,
        "shapeless": handle.shapeless,
        "file_size": handle.file_size,
        "constants": len(infos),
        "constant_bytes": sum(n for _, _, n in infos),
        "shared_bytes": sum(infos[i][2] for i, c in used_by.items() if c > 1),
        "traces": traces,
        "layout": handle.describe(),
    }


def _print_text(info: dict[str, Any]) -> None:
    print(f"{info['file']}: mlxfn format {info['format_version']}, written by mlxfn "
          f"{info['mlxfn_version']} with mlx {info['mlx_version']}")
    print(f"  size {info['file_size']:,} bytes; {info['constants']} constants, "
          f"{info['constant_bytes']:,} bytes ({info['shared_bytes']:,} shared by several traces)")
    print(f"  shapeless: {info['shapeless']}; metadata: {info['metadata']!r}")
    for i, t in enumerate(info["traces"]):
        print(f"  trace {i}: {len(t['positional'])} positional, {len(t['keywords'])} keyword inputs, "
              f"{t['nodes']} nodes, {t['constants']} constants")
        for j, s in enumerate(t["positional"]):
            print(f"    input {j}: {s}")
        for k, s in t["keywords"].items():
            print(f"    input {k!r}: {s}")
        top = ", ".join(f"{k} {v}" for k, v in list(t["primitives"].items())[:12])
        print(f"    primitives: {top}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlxfn", description="Inspect mlxfn files.")
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="show versions, signatures, primitives and layout")
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        info = summarize(args.file)
    except (MlxfnError, OSError) as err:
        print(f"mlxfn: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        _print_text(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
