"""Running a script on local ranks with ``mlx.launch --backend ring``
(shared by benches/distributed.py and tests/test_distributed.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

LAUNCH = Path(sys.executable).parent / "mlx.launch"
RANKS = 2


def free_ports(count: int) -> int:
    """A port from which ``count`` consecutive ports are free (the ring
    backend listens on one port per rank)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        try:
            for port in range(first + 1, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no free ports for the ring backend")


def launch(script: Path, *args: str, timeout: float) -> None:
    """``script args`` on RANKS local ranks.  The launcher and its ranks run
    in a process group of their own, killed whole if they outlive
    ``timeout``; a timeout or a failure is a RuntimeError with the end of
    their output."""
    command = [str(LAUNCH), "--backend", "ring", "-n", str(RANKS), "--starting-port", str(free_ports(RANKS))]
    command += ["--python", sys.executable, str(script), *args]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise RuntimeError(f"{script.name} on {RANKS} ranks did not finish in {timeout} s:\n{output[-4000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} failed on {RANKS} ranks:\n{output[-4000:]}")
