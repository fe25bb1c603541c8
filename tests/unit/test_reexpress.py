"""A 2025 unit's value from its own native rows and its re-expressed ones (services/query/reexpress.py): pure.

The weighted sums themselves are Postgres's (tests/integration/test_reexpress.py checks them against the
package's data); here each re-expressed row is given as that sum, and the tests check what is shown: the
unit's own value first, the basis and estimate of each period, and derived periods spanning the reform.
"""

from __future__ import annotations

from decimal import Decimal

from services.query.periods import NativeRow, derive
from services.query.reexpress import Basis, ReRow, blend, legacy_periods, native_only, reexpressible
from shared.catalog import Measure
from shared.hierarchy import Unit
from shared.periods import parse_period
from shared.values import Pair
from tests.fixtures.indicators import BOOLEAN, FLOW, RATIO_OF_FLOWS, RATIO_OF_STOCKS, STOCK, indicator

D = Decimal


def re(period: str, num: str | None, den: str | None = None, *, reporting: int = 2, expected: int = 2,
       exact: bool = True) -> ReRow:
    return ReRow(period, None if num is None else D(num), None if den is None else D(den), reporting, expected,
                 exact)


def test_a_flow_on_legacy_months_is_the_reexpressed_sum_exact_when_every_weight_is_1() -> None:
    # Tây Ninh (2025) in January: Long An 300 + Tây Ninh (legacy) 200, both whole (weight 1).
    b = blend(FLOW, [], [re("2024-01", "500")], sources=2, all_legacy=True)
    assert b.effective == Pair(D(500)) and b.reexpressed == Pair(D(500))
    assert (b.basis, b.source, b.estimated) == (Basis.REEXPRESSED, "reexpressed", False)
    assert (b.reporting, b.expected) == (2, 2)
    assert b.reported is None and b.computed is None  # the unit's own native components: none


def test_a_divided_commune_makes_the_value_estimated() -> None:
    # A 2025 commune: one whole legacy commune (100) + half of a divided one (½ × 61 = 30.5).
    b = blend(STOCK, [], [re("2024-06", "130.5", exact=False)], sources=2, all_legacy=True)
    assert b.effective == Pair(D("130.5")) and b.estimated is True


def test_a_ratio_keeps_its_weighted_components() -> None:
    b = blend(RATIO_OF_STOCKS, [], [re("2024-06", "90.5", "101")], sources=3, all_legacy=True)
    assert b.effective == Pair(D("90.5"), D(101)) and b.reexpressed == b.effective


def test_a_boolean_is_a_coverage_of_its_sources() -> None:
    # Two legacy communes reported: one true (1/1), one false (0/1): the pair summed unweighted by SQL.
    b = blend(BOOLEAN, [], [re("2024-06", "1", "2", reporting=2, expected=3)], sources=3, all_legacy=True)
    assert b.effective == Pair(D(1), D(2)) and (b.reporting, b.expected) == (2, 3)


def test_own_level_indicators_and_legacy_units_are_not_reexpressed() -> None:
    directives = indicator(Measure.FLOW).model_copy(update={"rollup": False})
    tay_ninh = Unit("2025", "80", "VN", "province", "Tỉnh", "Tỉnh Tây Ninh", "80", ("VN",))
    long_an = Unit("legacy", "80", "VN", "province", "Tỉnh", "Tỉnh Long An", "80", ("VN",))
    assert reexpressible(tay_ninh, FLOW) and not reexpressible(tay_ninh, directives)
    assert not reexpressible(long_an, FLOW)
    b = native_only(derive(FLOW, [NativeRow.of("2024-01", reported=Pair(D(7)))]))
    assert (b.basis, b.estimated, b.reexpressed, b.effective) == (Basis.NATIVE, False, None, Pair(D(7)))


def test_the_units_own_native_value_comes_first_with_the_reexpressed_one_beside_it() -> None:
    own = NativeRow.of("2024-01", reported=Pair(D(480)))
    b = blend(FLOW, [own], [re("2024-01", "500")], sources=2, all_legacy=True)
    assert b.effective == Pair(D(480)) and b.source == "reported" and b.basis is Basis.NATIVE
    assert b.reexpressed == Pair(D(500)) and b.reported == Pair(D(480))
    assert b.expected is None  # a native value counts the unit's children


def test_the_year_2025_of_a_flow_is_reexpressed_halves_plus_native_halves() -> None:
    reexpressed = [re(f"2025-{m:02}", "10") for m in range(1, 7)]
    natives = [NativeRow.of(f"2025-{m:02}", computed=Pair(D(20)), reporting=5) for m in range(7, 13)]
    b = blend(FLOW, natives, reexpressed, sources=2, all_legacy=False)
    assert b.effective == Pair(D(180)) and b.basis is Basis.MIXED and b.source == "mixed"
    assert b.reexpressed == Pair(D(60)) and b.computed == Pair(D(120))
    assert b.estimated is False and (b.reporting, b.expected) == (5, None)  # December's: native
    ratio = blend(RATIO_OF_FLOWS, natives[:1], [re("2025-06", "3", "4", exact=False)], sources=2, all_legacy=False)
    assert ratio.effective == Pair(D(23), D(4)) and ratio.estimated is True  # June's weights reach the year


def test_the_year_of_a_stock_is_its_latest_month_with_that_months_basis() -> None:
    reexpressed = [re("2025-06", "900", exact=False)]
    assert blend(STOCK, [], reexpressed, sources=2, all_legacy=False).basis is Basis.REEXPRESSED
    assert blend(STOCK, [], reexpressed, sources=2, all_legacy=False).estimated is True
    later = blend(STOCK, [NativeRow.of("2025-08", computed=Pair(D(950)))], reexpressed, sources=2, all_legacy=False)
    assert later.effective == Pair(D(950)) and later.basis is Basis.NATIVE and later.estimated is False
    assert later.reexpressed == Pair(D(900))


def test_nothing_to_show_counts_the_sources_on_a_legacy_period() -> None:
    empty = blend(FLOW, [], [], sources=3, all_legacy=True)
    assert (empty.effective, empty.basis, empty.reporting, empty.expected) == (None, Basis.REEXPRESSED, 0, 3)
    after = blend(FLOW, [], [], sources=3, all_legacy=False)
    assert (after.basis, after.expected) == (Basis.NATIVE, None)


def test_legacy_periods_end_before_the_reform() -> None:
    months = [parse_period(p) for p in ("2025-05", "2025-06", "2025-07")]
    assert legacy_periods(months) == ["2025-05", "2025-06"]
    assert legacy_periods([parse_period("2025-H1"), parse_period("2025")]) == ["2025-H1"]
