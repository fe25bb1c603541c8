"""Period arithmetic: codes, bounds, containment and the native periods of a coarser one."""

from __future__ import annotations

from datetime import date

import pytest

from shared.hierarchy import Edition, edition_for
from shared.periods import PeriodError, PeriodType, parse_period, period_containing


@pytest.mark.parametrize(
    ("code", "ptype", "start", "end"),
    [
        ("2024", PeriodType.YEAR, date(2024, 1, 1), date(2024, 12, 31)),
        ("2024-H1", PeriodType.HALF, date(2024, 1, 1), date(2024, 6, 30)),
        ("2024-H2", PeriodType.HALF, date(2024, 7, 1), date(2024, 12, 31)),
        ("2024-Q3", PeriodType.QUARTER, date(2024, 7, 1), date(2024, 9, 30)),
        ("2024-02", PeriodType.MONTH, date(2024, 2, 1), date(2024, 2, 29)),
        ("2023-02", PeriodType.MONTH, date(2023, 2, 1), date(2023, 2, 28)),
        ("2024-07-15", PeriodType.DAY, date(2024, 7, 15), date(2024, 7, 15)),
    ],
)
def test_codes_parse_to_their_bounds_and_back(code: str, ptype: PeriodType, start: date, end: date) -> None:
    period = parse_period(code)
    assert (period.type, period.start, period.end) == (ptype, start, end)
    assert period.code == code


@pytest.mark.parametrize("code", ["2024-13", "2024-H3", "2024-Q5", "2024-02-30", "24-07", "2024/07", "", "3000"])
def test_bad_codes_are_refused_with_a_reason(code: str) -> None:
    with pytest.raises(PeriodError) as err:
        parse_period(code)
    assert str(err.value)


def test_native_periods_of_a_half_year() -> None:
    months = parse_period("2024-H1").native_periods(PeriodType.MONTH)
    assert [m.code for m in months] == ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06"]
    assert len(parse_period("2024").native_periods(PeriodType.DAY)) == 366
    with pytest.raises(PeriodError):
        parse_period("2024-07").native_periods(PeriodType.QUARTER)


def test_containment_and_partial() -> None:
    assert period_containing(date(2024, 8, 9), PeriodType.QUARTER).code == "2024-Q3"
    july = parse_period("2024-07")
    assert july.has_ended(date(2024, 8, 1)) and not july.has_ended(date(2024, 7, 31))


def test_edition_in_force_at_the_end_of_the_period() -> None:
    assert edition_for(parse_period("2025-06").end) is Edition.LEGACY
    assert edition_for(parse_period("2025-H1").end) is Edition.LEGACY
    assert edition_for(parse_period("2025-07").end) is Edition.E2025
    assert edition_for(parse_period("2025").end) is Edition.E2025
