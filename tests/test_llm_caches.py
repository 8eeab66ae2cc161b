"""mlx-lm's other caches through one file (examples/llm_one_file.py):
its ``QuantizedKVCache`` (each layer's keys and values as packed arrays,
scales and biases) and a sliding window past its length (what mlx-lm's
``RotatingKVCache(max_size=w, keep=0)`` computes, with the position given to
the decode step as an input array, as RoPE needs it past the window).

Greedy generation with the imported function must give the token ids of
mlx-lm's own generation with that cache.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn
from mlxfn.dynamic import MAX_SIZE
from mlxfn.ir import Trace

import llm_one_file as llm  # examples/ (pyproject's pythonpath); needs mlx-lm: the test extra installs it


def cache_lengths(trace: Trace) -> tuple[int, int] | None:
    """The cache lengths a decode trace serves (axis 2 of its cache arrays)."""
    found = {(d.lo, d.hi) for d in trace.dims for i, axis in d.axes if axis == 2}
    assert len(found) <= 1
    return found.pop() if found else None


def test_quantized_kv_cache(tmp_path: Path) -> None:
    model = llm.tiny_model("llama", num_attention_heads=2, num_key_value_heads=1)  # heads of whole groups
    path = tmp_path / "llm.mlxfn"
    llm.export(model, path, kind="quantized")
    fn = mlxfn.import_function(path)
    (decode,) = [t for t in fn.traces if len(t.signature.positional) > 1]
    assert len(decode.signature.positional) == 1 + 6 * 2  # packed keys, scales, biases; the same for values
    assert cache_lengths(decode) == (0, MAX_SIZE)
    for length in (3, 17, 300):
        prompt = [(7 * i + 3) % 128 for i in range(length)]
        expected = llm.generate_directly(model, prompt, 12, "quantized")
        assert len(set(expected)) > 2, "a degenerate model tells nothing"
        assert llm.generate(fn, prompt, 12, "quantized") == expected, f"prompt of {length}"


def test_a_sliding_window_past_its_length(tmp_path: Path) -> None:
    model = llm.tiny_model("llama")
    path = tmp_path / "llm.mlxfn"
    llm.export(model, path, kind="window")
    fn = mlxfn.import_function(path)
    decode = [t for t in fn.traces if len(t.signature.positional) > 1]
    # Up to the window the cache grows; from it on the step keeps the last
    # WINDOW tokens (a slice the graph has only then): two traces.
    assert sorted(cache_lengths(t) for t in decode) == [(0, llm.WINDOW - 1), (llm.WINDOW, MAX_SIZE)]
    assert all(t.signature.positional[1].shape == () for t in decode)  # the position, an input array
    for length in (3, 17, 40):  # generation goes past the window in each
        prompt = [(7 * i + 3) % 128 for i in range(length)]
        expected = llm.generate_directly(model, prompt, 30, "window")
        assert len(set(expected)) > 4, "a degenerate model tells nothing"
        assert llm.generate(fn, prompt, 30, "window") == expected, f"prompt of {length}"


def test_a_window_cache_refuses_several_tokens_after_a_prompt() -> None:
    cache = llm.WindowCache(4, mx.array(9))
    with pytest.raises(ValueError, match="one at a time"):
        cache.make_mask(3)
