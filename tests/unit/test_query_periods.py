"""Time derivation of the query service (services/query/periods.py): pure, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.query.periods import (
    EMPTY,
    FinerThanNative,
    NativeRow,
    Source,
    components,
    derive,
    is_partial,
    native_periods,
    series_periods,
    shown_value,
)
from shared.catalog import Indicator
from shared.periods import PeriodError, PeriodType, parse_period
from shared.values import Pair
from tests.fixtures.indicators import BOOLEAN, FLOW, HALF_YEARLY, RATIO_OF_FLOWS, RATIO_OF_STOCKS, STOCK


def P(num: int | str, den: int | str | None = None) -> Pair:  # noqa: N802 - reads like the maths
    return Pair(Decimal(num), None if den is None else Decimal(den))


def at(day: int) -> datetime:
    return datetime(2024, 7, day, tzinfo=UTC)


def row(
    period: str, reported: Pair | None = None, computed: Pair | None = None, reporting: int = 0,
    updated: datetime | None = None,
) -> NativeRow:
    return NativeRow.of(period, reported, computed, reporting, updated)


def months(code: str, ind: Indicator) -> list[str]:
    return [p.code for p in native_periods(ind, parse_period(code))]


# ---- which native periods make a period up


def test_h1_q3_and_year_list_their_months() -> None:
    assert months("2024-H1", FLOW) == ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06"]
    assert months("2024-Q3", FLOW) == ["2024-07", "2024-08", "2024-09"]
    assert len(months("2024", FLOW)) == 12
    assert months("2024-07", FLOW) == ["2024-07"]
    assert months("2024", HALF_YEARLY) == ["2024-H1", "2024-H2"]


@pytest.mark.parametrize(("ind", "code"), [(FLOW, "2024-07-15"), (HALF_YEARLY, "2024-Q3"), (HALF_YEARLY, "2024-07")])
def test_a_period_finer_than_native_is_rejected_with_a_clear_message(ind: Indicator, code: str) -> None:
    with pytest.raises(FinerThanNative) as err:
        native_periods(ind, parse_period(code))
    assert code in str(err.value)
    assert ind.period_type in str(err.value)
    assert isinstance(err.value, PeriodError)


# ---- flows add up


def test_flow_h1_is_the_sum_of_its_months() -> None:
    rows = [row("2024-01", computed=P(10), reporting=3), row("2024-03", computed=P(5), reporting=2),
            row("2024-06", computed=P(7), reporting=4)]
    d = derive(FLOW, rows)
    assert d.effective == P(22)
    assert d.computed == P(22) and d.reported is None
    assert d.source is Source.COMPUTED
    assert d.reporting == 4  # the latest month with a value
    assert shown_value(FLOW, d.effective) == 22
    assert components(FLOW, d.effective) == (None, None)


def test_flow_mixing_reported_and_computed_months_is_mixed() -> None:
    rows = [row("2024-07", reported=P(100), computed=P(90), updated=at(5)),
            row("2024-08", computed=P(40), updated=at(20)),
            row("2024-09", reported=P(30), updated=at(10))]
    d = derive(FLOW, rows)
    assert d.effective == P(170)  # 100 + 40 + 30: each month's own effective value
    assert d.reported == P(130) and d.computed == P(130)
    assert d.source is Source.MIXED
    assert d.updated_at == at(20)


def test_ratio_of_flows_sums_numerators_and_denominators_never_averages() -> None:
    rows = [row("2024-07", computed=P(1, 2)), row("2024-08", computed=P(90, 100))]
    d = derive(RATIO_OF_FLOWS, rows)
    assert d.effective == P(91, 102)
    assert shown_value(RATIO_OF_FLOWS, d.effective) == pytest.approx(89.2157, abs=1e-4)  # not (50+90)/2
    assert components(RATIO_OF_FLOWS, d.effective) == (91, 102)


# ---- stocks, ratios of stocks and booleans take the latest


def test_stock_year_is_the_latest_month_with_a_value() -> None:
    rows = [row("2024-03", reported=P(500)), row("2024-09", computed=P(800), reporting=7),
            row("2024-11", reported=None, computed=None)]  # a retraction counts as absent
    d = derive(STOCK, rows)
    assert d.effective == P(800)
    assert d.source is Source.COMPUTED
    assert d.reporting == 7
    assert d.reported == P(500)  # reported and computed are each their own latest
    assert d.computed == P(800)


def test_ratio_of_stocks_q3_is_the_latest_month() -> None:
    rows = [row("2024-07", computed=P(97, 100)), row("2024-08", reported=P(699634, 637607))]
    d = derive(RATIO_OF_STOCKS, rows)
    assert d.effective == P(699634, 637607)
    assert shown_value(RATIO_OF_STOCKS, d.effective) == pytest.approx(109.73, abs=1e-2)  # may exceed 100
    assert d.source is Source.REPORTED


def test_boolean_coverage_is_the_latest_and_shown_as_percent() -> None:
    rows = [row("2024-01", computed=P(10, 24), reporting=24), row("2024-06", computed=P(24, 24), reporting=24)]
    d = derive(BOOLEAN, rows)
    assert d.effective == P(24, 24)
    assert shown_value(BOOLEAN, d.effective) == 100
    assert components(BOOLEAN, d.effective) == (24, 24)


def test_order_of_rows_does_not_matter() -> None:
    rows = [row("2024-05", computed=P(5)), row("2024-02", computed=P(2))]
    assert derive(STOCK, rows).effective == P(5)
    assert derive(STOCK, list(reversed(rows))).effective == P(5)


def test_nothing_stored_is_empty() -> None:
    assert derive(FLOW, []) == EMPTY
    assert derive(STOCK, [row("2024-01")]) == EMPTY
    assert shown_value(STOCK, None) is None


def test_native_row_columns_read_a_retraction_as_absent() -> None:
    r = NativeRow("2024-07", None, None, Decimal(3), None, 2, None)
    assert r.reported is None and r.effective == P(3) and r.source is Source.COMPUTED


def test_whole_amounts_stay_integers_and_fractions_do_not() -> None:
    assert shown_value(STOCK, P(87700)) == 87700
    assert isinstance(shown_value(STOCK, P(87700)), int)
    assert shown_value(FLOW, P("2.5")) == 2.5


# ---- partial periods


def test_partial_until_the_last_day_has_passed() -> None:
    h1 = parse_period("2024-H1")
    assert is_partial(h1, date(2024, 6, 30))
    assert not is_partial(h1, date(2024, 7, 1))
    assert is_partial(parse_period("2024"), date(2024, 7, 1))


# ---- series


def test_series_covers_native_periods_overlapping_from_and_to() -> None:
    got = series_periods(PeriodType.MONTH, parse_period("2024-Q2"), parse_period("2024-07"))
    assert [p.code for p in got] == ["2024-04", "2024-05", "2024-06", "2024-07"]
    halves = series_periods(PeriodType.HALF, parse_period("2024-03"), parse_period("2025"))
    assert [p.code for p in halves] == ["2024-H1", "2024-H2", "2025-H1", "2025-H2"]


def test_series_refuses_a_reversed_or_too_long_range() -> None:
    with pytest.raises(PeriodError, match="after"):
        series_periods(PeriodType.MONTH, parse_period("2025"), parse_period("2024"))
    with pytest.raises(PeriodError, match="at most 120"):
        series_periods(PeriodType.DAY, parse_period("2024"), parse_period("2024"))
    assert len(series_periods(PeriodType.MONTH, parse_period("2015"), parse_period("2024"))) == 120
