"""An LLM in one file (examples/llm_one_file.py): real mlx-lm architectures.

One shapeless export holds the prefill (any prompt length) and the decode
step (a KV cache of any length, as arrays); greedy generation with the
imported function must give exactly the token ids of the model run directly
with mlx-lm's own cache.  Dense (Llama), biases in the projections (Qwen2),
mixture of experts (Mixtral) and 4-bit quantized weights, with mlx-lm's
default ``KVCache`` and with its ``ConcatenateKVCache``.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn
import mlxfn.ir
from mlxfn.dynamic import MAX_SIZE

import llm_one_file as llm  # examples/ (pyproject's pythonpath); needs mlx-lm: the test extra installs it

PROMPTS = (3, 17, 40)


@pytest.mark.parametrize(
    ("arch", "quantize", "kind"),
    [
        ("llama", False, "kv"),
        ("qwen2", False, "kv"),
        ("mixtral", False, "kv"),
        ("llama", True, "kv"),
        ("llama", False, "concatenate"),
    ],
)
def test_greedy_generation_matches_the_model_for_every_prompt_length(
    tmp_path: Path, arch: str, quantize: bool, kind: str
) -> None:
    model = llm.tiny_model(arch, quantize)
    path = tmp_path / "llm.mlxfn"
    llm.export(model, path, kind=kind)
    fn = mlxfn.import_function(path)
    prefill = [t for t in fn.traces if len(t.signature.positional) == 1]
    decode = [t for t in fn.traces if len(t.signature.positional) > 1]

    # Every prompt length is served, the one-token prompt by a trace of its own
    # (no causal mask); every cache length and batch by the decode traces.
    def lengths(trace: mlxfn.ir.Trace) -> tuple[int, int]:
        """The prompt lengths (axis 1 of the tokens) a prefill trace serves."""
        dims = [d for d in trace.dims if (0, 1) in d.axes]
        length = trace.signature.positional[0].shape[1]
        return (dims[0].lo, dims[0].hi) if dims else (length, length)

    served = sorted(lengths(t) for t in prefill)
    assert served[0] == (1, 1) and served[-1][1] == MAX_SIZE
    assert all(a[1] + 1 == b[0] for a, b in zip(served, served[1:])), served
    # Every cache length (2 layers: keys and values; an empty cache too), and
    # every batch: the tokens' and the cache's, traced at one, move together
    # (Mixtral's expert sort switches on at 32 tokens: a trace of its own).
    cache_lengths = {(d.lo, d.hi, len(d.axes)) for t in decode for d in t.dims if (1, 2) in d.axes}
    assert cache_lengths == {(0, MAX_SIZE, 4)}
    batches = sorted((d.lo, d.hi, len(d.axes)) for t in decode for d in t.dims if (0, 0) in d.axes)
    assert batches[0][0] == 1 and batches[-1][1] == MAX_SIZE and {n for _, _, n in batches} == {5}, batches
    assert all(a[1] + 1 == b[0] for a, b in zip(batches, batches[1:])), batches
    for length in PROMPTS:
        prompt = [(7 * i + 3) % 128 for i in range(length)]
        expected = llm.generate_directly(model, prompt, 32)
        assert len(set(expected)) > 4, "a degenerate model tells nothing"
        assert llm.generate(fn, prompt, 32) == expected, f"prompt of {length}"
    assert llm.generate(fn, [5], 4) == llm.generate_directly(model, [5], 4)
    # A batch of two: the prefill and the decode steps give the original step's
    # tokens.  (Mixtral's prefill keeps its batch of one: its expert sort
    # switches on at 32 tokens, 4 prompts of 8, too close to fit the batch.)
    step = llm.step_function(model, kind)
    tokens = mx.array([[3, 10, 17, 24], [5, 12, 19, 26]], dtype=mx.int32)
    theirs = step(tokens)
    ours = theirs if arch == "mixtral" else fn(tokens)
    for _ in range(6):
        token = mx.argmax(theirs[0], axis=-1).astype(mx.int32)
        assert mx.array_equal(mx.argmax(ours[0], axis=-1), token).item()
        ours, theirs = fn(token[:, None], *ours[1:]), step(token[:, None], *theirs[1:])


def test_mlx_own_shapeless_export_does_not_serve_another_prompt_length(tmp_path: Path) -> None:
    """Why this exists: MLX's own file fails (or is wrong) where mlxfn's works."""
    model = llm.tiny_model("llama")
    step = llm.step_function(model)
    path = tmp_path / "mlx.mlx"
    mx.export_function(str(path), step, mx.zeros((1, 8), mx.int32), shapeless=True)
    theirs = mx.import_function(str(path))
    tokens = mx.array([[3, 10, 17, 24, 31]], dtype=mx.int32)
    expected = step(tokens)[0]
    try:
        got = theirs(tokens)[0]
        assert not (got.shape == expected.shape and mx.array_equal(got, expected).item())
    except ValueError:
        pass
