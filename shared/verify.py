"""`d06 rollups verify`: compare the stored read model with a from-scratch recomputation.

The facts are the latest event the outbox accepted for each (edition, unit, indicator, period), dead
letters aside; from them alone the oracle (shared.recompute) derives every row, and every column the
facts determine is compared:
- `rep_seq`, `rep_num`/`rep_den` (reported): the latest accepted event of the key — nothing lost, nothing stale;
- `comp_num`/`comp_den` (computed) and `reporting`: the bottom-up sum of the facts below the key.
Because the recomputation never reads a stored row, one corrupted column shows as one difference, at
its own key. `accepted_at` and `updated_at` are not compared: they say which batch last changed a row,
which depends on the order the events arrived in, not on the facts.

Nothing here comes from the aggregator: not its parent relation, its rule for unknown indicators, its
arithmetic or its value type. The hierarchy and the catalogue are the only things both read.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.catalog import Catalog
from shared.hierarchy import Hierarchy
from shared.recompute import Amount, Expected, Key, recompute


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


@dataclass(frozen=True, slots=True)
class _Stored:
    seq: int | None
    reported: Amount | None
    computed: Amount | None
    reporting: int


_ABSENT = _Stored(None, None, None, 0)


def _amount(num: Decimal | None, den: Decimal | None) -> Amount | None:
    return None if num is None else (num, den)


def _fmt(amount: Amount | None) -> str:
    if amount is None:
        return "null"
    num, den = amount
    return f"{num}" if den is None else f"{num}/{den}"


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
    """Every difference between the rollups and their recomputation, in key order.

    `check_outbox=False` takes the stored reported values as the facts (for a database whose outbox
    was not filled, as when events are produced straight onto the topic): then only the computed and
    reporting columns are checked.
    """
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
    stored = {
        (r.edition, r.unit, r.indicator, r.period): _Stored(
            r.rep_seq, _amount(r.rep_num, r.rep_den), _amount(r.comp_num, r.comp_den), r.reporting
        )
        for r in rows
    }

    facts: dict[Key, tuple[int, Amount | None]] = {}
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
        _progress(f"verify: read {len(latest):,} latest accepted events from the outbox "
                  f"({time.perf_counter() - started:.1f}s)")
        facts = {(e.edition, e.unit, e.indicator, e.period): (e.seq, _amount(e.num, e.den)) for e in latest}
    else:
        facts = {key: (row.seq, row.reported) for key, row in stored.items() if row.seq is not None}

    expected = recompute({key: value for key, (_, value) in facts.items()}, hierarchy, catalog)
    _progress(f"verify: recomputed {len(expected):,} rollups ({time.perf_counter() - started:.1f}s)")

    def wanted(key: Key) -> bool:
        if unit is None:
            return True
        u = hierarchy.get(key[0], key[1])
        return u is not None and (u.code == unit or unit in u.ancestors)

    empty = Expected(None, 0)
    differences: list[Difference] = []
    for key in sorted(set(stored) | set(expected) | set(facts)):
        if not wanted(key):
            continue
        have, want = stored.get(key, _ABSENT), expected.get(key, empty)
        fact = facts.get(key)
        want_seq, want_reported = (None, None) if fact is None else fact
        if have.seq != want_seq:
            differences.append(Difference(key, "reported seq", str(have.seq), str(want_seq)))
        elif have.reported != want_reported:
            differences.append(Difference(key, "reported", _fmt(have.reported), _fmt(want_reported)))
        if have.computed != want.computed:
            differences.append(Difference(key, "computed", _fmt(have.computed), _fmt(want.computed)))
        if have.reporting != want.reporting:
            differences.append(Difference(key, "reporting", str(have.reporting), str(want.reporting)))
    return differences
