"""Shared helpers: export a function with mlxfn and with MLX, compare the two."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

import mlxfn


def as_tuple(out: Any) -> tuple[mx.array, ...]:
    if isinstance(out, mx.array):
        return (out,)
    return tuple(out)


def assert_same(got: Sequence[mx.array], want: Sequence[mx.array]) -> None:
    """Bit-for-bit equality: same count, shapes, dtypes and values (NaNs equal)."""
    got, want = as_tuple(got), as_tuple(want)
    assert len(got) == len(want), f"{len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"output {i}: shape {g.shape}, expected {w.shape}"
        assert g.dtype == w.dtype, f"output {i}: dtype {g.dtype}, expected {w.dtype}"
        equal_nan = mx.issubdtype(w.dtype, mx.inexact)
        assert mx.array_equal(g, w, equal_nan=equal_nan).item(), f"output {i} differs"


class Pair:
    """The same function exported by mlxfn and by MLX, imported back by each."""

    def __init__(
        self, tmp_path: Path, fun: Callable[..., Any], *args: Any, shapeless: bool = False, **kwargs: Any
    ) -> None:
        self.ours_path = tmp_path / "fn.mlxfn"
        self.theirs_path = tmp_path / "fn.mlx"
        mlxfn.export_function(self.ours_path, fun, *args, shapeless=shapeless, **kwargs)
        mx.export_function(str(self.theirs_path), fun, *args, shapeless=shapeless, **kwargs)
        self.ours = mlxfn.import_function(self.ours_path)
        self.theirs = mx.import_function(str(self.theirs_path))

    def check(self, *args: Any, original: Callable[..., Any] | None = None, **kwargs: Any) -> tuple[mx.array, ...]:
        """Call both imports; assert ours equals MLX's (and the original, if given)."""
        got = self.ours(*args, **kwargs)
        assert isinstance(got, tuple)
        assert_same(got, self.theirs(*args, **kwargs))
        if original is not None:
            assert_same(got, as_tuple(original(*args, **kwargs)))
        return got


@pytest.fixture
def pair(tmp_path: Path) -> Callable[..., Pair]:
    def make(fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Pair:
        return Pair(tmp_path, fun, *args, **kwargs)

    return make


# ----------------------------------------------------------------------------
# Which primitive handlers the tests ran (test_primitives_coverage.py).

HANDLERS_RUN: set[str] = set()
RECORD_TO = "MLXFN_RECORD_HANDLERS"  # a path: write the names there at the end


@pytest.fixture(autouse=True, scope="session")
def _record_handlers() -> Any:
    """Wrap every registered handler so that running it records its name."""
    from mlxfn.replay import registry

    saved = dict(registry._HANDLERS)

    def recording(name: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def run(node: Any, xs: list[mx.array]) -> Any:
            HANDLERS_RUN.add(name)
            return handler(node, xs)

        return run

    registry._HANDLERS.update({name: recording(name, h) for name, h in saved.items()})
    yield
    registry._HANDLERS.update(saved)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The coverage check runs last, after every test that runs handlers."""
    items.sort(key=lambda item: item.module.__name__ == "test_primitives_coverage" if item.module else False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    import os

    if os.environ.get(RECORD_TO):
        Path(os.environ[RECORD_TO]).write_text("\n".join(sorted(HANDLERS_RUN)))


# ----------------------------------------------------------------------------
# Which runtime runs imported functions (MLXFN_RUNTIME, python/mlxfn/_import.py):
# mlxfn's C++ runtime by default, the Python replay as the portable fallback.

# Modules whose every test runs twice, with the default runtime ("auto": the
# C++ runtime where the bridge has it) and with the Python replay: the API,
# its errors, keyword inputs and several traces (test_api*), mx.grad, vmap
# and compile of an import (test_transforms), shapeless traces at many sizes
# (test_dynamic), threads (test_reliability_concurrency), and every
# primitive (test_primitives*: each is rebuilt once in C++ and once by its
# Python handler, which test_primitives_coverage counts).  Every other module
# runs once, with the runtime MLXFN_RUNTIME names (default "auto").
BOTH_RUNTIMES = {
    "test_api",
    "test_api_errors",
    "test_transforms",
    "test_dynamic",
    "test_reliability_concurrency",
    "test_primitives",
    "test_primitives_synthetic",
    "test_primitives_transforms",
}
# Modules that test the Python replay's own machinery: always the replay.
# test_sharing: its rules for sharing arrays between imports (fn._constants);
# test_reliability_leaks: its caches (_SHARED, _VERIFIED) and one mapping per
# import.  test_runtime_native checks the native path's sharing and unmapping.
# test_unified: it stands in for Apple silicon, whose wheel has no bridge.
PYTHON_ONLY = {"test_sharing", "test_reliability_leaks", "test_unified"}


def _module_name(module: Any) -> str:
    return str(module.__name__).rsplit(".", 1)[-1] if module is not None else ""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    import os

    if _module_name(metafunc.module) in BOTH_RUNTIMES and "_runtime" in metafunc.fixturenames:
        chosen = os.environ.get("MLXFN_RUNTIME") or "auto"
        metafunc.parametrize("_runtime", list(dict.fromkeys([chosen, "python"])), indirect=True)


@pytest.fixture(autouse=True)
def _runtime(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The runtime this test's imports use (set in MLXFN_RUNTIME for it)."""
    import os

    choice = getattr(request, "param", None)
    if choice is None and _module_name(request.module) in PYTHON_ONLY:
        choice = "python"
    if choice is not None:
        monkeypatch.setenv("MLXFN_RUNTIME", choice)
    return os.environ.get("MLXFN_RUNTIME", "auto")
