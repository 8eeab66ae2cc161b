"""Every primitive in MLX's export table has a handler, and every handler a test.

"Has a test" is measured: conftest.py wraps every handler so that running
it records its name, and this check runs after every other test of the
session.  When the primitive suites were not part of the session (a run of
this file alone), they run in a child pytest that reports what it ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlxfn.distributed import COLLECTIVES
from mlxfn.replay import supported_primitives

from conftest import HANDLERS_RUN, RECORD_TO

SUITES = (
    "test_primitives.py",
    "test_primitives_synthetic.py",
    "test_primitives_transforms.py",
    "test_distributed.py",
)

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


def handlers_run(session: pytest.Session, tmp_path: Path) -> set[str]:
    ran = {Path(str(item.fspath)).name for item in session.items}
    if all(suite in ran for suite in SUITES):
        return set(HANDLERS_RUN)
    record = tmp_path / "handlers.txt"
    here = Path(__file__).parent
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(here / s) for s in SUITES)],
        env={**os.environ, RECORD_TO: str(record)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert child.returncode == 0, child.stdout[-3000:]
    return set(record.read_text().split())


def test_every_handler_is_run_by_a_test(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    untested = supported_primitives() - handlers_run(request.session, tmp_path)
    assert not untested, f"registered but never run by a test: {sorted(untested)}"


def test_no_handler_outside_mlx_table() -> None:
    extra = supported_primitives() - MLX_EXPORT_TABLE - MLX_EXPORT_ALIASES - COLLECTIVES
    assert not extra, f"handlers for names MLX never reports: {sorted(extra)}"
