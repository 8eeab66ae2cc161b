"""The dtype table shared with the Rust core.

The file stores a dtype as a small code; the binding maps between codes and
Python objects through this table, so the Rust side never imports MLX.  The
order is written once, in the core (``DType`` in ``dtype.rs``, held to
``mlxfn.fbs`` by a test): the binding's ``DTYPE_NAMES`` are MLX's names in
code order, and this table looks each one up in ``mlx.core``.
"""

from __future__ import annotations

import mlx.core as mx

from . import _mlxfn


def _mlx_dtype(name: str) -> mx.Dtype:
    """MLX's dtype named ``name`` (``bool`` is ``mx.bool_`` in Python)."""
    dtype = getattr(mx, "bool_" if name == "bool" else name, None)
    if not isinstance(dtype, mx.Dtype):
        raise ImportError(f"mlxfn's core knows the dtype {name!r}, which this mlx has not")
    return dtype


DTYPE_TABLE: tuple[mx.Dtype, ...] = tuple(_mlx_dtype(name) for name in _mlxfn.DTYPE_NAMES)
