"""`GET /v1/exports` (DESIGN §9): a subtree's values for a range of periods as CSV, Excel or DHIS2, streamed;
and the file answers of `children/values` and `series` (`?format=csv|xlsx`).

Every parameter is checked before the first byte is sent, so a bad request is a problem+json like any other;
once streaming, the export holds one pooled connection (its own turn, as a request does) until it ends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response, StreamingResponse

from services.query import schemas
from services.query.deps import (
    AppState,
    EditionParam,
    LoadedHierarchy,
    Reader,
    Seer,
)
from services.query.export_rows import (
    COLUMNS,
    ExportRequest,
    ExportRow,
    export_chunks,
    rows_of_children,
    rows_of_series,
)
from services.query.exports import MEDIA_TYPES, file_response, streamed_response
from services.query.params import invalid, parse_param, visible_unit
from services.query.periods import MAX_SERIES_POINTS, series_periods
from shared.catalog import Catalog
from shared.catalog import Indicator as CatalogIndicator
from shared.errors import (
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
    responses,
    safe_echo,
)
from shared.hierarchy import edition_for
from shared.periods import Period, PeriodError

router = APIRouter(tags=["files"])  # included in api.py's router, under its /v1

FileFormat = Literal["json", "csv", "xlsx"]
FormatParam = Annotated[
    FileFormat,
    Query(alias="format", description="`json` (the default), or the same rows as a file: `csv` (UTF-8 with a BOM, "
          "which Excel opens with its Vietnamese intact) or `xlsx` (Vietnamese headers, numbers as numbers). The "
          "file holds what the JSON answer holds: for a drill-down, the page asked for (`limit` up to 500: every "
          "child of any unit fits one page).",
          openapi_examples={"json": {"value": "json"}, "Excel": {"value": "xlsx"}}),
]
MAX_INDICATORS = 64
#: What `?format=csv|xlsx` answers, beside the JSON of the route's model.
FILE_ANSWERS: dict[int | str, dict[str, Any]] = {200: {"content": {
    MEDIA_TYPES["csv"]: {"example": "unit,name,level,indicator,period,value,…\r\n27991,Xã Tân Bửu,commune,…\r\n"},
    MEDIA_TYPES["xlsx"]: {"example": "(an .xlsx workbook: the same columns with Vietnamese headers)"},
}}}


def _indicators(catalog: Catalog, text: str | None) -> list[CatalogIndicator]:
    if text is None or not text.strip():
        return [i for i in catalog if not i.retired]
    chosen: dict[str, CatalogIndicator] = {}
    for code in (c.strip() for c in text.split(",")):
        found = catalog.get(code) if code else None
        if found is None:
            raise invalid("indicators", f"'{safe_echo(code, 64)}' is not an indicator of the catalogue "
                                        "(see /v1/indicators)")
        chosen[found.code] = found
    if len(chosen) > MAX_INDICATORS:
        raise invalid("indicators", f"at most {MAX_INDICATORS} indicators at a time")
    return list(chosen.values())


def _ranges(indicators: list[CatalogIndicator], first: Period, last: Period
            ) -> list[tuple[CatalogIndicator, list[Period]]]:
    out = []
    for indicator in indicators:
        try:
            out.append((indicator, series_periods(indicator.period_type, first, last)))
        except PeriodError as exc:
            raise invalid("from", f"{indicator.code}: {safe_echo(str(exc), 200)}") from exc
    return out


@router.get(
    "/exports", summary="Every value of a subtree for a range of periods, as a file (streamed)",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The file, sent as it is read.",
              "content": {media: {"example": example} for media, example in (
                  (MEDIA_TYPES["csv"], "unit,name,level,indicator,period,value,numerator,denominator,edition,source,"
                   "basis,estimated,reporting,expected,target\r\n27991,Xã Tân Bửu,commune,dossiers_received,2024-01,"
                   "100,,,legacy,reported,native,false,0,0,\r\n"),
                  (MEDIA_TYPES["dhis2"], {"dataValues": [
                      {"dataElement": "dossiers_received", "period": "202401", "orgUnit": "27991", "value": "100"},
                      {"dataElement": "cccd_coverage.numerator", "period": "202406", "orgUnit": "27991",
                       "value": "90"},
                      {"dataElement": "cccd_coverage.denominator", "period": "202406", "orgUnit": "27991",
                       "value": "100"}]}),
                  (MEDIA_TYPES["xlsx"], "(an .xlsx workbook: one sheet, the same columns with Vietnamese headers)"))}},
        **responses(Unauthorized, Forbidden, ValidationFailed, NotFound, TooManyRequests, ServiceUnavailable),
    },
    description="One row per unit × indicator × native period with a value (units without one are left out), "
    "units in (level, code) order: the unit's code, name and level, `value`, `numerator`/`denominator` (ratios "
    "and coverages), `edition`, `source`, `basis`, `estimated`, `reporting`, `expected`, `target` — the figures "
    "`values` and `series` answer. Importing the file again (`POST /v1/imports`) reads `unit`, `indicator`, "
    "`period`, the figures and `edition`, and ignores the informational columns.\n\n"
    f"`from`..`to` may hold at most {MAX_SERIES_POINTS} native periods of each indicator asked for (ten years of "
    "a monthly one). `format=dhis2` is a DHIS2 `dataValueSets` document (`dataElement` the indicator code, "
    "`code.numerator`/`code.denominator` for a ratio, `orgUnit` the GSO code, `period` in DHIS2's form) meant to "
    "be imported: by default it holds only the figures units reported themselves (`source=reported`), and it "
    "never holds re-expressed values, which no unit reported and no event can carry. CSV and Excel hold every "
    "value (`source=all`); with `reexpress=true` they add a 2025 unit's values for periods before 1 July 2025 "
    "re-expressed from its legacy units (`basis: reexpressed`, DESIGN §7) — read them, do not import them.",
)
async def export(
    state: AppState, hierarchy: LoadedHierarchy, _reader: Reader, sight: Seer,
    unit: Annotated[str, Query(max_length=16, description="The subtree's root: a GSO code or `VN`.",
                               openapi_examples={"province": {"value": "80"}, "district": {"value": "803"}})],
    from_: Annotated[str, Query(alias="from", max_length=10, description="First period (any type).",
                                openapi_examples={"month": {"value": "2024-01"}})],
    to: Annotated[str, Query(max_length=10, description="Last period (any type).",
                             openapi_examples={"half year": {"value": "2024-H1"}})],
    edition: EditionParam = None,
    indicators: Annotated[str | None, Query(
        max_length=2000, description=f"Indicator codes, comma-separated (at most {MAX_INDICATORS}); all when absent.",
        openapi_examples={"two": {"value": "dossiers_received,cccd_coverage"}})] = None,
    level: Annotated[Literal["nation", "province", "district", "commune"] | None, Query(
        description="Only the units of this level; the whole subtree (the root included) when absent.")] = None,
    format_: Annotated[Literal["csv", "xlsx", "dhis2"], Query(
        alias="format", description="`csv` (UTF-8 with a BOM), `xlsx` or `dhis2` (dataValueSets JSON).")] = "csv",
    source: Annotated[Literal["all", "reported"] | None, Query(
        description="`reported`: only the figures units reported themselves, what an import needs; `all`: computed "
        "sums too. Default: `reported` for `dhis2`, `all` otherwise.")] = None,
    reexpress: Annotated[bool, Query(
        description="Add a 2025 unit's re-expressed values for legacy periods (`basis: reexpressed`); not with "
        "`dhis2`.")] = False,
) -> StreamingResponse:
    last = parse_param("to", to)
    first = parse_param("from", from_)
    chosen_edition = edition.value if edition else edition_for(last.end).value
    root = visible_unit(hierarchy, sight, chosen_edition, unit)
    if reexpress and format_ == "dhis2":
        raise invalid("reexpress", "a DHIS2 export is meant to be imported, and re-expressed values cannot be: "
                                   "leave reexpress out, or export csv or xlsx")
    req = ExportRequest(root, _ranges(_indicators(state.catalog, indicators), first, last), level,
                        reexpress and root.edition == "2025",
                        (source or ("reported" if format_ == "dhis2" else "all")) == "reported")

    async def chunks() -> AsyncGenerator[list[ExportRow]]:
        async with state.connections.lazy() as lazy:
            async for rows in export_chunks(await lazy.get(), state.metrics, hierarchy, sight, req):
                yield rows

    return streamed_response(format_, COLUMNS, chunks(), [root.code, root.name, first.code, last.code])


def children_file(fmt: str, indicator: CatalogIndicator, answer: schemas.ChildrenValues) -> Response:
    parts = [answer.unit.code, answer.unit.name, indicator.code, answer.period]
    return file_response(fmt, COLUMNS, rows_of_children(indicator, answer), parts)


def series_file(fmt: str, indicator: CatalogIndicator, answer: schemas.Series) -> Response:
    parts = [answer.unit.code, answer.unit.name, indicator.code, answer.from_, answer.to]
    return file_response(fmt, COLUMNS, rows_of_series(indicator, answer), parts)
