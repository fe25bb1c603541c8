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
from services.query.crosswalk_sql import reexpressed_rows
from services.query.metrics import Endpoint, QueryMetrics
from services.query.pagination import bad_cursor, decode_cursor, encode_cursor
from services.query.params import invalid
from services.query.periods import (
    FinerThanNative,
    NativeRow,
    components,
    derive,
    is_partial,
    native_periods,
    shown_value,
)
from services.query.quality import value_flags
from services.query.reexpress import Blended, ReRow, blend, legacy_periods, native_only, reexpressible
from services.query.scope import CrosswalkIndex, Sight
from shared.catalog import Catalog, Indicator, Measure
from shared.hierarchy import NATION, Edition, Hierarchy, Unit, fold
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


def value_fields(
    indicator: Indicator, b: Blended, children: int, flags: Sequence[schemas.Flag] = ()
) -> dict[str, Any]:
    numerator, denominator = components(indicator, b.effective)
    return {
        "value": shown_value(indicator, b.effective),
        "numerator": numerator,
        "denominator": denominator,
        "source": b.source,
        "reported": _components(indicator, b.reported),
        "computed": _components(indicator, b.computed),
        # Own-level indicators are never summed, so "how many children reported" means nothing there.
        "reporting": b.reporting if indicator.rollup else None,
        "expected": (children if b.expected is None else b.expected) if indicator.rollup else None,
        "updated_at": b.updated_at,
        "basis": b.basis,
        "estimated": b.estimated,
        "reexpressed": _components(indicator, b.reexpressed),
        # A figure only the crosswalk gives is no value of this unit's: its flags are on the legacy units.
        "flags": [] if b.source == "reexpressed" else list(flags),
    }


# Column positions of the statements in repository.py: the native columns follow the keys.
AFTER_INDICATOR = 1  # unit_rows, nation_rows: indicator, then the native columns
_AFTER_CHILD = 5  # children_rows: code, name, level, kind, n_children, then the native columns


def native_of(row: Row[Any], start: int) -> NativeRow:
    return NativeRow._make(row[start : start + len(NativeRow._fields)])


async def fetch(
    conn: AsyncConnection, metrics: QueryMetrics, endpoint: Endpoint, query: repo.Query
) -> Sequence[Row[Any]]:
    rows: Sequence[Row[Any]] = (await conn.execute(query.statement, query.params)).all()
    metrics.read(endpoint, len(rows))
    return rows


def native_query(
    unit: Unit, indicators: list[Indicator], periods: Iterable[str], edition: str | None = None
) -> repo.Query:
    codes = [i.code for i in indicators]
    period_codes = sorted(set(periods))
    if unit.code == NATION:
        summed = [i.code for i in indicators if i.rollup]
        return repo.nation_rows(edition or unit.edition, codes, summed, period_codes)
    return repo.unit_rows(unit.edition, unit.code, codes, period_codes)


Reexpressed = dict[tuple[str, str], list[ReRow]]  # (2025 unit, indicator) -> its re-expressed native periods


async def reexpressed_of(
    conn: AsyncConnection, metrics: QueryMetrics, endpoint: Endpoint, index: CrosswalkIndex, units: list[Unit],
    indicators: list[Indicator], periods: Iterable[Period],
) -> Reexpressed:
    """The re-expressed rows of 2025 `units` for the legacy ones among `periods` (DESIGN §7): the nation's are
    the legacy nation's, everyone else's the crosswalk's weighted sums."""
    chosen = [i for i in indicators if i.rollup]
    old = legacy_periods(periods)
    if not chosen or not old or not units or units[0].edition != Edition.E2025.value:
        return {}
    if units[0].code == NATION:
        out: Reexpressed = {}
        for row in await fetch(conn, metrics, endpoint, native_query(units[0], chosen, old, Edition.LEGACY.value)):
            native = native_of(row, AFTER_INDICATOR)
            if native.has_value and native.effective is not None:
                pair = native.effective
                out.setdefault((NATION, row[0]), []).append(
                    ReRow(native.period, pair.num, pair.den, 1, 1, True, native.updated_at))
        return out
    unweighted = [i.code for i in chosen if i.measure is Measure.BOOLEAN]
    found = await reexpressed_rows(conn, [u.code for u in units], [i.code for i in chosen], unweighted, old,
                                   {u.code: index.n_sources(u) for u in units})
    metrics.read(endpoint, sum(len(rows) for rows in found.values()))
    return found


def blend_for(
    indicator: Indicator, unit: Unit, natives: Sequence[NativeRow], reexpressed: Reexpressed, index: CrosswalkIndex,
    periods: Sequence[Period], reexpress: bool,
) -> Blended:
    if not (reexpress and reexpressible(unit, indicator)):
        return native_only(derive(indicator, natives))
    return blend(indicator, natives, reexpressed.get((unit.code, indicator.code), ()), sources=index.n_sources(unit),
                 all_legacy=len(legacy_periods(periods)) == len(periods))


async def unit_values(
    conn: AsyncConnection, metrics: QueryMetrics, catalog: Catalog, hierarchy: Hierarchy, index: CrosswalkIndex,
    unit: Unit, period: Period, indicator: Indicator | None, today: date, *, reexpress: bool = True,
) -> schemas.UnitValues:
    wanted: dict[str, tuple[Indicator, list[Period]]] = {}
    if indicator is not None:
        try:
            wanted[indicator.code] = (indicator, native_periods(indicator, period))
        except FinerThanNative as exc:
            raise invalid("period", str(exc)) from exc
    else:
        for ind in catalog:
            if ind.retired:
                continue
            try:
                wanted[ind.code] = (ind, native_periods(ind, period))
            except FinerThanNative:
                continue  # a six-monthly indicator has no value for a month: left out, not an error
    by_indicator: dict[str, list[NativeRow]] = {}
    reexpressed: Reexpressed = {}
    if wanted:
        codes = {code: frozenset(p.code for p in ps) for code, (_, ps) in wanted.items()}
        chosen = [i for i, _ in wanted.values()]
        all_periods = {p.code: p for _, ps in wanted.values() for p in ps}
        for row in await fetch(conn, metrics, "values", native_query(unit, chosen, all_periods)):
            code, native = row[0], native_of(row, AFTER_INDICATOR)
            if native.period in codes[code]:  # the period list is shared by every indicator
                by_indicator.setdefault(code, []).append(native)
        if reexpress:
            found = await reexpressed_of(conn, metrics, "values", index, [unit], chosen, all_periods.values())
            reexpressed = {k: [x for x in rows if x.period in codes[k[1]]] for k, rows in found.items()}
    children = hierarchy.n_children(unit.edition, unit.code)
    native_here = [code for code, (_, ps) in wanted.items() if [p.code for p in ps] == [period.code]]
    flags = await value_flags(conn, metrics, "values", unit.edition, [unit], native_here, [period.code])
    values = [
        schemas.Value(
            indicator=code, target=ind.target,
            **value_fields(ind, blend_for(ind, unit, by_indicator.get(code, ()), reexpressed, index, ps, reexpress),
                           children, flags.get((unit.code, code, period.code), ())),
        )
        for code, (ind, ps) in wanted.items()
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
    conn: AsyncConnection, metrics: QueryMetrics, hierarchy: Hierarchy, sight: Sight, parent: Unit,
    period: Period, indicator: Indicator, sort: schemas.Sort, limit: int, cursor: str | None, today: date,
    *, reexpress: bool = True,
) -> schemas.ChildrenValues:
    try:
        natives_of = native_periods(indicator, period)
        periods = [p.code for p in natives_of]
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
    for row in await fetch(conn, metrics, "children", query):
        _, natives = grouped.setdefault(row[0], (row, []))
        if row[_AFTER_CHILD] is not None:  # a child without any row of the periods: one row of nulls
            natives.append(native_of(row, _AFTER_CHILD))
    kids = [c for c in (hierarchy.get(parent.edition, code) for code in grouped) if c is not None and sight.sees(c)]
    reexpressed = await reexpressed_of(conn, metrics, "children", sight.index, kids, [indicator], natives_of) \
        if reexpress else {}
    native_here = [p.code for p in natives_of] == [period.code]
    flags = await value_flags(conn, metrics, "children", parent.edition, kids, [indicator.code],
                              [period.code] if native_here else [])
    ranked: list[tuple[tuple[Any, ...], schemas.ChildValue]] = []
    for child in kids:  # defence in depth: a visible parent's children are all visible
        meta, natives = grouped[child.code]
        code = child.code
        blended = blend_for(indicator, child, natives, reexpressed, sight.index, natives_of, reexpress)
        fields = value_fields(indicator, blended, meta.n_children, flags.get((code, indicator.code, period.code), ()))
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
    conn: AsyncConnection, metrics: QueryMetrics, hierarchy: Hierarchy, index: CrosswalkIndex, unit: Unit,
    indicator: Indicator, periods: list[Period], first: Period, last: Period, today: date, *, reexpress: bool = True,
) -> schemas.Series:
    query = native_query(unit, [indicator], (p.code for p in periods))
    rows = await fetch(conn, metrics, "series", query)
    stored = {native.period: native for native in (native_of(row, AFTER_INDICATOR) for row in rows)}
    found = await reexpressed_of(conn, metrics, "series", index, [unit], [indicator], periods) if reexpress else {}
    by_period = {x.period: x for x in found.get((unit.code, indicator.code), ())}
    children = hierarchy.n_children(unit.edition, unit.code)
    flags = await value_flags(conn, metrics, "series", unit.edition, [unit], [indicator.code],
                              [p.code for p in periods])
    points = []
    for p in periods:
        native = stored.get(p.code)
        one = {(unit.code, indicator.code): [by_period[p.code]]} if p.code in by_period else {}
        fields = value_fields(
            indicator, blend_for(indicator, unit, [native] if native else [], one, index, [p], reexpress), children,
            flags.get((unit.code, indicator.code, p.code), ()))
        points.append(schemas.SeriesPoint(
            period=p.code, value=fields["value"], numerator=fields["numerator"],
            denominator=fields["denominator"], source=fields["source"], reporting=fields["reporting"],
            expected=fields["expected"], partial=is_partial(p, today), basis=fields["basis"],
            estimated=fields["estimated"], reexpressed=fields["reexpressed"], flags=fields["flags"],
        ))
    return schemas.Series(
        unit=unit_schema(hierarchy, unit), edition=unit.edition, indicator=indicator.code,
        from_=first.code, to=last.code, points=points,
    )


async def list_units(conn: AsyncConnection, metrics: QueryMetrics, f: repo.UnitFilter) -> schemas.UnitPage:
    rows = await fetch(conn, metrics, "units", repo.list_units(f))
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
