"""The rows of an export (DESIGN §9 "Export"): one per unit × indicator × native period with a value.

The same derivation as the JSON answers (service.py: the native row, or the crosswalk's where a 2025 unit has
none of its own), so a file says what the API says. `GET /v1/exports` reads a subtree in chunks of units taken
in (depth, code) order past the last unit served (keyset pagination over `units`): each chunk is one statement
on the rollups primary key (and one through the crosswalk when re-expressing), sized so that it holds at most
CHUNK_CELLS unit × indicator × period cells, so memory stays flat however large the subtree. The whole export
reads one REPEATABLE READ snapshot: a chunk read later cannot disagree with one read earlier.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, SmallInteger, Text, and_, any_, bindparam, or_, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from services.query import schemas
from services.query.metrics import QueryMetrics
from services.query.periods import NativeRow
from services.query.repository import rollups, units
from services.query.scope import Sight
from services.query.service import (
    AFTER_INDICATOR,
    blend_for,
    fetch,
    native_of,
    native_query,
    reexpressed_of,
    value_fields,
)
from shared.catalog import Indicator, Measure
from shared.files.model import OutCell
from shared.hierarchy import NATION, Hierarchy, Unit
from shared.periods import Period

#: The columns of every export, in order (shared/files/columns.py names them in English and Vietnamese).
COLUMNS = ("unit", "name", "level", "indicator", "period", "value", "numerator", "denominator", "edition",
           "source", "basis", "estimated", "reporting", "expected", "target")
#: Cells (unit × indicator × native period) one chunk may span: its rows, at most, in memory at once.
CHUNK_CELLS = 20_000

ExportRow = dict[str, OutCell]

_u, _r = units.c, rollups.c


def _subtree_units(level: bool) -> Select[Any]:
    root = bindparam("root", type_=Text)
    stmt = select(_u.code, _u.depth).where(
        _u.edition == bindparam("edition", type_=Text),
        or_(_u.code == root, root == any_(_u.ancestors)),
        tuple_(_u.depth, _u.code) > tuple_(bindparam("after_depth", type_=SmallInteger),
                                           bindparam("after_code", type_=Text)),
    )
    if level:
        stmt = stmt.where(_u.level == bindparam("level", type_=Text))
    return stmt.order_by(_u.depth, _u.code).limit(bindparam("limit", type_=Integer))


_SUBTREE_UNITS = {level: _subtree_units(level) for level in (False, True)}
_CHUNK_ROWS: Select[Any] = (
    select(_r.unit, _r.indicator, _r.period, _r.rep_num, _r.rep_den, _r.comp_num, _r.comp_den, _r.reporting,
           _r.updated_at)
    .where(and_(_r.edition == bindparam("edition", type_=Text),
                _r.unit == any_(bindparam("units", type_=ARRAY(Text))),
                _r.indicator == any_(bindparam("indicators", type_=ARRAY(Text))),
                _r.period == any_(bindparam("periods", type_=ARRAY(Text)))))
)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    root: Unit
    indicators: list[tuple[Indicator, list[Period]]]  # each with its native periods in from..to
    level: str | None
    reexpress: bool
    reported_only: bool  # only the figures units reported themselves (a file meant to be imported again)


def row_of(indicator: Indicator, unit: Unit | schemas.Unit, period: str, fields: dict[str, Any]) -> ExportRow:
    """One export row from a value's fields as the JSON answers carry them.

    A boolean a unit reported itself is written as true/false, as it was submitted (the JSON shows it as a
    100 % or 0 % coverage of 1/1 or 0/1): written as a coverage it could not be imported again.
    """
    value, numerator, denominator = fields["value"], fields["numerator"], fields["denominator"]
    if indicator.measure is Measure.BOOLEAN and fields["source"] == "reported" and denominator == 1:
        value, numerator, denominator = numerator == 1, None, None
    basis = fields["basis"]
    return {
        "unit": unit.code, "name": unit.name, "level": unit.level, "indicator": indicator.code, "period": period,
        "value": value, "numerator": numerator, "denominator": denominator, "edition": unit.edition,
        "source": fields["source"], "basis": getattr(basis, "value", basis), "estimated": fields["estimated"],
        "reporting": fields["reporting"], "expected": fields["expected"], "target": indicator.target,
    }


async def _subtree_chunk(conn: AsyncConnection, req: ExportRequest, after: tuple[int, str], limit: int
                         ) -> list[tuple[int, str]]:
    params: dict[str, Any] = {"edition": req.root.edition, "root": req.root.code, "after_depth": after[0],
                              "after_code": after[1], "limit": limit}
    if req.level is not None:
        params["level"] = req.level
    return [(r.depth, r.code) for r in await conn.execute(_SUBTREE_UNITS[req.level is not None], params)]


async def _natives(conn: AsyncConnection, metrics: QueryMetrics, req: ExportRequest, chunk: Sequence[Unit],
                   periods: list[str]) -> dict[tuple[str, str], dict[str, NativeRow]]:
    """(unit, indicator) -> its native rows by period."""
    codes = [i.code for i, _ in req.indicators]
    out: dict[tuple[str, str], dict[str, NativeRow]] = {}
    if chunk[0].code == NATION:  # summed from its provinces at read time, as every answer does
        for row in await fetch(conn, metrics, "exports", native_query(chunk[0], [i for i, _ in req.indicators],
                                                                       periods)):
            native = native_of(row, AFTER_INDICATOR)
            out.setdefault((NATION, row[0]), {})[native.period] = native
        return out
    result = await conn.execute(_CHUNK_ROWS, {"edition": req.root.edition, "units": [u.code for u in chunk],
                                              "indicators": codes, "periods": periods})
    rows = result.all()
    metrics.read("exports", len(rows))
    for row in rows:
        out.setdefault((row[0], row[1]), {})[row[2]] = native_of(row, 2)
    return out


async def _rows_of_chunk(conn: AsyncConnection, metrics: QueryMetrics, hierarchy: Hierarchy, sight: Sight,
                         req: ExportRequest, chunk: list[Unit]) -> list[ExportRow]:
    all_periods = {p.code: p for _, ps in req.indicators for p in ps}
    natives = await _natives(conn, metrics, req, chunk, sorted(all_periods))
    reexpressed = await reexpressed_of(conn, metrics, "exports", sight.index, chunk, [i for i, _ in req.indicators],
                                       all_periods.values()) if req.reexpress else {}
    out: list[ExportRow] = []
    for unit in chunk:
        children = hierarchy.n_children(unit.edition, unit.code)
        for indicator, periods in req.indicators:
            stored = natives.get((unit.code, indicator.code), {})
            again = {x.period: x for x in reexpressed.get((unit.code, indicator.code), ())}
            for p in periods:
                native = stored.get(p.code)
                if native is None and p.code not in again:
                    continue
                one = {(unit.code, indicator.code): [again[p.code]]} if p.code in again else {}
                blended = blend_for(indicator, unit, [native] if native else [], one, sight.index, [p], req.reexpress)
                if blended.effective is None or (req.reported_only and blended.source != "reported"):
                    continue
                out.append(row_of(indicator, unit, p.code, value_fields(indicator, blended, children)))
    return out


async def export_chunks(conn: AsyncConnection, metrics: QueryMetrics, hierarchy: Hierarchy, sight: Sight,
                        req: ExportRequest) -> AsyncIterator[list[ExportRow]]:
    """The export's rows, a chunk of units at a time, units in (depth, code) order."""
    await conn.execution_options(isolation_level="REPEATABLE READ")
    cells = max(1, sum(len(ps) for _, ps in req.indicators))
    per_chunk = max(1, CHUNK_CELLS // cells)
    after = (-1, "")
    while True:
        keys = await _subtree_chunk(conn, req, after, per_chunk)
        if not keys:
            return
        after = keys[-1]
        found = [hierarchy.get(req.root.edition, code) for _, code in keys]
        # Defence in depth: the root is visible, so its subtree is; a unit the key may not read is never written.
        chunk = [u for u in found if u is not None and sight.sees(u)]
        nation = [u for u in chunk if u.code == NATION]
        for part in (nation, [u for u in chunk if u.code != NATION]):
            if part:
                rows = await _rows_of_chunk(conn, metrics, hierarchy, sight, req, part)
                if rows:
                    yield rows


def rows_of_children(indicator: Indicator, answer: schemas.ChildrenValues) -> list[ExportRow]:
    """A drill-down page as rows: every child on it, those without a value too, as the JSON lists them."""
    return [row_of(indicator, item.unit, answer.period, item.model_dump()) for item in answer.items]


def rows_of_series(indicator: Indicator, answer: schemas.Series) -> list[ExportRow]:
    """A series as rows: every point, those without a value too, as the JSON lists them."""
    return [row_of(indicator, answer.unit, point.period, point.model_dump()) for point in answer.points]
