"""Writing the quality flags (DESIGN §8): the one place their SQL lives, for the aggregator's batches and for
`d06 quality rebuild` (shared/quality_rebuild.py). Nothing here commits or locks: the caller's transaction
holds the provinces' writer locks (shared.db.province_lock) before it reads or writes a flag.

Both writers mean the same by a write: a flag whose values did not change is not touched (a reviewer's
acknowledgement stands); one whose values changed, or a resolved one that breaks again, is open for review
again; one that stops holding is resolved, its time kept, never deleted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import json_document

FlagKey = tuple[str, str, str, str, str]  # edition, unit, kind ("rule" | "outlier"), code, period
Held = tuple[Decimal | None, Decimal | None, Decimal | None, bool]  # left, right, score, constant history
# edition, unit, first and last period (as text: a unit's flags of one kind of period sort as their periods do)
Span = tuple[str, str, str, str]
OUTLIER_IMPORTANCE = "medium"


@dataclass(frozen=True, slots=True)
class Flag:
    key: FlagKey
    importance: str
    indicators: tuple[str, ...]
    left: Decimal | None  # a rule's left side; an outlier's scored value
    right: Decimal | None  # a rule's right side; the median of an outlier's window
    score: Decimal | None = None
    constant_history: bool = False


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
SELECT DISTINCT f.edition, f.unit, f.kind, f.code, f.period, f.left_value, f.right_value, f.score,
       f.constant_history
FROM json_to_recordset(CAST(:spans AS json)) AS t(e text, u text, lo text, hi text)
JOIN quality_flags f ON f.edition = t.e AND f.unit = t.u AND f.status = 'open' AND f.period BETWEEN t.lo AND t.hi
""")

_RESOLVE = text("""
UPDATE quality_flags f SET status = 'resolved', resolved_at = now(), updated_at = now()
FROM json_to_recordset(CAST(:keys AS json)) AS t(e text, u text, k text, c text, p text)
WHERE f.edition = t.e AND f.unit = t.u AND f.kind = t.k AND f.code = t.c AND f.period = t.p
  AND f.status = 'open'
""")


# A rule's importance is the catalogue's, for every flag it ever raised (a listing filters resolved ones by it too).
# It says how urgent a review is, not what was reviewed: an acknowledgement stands.
_RULES = "json_to_recordset(CAST(:rules AS json)) AS t(c text, im text)"
_STALE = """f.kind = 'rule' AND f.code = t.c AND f.importance <> t.im
  AND f.edition = :edition AND f.unit = ANY(CAST(:units AS text[]))"""


async def rerank(conn: AsyncConnection, importance: Mapping[str, str], edition: str, units: Collection[str], *,
                 write: bool) -> int:
    """Give the rule flags of these units the importance their rule now has (`importance`: rule code ->
    importance); how many had another (`write` False: only count them)."""
    params = {"rules": json_document([{"c": c, "im": im} for c, im in importance.items()]),
              "edition": edition, "units": list(units)}
    if not write:
        return int(await conn.scalar(text(f"SELECT count(*) FROM quality_flags f, {_RULES} WHERE {_STALE}"), params)
                   or 0)
    result = await conn.execute(text(
        f"UPDATE quality_flags f SET importance = t.im, updated_at = now() FROM {_RULES} WHERE {_STALE}"), params)
    return int(result.rowcount)


async def open_on(conn: AsyncConnection, spans: Collection[Span]) -> dict[FlagKey, Held]:
    """The flags open on these units within these stretches of periods, with their values."""
    if not spans:
        return {}
    result = await conn.execute(_OPEN_ON, {"spans": json_document([
        {"e": e, "u": u, "lo": lo, "hi": hi} for e, u, lo, hi in spans])})
    return {(r[0], r[1], r[2], r[3], r[4]): (r[5], r[6], r[7], r[8]) for r in result}


async def open_flags(conn: AsyncConnection, flags: Collection[Flag]) -> None:
    if not flags:
        return
    await conn.execute(_OPEN, {"flags": json_document([
        {"e": f.key[0], "u": f.key[1], "k": f.key[2], "c": f.key[3], "p": f.key[4], "ind": list(f.indicators),
         "im": f.importance, "l": f.left, "r": f.right, "s": f.score, "ch": f.constant_history}
        for f in flags
    ])})


async def resolve_flags(conn: AsyncConnection, keys: Collection[FlagKey]) -> None:
    if not keys:
        return
    await conn.execute(_RESOLVE, {"keys": json_document([
        {"e": e, "u": u, "k": k, "c": c, "p": p} for e, u, k, c, p in keys
    ])})
