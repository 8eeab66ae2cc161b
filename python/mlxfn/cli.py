"""The ``mlxfn`` command: inspect, convert and draw exported files.

    mlxfn inspect FILE [--json]
    mlxfn convert SRC DST --to mlx|mlxfn
    mlxfn graph FILE [--trace N] [-o OUT.dot|OUT.svg|-]
    mlxfn bench --file FILE [--rounds N]

Every failure is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any, NoReturn

from . import _mlxfn
from ._load import choose
from .distributed import COLLECTIVES, recorded_group
from .errors import MlxfnError
from .ir import Signature, TensorSpec, Trace, dtype_name


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _spec(shape: Sequence[int], dtype: Any) -> str:
    return f"{_shape(shape)} {dtype_name(dtype)}"


def file_kind(path: str) -> str:
    """The file's kind, "mlxfn" or "mlx"; the command's one-line errors for anything else."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory")
    kind, _ = _mlxfn.recognise(path)
    return kind


# ----------------------------------------------------------------------------
# inspect


def summarize(path: str) -> dict[str, Any]:
    """Everything ``inspect`` shows for an mlxfn file, from the header and the flatbuffer only."""
    handle = _mlxfn.File.open(path)
    infos = handle.constant_infos()
    traces = []
    used_by: Counter[int] = Counter()
    collectives: list[tuple[str, tuple[Any, ...]]] = []
    for record in handle.traces():
        trace = Trace.from_record(record)
        used_by.update(set(trace.constants))
        collectives += [(n.op, n.args) for n in trace.nodes if n.op in COLLECTIVES]
        traces.append(
            {
                **_signature_entry(trace.signature),
                "dynamic": trace.describe_dims(),
                "nodes": len(trace.nodes),
                "primitives": dict(Counter(n.op for n in trace.nodes).most_common()),
                "constants": len(trace.constants),
            }
        )
    return {
        "file": path,
        "kind": "mlxfn",
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
        "distributed": _distributed_entry(path, collectives),
        "layout": handle.describe(),
        "load": choose("auto").describe(),
    }


def _distributed_entry(path: str, collectives: list[tuple[str, tuple[Any, ...]]]) -> dict[str, Any] | None:
    """The rank and group size that wrote a file with collectives (None: it has none)."""
    group = recorded_group(collectives, path)
    if group is None:
        return None
    size, rank = group
    return {"rank": rank, "group_size": size, "collectives": dict(Counter(op for op, _ in collectives).most_common())}


def _signature_entry(sig: Signature) -> dict[str, Any]:
    return {
        "positional": [_spec(s.shape, s.dtype) for s in sig.positional],
        "keywords": {k: _spec(s.shape, s.dtype) for k, s in sig.keywords},
    }


def summarize_mlx(path: str) -> tuple[dict[str, Any], str | None]:
    """What can be read cheaply from MLX's file; and why signatures are missing, if they are."""
    from .mlx_format import probe_signatures, read_header

    header = read_header(path)
    info: dict[str, Any] = {
        "file": path,
        "kind": "mlx",
        "mlx_version": header.mlx_version,
        "metadata": header.metadata,
        "shapeless": header.shapeless,
        "file_size": header.file_size,
        "function_count": header.function_count,
        "traces": [],
    }
    try:
        info["traces"] = [_signature_entry(s) for s in probe_signatures(path)]
        return info, None
    except MlxfnError as err:
        if header.first is not None:
            info["traces"] = [_signature_entry(header.first)]  # at least the first function
        return info, str(err)


def _print_signature(t: dict[str, Any]) -> None:
    for j, s in enumerate(t["positional"]):
        print(f"    input {j}: {s}")
    for k, s in t["keywords"].items():
        print(f"    input {k!r}: {s}")


def _print_text(info: dict[str, Any]) -> None:
    if info["kind"] == "mlx":
        print(f"{info['file']}: MLX export format, written by mlx {info['mlx_version']}")
        print(f"  size {info['file_size']:,} bytes; {info['function_count']} functions")
        print(f"  shapeless: {info['shapeless']}; metadata: {info['metadata']!r}")
        for i, t in enumerate(info["traces"]):
            print(f"  trace {i}: {len(t['positional'])} positional, {len(t['keywords'])} keyword inputs")
            _print_signature(t)
        return
    print(
        f"{info['file']}: mlxfn format {info['format_version']}, written by mlxfn "
        f"{info['mlxfn_version']} with mlx {info['mlx_version']}"
    )
    print(
        f"  size {info['file_size']:,} bytes; {info['constants']} constants, "
        f"{info['constant_bytes']:,} bytes ({info['shared_bytes']:,} shared by several traces)"
    )
    print(f"  shapeless: {info['shapeless']}; metadata: {info['metadata']!r}")
    print(f"  load here: {info['load']}")
    if info["distributed"]:
        d = info["distributed"]
        ops = ", ".join(f"{k} {v}" for k, v in d["collectives"].items())
        print(f"  distributed: rank {d['rank']} of a group of {d['group_size']} processes; collectives: {ops}")
    for i, t in enumerate(info["traces"]):
        print(
            f"  trace {i}: {len(t['positional'])} positional, {len(t['keywords'])} keyword inputs, "
            f"{t['nodes']} nodes, {t['constants']} constants"
        )
        _print_signature(t)
        if t["dynamic"]:
            print(f"    dynamic: {t['dynamic']}")
        top = ", ".join(f"{k} {v}" for k, v in list(t["primitives"].items())[:12])
        more = len(t["primitives"]) - 12
        print(f"    primitives: {top}" + (f", and {more} more kinds" if more > 0 else ""))
    _print_layout(info["layout"])


def _print_layout(layout: dict[str, Any]) -> None:
    segments = layout["segments"]
    print(
        f"  layout: header 0-{layout['flatbuffer_offset']}, flatbuffer "
        f"{layout['flatbuffer_offset']}+{layout['flatbuffer_size']:,}, "
        f"{len(segments)} segment{'s' if len(segments) != 1 else ''} from {layout['segments_offset']:,}"
    )
    for i, (offset, size) in enumerate(segments[:8]):
        print(f"    segment {i}: offset {offset:,}, {size:,} bytes")
    if len(segments) > 8:
        print(f"    ... and {len(segments) - 8} more segments")


def cmd_inspect(args: argparse.Namespace) -> int:
    """``mlxfn inspect``: print (or dump as JSON) what a file holds."""
    kind = file_kind(args.file)
    problem = None
    if kind == "mlxfn":
        info = summarize(args.file)
    else:
        info, problem = summarize_mlx(args.file)
    if args.json:
        if problem:
            info["error"] = problem
        print(json.dumps(info, indent=2, default=str))
    else:
        _print_text(info)
    if problem:
        print(f"mlxfn: {problem}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------
# convert and graph


def cmd_convert(args: argparse.Namespace) -> int:
    """``mlxfn convert``: rewrite a file in the other format."""
    from .convert import convert

    file_kind(args.src)
    if os.path.isdir(args.dst):
        raise IsADirectoryError(f"{args.dst}: is a directory")
    kind, count = convert(args.src, args.dst, args.to)
    target = "MLX's format" if args.to == "mlx" else "mlxfn format"
    print(f"{args.dst}: {count} trace{'s' if count != 1 else ''} in {target} (from {kind} file {args.src})")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    """``mlxfn graph``: write one trace as DOT or SVG."""
    from . import graph

    kind = file_kind(args.file)
    if kind == "mlxfn":
        handle = _mlxfn.File.open(args.file)
        records = handle.traces()
        count = len(records)
    else:
        from .convert import trace_mlx_file

        _, traces = trace_mlx_file(args.file)
        count = len(traces)
    if not 0 <= args.trace < count:
        raise IndexError(
            f"trace {args.trace} out of range: {args.file} has {count} trace{'s' if count != 1 else ''} (0-{count - 1})"
        )
    if kind == "mlxfn":
        trace = Trace.from_record(records[args.trace])
        infos = handle.constant_infos()
        constants = [TensorSpec(tuple(infos[c][0]), infos[c][1]) for c in trace.constants]
    else:
        captured = traces[args.trace]
        trace = captured.trace
        constants = [TensorSpec(tuple(c.shape), c.dtype) for c in captured.constants]
    title = f"{os.path.basename(args.file)} trace {args.trace}"
    written = graph.write(graph.to_dot(trace, constants, title), args.output)
    if written != args.output:
        print(f"mlxfn: Graphviz's `dot` is not installed: wrote DOT text to {written}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------
# bench


def cmd_bench(args: argparse.Namespace) -> int:
    """``mlxfn bench``: load figures of the user's own files (``mlxfn.bench``)."""
    from .bench import run

    print(run(args.file, args.rounds, args.out), flush=True)
    return 0


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


# ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlxfn", description="Inspect, convert and draw exported MLX functions.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("inspect", help="show versions, signatures, primitives and layout")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_inspect)

    p = sub.add_parser("convert", help="convert between mlxfn files and MLX's own format")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--to", required=True, choices=("mlx", "mlxfn"), help="target format")
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("graph", help="draw one trace as Graphviz DOT (or SVG with dot installed)")
    p.add_argument("file")
    p.add_argument("--trace", type=int, default=0, help="trace index (default 0)")
    p.add_argument("-o", "--output", default="-", help="OUT.dot, OUT.svg, or - for DOT on stdout (default)")
    p.set_defaults(run=cmd_graph)

    from . import bench

    p = sub.add_parser(
        "bench",
        help="time loading your own file with mlxfn against MLX's own import",
        description=bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--file", required=True, action="append", help="an exported file, mlxfn or MLX format (repeatable)")
    p.add_argument("--rounds", type=_at_least_one, default=3, help="fresh processes per side (default 3)")
    p.add_argument("--out", help="where the scratch directory goes (default: the system's temporary directory)")
    p.set_defaults(run=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlxfn`` console script; returns the exit status."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        status: int = args.run(args)
        return status
    except KeyboardInterrupt:
        print("mlxfn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mlxfn inspect big.mlxfn | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # noqa: BLE001 - the command's contract: one line, no traceback
        text = str(err).strip().splitlines()
        print(f"mlxfn: {text[0] if text else type(err).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
