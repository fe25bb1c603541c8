"""What the query service's lifespan owns: one `QueryState` per app, found by every request through
`get_state`. Built by app.py's lifespan; nothing here does I/O when constructed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import cast

from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from services.query.auth import Authenticator
from services.query.caching import AnswerCache, Versions
from services.query.connections import Connections
from services.query.keys import KnownKeys
from services.query.metrics import QueryMetrics
from services.query.scope import CrosswalkHolder
from shared.catalog import Catalog
from shared.hierarchy import Hierarchy
from shared.hierarchy_keeper import HierarchyKeeper
from shared.limits import RateLimiter
from shared.settings import QuerySettings

REFRESH_SECONDS = 60.0  # how soon an operator's `d06 hierarchy load` reaches a running replica


@dataclass
class QueryState:
    """Everything the lifespan owns; `hierarchy` is None until the keeper's first load succeeds."""

    settings: QuerySettings
    engine: AsyncEngine
    catalog: Catalog
    metrics: QueryMetrics
    clock: Callable[[], date]
    limiter: RateLimiter
    versions: Versions = field(default_factory=Versions)
    cache: AnswerCache = field(init=False)
    keys: KnownKeys = field(init=False)
    keeper: HierarchyKeeper = field(init=False)
    connections: Connections = field(init=False)
    auth: Authenticator = field(init=False)
    crosswalk: CrosswalkHolder = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.cache = AnswerCache(self.versions, max_bytes=settings.cache_max_bytes, ttl=settings.cache_ttl)
        # Keys are kept on the same terms as answers, and not at all when answers are not (ttl 0, no LISTEN).
        self.keys = KnownKeys(self.versions, ttl=settings.cache_ttl if settings.cache_max_bytes else 0.0)
        self.keeper = HierarchyKeeper(
            self.engine, refresh_seconds=REFRESH_SECONDS, on_load=self._loaded,
            on_refresh=lambda outcome: self.metrics.hierarchy_refreshes.labels(outcome).inc(),
        )
        # With answers kept in memory, one connection of the pool LISTENs (app.py); the rest serve requests.
        listening = 1 if settings.cache_max_bytes else 0
        self.connections = Connections(self.engine, requests=settings.db_pool_size - listening)
        self.crosswalk = CrosswalkHolder(self.engine)
        self.auth = Authenticator(self.keys, self.limiter, self.metrics.keys, anonymous_read=settings.anonymous_read)

    @property
    def hierarchy(self) -> Hierarchy | None:
        return self.keeper.current

    def _loaded(self, hierarchy: Hierarchy) -> None:
        self.cache.clear()  # answers name units: none computed from the old hierarchy is served again
        self.metrics.hierarchy_units.set(len(hierarchy))


async def get_state(request: Request) -> QueryState:
    return cast(QueryState, request.app.state.query)


def state_of(app: FastAPI) -> QueryState:
    return cast(QueryState, app.state.query)
