"""Period codes and their arithmetic: `2024`, `2024-H1`, `2024-Q3`, `2024-07`, `2024-07-15`.

Every indicator has one native period type; coarser periods are derived from native ones at read
time, so the only operations needed are: parse a code, know its bounds, and list the native periods
a coarser one covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from functools import cached_property, lru_cache


class PeriodType(StrEnum):
    DAY = "day"
    MONTH = "month"
    QUARTER = "quarter"
    HALF = "half"
    YEAR = "year"


# How a message names a period type, in prose and by example: one table, so that ingest's rejections
# and the query service's answers say the same thing.
NOUN = {
    PeriodType.DAY: "a day",
    PeriodType.MONTH: "a month",
    PeriodType.QUARTER: "a quarter",
    PeriodType.HALF: "a half-year",
    PeriodType.YEAR: "a year",
}
ADVERB = {
    PeriodType.DAY: "daily (2024-07-15)",
    PeriodType.MONTH: "monthly (2024-07)",
    PeriodType.QUARTER: "quarterly (2024-Q3)",
    PeriodType.HALF: "six-monthly (2024-H1)",
    PeriodType.YEAR: "yearly (2024)",
}

# Coarseness order: a period type can be derived from any type left of it.
_ORDER = [PeriodType.DAY, PeriodType.MONTH, PeriodType.QUARTER, PeriodType.HALF, PeriodType.YEAR]

# Vietnam keeps UTC+7 all year (no daylight saving), so a fixed offset is exact and needs no tz database.
VIETNAM = timezone(timedelta(hours=7), "ICT")


def today_in_vietnam() -> date:
    """Whether a period has ended (or started) is judged by the calendar of the people reporting."""
    return datetime.now(VIETNAM).date()


# A sane window for reported data: Project 06 started in 2022; nothing is reported for the far past
# or a year 3000 typo.
MIN_YEAR = 2000
MAX_YEAR = 2100

_PATTERNS: list[tuple[re.Pattern[str], PeriodType]] = [
    (re.compile(r"^(\d{4})$"), PeriodType.YEAR),
    (re.compile(r"^(\d{4})-H([12])$"), PeriodType.HALF),
    (re.compile(r"^(\d{4})-Q([1-4])$"), PeriodType.QUARTER),
    (re.compile(r"^(\d{4})-(\d{2})$"), PeriodType.MONTH),
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), PeriodType.DAY),
]


class PeriodError(ValueError):
    """A period code that cannot be parsed or lies outside the accepted window."""


@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date  # inclusive: the last day of the period
    type: PeriodType

    @cached_property  # validation reads it per event; parsed periods are shared (lru_cache)
    def code(self) -> str:
        y = self.start.year
        match self.type:
            case PeriodType.YEAR:
                return f"{y}"
            case PeriodType.HALF:
                return f"{y}-H{1 if self.start.month == 1 else 2}"
            case PeriodType.QUARTER:
                return f"{y}-Q{(self.start.month - 1) // 3 + 1}"
            case PeriodType.MONTH:
                return f"{y}-{self.start.month:02d}"
            case PeriodType.DAY:
                return self.start.isoformat()

    def __str__(self) -> str:
        return self.code

    def has_ended(self, today: date) -> bool:
        return self.end < today

    def native_periods(self, native: PeriodType) -> list[Period]:
        """The periods of type `native` that make up this one, oldest first."""
        if not is_finer_or_equal(native, self.type):
            raise PeriodError(f"a {self.type} period cannot be split into {native} periods")
        out: list[Period] = []
        cursor = self.start
        while cursor <= self.end:
            p = period_containing(cursor, native)
            out.append(p)
            cursor = p.end + timedelta(days=1)
        return out


def is_finer_or_equal(a: PeriodType, b: PeriodType) -> bool:
    return _ORDER.index(a) <= _ORDER.index(b)


def _month_end(year: int, month: int) -> date:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def _span(year: int, first_month: int, months: int, ptype: PeriodType) -> Period:
    last_month = first_month + months - 1
    return Period(date(year, first_month, 1), _month_end(year, last_month), ptype)


def period_containing(day: date, ptype: PeriodType) -> Period:
    y, m = day.year, day.month
    match ptype:
        case PeriodType.DAY:
            return Period(day, day, ptype)
        case PeriodType.MONTH:
            return _span(y, m, 1, ptype)
        case PeriodType.QUARTER:
            return _span(y, (m - 1) // 3 * 3 + 1, 3, ptype)
        case PeriodType.HALF:
            return _span(y, 1 if m <= 6 else 7, 6, ptype)
        case PeriodType.YEAR:
            return _span(y, 1, 12, ptype)


def parse_period(code: str) -> Period:
    """Parse a period code, or raise PeriodError with a message a person understands."""
    return _parse(code, window=True)


def _parse(code: str, *, window: bool) -> Period:
    for pattern, ptype in _PATTERNS:
        match = pattern.match(code)
        if not match:
            continue
        year = int(match.group(1))
        if window and not MIN_YEAR <= year <= MAX_YEAR:
            raise PeriodError(f"year {year} is outside the accepted window {MIN_YEAR}–{MAX_YEAR}")
        try:
            match ptype:
                case PeriodType.YEAR:
                    return _span(year, 1, 12, ptype)
                case PeriodType.HALF:
                    return _span(year, 1 + 6 * (int(match.group(2)) - 1), 6, ptype)
                case PeriodType.QUARTER:
                    return _span(year, 1 + 3 * (int(match.group(2)) - 1), 3, ptype)
                case PeriodType.MONTH:
                    return _span(year, int(match.group(2)), 1, ptype)
                case PeriodType.DAY:
                    d = date(year, int(match.group(2)), int(match.group(3)))
                    return Period(d, d, ptype)
        except ValueError as exc:
            raise PeriodError(f"'{code}' is not a real calendar period") from exc
    raise PeriodError(
        f"'{code}' is not a period code; use 2024, 2024-H1, 2024-Q3, 2024-07 or 2024-07-15"
    )


_MONTHS = {PeriodType.MONTH: 1, PeriodType.QUARTER: 3, PeriodType.HALF: 6, PeriodType.YEAR: 12}


@lru_cache(maxsize=1 << 16)  # rules and outliers walk the same few periods for every unit of a batch
def shift(code: str, steps: int) -> str:
    """The period `steps` periods of the same type after `code` (before it when negative): `previous()` of a
    rule and the history of an outlier walk native periods this way, across year ends."""
    period = _parse(code, window=False)  # the month after December 2100 exists, though nobody reports it
    if period.type is PeriodType.DAY:
        return (period.start + timedelta(days=steps)).isoformat()
    index = period.start.year * 12 + period.start.month - 1 + steps * _MONTHS[period.type]
    return period_containing(date(index // 12, index % 12 + 1, 1), period.type).code


@lru_cache(maxsize=1 << 16)
def ordinal(code: str) -> int:
    """The period's place among the periods of its type: consecutive periods differ by exactly 1, so an
    outlier's window and a stock's month-on-month step are integer arithmetic, not calendar walks."""
    period = _parse(code, window=False)
    if period.type is PeriodType.DAY:
        return period.start.toordinal()
    return (period.start.year * 12 + period.start.month - 1) // _MONTHS[period.type]
