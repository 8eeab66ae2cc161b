"""A state-space model (mlx-lm's mamba, ``ArraysCache``) through one file:
a chunked step function, the state in and out, one trace per chunk length
(mlx-lm unrolls the recurrence over the tokens: each length is another
graph).  Greedy generation must give mlx-lm's own tokens."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn

import llm_one_file as llm  # examples/ (pyproject's pythonpath); needs mlx-lm: the test extra installs it


def test_mamba_in_chunks(tmp_path: Path) -> None:
    model = llm.tiny_mamba()
    path = tmp_path / "mamba.mlxfn"
    llm.export_ssm(model, path)
    fn = mlxfn.import_function(path)
    assert sorted(t.signature.positional[0].shape[1] for t in fn.traces) == sorted(llm.CHUNKS)
    for length in (3, 17, 40):
        prompt = [(7 * i + 3) % 128 for i in range(length)]
        expected = llm.generate_directly(model, prompt, 12)
        assert len(set(expected)) > 4, "a degenerate model tells nothing"
        assert llm.generate_chunked(fn, model, prompt, 12) == expected, f"prompt of {length}"
    # A chunk length that was not traced: MLX's error, listing what the file serves.
    with pytest.raises(ValueError, match="No imported function"):
        fn(mx.zeros((1, 5), mx.int32), *llm.empty_state(model))
