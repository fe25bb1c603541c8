"""The parameters of `GET /v1/units/{code}/quality` (DESIGN §8), turned into a listing filter or one clear 422.

The route itself is in api.py, beside the others, so that it is kept in memory like every read (caching.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from services.query.deps import AppState, CodePath, EditionParam, LoadedHierarchy, Seer
from services.query.params import invalid, parse_param, visible_unit
from services.query.quality import ListFilter, Status, parse_cursor, periods_within
from shared.hierarchy import Edition

# The period codes a filter may expand to (every month, quarter, half and year of a 100-year span is ~1,900).
MAX_PERIOD_CODES = 2_500

_PERIOD = "A period code: 2024, 2024-H1, 2024-Q3, 2024-07 or 2024-07-15."


async def quality_filter(
    state: AppState,
    hierarchy: LoadedHierarchy,
    sight: Seer,
    code: CodePath,
    edition: EditionParam = None,
    period: Annotated[
        str | None,
        Query(max_length=10, description="Only flags about a native period within this one (`2024-H1`: its months "
              f"and the half itself). {_PERIOD}", openapi_examples={"half year": {"value": "2024-H1"}}),
    ] = None,
    from_: Annotated[
        str | None,
        Query(alias="from", max_length=10, description=f"Only flags about periods from this one on. {_PERIOD}",
              openapi_examples={"month": {"value": "2024-01"}}),
    ] = None,
    to: Annotated[
        str | None,
        Query(max_length=10, description=f"Only flags about periods up to this one. {_PERIOD}",
              openapi_examples={"year": {"value": "2024"}}),
    ] = None,
    kind: Annotated[
        Literal["rule", "outlier"] | None, Query(description="Only rule violations, or only outliers."),
    ] = None,
    importance: Annotated[
        Literal["high", "medium", "low"] | None, Query(description="Only flags of this importance."),
    ] = None,
    status: Annotated[
        Status,
        Query(description="`open` (the default): holding and not yet checked; `acknowledged`: holding, checked by "
              "a reviewer; `resolved`: no longer holding."),
    ] = "open",
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 50,
    cursor: Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page.")] = None,
) -> ListFilter:
    """The unit (default edition: 2025, like every unit route) and what to list of its subtree's flags."""
    unit = visible_unit(hierarchy, sight, (edition or Edition.E2025).value, code)
    periods: tuple[str, ...] | None = None
    if period is not None and (from_ is not None or to is not None):
        raise invalid("period", "give either `period` or `from`/`to`, not both")
    if period is not None or from_ is not None or to is not None:
        first = parse_param("period" if period else "from", period or from_ or "2000")
        last = parse_param("period" if period else "to", period or to or "2100")
        if first.start > last.end:
            raise invalid("from", f"'from' ({first.code}) is after 'to' ({last.code})")
        periods = periods_within(first, last, {i.period_type for i in state.catalog})
        if len(periods) > MAX_PERIOD_CODES:
            raise invalid("from", f"{first.code}..{last.code} is too long a span; ask for at most a few decades")
    return ListFilter(unit=unit, status=status, periods=periods, kind=kind, importance=importance,
                      after=parse_cursor(cursor) if cursor is not None else None, limit=limit)
