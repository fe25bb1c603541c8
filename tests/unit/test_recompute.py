"""The oracle by hand: on a hierarchy small enough to sum on paper, recompute gives what a person would.

Legacy:  province P ─ district D1 ─ communes C1, C2
                    └ district D2 ─ commune  C3
2025:    province P ─ communes X1, X2
"""

from __future__ import annotations

from decimal import Decimal

from shared.catalog import Catalog, Indicator
from shared.hierarchy import NATION, Hierarchy, Unit
from shared.recompute import Amount, Expected, Key, recompute, rows_above


def unit(edition: str, code: str, *above: str) -> Unit:
    """`above` from the province down to the parent."""
    level = {0: "province", 1: "district" if edition == "legacy" else "commune", 2: "commune"}[len(above)]
    parent = above[-1] if above else NATION
    return Unit(edition, code, parent, level, "", code, (above or (code,))[0], (NATION, *above))


HIERARCHY = Hierarchy([
    Unit("legacy", NATION, None, "nation", "", "", None, ()),
    unit("legacy", "P"),
    unit("legacy", "D1", "P"), unit("legacy", "C1", "P", "D1"), unit("legacy", "C2", "P", "D1"),
    unit("legacy", "D2", "P"), unit("legacy", "C3", "P", "D2"),
    Unit("2025", NATION, None, "nation", "", "", None, ()),
    unit("2025", "P"), unit("2025", "X1", "P"), unit("2025", "X2", "P"),
])


def indicator(code: str, measure: str, *, rollup: bool = True) -> Indicator:
    return Indicator.model_validate({
        "code": code, "name_vi": code, "name_en": code, "group": "governance", "unit": "", "measure": measure,
        "components": "flow" if measure == "ratio" else None, "period_type": "month", "rollup": rollup,
    })


CATALOG = Catalog([
    indicator("issued", "flow"),
    indicator("rate", "ratio"),
    indicator("plans", "flow", rollup=False),  # own-level
])


def k(unit: str, indicator: str = "issued", *, edition: str = "legacy", period: str = "2024-07") -> Key:
    return (edition, unit, indicator, period)


def n(num: int, den: int | None = None) -> Amount:
    return (Decimal(num), None if den is None else Decimal(den))


def test_the_parent_rows_are_every_ancestor_but_the_nation() -> None:
    assert rows_above(HIERARCHY, "legacy", "C1") == ("D1", "P")
    assert rows_above(HIERARCHY, "2025", "X1") == ("P",)
    assert rows_above(HIERARCHY, "legacy", "P") == ()
    assert rows_above(HIERARCHY, "legacy", "nowhere") == ()


def test_sums_climb_level_by_level_and_a_reported_figure_overrides_the_sum_below_it() -> None:
    # D2 reports its own 100 beside its commune's 7: the province counts D2 as 100.
    got = recompute({k("C1"): n(10), k("C2"): n(5), k("C3"): n(7), k("D2"): n(100)}, HIERARCHY, CATALOG)
    assert got == {
        k("C1"): Expected(None, 0), k("C2"): Expected(None, 0), k("C3"): Expected(None, 0),
        k("D1"): Expected(n(15), 2),
        k("D2"): Expected(n(7), 1),
        k("P"): Expected(n(115), 2),
    }


def test_ratios_sum_numerators_and_denominators() -> None:
    got = recompute({k("C1", "rate"): n(3, 4), k("C2", "rate"): n(2, 6)}, HIERARCHY, CATALOG)
    assert got[k("D1", "rate")] == Expected(n(5, 10), 2)
    assert got[k("P", "rate")] == Expected(n(5, 10), 1)


def test_a_retraction_counts_for_nothing() -> None:
    got = recompute({k("C1"): n(4), k("C2"): None}, HIERARCHY, CATALOG)
    assert got == {k("C1"): Expected(None, 0), k("D1"): Expected(n(4), 1), k("P"): Expected(n(4), 1)}


def test_the_2025_edition_has_communes_straight_under_the_province() -> None:
    got = recompute({k("X1", edition="2025"): n(1), k("X2", edition="2025"): n(2)}, HIERARCHY, CATALOG)
    assert got[k("P", edition="2025")] == Expected(n(3), 2)
    assert k("P") not in got  # the legacy province of the same code is another unit


def test_own_level_and_unknown_indicators_stay_where_reported() -> None:
    got = recompute(
        {k("C1", "plans"): n(2), k("D1", "plans"): n(3), k("C1", "mystery"): n(9)}, HIERARCHY, CATALOG
    )
    assert got == {
        k("C1", "plans"): Expected(None, 0),
        k("D1", "plans"): Expected(None, 0),
        k("C1", "mystery"): Expected(None, 0),
    }


def test_sums_stay_exact_beyond_the_default_28_digits() -> None:
    big, tiny = "1" + "0" * 40, "0." + "0" * 39 + "1"
    got = recompute({k("C1"): (Decimal(big), None), k("C2"): (Decimal(tiny), None)}, HIERARCHY, CATALOG)
    assert got[k("D1")].computed == (Decimal(big + tiny[1:]), None)
