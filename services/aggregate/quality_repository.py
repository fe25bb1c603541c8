"""The aggregator's own quality SQL: the scored series' histories a batch reads, and, outside any batch, the
count of open flags for the gauge (quality_gauge.py). Reading and writing the flags themselves is shared with
`d06 quality rebuild`: shared/quality_flags.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.aggregate.outliers import Stretch, Value
from services.aggregate.quality import OutlierTarget, Series
from shared.db import json_document
from shared.periods import ordinal

# The reported values of whole stretches of series, one statement and one row a series (a row a value
# cost more to decode than the scoring itself): period codes of one type sort as they follow each other,
# so a stretch is a text range. A lateral aggregate per series, rather than one GROUP BY, spares sorting
# every row of the batch's histories together (the index hands each stretch over in period order, so the
# ordered aggregates sort nothing). The values come as one text, in period order, with the first and last
# period: a stretch with no gap (nearly all) is then placed without reading its periods one by one.
_HISTORIES = text("""
SELECT s.e, s.u, s.i, h.first, h.last, h.vals, h.periods
FROM json_to_recordset(CAST(:spans AS json)) AS s(e text, u text, i text, lo text, hi text)
CROSS JOIN LATERAL (
    SELECT min(r.period) AS first, max(r.period) AS last,
           string_agg(r.rep_num::text, ' ' ORDER BY r.period) AS vals,
           string_agg(r.period, ' ' ORDER BY r.period) AS periods
    FROM rollups r
    WHERE r.edition = s.e AND r.unit = s.u AND r.indicator = s.i AND r.period BETWEEN s.lo AND s.hi
      AND r.rep_num IS NOT NULL
) h
WHERE h.vals IS NOT NULL
""")


async def load_histories(conn: AsyncConnection, targets: Mapping[Series, OutlierTarget]
                         ) -> dict[Series, Stretch]:
    """Each target series' stored reported values (flows and stocks: the numerator) by period ordinal, from
    the first period its moved flags read to the last it may move."""
    if not targets:
        return {}
    document = json_document([{"e": e, "u": u, "i": i, "lo": t.first_read, "hi": t.last_scored}
                              for (e, u, i), t in targets.items()])
    result = await conn.execute(_HISTORIES, {"spans": document})
    histories: dict[Series, Stretch] = {}
    for edition, unit, indicator, first, last, vals, periods in result:
        values = _values(vals.split(" "))
        lo, hi = ordinal(first), ordinal(last)
        histories[(edition, unit, indicator)] = (
            Stretch(lo, values) if hi - lo + 1 == len(values)  # no gap: the values are the stretch
            else Stretch.of(dict(zip(map(ordinal, periods.split(" ")), values, strict=True))))
    return histories


def _values(texts: list[str]) -> list[Value | None]:
    """Whole numbers as ints (scored without Decimal arithmetic, outliers.py), a series with a fraction as Decimals."""
    try:
        return list(map(int, texts))
    except ValueError:
        return list(map(Decimal, texts))


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
