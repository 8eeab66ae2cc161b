"""How an imported trace runs call after call (``mlxfn._runner``).

The policy is about speed, but which calls run Python, which run MLX's tape
and when fusion starts are outcomes: counted here through the Python replay
itself, which runs once per trace MLX makes and at every uncompiled call.
Every call's output is compared with the function's."""

from __future__ import annotations

import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import mlx.core as mx
import pytest

from mlxfn import _runner
from mlxfn._runner import FUSE_AFTER_CALLS, FUSE_AFTER_CALLS_CACHED, Runner

X = mx.arange(6, dtype=mx.float32).reshape(2, 3)
EXPECTED = mx.exp(X * 2.0) + 1.0


class CountingReplay:
    """A replay that counts how often its Python body runs."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, x: mx.array) -> tuple[mx.array, ...]:
        self.runs += 1
        return (mx.exp(x * 2.0) + 1.0,)


@pytest.fixture(autouse=True)
def private_kernel_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Markers go to this test's own directory, never the user's cache."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield


def call(runner: Runner, times: int) -> list[str]:
    """Call ``times`` times; the state before each call; every output checked."""
    states = []
    for _ in range(times):
        states.append(runner.state)
        (out,) = runner(X)
        assert mx.allclose(out, EXPECTED).item()
    return states


needs_bridge = pytest.mark.skipif(_runner._no_fuse() is None, reason="the C++ bridge did not load")


@needs_bridge
def test_first_call_compiles_without_fusion_and_fusion_waits_for_many_calls(tmp_path: Path) -> None:
    replay = CountingReplay()
    runner = Runner(replay, key="trace-a")
    states = call(runner, FUSE_AFTER_CALLS + 3)
    assert states[0] == "replay" and states[1] == "compiled"
    assert states[FUSE_AFTER_CALLS] == "compiled" and states[FUSE_AFTER_CALLS + 1] == "fused"
    assert replay.runs == 2  # traced once unfused, once fused: no Python at any other call
    assert _runner._marker("trace-a").exists()


@needs_bridge
def test_a_marker_left_by_an_earlier_process_fuses_after_a_few_calls() -> None:
    call(Runner(CountingReplay(), key="trace-b"), FUSE_AFTER_CALLS + 1)  # leaves the marker
    replay = CountingReplay()
    states = call(Runner(replay, key="trace-b"), FUSE_AFTER_CALLS_CACHED + 2)
    assert states[1] == "compiled"
    assert states[FUSE_AFTER_CALLS_CACHED] == "compiled" and states[FUSE_AFTER_CALLS_CACHED + 1] == "fused"
    assert replay.runs == 2


@needs_bridge
def test_without_a_key_no_marker_is_left() -> None:
    call(Runner(CountingReplay(), key=None), FUSE_AFTER_CALLS + 1)
    assert not (Path(tempfile.gettempdir()) / "mlx").exists()


@needs_bridge
def test_plain_first_replays_the_first_call_in_python() -> None:
    replay = CountingReplay()
    states = call(Runner(replay, key=None, plain_first=True), 3)
    assert states == ["replay", "replay", "compiled"]
    assert replay.runs == 2  # the plain call, then the unfused trace


def test_without_the_bridge_the_second_call_fuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runner, "_no_fuse", lambda: None)
    replay = CountingReplay()
    states = call(Runner(replay, key="trace-c"), 4)
    assert states == ["replay", "replay", "fused", "fused"]
    assert replay.runs == 2


def test_with_compilation_disabled_every_call_replays() -> None:
    replay = CountingReplay()
    mx.disable_compile()
    try:
        states = call(Runner(replay, key="trace-d"), 5)
    finally:
        mx.enable_compile()
    assert states == ["replay"] * 5
    assert replay.runs == 5


class Body:
    """What one compile of the runner wraps, weakly referenced: it lives exactly
    as long as the compiled function (and so its MLX compile-cache entries)."""

    def __init__(self, replay: _runner.Replay) -> None:
        self.replay = replay

    def __call__(self, *xs: mx.array) -> tuple[mx.array, ...]:
        return self.replay(*xs)


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, weakref.ref[Body]]]:
    """Every compile the runner makes: (the thread that made it, its body)."""
    made: list[tuple[str, weakref.ref[Body]]] = []

    def compiled(replay: _runner.Replay, shapeless: bool = False) -> _runner.Replay:
        body = Body(replay)
        made.append((threading.current_thread().name, weakref.ref(body)))
        fn: _runner.Replay = mx.compile(body, shapeless=shapeless)
        return fn

    monkeypatch.setattr(_runner, "_compiled", compiled)
    return made


def on_thread(work: Callable[[], list[str]]) -> list[str]:
    """``work()`` on a new thread (named "worker") that has ended on return."""
    result: list[list[str]] = []
    thread = threading.Thread(target=lambda: result.append(work()), name="worker")
    thread.start()
    thread.join()
    assert result, "the worker raised"
    return result[0]


def alive(made: list[tuple[str, weakref.ref[Body]]]) -> list[str]:
    return [thread for thread, body in made if body() is not None]


@needs_bridge
def test_a_worker_thread_compiles_its_own_and_drops_it_when_it_ends(
    compiles: list[tuple[str, weakref.ref[Body]]],
) -> None:
    replay = CountingReplay()
    runner = Runner(replay, key=None)
    assert call(runner, 3) == ["replay", "compiled", "compiled"]
    assert replay.runs == 1 and alive(compiles) == ["MainThread"]
    assert on_thread(lambda: call(runner, 4)) == ["compiled"] * 4
    assert replay.runs == 2  # one trace on the worker, then its tape: no Python per call
    assert [thread for thread, _ in compiles] == ["MainThread", "worker"]
    assert alive(compiles) == ["MainThread"]  # the worker's went with the worker, before join() returned
    assert call(runner, 2) == ["compiled"] * 2 and replay.runs == 2  # the main thread's is untouched


@needs_bridge
def test_fusion_reached_on_one_thread_is_what_a_new_thread_compiles(
    compiles: list[tuple[str, weakref.ref[Body]]],
) -> None:
    replay = CountingReplay()
    runner = Runner(replay, key=None)
    states = call(runner, FUSE_AFTER_CALLS + 2)
    assert states[FUSE_AFTER_CALLS + 1] == "fused"
    assert len(compiles) == 2 and alive(compiles) == ["MainThread"]  # fusing dropped the unfused one
    assert on_thread(lambda: call(runner, 3)) == ["fused"] * 3
    assert replay.runs == 3 and alive(compiles) == ["MainThread"]


def test_without_the_bridge_a_worker_thread_also_compiles_and_drops_its_own(
    monkeypatch: pytest.MonkeyPatch, compiles: list[tuple[str, weakref.ref[Body]]]
) -> None:
    monkeypatch.setattr(_runner, "_no_fuse", lambda: None)
    replay = CountingReplay()
    runner = Runner(replay, key=None)
    assert on_thread(lambda: call(runner, 4)) == ["replay", "replay", "fused", "fused"]
    assert replay.runs == 2 and compiles[0][0] == "worker" and alive(compiles) == []
    assert call(runner, 2) == ["fused", "fused"] and replay.runs == 3
    assert alive(compiles) == ["MainThread"]


@needs_bridge
def test_dropping_a_runner_drops_what_every_thread_compiled(
    compiles: list[tuple[str, weakref.ref[Body]]],
) -> None:
    held = [Runner(CountingReplay(), key=None)]  # the only reference to the runner
    call(held[0], 2)
    ready, done = threading.Event(), threading.Event()

    def serve() -> None:  # a worker still alive when the runner goes
        call(held[0], 2)
        ready.set()
        done.wait(timeout=60)

    worker = threading.Thread(target=serve, name="worker")
    worker.start()
    try:
        assert ready.wait(timeout=60)
        assert sorted(alive(compiles)) == ["MainThread", "worker"]
        held.clear()
        assert alive(compiles) == []
    finally:
        done.set()
        worker.join()


def test_a_trace_holds_the_compile_mode_lock_and_later_calls_do_not() -> None:
    """MLX's compile mode is process-wide: mlxfn's traces take turns, steady calls take no lock."""
    held: list[bool] = []

    def compiled(*xs: mx.array) -> tuple[mx.array, ...]:
        held.append(_runner._TRACING.locked())
        return xs

    call = _runner._traced_alone(compiled, None)
    x = mx.array(1.0)
    call(x)
    call(x)
    call(x)
    assert held == [True, False, False]
