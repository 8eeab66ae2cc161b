"""mlx-lm's default ``KVCache`` through one file: one trace for the prefill
(every prompt of 2 tokens or more) and one for the decode step (every cache
length), though the cache's buffer grows by multiples of 256.

Greedy generation with the imported function must give the token ids of
mlx-lm's own generation (the model with ``make_prompt_cache``), for prompts
on both sides of a multiple of 256; a batch of two, traced at one, must give
the original step function's tokens.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import pytest

import mlxfn
from mlxfn.dynamic import MAX_SIZE
from mlxfn.ir import Op, Trace, has_expr

import llm_one_file as llm  # examples/ (pyproject's pythonpath); needs mlx-lm: the test extra installs it


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, mlxfn.ImportedFunction]:
    model = llm.tiny_model("llama")
    path = tmp_path_factory.mktemp("kv") / "llm.mlxfn"
    llm.export(model, path, kind="kv")
    return model, mlxfn.import_function(path)


def ranges(trace: Trace) -> dict[tuple[int, int], tuple[int, int]]:
    """(input, axis) -> the sizes the trace serves there."""
    return {axis: (d.lo, d.hi) for d in trace.dims for axis in d.axes}


def follows_a_step(trace: Trace) -> bool:
    """Whether a number of the trace steps with a size (the buffer: ``ceil(n / 256) * 256``)."""
    exprs = [e for n in trace.nodes for _, _, e in n.output_exprs]
    return any(isinstance(e, Op) for e in exprs) or any(
        isinstance(a, Op) for n in trace.nodes for a in n.args if has_expr(a)
    )


def test_one_trace_serves_every_prompt_and_one_every_cache(exported: tuple[nn.Module, mlxfn.ImportedFunction]) -> None:
    _, fn = exported
    prefill = [t for t in fn.traces if len(t.signature.positional) == 1]
    decode = [t for t in fn.traces if len(t.signature.positional) > 1]
    # The one-token prompt has no causal mask (another graph): a trace of its own.
    long = [t for t in prefill if (0, 1) in ranges(t)]
    assert len(prefill) == 2 and len(long) == 1, [t.describe_dims() for t in prefill]
    assert ranges(long[0])[(0, 1)] == (2, MAX_SIZE) and follows_a_step(long[0])
    (step,) = decode
    cache = [axis for axis in ranges(step) if axis[1] == 2]
    assert len(cache) == len(step.signature.positional) - 1
    assert {ranges(step)[axis] for axis in cache} == {(0, MAX_SIZE)}
    assert ranges(step)[(0, 0)] == (1, MAX_SIZE)  # the batch: every input's axis 0


@pytest.mark.parametrize(("length", "count"), [(3, 24), (17, 24), (300, 6), (2000, 3)])
def test_greedy_generation_equals_mlx_lm(
    exported: tuple[nn.Module, mlxfn.ImportedFunction], length: int, count: int
) -> None:
    model, fn = exported
    prompt = [(7 * i + 3) % 128 for i in range(length)]
    expected = llm.generate_directly(model, prompt, count)
    assert len(set(expected)) > 1 or count < 4, "a degenerate model tells nothing"
    assert llm.generate(fn, prompt, count) == expected


def test_a_cache_crossing_a_multiple_of_256(exported: tuple[nn.Module, mlxfn.ImportedFunction]) -> None:
    model, fn = exported
    prompt = [(5 * i + 1) % 128 for i in range(254)]  # the decode steps fill 255, 256, 257, ...
    assert llm.generate(fn, prompt, 5) == llm.generate_directly(model, prompt, 5)


def test_a_batch_of_two(exported: tuple[nn.Module, mlxfn.ImportedFunction]) -> None:
    model, fn = exported
    step = llm.step_function(model, "kv")
    tokens = mx.array([[3, 10, 17, 24, 31], [5, 12, 19, 26, 33]], dtype=mx.int32)
    ours, theirs = fn(tokens), step(tokens)
    for _ in range(4):
        token = mx.argmax(theirs[0], axis=-1).astype(mx.int32)
        assert mx.array_equal(mx.argmax(ours[0], axis=-1), token).item()
        assert all(a.shape == b.shape for a, b in zip(ours, theirs))
        ours, theirs = fn(token[:, None], *ours[1:]), step(token[:, None], *theirs[1:])
