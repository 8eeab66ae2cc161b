"""MLX's fused "fast" primitives (Custom primitives with a fallback).

On CPU, MLX traces the decomposed fallback of ``mx.fast.*`` instead, so a CPU
trace only shows ``Quantize``; Metal/CUDA traces show the fused primitives.
Each handler calls the public ``mx.fast`` op that emits the primitive where
the fused kernel exists (so a GPU replay runs the same kernel) and its
fallback elsewhere.  The backward primitives (RMSNormVJP, LayerNormVJP, RoPE
with ``forward=False``) are rebuilt as ``mx.vjp`` of the forward op, which is
exactly how MLX creates them.  The leading ``nullptr`` in these primitives'
state is not reported by MLX's export callback.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..ir import Node
from .linalg import QUANTIZATION_MODES
from .registry import register


@register("Quantize")
def quantize(node: Node, xs: list[mx.array]) -> mx.array | list[mx.array]:
    group_size, bits, mode, dequantize = node.args
    mode_name = QUANTIZATION_MODES[mode]
    if dequantize:
        w, scales = xs[:2]
        biases = xs[2] if len(xs) > 2 else None
        return mx.dequantize(w, scales, biases, group_size=group_size, bits=bits, mode=mode_name)
    return list(mx.quantize(xs[0], group_size=group_size, bits=bits, mode=mode_name))


def _optional(w: mx.array | None) -> mx.array | None:
    """MLX passes a missing weight/bias as a 0-d placeholder (1 or 0)."""
    return None if w is None or w.ndim == 0 else w


@register("RMSNorm")
def rms_norm(node: Node, xs: list[mx.array]) -> mx.array:
    (eps,) = node.args
    return mx.fast.rms_norm(xs[0], _optional(xs[1] if len(xs) > 1 else None), eps)


@register("RMSNormVJP")
def rms_norm_vjp(node: Node, xs: list[mx.array]) -> list[mx.array]:
    """Inputs x, w, cotangent; outputs dx, dw (zeros for a placeholder w)."""
    (eps,) = node.args
    x, w, g = xs
    if w.ndim == 0:
        (dx,) = mx.vjp(lambda x_: mx.fast.rms_norm(x_, None, eps), [x], [g])[1]
        return [dx, mx.zeros_like(w)]
    return list(mx.vjp(lambda x_, w_: mx.fast.rms_norm(x_, w_, eps), [x, w], [g])[1])


@register("LayerNorm")
def layer_norm(node: Node, xs: list[mx.array]) -> mx.array:
    (eps,) = node.args
    weight = _optional(xs[1] if len(xs) > 1 else None)
    bias = _optional(xs[2] if len(xs) > 2 else None)
    return mx.fast.layer_norm(xs[0], weight, bias, eps)


@register("LayerNormVJP")
def layer_norm_vjp(node: Node, xs: list[mx.array]) -> list[mx.array]:
    """Inputs x, w, b, cotangent; outputs dx, dw, db (zeros for placeholders)."""
    (eps,) = node.args
    x, w, b, g = xs
    primals = [x] + [p for p in (w, b) if p.ndim > 0]

    def fun(x_: mx.array, *rest: mx.array) -> mx.array:
        it = iter(rest)
        w_ = next(it) if w.ndim > 0 else None
        b_ = next(it) if b.ndim > 0 else None
        return mx.fast.layer_norm(x_, w_, b_, eps)

    grads = iter(mx.vjp(fun, primals, [g])[1])
    dx = next(grads)
    dw = next(grads) if w.ndim > 0 else mx.zeros_like(w)
    db = next(grads) if b.ndim > 0 else mx.zeros_like(b)
    return [dx, dw, db]


@register("RoPE")
def rope(node: Node, xs: list[mx.array]) -> mx.array:
    """Inputs x, offset, [freqs].  ``forward=False`` is RoPE's own vjp: the
    inverse rotation, obtained as the vjp of the forward op."""
    dims, traditional, base, scale, forward = node.args
    x, offset = xs[:2]
    freqs = xs[2] if len(xs) > 2 else None

    def fwd(t: mx.array) -> mx.array:
        return mx.fast.rope(
            t,
            dims,
            traditional=traditional,
            base=None if freqs is not None else base,
            scale=scale,
            offset=offset,
            freqs=freqs,
        )

    if forward:
        return fwd(x)
    return mx.vjp(fwd, [x], [x])[1][0]


def _attention_logsumexp(
    q: mx.array, k: mx.array, v: mx.array, scale: float, causal: bool, mask: mx.array | None, sinks: mx.array | None
) -> mx.array:
    """log-sum-exp of the scaled, masked scores per query (float32, keepdims)."""
    n_rep = q.shape[1] // k.shape[1]
    if n_rep > 1:
        k = mx.repeat(k, n_rep, axis=1)
    scores = (q.astype(mx.float32) * scale) @ mx.swapaxes(k.astype(mx.float32), -1, -2)
    if causal:
        qL, kL = scores.shape[-2:]
        rows = mx.arange(kL - qL, kL)[:, None]
        mask = rows >= mx.arange(kL)[None]
    if mask is not None:
        if mask.dtype == mx.bool_:
            scores = mx.where(mask, scores, -math.inf)
        else:
            scores = scores + mask.astype(mx.float32)
    if sinks is not None:
        sink = mx.broadcast_to(sinks.astype(mx.float32)[:, None, None], scores.shape[:-1] + (1,))
        scores = mx.concatenate([sink, scores], axis=-1)
    return mx.logsumexp(scores, axis=-1, keepdims=True)


@register("ScaledDotProductAttention")
def scaled_dot_product_attention(node: Node, xs: list[mx.array]) -> mx.array | list[mx.array]:
    """Inputs q, k, v, [mask], [sinks].  ``output_logsumexp`` (set only while
    MLX traces a gradient with a fused backward kernel) adds a second output
    that no public op returns: it is composed from ops, close to but not
    bit-identical with the fused kernel.  ``force_fused`` only steers MLX's
    kernel choice and is not exposed by the public op."""
    scale, causal, has_sinks, output_logsumexp, _force_fused = node.args
    q, k, v = xs[:3]
    rest = xs[3:]
    sinks = rest.pop() if has_sinks else None
    mask = rest[0] if rest else None
    out = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask="causal" if causal else mask, sinks=sinks)
    if not output_logsumexp:
        return out
    return [out, _attention_logsumexp(q, k, v, scale, causal, mask, sinks)]
