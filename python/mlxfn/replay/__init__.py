"""Rebuild traced graphs from MLX ops.

Importing this package registers every handler (one module per family).
"""

from __future__ import annotations

from ..errors import ReplayError
from . import (  # noqa: F401  (imported for their registrations)
    custom_kernel,
    distributed,
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
from .interpreter import build_replay, check_handlers
from .registry import handler_for, register, supported_primitives, unsupported_reason

__all__ = [
    "handler_for",
    "register",
    "supported_primitives",
    "unsupported_reason",
    "build_replay",
    "check_handlers",
    "ReplayError",
]
