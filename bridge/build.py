"""Build mlxfn's optional C++ bridge (``mlxfn._bridge``) against the installed mlx.

    python bridge/build.py [--out DIR] [--check]

Compiles ``bridge/mlxfn_bridge.cpp`` with nanobind (3.x, the major version
mlx 0.32's own ``mlx.core`` is built with) in MLX's nanobind domain, against
the mlx wheel's ``include/`` and ``lib/libmlx.so``, into
``DIR/_bridge<EXT_SUFFIX>`` (default: ``python/mlxfn``).  nanobind's own
sources are compiled once and cached under ``target/bridge/``.

The module is per Python version (nanobind has no stable ABI before 3.12)
and per mlx version (it checks, at run time, that the mlx it was built
against is the one loaded).  mlxfn imports without it and then copies
constants instead of mapping them.  ``--check`` imports the result and runs
its self-check.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "bridge" / "mlxfn_bridge.cpp"
FLAGS = ["-std=c++20", "-O2", "-fPIC", "-fvisibility=hidden", "-DNB_DOMAIN=mlx", "-DNDEBUG"]


def _mlx_dir() -> Path:
    import mlx

    return Path(list(mlx.__path__)[0])


def _nanobind_version() -> str:
    import nanobind

    version = getattr(nanobind, "__version__", "0")
    if not version.startswith("3."):
        raise SystemExit(f"bridge: nanobind {version} found; mlx 0.32 needs nanobind 3.x")
    return version


def _run(cmd: list[str]) -> None:
    print("  " + shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def build(out_dir: Path) -> Path:
    """Compile and link the bridge into ``out_dir``; returns the module path."""
    import nanobind

    cxx = os.environ.get("CXX", "c++")
    mlx_dir = _mlx_dir()
    includes = [
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{nanobind.include_dir()}",
        f"-I{Path(nanobind.source_dir()).parent / 'ext' / 'robin_map' / 'include'}",
        f"-I{mlx_dir / 'include'}",
    ]
    key = hashlib.sha256(
        " ".join([cxx, sys.version, _nanobind_version(), *FLAGS, *includes]).encode()
    ).hexdigest()[:16]
    cache = ROOT / "target" / "bridge" / key
    cache.mkdir(parents=True, exist_ok=True)
    nb_object = cache / "nb_combined.o"
    if not nb_object.exists():
        tmp = nb_object.with_suffix(".o.tmp")
        _run([cxx, *FLAGS, *includes, "-c", str(Path(nanobind.source_dir()) / "nb_combined.cpp"), "-o", str(tmp)])
        tmp.replace(nb_object)
    bridge_object = cache / "mlxfn_bridge.o"
    _run([cxx, *FLAGS, *includes, "-c", str(SOURCE), "-o", str(bridge_object)])
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"_bridge{sysconfig.get_config_var('EXT_SUFFIX')}"
    tmp_target = target.with_name(target.name + ".tmp")
    link = [cxx, "-shared", str(bridge_object), str(nb_object), f"-L{mlx_dir / 'lib'}", "-lmlx"]
    if sys.platform == "darwin":
        link += ["-undefined", "dynamic_lookup", "-Wl,-rpath,@loader_path/../mlx/lib"]
    else:
        # libmlx.so is found where a wheel install puts it (site-packages/mlx/lib),
        # or already loaded by ``import mlx.core`` (mlxfn imports it first).
        link += ["-Wl,-rpath,$ORIGIN/../mlx/lib", "-Wl,--as-needed"]
    _run([*link, "-o", str(tmp_target)])
    tmp_target.replace(target)  # an importer never sees a half-written module
    return target


def check(out_dir: Path) -> str:
    """Import the built module from ``out_dir`` and return its self-check verdict."""
    code = (
        "import sys, mlx.core; sys.path.insert(0, sys.argv[1]); import _bridge; "
        "print(_bridge.self_check() or 'ok')"
    )
    result = subprocess.run([sys.executable, "-c", code, str(out_dir)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bridge: importing the module failed:\n{result.stderr}")
    return result.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "python" / "mlxfn")
    parser.add_argument("--check", action="store_true", help="import the module and run its self-check")
    args = parser.parse_args()
    target = build(args.out)
    print(f"bridge: built {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
    if args.check:
        verdict = check(args.out)
        print(f"bridge: self-check: {verdict}")
        if verdict != "ok":
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
