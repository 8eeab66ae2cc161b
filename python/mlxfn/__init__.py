"""mlxfn: export and import MLX functions, built for large models.

A drop-in replacement for ``mx.export_function``, ``mx.import_function`` and
``mx.exporter``: the same calls and conventions, a file format with the
weights in page-aligned segments that are memory-mapped on import.
"""

from __future__ import annotations

from . import _mlxfn, errors
from ._dtypes import DTYPE_TABLE

# Before anything can reach the binding: the classes it raises, the dtypes it returns.
_mlxfn.register({name: getattr(errors, name) for name in errors.__all__}, list(DTYPE_TABLE))

from ._export import FunctionExporter, export_function, exporter  # noqa: E402
from ._import import ImportedFunction, import_function  # noqa: E402
from ._load import LoadMode  # noqa: E402
from ._mlxfn import FORMAT_VERSION, __version__  # noqa: E402
from .errors import (  # noqa: E402
    ExportError,
    FormatError,
    IntegrityError,
    MlxfnError,
    ReplayError,
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
    "ExportError",
    "LoadMode",
    "FORMAT_VERSION",
    "__version__",
]
