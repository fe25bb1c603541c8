"""Dependencies of the query routes: the `Annotated` aliases routes declare (state, connection, caller,
hierarchy) and the validators built on params.py. They are `async def` even when they await nothing:
FastAPI runs plain `def` ones in a thread pool, a hop per dependency per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.query.auth import RESOLVED
from services.query.connections import LazyConnection
from services.query.params import catalog_indicator, parse_param, visible_unit
from services.query.scope import Sight
from services.query.state import QueryState, get_state
from shared.auth import Principal
from shared.catalog import Indicator as CatalogIndicator
from shared.errors import ServiceUnavailable
from shared.hierarchy import Edition, Hierarchy, Unit, edition_for
from shared.periods import Period

AppState = Annotated[QueryState, Depends(get_state)]


async def get_lazy_connection(state: AppState) -> AsyncIterator[LazyConnection]:
    async with state.connections.lazy() as lazy:
        yield lazy


Lazy = Annotated[LazyConnection, Depends(get_lazy_connection)]


async def get_hierarchy(state: AppState) -> Hierarchy:
    if state.hierarchy is None:
        raise ServiceUnavailable("the unit hierarchy is still loading; retry in a few seconds")
    return state.hierarchy


LoadedHierarchy = Annotated[Hierarchy, Depends(get_hierarchy)]

_bearer = HTTPBearer(auto_error=False, description="An API key with the `read` role.")


async def get_principal(
    request: Request,
    state: AppState,
    lazy: Lazy,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    resolved: Principal | None = request.scope.get("state", {}).get(RESOLVED)
    return resolved if resolved is not None else await state.auth.principal_of(request.scope, lazy)


Reader = Annotated[Principal, Depends(get_principal)]


async def get_sight(state: AppState, reader: Reader) -> Sight:
    return Sight(reader, await state.crosswalk.get())


Seer = Annotated[Sight, Depends(get_sight)]

ReexpressParam = Annotated[
    bool,
    Query(description="A 2025 unit's values for periods before 1 July 2025 re-expressed from its legacy units "
          "through the crosswalk (DESIGN §7); `false`: its own native values only."),
]

EditionParam = Annotated[
    Edition | None,
    Query(description="Hierarchy edition: `legacy` (before 1 July 2025) or `2025`.",
          openapi_examples={"legacy": {"value": "legacy"}, "2025": {"value": "2025"}}),
]
CodePath = Annotated[
    str,
    Path(max_length=16, description="GSO code with its leading zeros (`01`, `803`, `00004`) or `VN`.",
         openapi_examples={"district": {"value": "803"}, "nation": {"value": "VN"}}),
]


async def valid_unit(
    hierarchy: LoadedHierarchy, sight: Seer, code: CodePath, edition: EditionParam = None
) -> Unit:
    """A unit of `edition` (default the current one, 2025) that the caller may see."""
    return visible_unit(hierarchy, sight, (edition or Edition.E2025).value, code)


ValidUnit = Annotated[Unit, Depends(valid_unit)]


async def valid_period(
    period: Annotated[
        str,
        Query(max_length=10, description="A period code: 2024, 2024-H1, 2024-Q3, 2024-07 or 2024-07-15.",
              openapi_examples={"half year": {"value": "2024-H1"}, "month": {"value": "2024-07"}}),
    ],
) -> Period:
    return parse_param("period", period)


ValidPeriod = Annotated[Period, Depends(valid_period)]


@dataclass(frozen=True, slots=True)
class UnitAtPeriod:
    unit: Unit
    period: Period


async def unit_at_period(
    hierarchy: LoadedHierarchy, sight: Seer, code: CodePath, period: ValidPeriod, edition: EditionParam = None
) -> UnitAtPeriod:
    """The unit in the edition asked for, or else in the edition in force at the end of the period."""
    chosen = edition.value if edition else edition_for(period.end).value
    return UnitAtPeriod(visible_unit(hierarchy, sight, chosen, code), period)


ValidUnitAtPeriod = Annotated[UnitAtPeriod, Depends(unit_at_period)]


IndicatorCode = Annotated[
    str,
    Query(max_length=64, description="An indicator code from /v1/indicators.",
          openapi_examples={"stock": {"value": "cccd_issued"}, "ratio": {"value": "online_dossier_rate"}}),
]


async def valid_indicator(state: AppState, indicator: IndicatorCode) -> CatalogIndicator:
    return catalog_indicator(state.catalog, indicator)


ValidIndicator = Annotated[CatalogIndicator, Depends(valid_indicator)]
