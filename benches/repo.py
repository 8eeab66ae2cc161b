"""How the repository's folders of scripts reach one another: this one place.

``benches/`` and ``examples/`` are folders of scripts, not packages: running
``python benches/compare.py`` puts ``benches/`` first on ``sys.path``, and
pytest gets ``benches/`` and ``examples/`` from ``pythonpath`` in
pyproject.toml.  What a script needs from the other folder it asks here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def example(name: str) -> ModuleType:
    """The module ``examples/<name>.py``, imported once under its own name
    (the same module object as a plain ``import <name>`` under pytest)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
