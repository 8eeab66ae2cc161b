"""benches/generate.py runs end to end: every side generates the model's tokens.

The script raises SystemExit when a side's token ids differ from the model's
own, so this smoke run (in ``make test``) checks the one-file workflow's
benchmark still measures what it claims.  Its figures come from running it
(README, "Benchmarks")."""

from __future__ import annotations

import pytest

import generate


def test_generation_benchmark_runs_and_every_side_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert generate.main(["--model", "mlxlm-tiny", "--prompt", "5", "--tokens", "4", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "every side generates the same tokens" in out
    assert "mlxfn/mlx-lm" in out
