"""benches/serve.py runs end to end: one process serving two files from threads.

The script raises SystemExit when any call's output differs from the model's
own, and returns 1 when a serving process exited with a non-zero status
after recording its figures (an abort at exit, status 134, is a failure
here, with every status printed).  Its figures come from running it."""

from __future__ import annotations

import pytest

import serve


def test_serving_two_files_from_threads_gives_the_models_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    options = ["--threads", "2", "--calls", "3", "--rounds", "1", "--settle", "0"]
    status = serve.main(["--model", "small", "--model", "small-q4", *options])
    out = capsys.readouterr().out
    assert "every call of every side gave the models' own outputs" in out
    assert "mlxfn:map/mlx" in out and "exit status of each process" in out
    assert status == 0, out
