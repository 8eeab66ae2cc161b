"""The dtype table shared with the Rust core.

The file stores a dtype as a small code; the binding maps between codes and
Python objects through this table, so the Rust side never imports MLX.  The
order is part of the file format (``DType`` in ``mlxfn.fbs``): append only.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

DTYPE_TABLE: tuple[mx.Dtype, ...] = (
    mx.bool_,
    mx.uint8,
    mx.uint16,
    mx.uint32,
    mx.uint64,
    mx.int8,
    mx.int16,
    mx.int32,
    mx.int64,
    mx.float16,
    mx.float32,
    mx.float64,
    mx.bfloat16,
    mx.complex64,
)

# How constant bytes are viewed on the way into MLX (bfloat16 as its bits).
NUMPY_DTYPES: dict[mx.Dtype, type] = {
    mx.bool_: np.bool_,
    mx.uint8: np.uint8,
    mx.uint16: np.uint16,
    mx.uint32: np.uint32,
    mx.uint64: np.uint64,
    mx.int8: np.int8,
    mx.int16: np.int16,
    mx.int32: np.int32,
    mx.int64: np.int64,
    mx.float16: np.float16,
    mx.float32: np.float32,
    mx.float64: np.float64,
    mx.bfloat16: np.uint16,
    mx.complex64: np.complex64,
}
