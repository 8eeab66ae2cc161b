"""Exception classes raised by mlxfn.

They subclass the builtin exception a caller of MLX would already catch
(ValueError for bad files and bad inputs), so code written against
``mx.import_function`` keeps working, while ``except mlxfn.MlxfnError`` catches
every problem mlxfn itself detects.  ``mlxfn/__init__`` registers them with
the Rust binding, which raises them for the core's errors.
"""

from __future__ import annotations


class MlxfnError(Exception):
    """Base class of every error mlxfn detects itself."""


class FormatError(MlxfnError, ValueError):
    """A file is not a valid mlxfn file: truncated, corrupted, or not ours."""


class VersionError(FormatError):
    """A file was written by a newer format version than this mlxfn reads."""


class IntegrityError(FormatError):
    """A constant's bytes do not match the hash stored when it was written."""


class ReplayError(FormatError):
    """A file's graph does not replay: a node's arguments disagree with its
    inputs or with the shapes recorded for its outputs (a damaged or
    hand-made file; mlxfn never writes one)."""


class UnsupportedPrimitiveError(MlxfnError, ValueError):
    """A traced function uses a primitive mlxfn cannot rebuild."""


class ExportError(MlxfnError, ValueError):
    """The writer was handed a graph or constants that disagree with each
    other (a value used before it is defined, a constant of the wrong size)."""


__all__ = [
    "MlxfnError",
    "FormatError",
    "VersionError",
    "IntegrityError",
    "ReplayError",
    "UnsupportedPrimitiveError",
    "ExportError",
]
