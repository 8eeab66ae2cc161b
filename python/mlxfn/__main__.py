"""``python -m mlxfn``: the ``mlxfn`` command, plus ``--cmake-dir`` for C++ builds.

``python -m mlxfn --cmake-dir`` prints the directory of the installed
package's ``mlxfnConfig.cmake``, as ``python -m mlx --cmake-dir`` does for
MLX: ``cmake -Dmlxfn_DIR="$(python -m mlxfn --cmake-dir)"`` then lets
``find_package(mlxfn CONFIG)`` give the target ``mlxfn::mlxfn``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def cmake_dir() -> Path:
    """Where the package's CMake files are (``share/cmake/mlxfn`` inside it)."""
    return Path(__file__).resolve().parent / "share" / "cmake" / "mlxfn"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the CMake directory for ``--cmake-dir``; else run the ``mlxfn`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--cmake-dir"]:
        found = cmake_dir()
        if not (found / "mlxfnConfig.cmake").is_file():
            print(f"mlxfn: no C++ runtime in this install ({found} has no mlxfnConfig.cmake)", file=sys.stderr)
            return 1
        print(found)
        return 0
    from mlxfn.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
