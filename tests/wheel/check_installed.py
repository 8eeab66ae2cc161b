"""Checks an installed mlxfn wheel the way a user meets it (``make test-wheel``).

Run by the Python of a fresh virtual environment into which the wheel built
by ``pip wheel .`` was installed, from a directory outside the checkout.  The
program uses MLX before it imports anything, keeps two models, calls from
threads, and requires: mlxfn is the installed one (not the checkout's), its
imports map through the C++ bridge, and every output equals the original
function's and MLX's own import's.

Then C++, as a user builds it: CMake projects configured with
``-Dmlxfn_DIR=$(python -m mlxfn --cmake-dir)`` (``tests/wheel/consumer`` and
``examples/cpp``) import mlxfn files with the wheel's C++ runtime, and their
outputs must equal Python's: positional and keyword inputs, several traces,
shapeless traces at several sizes, from a path and from bytes, and an LLM
generating greedily from one file (exported beforehand by
``prepare_llm.py``, since this environment has no mlx-lm).

    python check_installed.py CHECKOUT LLM_DIR

Exit status 0 only if all of that holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
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
llm_dir = Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else None
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

    # A shapeless export reads its probes with the bridge's C++ reader, and
    # writes the bytes that reading them in Python writes.
    from mlxfn import _native

    def attend(t: mx.array) -> mx.array:
        return mx.softmax(t @ t.T / t.shape[0], axis=-1) @ nets[0](t)

    check(_native.read_probe() is not None, "a shapeless export reads its probes in C++ (bridge/probe.cpp)")
    mlxfn.export_function(Path(tmp) / "native.mlxfn", attend, x, shapeless=True)
    reader = _native.read_probe
    _native.read_probe = lambda: None  # type: ignore[assignment]
    mlxfn.export_function(Path(tmp) / "python.mlxfn", attend, x, shapeless=True)
    _native.read_probe = reader  # type: ignore[assignment]
    same = (Path(tmp) / "native.mlxfn").read_bytes() == (Path(tmp) / "python.mlxfn").read_bytes()
    got = mlxfn.import_function(Path(tmp) / "native.mlxfn")(x[:3])[0]
    check(same and mx.allclose(got, attend(x[:3])).item(), "... the same file as read in Python; right at 3 rows")


def cmake_build(source: Path, build: Path) -> Path | None:
    """Configure and build `source` against the installed mlxfn; its build folder, None on failure."""
    cmake = shutil.which("cmake")
    if cmake is None:
        check(False, "cmake is on PATH")
        return None
    cmake_dir = subprocess.run([sys.executable, "-m", "mlxfn", "--cmake-dir"], capture_output=True, text=True)
    mlxfn_dir = cmake_dir.stdout.strip()
    for cmd in (
        [cmake, "-S", str(source), "-B", str(build), f"-Dmlxfn_DIR={mlxfn_dir}"],
        [cmake, "--build", str(build)],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MAKEFLAGS": "-j2"})
        if proc.returncode != 0:
            check(False, f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}")
            return None
    shown = source.relative_to(checkout) if checkout is not None else source
    check(True, f"{shown} builds with CMake against the wheel (mlxfn_DIR={mlxfn_dir})")
    return build


def consumer_equals(
    program: Path, folder: Path, fn: Callable[..., object], path: Path, *args: mx.array, **kwargs: mx.array
) -> bool:
    """Whether the C++ consumer's outputs for `path` equal `fn`'s, from the path and from bytes."""
    inputs = folder / "in.safetensors"
    mx.save_safetensors(str(inputs), {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs})
    result = fn(*args, **kwargs)
    expected = list(result) if isinstance(result, (list, tuple)) else [result]
    for how in ([], ["--bytes"]):
        out = folder / "out.safetensors"
        proc = subprocess.run([str(program), str(path), str(inputs), str(out), *how], capture_output=True, text=True)
        if proc.returncode != 0 or proc.stdout.strip() != "map":
            print(proc.stdout + proc.stderr)
            return False
        got = mx.load(str(out))
        assert isinstance(got, dict)
        if len(got) != len(expected) or not all(
            mx.array_equal(got[f"out{i}"], e).item() for i, e in enumerate(expected)
        ):
            return False
    return True


if checkout is not None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        consumer = cmake_build(checkout / "tests" / "wheel" / "consumer", folder / "consumer")
        if consumer is not None:
            program = consumer / "consumer"
            w = mx.random.normal((16, 8), key=mx.random.key(3))

            def kw(a: mx.array, *, bias: mx.array) -> tuple[mx.array, mx.array]:
                y = mx.maximum(a @ w + bias, 0)
                return y, y.sum(axis=0).astype(mx.int32)

            a, bias = mx.random.normal((4, 16), key=mx.random.key(4)), mx.random.normal((8,), key=mx.random.key(5))
            mlxfn.export_function(folder / "kw.mlxfn", kw, a, bias=bias)
            ok = consumer_equals(program, folder, kw, folder / "kw.mlxfn", a, bias=bias)
            check(ok, "C++: positional and keyword inputs, from the path and from bytes, equal Python's")

            def two(p: mx.array, q: mx.array | None = None) -> mx.array:
                return p * 2 if q is None else p @ q

            with mlxfn.exporter(folder / "two.mlxfn", two) as exporter:
                exporter(mx.ones((3,)))
                exporter(mx.ones((2, 3)), mx.ones((3, 4)))
            p, q = mx.random.normal((2, 3), key=mx.random.key(6)), mx.random.normal((3, 4), key=mx.random.key(7))
            ok = all(consumer_equals(program, folder, two, folder / "two.mlxfn", *xs) for xs in ((p[0],), (p, q)))
            check(ok, "C++: each of several traces equals Python's")

            def rows(t: mx.array) -> mx.array:
                return mx.softmax(t @ t.T, axis=-1).sum(axis=0)

            mlxfn.export_function(folder / "rows.mlxfn", rows, mx.ones((4, 8)), shapeless=True)
            sizes = (1, 4, 9, 30)
            ok = all(
                consumer_equals(
                    program, folder, rows, folder / "rows.mlxfn", mx.random.normal((n, 8), key=mx.random.key(n))
                )
                for n in sizes
            )
            check(ok, f"C++: a shapeless trace at sizes {sizes} equals Python's")

        examples = cmake_build(checkout / "examples" / "cpp", folder / "examples")
        if examples is not None and llm_dir is not None:
            for case in json.loads((llm_dir / "expected.json").read_text()):
                cmd = [str(examples / "llm_generate"), str(llm_dir / "llm.mlxfn"), str(case["count"])]
                proc = subprocess.run([*cmd, *map(str, case["prompt"])], capture_output=True, text=True)
                tokens = [int(t) for t in proc.stdout.split()] if proc.returncode == 0 else proc.stderr
                check(
                    tokens == case["tokens"],
                    f"C++: examples/cpp/llm_generate's {case['count']} tokens after a prompt of "
                    f"{len(case['prompt'])} equal Python's ({tokens})",
                )

print(f"wheel check: {outcomes.count(True)} passed, {outcomes.count(False)} failed")
sys.exit(0 if all(outcomes) else 1)
