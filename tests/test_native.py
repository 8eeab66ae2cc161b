"""The C++ runtime (native/): mlxfn files imported and called from C++.

Builds native/tools/mlxfn_run (the runtime's sources, the core's C ABI
staticlib from ``cargo build -p mlxfn-capi --release``, the installed mlx
wheel's headers and libmlx: ``native_decode.build_program``) and runs it on a corpus: every model of
tests/models.py, the primitives of tests/test_primitives.py (shaped, and
shapeless at the traced and at other sizes), keyword inputs, several traces
in one file, shapeless traces whose sizes follow the inputs through
expressions, files imported from memory, constants mapped and copied.  The
outputs must equal the original function's (and MLX's own import's where
the test says), and a call that matches no trace must get MLX's message.

Jobs run in one process (``mlxfn_run --batch``): starting a program that
loads libmlx costs more than most calls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import pytest

import mlxfn
from native_decode import build_program, export_concatenate  # benches/: the build is shared

from conftest import as_tuple, assert_same
from models import CNN, MLP, Llama, LlamaConfig, seeded

ROOT = Path(__file__).resolve().parent.parent
MLX_DIR = Path(mx.__file__).parent


def _why_not_buildable() -> str | None:
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return "no C++ compiler (g++ or $CXX) on PATH"
    if shutil.which("cargo") is None:
        return "no cargo on PATH (the core's C ABI is Rust)"
    if not (MLX_DIR / "include" / "mlx" / "mlx.h").exists():
        return f"the installed mlx wheel has no C++ headers under {MLX_DIR}/include"
    return None


pytestmark = pytest.mark.skipif(_why_not_buildable() is not None, reason=str(_why_not_buildable()))


@pytest.fixture(scope="session")
def mlxfn_run() -> Path:
    return build_program(ROOT / "native" / "tools" / "mlxfn_run.cpp", "mlxfn_run")


# ----------------------------------------------------------------------------
# Jobs: a file, inputs, what the call must give.


@dataclass
class Job:
    """One call of an mlxfn file from C++, and what it must give: ``want``
    (the original function's outputs) or ``refused`` (a message the error
    must contain)."""

    file: Path
    args: tuple[mx.array, ...]
    kwargs: dict[str, mx.array] = field(default_factory=dict)
    want: tuple[mx.array, ...] | None = None
    refused: str | None = None
    options: tuple[str, ...] = ()
    name: str = ""

    def write(self, folder: Path, index: int) -> str:
        inputs, self._out = folder / f"{index}.in.safetensors", folder / f"{index}.out.safetensors"
        arrays = {f"arg{i}": a for i, a in enumerate(self.args)} | self.kwargs
        mx.save_safetensors(str(inputs), arrays)
        return " ".join([str(self.file), str(inputs), str(self._out), *self.options])

    def result(self) -> tuple[tuple[mx.array, ...] | None, str, dict[str, str]]:
        """(outputs, error, metadata): outputs None when the call failed."""
        err = Path(str(self._out) + ".err")
        if err.exists():
            return None, err.read_text(), {}
        loaded = mx.load(str(self._out), return_metadata=True)
        arrays, meta = loaded  # type: ignore[misc]
        return tuple(arrays[f"out{i}"] for i in range(len(arrays))), "", meta

    def check(self) -> dict[str, str]:
        outputs, error, meta = self.result()
        if self.refused is not None:
            assert outputs is None, f"{self.name}: C++ served a call it must refuse"
            assert self.refused in error, f"{self.name}: {error}"
            return meta
        assert outputs is not None, f"{self.name}: {error}"
        assert self.want is not None
        assert_same(outputs, self.want)
        return meta


def run_jobs(program: Path, folder: Path, jobs: Sequence[Job]) -> None:
    """Run every job in one C++ process."""
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / "jobs.txt"
    listing.write_text("\n".join(job.write(folder, i) for i, job in enumerate(jobs)) + "\n")
    proc = subprocess.run([str(program), "--batch", str(listing)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr


def export(path: Path, fun: Callable[..., Any], *args: mx.array, shapeless: bool = False, **kwargs: mx.array) -> Path:
    mlxfn.export_function(path, fun, *args, shapeless=shapeless, **kwargs)
    return path


def expect(path: Path, fun: Callable[..., Any], args: tuple[mx.array, ...], name: str) -> Job:
    """A call of a shapeless file: where Python's import refuses it (sizes no
    trace serves), C++ must refuse it too; elsewhere both equal the original."""
    try:
        called(mlxfn.import_function(path), *args)
    except ValueError as err:
        return Job(path, args, refused="", name=f"{name} (refused: {err})"[:300])
    return Job(path, args, want=called(fun, *args), name=name)


def normal(*shape: int, seed: int = 0) -> mx.array:
    return mx.random.normal(shape, key=mx.random.key(seed))


def plain(args: Sequence[mx.array]) -> tuple[mx.array, ...]:
    """Row-contiguous copies: what the C++ program reads back from safetensors
    (a transposed view would take another BLAS path, rounding differently)."""
    out = tuple(mx.contiguous(a) for a in args)
    mx.eval(out)
    return out


def called(fun: Callable[..., Any], *args: mx.array, **kwargs: mx.array) -> tuple[mx.array, ...]:
    out = as_tuple(fun(*args, **kwargs))
    mx.eval(out)
    return out


# ----------------------------------------------------------------------------
# Models, keyword inputs, several traces, memory, load modes.


def test_models_equal_the_original_and_mlx_import(mlxfn_run: Path, tmp_path: Path) -> None:
    llama = seeded(Llama(LlamaConfig()))
    bf16 = seeded(Llama(LlamaConfig()))
    bf16.set_dtype(mx.bfloat16)
    quantized = seeded(Llama(LlamaConfig(dims=64, hidden=128)))
    nn.quantize(quantized, group_size=32, bits=4)
    cnn_train = seeded(CNN())
    cnn_train.train(True)
    cnn_eval = seeded(CNN())
    cnn_eval.train(False)

    def sample(logits: mx.array) -> tuple[mx.array, ...]:
        k1, k2, k3 = mx.random.split(mx.random.key(7), 3)
        return (
            mx.random.categorical(logits, key=k1),
            mx.random.normal((3, 5), key=k2),
            mx.random.uniform(shape=(7,), key=k3),
            mx.random.bernoulli(0.3, (9,), key=k1),
            mx.random.randint(0, 10, (4,), key=k2),
            mx.random.permutation(6, key=k1),
        )

    cases: list[tuple[str, Callable[..., Any], tuple[mx.array, ...]]] = [
        ("mlp", seeded(MLP()), (normal(4, 16),)),
        ("cnn-train", cnn_train, (normal(2, 8, 8, 3), normal(2, 6, 3, seed=1))),
        ("cnn-eval", cnn_eval, (normal(2, 8, 8, 3), normal(2, 6, 3, seed=1))),
        ("llama", llama, (mx.array([[1, 5, 9, 2, 7]]),)),
        ("llama-bf16", bf16, (mx.array([[3, 1, 4]]),)),
        ("llama-4bit", quantized, (mx.array([[1, 2, 3, 4]]),)),
        ("random", sample, (normal(2, 10),)),
    ]
    jobs = []
    for name, fun, args in cases:
        path = export(tmp_path / f"{name}.mlxfn", fun, *args)
        mx.export_function(str(tmp_path / f"{name}.mlx"), fun, *args)
        want = called(fun, *args)
        assert_same(called(mx.import_function(str(tmp_path / f"{name}.mlx")), *args), want)
        jobs.append(Job(path, args, want=want, name=name))
        jobs.append(Job(path, args, want=want, name=f"{name} (copy)", options=("--copy",)))
        # After 64 calls a shaped trace is compiled with fusion: still equal,
        # also on four threads calling at once.
        options = ("--calls", "70", "--threads", "4")
        jobs.append(Job(path, args, want=want, name=f"{name} (fused, threads)", options=options))
    run_jobs(mlxfn_run, tmp_path / "jobs", jobs)
    for job in jobs:
        meta = job.check()
        assert meta["load_mode"].startswith("copy" if "--copy" in job.options else "map"), meta
    assert sum("fused" in job.name for job in jobs) == len(cases)


def test_keyword_inputs_several_traces_and_bytes(mlxfn_run: Path, tmp_path: Path) -> None:
    w = normal(16, 8, seed=3)
    mx.eval(w)

    def f(x: mx.array, *, bias: mx.array, scale: mx.array) -> tuple[mx.array, mx.array]:
        y = mx.maximum(x @ w + bias, 0) * scale
        return y, y.sum(axis=0).astype(mx.int32)

    x, bias, scale = normal(4, 16), normal(8, seed=1), mx.array(2.0)
    path = export(tmp_path / "kw.mlxfn", f, x, bias=bias, scale=scale)
    want = called(f, x, bias=bias, scale=scale)

    def two(a: mx.array, b: mx.array | None = None) -> mx.array:
        return a * 2 if b is None else a @ b

    several = tmp_path / "several.mlxfn"
    with mlxfn.exporter(several, two) as exporter:
        exporter(normal(3))
        exporter(normal(2, 3), normal(3, 4))
        exporter(normal(5).astype(mx.int32))
    ints = mx.arange(5, dtype=mx.int32)
    jobs = [
        Job(path, (x,), {"bias": bias, "scale": scale}, want=want, name="kwargs"),
        Job(path, (x,), {"bias": bias, "scale": scale}, want=want, name="bytes", options=("--bytes",)),
        Job(path, (), {"x": x, "bias": bias}, refused="No imported function found", name="kwargs only"),
        Job(several, (normal(3),), want=called(two, normal(3)), name="trace 1"),
        Job(several, (normal(2, 3), normal(3, 4)), want=called(two, normal(2, 3), normal(3, 4)), name="trace 2"),
        Job(several, (ints,), want=called(two, ints), name="trace 3", options=("--bytes",)),
        Job(several, (normal(4),), refused="No imported function found", name="no trace"),
    ]
    run_jobs(mlxfn_run, tmp_path / "jobs", jobs)
    for job in jobs:
        meta = job.check()
        if job.want is not None:
            assert meta["load_mode"] == "map", (job.name, meta)


def test_mapped_constants_stay_out_of_anonymous_memory(tmp_path: Path) -> None:
    """64 MB of weights: MLX's own import copies them into the process's
    anonymous memory; the C++ runtime computes on the file's pages."""
    program = build_program(ROOT / "native" / "tools" / "mlxfn_time.cpp", "mlxfn_time")
    w = normal(4096, 4096, seed=5)
    mx.eval(w)

    def f(x: mx.array) -> mx.array:
        return x @ w

    x = normal(2, 4096)
    ours = export(tmp_path / "w.mlxfn", f, x)
    mx.export_function(str(tmp_path / "w.mlx"), f, x)
    mx.save_safetensors(str(tmp_path / "in.safetensors"), {"arg0": x})
    weights_kb = w.nbytes // 1024

    def anonymous_kb(*cmd: str) -> int:
        proc = subprocess.run([str(program), *cmd, "--steady", "0"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        fields = dict(kv.split("=") for kv in proc.stdout.split())
        return int(fields["rss_anon"])

    assert anonymous_kb(str(ours), str(tmp_path / "in.safetensors")) < weights_kb // 4
    assert anonymous_kb(str(tmp_path / "w.mlx"), str(tmp_path / "in.safetensors"), "--mlx") > weights_kb


def test_a_call_that_matches_no_trace_gets_mlx_message(mlxfn_run: Path, tmp_path: Path) -> None:
    def f(x: mx.array, *, bias: mx.array) -> mx.array:
        return x * 2 + bias

    x, bias = normal(4, 3), normal(3)
    ours = export(tmp_path / "f.mlxfn", f, x, bias=bias)
    mx.export_function(str(tmp_path / "f.mlx"), f, x, bias=bias)
    bad = (normal(5, 3),)
    with pytest.raises(ValueError) as mlx_error:
        mx.import_function(str(tmp_path / "f.mlx"))(*bad, bias=bias)
    job = Job(ours, bad, {"bias": bias}, refused=str(mlx_error.value), name="no match")
    run_jobs(mlxfn_run, tmp_path / "jobs", [job])
    job.check()
    _, error, _ = job.result()
    assert error.startswith("2\n"), error  # std::invalid_argument, as MLX's


def test_bad_files_are_refused_at_import_with_the_reason(mlxfn_run: Path, tmp_path: Path) -> None:
    from mlxfn import _mlxfn

    unknown = tmp_path / "unknown.mlxfn"
    record = {
        "keyword_names": [],
        "inputs": [((2,), mx.float32)],
        "constants": [],
        "nodes": [("Abs", [], [0], [((2,), mx.float32)], []), ("NoSuchPrimitive", [1], [1], [((2,), mx.float32)], [])],
        "outputs": [2],
        "dims": [],
        "constant_exprs": [],
    }
    _mlxfn.write_file(
        str(unknown), {"mlx_version": "0.32.4", "metadata": "", "shapeless": False, "traces": [record]}, []
    )
    good = export(tmp_path / "good.mlxfn", lambda x: x * 2, normal(2))
    damaged = tmp_path / "damaged.mlxfn"
    damaged.write_bytes(good.read_bytes()[:100])
    jobs = [
        Job(unknown, (normal(2),), refused="node 1 has primitive 'NoSuchPrimitive'", name="unknown"),
        Job(damaged, (normal(2),), refused=str(damaged), name="damaged"),
        Job(tmp_path / "missing.mlxfn", (normal(2),), refused="missing.mlxfn", name="missing"),
    ]
    run_jobs(mlxfn_run, tmp_path / "jobs", jobs)
    for job in jobs:
        job.check()
        assert job.result()[1].startswith("3\n"), job.result()[1]  # mlxfn::Error, not a refused call


# ----------------------------------------------------------------------------
# Shapeless traces at several sizes.


def test_shapeless_traces_at_several_sizes(mlxfn_run: Path, tmp_path: Path) -> None:
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    mx.eval(conv.parameters())
    llama = seeded(Llama(LlamaConfig()))

    def half(x: mx.array) -> mx.array:
        return x[: x.shape[0] // 2] * 2

    def padded(x: mx.array) -> mx.array:
        n = x.shape[0]
        return mx.concatenate([x, mx.zeros((((n + 255) // 256) * 256 - n, x.shape[1]))]) + 1

    def window(x: mx.array) -> mx.array:
        return x[-min(x.shape[0], 4) :] + 1

    def mean_rows(x: mx.array, y: mx.array) -> mx.array:
        return (x @ y).mean(axis=0) + x.shape[0]

    def tokens(n: int) -> mx.array:
        return mx.array([[(7 * i + 3) % 32 for i in range(n)]], dtype=mx.int32)

    cases: list[tuple[str, Callable[..., Any], tuple[mx.array, ...], list[tuple[mx.array, ...]]]] = [
        ("conv", conv, (mx.ones((1, 8, 8, 3)),), [(normal(*s),) for s in ((1, 9, 6, 3), (2, 1, 40, 3))]),
        ("half", half, (mx.ones((8, 3)),), [(normal(n, 3),) for n in (1, 3, 9, 1001)]),
        ("padded", padded, (mx.ones((8, 3)),), [(normal(n, 3),) for n in (1, 255, 256, 257, 600)]),
        ("window", window, (mx.ones((8, 3)),), [(normal(n, 3),) for n in (1, 4, 5, 100)]),
        ("mean", mean_rows, (normal(6, 4), normal(4, 5)), [(normal(n, 4), normal(4, m)) for n, m in ((1, 2), (9, 7))]),
        ("llama", llama, (tokens(5),), [(tokens(n),) for n in (2, 5, 11, 40)]),
    ]
    jobs = []
    for name, fun, example, calls in cases:
        path = export(tmp_path / f"{name}.mlxfn", fun, *example, shapeless=True)
        for k, args in enumerate([example, *calls]):
            jobs.append(expect(path, fun, args, f"{name} call {k}"))
        # Several threads at once, each at sizes of its own plan.
        threaded = expect(path, fun, calls[-1], f"{name} threads")
        jobs.append(
            Job(
                threaded.file,
                threaded.args,
                want=threaded.want,
                refused=threaded.refused,
                options=("--calls", "3", "--threads", "3"),
                name=threaded.name,
            )
        )
    # A length the kernel does not fit: outside the trace's range, refused
    # with MLX's message (the function itself refuses it too).
    conv1d = nn.Conv1d(3, 4, 3, stride=2)
    mx.eval(conv1d.parameters())
    short = export(tmp_path / "conv1d.mlxfn", conv1d, mx.ones((1, 9, 3)), shapeless=True)
    refused = Job(short, (normal(1, 2, 3),), refused="[import_function::call] No imported function", name="short")
    run_jobs(mlxfn_run, tmp_path / "jobs", [*jobs, refused])
    for job in [*jobs, refused]:
        job.check()
    assert sum(job.want is not None for job in jobs) >= 20, "most calls are served"


# ----------------------------------------------------------------------------
# The primitives of tests/test_primitives.py, shaped and shapeless.


def test_the_runtime_rebuilds_every_primitive_python_does(mlxfn_run: Path) -> None:
    from mlxfn.replay import supported_primitives

    proc = subprocess.run([str(mlxfn_run), "--primitives"], capture_output=True, text=True, timeout=60, check=True)
    assert set(supported_primitives()) - set(proc.stdout.split()) == set()


def _primitive_jobs(folder: Path) -> list[Job]:
    from test_primitives import CASES

    jobs = []
    for i, case in enumerate(CASES):
        name = f"{i}-{case.primitive}"
        example = plain(case.args)
        path = export(folder / f"{name}.mlxfn", case.fun, *example)
        jobs.append(Job(path, example, want=called(case.fun, *example), name=name))
        if case.shapeless is None:
            continue
        shapeless = export(folder / f"{name}-s.mlxfn", case.fun, *example, shapeless=True)
        for k, args in enumerate([example, plain(case.shapeless)] if case.shapeless else [example]):
            jobs.append(expect(shapeless, case.fun, args, f"{name} shapeless {k}"))
    return jobs


@pytest.fixture(scope="module")
def primitive_jobs(mlxfn_run: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Job]:
    folder = tmp_path_factory.mktemp("primitives")
    jobs = _primitive_jobs(folder)
    run_jobs(mlxfn_run, folder / "jobs", jobs)
    return jobs


def assert_every_job_passes(jobs: list[Job]) -> None:
    """Every job's check, each failure named (not only the first)."""
    failures = []
    for job in jobs:
        try:
            job.check()
        except AssertionError as err:
            failures.append(f"{job.name}: {err}")
    assert not failures, "\n".join(failures)


def test_primitives_equal_the_original(primitive_jobs: list[Job]) -> None:
    assert_every_job_passes(primitive_jobs)
    assert len(primitive_jobs) > 100


# ----------------------------------------------------------------------------
# Records no CPU trace produces (tests/test_primitives_synthetic.py's): the
# GPU-only fused primitives, name aliases, states no public op emits on CPU.


def _one_node_file(
    path: Path,
    op: str,
    args: Sequence[Any],
    xs: Sequence[mx.array],
    outputs: int,
    specs: Sequence[tuple[Sequence[int], mx.Dtype]] | None = None,
) -> Path:
    """A file whose one trace applies ``op`` with state ``args`` to its inputs;
    output shapes ``specs``, or as Python's handler makes them."""
    from mlxfn import _mlxfn
    from mlxfn.ir import Node
    from mlxfn.replay import handler_for

    if specs is None:
        handler = handler_for(op)
        assert handler is not None
        outs = as_tuple(handler(Node(op, tuple(args), tuple(range(len(xs))), ()), list(xs)))
        specs = [(o.shape, o.dtype) for o in outs]
    n = len(xs)
    record = {
        "keyword_names": [],
        "inputs": [(x.shape, x.dtype) for x in xs],
        "constants": [],
        "nodes": [(op, list(args), list(range(n)), [(tuple(s), d) for s, d in specs], [])],
        "outputs": list(range(n, n + len(specs)))[:outputs],
        "dims": [],
        "constant_exprs": [],
    }
    graph = {"mlx_version": mx.__version__, "metadata": "", "shapeless": False, "traces": [record]}
    _mlxfn.write_file(str(path), graph, [])
    return path


def _synthetic_cases() -> list[tuple[str, str, tuple[Any, ...], list[mx.array]]]:
    x, w, b, g = normal(2, 3, 8), normal(8, seed=1), normal(8, seed=2), normal(2, 3, 8, seed=3)
    q, k, v = normal(1, 4, 5, 8), normal(1, 2, 7, 8, seed=1), normal(1, 2, 7, 8, seed=2)
    bool_mask = mx.logical_or(normal(1, 4, 5, 7, seed=3) > 0, mx.arange(7) == 0)
    sinks = normal(4, seed=4)
    r, offset, freqs = normal(1, 2, 5, 8), mx.array(3), mx.array([1.0, 10.0, 100.0])
    qw, qs, qb = mx.quantize(normal(4, 64), group_size=32, bits=4)
    ints = [mx.array([7, -7, 7, -7, 6, 0], dtype=mx.int32), mx.array([2, 2, -2, -2, -3, 5], dtype=mx.int32)]
    cube = mx.arange(5 * 6 * 2).reshape(5, 6, 2)
    cases: list[tuple[str, str, tuple[Any, ...], list[mx.array]]] = [
        ("rms", "RMSNorm", (1e-5,), [x, w]),
        ("rms no weight", "RMSNorm", (1e-5,), [x, mx.array(1.0)]),
        ("rms vjp", "RMSNormVJP", (1e-5,), [x, w, g]),
        ("rms vjp no weight", "RMSNormVJP", (1e-5,), [x, mx.array(1.0), g]),
        ("layer", "LayerNorm", (1e-5,), [x, w, b]),
        ("layer bare", "LayerNorm", (1e-6,), [x, mx.array(1.0), mx.array(0.0)]),
        ("layer vjp", "LayerNormVJP", (1e-5,), [x, w, b, g]),
        ("layer vjp no bias", "LayerNormVJP", (1e-5,), [x, w, mx.array(0.0), g]),
        ("dequantize", "Quantize", (32, 4, 0, True), [qw, qs, qb]),
        ("quantize", "Quantize", (32, 4, 0, False), [normal(4, 64)]),
        ("copy", "Copy", (), [x]),
        ("stop", "StopGradient", (), [x]),
        ("int divide", "Divide", (), ints),
        ("uint divide", "Divide", (), [mx.array([7, 9], mx.uint8), mx.array([2, 4], mx.uint8)]),
        ("gather wide", "Gather", ([0, 1], (2, 2, 1)), [cube, mx.array([0, 3, -2]), mx.array([1, 4, 0])]),
        ("gather wide one", "Gather", ([1], (5, 3, 2)), [cube, mx.array([1, 3, 0])]),
        (
            "scatter wide",
            "Scatter",
            (2, [0]),
            [mx.zeros((5, 6)), mx.array([0, 2, 2]), mx.arange(36, dtype=mx.float32).reshape(3, 2, 6)],
        ),
    ]
    for traditional in (False, True):
        cases += [
            (f"rope {traditional}", "RoPE", (6, traditional, 10000.0, 0.5, True), [r, offset]),
            (f"rope back {traditional}", "RoPE", (6, traditional, 10000.0, 0.5, False), [r, offset]),
            (f"rope freqs {traditional}", "RoPE", (6, traditional, 1.0, 1.0, True), [r, offset, freqs]),
        ]
    for kind, extra in [
        ("none", []),
        ("causal", []),
        ("bool", [bool_mask]),
        ("additive", [normal(1, 4, 5, 7, seed=3)]),
        ("sinks", [sinks]),
    ]:
        for lse in (False, True):
            args = (0.3, kind == "causal", kind == "sinks", lse, False)
            cases.append((f"sdpa {kind} {lse}", "ScaledDotProductAttention", args, [q, k, v, *extra]))
    from test_primitives_synthetic import ALIASES

    cases += [(f"alias {alias}", alias, tuple(args), list(xs)) for alias, _, args, xs, _ in ALIASES]
    return cases


def test_synthetic_records_equal_python(mlxfn_run: Path, tmp_path: Path) -> None:
    from mlxfn.ir import Node
    from mlxfn.replay import handler_for

    jobs = []
    for i, (name, op, args, xs) in enumerate(_synthetic_cases()):
        handler = handler_for(op)
        assert handler is not None
        want = as_tuple(handler(Node(op, args, tuple(range(len(xs))), ()), list(xs)))
        mx.eval(want)
        path = _one_node_file(tmp_path / f"{i}.mlxfn", op, args, xs, len(want))
        jobs.append(Job(path, tuple(plain(xs)), want=want, name=name))
    # A user kernel without its GPU backend: refused naming the kernel, as in Python.
    from test_primitives_synthetic import METAL_SOURCE, _kernel_args

    if not (mx.metal.is_available() or mx.cuda.is_available()):
        for precompiled in (False, True):
            args = _kernel_args("custom_kernel_myexp", METAL_SOURCE, precompiled)
            path = _one_node_file(
                tmp_path / f"kernel{precompiled}.mlxfn", "CustomKernel", args, [mx.ones(8)], 1, [((8,), mx.float32)]
            )
            jobs.append(
                Job(
                    path,
                    (mx.ones(8),),
                    refused="CustomKernel 'custom_kernel_myexp' needs a Metal or CUDA GPU",
                    name="kernel",
                )
            )
    run_jobs(mlxfn_run, tmp_path / "jobs", jobs)
    assert_every_job_passes(jobs)


# ----------------------------------------------------------------------------
# An LLM generating from one file (examples/cpp/llm_generate.cpp).


@pytest.mark.parametrize(("arch", "quantize"), [("llama", False), ("qwen2", False), ("llama", True)])
def test_llm_generate_equals_python(tmp_path: Path, arch: str, quantize: bool) -> None:
    import llm_one_file as llm  # examples/ (pyproject's pythonpath); needs mlx-lm, as test_llm.py

    program = build_program(ROOT / "examples" / "cpp" / "llm_generate.cpp", "llm_generate")
    model = llm.tiny_model(arch, quantize)
    path = tmp_path / "llm.mlxfn"
    export_concatenate(model, path)
    fn = mlxfn.import_function(path)
    for length in (3, 17):
        prompt = [(7 * i + 3) % 128 for i in range(length)]
        expected = llm.generate(fn, prompt, 24)
        assert expected == llm.generate_directly(model, prompt, 24)
        proc = subprocess.run(
            [str(program), str(path), "24", *map(str, prompt)], capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr
        assert [int(t) for t in proc.stdout.split()] == expected, f"prompt of {length}"


# ----------------------------------------------------------------------------
# A decode step's static islands (native/src/islands.h): compiled with MLX's
# fusion after 8 calls at one batch size, then called at every cache length.


def test_decode_islands_compiled_equal_the_original(mlxfn_run: Path, tmp_path: Path) -> None:
    """20 calls of a decode step (the last ones through the compiled islands,
    on two threads at once) give the original step's outputs bit for bit."""
    import llm_one_file as llm

    jobs = []
    for arch, quantize in [("llama", False), ("qwen2", False), ("llama", True)]:
        model = llm.tiny_model(arch, quantize, layers=4)
        path = tmp_path / f"{arch}-{quantize}.mlxfn"
        export_concatenate(model, path)
        step = llm.step_function(model, "concatenate")
        for length in (7, 30):
            logits, *cache = step(mx.array([[(5 * i + 2) % 97 for i in range(length)]], dtype=mx.int32))
            token = mx.argmax(logits, axis=-1).astype(mx.int32).reshape(1, 1)
            args = plain((token, *cache))
            options = ("--calls", "20", "--threads", "2")
            jobs.append(Job(path, args, want=called(step, *args), options=options, name=f"{arch} {quantize} {length}"))
    run_jobs(mlxfn_run, tmp_path / "jobs", jobs)
    for job in jobs:
        job.check()


def test_llm_decode_past_the_island_threshold_equals_python(tmp_path: Path) -> None:
    """48 tokens (most decode steps through compiled islands) equal Python's
    import's and mlx-lm's, as the runtime with islands off (MLXFN_ISLANDS=0) does."""
    import llm_one_file as llm

    program = build_program(ROOT / "examples" / "cpp" / "llm_generate.cpp", "llm_generate")
    model = llm.tiny_model("llama", layers=4)
    path = tmp_path / "llm.mlxfn"
    export_concatenate(model, path)
    prompt = [(7 * i + 3) % 128 for i in range(11)]
    expected = llm.generate(mlxfn.import_function(path), prompt, 48)
    assert expected == llm.generate_directly(model, prompt, 48)
    for islands in ("1", "0"):
        proc = subprocess.run(
            [str(program), str(path), "48", *map(str, prompt)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "MLXFN_ISLANDS": islands},
        )
        assert proc.returncode == 0, proc.stderr
        assert [int(t) for t in proc.stdout.split()] == expected, f"MLXFN_ISLANDS={islands}"


SIZES_PROGRAM = """
// Calls a shapeless file f(x (n, 8), y) at n = 1..COUNT, twice over; saves every output.
#include <cstdlib>
#include <string>
#include <unordered_map>
#include "mlx/mlx.h"
#include "mlxfn/mlxfn.h"
namespace mx = mlx::core;
int main(int, char** argv) {
  mlxfn::ImportedFunction fn = mlxfn::import_function(argv[1]);
  auto inputs = mx::load_safetensors(argv[2]).first;
  int count = std::atoi(argv[4]);
  std::unordered_map<std::string, mx::array> out;
  for (int rep = 0; rep < 2; ++rep) {
    for (int n = 1; n <= count; ++n) {
      std::vector<mx::array> r = fn(mx::Args{inputs.at("x" + std::to_string(n)), inputs.at("y")});
      for (size_t k = 0; k < r.size(); ++k) {
        out.insert_or_assign(std::to_string(rep) + "_" + std::to_string(n) + "_" + std::to_string(k), r[k]);
      }
    }
  }
  mx::save_safetensors(argv[3], out);
}
"""


def test_a_part_that_follows_no_size_is_compiled_once_for_every_size(tmp_path: Path) -> None:
    """The part of a shapeless function that only reads a fixed-shape input is
    an island of no size: compiled at its 8th call, it serves every other
    size (80 calls at 40 sizes), and every output equals the original's."""
    w, b = normal(8, 8, seed=1), normal(8, seed=2)

    def f(x: mx.array, y: mx.array) -> tuple[mx.array, ...]:
        h = mx.sigmoid(y @ w + b) * y + 1.0
        h = mx.exp(-h) * h - 0.5
        z = x * 2.0 + h.sum(axis=0)
        return z, h, mx.tanh(z[:, :4]) * 3.0

    y = normal(4, 8, seed=3)
    path = export(tmp_path / "f.mlxfn", f, normal(5, 8), y, shapeless=True)
    xs = {f"x{n}": normal(n, 8, seed=10 + n) for n in range(1, 41)}
    mx.save_safetensors(str(tmp_path / "in.safetensors"), {**xs, "y": y})
    source = tmp_path / "sizes.cpp"
    source.write_text(SIZES_PROGRAM)
    program = build_program(source, "sizes")
    proc = subprocess.run(
        [str(program), str(path), str(tmp_path / "in.safetensors"), str(tmp_path / "out.safetensors"), "40"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    got = mx.load(str(tmp_path / "out.safetensors"))
    assert isinstance(got, dict)
    for n in range(1, 41):
        want = called(f, xs[f"x{n}"], y)
        for rep in range(2):
            assert_same(tuple(got[f"{rep}_{n}_{k}"] for k in range(len(want))), want)
