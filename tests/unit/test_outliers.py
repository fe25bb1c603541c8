"""Outliers (DESIGN §8), each path on a small series whose expected score the test computes itself, through
both the aggregator's scoring and the oracle that `d06 quality verify` trusts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.aggregate.outliers import Stretch, flag_at, score, scored_values
from shared.catalog import load_catalog
from shared.periods import ordinal, shift
from shared.quality_oracle import ExpectedFlag, outlier_flags

CATALOG = load_catalog()
LAST = "2024-12"


def _series(values: list[int | None]) -> dict[str, Decimal]:
    """The values as months ending at LAST, oldest first (None: no report that month)."""
    n = len(values)
    return {shift(LAST, k - n + 1): Decimal(v) for k, v in enumerate(values) if v is not None}


def _both(values: list[int | None], indicator: str = "dossiers_received") -> tuple[ExpectedFlag | None, ...]:
    """The flag at LAST as the aggregator scores it and as the oracle does."""
    series = _series(values)
    stock = indicator != "dossiers_received"
    found = flag_at(scored_values(Stretch.of({ordinal(p): v for p, v in series.items()}), stock), ordinal(LAST))
    incremental = None if found is None else ExpectedFlag(found.value, found.median, found.score,
                                                          found.constant_history)
    oracle = outlier_flags({("legacy", "27991", indicator, p): (v, None) for p, v in series.items()}, CATALOG)
    return incremental, oracle.get(("legacy", "27991", "outlier", indicator, LAST))


def test_mad_above_zero_gives_the_modified_z_score() -> None:
    history = [100, 102, 98, 101, 99, 100, 103, 97, 100, 101, 99, 100]
    median, mad = Decimal(100), Decimal(1)  # deviations 0,2,2,1,1,0,3,3,0,1,1,0: their median is 1
    z = (Decimal("0.6745") * (Decimal(200) - median) / mad).quantize(Decimal("0.0001"))
    expected = ExpectedFlag(Decimal(200), median, z)
    assert _both([*history, 200]) == (expected, expected)
    assert _both([*history, 102]) == (None, None)  # z = 1.349: in line


def test_mad_zero_falls_back_to_the_mean_absolute_deviation() -> None:
    history = [10] * 8 + [12, 14, 8, 30]
    mean_ad = Decimal(2 + 4 + 2 + 20) / 12
    z = ((Decimal(50) - 10) / (Decimal("1.253314") * mean_ad)).quantize(Decimal("0.0001"))
    expected = ExpectedFlag(Decimal(50), Decimal(10), z)
    assert _both([*history, 50]) == (expected, expected)
    assert _both([*history, 13]) == (None, None)


def test_any_departure_from_a_constant_history_is_flagged_without_a_score() -> None:
    expected = ExpectedFlag(Decimal(400), Decimal(0), None, True)
    assert _both([0] * 12 + [400]) == (expected, expected)
    assert _both([0] * 12 + [0]) == (None, None)


def test_fewer_than_six_earlier_values_say_nothing() -> None:
    assert _both([0] * 5 + [400]) == (None, None)
    assert _both([0, None, 0, None, 0, None, 0, None, 0, None, None, None, 400]) == (None, None)
    expected = ExpectedFlag(Decimal(400), Decimal(0), None, True)
    assert _both([None] * 6 + [0] * 6 + [400]) == (expected, expected)


def test_only_the_previous_twelve_months_count() -> None:
    # a wild value 13 months back has left the window
    assert _both([5000] + [10] * 12 + [10]) == (None, None)


def test_a_stock_is_scored_on_its_monthly_increase() -> None:
    levels = [1000 + 100 * k for k in range(13)]  # +100 every month: a constant increase
    assert _both([*levels, levels[-1] + 100], "cccd_issued") == (None, None)
    # 141,000 typed as 14,100 after a steady climb: a fall the size of the level
    expected = ExpectedFlag(Decimal(14_100 - 2_200), Decimal(100), None, True)
    assert _both([*levels, 14_100], "cccd_issued") == (expected, expected)


@pytest.mark.parametrize("gap_at", [1, 6, 12])
def test_a_stock_month_without_the_month_before_has_no_increase(gap_at: int) -> None:
    levels: list[int | None] = [1000 + 100 * k for k in range(14)]
    levels[-1 - gap_at] = None
    found, oracle = _both(levels, "cccd_issued")
    assert found == oracle


@given(st.lists(st.integers(0, 12), min_size=6, max_size=12), st.integers(-40, 60), st.integers(1, 10**12))
def test_whole_values_are_judged_exactly_as_decimals_are(history: list[int], x: int, scale: int) -> None:
    # Small values make ties, constant histories and values on the 3.5 limit common; the scale keeps them
    # there for counts of any size. Whole values take the integer path, Decimals the exact one.
    history, x = [h * scale for h in history], x * scale
    assert score(x, history) == score(Decimal(x), [Decimal(h) for h in history])


def test_a_score_of_exactly_three_and_a_half_is_in_line_in_both_arithmetics() -> None:
    history = [-2000, -1000, -675, -674, -10, -1, 1, 10, 674, 675, 1000, 2000]  # median 0, MAD 674.5
    for values in (history, [Decimal(h) for h in history]):
        assert score(3500, values) is None  # z = 0.6745 · 3500 / 674.5 = 3.5
        found = score(3501, values)
        assert found is not None and found.score == Decimal("3.5010")


def test_a_stretch_grows_either_way() -> None:
    stretch = Stretch.of({10: 1, 12: 3})
    assert stretch.values == [1, None, 3]
    stretch.set(8, 5)  # before its start
    stretch.set(15, 7)  # past its end
    stretch.set(12, None)  # retracted
    assert (stretch.first, stretch.values) == (8, [5, None, 1, None, None, None, None, 7])
    assert [stretch.get(n) for n in (7, 8, 12, 15, 16)] == [None, 5, None, 7, None]
    empty = Stretch(0, [])
    empty.set(40, 2)
    assert (empty.first, empty.values) == (40, [2])
