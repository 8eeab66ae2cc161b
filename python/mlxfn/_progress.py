"""A one-line progress note on stderr for long exports and loads.

Shown only when stderr is a terminal and the work is large, so scripts,
logs and tests stay quiet.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
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
