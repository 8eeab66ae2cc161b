"""Every primitive MLX can export, round-tripped on its own.

Each case is a small function whose CPU trace really contains the primitive
(checked through MLX's export callback); it is exported by mlxfn and by MLX,
and both imports must give the original's outputs bit for bit.  Exported
with ``shapeless=True``, mlxfn's import must give the original's outputs at
the traced shape and at a second shape, or refuse the second shape with its
"no imported function" error (a size the graph does not follow); where
MLX's own shapeless import works and is right, the two agree.  MLX's own
often raises (a slice cannot infer its output shape) or is wrong there.
Primitives that no CPU trace contains (GPU-only fused kernels, aliases) are
tested with synthetic records in test_primitives_synthetic.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

from mlxfn.replay.elementwise import _BINARY, _UNARY

from conftest import Pair, as_tuple, assert_same


def trace_names(fun: Callable[..., Any], *args: Any, shapeless: bool = False) -> set[str]:
    """The primitive names MLX's export callback reports for ``fun(*args)``."""
    records: list[dict[str, Any]] = []
    mx.export_function(records.append, fun, *args, shapeless=shapeless)
    return {r["name"] for r in records if r["type"] == "primitive"}


def normal(*shape: int, seed: int = 0) -> mx.array:
    return mx.random.normal(shape, key=mx.random.key(seed))


@dataclass
class Case:
    primitive: str
    fun: Callable[..., Any]
    args: tuple[Any, ...]
    # None: shapeless not tried; () (default): shapeless, same shapes only;
    # a tuple of args: shapeless, then called again with these.
    shapeless: tuple[Any, ...] | None = ()


def _set_rows(a: mx.array) -> mx.array:
    b = mx.array(a)
    b[mx.array([1, 3, 1])] = mx.array([[1.0], [2.0], [3.0]])
    return b


def _set_slice(a: mx.array, u: mx.array) -> mx.array:
    b = mx.array(a)
    b[1:3, ::2] = u
    return b


def _set_masked(a: mx.array) -> mx.array:
    b = mx.array(a)
    b[a > 0] = mx.arange(a.size, dtype=a.dtype)
    return b


def _set_masked_rows(a: mx.array, m: mx.array) -> mx.array:
    b = mx.array(a)
    b[m] = 7.0
    return b


X = normal(4, 6)
SQ = normal(3, 3, seed=1)
SPD = SQ @ SQ.T + 3 * mx.eye(3)
W = normal(8, 32, seed=2)
QW, QS, QB = mx.quantize(W, group_size=32, bits=4)
mx.eval(X, SQ, SPD, QW, QS, QB)
IDX = mx.array([0, 2, 2])

CASES = [
    Case("FloorDivide", lambda a: (a * 10).astype(mx.int32) // 3, (X,), (normal(5, 2),)),
    Case("FloorDivide", lambda a: a // 0.3, (X,), (normal(2, 3),)),
    Case("Hadamard", lambda a: mx.hadamard_transform(a[:, :4]), (X,)),
    Case("FFT", lambda a: mx.fft.rfft(a), (X,), ()),
    Case("FFT", lambda a: mx.fft.irfft(mx.fft.rfft(a), n=7), (X,)),
    Case("FFT", lambda a: mx.fft.fftn(a), (X,)),
    Case("FFT", lambda a: mx.fft.ifft2(a.astype(mx.complex64)), (X,)),
    Case("SearchSorted", lambda a, v: mx.searchsorted(a, v), (mx.sort(X[0]), X[1]), (mx.arange(9.0), normal(4))),
    Case(
        "SearchSorted",
        lambda a, v: mx.searchsorted(a, v, side="right"),
        (mx.array([0.0, 1, 1, 2]), mx.array([1.0, 2, -1])),
    ),
    Case("Scatter", lambda a: a.at[IDX].add(1.5), (X,), ()),
    Case("Scatter", lambda a, u: a.at[IDX].add(u), (X, normal(3, 6, seed=3))),
    Case("Scatter", lambda a: a.at[IDX, mx.array([1, 3, 3])].multiply(2.0), (X,)),
    Case("Scatter", lambda a: a.at[:, IDX].maximum(0.5), (X,)),
    Case("Scatter", lambda a: a.at[IDX, :, mx.array([0, 1, 0])].minimum(-0.5), (normal(3, 2, 4),)),
    Case("Scatter", _set_rows, (X,)),
    Case(
        "ScatterAxis", lambda a: mx.put_along_axis(a, mx.array([[0], [1], [2], [5]]), mx.array(1.0), axis=1), (X,), ()
    ),
    Case(
        "ScatterAxis",
        lambda a: mx.grad(lambda b: mx.take_along_axis(b, mx.array([[0, 0], [1, 1], [5, 2], [3, 3]]), axis=1).sum())(a),
        (X,),
        (normal(4, 7),),
    ),
    Case("MaskedScatter", _set_masked, (X,), (normal(3, 5),)),
    Case("MaskedScatter", _set_masked_rows, (normal(3, 2, 2), mx.array([True, False, True]))),
    Case("DynamicSlice", lambda a, i: mx.slice(a, i, [0, 1], (2, 3)), (X, mx.array([1, 2])), ()),
    Case("DynamicSliceUpdate", lambda a, u, i: mx.slice_update(a, u, i, [0]), (X, mx.ones((2, 6)), mx.array([1])), ()),
    Case("Depends", lambda a: mx.depends([a * 2], [a + 1])[0], (X,), (normal(2, 2),)),
    Case(
        "BlockMaskedMM",
        lambda a, b: mx.block_masked_mm(a, b, 32, mx.array([[True, False]])),
        (normal(32, 32), normal(32, 64, seed=1)),
    ),
    Case(
        "BlockMaskedMM",
        lambda a, b: mx.block_masked_mm(a, b, 32, None, mx.array([[True, False]]), mx.array([[1.0], [0.5]])),
        (normal(32, 64), normal(64, 32, seed=1)),
    ),
    Case(
        "BlockMaskedMM",
        lambda a, b: mx.block_masked_mm(a, b, 32, mx.array([[True]]), mx.array([[True]]), mx.array([[False]])),
        (normal(32, 32), normal(32, 32, seed=1)),
    ),
    Case(
        "GatherMM",
        lambda a, b: mx.gather_mm(a, b, None, mx.array([0, 1, 0])),
        (normal(3, 1, 4), normal(2, 4, 5, seed=1)),
    ),
    Case(
        "GatherMM",
        lambda a, b: mx.gather_mm(a, b, mx.array([0, 0, 1]), mx.array([1, 1, 0]), sorted_indices=True),
        (normal(2, 2, 4), normal(2, 4, 5, seed=1)),
    ),
    Case(
        "GatherQMM",
        lambda x: mx.gather_qmm(
            x, QW[None], QS[None], QB[None], rhs_indices=mx.array([0, 0]), transpose=True, group_size=32, bits=4
        ),
        (normal(2, 1, 32),),
    ),
    Case(
        "GatherQMM",
        lambda x: mx.gather_qmm(
            x,
            mx.stack([QW, QW]),
            mx.stack([QS, QS]),
            mx.stack([QB, QB]),
            rhs_indices=mx.array([0, 1, 1]),
            group_size=32,
            bits=4,
            sorted_indices=True,
        ),
        (normal(3, 1, 32),),
    ),
    Case("QRF", lambda a: mx.linalg.qr(a, stream=mx.cpu), (SQ,)),
    Case("SVD", lambda a: mx.linalg.svd(a, stream=mx.cpu), (SQ,)),
    Case("SVD", lambda a: mx.linalg.svd(a, compute_uv=False, stream=mx.cpu), (SQ,)),
    Case("Inverse", lambda a: mx.linalg.inv(a, stream=mx.cpu), (SPD,)),
    Case("Inverse", lambda a: mx.linalg.tri_inv(a, upper=True, stream=mx.cpu), (SPD,)),
    Case("Cholesky", lambda a: mx.linalg.cholesky(a, upper=True, stream=mx.cpu), (SPD,)),
    Case("Eig", lambda a: mx.linalg.eig(a, stream=mx.cpu), (SQ,)),
    Case("Eig", lambda a: mx.linalg.eigvals(a, stream=mx.cpu), (SQ,)),
    Case("Eigh", lambda a: mx.linalg.eigh(a, UPLO="U", stream=mx.cpu), (SPD,)),
    Case("Eigh", lambda a: mx.linalg.eigvalsh(a, stream=mx.cpu), (SPD,)),
    Case("Gather", lambda a: a[mx.array([[0, 1], [3, -1]])], (X,), (normal(5, 6),)),
    Case("Gather", lambda a, i: mx.vmap(lambda r, j: r[j], in_axes=(None, 0))(a, i), (X, mx.array([[0, 1], [2, 3]]))),
    Case("Gather", lambda a, i: mx.vmap(lambda r, j: r[j])(a, i), (X, mx.array([5, 1, 2, 0]))),
    Case(
        "Gather",
        lambda a, i: a[i, i + 1],
        (normal(4, 5, 2), mx.array([0, 2, -2])),
        (normal(6, 3, 2), mx.array([1, -3])),
    ),
    Case("GatherAxis", lambda a: mx.take_along_axis(a, mx.array([[0], [5], [-1], [2]]), axis=1), (X,), (normal(4, 9),)),
    Case(
        "Equal", lambda a: mx.array_equal(a, a, equal_nan=True), (mx.array([1.0, mx.nan, 2.0]),), (mx.array([mx.nan]),)
    ),
    Case("SliceUpdate", _set_slice, (X, mx.ones((2, 3))), ()),
    Case("SliceUpdate", lambda a: a.at[1:3, 2].maximum(0.0), (X,)),
    Case("SliceUpdate", lambda a: a.at[::-2].add(mx.ones((2, 6))), (X,)),
    Case("Slice", lambda a: a[::-1, 4:1:-2], (X,), ()),
    Case("NumberOfElements", lambda a: mx.mean(a, axis=1), (X,), (normal(3, 9),)),
    Case("NumberOfElements", lambda a: mx.var(a, axis=(0, 2), ddof=1), (normal(2, 3, 4),), (normal(5, 1, 2),)),
    Case(
        "BroadcastAxes",
        lambda a, b: a @ b,
        (normal(2, 1, 4, 6), normal(3, 6, 5, seed=1)),
        (normal(1, 2, 3, 6), normal(4, 6, 2, seed=1)),
    ),
    Case("Broadcast", lambda a, b: a + b, (normal(4, 1), normal(1, 6, seed=1)), (normal(2, 1), normal(1, 3, seed=1))),
    Case("Quantize", lambda w: mx.quantize(w, group_size=32, bits=4), (W,)),
    Case("QuantizedMatmul", lambda x: mx.quantized_matmul(x, QW, QS, QB, group_size=32, bits=4), (normal(2, 32),)),
    Case("Matmul", lambda a, b: a @ b, (X, X.T)),
    Case("AddMM", lambda c, a, b: mx.addmm(c, a, b, alpha=0.5, beta=2.0), (normal(4, 4), X, X.T)),
    Case(
        "Convolution",
        lambda x, w: mx.conv2d(x, w, stride=2, padding=1, groups=2),
        (normal(1, 6, 6, 4), normal(4, 3, 3, 2, seed=1)),
    ),
    Case("RandomBits", lambda a: a + mx.random.uniform(shape=a.shape, key=mx.random.key(3)), (X,)),
    Case(
        "Reduce",
        lambda a: (a.sum(0), a.prod(1), a.min(), a.max(0), (a > 0).all(1), (a > 0).any()),
        (X,),
        (normal(2, 5),),
    ),
    Case("ArgReduce", lambda a: (mx.argmax(a, 1), mx.argmin(a, 0)), (X,), (normal(2, 5),)),
    Case(
        "Scan",
        lambda a: (mx.cumsum(a, 1), mx.cumprod(a, 0, reverse=True), mx.cummax(a, 1, inclusive=False), mx.cummin(a, 0)),
        (X,),
        (normal(2, 5),),
    ),
    Case("Softmax", lambda a: mx.softmax(a, axis=-1, precise=True), (X,), (normal(2, 5),)),
    Case("LogSumExp", lambda a: mx.logsumexp(a, axis=-1), (X,), (normal(2, 5),)),
    Case("Sort", lambda a: (mx.sort(a, 0), mx.argsort(a, 1)), (X,), (normal(2, 5),)),
    Case("ArgSort", lambda a: mx.argsort(a, 1), (X,)),
    Case("Partition", lambda a: (mx.partition(a, 2, axis=1), mx.argpartition(a, 1, axis=0)), (X,)),
    Case("ArgPartition", lambda a: mx.argpartition(a, 1, axis=0), (X,)),
    Case("Reshape", lambda a: a.reshape(2, -1), (X,), (normal(6, 2),)),
    Case("Transpose", lambda a: a.T, (X,), (normal(2, 5),)),
    Case("Squeeze", lambda a: mx.squeeze(a[:, None], 1), (X,), (normal(2, 5),)),
    Case("ExpandDims", lambda a: mx.expand_dims(a, (0, 2)), (X,), (normal(2, 5),)),
    Case("Flatten", lambda a: mx.flatten(a), (normal(2, 3, 4),), (normal(3, 1, 2),)),
    Case("Unflatten", lambda a: mx.unflatten(a, 1, (2, 3)), (X,)),
    Case("Concatenate", lambda a: mx.concatenate([a, a * 2], axis=1), (X,), (normal(2, 5),)),
    Case("Split", lambda a: mx.split(a, [1, 3], axis=1), (X,)),
    Case("Pad", lambda a: mx.pad(a, ((1, 0), (2, 3)), constant_values=-1.0), (X,)),
    Case("AsStrided", lambda a: mx.as_strided(a, (3, 2), (6, 1), 2), (X,)),
    Case("Full", lambda a: a + mx.full((4, 6), mx.array(2.0)), (X,)),
    Case("Arange", lambda a: a + mx.arange(6, dtype=mx.float16), (X,)),
    Case("Select", lambda a: mx.where(a > 0, a, -a), (X,), (normal(2, 5),)),
    Case("AsType", lambda a: a.astype(mx.bfloat16), (X,), (normal(2, 5),)),
    Case("View", lambda a: a.view(mx.int32), (X,), (normal(2, 5),)),
    Case("Divide", lambda a: a / 3.0, (X,), (normal(2, 5),)),
    Case("DivMod", lambda a: mx.divmod(a, 0.7), (X,), (normal(2, 5),)),
    Case("Log", lambda a: (mx.log(mx.abs(a)), mx.log2(mx.abs(a)), mx.log10(mx.abs(a))), (X,), (normal(2, 5),)),
    Case("Sqrt", lambda a: (mx.sqrt(mx.abs(a)), mx.rsqrt(mx.abs(a))), (X,), (normal(2, 5),)),
    Case(
        "BitwiseBinary",
        lambda a, b: (a & b, a | b, a ^ b, a << 2, b >> 1),
        (mx.array([1, 6, 255]), mx.array([3, 5, 7])),
        (mx.array([9]), mx.array([12])),
    ),
]
# One case per unary and binary elementwise primitive.
_POSITIVE = {"ArcCosh": 1.5, "Log1p": 0.0}
_UNIT = {"ArcCos", "ArcSin", "ArcTanh", "ErfInv"}
for _name, _fn in _UNARY.items():
    if _name in ("StopGradient",):
        continue
    if _name in _UNIT:
        _x = mx.tanh(X) * 0.9
    elif _name in _POSITIVE:
        _x = mx.abs(X) + _POSITIVE[_name]
    elif _name in ("Real", "Imag", "Conjugate"):
        _x = X.astype(mx.complex64) * mx.array(1 + 2j)
    elif _name == "LogicalNot":
        _x = X > 0
    else:
        _x = X
    CASES.append(Case(_name, (lambda f: lambda a: f(a))(_fn), (_x,), ()))
for _name, _fn in _BINARY.items():
    _a, _b = (
        (X > 0, X < 0.5)
        if _name.startswith("Logical")
        else (mx.abs(X) + 0.5 if _name == "Power" else X, normal(4, 6, seed=5))
    )
    CASES.append(Case(_name, (lambda f: lambda a, b: f(a, b))(_fn), (_a, _b), ()))


def _id(case: Case) -> str:
    return case.primitive


def _call_or_error(fn: Callable[..., Any], *args: Any) -> tuple[tuple[mx.array, ...] | None, BaseException | None]:
    try:
        out = as_tuple(fn(*args))
        mx.eval(out)
        return out, None
    except Exception as exc:  # noqa: BLE001 - compared between the two imports
        return None, exc


def _right(outputs: tuple[mx.array, ...] | None, expected: tuple[mx.array, ...]) -> bool:
    return (
        outputs is not None
        and len(outputs) == len(expected)
        and all(
            o.shape == e.shape and o.dtype == e.dtype and mx.array_equal(o, e, equal_nan=True).item()
            for o, e in zip(outputs, expected)
        )
    )


def _shapeless_right_or_refused(p: Pair, args: tuple[Any, ...], original: Callable[..., Any], traced: bool) -> None:
    """mlxfn's shapeless import is right, or (at another shape than the traced
    one, where MLX's own is not right either) refuses with its no-match error.
    Where the function itself refuses the shape, mlxfn's import raises too."""
    expected, refused = _call_or_error(original, *args)
    ours, our_error = _call_or_error(p.ours, *args)
    if expected is None:
        assert our_error is not None, f"the function raises {refused!r} at this shape; mlxfn's import does not"
        return
    theirs, _ = _call_or_error(p.theirs, *args)
    if our_error is not None:
        assert not traced, f"mlxfn's shapeless import fails at the traced shape: {our_error!r}"
        assert not _right(theirs, expected), f"MLX's import serves this shape and mlxfn's refuses: {our_error!r}"
        assert isinstance(our_error, ValueError) and "No imported function" in str(our_error), repr(our_error)
        return
    assert_same(ours, expected)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_primitive(case: Case, tmp_path: Path) -> None:
    names = trace_names(case.fun, *case.args)
    if case.shapeless is not None:  # some only appear in shapeless traces
        names |= trace_names(case.fun, *case.args, shapeless=True)
    assert case.primitive in names, f"{case.primitive} not in trace {sorted(names)}"
    Pair(tmp_path, case.fun, *case.args).check(*case.args, original=case.fun)
    if case.shapeless is None:
        return
    (tmp_path / "s").mkdir()
    p = Pair(tmp_path / "s", case.fun, *case.args, shapeless=True)
    _shapeless_right_or_refused(p, case.args, case.fun, traced=True)
    if case.shapeless:
        _shapeless_right_or_refused(p, case.shapeless, case.fun, traced=False)


def test_scatter_duplicates_accumulate_like_mlx(tmp_path: Path) -> None:
    # Many float updates on one row: the accumulation order must match MLX.
    idx = mx.array([0, 1, 0, 0, 1, 0] * 10)
    fun = lambda a, u: a.at[idx].add(u)  # noqa: E731
    args = (normal(2, 3), normal(60, 3, seed=9) * 1e3)
    Pair(tmp_path, fun, *args).check(*args, original=fun)
