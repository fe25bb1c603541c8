"""The aggregator's own quality SQL: the scored series' histories a batch reads, and, outside any batch, the
count of open flags for the gauge (quality_gauge.py). Reading and writing the flags themselves is shared with
`d06 quality rebuild`: shared/quality_flags.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.aggregate.outliers import Stretch, Value
from services.aggregate.quality import OutlierTarget, Series
from shared.db import json_document
from shared.periods import ordinal

# The reported values of whole stretches of series. Period codes of one type sort as they follow each other,
# so a stretch is a text range, and the series that read the same stretch (a month of reports: all of them)
# form a group read by one index scan over its units and indicators, rather than a descent into the index
# per series; the scan hands each series over in period order, so the ordered aggregates sort nothing. A
# group comes back as one text, a line a series (unit, indicator, its values and its periods, in period
# order): decoding a row a series cost more than scoring it. A stretch with no gap (nearly all) is placed
# from its first and last period alone. A group's units share its indicators (_groups), so it reads exactly
# its series.
_HISTORIES = text("""
SELECT g.e, h.lines
FROM json_to_recordset(CAST(:groups AS json)) AS g(e text, lo text, hi text, units text[], indicators text[])
CROSS JOIN LATERAL (
    SELECT string_agg(concat_ws(E'\\t', s.unit, s.indicator, s.vals, s.periods), E'\\n') AS lines
    FROM (
        SELECT r.unit, r.indicator, string_agg(r.rep_num::text, ',' ORDER BY r.period) AS vals,
               string_agg(r.period, ' ' ORDER BY r.period) AS periods
        FROM rollups r
        WHERE r.edition = g.e AND r.unit = ANY(g.units) AND r.indicator = ANY(g.indicators)
          AND r.period BETWEEN g.lo AND g.hi AND r.rep_num IS NOT NULL
        GROUP BY r.unit, r.indicator
    ) s
) h
WHERE h.lines IS NOT NULL
""")


async def load_histories(conn: AsyncConnection, targets: Mapping[Series, OutlierTarget]
                         ) -> dict[Series, Stretch]:
    """Each target series' stored reported values (flows and stocks: the numerator) by period ordinal, from
    its `first_read` to its `last_read` period."""
    if not targets:
        return {}
    result = await conn.execute(_HISTORIES, {"groups": _groups(targets)})
    return _placed(result)


def _groups(targets: Mapping[Series, OutlierTarget]) -> str:
    """The statement's document: the units whose series read the same stretch of the same indicators, a group.

    Grouping by the whole set of a unit's indicators keeps a group's units × indicators to exactly its series:
    a month of reports is one group, and a stream of single reports (each unit one indicator) reads no series
    it does not score."""
    indicators_of: dict[tuple[str, str, str, str], set[str]] = {}
    for (edition, unit, indicator), target in targets.items():
        found = indicators_of.get(place := (edition, target.first_read, target.last_read, unit))
        if found is None:
            found = indicators_of[place] = set()
        found.add(indicator)
    groups: dict[tuple[str, str, str, frozenset[str]], list[str]] = {}
    for (edition, lo, hi, unit), indicators in indicators_of.items():
        groups.setdefault((edition, lo, hi, frozenset(indicators)), []).append(unit)
    return json_document([{"e": e, "lo": lo, "hi": hi, "units": sorted(units), "indicators": sorted(indicators)}
                          for (e, lo, hi, indicators), units in groups.items()])


def _placed(groups: Iterable[Sequence[str]]) -> dict[Series, Stretch]:
    """The series' stretches from the statement's groups (edition, lines)."""
    histories: dict[Series, Stretch] = {}
    for edition, lines in groups:
        for line in lines.split("\n"):
            unit, indicator, vals, periods = line.split("\t")
            values = _values(vals)
            first, last = ordinal(periods.partition(" ")[0]), ordinal(periods.rpartition(" ")[2])
            histories[(edition, unit, indicator)] = (
                Stretch(first, values) if last - first + 1 == len(values)  # no gap: the values are the stretch
                else Stretch.of(dict(zip(map(ordinal, periods.split(" ")), values, strict=True))))
    return histories


def _values(listed: str) -> list[Value | None]:
    """Whole numbers as ints (scored without Decimal arithmetic, outliers.py), a series with a fraction as
    Decimals. The ints are read as a JSON array: orjson reads a value in a tenth of what int() takes."""
    if "." in listed:
        return list(map(Decimal, listed.split(",")))
    values: list[Value | None] = orjson.loads(f"[{listed}]")
    if _INTS.issuperset(map(type, values)):
        return values
    return list(map(int, listed.split(",")))  # orjson reads an integer beyond 64 bits as a float: int() is exact


_INTS = frozenset([int])


# Through the partial index of open flags: the count reads the open rows only, however many have resolved.
_OPEN_COUNTS = text("""
SELECT kind, importance, acknowledged_at IS NOT NULL AS acknowledged, count(*) AS n
FROM quality_flags WHERE status = 'open'
GROUP BY 1, 2, 3
""")


async def count_open(conn: AsyncConnection) -> dict[tuple[str, str, bool], int]:
    """Open flags by (kind, importance, acknowledged)."""
    result = await conn.execute(_OPEN_COUNTS)
    return {(r.kind, r.importance, r.acknowledged): r.n for r in result}
