"""mx.grad, mx.vjp, mx.jvp and mx.vmap of an imported function equal those of
the original, for each differentiable primitive (one small function each)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

from conftest import Pair


def normal(*shape: int, seed: int = 0) -> mx.array:
    return mx.random.normal(shape, key=mx.random.key(seed))


X = normal(4, 6)
SPD = X[:, :4].T @ X[:, :4] + 4 * mx.eye(4)
W = normal(8, 32, seed=2)
QW, QS, QB = mx.quantize(W, group_size=32, bits=4)
IDX = mx.array([0, 2, 2])
mx.eval(X, SPD, QW, QS, QB)


def _masked(a: mx.array) -> mx.array:
    b = a * 1
    b[a > 0] = mx.arange(a.size, dtype=a.dtype) * 0.5
    return b


FUNCTIONS: dict[str, tuple[Callable[[mx.array], Any], mx.array]] = {
    "Unary": (lambda a: mx.sin(a) + mx.exp(a) * mx.tanh(a) + mx.sigmoid(a) + mx.erf(a) + mx.square(a) + mx.abs(a), X),
    "LogSqrt": (
        lambda a: mx.log(mx.abs(a) + 1) + mx.sqrt(mx.abs(a) + 1) + mx.rsqrt(mx.abs(a) + 1) + mx.log2(a * a + 1),
        X,
    ),
    "Binary": (
        lambda a: (
            a * a[::-1]
            - a / (mx.abs(a) + 1)
            + mx.maximum(a, 0.1)
            + mx.minimum(a, -a)
            + mx.logaddexp(a, 2 * a)
            + mx.arctan2(a, a + 2)
        ),
        X,
    ),
    "Power": (lambda a: mx.power(mx.abs(a) + 1, a), X),
    "Matmul": (lambda a: a @ a.T, X),
    "AddMM": (lambda a: mx.addmm(a[:, :4], a, a[:4].T, alpha=0.5, beta=2.0), X),
    "Convolution": (lambda a: mx.conv1d(a[None], mx.ones((2, 3, 6)) * 0.1, padding=1), X),
    "Gather": (lambda a: a[IDX] * a[IDX, mx.array([1, 2, 5])][:, None], X),
    "GatherAxis": (lambda a: mx.take_along_axis(a, mx.array([[0], [5], [2], [1]]), axis=1), X),
    "Scatter": (lambda a: a.at[IDX].add(a[:3] * 2), X),
    "ScatterAxis": (lambda a: mx.put_along_axis(a, mx.array([[0], [5], [2], [1]]), a[:, :1] * 3, axis=1), X),
    "SliceUpdate": (lambda a: a.at[1:3, ::2].multiply(a[:2, :3]), X),
    "DynamicSlice": (lambda a: mx.slice(a, mx.array([1, 2]), [0, 1], (2, 3)) * 2, X),
    "DynamicSliceUpdate": (lambda a: mx.slice_update(a, a[:2] * 3, mx.array([1]), [0]), X),
    "MaskedScatter": (_masked, X),
    "Reduce": (lambda a: a.sum(0) + a.prod(0) + a.max(0) + a.mean(0), X),
    "Scan": (lambda a: mx.cumsum(a, 1) + mx.cumprod(a, 1, reverse=True) + mx.cummax(a, 1), X),
    "Softmax": (lambda a: mx.softmax(a, axis=-1) + mx.logsumexp(a, axis=-1, keepdims=True), X),
    "Sort": (lambda a: mx.sort(a, 1) * a, X),
    "Shape": (
        lambda a: (
            mx.concatenate([mx.flatten(a.T)[None], mx.unflatten(a, 1, (2, 3)).reshape(1, -1)], 0)
            + mx.pad(a, ((0, 0), (1, 1)))[:, 2:].reshape(1, -1)
        ),
        X,
    ),
    "Split": (lambda a: mx.split(a, [2], axis=1)[1] * mx.expand_dims(mx.squeeze(a[:, :1], 1), 1), X),
    "Select": (lambda a: mx.where(a > 0, a * 2, mx.exp(a)), X),
    "FFT": (lambda a: mx.abs(mx.fft.rfft(a)) + mx.fft.irfft(mx.fft.rfft(a), n=6).sum(), X),
    "Hadamard": (lambda a: mx.hadamard_transform(a[:, :4], scale=0.5), X),
    "QuantizedMatmul": (
        lambda a: mx.quantized_matmul(mx.tile(a, (1, 6))[:, :32], QW, QS, QB, group_size=32, bits=4),
        X,
    ),
    "GatherMM": (lambda a: mx.gather_mm(a[None, :, :4], mx.stack([SPD, SPD * 2]), None, mx.array([1, 0])), X),
    "BlockMaskedMM": (
        lambda a: mx.block_masked_mm(
            mx.tile(a, (8, 6))[:32, :32], mx.tile(a.T, (6, 8))[:32, :32], 32, mx.array([[True]])
        ),
        X,
    ),
    "Inverse": (lambda a: mx.linalg.inv(SPD + a[:, :4] * 0.1, stream=mx.cpu), X),
    "Cholesky": (lambda a: mx.linalg.cholesky(SPD + a[:, :4] @ a[:, :4].T * 0.1, stream=mx.cpu), X),
    "Eigh": (lambda a: mx.linalg.eigh(SPD + a[:, :4] @ a[:, :4].T * 0.1, stream=mx.cpu)[0], X),
    "Depends": (lambda a: mx.depends([a * 2], [a + 1])[0], X),
    "AsType": (lambda a: a.astype(mx.float16).astype(mx.float32) * a, X),
}


def _result(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        out = fn()
        mx.eval(out)
        return out, None
    except Exception as exc:  # noqa: BLE001
        return None, exc


def _close(got: Any, want: Any) -> None:
    got = got if isinstance(got, (list, tuple)) else [got]
    want = want if isinstance(want, (list, tuple)) else [want]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert mx.allclose(g, w, rtol=1e-4, atol=1e-4, equal_nan=True).item()


def _same_behaviour(ours: Callable[[], Any], original: Callable[[], Any]) -> None:
    want, error = _result(original)
    got, our_error = _result(ours)
    if error is not None:
        assert our_error is not None, f"original raised {error!r}; the import did not"
        return
    assert our_error is None, f"the import raised {our_error!r}"
    _close(got, want)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_transforms(name: str, tmp_path: Path) -> None:
    fun, x = FUNCTIONS[name]
    p = Pair(tmp_path, fun, x)
    ours = lambda a: p.ours(a)[0]  # noqa: E731
    _same_behaviour(lambda: mx.grad(lambda a: ours(a).sum())(x), lambda: mx.grad(lambda a: fun(a).sum())(x))
    cot = normal(*fun(x).shape, seed=7)
    _same_behaviour(lambda: mx.vjp(ours, [x], [cot])[1], lambda: mx.vjp(fun, [x], [cot])[1])
    tan = normal(*x.shape, seed=8)
    _same_behaviour(lambda: mx.jvp(ours, [x], [tan])[1], lambda: mx.jvp(fun, [x], [tan])[1])
    batch = mx.stack([x, x * 0.5 + 0.1])
    _same_behaviour(lambda: mx.vmap(ours)(batch), lambda: mx.vmap(fun)(batch))
