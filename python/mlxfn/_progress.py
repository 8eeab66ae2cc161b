"""A one-line progress note on stderr for long exports and loads.

Shown only when stderr is a terminal and the work is large, so scripts,
logs and tests stay quiet.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LARGE = 256 << 20  # bytes worth telling a person about


@contextmanager
def progress(action: str, nbytes: int) -> Iterator[None]:
    """Print ``mlxfn: <action> 1.07 GB ... done in 0.42 s`` around a block."""
    show = nbytes >= LARGE and sys.stderr.isatty()
    if show:
        print(f"mlxfn: {action} {nbytes / 1e9:.2f} GB ...", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        yield
    finally:
        if show:
            print(f" done in {time.perf_counter() - start:.2f} s", file=sys.stderr, flush=True)


SLOW = 1.0  # seconds of counted work before a person is told about it


@contextmanager
def counting(action: str, unit: str) -> Iterator[Callable[[], None]]:
    """Count steps of work whose number is not known up front (a shapeless
    export's probes): the block gets a ``tick`` to call at each step.  Once
    the work has taken ``SLOW`` seconds, on a terminal, the line
    ``mlxfn: <action> 12 <unit> (1.3 s)`` is kept up to date in place, and
    ends with ``done in 2.40 s``; quick work prints nothing."""
    show = sys.stderr.isatty()
    start = time.perf_counter()
    count = 0
    shown = False

    def tick() -> None:
        nonlocal count, shown
        count += 1
        elapsed = time.perf_counter() - start
        if show and elapsed >= SLOW:
            print(f"\rmlxfn: {action} {count} {unit} ({elapsed:.1f} s)", end="", file=sys.stderr, flush=True)
            shown = True

    try:
        yield tick
    finally:
        if shown:
            elapsed = time.perf_counter() - start
            print(f"\rmlxfn: {action} {count} {unit}, done in {elapsed:.2f} s", file=sys.stderr, flush=True)
