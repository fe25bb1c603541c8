"""The semantics of a value (DESIGN §2–3), as pure arithmetic on pairs.

Every value, whatever its measure, is stored as a pair so that every roll-up is a sum of pairs:
flow and stock `(value, None)`, ratio `(numerator, denominator)`, boolean at a leaf `(1 or 0, 1)` and
a boolean coverage `(units true, units that reported)`. Decimal keeps sums exact to the last unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from shared.catalog import Indicator, Measure

ZERO = Decimal(0)
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Pair:
    num: Decimal
    den: Decimal | None = None

    def __add__(self, other: Pair) -> Pair:
        if self.den is None and other.den is None:
            return Pair(self.num + other.num)
        return Pair(self.num + other.num, (self.den or ZERO) + (other.den or ZERO))

    def __neg__(self) -> Pair:
        return Pair(-self.num, None if self.den is None else -self.den)


def add(a: Pair | None, b: Pair | None) -> Pair | None:
    """Sum where null counts as zero but two nulls stay null."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def pair_or_none(num: Decimal | None, den: Decimal | None) -> Pair | None:
    return None if num is None else Pair(num, den)


def display_value(indicator: Indicator, pair: Pair | None) -> float | None:
    """What a person reads: the amount, or 100·num/den for ratios and boolean coverage."""
    if pair is None:
        return None
    if indicator.measure in (Measure.FLOW, Measure.STOCK):
        return float(pair.num)
    if not pair.den:
        return None
    return float(round(HUNDRED * pair.num / pair.den, 4))


def as_number(d: Decimal | None) -> int | float | None:
    """JSON-friendly: whole numbers stay integers (87700, not 87700.0)."""
    if d is None:
        return None
    return int(d) if d == d.to_integral_value() else float(d)
