"""The ``mlxfn`` command: inspect, convert, graph and bench --file, good and bad input.

Commands run in a child process (``python -m mlxfn.cli``) so exit statuses and
stderr are what a user sees; converted files are checked by calling them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

import mlxfn
from mlxfn import _mlxfn

from conftest import assert_same

W = mx.arange(4096, dtype=mx.float32).reshape(64, 64) / 4096  # 16 KiB: its own segment
B = mx.arange(64, dtype=mx.float32)
mx.eval(W, B)  # constants of the traced function, not part of its graph


def model(x: mx.array, *, scale: mx.array) -> mx.array:
    return mx.tanh(x @ W + B) * scale


def mlxfn_command(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mlxfn.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str, status: int = 1) -> None:
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no traceback
    assert lines[0].startswith("mlxfn"), lines
    for word in words:
        assert word in lines[0], (word, lines[0])


def example(n: int) -> tuple[mx.array, mx.array]:
    return mx.linspace(-1, 1, n * 64).reshape(n, 64), mx.array(0.5)


@pytest.fixture
def two_traces(tmp_path: Path) -> tuple[Path, Path]:
    """The same two-trace function (keyword input, metadata) in both formats."""
    ours, theirs = tmp_path / "f.mlxfn", tmp_path / "f.mlx"
    with mlxfn.exporter(ours, model, metadata="two traces") as exp:
        for n in (1, 3):
            x, s = example(n)
            exp(x, scale=s)
    mlx_exp = mx.exporter(str(theirs), model, metadata="two traces")
    for n in (1, 3):
        x, s = example(n)
        mlx_exp(x, scale=s)
    mlx_exp.close()
    return ours, theirs


# ----------------------------------------------------------------------------
# inspect


def test_inspect_json_describes_every_trace(two_traces: tuple[Path, Path]) -> None:
    ours, _ = two_traces
    info = json.loads(mlxfn_command("inspect", str(ours), "--json").stdout)
    handle = _mlxfn.File.open(str(ours))
    records = handle.traces()
    assert info["kind"] == "mlxfn" and info["format_version"] == 2  # no expression program: version 2
    assert _mlxfn.FORMAT_VERSION == 3
    assert info["mlx_version"] == mx.__version__ and info["metadata"] == "two traces"
    assert info["shapeless"] is False and info["file_size"] == ours.stat().st_size
    assert len(info["traces"]) == 2
    for n, trace, record in zip((1, 3), info["traces"], records):
        assert trace["positional"] == [f"({n}, 64) float32"]
        assert trace["keywords"] == {"scale": "() float32"}
        assert trace["nodes"] == len(record["nodes"]) == sum(trace["primitives"].values())
        assert "Matmul" in trace["primitives"] or "AddMM" in trace["primitives"]
    # W (16 KiB) and B are stored once and used by both traces.
    assert info["constant_bytes"] >= W.nbytes + B.nbytes
    assert info["shared_bytes"] >= W.nbytes + B.nbytes
    layout = info["layout"]  # every constant under 1 MiB: packed right after the graph
    assert layout["flatbuffer_offset"] == 64 and layout["segments_offset"] % 64 == 0
    assert layout["segments_offset"] - (64 + layout["flatbuffer_size"]) < 256
    assert [offset for offset, _ in layout["segments"]] == [layout["segments_offset"]]
    assert info["load"] == "map (C++ bridge)"


def test_inspect_text(two_traces: tuple[Path, Path]) -> None:
    out = mlxfn_command("inspect", str(two_traces[0])).stdout
    assert "mlxfn format 2" in out and "'two traces'" in out
    assert "load here: map (C++ bridge)" in out
    assert "trace 1: 1 positional, 1 keyword inputs" in out
    assert "input 0: (3, 64) float32" in out and "input 'scale': () float32" in out
    assert "primitives: " in out and "layout: header 0-64" in out and "segment 0:" in out


def test_inspect_mlx_file_lists_every_function(two_traces: tuple[Path, Path]) -> None:
    _, theirs = two_traces
    info = json.loads(mlxfn_command("inspect", str(theirs), "--json").stdout)
    assert info["kind"] == "mlx" and info["mlx_version"] == mx.__version__
    assert info["function_count"] == 2 and info["metadata"] == "two traces"
    assert sorted(t["positional"][0] for t in info["traces"]) == ["(1, 64) float32", "(3, 64) float32"]
    assert all(t["keywords"] == {"scale": "() float32"} for t in info["traces"])
    text = mlxfn_command("inspect", str(theirs)).stdout
    assert "MLX export format" in text and "2 functions" in text


@pytest.mark.parametrize("command", ["inspect", "graph"])
def test_bad_files_give_one_line(tmp_path: Path, two_traces: tuple[Path, Path], command: str) -> None:
    missing = tmp_path / "missing.mlxfn"
    assert_one_line_error(mlxfn_command(command, str(missing), check=False), str(missing), "no such file")
    assert_one_line_error(mlxfn_command(command, str(tmp_path), check=False), "is a directory")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model at all" * 10)
    assert_one_line_error(mlxfn_command(command, str(junk), check=False), str(junk), "not an mlxfn file")
    cut = tmp_path / "cut.mlxfn"
    cut.write_bytes(two_traces[0].read_bytes()[:5000])
    assert_one_line_error(mlxfn_command(command, str(cut), check=False), str(cut))
    for size in (40, 3000):  # inside MLX's header; inside its tape
        cut_mlx = tmp_path / f"cut{size}.mlx"
        cut_mlx.write_bytes(two_traces[1].read_bytes()[:size])
        assert_one_line_error(mlxfn_command(command, str(cut_mlx), check=False), str(cut_mlx))


def test_bad_arguments_give_one_line() -> None:
    for args in ([], ["frobnicate"], ["inspect"], ["convert", "a", "b"], ["convert", "a", "b", "--to", "onnx"]):
        proc = mlxfn_command(*args, check=False)
        assert proc.returncode == 2, args
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)


# ----------------------------------------------------------------------------
# convert


def call_every_trace(fn: Any) -> list[tuple[mx.array, ...]]:
    out = []
    for n in (1, 3):
        x, s = example(n)
        out.append(fn(x, scale=s))
    return out


def test_convert_mlxfn_to_mlx_keeps_traces_metadata_and_outputs(tmp_path: Path, two_traces: tuple[Path, Path]) -> None:
    ours, _ = two_traces
    dst = tmp_path / "converted.mlx"
    proc = mlxfn_command("convert", str(ours), str(dst), "--to", "mlx")
    assert "2 traces in MLX's format" in proc.stdout
    fn, metadata = mx.import_function(str(dst), return_metadata=True)
    assert metadata == "two traces"
    for got, want in zip(call_every_trace(fn), call_every_trace(mlxfn.import_function(ours))):
        assert_same(got, want)
    with pytest.raises(ValueError):  # keyword inputs stay keyword inputs
        fn(*example(1))
    assert sorted(os.listdir(tmp_path)) == ["converted.mlx", "f.mlx", "f.mlxfn"]  # no temp file


def test_convert_mlx_to_mlxfn_keeps_traces_metadata_and_outputs(tmp_path: Path, two_traces: tuple[Path, Path]) -> None:
    _, theirs = two_traces
    dst = tmp_path / "converted.mlxfn"
    mlxfn_command("convert", str(theirs), str(dst), "--to", "mlxfn")
    fn, metadata = mlxfn.import_function(dst, return_metadata=True)
    assert metadata == "two traces"
    for got, want in zip(call_every_trace(fn), call_every_trace(mx.import_function(str(theirs)))):
        assert_same(got, want)
    assert len(_mlxfn.File.open(str(dst)).traces()) == 2


def test_convert_keeps_shapeless(tmp_path: Path) -> None:
    def f(x: mx.array) -> mx.array:
        return mx.exp(x).sum(axis=-1)

    src, mid, back = tmp_path / "s.mlxfn", tmp_path / "s.mlx", tmp_path / "back.mlxfn"
    mlxfn.export_function(src, f, mx.ones((2, 3)), shapeless=True)
    mlxfn_command("convert", str(src), str(mid), "--to", "mlx")
    mlxfn_command("convert", str(mid), str(back), "--to", "mlxfn")
    x = mx.linspace(0, 1, 20).reshape(4, 5)  # a new shape: shapeless all the way
    assert_same(mx.import_function(str(mid))(x), (f(x),))
    assert_same(mlxfn.import_function(back)(x), (f(x),))
    assert json.loads(mlxfn_command("inspect", str(back), "--json").stdout)["shapeless"] is True


def test_convert_errors(tmp_path: Path, two_traces: tuple[Path, Path]) -> None:
    ours, theirs = two_traces
    dst = tmp_path / "out.mlx"
    assert_one_line_error(mlxfn_command("convert", str(ours), str(dst), "--to", "mlxfn", check=False), "already")
    assert_one_line_error(mlxfn_command("convert", str(theirs), str(dst), "--to", "mlx", check=False), "already")
    assert_one_line_error(mlxfn_command("convert", str(ours), str(tmp_path), "--to", "mlx", check=False), "directory")
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 100)
    assert_one_line_error(mlxfn_command("convert", str(junk), str(dst), "--to", "mlx", check=False), "not an mlxfn")
    assert not dst.exists()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


# ----------------------------------------------------------------------------
# graph


def test_graph_dot_has_every_node_and_edge(two_traces: tuple[Path, Path]) -> None:
    ours, _ = two_traces
    record = _mlxfn.File.open(str(ours)).traces()[1]
    dot = mlxfn_command("graph", str(ours), "--trace", "1").stdout
    assert dot.startswith("digraph trace {") and dot.rstrip().endswith("}")
    assert dot.count("shape=box") == len(record["nodes"])
    assert dot.count("shape=invhouse") == 2 and dot.count("shape=house") == len(record["outputs"])
    assert dot.count(" -> ") == sum(len(n[2]) for n in record["nodes"]) + len(record["outputs"])
    assert "(3,64) f32" in dot  # edges carry shapes
    for op, *_ in record["nodes"]:
        assert f'label="{op}' in dot


def test_graph_to_files(tmp_path: Path, two_traces: tuple[Path, Path]) -> None:
    ours, theirs = two_traces
    out = tmp_path / "g.dot"
    mlxfn_command("graph", str(theirs), "-o", str(out))  # MLX's files are traced again
    assert out.read_text().startswith("digraph")
    # Without Graphviz, an SVG request writes DOT text beside it and says so.
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))
    proc = mlxfn_command("graph", str(ours), "-o", str(tmp_path / "p.svg"), env=env)
    assert "wrote DOT text to" in proc.stderr
    assert (tmp_path / "p.dot").read_text().startswith("digraph")
    assert not (tmp_path / "p.svg").exists()


def test_graph_trace_out_of_range(two_traces: tuple[Path, Path]) -> None:
    proc = mlxfn_command("graph", str(two_traces[0]), "--trace", "2", check=False)
    assert_one_line_error(proc, "trace 2 out of range", "2 traces")


# ----------------------------------------------------------------------------
# bench


def test_bench_on_a_users_file(two_traces: tuple[Path, Path], tmp_path: Path) -> None:
    proc = mlxfn_command("bench", "--file", str(two_traces[0]), "--rounds", "1", "--out", str(tmp_path / "scratch"))
    assert "every import gives the same output" in proc.stdout
    # Its load processes have used MLX before they import: mapping must still work there.
    assert "mlxfn loads: map (C++ bridge)" in proc.stdout
    for row in ("import_function call", "import to first output", "steady call", "peak RSS", "anonymous RSS"):
        assert row in proc.stdout
    assert "mlxfn:map/mlx" in proc.stdout and "mlxfn:copy/mlx" in proc.stdout
    assert not list((tmp_path / "scratch").iterdir())  # scratch files removed


def test_bench_where_mapping_is_not_possible_says_so(two_traces: tuple[Path, Path], tmp_path: Path) -> None:
    no_bridge = tmp_path / "no_bridge"
    no_bridge.mkdir()
    (no_bridge / "sitecustomize.py").write_text("import sys\nsys.modules['mlxfn._bridge'] = None\n")
    env = dict(os.environ, PYTHONPATH=str(no_bridge))
    proc = mlxfn_command("bench", "--file", str(two_traces[0]), "--rounds", "1", env=env)
    assert "mlxfn:map: not possible here: [import_function] load='map' is not possible here" in proc.stdout
    assert "mlxfn loads: copy (load='copy' was requested)" in proc.stdout
    assert "mlxfn:copy/mlx" in proc.stdout and "mlxfn:map" not in proc.stdout.split("not possible here")[-1]
    assert "every import gives the same output" in proc.stdout


def test_bench_on_mlx_format_file(two_traces: tuple[Path, Path], tmp_path: Path) -> None:
    proc = mlxfn_command("bench", "--file", str(two_traces[1]), "--rounds", "1")
    assert "(mlx format; the mlxfn side converted from it)" in proc.stdout
    assert "every import gives the same output" in proc.stdout


def test_bench_errors_give_one_line_and_create_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "missing.mlxfn"
    proc = mlxfn_command("bench", "--file", str(missing), "--out", str(out), check=False)
    assert_one_line_error(proc, str(missing), "no such file")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model at all" * 10)
    assert_one_line_error(mlxfn_command("bench", "--file", str(junk), "--out", str(out), check=False), "not an mlxfn")
    # A shapeless export whose sizes flow into its primitives' state: MLX's
    # format cannot hold it, so there is nothing to compare with.
    sliced = tmp_path / "sliced.mlxfn"
    mlxfn.export_function(sliced, lambda x: x[: x.shape[0] - 1], mx.ones((4,)), shapeless=True)
    proc = mlxfn_command("bench", "--file", str(sliced), "--out", str(out), check=False)
    assert_one_line_error(proc, str(sliced), "converting it to MLX's format is refused", "trace 0 is dynamic")
    for rounds in ("0", "-1", "two"):
        proc = mlxfn_command("bench", "--file", str(sliced), "--rounds", rounds, "--out", str(out), check=False)
        assert_one_line_error(proc, "--rounds", status=2)
    assert_one_line_error(mlxfn_command("bench", check=False), "--file", status=2)
    assert not out.exists()
