"""Use cases of the query API: run the request's one statement, derive, shape the answer.

Time derivation (periods.py) happens here in Python on the few native rows a statement returns; sums
across units (the nation) happen in Postgres. Rankings are sorted here because a unit has at most a
few hundred children and their values are derived per child first.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.query import repository as repo
from services.query import schemas
from services.query.deps import invalid
from services.query.metrics import Endpoint, QueryMetrics
from services.query.pagination import bad_cursor, decode_cursor, encode_cursor
from services.query.periods import (
    Derived,
    FinerThanNative,
    NativeRow,
    components,
    derive,
    is_partial,
    native_periods,
    shown_value,
)
from shared.auth import Principal
from shared.catalog import Catalog, Indicator
from shared.hierarchy import NATION, Hierarchy, Unit, fold
from shared.periods import Period
from shared.values import Pair


def unit_schema(hierarchy: Hierarchy, unit: Unit) -> schemas.Unit:
    return schemas.Unit(
        edition=unit.edition, code=unit.code, name=unit.name, kind=unit.kind, level=unit.level,
        parent=unit.parent_code, children=hierarchy.n_children(unit.edition, unit.code),
    )


def unit_detail(hierarchy: Hierarchy, unit: Unit) -> schemas.UnitDetail:
    ancestors = [a for a in (hierarchy.get(unit.edition, code) for code in unit.ancestors) if a is not None]
    return schemas.UnitDetail(
        **unit_schema(hierarchy, unit).model_dump(),
        ancestors=[schemas.UnitRef(code=a.code, name=a.name, level=a.level) for a in ancestors],
    )


def _components(indicator: Indicator, pair: Pair | None) -> schemas.Components | None:
    if pair is None:
        return None
    numerator, denominator = components(indicator, pair)
    return schemas.Components(value=shown_value(indicator, pair), numerator=numerator, denominator=denominator)


def _value_fields(indicator: Indicator, d: Derived, children: int) -> dict[str, Any]:
    numerator, denominator = components(indicator, d.effective)
    return {
        "value": shown_value(indicator, d.effective),
        "numerator": numerator,
        "denominator": denominator,
        "source": d.source,
        "reported": _components(indicator, d.reported),
        "computed": _components(indicator, d.computed),
        # Own-level indicators are never summed, so "how many children reported" means nothing there.
        "reporting": d.reporting if indicator.rollup else None,
        "expected": children if indicator.rollup else None,
        "updated_at": d.updated_at,
    }


# Column positions of the statements in repository.py: the native columns follow the keys.
_AFTER_INDICATOR = 1  # unit_rows, nation_rows: indicator, then the native columns
_AFTER_CHILD = 5  # children_rows: code, name, level, kind, n_children, then the native columns


def _native(row: Row[Any], start: int) -> NativeRow:
    return NativeRow._make(row[start : start + len(NativeRow._fields)])


async def _fetch(
    conn: AsyncConnection, metrics: QueryMetrics, endpoint: Endpoint, query: repo.Query
) -> Sequence[Row[Any]]:
    rows: Sequence[Row[Any]] = (await conn.execute(query.statement, query.params)).all()
    metrics.read(endpoint, len(rows))
    return rows


def _native_query(unit: Unit, indicators: list[Indicator], periods: Iterable[str]) -> repo.Query:
    codes = [i.code for i in indicators]
    period_codes = sorted(set(periods))
    if unit.code == NATION:
        summed = [i.code for i in indicators if i.rollup]
        return repo.nation_rows(unit.edition, codes, summed, period_codes)
    return repo.unit_rows(unit.edition, unit.code, codes, period_codes)


async def unit_values(
    conn: AsyncConnection, metrics: QueryMetrics, catalog: Catalog, hierarchy: Hierarchy, unit: Unit,
    period: Period, indicator: Indicator | None, today: date,
) -> schemas.UnitValues:
    wanted: dict[str, tuple[Indicator, frozenset[str]]] = {}
    if indicator is not None:
        try:
            wanted[indicator.code] = (indicator, frozenset(p.code for p in native_periods(indicator, period)))
        except FinerThanNative as exc:
            raise invalid("period", str(exc)) from exc
    else:
        for ind in catalog:
            if ind.retired:
                continue
            try:
                wanted[ind.code] = (ind, frozenset(p.code for p in native_periods(ind, period)))
            except FinerThanNative:
                continue  # a six-monthly indicator has no value for a month: left out, not an error
    by_indicator: dict[str, list[NativeRow]] = {}
    if wanted:
        query = _native_query(
            unit, [i for i, _ in wanted.values()], (p for _, codes in wanted.values() for p in codes)
        )
        for row in await _fetch(conn, metrics, "values", query):
            code, native = row[0], _native(row, _AFTER_INDICATOR)
            if native.period in wanted[code][1]:  # the period list is shared by every indicator
                by_indicator.setdefault(code, []).append(native)
    children = hierarchy.n_children(unit.edition, unit.code)
    values = [
        schemas.Value(
            indicator=code, target=ind.target,
            **_value_fields(ind, derive(ind, by_indicator.get(code, ())), children),
        )
        for code, (ind, _) in wanted.items()
    ]
    return schemas.UnitValues(
        unit=unit_schema(hierarchy, unit), edition=unit.edition, period=period.code,
        partial=is_partial(period, today), values=values,
    )


def _sort_key(sort: str, value: int | float | None, code: str, name: str) -> tuple[Any, ...]:
    """Children without a value come last in every value order; ties are broken by code."""
    match sort:
        case "-value":
            return (value is None, -(value or 0), code)
        case "value":
            return (value is None, value or 0, code)
        case "name":
            return (fold(name), code)
        case _:
            return (code,)


async def children_values(
    conn: AsyncConnection, metrics: QueryMetrics, hierarchy: Hierarchy, principal: Principal, parent: Unit,
    period: Period, indicator: Indicator, sort: schemas.Sort, limit: int, cursor: str | None, today: date,
) -> schemas.ChildrenValues:
    try:
        periods = [p.code for p in native_periods(indicator, period)]
    except FinerThanNative as exc:
        raise invalid("period", str(exc)) from exc
    after: tuple[Any, ...] | None = None
    if cursor is not None:
        payload = decode_cursor(cursor)
        if payload.get("s") != sort or not isinstance(payload.get("k"), list):
            raise bad_cursor()
        after = tuple(payload["k"])
    query = repo.children_rows(
        parent.edition, parent.code, indicator.code, periods, latest_only=indicator.time_rollup == "latest"
    )
    grouped: dict[str, tuple[Row[Any], list[NativeRow]]] = {}
    for row in await _fetch(conn, metrics, "children", query):
        _, natives = grouped.setdefault(row[0], (row, []))
        if row[_AFTER_CHILD] is not None:  # a child without any row of the periods: one row of nulls
            natives.append(_native(row, _AFTER_CHILD))
    ranked: list[tuple[tuple[Any, ...], schemas.ChildValue]] = []
    for code, (meta, natives) in grouped.items():
        child = hierarchy.get(parent.edition, code)
        if child is None or not principal.can_see(child):
            continue  # defence in depth: a visible parent's children are all visible
        fields = _value_fields(indicator, derive(indicator, natives), meta.n_children)
        item = schemas.ChildValue(unit=unit_schema(hierarchy, child), rank=0, **fields)
        ranked.append((_sort_key(sort, fields["value"], code, meta.name), item))
    ranked.sort(key=lambda pair: pair[0])
    keys = [k for k, _ in ranked]
    try:
        start = 0 if after is None else bisect_right(keys, after)
    except TypeError as exc:  # a forged cursor whose key does not compare with ours
        raise bad_cursor() from exc
    page = ranked[start : start + limit]
    for offset, (_, item) in enumerate(page):
        item.rank = start + offset + 1
    more = start + limit < len(ranked)
    return schemas.ChildrenValues(
        unit=unit_schema(hierarchy, parent), edition=parent.edition, indicator=indicator.code, period=period.code,
        partial=is_partial(period, today), sort=sort,
        total=len(ranked), reporting=sum(1 for _, item in ranked if item.value is not None),
        items=[item for _, item in page],
        next_cursor=encode_cursor({"s": sort, "k": list(page[-1][0])}) if more and page else None,
    )


async def series(
    conn: AsyncConnection, metrics: QueryMetrics, hierarchy: Hierarchy, unit: Unit, indicator: Indicator,
    periods: list[Period], first: Period, last: Period, today: date,
) -> schemas.Series:
    query = _native_query(unit, [indicator], (p.code for p in periods))
    rows = await _fetch(conn, metrics, "series", query)
    stored = {native.period: native for native in (_native(row, _AFTER_INDICATOR) for row in rows)}
    children = hierarchy.n_children(unit.edition, unit.code)
    points = []
    for p in periods:
        native = stored.get(p.code)
        fields = _value_fields(indicator, derive(indicator, [native] if native else []), children)
        points.append(schemas.SeriesPoint(
            period=p.code, value=fields["value"], numerator=fields["numerator"],
            denominator=fields["denominator"], source=fields["source"], reporting=fields["reporting"],
            expected=fields["expected"], partial=is_partial(p, today),
        ))
    return schemas.Series(
        unit=unit_schema(hierarchy, unit), edition=unit.edition, indicator=indicator.code,
        from_=first.code, to=last.code, points=points,
    )


async def list_units(conn: AsyncConnection, metrics: QueryMetrics, f: repo.UnitFilter) -> schemas.UnitPage:
    rows = await _fetch(conn, metrics, "units", repo.list_units(f))
    page = rows[: f.limit]
    items = [
        schemas.Unit(
            edition=f.edition, code=r.code, name=r.name, kind=r.kind, level=r.level, parent=r.parent_code,
            children=r.n_children,
        )
        for r in page
    ]
    more = len(rows) > f.limit
    return schemas.UnitPage(
        edition=f.edition, items=items,
        next_cursor=encode_cursor({"k": [page[-1].depth, page[-1].code]}) if more else None,
    )
