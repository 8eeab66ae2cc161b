"""Elementwise primitives: unary math, binary arithmetic, comparisons, select."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from ..ir import Node
from .registry import register


def _abs(x: mx.array) -> mx.array:
    # MLX's Abs primitive keeps a complex input's dtype (the magnitude in the
    # real part); mx.abs adds an AsType to float, which the trace records as
    # its own node.
    out = mx.abs(x)
    return out.astype(x.dtype) if x.dtype == mx.complex64 else out


_UNARY: dict[str, Callable[[mx.array], mx.array]] = {
    "Abs": _abs,
    "ArcCos": mx.arccos,
    "ArcCosh": mx.arccosh,
    "ArcSin": mx.arcsin,
    "ArcSinh": mx.arcsinh,
    "ArcTan": mx.arctan,
    "ArcTanh": mx.arctanh,
    "Ceil": mx.ceil,
    "Conjugate": mx.conjugate,
    "Cos": mx.cos,
    "Cosh": mx.cosh,
    "Erf": mx.erf,
    "ErfInv": mx.erfinv,
    "Exp": mx.exp,
    "Expm1": mx.expm1,
    "Floor": mx.floor,
    "Imag": mx.imag,
    "Log1p": mx.log1p,
    "LogicalNot": mx.logical_not,
    "Negative": mx.negative,
    "Real": mx.real,
    "Round": mx.round,
    "Sigmoid": mx.sigmoid,
    "Sign": mx.sign,
    "Sin": mx.sin,
    "Sinh": mx.sinh,
    "Square": mx.square,
    "StopGradient": mx.stop_gradient,
    "Tan": mx.tan,
    "Tanh": mx.tanh,
}

_BINARY: dict[str, Callable[[mx.array, mx.array], mx.array]] = {
    "Add": mx.add,
    "ArcTan2": mx.arctan2,
    "Greater": mx.greater,
    "GreaterEqual": mx.greater_equal,
    "Less": mx.less,
    "LessEqual": mx.less_equal,
    "LogAddExp": mx.logaddexp,
    "LogicalAnd": mx.logical_and,
    "LogicalOr": mx.logical_or,
    "Maximum": mx.maximum,
    "Minimum": mx.minimum,
    "Multiply": mx.multiply,
    "NotEqual": mx.not_equal,
    "Power": mx.power,
    "Remainder": mx.remainder,
    "Subtract": mx.subtract,
}


def _unary(fn: Callable[[mx.array], mx.array]) -> Callable[[Node, list[mx.array]], mx.array]:
    return lambda node, xs: fn(xs[0])


def _binary(
    fn: Callable[[mx.array, mx.array], mx.array],
) -> Callable[[Node, list[mx.array]], mx.array]:
    return lambda node, xs: fn(xs[0], xs[1])


for _name, _one in _UNARY.items():
    register(_name)(_unary(_one))
for _name, _two in _BINARY.items():
    register(_name)(_binary(_two))


@register("Copy")
def copy(node: Node, xs: list[mx.array]) -> mx.array:
    return mx.array(xs[0])


@register("Divide")
def divide(node: Node, xs: list[mx.array]) -> mx.array:
    # MLX's Divide kernel on integers is C division (rounds toward zero);
    # mx.divide would promote them to float, so compose it from floor division.
    a, b = xs
    if mx.issubdtype(a.dtype, mx.inexact):
        return mx.divide(a, b)
    q = mx.floor_divide(a, b)
    if not mx.issubdtype(a.dtype, mx.signedinteger):
        return q
    inexact = mx.logical_and(mx.not_equal(mx.remainder(a, b), 0), mx.not_equal(a < 0, b < 0))
    return mx.where(inexact, q + 1, q)


@register("FloorDivide")
def floor_divide(node: Node, xs: list[mx.array]) -> mx.array:
    return mx.floor_divide(xs[0], xs[1])


@register("DivMod")
def divmod_(node: Node, xs: list[mx.array]) -> list[mx.array]:
    return list(mx.divmod(xs[0], xs[1]))


@register("Equal", "NaNEqual")
def equal(node: Node, xs: list[mx.array]) -> mx.array:
    a, b = xs
    (equal_nan,) = node.args
    if equal_nan and mx.issubdtype(a.dtype, mx.inexact):
        return mx.logical_or(mx.equal(a, b), mx.logical_and(mx.isnan(a), mx.isnan(b)))
    return mx.equal(a, b)


_LOG_BASES: dict[int, Callable[[mx.array], mx.array]] = {0: mx.log2, 1: mx.log10, 2: mx.log}


@register("Log", "Log2", "Log10")
def log(node: Node, xs: list[mx.array]) -> mx.array:
    (base,) = node.args
    return _LOG_BASES[base](xs[0])


@register("Sqrt", "Rsqrt")
def sqrt(node: Node, xs: list[mx.array]) -> mx.array:
    (reciprocal,) = node.args
    return mx.rsqrt(xs[0]) if reciprocal else mx.sqrt(xs[0])


_BITWISE: dict[int, Callable[[mx.array, mx.array], mx.array]] = {
    0: mx.bitwise_and,
    1: mx.bitwise_or,
    2: mx.bitwise_xor,
    3: mx.left_shift,
    4: mx.right_shift,
}


@register("BitwiseBinary", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "LeftShift", "RightShift")
def bitwise_binary(node: Node, xs: list[mx.array]) -> mx.array:
    (op,) = node.args
    return _BITWISE[op](xs[0], xs[1])


@register("Select")
def select(node: Node, xs: list[mx.array]) -> mx.array:
    return mx.where(xs[0], xs[1], xs[2])


@register("AsType")
def astype(node: Node, xs: list[mx.array]) -> mx.array:
    (dtype,) = node.args
    return xs[0].astype(dtype)


@register("View")
def view(node: Node, xs: list[mx.array]) -> mx.array:
    (dtype,) = node.args
    return xs[0].view(dtype)


@register("Hadamard")
def hadamard(node: Node, xs: list[mx.array]) -> mx.array:
    (scale,) = node.args
    return mx.hadamard_transform(xs[0], scale=scale)
