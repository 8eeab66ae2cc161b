"""The layout shows the pipeline (trace -> write -> read -> replay): the
replay never reaches for the tracer, and the binding never imports the
package.  Checked on the sources, so a new import that breaks it fails."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "mlxfn"


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The in-package modules a source file imports (``from . import x`` included)."""
    module = module_of(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("mlxfn")}


def closure(start: str) -> set[str]:
    """Every package module reachable from ``start`` (the package facade,
    mlxfn/__init__.py, aside: it is the user's door, not a dependency)."""
    sources = {module_of(p): p for p in PACKAGE.rglob("*.py")}
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen or module not in sources or module == "mlxfn":
            continue
        seen.add(module)
        todo += imports(sources[module])
    return seen


def test_the_replay_pulls_in_no_tracer_and_no_writer() -> None:
    reached = closure("mlxfn.replay")
    assert "mlxfn.ir" in reached
    assert not reached & {"mlxfn.trace", "mlxfn.dynamic", "mlxfn._export", "mlxfn._import"}, sorted(reached)


def test_the_ir_is_the_lowest_floor() -> None:
    assert closure("mlxfn.ir") == {"mlxfn.ir"}


def test_the_binding_imports_nothing_from_the_package() -> None:
    for source in (ROOT / "rust" / "mlxfn-py" / "src").glob("*.rs"):
        assert not re.search(r"\bimport\(|import_module|PyModule::import", source.read_text()), source
