"""Outliers, pure (DESIGN §8): a reported value scored against its own unit's previous 12 native periods.

    z = 0.6745 · (x − median) / MAD                    (Iglewicz and Hoaglin's modified z-score)
    z = (x − median) / (1.253314 · mean absolute deviation)   where MAD is 0
    any x ≠ median is flagged, with no score              where both are 0 (a constant history)

flagged when |z| > 3.5, given at least 6 earlier values in the window. A stock is scored on its increase
over the previous month (the level of a count "to date" always climbs; its steps are what a typing error
breaks). Flags are a function of the reported values alone, so a correction re-scores every later value
whose window holds it: `REACH` says how far. Periods are counted by `shared.periods.ordinal`.

Counts are whole numbers, and a month of reports scores tens of thousands of them, nearly all in line: whole
values are scored in integer arithmetic (`_in_line_whole`), which decides exactly what the Decimal
arithmetic would, and only a value it cannot clear takes the Decimal path that measures the departure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
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
    if isinstance(x, int) and _all_whole(history) and _in_line_whole(x, history):
        return None
    return _score_exact(Decimal(x), [Decimal(h) for h in history])


def _all_whole(values: list[Value]) -> TypeGuard[list[int]]:
    return all(type(v) is int for v in values)


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


def scored_values(reported: Mapping[int, Value], stock: bool) -> dict[int, Value]:
    """What is scored at each period (by ordinal): the reported value, or for a stock its increase over the
    period before (both needed)."""
    if not stock:
        return dict(reported)
    return {n: value - before for n, value in reported.items() if (before := reported.get(n - 1)) is not None}


def flag_at(scored: Mapping[int, Value], n: int) -> Outlier | None:
    x = scored.get(n)
    if x is None:
        return None
    return score(x, [h for k in range(n - WINDOW, n) if (h := scored.get(k)) is not None])
