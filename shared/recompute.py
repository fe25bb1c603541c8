"""From-scratch roll-up: the oracle that `d06 rollups verify` and the property tests trust.

It shares no code with the aggregator's incremental path on purpose — not the parent relation, not the
rule that says which indicators are summed, not the arithmetic on pairs: it reads the hierarchy and the
catalogue itself, starts from the reported values alone and sums every level bottom-up with plain
Decimals, so a bug in the deltas, or in a helper both would call, cannot hide in both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, localcontext

from shared.catalog import Catalog
from shared.hierarchy import NATION, Hierarchy

Key = tuple[str, str, str, str]  # edition, unit, indicator, period
Amount = tuple[Decimal, Decimal | None]  # numerator, denominator (none for a flow or a stock)

# Exact or nothing: a rounded oracle would report differences the aggregator does not have, or hide one.
_EXACT = Context(prec=1000, traps=[Inexact, InvalidOperation, Overflow])


@dataclass(frozen=True, slots=True)
class Expected:
    computed: Amount | None
    reporting: int


def rows_above(hierarchy: Hierarchy, edition: str, code: str) -> tuple[str, ...]:
    """The units above `code` that have rollup rows, nearest first.

    Every ancestor but the nation, whose figures are summed from the provinces at read time. A unit the
    hierarchy does not know has none: nothing of it can be summed anywhere.
    """
    unit = hierarchy.get(edition, code)
    if unit is None:
        return ()
    return tuple(code for code in reversed(unit.ancestors) if code != NATION)


def is_summed(catalog: Catalog, indicator: str) -> bool:
    """Only what the catalogue marks `rollup: true` is summed up the hierarchy.

    Own-level indicators (`rollup: false`) stay where reported. An indicator missing from the catalogue
    is not summed either: its events are dead letters, so no row above a reporter may hold a sum of it.
    """
    found = catalog.get(indicator)
    return found is not None and found.rollup


def plus(a: Amount, b: Amount) -> Amount:
    """Numerators add and denominators add; a missing denominator counts as zero unless both are."""
    (a_num, a_den), (b_num, b_den) = a, b
    if a_den is None and b_den is None:
        return (a_num + b_num, None)
    return (a_num + b_num, (a_den or Decimal(0)) + (b_den or Decimal(0)))


def recompute(reported: Mapping[Key, Amount | None], hierarchy: Hierarchy, catalog: Catalog) -> dict[Key, Expected]:
    """computed/reporting of every key that has a reported value or a descendant with one.

    A unit's effective value is its reported one, else the sum of its children's effective values; its
    parent counts it once in `reporting` when it has one.
    """
    above: dict[tuple[str, str], tuple[str, ...]] = {}
    summed = {indicator: is_summed(catalog, indicator) for indicator in {k[2] for k in reported}}

    def chain(edition: str, unit: str) -> tuple[str, ...]:
        if (edition, unit) not in above:
            above[(edition, unit)] = rows_above(hierarchy, edition, unit)
        return above[(edition, unit)]

    keys: set[Key] = set()
    for key, value in reported.items():
        if value is None:
            continue
        keys.add(key)
        edition, unit, indicator, period = key
        if summed[indicator]:
            keys.update((edition, parent, indicator, period) for parent in chain(edition, unit))

    computed: dict[Key, Amount] = {}
    reporting: dict[Key, int] = defaultdict(int)
    with localcontext(_EXACT):
        for key in sorted(keys, key=lambda k: -len(chain(k[0], k[1]))):  # the deepest first
            edition, unit, indicator, period = key
            effective = reported.get(key)
            if effective is None:
                effective = computed.get(key)
            parents = chain(edition, unit)
            if effective is None or not parents or not summed[indicator]:
                continue
            parent_key = (edition, parents[0], indicator, period)
            held = computed.get(parent_key)
            computed[parent_key] = effective if held is None else plus(held, effective)
            reporting[parent_key] += 1
    return {k: Expected(computed.get(k), reporting.get(k, 0)) for k in keys}
