"""What mlxfn asks of MLX that MLX's type stubs (mlx 0.32) do not declare:
its version string, the buffer protocol of an evaluated array, and
``mx.import_function(..., return_metadata=True)``'s pair."""

from __future__ import annotations

from typing import Any, cast

import mlx.core as mx

MLX_VERSION: str = cast(Any, mx).__version__


def byte_view(arr: mx.array) -> memoryview:
    """The bytes of an evaluated, row-contiguous array, without a copy (a
    bfloat16 array's too: the view is cast to bytes)."""
    return memoryview(cast(Any, arr)).cast("B")


def array_view(arr: mx.array) -> memoryview:
    """The array's own buffer view (shape, strides and format as MLX gives them)."""
    return memoryview(cast(Any, arr))


def import_with_metadata(path: str) -> tuple[Any, str]:
    """MLX's own ``import_function(path, return_metadata=True)``: (function, metadata)."""
    fn, metadata = cast(Any, mx.import_function(path, return_metadata=True))
    return fn, str(metadata)
