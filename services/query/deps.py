"""Dependencies of the query routes: the app's state, one connection per request, the caller, and the
validators that turn path and query parameters into domain objects (or one clear 404/422, once).

Dependencies are `async def` even when they await nothing: FastAPI runs plain `def` ones in a thread
pool, a hop per dependency per request.

A unit outside the key's scope is answered exactly like a unit that does not exist, so a scoped key
cannot even learn which codes exist elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, cast

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.datastructures import Headers
from starlette.types import Scope

from services.query.caching import AnswerCache, Versions
from services.query.keys import KnownKeys
from services.query.metrics import QueryMetrics
from shared.auth import ANONYMOUS, Principal, Role, authenticate, bearer_token
from shared.catalog import Catalog
from shared.catalog import Indicator as CatalogIndicator
from shared.errors import (
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
    safe_echo,
)
from shared.hierarchy import Edition, Hierarchy, Unit, edition_for
from shared.limits import RateLimiter
from shared.periods import Period, PeriodError, parse_period
from shared.settings import QuerySettings


@dataclass
class QueryState:
    """Everything the lifespan owns; `hierarchy` is None until the first load succeeds."""

    settings: QuerySettings
    engine: AsyncEngine
    catalog: Catalog
    metrics: QueryMetrics
    clock: Callable[[], date]
    limiter: RateLimiter
    hierarchy: Hierarchy | None = None
    versions: Versions = field(default_factory=Versions)
    cache: AnswerCache = field(init=False)
    keys: KnownKeys = field(init=False)
    turns: asyncio.Semaphore = field(init=False)  # requests' turns for a pooled connection (LazyConnection)

    def __post_init__(self) -> None:
        self.cache = AnswerCache(self.versions, max_bytes=self.settings.cache_max_bytes, ttl=self.settings.cache_ttl)
        # Keys are kept on the same terms as answers, and not at all when answers are not (ttl 0, no LISTEN).
        self.keys = KnownKeys(self.versions, ttl=self.settings.cache_ttl if self.settings.cache_max_bytes else 0.0)
        # With answers kept in memory, one connection of the pool LISTENs (app.py); the rest serve requests.
        listening = 1 if self.settings.cache_max_bytes else 0
        self.turns = asyncio.Semaphore(max(1, self.settings.db_pool_size - listening))


CONNECTION_WAIT = 10.0  # seconds a request waits for a database connection before a 503


async def get_state(request: Request) -> QueryState:
    return cast(QueryState, request.app.state.query)


AppState = Annotated[QueryState, Depends(get_state)]


class LazyConnection:
    """The request's one pooled connection, checked out on first use: the key check and the data share
    it, and a request that needs neither (a public read of the in-memory hierarchy) takes none.

    Requests take their turn for a connection in arrival order (`turns`, a fair semaphore as large as the
    pool can serve them): the pool's own queue lets a newcomer take a connection returned for an older
    waiter, which then queues again, and under 50 concurrent readers that made the slowest 1% of
    requests wait three to seven times as long as the median.
    """

    def __init__(self, engine: AsyncEngine, turns: asyncio.Semaphore) -> None:
        self._engine = engine
        self._turns = turns
        self._conn: AsyncConnection | None = None

    async def get(self) -> AsyncConnection:
        if self._conn is None:
            try:
                await asyncio.wait_for(self._turns.acquire(), CONNECTION_WAIT)
            except TimeoutError as exc:
                raise ServiceUnavailable("the service is overloaded; retry in a few seconds") from exc
            conn = self._engine.connect()
            try:
                await conn.start()
            except (OSError, TimeoutError, DBAPIError) as exc:
                self._turns.release()
                raise ServiceUnavailable("the database is not reachable; retry in a few seconds") from exc
            except BaseException:
                self._turns.release()
                raise
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            finally:
                self._conn = None
                self._turns.release()


async def get_lazy_connection(state: AppState) -> AsyncIterator[LazyConnection]:
    lazy = LazyConnection(state.engine, state.turns)
    try:
        yield lazy
    finally:
        await lazy.close()


Lazy = Annotated[LazyConnection, Depends(get_lazy_connection)]


async def get_connection(lazy: Lazy) -> AsyncConnection:
    return await lazy.get()


Conn = Annotated[AsyncConnection, Depends(get_connection)]


async def get_hierarchy(state: AppState) -> Hierarchy:
    if state.hierarchy is None:
        raise ServiceUnavailable("the unit hierarchy is still loading; retry in a few seconds")
    return state.hierarchy


Tree = Annotated[Hierarchy, Depends(get_hierarchy)]

_bearer = HTTPBearer(auto_error=False, description="An API key with the `read` role.")


#: Where CachedAnswers (caching.py) leaves the principal it already resolved for a request it passed on.
RESOLVED = "principal"


async def principal_of(state: QueryState, scope: Scope, lazy: LazyConnection) -> Principal:
    """The caller of the request `scope`, charged one token of its rate limit; a Problem otherwise."""
    header = Headers(scope=scope).get("authorization")
    if header is None and state.settings.anonymous_read:
        # A public portal's readers have no key: each client address gets the bucket a key would.
        client = scope.get("client")
        _charge(state, f"addr:{client[0] if client else '-'}")
        return ANONYMOUS
    # A key sent to a public deployment is still checked: a typo should not silently widen the view.
    token = bearer_token(header)
    if token is None:
        raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
    # Kept from an earlier lookup until api_keys changes (keys.py), so revocation and expiry still act at
    # once. `last_used_at` is not touched: this role may only SELECT (docs/security.md).
    principal = state.keys.get(token)
    state.metrics.keys.labels("miss" if principal is None else "hit").inc()
    if principal is None:
        generation = state.keys.generation
        principal = await authenticate(await lazy.get(), token, touch=False)
        if principal is None:
            raise Unauthorized("the API key is unknown, revoked or expired")
        state.keys.put(token, principal, generation)
    scope.setdefault("state", {})["key_id"] = principal.key_id  # for the log line of an error, never the key
    if not principal.has(Role.READ):
        raise Forbidden("the API key does not have the `read` role")
    _charge(state, f"key:{principal.key_id}")
    return principal


async def get_principal(
    request: Request,
    state: AppState,
    lazy: Lazy,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    resolved: Principal | None = request.scope.get("state", {}).get(RESOLVED)
    return resolved if resolved is not None else await principal_of(state, request.scope, lazy)


def _charge(state: QueryState, bucket: str) -> None:
    wait = state.limiter.acquire(bucket)
    if wait:
        raise TooManyRequests(
            f"more than {state.limiter.rate:g} requests a second; retry later",
            headers={"Retry-After": state.limiter.retry_after(wait)},
        )


Reader = Annotated[Principal, Depends(get_principal)]

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


def invalid(loc: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"loc": loc, "message": message}])


def visible_unit(tree: Hierarchy, principal: Principal, edition: str, code: str) -> Unit:
    unit = tree.get(edition, code)
    if unit is None or not principal.can_see(unit):
        raise NotFound(f"there is no unit '{safe_echo(code, 16)}' in edition {edition}")
    return unit


def parse_param(loc: str, code: str) -> Period:
    if not code.isascii():  # the period regexes' `\d` would read other scripts' digits (２０２４)
        raise invalid(loc, "a period code is written in ASCII: 2024, 2024-H1, 2024-Q3, 2024-07 or 2024-07-15")
    try:
        return parse_period(code)
    except PeriodError as exc:
        raise invalid(loc, safe_echo(str(exc), 200)) from exc


async def valid_unit(tree: Tree, principal: Reader, code: CodePath, edition: EditionParam = None) -> Unit:
    """A unit of `edition` (default the current one, 2025) that the caller may see."""
    return visible_unit(tree, principal, (edition or Edition.E2025).value, code)


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
    tree: Tree, principal: Reader, code: CodePath, period: ValidPeriod, edition: EditionParam = None
) -> UnitAtPeriod:
    """The unit in the edition asked for, or else in the edition in force at the end of the period."""
    chosen = edition.value if edition else edition_for(period.end).value
    return UnitAtPeriod(visible_unit(tree, principal, chosen, code), period)


ValidUnitAtPeriod = Annotated[UnitAtPeriod, Depends(unit_at_period)]


def catalog_indicator(state: QueryState, code: str) -> CatalogIndicator:
    found = state.catalog.get(code)
    if found is None:
        raise invalid("indicator", f"'{safe_echo(code, 64)}' is not an indicator of the catalogue (see /v1/indicators)")
    return found


IndicatorCode = Annotated[
    str,
    Query(max_length=64, description="An indicator code from /v1/indicators.",
          openapi_examples={"stock": {"value": "cccd_issued"}, "ratio": {"value": "online_dossier_rate"}}),
]


async def valid_indicator(state: AppState, indicator: IndicatorCode) -> CatalogIndicator:
    return catalog_indicator(state, indicator)


ValidIndicator = Annotated[CatalogIndicator, Depends(valid_indicator)]
