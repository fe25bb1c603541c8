"""The read side of the quality flags (DESIGN §8, docs/quality.md): the `flags` of value objects, and the listing.

Both read `quality_flags`, which the aggregator writes in the batch's transaction and announces with the same
NOTIFY as the rollups, so an answer kept in memory (caching.py) goes stale with the flags it shows.

A value object's flags are found by (edition, unit, period) — the partial index `ix_quality_flags_open` — and
the indicator: one statement per request for every value it answers, never one per value. Only native periods
are flagged: a derived period (a quarter of a monthly indicator) is not looked up, and neither is the nation,
which the aggregator does not flag (it is summed at read time).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Literal

from sqlalchemy import Row, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.query import schemas
from services.query.metrics import Endpoint, QueryMetrics
from services.query.pagination import bad_cursor, decode_cursor, encode_cursor
from shared.catalog import Catalog
from shared.hierarchy import NATION, Unit
from shared.periods import Period, PeriodType, period_containing
from shared.values import as_number

Status = Literal["open", "acknowledged", "resolved"]
FlagsOf = dict[tuple[str, str, str], list[schemas.RuleFlag | schemas.OutlierFlag]]  # (unit, indicator, period)

# Most important first, then the most departing value: an unbounded departure (a constant history) first,
# then |score|, rules (which have none) last. All three ascending, so that a cursor compares them as one row.
_RANKS = ("CASE f.importance WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END",
          "CASE WHEN f.constant_history THEN 0 WHEN f.score IS NULL THEN 2 ELSE 1 END",
          "COALESCE(-abs(f.score), 0)")

_VALUE_FLAGS = text(f"""
SELECT f.unit, f.period, f.indicators, f.kind, f.code, f.importance, f.left_value, f.right_value, f.score,
       f.constant_history, f.acknowledged_at IS NOT NULL AS acknowledged
FROM quality_flags f
WHERE f.edition = :edition AND f.unit = ANY(CAST(:units AS text[])) AND f.period = ANY(CAST(:periods AS text[]))
  AND f.status = 'open' AND f.indicators && CAST(:indicators AS text[])
ORDER BY {", ".join(_RANKS)}, f.kind, f.code
""")


def _flag(row: Row[Any]) -> schemas.RuleFlag | schemas.OutlierFlag:
    if row.kind == "rule":
        return schemas.RuleFlag(kind="rule", code=row.code, importance=row.importance, left=as_number(row.left_value),
                                right=as_number(row.right_value), acknowledged=row.acknowledged)
    return schemas.OutlierFlag(kind="outlier", code=row.code, importance=row.importance, score=as_number(row.score),
                               constant_history=row.constant_history, acknowledged=row.acknowledged)


async def value_flags(
    conn: AsyncConnection, metrics: QueryMetrics, endpoint: Endpoint, edition: str, units: Iterable[Unit],
    indicators: Iterable[str], periods: Iterable[str],
) -> FlagsOf:
    """The open flags of every (unit, indicator, period) asked about, in one statement; nothing is read when
    there is nothing that could be flagged (only the nation, no native period)."""
    codes = sorted({u.code for u in units if u.code != NATION})
    wanted_periods, wanted_indicators = sorted(set(periods)), sorted(set(indicators))
    out: FlagsOf = {}
    if not codes or not wanted_periods or not wanted_indicators:
        return out
    rows = (await conn.execute(_VALUE_FLAGS, {
        "edition": edition, "units": codes, "periods": wanted_periods, "indicators": wanted_indicators,
    })).all()
    metrics.read(endpoint, len(rows))
    for row in rows:
        flag = _flag(row)
        for indicator in row.indicators:
            out.setdefault((row.unit, indicator, row.period), []).append(flag)
    return out


# --- the listing -----------------------------------------------------------------------------------------

_STATUS = {
    "open": "f.status = 'open' AND f.acknowledged_at IS NULL",
    "acknowledged": "f.status = 'open' AND f.acknowledged_at IS NOT NULL",
    "resolved": "f.status = 'resolved'",
}


@dataclass(frozen=True, slots=True)
class ListFilter:
    unit: Unit
    status: Status = "open"
    periods: tuple[str, ...] | None = None  # the native period codes asked for; None: every period
    kind: Literal["rule", "outlier"] | None = None
    importance: Literal["high", "medium", "low"] | None = None
    after: tuple[int, int, Decimal, str, int] | None = None  # keyset cursor: the last item's ordering columns
    limit: int = 50


@cache
def _listing(status: Status, subtree: bool, periods: bool, kind: bool, importance: bool, after: bool) -> TextClause:
    where = ["f.edition = :edition", _STATUS[status]]
    if subtree:  # the unit and every unit below it: `@>` probes the GIN index on ancestors (migration 0009)
        where.append("(u.code = :unit OR u.ancestors @> ARRAY[CAST(:unit AS text)])")
    if periods:
        where.append("f.period = ANY(CAST(:periods AS text[]))")
    if kind:
        where.append("f.kind = :kind")
    if importance:
        where.append("f.importance = :importance")
    page = ""
    if after:
        # (o1, o2, o3) ascending, then period descending, then id: no single row comparison orders both ways.
        page = """WHERE (k.o1, k.o2, k.o3) > (CAST(:o1 AS int), CAST(:o2 AS int), CAST(:o3 AS numeric))
   OR ((k.o1, k.o2, k.o3) = (CAST(:o1 AS int), CAST(:o2 AS int), CAST(:o3 AS numeric))
       AND (k.period < CAST(:period AS text) OR (k.period = CAST(:period AS text) AND k.id > CAST(:id AS bigint))))"""
    return text(f"""
SELECT k.* FROM (
  SELECT f.id, f.kind, f.code, f.importance, f.status, f.unit, u.name AS unit_name, u.level AS unit_level,
         f.indicators, f.period, f.left_value, f.right_value, f.score, f.constant_history, f.opened_at,
         f.resolved_at, f.updated_at, f.acknowledged_by, f.acknowledged_at, f.acknowledged_comment,
         {_RANKS[0]} AS o1, {_RANKS[1]} AS o2, {_RANKS[2]} AS o3
  FROM quality_flags f JOIN units u ON u.edition = f.edition AND u.code = f.unit
  WHERE {" AND ".join(where)}
) k
{page}
ORDER BY k.o1, k.o2, k.o3, k.period DESC, k.id
LIMIT :limit
""")


def _names(catalog: Catalog, kind: str, code: str) -> tuple[str, str, str | None, str | None, str | None]:
    """(name_vi, name_en, operator, left, right): a rule's from the catalogue, an outlier's indicator's; a code
    the catalogue no longer has is its own name."""
    if kind == "rule":
        rule = next((r for r in catalog.rules if r.code == code), None)
        if rule is not None:
            s = rule.spec
            return s.name_vi, s.name_en, s.operator, s.left, s.right
    else:
        indicator = catalog.get(code)
        if indicator is not None:
            return indicator.name_vi, indicator.name_en, None, None, None
    return code, code, None, None, None


def _item(catalog: Catalog, r: Row[Any]) -> schemas.QualityFlag:
    name_vi, name_en, operator, left, right = _names(catalog, r.kind, r.code)
    status: Status = "resolved" if r.status == "resolved" else "acknowledged" if r.acknowledged_at else "open"
    ack = None if r.acknowledged_at is None else schemas.Acknowledgement(
        by=r.acknowledged_by or "", at=r.acknowledged_at, comment=r.acknowledged_comment)
    return schemas.QualityFlag(
        id=r.id, kind=r.kind, code=r.code, name_vi=name_vi, name_en=name_en, importance=r.importance, status=status,
        unit=schemas.UnitRef(code=r.unit, name=r.unit_name, level=r.unit_level), indicators=list(r.indicators),
        period=r.period, left=as_number(r.left_value), right=as_number(r.right_value), operator=operator,
        left_expression=left, right_expression=right, score=as_number(r.score),
        constant_history=r.constant_history, opened_at=r.opened_at, resolved_at=r.resolved_at,
        updated_at=r.updated_at, acknowledged=ack,
    )


async def list_flags(
    conn: AsyncConnection, metrics: QueryMetrics, catalog: Catalog, unit_schema: schemas.Unit, f: ListFilter,
) -> schemas.QualityPage:
    optional = {"periods": None if f.periods is None else list(f.periods), "kind": f.kind,
                "importance": f.importance}
    statement = _listing(f.status, f.unit.code != NATION, *(v is not None for v in optional.values()),
                         f.after is not None)
    params: dict[str, Any] = {"edition": f.unit.edition, "unit": f.unit.code, "limit": f.limit + 1}
    params.update((k, v) for k, v in optional.items() if v is not None)
    if f.after is not None:
        params.update(zip(("o1", "o2", "o3", "period", "id"), f.after, strict=True))
    rows: Sequence[Row[Any]] = (await conn.execute(statement, params)).all()
    metrics.read("quality", len(rows))
    page = rows[: f.limit]
    more = len(rows) > f.limit
    last = page[-1] if page else None
    return schemas.QualityPage(
        unit=unit_schema, edition=f.unit.edition, status=f.status, items=[_item(catalog, r) for r in page],
        next_cursor=encode_cursor({"k": [last.o1, last.o2, str(last.o3), last.period, last.id]})
        if more and last is not None else None,
    )


def parse_cursor(cursor: str) -> tuple[int, int, Decimal, str, int]:
    """A cursor is the client's text: only ordering columns that could be real reach SQL, else a 422."""
    key = decode_cursor(cursor).get("k")
    if not (isinstance(key, list) and len(key) == 5 and all(type(k) is int for k in (key[0], key[1], key[4]))
            and 0 <= key[0] <= 2 and 0 <= key[1] <= 2 and 0 <= key[4] < 2**63
            and isinstance(key[2], str) and len(key[2]) <= 40
            and isinstance(key[3], str) and len(key[3]) <= 10 and key[3].isascii() and key[3].isprintable()):
        raise bad_cursor()
    try:
        score = Decimal(key[2])
    except InvalidOperation as exc:
        raise bad_cursor() from exc
    if not score.is_finite():
        raise bad_cursor()
    return key[0], key[1], score, key[3], key[4]


def periods_within(first: Period, last: Period, types: Iterable[PeriodType]) -> tuple[str, ...]:
    """The codes of every period of `types` lying wholly within [first.start, last.end]: the native periods a
    flag may be about (a month's flag is inside 2024-H1; a year's is not inside 2024-07)."""
    out: list[str] = []
    for ptype in sorted(set(types)):
        cursor = period_containing(first.start, ptype)
        while cursor.start <= last.end:
            if cursor.start >= first.start and cursor.end <= last.end:
                out.append(cursor.code)
            cursor = period_containing(cursor.end + timedelta(days=1), ptype)
    return tuple(out)
