"""The aggregator's flags, kept incrementally batch by batch, equal the flags recomputed from scratch.

Each batch goes through the pure steps the aggregator takes (services/aggregate/quality_step.py) —
the histories read as they stood before the batch, apply_batch on the rows it loads, the histories brought
up to date with the batch's changes, then the rules and outliers of every key the batch may change — and
the flags it keeps are compared with shared.quality_oracle, which starts again from the reported values
alone.
"""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregate.outliers import Stretch, whole
from services.aggregate.quality import (
    OpenFlags,
    OutlierTarget,
    QualityPlan,
    Series,
    after_batch,
    evaluate,
)
from services.aggregate.rollup import Key, Row, ancestor_keys, apply_batch, materialized_parent
from shared.catalog import Catalog, load_catalog
from shared.events import AcceptedEvent
from shared.hierarchy import NATION, Hierarchy, Unit
from shared.periods import ordinal, shift
from shared.quality_flags import Flag, FlagKey
from shared.quality_oracle import ExpectedFlag, expected_flags
from shared.rules import RuleSpec

CATALOG = load_catalog()
T0 = datetime(2024, 8, 1, tzinfo=UTC)


def _unit(code: str, level: str, *above: str) -> Unit:
    return Unit("legacy", code, above[-1] if above else None, level, "", "", "80" if above else None, above)


HIERARCHY = Hierarchy([
    _unit(NATION, "nation"), _unit("80", "province", NATION), _unit("803", "district", NATION, "80"),
    _unit("804", "district", NATION, "80"), _unit("27991", "commune", NATION, "80", "803"),
    _unit("27994", "commune", NATION, "80", "803"), _unit("28036", "commune", NATION, "80", "804"),
])
PARENT_OF = materialized_parent(HIERARCHY)
PLAN = QualityPlan(CATALOG, HIERARCHY)
UNITS = ["27991", "27994", "28036", "803", "80"]
PERIODS = [shift("2023-01", k) for k in range(16)]
# Values drawn from a narrow band and a few wild ones, so that rules break and outliers stand out.
AMOUNTS = st.sampled_from([0, 10, 10, 10, 11, 12, 12, 13, 40, 500])
SCALAR = ["cccd_issued", "vneid_l2_activated", "dossiers_received"]
RATIO = ["online_dossier_rate", "essential_services_online"]


@st.composite
def streams(draw: st.DrawFn) -> list[list[AcceptedEvent]]:
    n = draw(st.integers(1, 90))
    # A few units and indicators per stream, so that series grow long enough for their outliers to count.
    units = draw(st.lists(st.sampled_from(UNITS), min_size=1, max_size=3, unique=True))
    indicators = draw(st.lists(st.sampled_from(SCALAR + RATIO), min_size=1, max_size=3, unique=True))
    events: list[AcceptedEvent] = []
    for seq in range(1, n + 1):
        unit = draw(st.sampled_from(units))
        indicator = draw(st.sampled_from(indicators))
        period = draw(st.sampled_from(PERIODS))
        retract = draw(st.integers(0, 9)) == 0
        num = None if retract else Decimal(draw(AMOUNTS))
        den = None if retract or indicator in SCALAR else Decimal(draw(st.sampled_from([20, 25, 26, 40])))
        events.append(AcceptedEvent(
            seq=seq, event_id=f"e{seq}", edition="legacy", unit=unit, province="80", indicator=indicator,
            period=period, num=num, den=den, accepted_at=T0,
        ))
    order = draw(st.permutations(events))  # redelivery in another order: the highest seq still wins
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=8)))
    bounds = [0, *cuts, len(order)]
    return [list(order[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


class Store:
    """The read model and the open flags, as the aggregator's tables would hold them."""

    def __init__(self) -> None:
        self.rows: dict[Key, Row] = {}
        self.flags: dict[FlagKey, Flag] = {}
        self.present: set[tuple[str, str, str]] = set()  # as shared.indicator_presence records them

    def apply(self, batch: list[AcceptedEvent]) -> None:
        keys = {ev.key for ev in batch} | {k for ev in batch for k in ancestor_keys(ev.key, PARENT_OF)}
        series = PLAN.outlier_targets(ev.key for ev in batch)
        before = self._histories(series)
        loaded = {k: copy.copy(self.rows[k]) for k in keys if k in self.rows}
        effect = apply_batch(batch, loaded, PARENT_OF, lambda i: CATALOG.by_code[i].rollup)
        for key in effect.changed:
            self.rows[key] = loaded[key]
        histories = after_batch(before, series, loaded, effect.changed)
        self.present |= {(ev.edition, ev.province, ev.indicator) for ev in batch}
        rules = PLAN.checkable(PLAN.rule_targets(keys), self.present)
        verdicts = evaluate(PLAN, rules, self._effective, series, histories, OpenFlags(self.flags))
        for key in verdicts.clear:
            self.flags.pop(key, None)
        for flag in verdicts.open:
            self.flags[flag.key] = flag

    def _effective(self, key: Key) -> tuple[Decimal, Decimal | None] | None:
        row = self.rows.get(key)
        pair = None if row is None else row.effective
        return None if pair is None else (pair.num, pair.den)

    def _histories(self, targets: dict[Series, OutlierTarget]) -> dict[Series, Stretch]:
        """What the aggregator's one statement reads: each series' reported values over its stretch."""
        return {series: Stretch.of({ordinal(k[3]): whole(r.reported.num) for k, r in self.rows.items()
                                     if k[:3] == series and r.reported is not None
                                     and t.first_read <= k[3] <= t.last_read})
                for series, t in targets.items()}

    def reported(self) -> dict[Key, tuple[Decimal, Decimal | None]]:
        return {k: (r.reported.num, r.reported.den) for k, r in self.rows.items() if r.reported is not None}


@settings(max_examples=150, deadline=None)
@given(streams())
def test_incremental_flags_equal_the_flags_recomputed_from_scratch(batches: list[list[AcceptedEvent]]) -> None:
    store = Store()
    for batch in batches:
        store.apply(batch)
    kept = {k: ExpectedFlag(f.left, f.right, f.score, f.constant_history) for k, f in store.flags.items()}
    assert kept == expected_flags(store.reported(), HIERARCHY, CATALOG)


def test_a_province_total_can_break_a_rule_its_communes_keep() -> None:
    store = Store()
    figures = [("27991", "vneid_l2_activated", 10), ("27991", "cccd_issued", 20), ("27994", "vneid_l2_activated", 15)]
    store.apply([
        AcceptedEvent(seq=s, event_id=f"e{s}", edition="legacy", unit=u, province="80", indicator=i,
                      period="2024-07", num=Decimal(n), den=None, accepted_at=T0)
        for s, (u, i, n) in enumerate(figures, start=1)
    ])
    # 27991 keeps the rule and 27994 has no cards to compare with, but their district and province count
    # the accounts of both communes against the cards of one: 25 > 20
    assert set(store.flags) == {
        ("legacy", "803", "rule", "vneid_l2_activated_within_cccd", "2024-07"),
        ("legacy", "80", "rule", "vneid_l2_activated_within_cccd", "2024-07"),
    }
    flag = store.flags[("legacy", "80", "rule", "vneid_l2_activated_within_cccd", "2024-07")]
    assert (flag.left, flag.right) == (25, 20)


def test_the_list_of_25_bounds_a_commune_not_the_sum_of_its_district() -> None:
    store = Store()
    store.apply([
        AcceptedEvent(seq=s, event_id=f"e{s}", edition="legacy", unit=u, province="80",
                      indicator="essential_services_online", period="2024-07", num=Decimal(n), den=Decimal(d),
                      accepted_at=T0)
        for s, (u, n, d) in enumerate([("27991", 10, 20), ("27994", 10, 26)], start=1)
    ])
    assert set(store.flags) == {("legacy", "27994", "rule", "essential_services_within_list", "2024-07")}


def _event(seq: int, period: str, num: int) -> AcceptedEvent:
    return AcceptedEvent(seq=seq, event_id=f"e{seq}", edition="legacy", unit="27991", province="80",
                         indicator="dossiers_received", period=period, num=Decimal(num), den=None, accepted_at=T0)


def test_a_correction_twelve_months_back_re_scores_the_value_whose_window_holds_it() -> None:
    store = Store()
    months = [shift("2023-01", k) for k in range(14)]
    store.apply([_event(k + 1, p, 10) for k, p in enumerate(months[:-1])] + [_event(20, months[-1], 11)])
    flag = ("legacy", "27991", "outlier", "dossiers_received", months[-1])
    assert store.flags[flag].constant_history  # 11 after twelve months of 10
    store.apply([_event(21, months[1], 0)])  # the oldest month of its window, corrected
    assert flag not in store.flags  # z = 1 / (1.253314 · 10/12) ≈ 0.96: in line now
    assert store.flags.keys() == expected_flags(store.reported(), HIERARCHY, CATALOG).keys()


def test_the_last_month_of_the_window_has_a_following_month_to_check() -> None:
    store = Store()  # previous() rules move the month after 2100-12, which no event may name
    store.apply([AcceptedEvent(seq=1, event_id="e1", edition="legacy", unit="27991", province="80",
                               indicator="cccd_issued", period="2100-12", num=Decimal(5), den=None, accepted_at=T0)])
    assert store.flags == {}
    assert [shift("2024-01", -1), shift("2024-H1", -1), shift("2024-Q4", 1), shift("2100-12", 1)] == [
        "2023-12", "2023-H2", "2025-Q1", "2101-01"]


def test_a_rule_that_skips_on_a_missing_value_is_not_checked_where_its_province_lacks_an_indicator() -> None:
    any_missing = _rule("within", "skip_if_any")
    never = _rule("never", "never_skip")  # a missing value counts as 0: still checked
    catalog = Catalog(list(CATALOG), [any_missing, never])
    plan = QualityPlan(catalog, HIERARCHY)
    targets = plan.rule_targets([("legacy", "27991", "vneid_l2_activated", "2024-01"),
                                 ("legacy", NATION, "vneid_l2_activated", "2024-01")])
    assert {p: [r.code for r in rules] for p, rules in targets.items()} == {
        ("legacy", "27991", "2024-01"): ["within", "never"], ("legacy", NATION, "2024-01"): ["within", "never"]}
    lacking = {("legacy", "80", "vneid_l2_activated")}
    checked = plan.checkable(targets, lacking)
    assert {p: [r.code for r in rules] for p, rules in checked.items()} == {
        ("legacy", "27991", "2024-01"): ["never"],
        ("legacy", NATION, "2024-01"): ["within", "never"],  # above the provinces: every rule stays
    }
    holding = lacking | {("legacy", "80", "cccd_issued")}
    assert plan.checkable(targets, holding) == targets


def _rule(code: str, missing: str) -> RuleSpec:
    return RuleSpec.model_validate({
        "code": code, "name_vi": code, "name_en": code, "left": "vneid_l2_activated", "operator": "<=",
        "right": "cccd_issued", "importance": "high", "missing": missing, "reason": "a test"})
