"""The pure incremental roll-up: table tests of each rule, then a property test against the oracle.

The property test drives `apply_batch` the way the aggregator does (rows loaded from a store before each
batch, only the changed rows written back) and compares the result with `shared.recompute`, which
sums from scratch and shares no code with the deltas.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregate.rollup import Key, Row, ancestor_keys, apply_batch, collapse, materialized_parent
from shared.catalog import load_catalog
from shared.events import AcceptedEvent
from shared.hierarchy import NATION, Hierarchy, Unit
from shared.recompute import Expected, recompute
from shared.values import Pair

T0 = datetime(2024, 8, 1, tzinfo=UTC)
OWN_LEVEL = {"directives_issued"}


def _tree(edition: str, spec: dict[str, dict[str, list[str]] | list[str]]) -> list[Unit]:
    """{province: {district: [communes]}} (legacy) or {province: [communes]} (2025)."""
    nation = Unit(edition, NATION, None, "nation", "", "", None, ())
    units = [nation]
    for p_code, below in spec.items():
        province = Unit(edition, p_code, NATION, "province", "", "", p_code, (NATION,))
        units.append(province)
        if isinstance(below, list):
            units += [Unit(edition, c, p_code, "commune", "", "", p_code, (NATION, p_code)) for c in below]
            continue
        for d_code, communes in below.items():
            units.append(Unit(edition, d_code, p_code, "district", "", "", p_code, (NATION, p_code)))
            units += [
                Unit(edition, c, d_code, "commune", "", "", p_code, (NATION, p_code, d_code)) for c in communes
            ]
    return units


# Commune codes are reused across editions on purpose, as the GSO did in 2025.
HIERARCHY = Hierarchy(
    _tree("legacy", {"80": {"803": ["27991", "27994", "27997"], "804": ["28036"]}, "01": {"001": ["00004"]}})
    + _tree("2025", {"80": ["27991", "00004"]})
)
PARENT_OF = materialized_parent(HIERARCHY)


def rolls_up(indicator: str) -> bool:
    return indicator not in OWN_LEVEL


def ev(
    seq: int,
    unit: str,
    num: str | int | None,
    den: str | int | None = None,
    *,
    indicator: str = "cccd_issued",
    period: str = "2024-07",
    edition: str = "legacy",
) -> AcceptedEvent:
    found = HIERARCHY.get(edition, unit)
    return AcceptedEvent(
        seq=seq, event_id=f"e{seq}", edition=edition, unit=unit,
        province=found.province_code or NATION if found else "??", indicator=indicator, period=period,
        num=None if num is None else Decimal(num), den=None if den is None else Decimal(den),
        accepted_at=T0 + timedelta(seconds=seq),
    )


def key(unit: str, indicator: str = "cccd_issued", edition: str = "legacy", period: str = "2024-07") -> Key:
    return (edition, unit, indicator, period)


def run(*batches: list[AcceptedEvent], rows: dict[Key, Row] | None = None) -> dict[Key, Row]:
    rows = {} if rows is None else rows
    for batch in batches:
        apply_batch(batch, rows, PARENT_OF, rolls_up)
    return rows


def P(num: str | int, den: str | int | None = None) -> Pair:  # noqa: N802 - reads like the notation
    return Pair(Decimal(num), None if den is None else Decimal(den))


# ---- sums by measure


@pytest.mark.parametrize(
    ("indicator", "values", "district", "province"),
    [
        ("dossiers_received", [(10, None), (20, None), (5, None)], P(35), P(35)),  # flow
        ("cccd_issued", [(1000, None), ("2500.5", None), (0, None)], P("3500.5"), P("3500.5")),  # stock
        ("online_dossier_rate", [(8, 10), (1, 4), (0, 6)], P(9, 20), P(9, 20)),  # ratio: sums, no average
        ("working_group_formed", [(1, 1), (1, 1), (0, 1)], P(2, 3), P(2, 3)),  # boolean -> coverage
    ],
)
def test_sums_by_measure(
    indicator: str, values: list[tuple[int | str, int | None]], district: Pair, province: Pair
) -> None:
    communes = ["27991", "27994", "27997"]
    pairs = zip(communes, values, strict=True)
    rows = run([ev(i + 1, c, n, d, indicator=indicator) for i, (c, (n, d)) in enumerate(pairs)])
    assert rows[key("803", indicator)].computed == district
    assert rows[key("803", indicator)].reporting == 3
    assert rows[key("80", indicator)].computed == province
    assert rows[key("80", indicator)].reporting == 1  # one district has a value, out of two
    assert key(NATION, indicator) not in rows  # the nation is summed at read time


def test_sum_over_two_districts() -> None:
    rows = run([ev(1, "27991", 10), ev(2, "28036", 7), ev(3, "27994", 1)])
    assert rows[key("803")].computed == P(11)
    assert rows[key("804")].computed == P(7)
    assert rows[key("80")].computed == P(18)
    assert rows[key("80")].reporting == 2
    assert key("01") not in rows


# ---- sets, corrections, retractions, seq


def test_correction_replaces_the_value() -> None:
    rows = run([ev(1, "27991", 10), ev(2, "27994", 5)], [ev(3, "27991", 12)])
    assert rows[key("27991")].reported == P(12)
    assert rows[key("27991")].rep_seq == 3
    assert rows[key("803")].computed == P(17)
    assert rows[key("80")].computed == P(17)


def test_retraction_removes_the_value_and_the_count() -> None:
    rows = run([ev(1, "27991", 10), ev(2, "27994", 5)], [ev(3, "27991", None)])
    assert rows[key("27991")].reported is None
    assert rows[key("27991")].rep_seq == 3  # retracted, not never reported
    assert rows[key("803")].computed == P(5)
    assert rows[key("803")].reporting == 1
    run([ev(4, "27994", None)], rows=rows)
    assert rows[key("803")].computed is None
    assert rows[key("803")].reporting == 0
    assert rows[key("80")].computed is None
    assert rows[key("80")].reporting == 0


def test_retraction_of_a_value_never_reported_changes_no_parent() -> None:
    rows = run([ev(1, "27991", None)])
    assert rows[key("27991")].rep_seq == 1
    assert key("803") not in rows


def test_stale_seq_is_ignored_across_batches() -> None:
    rows: dict[Key, Row] = {}
    run([ev(5, "27991", 10)], rows=rows)
    outcome = apply_batch([ev(3, "27991", 99)], rows, PARENT_OF, rolls_up)
    assert [e.seq for e in outcome.stale] == [3]
    assert not outcome.applied
    assert not outcome.changed
    assert rows[key("27991")].reported == P(10)
    assert rows[key("803")].computed == P(10)


def test_within_a_batch_the_highest_seq_wins_whatever_the_order() -> None:
    outcome = apply_batch([ev(7, "27991", 70), ev(9, "27991", 90), ev(8, "27991", 80)], rows := {}, PARENT_OF, rolls_up)
    assert rows[key("27991")].reported == P(90)
    assert sorted(e.seq for e in outcome.stale) == [7, 8]
    assert [e.seq for e in outcome.applied] == [9]
    assert rows[key("803")].computed == P(90)


def test_duplicates_change_nothing() -> None:
    first = run([ev(1, "27991", 10), ev(1, "27991", 10), ev(2, "27994", 5)])
    again = copy.deepcopy(first)
    outcome = apply_batch([ev(1, "27991", 10), ev(2, "27994", 5)], again, PARENT_OF, rolls_up)
    assert again == first
    assert not outcome.changed
    assert len(outcome.stale) == 2


def test_collapse_keeps_the_highest_seq_per_key() -> None:
    latest, superseded = collapse([ev(2, "27991", 1), ev(4, "27994", 1), ev(3, "27991", 1), ev(1, "27991", 1)])
    assert sorted(e.seq for e in latest) == [3, 4]
    assert sorted(e.seq for e in superseded) == [1, 2]


# ---- reported vs computed


def test_a_district_reports_its_own_figure_beside_its_communes() -> None:
    rows = run([ev(1, "27991", 10), ev(2, "27994", 20), ev(3, "803", 100)])
    district = rows[key("803")]
    assert district.reported == P(100)
    assert district.computed == P(30)
    assert district.effective == P(100)
    assert rows[key("80")].computed == P(100)  # the parent rolls up the district's effective value


def test_a_reported_value_absorbs_changes_below_it() -> None:
    rows = run([ev(1, "27991", 10), ev(2, "803", 100)])
    province_before = copy.deepcopy(rows[key("80")])
    outcome = apply_batch([ev(3, "27994", 5), ev(4, "27991", 1)], rows, PARENT_OF, rolls_up)
    assert rows[key("803")].computed == P(6)
    assert rows[key("80")] == province_before
    assert key("80") not in outcome.changed
    run([ev(5, "803", None)], rows=rows)  # the district withdraws its figure: its communes show through
    assert rows[key("803")].effective == P(6)
    assert rows[key("80")].computed == P(6)
    assert rows[key("80")].reporting == 1


def test_overrides_at_the_province_and_a_district_at_once() -> None:
    rows = run([ev(1, "27991", 10), ev(2, "803", 50), ev(3, "80", 1000), ev(4, "28036", 7)])
    assert rows[key("803")].computed == P(10)
    assert rows[key("80")].computed == P(57)
    assert rows[key("80")].reported == P(1000)


# ---- own-level indicators, editions, precision


def test_own_level_indicator_is_stored_where_reported_and_never_summed() -> None:
    rows = run([ev(1, "803", 3, indicator="directives_issued"), ev(2, "27991", 2, indicator="directives_issued")])
    assert rows[key("803", "directives_issued")].reported == P(3)
    assert rows[key("803", "directives_issued")].computed is None
    assert rows[key("803", "directives_issued")].reporting == 0
    assert key("80", "directives_issued") not in rows


def test_both_editions_are_separate_trees_even_with_reused_codes() -> None:
    rows = run([ev(1, "27991", 10), ev(2, "27991", 4, edition="2025"), ev(3, "00004", 6, edition="2025")])
    assert rows[key("803")].computed == P(10)
    assert rows[key("80")].computed == P(10)
    assert rows[key("80", edition="2025")].computed == P(10)  # two communes straight under the province
    assert rows[key("80", edition="2025")].reporting == 2
    assert key("803", edition="2025") not in rows


def test_periods_are_separate_rows() -> None:
    rows = run([ev(1, "27991", 10), ev(2, "27991", 20, period="2024-08")])
    assert rows[key("803")].computed == P(10)
    assert rows[key("803", period="2024-08")].computed == P(20)


def test_large_figures_stay_exact() -> None:
    big = "123456789012345678901234567890.12"
    rows = run([ev(1, "27991", big), ev(2, "27994", "0.01")], [ev(3, "27994", "0.02")])
    assert rows[key("803")].computed == P("123456789012345678901234567890.14")


def test_ancestor_keys_stop_at_the_province() -> None:
    assert [k[1] for k in ancestor_keys(key("27991"), PARENT_OF)] == ["803", "80"]
    assert [k[1] for k in ancestor_keys(key("27991", edition="2025"), PARENT_OF)] == ["80"]
    assert ancestor_keys(key("80"), PARENT_OF) == []


def test_accepted_at_follows_the_latest_change() -> None:
    rows = run([ev(1, "27991", 10)], [ev(5, "27994", 3)])
    assert rows[key("803")].accepted_at == T0 + timedelta(seconds=5)
    assert rows[key("27991")].accepted_at == T0 + timedelta(seconds=1)


def test_changes_that_cancel_within_a_batch_leave_the_parents_alone() -> None:
    rows = run([ev(1, "27991", 10), ev(2, "27994", 20)])
    province_before = copy.deepcopy(rows[key("80")])
    outcome = apply_batch([ev(3, "27991", 15), ev(4, "27994", 15)], rows, PARENT_OF, rolls_up)
    assert rows[key("803")].computed == P(30)
    assert rows[key("803")].accepted_at == T0 + timedelta(seconds=4)  # the newest change behind it
    assert rows[key("80")] == province_before  # the district's net change is nil: nothing climbs further
    assert key("80") not in outcome.changed


def test_a_batch_over_several_levels_climbs_each_parent_once_with_the_newest_change() -> None:
    rows = run([ev(5, "27991", 10), ev(2, "27994", 20), ev(7, "28036", 1), ev(3, "803", None), ev(4, "80", None)])
    assert rows[key("803")].computed == P(30)
    assert rows[key("804")].computed == P(1)
    assert rows[key("80")].computed == P(31)
    assert rows[key("80")].reporting == 2
    assert rows[key("80")].accepted_at == T0 + timedelta(seconds=7)
    assert rows[key("803")].accepted_at == T0 + timedelta(seconds=5)


# ---- the property: incremental == from scratch


INDICATORS = ["dossiers_received", "online_dossier_rate", "directives_issued"]
PERIODS = ["2024-07", "2024-08"]


@st.composite
def hierarchies(draw: st.DrawFn) -> Hierarchy:
    spec: dict[str, dict[str, list[str]] | list[str]] = {}
    for p in range(2):
        districts: dict[str, list[str]] = {}
        for d in range(draw(st.integers(2, 3))):
            districts[f"{p}{d}"] = [f"{p}{d}{c}" for c in range(draw(st.integers(2, 3)))]
        spec[f"P{p}"] = districts
    return Hierarchy(_tree("legacy", spec))


amounts = st.decimals(min_value=-1000, max_value=10**6, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Hierarchy, list[list[AcceptedEvent]], list[AcceptedEvent]]:
    hierarchy = draw(hierarchies())
    reporters = _codes(hierarchy)
    n = draw(st.integers(1, 40))
    events: list[AcceptedEvent] = []
    for seq in range(1, n + 1):
        unit = draw(st.sampled_from(reporters))  # communes, districts and provinces: overrides at every level
        indicator = draw(st.sampled_from(INDICATORS))
        retract = draw(st.integers(0, 5)) == 0
        num = None if retract else draw(amounts)
        den = None if retract or indicator != "online_dossier_rate" else draw(amounts)
        events.append(AcceptedEvent(
            seq=seq, event_id=f"e{seq}", edition="legacy", unit=unit, province="P", indicator=indicator,
            period=draw(st.sampled_from(PERIODS)), num=num, den=den, accepted_at=T0 + timedelta(seconds=seq),
        ))
    duplicates = draw(st.lists(st.sampled_from(events), max_size=10))
    delivered = draw(st.permutations(events + duplicates))  # Kafka may reorder and repeat
    batches: list[list[AcceptedEvent]] = []
    rest = list(delivered)
    while rest:
        size = draw(st.integers(1, max(1, len(rest))))
        batches.append(rest[:size])
        rest = rest[size:]
    return hierarchy, batches, events


def _codes(hierarchy: Hierarchy) -> list[str]:
    codes = [f"P{p}" for p in range(2)]
    codes += [f"{p}{d}" for p in range(2) for d in range(3)]
    codes += [f"{p}{d}{c}" for p in range(2) for d in range(3) for c in range(3)]
    return [c for c in codes if hierarchy.get("legacy", c) is not None]


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_incremental_batches_equal_recompute_from_scratch(
    scenario: tuple[Hierarchy, list[list[AcceptedEvent]], list[AcceptedEvent]],
) -> None:
    hierarchy, batches, events = scenario
    parent_of = materialized_parent(hierarchy)

    store: dict[Key, Row] = {}  # what Postgres holds between batches
    for batch in batches:
        wanted = set()
        for e in batch:
            wanted.add(e.key)
            if rolls_up(e.indicator):
                wanted.update(ancestor_keys(e.key, parent_of))
        rows = {k: copy.deepcopy(store[k]) for k in wanted if k in store}
        outcome = apply_batch(batch, rows, parent_of, rolls_up)
        for k in outcome.changed:  # only changed rows are written back
            store[k] = copy.deepcopy(rows[k])

    latest: dict[Key, AcceptedEvent] = {}
    for e in events:
        if e.key not in latest or e.seq > latest[e.key].seq:
            latest[e.key] = e
    reported = {k: (None if e.num is None else (e.num, e.den)) for k, e in latest.items()}
    expected = recompute(reported, hierarchy, load_catalog())  # the oracle reads the catalogue itself

    def amount(pair: Pair | None) -> tuple[Decimal, Decimal | None] | None:
        return None if pair is None else (pair.num, pair.den)

    empty = Expected(None, 0)
    for k in set(store) | set(expected):
        row = store.get(k, Row())
        want = expected.get(k, empty)
        assert (amount(row.computed), row.reporting) == (want.computed, want.reporting), k
    for k, e in latest.items():
        assert store[k].rep_seq == e.seq, k
        assert amount(store[k].reported) == reported[k], k
    for k, row in store.items():
        if k not in latest:
            assert row.reported is None and row.rep_seq is None, k


def test_a_sum_that_cannot_stay_exact_raises_instead_of_rounding() -> None:
    rows = run([ev(1, "27994", "1e50")])
    with pytest.raises(ArithmeticError):
        apply_batch([ev(2, "27991", "0." + "1" * 120)], rows, PARENT_OF, rolls_up)
