"""Exports SIGKILLed at random points leave the complete old file or the
complete new one, and the next export removes what the killed one left.

The writer (rust/mlxfn-core/src/writer.rs) writes a temporary file
``.NAME.XXXX.tmp`` beside the target, holding an exclusive ``flock`` on it,
and renames it over the target; before writing it removes the temporaries of
the same target whose lock it can take (those of dead writers).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlx.core as mx

import mlxfn

N = 48 * 1024 * 1024  # int32 elements: 192 MB of weights per version
ROUNDS = 10
X = mx.ones((4,))

# The child builds version v's weights, says "ready", exports, says "done".
EXPORT = textwrap.dedent(
    f"""
    import sys
    import mlx.core as mx
    import mlxfn
    path, version = sys.argv[1], int(sys.argv[2])
    w = mx.arange({N}, dtype=mx.int32) + version
    mx.eval(w)
    print("ready", flush=True)
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


def export(path: Path, version: int, kill: tuple[str, float] | None = None) -> bool:
    """Export ``version`` over ``path`` in a child process.  ``kill``:
    ("time", s) SIGKILLs it s seconds after it starts exporting; ("temp", s)
    s seconds after its temporary file appears (so mid-write).  Returns
    whether the export completed."""
    child = subprocess.Popen([sys.executable, "-c", EXPORT, str(path), str(version)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    if kill is not None:
        how, delay = kill
        if how == "temp":
            before = temporaries(path.parent)
            while child.poll() is None and not temporaries(path.parent) - before:
                time.sleep(0.0005)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    done = child.stdout.readline().strip() == "done"
    child.communicate(timeout=300)
    return done and child.returncode == 0


def check_complete(path: Path, versions: tuple[int, ...]) -> int:
    """The file at ``path`` is one of ``versions``, complete: every constant
    matches its hash, and the function computes that version's output."""
    fn, metadata = mlxfn.import_function(path, return_metadata=True, verify=True)
    version = int(metadata)
    assert version in versions, (version, versions)
    assert mx.array_equal(fn(X)[0], expected_output(version)).item()
    return version


def test_sigkill_during_export_leaves_old_or_new_file(tmp_path: Path) -> None:
    path = tmp_path / "model.mlxfn"
    start = time.perf_counter()
    assert export(path, 0)
    export_s = time.perf_counter() - start
    rng = random.Random(20261125)
    current, kept_old, left_behind = 0, 0, 0
    for version in range(1, ROUNDS + 1):
        # Half the kills at a random time from the start of the export (some
        # before the temporary exists, some after the rename), half at a
        # random time after the temporary appeared (while it is written).
        kill = ("time", rng.uniform(0, export_s)) if version % 2 else ("temp", rng.uniform(0, 0.1))
        done = export(path, version, kill)
        left = temporaries(tmp_path)
        # The export just killed removed the temporary of the one before.
        assert len(left) <= 1, left
        left_behind += len(left)
        found = check_complete(path, (version,) if done else (current, version))
        kept_old += found == current
        current = found
    # Kills that landed while the new file was being written left the old one.
    assert left_behind >= 1 and kept_old >= 1, (left_behind, kept_old)
    # The next complete export removes what the killed writers left behind.
    assert export(path, 99)
    assert sorted(os.listdir(tmp_path)) == ["model.mlxfn"]
    assert check_complete(path, (99,)) == 99
