"""mlxfn: export and import MLX functions, built for large models.

A drop-in replacement for ``mx.export_function``, ``mx.import_function`` and
``mx.exporter``: the same calls and conventions, a file format with the
weights in page-aligned segments that are memory-mapped on import.
"""

from __future__ import annotations

from ._export import FunctionExporter, export_function, exporter
from ._import import ImportedFunction, import_function
from ._mlxfn import FORMAT_VERSION, __version__
from .errors import (
    FormatError,
    IntegrityError,
    ReplayError,
    MlxfnError,
    UnsupportedPrimitiveError,
    VersionError,
)

__all__ = [
    "export_function",
    "import_function",
    "exporter",
    "FunctionExporter",
    "ImportedFunction",
    "MlxfnError",
    "FormatError",
    "VersionError",
    "IntegrityError",
    "ReplayError",
    "UnsupportedPrimitiveError",
    "FORMAT_VERSION",
    "__version__",
]
