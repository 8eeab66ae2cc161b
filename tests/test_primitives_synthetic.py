"""Handlers for records no CPU trace produces, tested on synthetic nodes.

GPU-only fused primitives (RMSNorm, LayerNorm, their VJPs, RoPE,
ScaledDotProductAttention, Quantize's dequantize form, CustomKernel), the name
aliases in MLX's export table, primitives that compile simplifies away (Copy,
StopGradient), and states no public op emits on CPU (integer Divide, a Gather
or Scatter slice wider than 1 on an indexed axis).  Records are built as MLX's
export callback would report them (the leading ``nullptr`` of the fast
primitives' state is not reported).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import pytest

from mlxfn.replay.custom_kernel import parse_cuda_source, parse_metal_source
from mlxfn.replay.registry import handler_for
from mlxfn.trace import Node

from conftest import as_tuple, assert_same


def run(
    op: str,
    args: Sequence[Any],
    xs: Sequence[mx.array],
    outputs: Sequence[tuple[Sequence[int], mx.Dtype]] = (),
    shapeless: bool = False,
) -> tuple[mx.array, ...]:
    node = Node(op, tuple(args), tuple(range(len(xs))), tuple((tuple(s), d) for s, d in outputs), shapeless)
    handler = handler_for(op)
    assert handler is not None, f"no handler for {op}"
    return as_tuple(handler(node, list(xs)))


def normal(*shape: int, seed: int = 0) -> mx.array:
    return mx.random.normal(shape, key=mx.random.key(seed))


X = normal(2, 3, 8)
W8, B8 = normal(8, seed=1), normal(8, seed=2)
G = normal(2, 3, 8, seed=3)


# --- aliases: MLX's table accepts these names for the same state -------------
ALIASES = [
    ("Log2", "Log", (0,), [mx.abs(X)], mx.log2),
    ("Log10", "Log", (1,), [mx.abs(X)], mx.log10),
    ("Rsqrt", "Sqrt", (True,), [mx.abs(X)], mx.rsqrt),
    (
        "NaNEqual",
        "Equal",
        (True,),
        [mx.array([1.0, mx.nan]), mx.array([1.0, mx.nan])],
        lambda a, b: mx.array([True, True]),
    ),
    ("BitwiseAnd", "BitwiseBinary", (0,), [mx.array([6, 3]), mx.array([3, 5])], mx.bitwise_and),
    ("BitwiseOr", "BitwiseBinary", (1,), [mx.array([6, 3]), mx.array([3, 5])], mx.bitwise_or),
    ("BitwiseXor", "BitwiseBinary", (2,), [mx.array([6, 3]), mx.array([3, 5])], mx.bitwise_xor),
    ("LeftShift", "BitwiseBinary", (3,), [mx.array([6, 3]), mx.array([3, 5])], mx.left_shift),
    ("RightShift", "BitwiseBinary", (4,), [mx.array([64, 33]), mx.array([3, 5])], mx.right_shift),
    ("And", "Reduce", (0, [1]), [X > 0], lambda a: mx.all(a, axis=1, keepdims=True)),
    ("Or", "Reduce", (1, [1]), [X > 0], lambda a: mx.any(a, axis=1, keepdims=True)),
    ("Sum", "Reduce", (2, [0, 2]), [X], lambda a: mx.sum(a, axis=(0, 2), keepdims=True)),
    ("Prod", "Reduce", (3, [2]), [X], lambda a: mx.prod(a, axis=2, keepdims=True)),
    ("Min", "Reduce", (4, [1]), [X], lambda a: mx.min(a, axis=1, keepdims=True)),
    ("Max", "Reduce", (5, [1]), [X], lambda a: mx.max(a, axis=1, keepdims=True)),
    ("CumMax", "Scan", (0, 2, False, True), [X], lambda a: mx.cummax(a, axis=2)),
    ("CumMin", "Scan", (1, 2, True, True), [X], lambda a: mx.cummin(a, axis=2, reverse=True)),
    ("CumSum", "Scan", (2, 1, False, False), [X], lambda a: mx.cumsum(a, axis=1, inclusive=False)),
    ("CumProd", "Scan", (3, 2, False, True), [X], lambda a: mx.cumprod(a, axis=2)),
    ("CumLogaddexp", "Scan", (4, 2, False, True), [X], lambda a: mx.logcumsumexp(a, axis=2)),
]


@pytest.mark.parametrize("alias,primary,args,xs,expected", ALIASES, ids=[a[0] for a in ALIASES])
def test_alias(alias: str, primary: str, args: tuple[Any, ...], xs: list[mx.array], expected: Any) -> None:
    got = run(alias, args, xs)
    assert_same(got, run(primary, args, xs))
    assert_same(got, as_tuple(expected(*xs)))


# --- GPU-only fused primitives ----------------------------------------------
def test_rms_norm() -> None:
    assert_same(run("RMSNorm", (1e-5,), [X, W8]), (mx.fast.rms_norm(X, W8, 1e-5),))
    # Without a weight MLX passes a 0-d placeholder 1.
    assert_same(run("RMSNorm", (1e-5,), [X, mx.array(1.0)]), (mx.fast.rms_norm(X, None, 1e-5),))


def test_rms_norm_vjp() -> None:
    want = mx.vjp(lambda x, w: mx.fast.rms_norm(x, w, 1e-5), [X, W8], [G])[1]
    assert_same(run("RMSNormVJP", (1e-5,), [X, W8, G]), want)
    dx = mx.vjp(lambda x: mx.fast.rms_norm(x, None, 1e-5), [X], [G])[1][0]
    assert_same(run("RMSNormVJP", (1e-5,), [X, mx.array(1.0), G]), (dx, mx.array(0.0)))


def test_layer_norm() -> None:
    assert_same(run("LayerNorm", (1e-5,), [X, W8, B8]), (mx.fast.layer_norm(X, W8, B8, 1e-5),))
    got = run("LayerNorm", (1e-6,), [X, mx.array(1.0), mx.array(0.0)])
    assert_same(got, (mx.fast.layer_norm(X, None, None, 1e-6),))


def test_layer_norm_vjp() -> None:
    want = mx.vjp(lambda x, w, b: mx.fast.layer_norm(x, w, b, 1e-5), [X, W8, B8], [G])[1]
    assert_same(run("LayerNormVJP", (1e-5,), [X, W8, B8, G]), want)
    dx, dw = mx.vjp(lambda x, w: mx.fast.layer_norm(x, w, None, 1e-5), [X, W8], [G])[1]
    assert_same(run("LayerNormVJP", (1e-5,), [X, W8, mx.array(0.0), G]), (dx, dw, mx.array(0.0)))


@pytest.mark.parametrize("traditional", [False, True])
def test_rope(traditional: bool) -> None:
    x = normal(1, 2, 5, 8)
    offset = mx.array(3)
    want = mx.fast.rope(x, 6, traditional=traditional, base=10000.0, scale=0.5, offset=offset)
    got = run("RoPE", (6, traditional, 10000.0, 0.5, True), [x, offset])
    assert_same(got, (want,))
    # forward=False is RoPE's vjp: it undoes the rotation.
    back = run("RoPE", (6, traditional, 10000.0, 0.5, False), [want, offset])[0]
    assert mx.allclose(back, x, atol=1e-5).item()
    freqs = mx.array([1.0, 10.0, 100.0])
    want = mx.fast.rope(x, 6, traditional=traditional, base=None, scale=1.0, offset=offset, freqs=freqs)
    assert_same(run("RoPE", (6, traditional, 1.0, 1.0, True), [x, offset, freqs]), (want,))


def _sdpa_inputs() -> tuple[mx.array, mx.array, mx.array]:
    return normal(1, 4, 5, 8), normal(1, 2, 7, 8, seed=1), normal(1, 2, 7, 8, seed=2)


@pytest.mark.parametrize("kind", ["none", "causal", "bool", "additive", "sinks"])
def test_scaled_dot_product_attention(kind: str) -> None:
    q, k, v = _sdpa_inputs()
    mask = None
    extra: list[mx.array] = []
    if kind == "bool":
        mask = normal(1, 4, 5, 7, seed=3) > 0
        mask = mx.logical_or(mask, mx.arange(7) == 0)
        extra = [mask]
    elif kind == "additive":
        mask = normal(1, 4, 5, 7, seed=3)
        extra = [mask]
    sinks = normal(4, seed=4) if kind == "sinks" else None
    if sinks is not None:
        extra.append(sinks)
    want = mx.fast.scaled_dot_product_attention(
        q, k, v, scale=0.3, mask="causal" if kind == "causal" else mask, sinks=sinks
    )
    args = (0.3, kind == "causal", sinks is not None, False, False)
    assert_same(run("ScaledDotProductAttention", args, [q, k, v, *extra]), (want,))
    # With output_logsumexp (training on a GPU) a second output is the
    # log-sum-exp of the scores: exp(scores - lse) sums to one per query.
    out, lse = run("ScaledDotProductAttention", args[:3] + (True, False), [q, k, v, *extra])
    assert_same((out,), (want,))
    assert lse.shape == (1, 4, 5, 1) and lse.dtype == mx.float32
    kk = mx.repeat(k, 2, axis=1)
    scores = (q * 0.3) @ mx.swapaxes(kk, -1, -2)
    if kind == "causal":
        scores = mx.where(mx.arange(7)[None] <= mx.arange(2, 7)[:, None], scores, -math.inf)
    elif kind == "bool":
        scores = mx.where(mask, scores, -math.inf)
    elif kind == "additive":
        scores = scores + mask
    total = mx.sum(mx.exp(scores - lse), axis=-1)
    if sinks is not None:
        total = total + mx.exp(sinks[:, None] - lse[..., 0])
    assert mx.allclose(total, mx.ones_like(total), atol=1e-5).item()


def test_dequantize() -> None:
    w = normal(4, 64)
    q, s, b = mx.quantize(w, group_size=32, bits=4)
    want = mx.dequantize(q, s, b, group_size=32, bits=4)
    assert_same(run("Quantize", (32, 4, 0, True), [q, s, b]), (want,))


# --- CustomKernel -------------------------------------------------------------
METAL_SOURCE = """#include <metal_stdlib>
template <typename T, int N>
[[kernel]] void custom_kernel_myexp_float_float_float(
  const device float* inp [[buffer(0)]],
  const constant int* inp_shape [[buffer(1)]],
  const constant int64_t* inp_strides [[buffer(2)]],
  const constant int& inp_ndim [[buffer(3)]],
  const constant float& alpha [[buffer(4)]],
  device atomic<float>* out [[buffer(5)]],
  device atomic<float>* aux [[buffer(6)]],
  uint3 thread_position_in_grid [[thread_position_in_grid]]) {
uint elem = thread_position_in_grid.x;
out[elem] = metal::exp(inp[elem]) * alpha;
}

template [[host_name("custom_kernel_myexp_float_float_float")]] [[kernel]] decltype(custom_kernel_myexp_float_float_float<float, 3>) custom_kernel_myexp_float_float_float<float, 3>;
"""

CUDA_SOURCE = """
#include "mlx/backend/cuda/device/utils.cuh"

#include <cooperative_groups.h>

#define MY_HEADER 1
namespace mlx::core::cu {

namespace cg = cooperative_groups;

__global__ void custom_kernel_myexp_3_float(
    const float* inp,
    const __grid_constant__ Shape inp_shape,
    const float* bias,
    float* out) {
  constexpr int N = 3;
  using T = float;

  auto elem = cg::this_grid().thread_rank();
  out[elem] = exp(inp[elem]) + bias[0];
}

} // namespace mlx::core::cu
"""


def test_parse_metal_source() -> None:
    parsed = parse_metal_source(
        "custom_kernel_myexp_float_float_float",
        METAL_SOURCE,
        [1, 0],
        [(True, True, True), (False, False, False)],
    )
    assert parsed.header == "#include <metal_stdlib>\n"
    assert parsed.input_names == ["inp", "alpha"]
    assert parsed.output_names == ["out", "aux"]
    assert parsed.template == [("T", mx.float32), ("N", 3)]
    assert parsed.atomic_outputs
    assert parsed.body == "uint elem = thread_position_in_grid.x;\nout[elem] = metal::exp(inp[elem]) * alpha;"


def test_parse_cuda_source() -> None:
    parsed = parse_cuda_source(
        "custom_kernel_myexp_3_float", CUDA_SOURCE, [2, 1], [(True, False, False), (False, False, False)]
    )
    assert parsed.header == "#define MY_HEADER 1\n"
    assert parsed.input_names == ["inp", "bias"]
    assert parsed.output_names == ["out"]
    # Template arguments stay as the body's first lines: the same code again.
    assert parsed.body.startswith("  constexpr int N = 3;\n  using T = float;\n\n  auto elem")
    assert parsed.body.endswith("bias[0];")


def _kernel_args(name: str, source: str, precompiled: bool = False) -> tuple[Any, ...]:
    return (name, source, 8, 1, 1, 8, 1, 1, [(False, False, False)], True, None, [], precompiled, 0, 0)


@pytest.mark.skipif(mx.metal.is_available() or mx.cuda.is_available(), reason="GPU present")
@pytest.mark.parametrize("precompiled", [False, True])
def test_custom_kernel_without_gpu_raises(precompiled: bool) -> None:
    with pytest.raises(RuntimeError, match="custom_kernel_myexp"):
        run(
            "CustomKernel",
            _kernel_args("custom_kernel_myexp", METAL_SOURCE, precompiled),
            [mx.ones(8)],
            [((8,), mx.float32)],
        )


@pytest.mark.skipif(not mx.metal.is_available(), reason="needs Metal")
def test_custom_kernel_metal() -> None:
    kernel = mx.fast.metal_kernel(
        name="myexp",
        input_names=["inp"],
        output_names=["out"],
        source="uint elem = thread_position_in_grid.x;\nout[elem] = metal::exp(inp[elem]);",
    )
    x = normal(8)
    want = kernel(inputs=[x], grid=(8, 1, 1), threadgroup=(8, 1, 1), output_shapes=[(8,)], output_dtypes=[mx.float32])
    records: list[dict[str, Any]] = []
    mx.export_function(
        records.append,
        lambda a: kernel(
            inputs=[a], grid=(8, 1, 1), threadgroup=(8, 1, 1), output_shapes=[(8,)], output_dtypes=[mx.float32]
        ),
        x,
    )
    (rec,) = [r for r in records if r.get("name") == "CustomKernel"]
    assert_same(run("CustomKernel", rec["arguments"], [x], [((8,), mx.float32)]), tuple(want))


# --- states no public op emits on CPU -----------------------------------------
def test_copy_and_stop_gradient() -> None:
    assert_same(run("Copy", (), [X]), (X,))
    assert_same(run("StopGradient", (), [X]), (X,))
    assert_same(mx.grad(lambda x: run("StopGradient", (), [x])[0].sum())(X), (mx.zeros_like(X),))


def test_integer_divide_truncates() -> None:
    a = mx.array([7, -7, 7, -7, 6, 0], dtype=mx.int32)
    b = mx.array([2, 2, -2, -2, -3, 5], dtype=mx.int32)
    assert_same(run("Divide", (), [a, b]), (mx.array([3, -3, -3, 3, -2, 0], dtype=mx.int32),))
    ua, ub = mx.array([7, 9], mx.uint8), mx.array([2, 4], mx.uint8)
    assert_same(run("Divide", (), [ua, ub]), (mx.array([3, 2], mx.uint8),))


def test_gather_wide_slices_on_indexed_axes() -> None:
    a = mx.arange(5 * 6 * 2).reshape(5, 6, 2)
    i0, i1 = mx.array([0, 3, -2]), mx.array([1, 4, 0])
    (got,) = run("Gather", ([0, 1], (2, 2, 1)), [a, i0, i1])
    want = mx.stack([a[i % 5 : i % 5 + 2, j : j + 2, :1] for i, j in zip(i0.tolist(), i1.tolist())])
    assert_same((got,), (want,))
    i1 = mx.array([1, 3, 0])
    (got,) = run("Gather", ([1], (5, 3, 2)), [a, i1])
    want = mx.stack([a[:, j : j + 3] for j in i1.tolist()])
    assert_same((got,), (want,))


def test_scatter_wide_slices_on_indexed_axes() -> None:
    a = mx.zeros((5, 6))
    idx = mx.array([0, 2, 2])
    upd = mx.arange(3 * 2 * 6, dtype=mx.float32).reshape(3, 2, 6)
    (got,) = run("Scatter", (2, [0]), [a, idx, upd])
    want = a
    for i, u in zip(idx.tolist(), upd):
        want = want.at[i : i + 2].add(u)
    assert_same((got,), (want,))
    (got,) = run("Scatter", (4, [0]), [a, mx.array([1]), upd[:1]])
    assert_same((got,), (a.at[1:3].add(upd[0]),))


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.int32])
def test_number_of_elements(dtype: mx.Dtype) -> None:
    x = normal(3, 7, 2)
    for inverted in (False, True):
        want = (
            mx.array(1 / 14 if inverted else 14.0).astype(dtype)
            if dtype != mx.int32 or not inverted
            else mx.array(0, mx.int32)
        )
        for shapeless in (False, True):
            got = run("NumberOfElements", ([1, 2], inverted, dtype), [x], shapeless=shapeless)
            assert_same(got, (want,))
