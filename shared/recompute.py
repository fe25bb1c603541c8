"""From-scratch roll-up: the oracle that `d06 rollups verify` and the property tests trust.

It shares no code with the aggregator's incremental path on purpose: it starts from the reported
values alone and sums every level bottom-up, so a bug in the deltas cannot hide in both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.values import Pair

Key = tuple[str, str, str, str]  # edition, unit, indicator, period


@dataclass(frozen=True, slots=True)
class Expected:
    computed: Pair | None
    reporting: int


def recompute(
    reported: Mapping[Key, Pair | None],
    parent_of: Callable[[str, str], str | None],
    rolls_up: Callable[[str], bool],
) -> dict[Key, Expected]:
    """computed/reporting of every key that has a reported value or a descendant with one."""
    depth: dict[tuple[str, str], int] = {}

    def depth_of(edition: str, unit: str) -> int:
        if (edition, unit) not in depth:
            parent = parent_of(edition, unit)
            depth[(edition, unit)] = 0 if parent is None else depth_of(edition, parent) + 1
        return depth[(edition, unit)]

    # Every unit that may carry a value: the reporters and all their materialized ancestors.
    keys: set[Key] = set()
    for key, value in reported.items():
        if value is None:
            continue
        keys.add(key)
        edition, unit, indicator, period = key
        if not rolls_up(indicator):
            continue
        parent = parent_of(edition, unit)
        while parent is not None:
            keys.add((edition, parent, indicator, period))
            parent = parent_of(edition, parent)

    computed: dict[Key, Pair] = {}
    reporting: dict[Key, int] = defaultdict(int)
    for key in sorted(keys, key=lambda k: -depth_of(k[0], k[1])):
        effective = reported.get(key) or computed.get(key)
        edition, unit, indicator, period = key
        parent = parent_of(edition, unit) if rolls_up(indicator) else None
        if effective is None or parent is None:
            continue
        parent_key = (edition, parent, indicator, period)
        held = computed.get(parent_key)
        computed[parent_key] = effective if held is None else held + effective
        reporting[parent_key] += 1
    return {k: Expected(computed.get(k), reporting.get(k, 0)) for k in keys}
