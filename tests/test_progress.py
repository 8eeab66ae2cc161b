"""The progress note appears only for large work on a terminal."""

from __future__ import annotations

import io

import pytest

from mlxfn import _progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty,nbytes,shown", [(True, 1 << 30, True), (True, 1 << 20, False), (False, 1 << 30, False)])
def test_progress_note(monkeypatch, tty: bool, nbytes: int, shown: bool):
    err = Tty() if tty else io.StringIO()
    monkeypatch.setattr(_progress.sys, "stderr", err)
    with _progress.progress("loading f:", nbytes):
        pass
    text = err.getvalue()
    assert (text.startswith("mlxfn: loading f: 1.07 GB ...") and "done in" in text) if shown else text == ""
