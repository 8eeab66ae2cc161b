"""Imported functions work under mx.grad, vmap, value_and_grad, vjp, jvp, compile."""

from __future__ import annotations

import mlx.core as mx

from conftest import assert_same
from models import MLP, seeded

MODEL = seeded(MLP())
X = mx.random.normal((3, 16), key=mx.random.key(0))


def loss(x: mx.array) -> mx.array:
    return MODEL(x).sum()


def test_grad_and_value_and_grad(pair):
    p = pair(loss, X)
    ours = lambda x: p.ours(x)[0]  # noqa: E731
    theirs = lambda x: p.theirs(x)[0]  # noqa: E731
    assert mx.allclose(mx.grad(ours)(X), mx.grad(loss)(X), atol=1e-6).item()
    assert_same(mx.grad(ours)(X), mx.grad(theirs)(X))
    value, grad = mx.value_and_grad(ours)(X)
    assert_same((value, grad), mx.value_and_grad(theirs)(X))


def test_vjp_and_jvp(pair):
    p = pair(MODEL, X)
    cot = mx.ones((3, 8))
    ours = mx.vjp(lambda x: p.ours(x)[0], [X], [cot])
    theirs = mx.vjp(lambda x: p.theirs(x)[0], [X], [cot])
    assert_same(ours[1], theirs[1])
    t = mx.ones_like(X)
    assert_same(mx.jvp(lambda x: p.ours(x)[0], [X], [t])[1], mx.jvp(lambda x: p.theirs(x)[0], [X], [t])[1])


def test_vmap(pair):
    row = X[0]
    p = pair(MODEL, row)
    got = mx.vmap(lambda x: p.ours(x)[0])(X)
    want = mx.vmap(lambda x: p.theirs(x)[0])(X)
    assert_same(got, want)
    assert mx.allclose(got, MODEL(X), atol=1e-6).item()


def test_vmap_twice(pair):
    # MLX's own import fails here; mlxfn must not.
    fun = lambda x: mx.sin(x) * 2  # noqa: E731
    p = pair(fun, mx.array(0.5))
    batch = mx.random.normal((3, 4), key=mx.random.key(1))
    got = mx.vmap(mx.vmap(lambda x: p.ours(x)[0]))(batch)
    assert_same(got, fun(batch))


def test_compile(pair):
    p = pair(MODEL, X)
    compiled = mx.compile(lambda x: p.ours(x)[0] * 2)
    assert_same(compiled(X), p.theirs(X)[0] * 2)
    assert_same(compiled(X), compiled(X))
