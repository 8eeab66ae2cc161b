"""Fitting a number of a traced graph that no polynomial of a size follows.

Pure: the caller gives ``value(n)``, the number when the size is ``n`` (the
other sizes fixed), or None where it is unknown (the function refuses that
size, or its graph has another structure there).  ``fit_steps`` looks at
where the values step and returns one of

- ``a*n + b + q * ((n + r) // c)`` (written ``ceil(n / c)`` when ``r = c - 1``,
  and ``a * ((n + r) % c) + b`` when ``q = -a * c``):
  a strided convolution's or a pool's length ``(n + 2p - k) // s + 1``,
  ``n // 2``, a buffer padded to a multiple of 256 ``((n + 255) // 256) * 256``,
  ``n % c`` (``n - c * (n // c)``);
- ``min(L1, L2)`` or ``max(L1, L2)`` of two lines: a window ``min(n, w)``,
  a start ``max(n - w, 0)``;

or None.  A form must give every value of a window of consecutive sizes
around the base exactly, and the values of at least two sizes farther
away (of the sizes bisection visited and more: 0 to 4, half the base,
some up to ``hi``), walking away from the window until the first it does
not give: the caller's range search serves the sizes up to there.

How the form is found, with few samples (each is a trace):

1. A window of consecutive sizes around the base gives the differences
   ``v(n + 1) - v(n)``.  The most common one is the slope ``a``; the sizes
   where the difference is another are *steps*.  Evenly spaced steps of one
   height ``q`` give the period ``c`` and the phase ``r`` (``n // 2``,
   stride 2 or 3); steps next to one another are a kink (``min(n, 10)``).
2. One step in the window: the next (or previous) one is found by bisection
   against the line past it, which gives the period.
3. No step in the window: the first size above (then below) where the value
   leaves the line ``v(base) + a * (n - base)`` is found by bisection over far
   sizes.  If the slope past it is ``a`` again, it is a step of a period
   found as in 2 (``((n + 255) // 256) * 256`` traced at 8: steps at 257, 513);
   else a kink, between the line and the line past it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction

from ..ir import Expr, Op, SizeExpr, constant

Value = int | Fraction
Oracle = Callable[[int], Value | None]

WINDOW_BELOW, WINDOW_ABOVE = 3, 9  # the consecutive sizes sampled around the base
SMALL_BELOW, SMALL_ABOVE = 1, 3  # sampled first: no step there, and the window is not needed
FAR_ENOUGH = 4  # samples outside the window that spare a candidate more probes
MIN_FAR_CHECKS = 2  # sizes outside the window a form must also predict


class _Samples:
    """The oracle, each size asked once, within ``lo..hi``."""

    def __init__(self, value: Oracle, lo: int, hi: int) -> None:
        self._value, self.lo, self.hi = value, lo, hi
        self.seen: dict[int, Value | None] = {}

    def __call__(self, n: int) -> Value | None:
        if not self.lo <= n <= self.hi:
            return None
        if n not in self.seen:
            v = self._value(n)
            self.seen[n] = v if isinstance(v, (int, Fraction)) and not isinstance(v, bool) else None
        return self.seen[n]


def line(slope: Value, at: int, value: Value, dim: int) -> Expr:
    """The line through ``(at, value)`` with ``slope``, as an expression of dim ``dim``."""
    offset = value - slope * at
    return Expr.of(offset, [(slope, (dim,))] if slope else [], True)


def periodic(slope: Value, height: Value, period: int, step_at: int, base: int, value: Value, dim: int) -> SizeExpr:
    """``slope*n + b + height * ((n + r) // period)``, stepping by ``height`` at
    ``step_at`` (and every ``period`` from there), through ``(base, value)``."""
    r = -step_at % period
    size = Expr.of(r, [(1, (dim,))], True)
    if slope and height == -slope * period:  # slope * ((n + r) % period) + b: a remainder
        remainder: SizeExpr = Op("mod", size, constant(period))
        if slope != 1:
            remainder = Op("mul", remainder, constant(slope))
        rest = value - slope * ((base + r) % period)
        return remainder if rest == 0 else Op("add", remainder, constant(rest))
    steps: SizeExpr = (
        Op("ceildiv", Expr.of(0, [(1, (dim,))], True), constant(period))
        if r == period - 1
        else Op("floordiv", size, constant(period))
    )
    if height != 1:
        steps = Op("mul", steps, constant(height))
    rest = value - slope * base - height * ((base + r) // period)
    linear = Expr.of(rest, [(slope, (dim,))] if slope else [], True)
    return steps if linear == constant(0) else Op("add", steps, linear)


def _predicts(expr: SizeExpr, samples: _Samples, window: Sequence[int]) -> int:
    """How many samples outside the window ``expr`` gives, walking away from
    the window both ways until the first it does not give (-1 if it misses
    one in the window).  Past that first miss the form may not hold (MLX
    computes a convolution's length at size 0 as C++ does, truncating
    ``-1 / 2`` to 0): the range search of dynamic.py stops there."""

    def gives(n: int) -> bool:
        try:
            return expr.exact([n] * (max(_dims(expr)) + 1)) == samples.seen[n]
        except ZeroDivisionError:
            return False

    known = sorted(n for n, v in samples.seen.items() if v is not None)
    if not all(gives(n) for n in window):
        return -1
    above = [n for n in known if n > window[-1]]
    below = [n for n in reversed(known) if n < window[0]]
    far = 0
    for side in (above, below):
        for n in side:
            if not gives(n):
                break
            far += 1
    return far


def _dims(expr: SizeExpr) -> list[int]:
    if isinstance(expr, Expr):
        return [d for _, dims in expr.terms for d in dims] or [0]
    return _dims(expr.a) + _dims(expr.b)


def _first_leaving(at: _Samples, predict: Callable[[int], Value], start: int, probes: Iterable[int]) -> int | None:
    """The first size past ``start`` (in the direction of ``probes``) whose value
    is not ``predict``'s, by bisection between the probes; None if every
    probe matches.  Values that leave the line stay off it (a staircase, a
    kink), so the bisection is exact.  An unknown value (the number's node
    is not in the graph at that size: mlx-lm's ``KVCache`` has no buffer at
    a multiple of 256) is stepped over: the sizes on either side of it."""

    def on(n: int) -> bool | None:
        v = at(n)
        return None if v is None else v == predict(n)

    good = start
    for p in probes:
        d = 1 if p > good else -1
        if on(p) is None:
            if p - d != good and on(p - d):
                good = p - d
            p += d
            if on(p) is None:
                continue
        if on(p):
            good = p
            continue
        bad = p
        while abs(bad - good) > 1:
            middle = (good + bad) // 2
            here = on(middle)
            if here is None:  # step over it: the sizes next to it
                here, middle = on(middle - d), middle - d
                if here is None or middle == good:
                    break
            if here:
                good = middle
            else:
                bad = middle
        return bad
    return None


def _far(edge: int, lo: int, hi: int, up: bool, base: int | None = None) -> list[int]:
    """Sizes probed away from ``edge`` (the window's): as the range search of
    dynamic.py, which probes ``base + 1``, ``base + 3`` and ``2 * base + 5``
    too: those past ``edge`` stand for the near sizes (probed already there,
    they cost nothing)."""
    if up:
        searched = () if base is None else (base + 1, base + 3, 2 * base + 5)
        near = {s for s in searched if edge < s <= 2 * edge + 5} or {edge + 2, 2 * edge + 5}
        sizes = near | {64, 256, 2048, hi}
        return sorted(s for s in sizes if edge < s <= hi)
    sizes = {edge - 1, edge // 2, 8, 4, 3, 2, 1, 0}
    return sorted((s for s in sizes if lo <= s < edge), reverse=True)


def fit_steps(
    value: Oracle, base: int, dim: int, lo: int = 0, hi: int = 1 << 15, missed: int | None = None
) -> SizeExpr | None:
    """The number ``value(n)`` as an expression of dim ``dim`` whose size is
    ``n`` (see the module doc), or None.  ``base``: a size where the value is
    known; sizes outside ``lo..hi`` are never asked.  ``missed``: a size
    above the base where the caller's prediction of the number failed (its
    range search's bisection): the walk for a far step starts at the far
    size nearest under it, sparing the probes below (on the line there, the
    value was on it below too; if not, the bisection finds the step all the
    same).  Only a hint: the fit is the same with or without it."""
    at = _Samples(value, lo, hi)
    v0 = at(base)
    if v0 is None:
        return None

    def sample(below: int, above: int) -> tuple[list[int], dict[int, Value]]:
        """The sizes of ``base - below .. base + above`` with a known value, and the differences."""
        window = [n for n in range(base - below, base + above + 1) if at(n) is not None]
        diffs = {
            n: b - a
            for n in window
            if n + 1 <= base + above and (a := at(n)) is not None and (b := at(n + 1)) is not None
        }
        return window, diffs

    # A few sizes first: a number on one line there (a buffer padded to 256,
    # traced at 8) steps far away, found by bisection; else the whole window.
    below, above = SMALL_BELOW, SMALL_ABOVE
    window, diffs = sample(below, above)
    if len(diffs) < below + above or len(set(diffs.values())) != 1:
        below, above = WINDOW_BELOW, WINDOW_ABOVE
        window, diffs = sample(below, above)
    if len(diffs) < 4:
        return None
    counts = Counter(diffs.values())
    slope = min(counts, key=lambda d: (-counts[d], abs(d), d))
    steps = sorted(n + 1 for n, d in diffs.items() if d != slope)
    candidates: list[SizeExpr] = []

    def line_at(n: int) -> Value:
        return v0 + slope * (n - base)

    def stair(first: int, height: Value) -> Callable[[int], Value]:
        """The line, stepping up by ``height`` at ``first``."""
        return lambda n: line_at(n) + height * (int(n >= first) - int(base >= first))

    if len(steps) >= 2:
        heights = {diffs[s - 1] - slope for s in steps}
        gaps = {b - a for a, b in zip(steps, steps[1:])}
        if len(heights) == 1 and len(gaps) == 1 and min(gaps) >= 2:
            candidates.append(periodic(slope, heights.pop(), gaps.pop(), steps[0], base, v0, dim))
        else:  # a kink in the window: the lines at its two ends
            first, last = window[0], window[-1]
            v_first, v_last = at(first), at(last)
            if v_first is not None and v_last is not None and first in diffs and last - 1 in diffs:
                left, right = line(diffs[first], first, v_first, dim), line(diffs[last - 1], last, v_last, dim)
                candidates += [Op("min", left, right), Op("max", left, right)]
    elif len(steps) == 1:
        (s,) = steps
        height = diffs[s - 1] - slope
        nxt = _first_leaving(at, stair(s, height), base + above, _far(base + above, lo, hi, True, base))
        if nxt is not None:
            candidates.append(periodic(slope, height, nxt - s, s, base, v0, dim))
        else:
            prev = _first_leaving(at, stair(s, height), base - below, _far(base - below, lo, hi, False))
            if prev is not None:
                candidates.append(periodic(slope, height, s - (prev + 1), s, base, v0, dim))
    else:
        for up in (True, False):
            if candidates:
                break  # found above: the range search looks below
            sign = 1 if up else -1
            edge = base + above if up else base - below
            off = _first_leaving(at, line_at, edge, _skip_to(_far(edge, lo, hi, up, base), missed if up else None))
            if off is None:
                continue
            v_off, v_next, v_after = at(off), at(off + sign), at(off + 2 * sign)
            if v_off is None or v_next is None or v_after is None:
                continue
            if (v_after - v_next) * sign == slope and (v_next - v_off) * sign == slope:
                # A step (the value goes up by ``height`` at ``first``): the
                # next one past it gives the period.
                height = (v_off - line_at(off)) * sign
                first = off if up else off + 1
                more = _period_of_padding(at, stair(first, height), off, slope, height) if up else None
                if more is None:
                    more = _first_leaving(at, stair(first, height), off + 2 * sign, _far(off + 2 * sign, lo, hi, up))
                if more is not None:
                    candidates.append(periodic(slope, height, abs(more - off), first, base, v0, dim))
            else:  # a kink: the line, and the line past it
                past = line((v_after - v_next) * sign, off + sign, v_next, dim)
                here = line(slope, base, v0, dim)
                candidates += [Op("min", here, past), Op("max", here, past)]
    # The candidate that gives the most samples; more sizes far away unless
    # the bisections gave enough already.
    if candidates and max(_predicts(c, at, window) for c in candidates) < FAR_ENOUGH:
        for n in _around(base, lo, hi):
            at(n)
    best, best_far = None, MIN_FAR_CHECKS - 1
    for candidate in candidates:
        far = _predicts(candidate, at, window)
        if far > best_far:
            best, best_far = candidate, far
    return best


def _period_of_padding(
    at: _Samples, stair: Callable[[int], Value], off: int, slope: Value, height: Value
) -> int | None:
    """The next step after the one at ``off`` when the period is the step's
    height (a flat number padded to a multiple of it: ``ceil(n / 256) * 256``
    steps by 256 every 256 sizes): two probes instead of a bisection; None
    if that is not so."""
    if slope != 0 or not isinstance(height, int) or height < 2:
        return None
    nxt = off + height
    before = next((at(n) for n in (nxt - 1, nxt - 2) if at(n) is not None), None)
    if before is None or before != stair(nxt - 1) or at(nxt) is None or at(nxt) == stair(nxt):
        return None
    return nxt


def _skip_to(probes: list[int], missed: int | None) -> list[int]:
    """``probes`` (walked upwards) from the nearest under ``missed``, with
    ``missed`` itself (see ``fit_steps``)."""
    if missed is None or not any(p < missed for p in probes):
        return probes
    start = max(p for p in probes if p < missed)
    return sorted({p for p in probes if p >= start} | {missed})


def _around(base: int, lo: int, hi: int) -> list[int]:
    """Sizes a candidate is checked at besides those already sampled: small
    ones, far ones, and odd ones between powers of two."""
    sizes = {0, 1, 2, 3, 4, base // 2, 2 * base + 5, 3 * base + 7, 100, 257, 1000, 4099, hi - 1, hi}
    return sorted(s for s in sizes if lo <= s <= hi)
