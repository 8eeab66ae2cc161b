"""The two readers of a shapeless export's probes (``mlxfn.shapeless.probe``)
read every trace alike: MLX's records read in Python, and the bridge's C++
reader (``bridge/probe.cpp``), which the export uses wherever the bridge
loads.  Alike means the same parts: the same nodes (primitive, input value
ids, each output's dtype and number of axes, the skeleton of the state),
the same numbers at the same positions (ints and floats), the same
constants and outputs.  Then a file exported with either is byte for byte
the same.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import pytest

import mlxfn
from mlxfn import _native, distributed
from mlxfn.shapeless import probe
from test_primitives import CASES, Case

import llm_one_file  # examples/ (pyproject's pythonpath)

# The wheel of every Linux build has the bridge (build.rs fails without it).
needs_bridge = pytest.mark.skipif(
    _native.read_probe() is None, reason=f"no C++ bridge here ({_native.bridge()[1]}): probes are read in Python"
)


def _both(fun: Callable[..., Any], args: tuple[Any, ...]) -> tuple[probe.Parts, probe.Parts]:
    arrays = [a for a in args if isinstance(a, mx.array)]
    python, _ = probe.Reader(fun, native=False).read(arrays, {}, keep_records=False)
    native, _ = probe.Reader(fun, native=True).read(arrays, {}, keep_records=False)
    return python, native


def _assert_alike(python: probe.Parts, native: probe.Parts) -> None:
    """The same parts, object for object (the constants by value), but for
    the constants' array ids, which only the bridge knows."""
    *p_parts, p_arrays = python
    *n_parts, n_arrays = native
    p_nodes, p_layout, p_values, p_floats, p_consts, p_outputs, p_ids, p_computed = p_parts
    n_nodes, n_layout, n_values, n_floats, n_consts, n_outputs, n_ids, n_computed = n_parts
    assert p_arrays is None and n_arrays is not None and len(n_arrays) == len(n_consts)
    assert n_nodes == p_nodes
    assert n_layout == p_layout
    assert n_values == p_values
    assert [type(v) for v in n_values] == [type(v) for v in p_values]  # 2 is not 2.0: ints are sizes
    assert n_floats == p_floats
    assert (n_outputs, n_ids, n_computed) == (p_outputs, p_ids, p_computed)
    assert len(n_consts) == len(p_consts)
    for a, b in zip(n_consts, p_consts):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert mx.array_equal(a, b, equal_nan=True).item()


@needs_bridge
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.primitive}")
def test_every_primitive_case_is_read_alike(case: Case) -> None:
    _assert_alike(*_both(case.fun, case.args))


@needs_bridge
def test_state_of_every_kind_is_read_alike() -> None:
    """States with inf, nan, None, strings, bools and dtypes beside numbers."""
    x = mx.random.normal((2, 3, 8, 4), key=mx.random.key(0))

    def fun(a: mx.array) -> tuple[mx.array, ...]:
        return (
            mx.clip(a, -float("inf"), 0.5),
            mx.maximum(a, float("nan")),
            mx.fast.scaled_dot_product_attention(a, a, a, scale=0.5, mask="causal"),
            mx.fast.rms_norm(a, None, 1e-5),
            mx.fast.rope(a, 4, traditional=False, base=10000.0, scale=1.0, offset=3),
            mx.einsum("bhqd,bhkd->bhqk", a, a),
            a.astype(mx.bfloat16).sum(axis=(1, 2), keepdims=True),
            mx.argpartition(a, 2, axis=-1),
        )

    _assert_alike(*_both(fun, (x,)))


@needs_bridge
def test_a_whole_model_is_read_alike_at_two_sizes() -> None:
    model = nn.Sequential(nn.Conv1d(4, 8, 3, stride=2), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 2))
    mx.eval(model.parameters())
    for length in (9, 16):
        _assert_alike(*_both(model, (mx.zeros((2, length, 4)),)))


def _export(fun: Callable[..., Any], args: tuple[mx.array, ...], path: Path, native: bool) -> bytes:
    original = _native.read_probe
    if not native:
        _native.read_probe = lambda: None  # type: ignore[assignment]
    try:
        mlxfn.export_function(path, fun, *args, shapeless=True)
    finally:
        _native.read_probe = original  # type: ignore[assignment]
    return path.read_bytes()


@needs_bridge
def test_a_one_file_llm_exports_the_same_bytes_with_either_reader(tmp_path: Path) -> None:
    model = llm_one_file.tiny_model("llama", layers=2)
    step = llm_one_file.step_function(model, "kv")
    cache = step(mx.zeros((1, 5), mx.int32))[1:]
    for name, args in (("prefill", (mx.zeros((1, 8), mx.int32),)), ("decode", (mx.zeros((1, 1), mx.int32), *cache))):
        python = _export(step, args, tmp_path / f"{name}-python.mlxfn", native=False)
        native = _export(step, args, tmp_path / f"{name}-native.mlxfn", native=True)
        assert native == python, name


@needs_bridge
def test_a_function_that_calls_collectives_is_probed_in_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins of collectives become collective nodes on MLX's records
    only (tests/test_distributed.py exports real ones on two ranks): a
    function whose trace holds any is probed in Python.  Here ``Multiply``
    plays a collective (a group of one makes no stand-ins)."""
    seen: list[bool] = []
    original = probe.Reader.__init__

    def spy(self: probe.Reader, fun: Callable[..., Any], native: bool = True) -> None:
        original(self, fun, native)
        seen.append(self.native)

    monkeypatch.setattr(probe.Reader, "__init__", spy)
    monkeypatch.setattr(distributed, "COLLECTIVES", distributed.COLLECTIVES | {"Multiply"})
    mlxfn.export_function(tmp_path / "f.mlxfn", lambda x: x * 2, mx.ones((4,)), shapeless=True)
    monkeypatch.undo()
    assert seen == [False]
    fn = mlxfn.import_function(tmp_path / "f.mlxfn")
    assert mx.array_equal(fn(mx.ones((7,)))[0], mx.ones((7,)) * 2).item()


def test_an_export_leaves_no_reference_cycles(tmp_path: Path) -> None:
    """Everything an export made is freed when it ends, not left to the
    cyclic collector (mlxfn/_paused.py pauses it during exports: 325,000 objects
    of a 32-layer Llama's probes were once left for it)."""
    model = llm_one_file.tiny_model("llama", layers=2)
    llm_one_file.export(model, tmp_path / "warm.mlxfn")
    gc.collect()
    gc.disable()
    try:
        llm_one_file.export(model, tmp_path / "llm.mlxfn")
        left = gc.collect()
    finally:
        gc.enable()
    assert left == 0
