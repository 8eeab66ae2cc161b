"""Exports SIGKILLed at every point of the write leave the complete old file
or the complete new one, and the next export removes what they left.

The writer (rust/mlxfn-core/src/atomic.rs, writer.rs) writes a locked
temporary ``.NAME.XXXX.tmp`` beside the target and renames it over the
target; before writing it removes the temporaries of the same target whose
lock it can take (those of dead writers).  Its test hook
(``MLXFN_WRITE_PAUSE=<point>``) makes a child pause at a named point and say
so, so each kill lands exactly there: deterministic, whatever the disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mlx.core as mx
import pytest

import mlxfn

N = 4 * 1024 * 1024  # int32 elements: 16 MB of weights per version
X = mx.ones((4,))
# Every point the writer reports, in order, and whether the target holds the
# new version when the writer dies there.
POINTS = [("temporary", False), ("constants", False), ("graph", False), ("renamed", True)]

EXPORT = textwrap.dedent(
    f"""
    import sys
    import mlx.core as mx
    import mlxfn
    path, version = sys.argv[1], int(sys.argv[2])
    w = mx.arange({N}, dtype=mx.int32) + version
    mx.eval(w)
    mlxfn.export_function(path, lambda x: (x * w[:4]).sum() + w[-1], mx.ones((4,)), metadata=str(version))
    print("done", flush=True)
    """
)


def expected_output(version: int) -> mx.array:
    """What version's function computes, from the five weights it reads."""
    w = mx.array([0, 1, 2, 3, N - 1], dtype=mx.int32) + version
    return (X * w[:4]).sum() + w[4]


def temporaries(directory: Path) -> set[str]:
    return {n for n in os.listdir(directory) if n.startswith(".model.mlxfn.") and n.endswith(".tmp")}


def export(path: Path, version: int, pause: str | None = None) -> None:
    """Export ``version`` over ``path`` in a child; with ``pause``, SIGKILL it
    once it reports that it stopped at that point."""
    env = {k: v for k, v in os.environ.items() if k != "MLXFN_WRITE_PAUSE"}
    if pause is not None:
        env["MLXFN_WRITE_PAUSE"] = pause
    cmd = [sys.executable, "-c", EXPORT, str(path), str(version)]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None and child.stderr is not None
    if pause is None:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0 and out.strip() == "done", err
        return
    line = child.stderr.readline()
    assert line.strip() == f"mlxfn: write paused at {pause}", line
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL


def check_complete(path: Path) -> int:
    """The file is complete: every constant matches its hash, and the function
    computes its version's output.  Returns the version."""
    fn, metadata = mlxfn.import_function(path, return_metadata=True, verify=True)
    version = int(metadata)
    assert mx.array_equal(fn(X)[0], expected_output(version)).item()
    return version


@pytest.mark.parametrize(("point", "new"), POINTS)
def test_a_writer_killed_at_each_point_leaves_the_old_or_the_new_file(tmp_path: Path, point: str, new: bool) -> None:
    path = tmp_path / "model.mlxfn"
    export(path, 0)
    export(path, 1, pause=point)
    assert check_complete(path) == (1 if new else 0)
    left = temporaries(tmp_path)
    assert len(left) == (0 if new else 1), left  # before the rename, the temporary stays behind
    export(path, 2, pause=point)  # the next writer removes it (and may leave its own)
    assert not left & temporaries(tmp_path), "a dead writer's temporary survived the next export"
    export(path, 3)
    assert sorted(os.listdir(tmp_path)) == ["model.mlxfn"]
    assert check_complete(path) == 3


def test_a_first_export_killed_before_the_rename_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "model.mlxfn"
    export(path, 0, pause="graph")
    assert not path.exists() and len(temporaries(tmp_path)) == 1
    export(path, 1)
    assert sorted(os.listdir(tmp_path)) == ["model.mlxfn"] and check_complete(path) == 1
