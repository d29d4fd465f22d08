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
  not, partly otherwise.
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
