"""`d06 rollups verify`: compare the stored read model with a from-scratch recomputation.

Two checks, both independent of the aggregator's incremental code:
1. every (edition, unit, indicator, period) holds as `reported` the highest-seq event the outbox
   accepted for it (dead letters aside) — nothing lost, nothing stale;
2. every `computed` and `reporting` equals the bottom-up sum of the reported values (shared.recompute).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.catalog import Catalog
from shared.hierarchy import NATION, Hierarchy
from shared.recompute import Expected, Key, recompute
from shared.values import Pair, pair_or_none


@dataclass(frozen=True, slots=True)
class Difference:
    key: Key
    what: str
    stored: str
    expected: str

    def __str__(self) -> str:
        edition, unit, indicator, period = self.key
        return (
            f"{edition}/{unit} {indicator} {period}: {self.what} stored={self.stored} "
            f"recomputed={self.expected}"
        )


def _fmt(pair: Pair | None) -> str:
    if pair is None:
        return "null"
    return f"{pair.num}" if pair.den is None else f"{pair.num}/{pair.den}"


def materialized_parent(hierarchy: Hierarchy) -> Callable[[str, str], str | None]:
    """The parent whose row the aggregator writes: none above the province (the nation is read-time)."""

    def parent_of(edition: str, code: str) -> str | None:
        unit = hierarchy.get(edition, code)
        if unit is None or unit.parent_code in (None, NATION):
            return None
        return unit.parent_code

    return parent_of


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def verify(
    conn: AsyncConnection,
    hierarchy: Hierarchy,
    catalog: Catalog,
    *,
    edition: str | None = None,
    unit: str | None = None,
    indicator: str | None = None,
    check_outbox: bool = True,
) -> list[Difference]:
    started = time.perf_counter()
    params = {"edition": edition, "indicator": indicator}
    where = "(CAST(:edition AS text) IS NULL OR edition = :edition) AND " \
            "(CAST(:indicator AS text) IS NULL OR indicator = :indicator)"
    rows = (await conn.execute(
        text(f"""SELECT edition, unit, indicator, period, rep_num, rep_den, rep_seq, comp_num, comp_den,
                        reporting FROM rollups WHERE {where}"""),
        params,
    )).all()
    _progress(f"verify: read {len(rows):,} rollup rows ({time.perf_counter() - started:.1f}s)")

    reported: dict[Key, Pair | None] = {}
    stored: dict[Key, Expected] = {}
    rep_seq: dict[Key, int] = {}
    for r in rows:
        key = (r.edition, r.unit, r.indicator, r.period)
        if r.rep_seq is not None:
            reported[key] = pair_or_none(r.rep_num, r.rep_den)
            rep_seq[key] = r.rep_seq
        stored[key] = Expected(pair_or_none(r.comp_num, r.comp_den), r.reporting)

    def rolls_up(code: str) -> bool:
        ind = catalog.get(code)
        return ind.rollup if ind else True

    expected = recompute(reported, materialized_parent(hierarchy), rolls_up)
    _progress(f"verify: recomputed {len(expected):,} rollups ({time.perf_counter() - started:.1f}s)")

    def wanted(key: Key) -> bool:
        if unit is None:
            return True
        u = hierarchy.get(key[0], key[1])
        return u is not None and (u.code == unit or unit in u.ancestors)

    empty = Expected(None, 0)
    differences: list[Difference] = []
    for key in sorted(set(stored) | set(expected)):
        if not wanted(key):
            continue
        have, want = stored.get(key, empty), expected.get(key, empty)
        if have.computed != want.computed:
            differences.append(Difference(key, "computed", _fmt(have.computed), _fmt(want.computed)))
        if have.reporting != want.reporting:
            differences.append(Difference(key, "reporting", str(have.reporting), str(want.reporting)))

    if check_outbox:
        latest = (await conn.execute(
            text(f"""
            SELECT DISTINCT ON (edition, unit, indicator, period)
                   edition, unit, indicator, period, seq, num, den
            FROM outbox o
            WHERE {where} AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = o.seq)
            ORDER BY edition, unit, indicator, period, seq DESC
            """),
            params,
        )).all()
        _progress(f"verify: compared with {len(latest):,} latest accepted events "
                  f"({time.perf_counter() - started:.1f}s)")
        for e in latest:
            key = (e.edition, e.unit, e.indicator, e.period)
            if not wanted(key):
                continue
            want_pair = pair_or_none(e.num, e.den)
            if rep_seq.get(key) != e.seq:
                differences.append(Difference(key, "reported seq", str(rep_seq.get(key)), str(e.seq)))
            elif reported.get(key) != want_pair:
                differences.append(Difference(key, "reported", _fmt(reported.get(key)), _fmt(want_pair)))
    return differences

