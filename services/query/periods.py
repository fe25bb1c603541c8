"""Deriving a period's value from the native rows inside it, and the period arithmetic of the query API.

Pure: no I/O, so every rule of DESIGN §2 (how each measure rolls up in time) is tested in milliseconds.
The read model holds native periods only; a coarser period (a half year of a monthly indicator) is
computed here, at read time, from the at most few dozen native rows that make it up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from shared.catalog import Indicator, Measure
from shared.periods import NOUN, Period, PeriodError, PeriodType, is_finer_or_equal, period_containing
from shared.values import Pair, add, as_number, display_value, pair_or_none

# A series longer than this is refused rather than silently cut: ten years of months.
MAX_SERIES_POINTS = 120

class Source(StrEnum):
    REPORTED = "reported"
    COMPUTED = "computed"
    MIXED = "mixed"  # a derived period whose native periods come from both


class FinerThanNative(PeriodError):
    """A period the indicator's native periods cannot build (a month of a six-monthly indicator)."""


class NativeRow(NamedTuple):
    """One rollups row (a native period of one unit and indicator), its columns in statement order.

    A tuple of raw columns, with pairs built only when asked: a year's drill-down reads thousands of
    rows and uses few of them.
    """

    period: str
    rep_num: Decimal | None
    rep_den: Decimal | None
    comp_num: Decimal | None
    comp_den: Decimal | None
    reporting: int | None
    updated_at: datetime | None = None

    @classmethod
    def of(
        cls, period: str, reported: Pair | None = None, computed: Pair | None = None, reporting: int = 0,
        updated_at: datetime | None = None,
    ) -> NativeRow:
        return cls(
            period,
            None if reported is None else reported.num, None if reported is None else reported.den,
            None if computed is None else computed.num, None if computed is None else computed.den,
            reporting, updated_at,
        )

    @property
    def has_value(self) -> bool:
        return self.rep_num is not None or self.comp_num is not None

    @property
    def reported(self) -> Pair | None:
        return pair_or_none(self.rep_num, self.rep_den)

    @property
    def computed(self) -> Pair | None:
        return pair_or_none(self.comp_num, self.comp_den)

    @property
    def effective(self) -> Pair | None:
        return self.reported if self.rep_num is not None else self.computed

    @property
    def source(self) -> Source | None:
        if self.rep_num is not None:
            return Source.REPORTED
        return Source.COMPUTED if self.comp_num is not None else None


@dataclass(frozen=True, slots=True)
class Derived:
    effective: Pair | None
    reported: Pair | None
    computed: Pair | None
    source: Source | None
    reporting: int
    updated_at: datetime | None


EMPTY = Derived(None, None, None, None, 0, None)


def _period(row: NativeRow) -> str:
    # Codes of one period type sort chronologically as text (2024-02 < 2024-11, 2024-H1 < 2024-H2).
    return row.period


def native_periods(indicator: Indicator, period: Period) -> list[Period]:
    """The native periods that make up `period`, oldest first; FinerThanNative when there are none."""
    native = indicator.period_type
    if not is_finer_or_equal(native, period.type):
        raise FinerThanNative(
            f"'{indicator.code}' is reported per {native}: {period.code} is shorter than "
            f"{NOUN[native]}; ask for a {native} or a coarser period"
        )
    return period.native_periods(native)


def derive(indicator: Indicator, rows: Iterable[NativeRow]) -> Derived:
    """Combine the native rows inside one period into that period's value.

    `rows` are the stored native periods of one unit and indicator (absent periods have no row; rows
    whose pairs are both null are retractions and count as absent). Flows, and ratios of flows, add up
    the native pairs; stocks, ratios of stocks and booleans take the latest native period that has a
    value. `reported` and `computed` are derived the same way, each from its own native values, so a
    reported six-month total can be set beside the sum of the children's months.

    `reporting` (children with a value) is that of the latest native period with a value: a count of
    children cannot be summed over months, and the latest one is what a dashboard asks ("how many
    communes have reported so far"). `updated_at` is the newest among the rows used.
    """
    valued = [r for r in rows if r.has_value]
    if not valued:
        return EMPTY
    latest = max(valued, key=_period)
    if indicator.time_rollup == "latest":
        last_reported = max((r for r in valued if r.rep_num is not None), key=_period, default=None)
        last_computed = max((r for r in valued if r.comp_num is not None), key=_period, default=None)
        return Derived(
            latest.effective,
            None if last_reported is None else last_reported.reported,
            None if last_computed is None else last_computed.computed,
            latest.source,
            latest.reporting or 0,
            latest.updated_at,
        )
    effective = reported = computed = None
    sources: set[Source] = set()
    for r in valued:
        effective = add(effective, r.effective)
        reported = add(reported, r.reported)
        computed = add(computed, r.computed)
        if r.source is not None:
            sources.add(r.source)
    stamps = [r.updated_at for r in valued if r.updated_at is not None]
    return Derived(
        effective,
        reported,
        computed,
        sources.pop() if len(sources) == 1 else Source.MIXED,
        latest.reporting or 0,
        max(stamps) if stamps else None,
    )


def shown_value(indicator: Indicator, pair: Pair | None) -> int | float | None:
    """What a person reads; whole amounts stay integers (87700, not 87700.0)."""
    if pair is not None and indicator.measure in (Measure.FLOW, Measure.STOCK):
        return as_number(pair.num)
    return display_value(indicator, pair)


def components(indicator: Indicator, pair: Pair | None) -> tuple[int | float | None, int | float | None]:
    """(numerator, denominator): only ratios and boolean coverage have them; amounts are in `value`."""
    if pair is None or not indicator.has_denominator:
        return None, None
    return as_number(pair.num), as_number(pair.den)


def is_partial(period: Period, today: date) -> bool:
    """A period that has not ended yet: its figures can still change."""
    return not period.has_ended(today)


def series_periods(
    native: PeriodType, first: Period, last: Period, *, limit: int = MAX_SERIES_POINTS
) -> list[Period]:
    """The native periods overlapping [first.start, last.end], oldest first.

    `first` and `last` may be of any type: `from=2024&to=2024` of a monthly indicator is its 12 months.
    """
    if first.start > last.end:
        raise PeriodError(f"'from' ({first.code}) is after 'to' ({last.code})")
    out: list[Period] = []
    cursor = period_containing(first.start, native)
    while cursor.start <= last.end:
        if len(out) == limit:  # counted while walking: a 100-year span of days is never built
            raise PeriodError(f"{first.code}..{last.code} holds more than {limit} {native} periods; "
                              f"ask for at most {limit} at a time")
        out.append(cursor)
        cursor = period_containing(cursor.end + timedelta(days=1), native)
    return out


def default_series_end(native: PeriodType, today: date) -> Period:
    return period_containing(today, native)


def default_series_start(native: PeriodType, end: Period, points: int = 12) -> Period:
    """`points` native periods ending with `end`: a year of months, six years of halves."""
    cursor = end
    for _ in range(points - 1):
        cursor = period_containing(cursor.start - timedelta(days=1), native)
    return cursor

