"""Every primitive in MLX's export table has a handler, and every handler a test."""

from __future__ import annotations

from mlxfn.replay import supported_primitives
from test_primitives import REAL_TRACE_PRIMITIVES
from test_primitives_synthetic import SYNTHETIC_PRIMITIVES

# MLX 0.32.4's PrimitiveFactory (mlx/export.cpp): the names its export
# callback reports (aliases are remapped to these before the callback).
MLX_EXPORT_TABLE = frozenset(
    """Abs Add AddMM Arange ArcCos ArcCosh ArcSin ArcSinh ArcTan ArcTan2 ArcTanh
    ArgPartition ArgReduce ArgSort AsType AsStrided BitwiseBinary BlockMaskedMM
    Broadcast BroadcastAxes Ceil Concatenate Conjugate Convolution Copy Cos Cosh
    Depends Divide DivMod DynamicSlice DynamicSliceUpdate Equal Erf ErfInv Exp
    Expm1 ExpandDims FFT Flatten Floor FloorDivide Full Gather GatherAxis GatherMM
    Greater GreaterEqual Hadamard Imag Less LessEqual Log Log1p LogicalNot
    LogicalAnd LogicalOr LogAddExp LogSumExp MaskedScatter Matmul Maximum Minimum
    Multiply Negative NotEqual NumberOfElements Pad Partition Power
    QuantizedMatmul GatherQMM RandomBits Real Remainder Reshape Reduce Round Scan
    Scatter ScatterAxis SearchSorted Select Sigmoid Sign Sin Sinh Slice
    SliceUpdate Softmax Sort Split Square Squeeze Sqrt StopGradient Subtract Tan
    Tanh View Transpose Unflatten QRF SVD Inverse Cholesky Eig Eigh Quantize
    RMSNorm RMSNormVJP LayerNorm LayerNormVJP RoPE ScaledDotProductAttention
    CustomKernel""".split()
)
# The other names the table accepts for the same primitives.
MLX_EXPORT_ALIASES = frozenset(
    """Log2 Log10 NaNEqual Rsqrt And Or Sum Prod Min Max CumSum CumProd CumMin
    CumMax CumLogaddexp BitwiseAnd BitwiseOr BitwiseXor LeftShift
    RightShift""".split()
)


def test_every_exportable_primitive_has_a_handler() -> None:
    missing = (MLX_EXPORT_TABLE | MLX_EXPORT_ALIASES) - supported_primitives()
    assert not missing, f"no handler for {sorted(missing)}"


def test_every_handler_has_a_test() -> None:
    untested = supported_primitives() - REAL_TRACE_PRIMITIVES - SYNTHETIC_PRIMITIVES
    assert not untested, f"registered but untested: {sorted(untested)}"


def test_no_handler_outside_mlx_table() -> None:
    extra = supported_primitives() - MLX_EXPORT_TABLE - MLX_EXPORT_ALIASES
    assert not extra, f"handlers for names MLX never reports: {sorted(extra)}"
