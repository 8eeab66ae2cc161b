"""Rebuild traced graphs from MLX ops.

Importing this package registers every handler (one module per family).
"""

from __future__ import annotations

from . import (  # noqa: F401  (imported for their registrations)
    custom_kernel,
    elementwise,
    fast,
    fft,
    indexing,
    linalg,
    linalg_cpu,
    random,
    reduction,
    scatter,
    shape,
)
from .registry import handler_for, register, supported_primitives, unsupported_reason
from .plan import ReplayError, build_replay

__all__ = [
    "handler_for",
    "register",
    "supported_primitives",
    "unsupported_reason",
    "build_replay",
    "ReplayError",
]
