"""Every dtype, 0-d and zero-size arrays survive bit for bit."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import mlxfn
from mlxfn._dtypes import DTYPE_TABLE

from conftest import assert_same

RNG = np.random.default_rng(0)


def sample(dtype: mx.Dtype, shape: tuple[int, ...]) -> mx.array:
    """Values that exercise every bit of the dtype (NaN payloads aside)."""
    if dtype == mx.bool_:
        return mx.array(RNG.integers(0, 2, shape).astype(np.bool_))
    if dtype == mx.complex64:
        re, im = RNG.standard_normal(shape), RNG.standard_normal(shape)
        return mx.array((re + 1j * im).astype(np.complex64))
    if dtype == mx.bfloat16:
        bits = RNG.integers(0, 2**16, shape, dtype=np.uint16)
        return mx.array(bits).view(mx.bfloat16)
    size = dtype.size
    unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[size]
    bits = RNG.integers(0, np.iinfo(unsigned).max, shape, dtype=unsigned, endpoint=True)
    return mx.array(bits).view(dtype)


def bits(a: mx.array) -> mx.array:
    """The raw bytes of an array, so NaN payloads compare too."""
    return a.reshape(-1).view(mx.uint8) if a.size else a.reshape(-1)


@pytest.mark.parametrize("dtype", DTYPE_TABLE, ids=str)
def test_constants_of_every_dtype_are_bit_exact(pair, dtype: mx.Dtype):
    shapes = [(3, 5), (), (0,), (2, 0, 3), (4097,)]
    consts = [sample(dtype, s) for s in shapes]
    mx.eval(consts)
    fun = lambda x: (x, *consts)  # noqa: E731
    x = sample(dtype, (2,))
    p = pair(fun, x)
    for load in ("map", "copy"):
        got = mlxfn.import_function(p.ours_path, load=load)(x)
        assert [(g.shape, g.dtype) for g in got[1:]] == [(c.shape, c.dtype) for c in consts]
        assert_same([bits(g) for g in got], [bits(x)] + [bits(c) for c in consts])
        assert_same([bits(g) for g in p.theirs(x)[:2]], [bits(g) for g in got[:2]])


@pytest.mark.parametrize("dtype", DTYPE_TABLE, ids=str)
def test_inputs_of_every_dtype(pair, dtype: mx.Dtype):
    fun = lambda x: (x.astype(mx.float32) if dtype != mx.complex64 else x, mx.reshape(x, (-1,)))  # noqa: E731
    x = sample(dtype, (2, 3))
    p = pair(fun, x)
    p.check(x)


def test_zero_size_and_scalar_inputs(pair):
    fun = lambda a, b: (a * 2, b.sum(), b + 1)  # noqa: E731
    a, b = mx.array(3.5), mx.zeros((0, 4))
    pair(fun, a, b).check(a, b, original=fun)
