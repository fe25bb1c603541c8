"""`d06 quality rebuild`: every flag set to what a from-scratch evaluation says, so `d06 quality verify` is clean.

The aggregator evaluates only the rules that bound a place's level, and only at the places and series a batch
touches: after the catalogue's rules change (one removed, its `levels` or threshold changed, an indicator's
`outliers` switched) or `AGGREGATE_QUALITY` is turned on over data applied without it, the stored flags are
those of another catalogue. This recomputes them with verify's oracle (shared.quality_oracle: there is no
third evaluator) and writes verify's differences with the aggregator's own statements (shared.quality_flags),
so a flag means the same whoever wrote it: one whose values did not change is not touched and keeps its
acknowledgement; one whose values changed, or a resolved one that breaks again, is open for review again.
A rule whose `importance` changed passes it on to every flag it raised, open or resolved, acknowledgements
kept (`rerank`: how urgent a review is says nothing about what was reviewed). It also records which
indicators the province's rows hold (shared/indicator_presence.py), for rows an aggregator wrote without.

One transaction per province tree, holding that province's writer lock (shared.db.province_lock) from before
it reads the values and flags it goes by to its commit, as an aggregator batch does: a batch of the province
lands wholly before the rebuild reads it or wholly after it wrote, so the two never write over each other's
flags, and the aggregator goes on with the other provinces meanwhile. A province's flags depend on its tree's
values alone (the nation, summed at read time, is never flagged), so a province at a time is exactly the whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from shared import indicator_presence as presence
from shared.catalog import Catalog
from shared.db import lock_advisory, province_lock, transaction
from shared.hierarchy import Hierarchy
from shared.quality_flags import OUTLIER_IMPORTANCE, Flag, FlagKey, open_flags, rerank, resolve_flags
from shared.quality_oracle import ExpectedFlag, expected_flags
from shared.quality_verify import FlagDifference, differences, read_open_flags, read_reported
from shared.rules import Rule

Province = tuple[str, str]  # edition, province code


@dataclass(slots=True)
class Rebuilt:
    """What a rebuild changed (or, dry, would change), province by province."""

    changes: list[FlagDifference]
    provinces: int = 0
    reranked: int = 0  # rule flags given their rule's new importance

    def count(self, change: str) -> int:
        return sum(1 for d in self.changes if d.change == change)


def trees(hierarchy: Hierarchy) -> dict[Province, list[str]]:
    """Each province's units (itself included), provinces in order."""
    found: dict[Province, list[str]] = {}
    for unit in hierarchy:
        if unit.province_code is not None:
            found.setdefault((unit.edition, unit.province_code), []).append(unit.code)
    return dict(sorted(found.items()))


def _as_flag(key: FlagKey, expected: ExpectedFlag, rules: Mapping[str, Rule]) -> Flag:
    """The flag as the aggregator writes it: importance and indicators from the catalogue."""
    kind, code = key[2], key[3]
    if kind == "rule":
        rule = rules[code]
        return Flag(key, rule.spec.importance.value, rule.indicator_codes, expected.left, expected.right)
    return Flag(key, OUTLIER_IMPORTANCE, (code,), expected.left, expected.right, expected.score,
                expected.constant_history)


async def rebuild_province(engine: AsyncEngine, province: Province, units: list[str], hierarchy: Hierarchy,
                           catalog: Catalog, *, write: bool) -> tuple[list[FlagDifference], int]:
    """Set the flags of one province's `units` right, in one transaction holding the province's writer lock
    (`write` False: the same, but only say what differs; the lock is taken all the same, so what is said is
    exactly what a write would start from).

    The oracle's evaluation (seconds for the largest provinces) runs before the lock, on the values as they
    stand; under the lock the values are read again and evaluated again only if a batch changed them
    meanwhile. A batch of the province thus waits for two reads and the writes, not for the evaluation.
    Returns the differences and how many rule flags had another importance than their rule's."""
    tree = (province[0], units)
    async with engine.connect() as conn:
        seen = await read_reported(conn, tree)
        await conn.rollback()  # it only read
    expected = expected_flags(seen, hierarchy, catalog)
    async with transaction(engine) as conn:
        await lock_advisory(conn, [province_lock(f"{province[0]}/{province[1]}")])
        facts = await read_reported(conn, tree)
        if facts != seen:
            expected = expected_flags(facts, hierarchy, catalog)
        found = differences(await read_open_flags(conn, tree), expected)
        rules = {rule.code: rule for rule in catalog.rules}
        if write:
            await open_flags(conn, [_as_flag(d.key, d.expected, rules) for d in found if d.expected is not None])
            await resolve_flags(conn, [d.key for d in found if d.expected is None])
            await presence.rederive(conn, *province)  # what batches check against from now on
        reranked = await rerank(conn, {code: rule.spec.importance.value for code, rule in rules.items()},
                                province[0], units, write=write)
    return found, reranked


async def rebuild_quality(engine: AsyncEngine, hierarchy: Hierarchy, catalog: Catalog, *, write: bool,
                          progress: Callable[[Rebuilt, int], None] | None = None) -> Rebuilt:
    """Every province in turn, each in its own transaction; `progress(so_far, total)` after each."""
    todo = trees(hierarchy)
    rebuilt = Rebuilt([])
    for province, units in todo.items():
        changes, reranked = await rebuild_province(engine, province, units, hierarchy, catalog, write=write)
        rebuilt.changes += changes
        rebuilt.reranked += reranked
        rebuilt.provinces += 1
        if progress is not None:
            progress(rebuilt, len(todo))
    return rebuilt
