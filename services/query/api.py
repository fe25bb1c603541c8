"""The v1 read API (DESIGN §4 "query"): thin routes over service.py, every answer with an ETag."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from services.query import export_api, lineage, quality, schemas, service
from services.query.caching import AnswerCache, province_key_of, respond
from services.query.deps import (
    AppState,
    CodePath,
    EditionParam,
    Lazy,
    LoadedHierarchy,
    Reader,
    ReexpressParam,
    Seer,
    ValidIndicator,
    ValidUnit,
    ValidUnitAtPeriod,
)
from services.query.metrics import Endpoint
from services.query.pagination import bad_cursor, decode_cursor
from services.query.params import catalog_indicator, invalid, parse_param, visible_unit
from services.query.periods import MAX_SERIES_POINTS, default_series_end, default_series_start, series_periods
from services.query.quality_api import quality_filter
from services.query.repository import UnitFilter
from services.query.state import QueryState
from shared.auth import Principal
from shared.catalog import Indicator as CatalogIndicator
from shared.errors import (
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
    responses,
)
from shared.hierarchy import NATION, Edition, Unit, edition_for, fold
from shared.limits import unsafe_character
from shared.periods import Period, PeriodError

router = APIRouter(prefix="/v1", tags=["query"])

UNIT_CODE = re.compile(r"[0-9A-Za-z]{1,16}")

_ERRORS = (Unauthorized, Forbidden, ValidationFailed, TooManyRequests, ServiceUnavailable)
_UNIT_ERRORS = (*_ERRORS, NotFound)

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page.")]
Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page.")]


async def _answer(
    request: Request, state: QueryState, reader: Principal, endpoint: Endpoint, about: Unit | None,
    build: Callable[[], Awaitable[BaseModel]],
) -> Response:
    """The answer kept in memory while the rollups it read are unchanged (caching.py); else built and kept.

    `about` is the unit whose rollups the answer reads (None: it reads only the hierarchy).
    """
    stamp = state.versions.stamp(province_key_of(about))  # taken before reading: a change announced meanwhile
    key = AnswerCache.key(request.scope, reader, state.clock())
    answer = state.cache.get(key)
    state.metrics.cache.labels(endpoint, "hit" if answer else "miss").inc()
    if answer is None:
        body = (await build()).model_dump_json().encode()
        answer = state.cache.put(key, request, endpoint, about, stamp, body)
    return respond(request, answer, max_age=state.settings.cache_max_age, metrics=state.metrics)


def _ready(model: BaseModel) -> Callable[[], Awaitable[BaseModel]]:
    async def build() -> BaseModel:
        return model

    return build


@router.get(
    "/indicators", summary="The indicator catalogue", response_model=schemas.IndicatorList,
    responses=responses(Unauthorized, Forbidden, TooManyRequests, ServiceUnavailable),
    description="Every indicator in use (retired codes are left out), with how it rolls up.",
)
async def indicators(request: Request, state: AppState, reader: Reader) -> Response:
    async def build() -> BaseModel:
        return schemas.IndicatorList(items=[
            schemas.Indicator(
                code=i.code, name_vi=i.name_vi, name_en=i.name_en, group=i.group.value, unit=i.unit,
                measure=i.measure.value, components=i.components, period_type=i.period_type.value,
                rollup=i.rollup, target=i.target, description_en=i.description_en,
            )
            for i in state.catalog
            if not i.retired
        ])

    return await _answer(request, state, reader, "indicators", None, build)


@router.get(
    "/units", summary="Units: list, filter and search by name", response_model=schemas.UnitPage,
    responses=responses(*_UNIT_ERRORS),
    description="Units of one edition in (level, code) order, only those the key may see. `q` matches "
    "names without diacritics: `cua lo` finds Phường Cửa Lò, `ben luc` finds Huyện Bến Lức.",
)
async def units(
    request: Request,
    state: AppState,
    lazy: Lazy,
    hierarchy: LoadedHierarchy,
    reader: Reader,
    sight: Seer,
    edition: Annotated[Edition, Query(description="Hierarchy edition.")] = Edition.E2025,
    parent: Annotated[str | None, Query(max_length=16, description="Only the children of this unit.")] = None,
    level: Annotated[
        Literal["nation", "province", "district", "commune"] | None, Query(description="Only this level.")
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=100, description="Part of the name, with or without diacritics, or a code.",
              openapi_examples={"without diacritics": {"value": "ben luc"}}),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    if parent is not None:
        visible_unit(hierarchy, sight, edition.value, parent)
    after: tuple[int, str] | None = None
    if cursor is not None:
        key = decode_cursor(cursor).get("k")
        # A cursor is the client's text too: only a (depth, code) that could be real reaches SQL, so a
        # forged one is a 422 rather than an out-of-range smallint or a NUL the database refuses (a 500).
        if not (isinstance(key, list) and len(key) == 2 and type(key[0]) is int and 0 <= key[0] <= 9
                and isinstance(key[1], str) and UNIT_CODE.fullmatch(key[1])):
            raise bad_cursor()
        after = (key[0], key[1])
    if q is not None and unsafe_character(q) is not None:
        raise invalid("q", "a search may not contain control or invisible characters")
    folded = " ".join(fold(q).split()) if q else None
    roots = sight.roots(edition.value)
    f = UnitFilter(
        edition=edition.value, parent=parent, level=level, q=folded or None, scope_codes=roots, after=after,
        limit=limit,
    )
    if roots == ():  # a legacy key sees none of the 2025 units
        empty = schemas.UnitPage(edition=edition.value, items=[], next_cursor=None)
        return await _answer(request, state, reader, "units", None, _ready(empty))

    async def build() -> BaseModel:
        return await service.list_units(await lazy.get(), state.metrics, f)

    return await _answer(request, state, reader, "units", None, build)


@router.get(
    "/units/{code}", summary="One unit, its ancestors and its number of children",
    response_model=schemas.UnitDetail, responses=responses(*_UNIT_ERRORS),
)
async def unit(
    request: Request, state: AppState, hierarchy: LoadedHierarchy, reader: Reader, found: ValidUnit
) -> Response:
    return await _answer(request, state, reader, "unit", None, _ready(service.unit_detail(hierarchy, found)))


IndicatorFilter = Annotated[
    str | None,
    Query(max_length=64, description="One indicator; all of them when absent.",
          openapi_examples={"one": {"value": "cccd_coverage"}}),
]


@router.get(
    "/units/{code}/values", summary="Values of one or all indicators for a unit and period",
    response_model=schemas.UnitValues, responses=responses(*_UNIT_ERRORS),
    description="`period` may be the indicator's native period or a coarser one (derived: flows add up, "
    "stocks take the latest month). `edition` defaults to the one in force at the end of the period. "
    "Without `indicator`, indicators that cannot be given for the period (a six-monthly one for a month) "
    "are left out.",
)
async def unit_values(
    request: Request, state: AppState, lazy: Lazy, hierarchy: LoadedHierarchy, reader: Reader, sight: Seer,
    at: ValidUnitAtPeriod, indicator: IndicatorFilter = None, reexpress: ReexpressParam = True,
) -> Response:
    chosen = catalog_indicator(state.catalog, indicator) if indicator is not None else None

    async def build() -> BaseModel:
        return await service.unit_values(
            await lazy.get(), state.metrics, state.catalog, hierarchy, sight.index, at.unit, at.period, chosen,
            state.clock(), reexpress=reexpress,
        )

    return await _answer(request, state, reader, "values", at.unit, build)


@router.get(
    "/units/{code}/children/values", summary="Drill-down: one indicator for every child, ranked",
    response_model=schemas.ChildrenValues, responses={**responses(*_UNIT_ERRORS), **export_api.FILE_ANSWERS},
    description="One item per child; children without a value are included and come last. Sort by "
    "`-value` (largest first), `value`, `code` or `name`; page with `next_cursor`.",
)
async def children_values(
    request: Request, state: AppState, lazy: Lazy, hierarchy: LoadedHierarchy, reader: Reader, sight: Seer,
    at: ValidUnitAtPeriod, indicator: ValidIndicator,
    sort: Annotated[schemas.Sort, Query(description="Order of the children.")] = "-value",
    limit: Limit = 100,
    cursor: Cursor = None,
    reexpress: ReexpressParam = True,
    format_: export_api.FormatParam = "json",
) -> Response:
    async def build() -> schemas.ChildrenValues:
        return await service.children_values(
            await lazy.get(), state.metrics, hierarchy, sight, at.unit, at.period, indicator, sort, limit, cursor,
            state.clock(), reexpress=reexpress,
        )

    if format_ != "json":
        return export_api.children_file(format_, indicator, await build())
    return await _answer(request, state, reader, "children", at.unit, build)


@dataclass(frozen=True, slots=True)
class SeriesRequest:
    unit: Unit
    indicator: CatalogIndicator
    first: Period
    last: Period
    periods: list[Period]


async def series_request(
    state: AppState,
    hierarchy: LoadedHierarchy,
    sight: Seer,
    code: CodePath,
    indicator: ValidIndicator,
    from_: Annotated[
        str | None,
        Query(alias="from", max_length=10, description="First period (any type); default: 12 points back.",
              openapi_examples={"month": {"value": "2024-01"}}),
    ] = None,
    to: Annotated[
        str | None,
        Query(max_length=10, description="Last period (any type); default: the current one.",
              openapi_examples={"year": {"value": "2024"}}),
    ] = None,
    edition: EditionParam = None,
) -> SeriesRequest:
    """The unit and the native periods of a series; `edition` defaults to the one in force at `to`."""
    native = indicator.period_type
    last = parse_param("to", to) if to else default_series_end(native, state.clock())
    first = parse_param("from", from_) if from_ else default_series_start(native, last)
    try:
        periods = series_periods(native, first, last)
    except PeriodError as exc:
        raise invalid("from", str(exc)) from exc
    chosen = edition.value if edition else edition_for(last.end).value
    return SeriesRequest(visible_unit(hierarchy, sight, chosen, code), indicator, first, last, periods)


@router.get(
    "/units/{code}/series", summary="A time series of one indicator in its native periods",
    response_model=schemas.Series, responses={**responses(*_UNIT_ERRORS), **export_api.FILE_ANSWERS},
    description=f"Native periods overlapping `from`..`to`, oldest first, at most {MAX_SERIES_POINTS} "
    f"points. The nation (`{NATION}`) is summed from its provinces.",
)
async def unit_series(
    request: Request, state: AppState, lazy: Lazy, hierarchy: LoadedHierarchy, reader: Reader, sight: Seer,
    req: Annotated[SeriesRequest, Depends(series_request)], reexpress: ReexpressParam = True,
    format_: export_api.FormatParam = "json",
) -> Response:
    async def build() -> schemas.Series:
        return await service.series(
            await lazy.get(), state.metrics, hierarchy, sight.index, req.unit, req.indicator, req.periods, req.first,
            req.last, state.clock(), reexpress=reexpress,
        )

    if format_ != "json":
        return export_api.series_file(format_, req.indicator, await build())
    return await _answer(request, state, reader, "series", req.unit, build)


@router.get(
    "/units/{code}/lineage", summary="The units of the other edition a unit is linked to across the 2025 reform",
    response_model=schemas.Lineage, responses=responses(*_UNIT_ERRORS),
    description="For a 2025 unit (`edition=2025`, the default), the legacy units it was formed from; for a legacy "
    "unit, the 2025 units it went into; each with the crosswalk's weight (the share of the legacy unit) and its "
    "basis (`whole`, `equal`, or loaded weights). Re-expressed values (`basis: reexpressed`) are Σ weight × the "
    "legacy units' values.",
)
async def unit_lineage(
    request: Request, state: AppState, lazy: Lazy, hierarchy: LoadedHierarchy, reader: Reader, sight: Seer,
    found: ValidUnit,
) -> Response:
    async def build() -> BaseModel:
        return await lineage.lineage(await lazy.get(), state.metrics, hierarchy, sight, found)

    return await _answer(request, state, reader, "lineage", found, build)


@router.get(
    "/units/{code}/quality", summary="Data-quality flags of a unit's whole subtree, most important first",
    response_model=schemas.QualityPage, responses=responses(*_UNIT_ERRORS),
    description="Rule violations and outliers (DESIGN §8; docs/quality.md) of the unit and every unit below it in "
    "its edition, with both sides of each rule: high, then medium, then low importance; within one, the largest "
    "departure first (a departure from a constant history, then |score|, then rules), then the latest period. "
    "`status=open` (the default) lists what still needs a look; page with `next_cursor`.",
)
async def unit_quality(
    request: Request, state: AppState, lazy: Lazy, hierarchy: LoadedHierarchy, reader: Reader,
    f: Annotated[quality.ListFilter, Depends(quality_filter)],
) -> Response:
    async def build() -> BaseModel:
        return await quality.list_flags(await lazy.get(), state.metrics, state.catalog,
                                        service.unit_schema(hierarchy, f.unit), f)

    return await _answer(request, state, reader, "quality", f.unit, build)


router.include_router(export_api.router)
