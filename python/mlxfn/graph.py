"""Draw a trace as a Graphviz DOT graph (and SVG through Graphviz's ``dot``).

Inputs are blue inverted houses, constants grey cylinders, primitives rounded
boxes labelled with their op and abbreviated arguments, outputs green houses;
each edge is labelled with the shape and dtype of the value it carries.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from . import _mlxfn
from .ir import Expr, Op, TensorSpec, Trace, dtype_name

_SHORT = {
    "bool": "bool",
    "uint8": "u8",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "float16": "f16",
    "float32": "f32",
    "float64": "f64",
    "bfloat16": "bf16",
    "complex64": "c64",
}
_MAX_ARGS = 40  # characters of a node's argument text


def _tensor(shape: Sequence[int], dtype: mx.Dtype) -> str:
    return "(" + ",".join(str(d) for d in shape) + ") " + _SHORT.get(dtype_name(dtype), dtype_name(dtype))


def _arg(value: Any) -> str:
    if isinstance(value, (Expr, Op)):
        return f"<{value}>"
    if isinstance(value, mx.Dtype):
        return _SHORT.get(dtype_name(value), dtype_name(value))
    if isinstance(value, (list, tuple)):
        items = [_arg(v) for v in value[:6]]
        return "[" + ",".join(items) + (",…" if len(value) > 6 else "") + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value if len(value) <= 16 else value[:15] + "…"
    return str(value)


def abbreviate(args: Sequence[Any]) -> str:
    """A primitive's arguments in at most ~40 characters."""
    text = ", ".join(_arg(a) for a in args)
    return text if len(text) <= _MAX_ARGS else text[: _MAX_ARGS - 1] + "…"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(trace: Trace, constants: Sequence[TensorSpec], title: str = "") -> str:
    """The DOT source of one trace; ``constants`` gives the shape and dtype
    of each of its constants (a dynamic trace is drawn at its traced sizes,
    its dynamic sizes in the title)."""
    if trace.dims:
        title += f" (dynamic: {trace.describe_dims()})"
    lines = [
        "digraph trace {",
        f"  label={_quote(title)}; labelloc=t; rankdir=TB;",
        '  node [fontname="Helvetica", fontsize=10]; edge [fontname="Helvetica", fontsize=8];',
    ]
    # value id -> (DOT node, edge label); a multi-output node's edges say which output.
    source: list[tuple[str, str]] = []
    sig = trace.signature
    labels = [str(i) for i in range(len(sig.positional))] + [repr(k) for k in sig.keyword_names]
    for i, (label, (shape, dtype)) in enumerate(zip(labels, sig.flat())):
        lines.append(f"  in{i} [shape=invhouse, style=filled, fillcolor=lightblue, label={_quote(f'input {label}')}];")
        source.append((f"in{i}", _tensor(shape, dtype)))
    for j, (shape, dtype) in enumerate(constants):
        lines.append(f"  c{j} [shape=cylinder, style=filled, fillcolor=lightgrey, label={_quote(f'constant {j}')}];")
        source.append((f"c{j}", _tensor(shape, dtype)))
    for k, node in enumerate(trace.nodes):
        op, args, inputs, outputs = node.op, node.args, node.inputs, node.outputs
        text = f"{op}\n{abbreviate(args)}" if args else op
        lines.append(f"  n{k} [shape=box, style=rounded, label={_quote(text)}];")
        for value in inputs:
            src, label = source[value]
            lines.append(f"  {src} -> n{k} [label={_quote(label)}];")
        for o, (shape, dtype) in enumerate(outputs):
            port = f"#{o} " if len(outputs) > 1 else ""
            source.append((f"n{k}", port + _tensor(shape, dtype)))
    for o, value in enumerate(trace.outputs):
        src, label = source[value]
        lines.append(f"  out{o} [shape=house, style=filled, fillcolor=palegreen, label={_quote(f'output {o}')}];")
        lines.append(f"  {src} -> out{o} [label={_quote(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write(dot_text: str, out: str) -> str:
    """Write DOT text to ``out`` (``-`` for stdout); return the path written.

    ``.svg`` goes through Graphviz's ``dot``; where ``dot`` is not installed the
    DOT text goes to the same name ending in ``.dot`` instead.  Files are
    written to a temporary name beside their target and renamed into place.
    """
    if out == "-":
        print(dot_text, end="")
        return out
    svg = out.lower().endswith(".svg")
    dot = shutil.which("dot") if svg else None
    if svg and dot is None:
        out, svg = out[: -len(".svg")] + ".dot", False
    target = _mlxfn.AtomicFile(out)
    try:
        if svg and dot is not None:
            proc = subprocess.run(
                [dot, "-Tsvg", "-o", target.temp_path], input=dot_text, capture_output=True, text=True
            )
            if proc.returncode != 0:
                detail = (proc.stderr.strip().splitlines() or ["unknown error"])[0]
                raise RuntimeError(f"dot failed: {detail}")
        else:
            with open(target.temp_path, "w", encoding="utf-8") as f:
                f.write(dot_text)
        target.commit()
    finally:
        target.discard()
    return out
