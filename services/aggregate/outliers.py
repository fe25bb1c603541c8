"""Outliers, pure (DESIGN §8): a reported value scored against its own unit's previous 12 native periods.

    z = 0.6745 · (x − median) / MAD                    (Iglewicz and Hoaglin's modified z-score)
    z = (x − median) / (1.253314 · mean absolute deviation)   where MAD is 0
    any x ≠ median is flagged, with no score              where both are 0 (a constant history)

flagged when |z| > 3.5, given at least 6 earlier values in the window. A stock is scored on its increase
over the previous month (the level of a count "to date" always climbs; its steps are what a typing error
breaks). Flags are a function of the reported values alone, so a correction re-scores every later value
whose window holds it: `REACH` says how far. Periods are counted by `shared.periods.ordinal`, and a series
is held as a `Stretch`, a list over consecutive periods, so that a window is a slice.

Counts are whole numbers, and a month of reports scores tens of thousands of them, nearly all in line: whole
values are scored in integer arithmetic (`_in_line_whole`), which decides exactly what the Decimal
arithmetic would, and only a value it cannot clear takes the Decimal path that measures the departure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from itertools import pairwise
from typing import TypeGuard

Value = int | Decimal  # a reported value: an int when whole (most counts), else its exact Decimal

WINDOW = 12
MIN_HISTORY = 6
LIMIT = Decimal("3.5")
MAD_FACTOR = Decimal("0.6745")
MEAN_AD_FACTOR = Decimal("1.253314")
SCORE_PLACES = Decimal("0.0001")
_CONTEXT = Context(prec=40)
# MAD_FACTOR·|x − median| ≤ LIMIT·MAD as integers: with the median doubled and the MAD quadrupled (so that
# halves and quarters stay whole) it is MAD_FACTOR.num·LIMIT.den·2·|2x − 2·median| ≤ LIMIT.num·MAD_FACTOR.den·(4·MAD).
_MAD_NUM, _MAD_DEN = MAD_FACTOR.as_integer_ratio()
_LIMIT_NUM, _LIMIT_DEN = LIMIT.as_integer_ratio()
_WHOLE_LEFT, _WHOLE_RIGHT = 2 * _MAD_NUM * _LIMIT_DEN, _LIMIT_NUM * _MAD_DEN


@dataclass(slots=True)
class Stretch:
    """A series' values over consecutive periods: `values[k]` is that of period ordinal `first + k`, None
    where there is none."""

    first: int
    values: list[Value | None]

    @classmethod
    def of(cls, by_ordinal: Mapping[int, Value | None]) -> Stretch:
        if not by_ordinal:
            return cls(0, [])
        first = min(by_ordinal)
        return cls(first, [by_ordinal.get(n) for n in range(first, max(by_ordinal) + 1)])

    def get(self, n: int) -> Value | None:
        k = n - self.first
        return self.values[k] if 0 <= k < len(self.values) else None

    def set(self, n: int, value: Value | None) -> None:
        if not self.values:
            self.first = n
        k = n - self.first
        if k < 0:
            self.values[:0] = [None] * -k
            self.first, k = n, 0
        elif k >= len(self.values):
            self.values.extend([None] * (k + 1 - len(self.values)))
        self.values[k] = value


@dataclass(frozen=True, slots=True)
class Outlier:
    value: Decimal  # what was scored: the value, or a stock's increase
    median: Decimal
    score: Decimal | None  # None: a departure from a constant history, which has no finite score

    @property
    def constant_history(self) -> bool:
        return self.score is None


def reach(stock: bool) -> int:
    """How many periods after a changed one may have their flag moved by it (a stock's next increase
    starts from the changed level, one period further)."""
    return WINDOW + (1 if stock else 0)


def _middle(sorted_values: list[Decimal]) -> Decimal:
    n = len(sorted_values)
    half = n // 2
    return sorted_values[half] if n % 2 else (sorted_values[half - 1] + sorted_values[half]) / 2


def whole(value: Decimal) -> Value:
    """The value as scoring takes it: an int when it is whole."""
    return int(value) if value == value.to_integral_value() else value


def score(x: Value, history: list[Value]) -> Outlier | None:
    """The outlier `x` is against `history`, or None (in line, or too little history to say)."""
    if len(history) < MIN_HISTORY:
        return None
    if type(x) is int and _all_whole(history) and _in_line_whole(x, history):
        return None
    return _score_exact(Decimal(x), [Decimal(h) for h in history])


def _all_whole(values: list[Value]) -> TypeGuard[list[int]]:
    return _INT.issuperset(map(type, values))


_INT = frozenset([int])


def _in_line_whole(x: int, history: list[int]) -> bool:
    """True when `score` finds `x` in line with `history` (all whole); False when it may not (a flag, or a
    departure from a history with no MAD, which the mean absolute deviation decides): the Decimal path then
    says. Either way the answer is the Decimal path's."""
    n, half = len(history), len(history) // 2
    ordered = sorted(history)
    median2 = 2 * ordered[half] if n % 2 else ordered[half - 1] + ordered[half]
    deviations2 = sorted([abs(2 * h - median2) for h in history])
    mad4 = 2 * deviations2[half] if n % 2 else deviations2[half - 1] + deviations2[half]
    if mad4:
        return _WHOLE_LEFT * abs(2 * x - median2) <= _WHOLE_RIGHT * mad4
    return 2 * x == median2  # no MAD: only the median itself is surely in line (a score of 0)


def _score_exact(x: Decimal, history: list[Decimal]) -> Outlier | None:
    with localcontext(_CONTEXT):
        median = _middle(sorted(history))
        deviations = [abs(h - median) for h in history]
        mad = _middle(sorted(deviations))
        if mad:
            # Most values are in line: compared without the division, which only a flag needs.
            if MAD_FACTOR * abs(x - median) <= LIMIT * mad:
                return None
            z = MAD_FACTOR * (x - median) / mad
        else:
            mean_ad = sum(deviations, Decimal(0)) / len(deviations)
            if not mean_ad:
                return Outlier(x, median, None) if x != median else None
            z = (x - median) / (MEAN_AD_FACTOR * mean_ad)
        if abs(z) <= LIMIT:
            return None
        return Outlier(x, median, z.quantize(SCORE_PLACES))


def scored_values(reported: Stretch, stock: bool) -> Stretch:
    """What is scored at each period: the reported value, or for a stock its increase over the period before
    (both needed)."""
    if not stock:
        return reported
    values = reported.values
    return Stretch(reported.first + 1, [None if before is None or value is None else value - before
                                        for before, value in pairwise(values)])


def flag_at(scored: Stretch, n: int) -> Outlier | None:
    k = n - scored.first
    values = scored.values
    x = values[k] if 0 <= k < len(values) else None
    if x is None:
        return None
    window = values[max(k - WINDOW, 0):k]
    return score(x, window if _complete(window) else [h for h in window if h is not None])


def _complete(window: list[Value | None]) -> TypeGuard[list[Value]]:
    return None not in window  # most windows: scored as they are, not filtered value by value
