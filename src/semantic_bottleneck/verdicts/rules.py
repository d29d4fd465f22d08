"""Tolerance rules of the claims ledger: a measured value in, a verdict out.

Every rule states its bound (what the paper claims) and its band (how far off still counts as
"partly"), and says both in words (`describe`) for the ledger's tolerance column:

- `AtLeast(bound, band)`: reproduced when value >= bound, partly when value >= bound - band;
- `AtMost(bound, band)`: reproduced when value <= bound, partly when value <= bound + band;
- `InRange(lo, hi, partly_lo, partly_hi)`: reproduced inside [lo, hi], partly inside the wider
  [partly_lo, partly_hi];
- `Decline(peak_min, end_max, min_drop)` on (peak, end) of a training curve: reproduced when the
  curve reaches peak_min and ends below end_max; partly when it falls by at least min_drop (a
  fraction of the peak) without reaching those levels: the direction holds, the level does not;
- `Both(first, second)` on a pair: reproduced when both parts are, not reproduced when both are
  not, partly otherwise;
- `IntervalAtMost(bound, band)` / `IntervalAtLeast(bound, band)` on (estimate, low, high) of a
  change with its 95% interval: reproduced only when the whole interval meets the bound, partly
  when the estimate alone does (within noise).

`change_verdict` says in words what an interval of a change from the baseline establishes:
"improves", "preserves quality", "degrades" or "within noise".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

REPRODUCED = "reproduced"
PARTLY = "partly"
NOT_REPRODUCED = "not reproduced"
NOT_TESTED = "not tested"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTED)


class Rule(Protocol):
    def judge(self, value) -> str: ...

    def describe(self) -> str: ...


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def _show(x: float, percent: bool) -> str:
    return f"{100 * x:.3g}%" if percent else f"{x:.4g}"


def _pair(value, what: str) -> tuple[float, float]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"{what}: expected a pair of numbers, got {value!r}")
    return _number(value[0], what), _number(value[1], what)


@dataclass(frozen=True)
class AtLeast:
    """The claim: value >= bound."""

    bound: float
    band: float
    what: str = "value"
    percent: bool = False  # show bounds as percentages

    def __post_init__(self):
        if self.band < 0:
            raise ValueError(f"band: expected >= 0, got {self.band}")

    def judge(self, value) -> str:
        v = _number(value, self.what)
        if v >= self.bound:
            return REPRODUCED
        return PARTLY if v >= self.bound - self.band else NOT_REPRODUCED

    def describe(self) -> str:
        lo = _show(self.bound - self.band, self.percent)
        return f"{self.what} >= {_show(self.bound, self.percent)} (partly >= {lo})"


@dataclass(frozen=True)
class AtMost:
    """The claim: value <= bound."""

    bound: float
    band: float
    what: str = "value"
    percent: bool = False  # show bounds as percentages

    def __post_init__(self):
        if self.band < 0:
            raise ValueError(f"band: expected >= 0, got {self.band}")

    def judge(self, value) -> str:
        v = _number(value, self.what)
        if v <= self.bound:
            return REPRODUCED
        return PARTLY if v <= self.bound + self.band else NOT_REPRODUCED

    def describe(self) -> str:
        hi = _show(self.bound + self.band, self.percent)
        return f"{self.what} <= {_show(self.bound, self.percent)} (partly <= {hi})"


@dataclass(frozen=True)
class InRange:
    """The claim: lo <= value <= hi (partly inside [partly_lo, partly_hi])."""

    lo: float
    hi: float
    partly_lo: float
    partly_hi: float
    what: str = "value"
    percent: bool = False  # show bounds as percentages

    def __post_init__(self):
        if not self.partly_lo <= self.lo <= self.hi <= self.partly_hi:
            raise ValueError(
                "expected partly_lo <= lo <= hi <= partly_hi, got "
                f"{self.partly_lo}, {self.lo}, {self.hi}, {self.partly_hi}"
            )

    def judge(self, value) -> str:
        v = _number(value, self.what)
        if self.lo <= v <= self.hi:
            return REPRODUCED
        return PARTLY if self.partly_lo <= v <= self.partly_hi else NOT_REPRODUCED

    def describe(self) -> str:
        lo, hi, plo, phi = (
            _show(x, self.percent) for x in (self.lo, self.hi, self.partly_lo, self.partly_hi)
        )
        return f"{self.what} in [{lo}, {hi}] (partly [{plo}, {phi}])"


@dataclass(frozen=True)
class Decline:
    """The claim: a curve rises to about peak_min and falls below end_max; value = (peak, end)."""

    peak_min: float
    end_max: float
    min_drop: float
    what: str = "nPR"

    def __post_init__(self):
        if not 0 < self.min_drop < 1:
            raise ValueError(f"min_drop: expected a fraction in (0, 1), got {self.min_drop}")

    def judge(self, value) -> str:
        peak, end = _pair(value, f"{self.what} (peak, end)")
        if peak >= self.peak_min and end < self.end_max:
            return REPRODUCED
        return PARTLY if end <= peak * (1 - self.min_drop) else NOT_REPRODUCED

    def describe(self) -> str:
        return (
            f"{self.what} peak >= {self.peak_min:g} and end < {self.end_max:g} "
            f"(partly: end at least {self.min_drop:.0%} below the peak)"
        )


@dataclass(frozen=True)
class Both:
    """Two parts of one claim; value = (first part's value, second part's value)."""

    first: Rule
    second: Rule

    def judge(self, value) -> str:
        a, b = _pair(value, "value")
        verdicts = {self.first.judge(a), self.second.judge(b)}
        if verdicts == {REPRODUCED}:
            return REPRODUCED
        return NOT_REPRODUCED if verdicts == {NOT_REPRODUCED} else PARTLY

    def describe(self) -> str:
        return (
            f"{self.first.describe()}; {self.second.describe()} (partly when only one part holds)"
        )


# ----------------------------------------------------------------------------- intervals

IMPROVES = "improves"
PRESERVES = "preserves quality"
DEGRADES = "degrades"
WITHIN_NOISE = "within noise"


def _triple(value, what: str) -> tuple[float, float, float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        v = _number(value, what)  # a value without an interval: a point
        return v, v, v
    if not isinstance(value, tuple | list) or len(value) != 3:
        raise ValueError(f"{what}: expected (estimate, low, high), got {value!r}")
    estimate, low, high = (_number(v, what) for v in value)
    if not low <= high:
        raise ValueError(f"{what}: expected low <= high, got {low}, {high}")
    return estimate, low, high


def change_verdict(low: float, high: float, better: str, tolerance: float | None = None) -> str:
    """What a 95% interval [low, high] of a change from the baseline establishes.

    "improves" only if the interval excludes zero on the better side; "preserves quality" only
    if the whole interval lies inside [-tolerance, tolerance] on the worse side (it may reach
    into the better side); "degrades" if it excludes the tolerance (or zero, without one) on the
    worse side; otherwise "within noise".

    Args:
        low, high: the interval of the change (row - baseline).
        better: "lower" (FID) or "higher" (IS, CLIP, precision, recall).
        tolerance: the largest change on the worse side that still preserves quality.
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better: expected 'lower' or 'higher', got {better!r}")
    low, high = _number(low, "low"), _number(high, "high")
    if low > high:
        raise ValueError(f"expected low <= high, got {low}, {high}")
    if better == "higher":  # judge the change as a loss, lower is better
        low, high = -high, -low
    if high < 0:
        return IMPROVES
    limit = 0.0 if tolerance is None else _number(tolerance, "tolerance")
    if tolerance is not None and high <= limit:
        return PRESERVES
    return DEGRADES if low > limit else WITHIN_NOISE


@dataclass(frozen=True)
class IntervalAtMost:
    """The claim: a change is at most bound, judged on its 95% interval; value = (estimate,
    low, high). Reproduced when the whole interval is <= bound; partly when only the estimate
    is <= bound + band (the interval does not establish it: within noise)."""

    bound: float
    band: float
    what: str = "value"
    percent: bool = False

    def __post_init__(self):
        if self.band < 0:
            raise ValueError(f"band: expected >= 0, got {self.band}")

    def judge(self, value) -> str:
        estimate, _, high = _triple(value, self.what)
        if high <= self.bound:
            return REPRODUCED
        return PARTLY if estimate <= self.bound + self.band else NOT_REPRODUCED

    def describe(self) -> str:
        b, hi = _show(self.bound, self.percent), _show(self.bound + self.band, self.percent)
        return f"95% interval of {self.what} <= {b} (partly: estimate <= {hi})"


@dataclass(frozen=True)
class IntervalAtLeast:
    """The claim: a change is at least bound, judged on its 95% interval; value = (estimate,
    low, high). Reproduced when the whole interval is >= bound; partly when only the estimate
    is >= bound - band."""

    bound: float
    band: float
    what: str = "value"
    percent: bool = False

    def __post_init__(self):
        if self.band < 0:
            raise ValueError(f"band: expected >= 0, got {self.band}")

    def judge(self, value) -> str:
        estimate, low, _ = _triple(value, self.what)
        if low >= self.bound:
            return REPRODUCED
        return PARTLY if estimate >= self.bound - self.band else NOT_REPRODUCED

    def describe(self) -> str:
        b, lo = _show(self.bound, self.percent), _show(self.bound - self.band, self.percent)
        return f"95% interval of {self.what} >= {b} (partly: estimate >= {lo})"
