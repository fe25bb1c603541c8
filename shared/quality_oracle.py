"""Every quality flag recomputed from scratch: the oracle of `d06 quality verify` and of the property tests.

It shares nothing with the aggregator's incremental path but the catalogue (its rules, compiled by
shared.rules and shared.expressions), the hierarchy and period arithmetic: it starts from the reported
values alone, derives every effective value with shared.recompute (itself independent of the aggregator),
checks every rule wherever one of its values exists, and scores every reported value of every series marked
`outliers: true` by walking its history itself. A bug in the aggregator's choice of targets, in its windows
or in its scoring cannot hide in both.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext

from shared.catalog import Catalog, Measure
from shared.hierarchy import Hierarchy
from shared.periods import shift
from shared.quality_flags import FlagKey  # the key's shape only: nothing of how flags are written
from shared.recompute import Amount, Key, recompute


@dataclass(frozen=True, slots=True)
class ExpectedFlag:
    left: Decimal | None
    right: Decimal | None
    score: Decimal | None = None
    constant_history: bool = False


def effective_values(reported: Mapping[Key, Amount], hierarchy: Hierarchy, catalog: Catalog) -> dict[Key, Amount]:
    """reported ?? computed, for every key that has either."""
    out: dict[Key, Amount] = {}
    for key, expected in recompute(dict(reported), hierarchy, catalog).items():
        if expected.computed is not None:
            out[key] = expected.computed
    out.update(reported)
    return out


def rule_flags(effective: Mapping[Key, Amount], hierarchy: Hierarchy, catalog: Catalog) -> dict[FlagKey, ExpectedFlag]:
    flags: dict[FlagKey, ExpectedFlag] = {}
    for rule in catalog.rules:
        now = {r.code for r in (*rule.left_refs, *rule.right_refs) if not r.previous}
        before = {r.code for r in (*rule.left_refs, *rule.right_refs) if r.previous}
        where: set[tuple[str, str, str]] = set()
        for edition, unit, indicator, period in effective:
            if indicator in now:
                where.add((edition, unit, period))
            if indicator in before:
                where.add((edition, unit, shift(period, 1)))
        for edition, unit, period in where:
            found = hierarchy.get(edition, unit)
            if found is None or (rule.spec.levels is not None and found.level not in rule.spec.levels):
                continue
            prior = shift(period, -1)

            def lookup(code: str, previous: bool, e: str = edition, u: str = unit, p: str = period,
                       b: str = prior) -> Amount | None:
                return effective.get((e, u, code, b if previous else p))

            outcome = rule.check(lookup)
            if outcome.violated:
                flags[(edition, unit, "rule", rule.code, period)] = ExpectedFlag(outcome.left, outcome.right)
    return flags


# The method of DESIGN §8, written out again on its own.
_CTX = Context(prec=40)
_K, _MEAN_K, _LIMIT, _PLACES = Decimal("0.6745"), Decimal("1.253314"), Decimal("3.5"), Decimal("0.0001")


def _outlier(x: Decimal, history: list[Decimal]) -> ExpectedFlag | None:
    if len(history) < 6:
        return None
    with localcontext(_CTX):
        centre = statistics.median(history)
        spread = [abs(v - centre) for v in history]
        mad = statistics.median(spread)
        if mad != 0:
            z = _K * (x - centre) / mad
        else:
            mean = sum(spread, Decimal(0)) / len(spread)
            if mean == 0:
                return ExpectedFlag(x, centre, None, True) if x != centre else None
            z = (x - centre) / (_MEAN_K * mean)
        return ExpectedFlag(x, centre, z.quantize(_PLACES)) if abs(z) > _LIMIT else None


def outlier_flags(reported: Mapping[Key, Amount], catalog: Catalog) -> dict[FlagKey, ExpectedFlag]:
    series: dict[tuple[str, str, str], dict[str, Decimal]] = defaultdict(dict)
    for (edition, unit, indicator, period), (num, _) in reported.items():
        found = catalog.get(indicator)
        if found is not None and found.outliers:
            series[(edition, unit, indicator)][period] = num
    flags: dict[FlagKey, ExpectedFlag] = {}
    for (edition, unit, indicator), values in series.items():
        stock = catalog.by_code[indicator].measure is Measure.STOCK
        scored: dict[str, Decimal] = {}
        for period, value in values.items():
            if not stock:
                scored[period] = value
            elif (last := values.get(shift(period, -1))) is not None:
                scored[period] = value - last
        for period, x in scored.items():
            window = [scored[p] for p in (shift(period, -k) for k in range(1, 13)) if p in scored]
            flag = _outlier(x, window)
            if flag is not None:
                flags[(edition, unit, "outlier", indicator, period)] = flag
    return flags


def expected_flags(
    reported: Mapping[Key, Amount | None], hierarchy: Hierarchy, catalog: Catalog
) -> dict[FlagKey, ExpectedFlag]:
    """Every flag that should be open, given the reported values (None values are absent)."""
    facts = {k: v for k, v in reported.items() if v is not None}
    return rule_flags(effective_values(facts, hierarchy, catalog), hierarchy, catalog) | outlier_flags(facts, catalog)
