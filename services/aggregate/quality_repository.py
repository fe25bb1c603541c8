"""The quality flags' SQL, inside the batch's transaction (nothing here commits): two reads, two writes; and,
outside any batch, the count of open flags for the gauge (quality_gauge.py).

Most targets of a batch hold, and most of those were never open: the flags open on the batch's units are
read first (a handful of rows, through the partial index), so that only what changes is written.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from decimal import Decimal

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.aggregate.quality import Flag, FlagKey, History, OutlierTarget, Series

# The reported values of whole stretches of series, one statement and one row a series (a row a value
# cost more to decode than the scoring itself): period codes of one type sort as they follow each other,
# so a stretch is a text range. A lateral aggregate per series, rather than one GROUP BY, spares sorting
# every row of the batch's histories together; the stretch comes as one text of "period value" pairs, in no
# particular order (the scoring places each value by its period), which costs the driver a fifth of what
# two decoded arrays did.
_HISTORIES = text("""
SELECT s.e, s.u, s.i, h.pairs
FROM json_to_recordset(CAST(:spans AS json)) AS s(e text, u text, i text, lo text, hi text)
CROSS JOIN LATERAL (
    SELECT string_agg(r.period || ' ' || r.rep_num, ' ') AS pairs
    FROM rollups r
    WHERE r.edition = s.e AND r.unit = s.u AND r.indicator = s.i AND r.period BETWEEN s.lo AND s.hi
      AND r.rep_num IS NOT NULL
) h
WHERE h.pairs IS NOT NULL
""")

# An open flag whose values change, or a resolved one that breaks again, loses its acknowledgement: the
# reviewer checked other figures. A flag already open with the same values is left alone.
_OPEN = text("""
INSERT INTO quality_flags AS f (edition, unit, kind, code, period, indicators, importance, status,
                                left_value, right_value, score, constant_history)
SELECT e, u, k, c, p, ARRAY(SELECT json_array_elements_text(ind)), im, 'open', l, r, s, ch
FROM json_to_recordset(CAST(:flags AS json))
     AS t(e text, u text, k text, c text, p text, ind json, im text, l numeric, r numeric, s numeric, ch boolean)
ON CONFLICT (edition, unit, kind, code, period) DO UPDATE SET
    status = 'open',
    opened_at = CASE WHEN f.status = 'resolved' THEN now() ELSE f.opened_at END,
    resolved_at = NULL,
    updated_at = now(),
    indicators = excluded.indicators, importance = excluded.importance,
    left_value = excluded.left_value, right_value = excluded.right_value,
    score = excluded.score, constant_history = excluded.constant_history,
    acknowledged_by = NULL, acknowledged_at = NULL, acknowledged_comment = NULL
WHERE f.status = 'resolved'
   OR (f.left_value, f.right_value, f.score, f.constant_history)
      IS DISTINCT FROM (excluded.left_value, excluded.right_value, excluded.score, excluded.constant_history)
""")

_OPEN_ON = text("""
SELECT f.edition, f.unit, f.kind, f.code, f.period, f.left_value, f.right_value, f.score, f.constant_history
FROM json_to_recordset(CAST(:units AS json)) AS t(e text, u text)
JOIN quality_flags f ON f.edition = t.e AND f.unit = t.u AND f.status = 'open'
""")

_RESOLVE = text("""
UPDATE quality_flags f SET status = 'resolved', resolved_at = now(), updated_at = now()
FROM json_to_recordset(CAST(:keys AS json)) AS t(e text, u text, k text, c text, p text)
WHERE f.edition = t.e AND f.unit = t.u AND f.kind = t.k AND f.code = t.c AND f.period = t.p
  AND f.status = 'open'
""")


def _document(items: list[dict[str, object]]) -> str:
    return orjson.dumps(items, default=str).decode()  # default: Decimal as its exact text


async def load_histories(conn: AsyncConnection, targets: Mapping[Series, OutlierTarget]) -> dict[Series, History]:
    """Each target series' stored reported values (flows and stocks: the numerator), from the first period
    its moved flags read to the last it may move."""
    if not targets:
        return {}
    document = _document([{"e": e, "u": u, "i": i, "lo": t.first_read, "hi": t.last_scored}
                          for (e, u, i), t in targets.items()])
    result = await conn.execute(_HISTORIES, {"spans": document})
    histories: dict[Series, History] = {}
    for edition, unit, indicator, pairs in result:
        words = pairs.split(" ")
        histories[(edition, unit, indicator)] = {words[n]: Decimal(words[n + 1]) for n in range(0, len(words), 2)}
    return histories


Held = tuple[Decimal | None, Decimal | None, Decimal | None, bool]  # left, right, score, constant history


async def open_on(conn: AsyncConnection, units: Collection[tuple[str, str]]) -> dict[FlagKey, Held]:
    """The flags open on these (edition, unit), with their values."""
    if not units:
        return {}
    result = await conn.execute(_OPEN_ON, {"units": _document([{"e": e, "u": u} for e, u in units])})
    return {(r[0], r[1], r[2], r[3], r[4]): (r[5], r[6], r[7], r[8]) for r in result}


async def open_flags(conn: AsyncConnection, flags: Collection[Flag]) -> None:
    if not flags:
        return
    await conn.execute(_OPEN, {"flags": _document([
        {"e": f.key[0], "u": f.key[1], "k": f.key[2], "c": f.key[3], "p": f.key[4], "ind": list(f.indicators),
         "im": f.importance, "l": f.left, "r": f.right, "s": f.score, "ch": f.constant_history}
        for f in flags
    ])})


async def resolve_flags(conn: AsyncConnection, keys: Collection[FlagKey]) -> None:
    if not keys:
        return
    await conn.execute(_RESOLVE, {"keys": _document([
        {"e": e, "u": u, "k": k, "c": c, "p": p} for e, u, k, c, p in keys
    ])})


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
