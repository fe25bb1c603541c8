"""The query service: `create_app(settings)`; the lifespan owns the read-only engine, the catalogue,
the in-memory hierarchy (kept fresh by a background task, shared/hierarchy_keeper.py), the answers kept in
memory (with the task that follows the aggregator's announcements of what changed) and the metrics.

Run with `uvicorn --factory services.query.app:create_app --port 8003`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

from asyncpg.exceptions import ReadOnlySQLTransactionError
from fastapi import FastAPI

from services.query.api import router
from services.query.fastpath import CachedAnswers
from services.query.metrics import QueryMetrics
from services.query.portal import mount_portal
from services.query.state import QueryState, state_of
from shared.catalog import load_catalog
from shared.db import make_engine, ping
from shared.dbroles import act_as
from shared.errors import install_error_handlers
from shared.events import CROSSWALK_CHANGED, KEYS_CHANGED, ROLLUPS_CHANGED
from shared.limits import BodyLimitMiddleware, RateLimiter
from shared.memory import rare_collections
from shared.observability import configure_logging, install_observability, new_registry
from shared.periods import today_in_vietnam
from shared.retry import Backoff, describe
from shared.settings import QuerySettings

log = logging.getLogger("d06.query")

RETRY_FIRST, RETRY_MAX = 0.25, 15.0
HEARTBEAT_SECONDS = 10.0  # how soon a silently dead listening connection is noticed
REPLICA_RETRY_SECONDS = 60.0


async def follow_rollup_changes(state: QueryState, heartbeat: float = HEARTBEAT_SECONDS) -> None:
    """Keep `state.versions` in step with the aggregator's commits, and `state.keys` with api_keys: LISTEN.

    While not listening, answers are kept `cache_ttl` seconds at most. Announcements made while not listening
    are lost, so every (re)connection starts a new epoch in which nothing kept before counts. A read replica
    (the production topology, docs/operations.md) refuses LISTEN: the service then stays on `cache_ttl`.
    """
    backoff = Backoff(first=RETRY_FIRST, cap=RETRY_MAX)
    on_replica = False
    while True:
        try:
            async with state.engine.connect() as conn:
                try:
                    await _listen(state, (await conn.get_raw_connection()).driver_connection, heartbeat)
                finally:
                    state.versions.stop()
                    await conn.invalidate()  # never back into the pool: it is dead, or may be mid-query
            log.warning("the connection following rollup changes was lost; reconnecting")
            backoff.reset()
            on_replica = False
        except ReadOnlySQLTransactionError:  # "cannot execute LISTEN during recovery": a hot standby
            if not on_replica:
                log.info("the database is a read replica, which cannot LISTEN: answers are kept in memory for "
                         "%.2fs at most (QUERY_CACHE_TTL_SECONDS)", state.settings.cache_ttl)
            on_replica = True
            await asyncio.sleep(REPLICA_RETRY_SECONDS)  # until a failover makes it the primary
        except Exception as exc:  # noqa: BLE001 - any failure is retried; the reason is logged
            delay = backoff.next()
            log.warning("not following rollup changes (%s); answers are kept %.2fs at most, retrying in %.2fs",
                        describe(exc), state.settings.cache_ttl, delay)
            on_replica = False
            await asyncio.sleep(delay)


async def _listen(state: QueryState, raw: Any, heartbeat: float) -> None:
    """Until the asyncpg connection `raw` is closed: its announcements move `state.versions`."""
    lost = asyncio.Event()

    def announced(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        # A legacy province's change reaches the 2025 province it went into (re-expressed answers read it).
        index = state.crosswalk.current
        keys = payload.split(",")
        state.versions.changed(keys if index is None else index.widen(keys))

    def crosswalk_changed(*_: object) -> None:
        state.crosswalk.forget()  # the pairs are read again by the next request that needs them
        state.versions.forget_all()  # every answer re-expressed through the old weights or pairs

    await raw.add_listener(ROLLUPS_CHANGED, announced)
    await raw.add_listener(KEYS_CHANGED, lambda *_: state.keys.forget())
    await raw.add_listener(CROSSWALK_CHANGED, crosswalk_changed)
    raw.add_termination_listener(lambda _conn: lost.set())
    state.cache.clear()
    state.keys.forget()
    await state.crosswalk.load()  # before any announcement needs it to widen a legacy province to its 2025 one
    state.crosswalk.listening = True
    state.versions.start()
    log.info("following rollup changes: answers are kept in memory until what they read changes")
    try:
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), heartbeat)
            if not lost.is_set():  # a connection can also die without a word
                await asyncio.wait_for(raw.fetchval("SELECT 1"), 5)
    finally:
        state.crosswalk.listening = False


def create_app(
    settings: QuerySettings | None = None, *, clock: Callable[[], date] | None = None
) -> FastAPI:
    """`clock` gives today's date (Vietnam time) for `partial`; tests pass a fixed one."""
    settings = settings or QuerySettings()
    configure_logging(settings.log_level)
    registry = new_registry()
    metrics = QueryMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Three locks on writing: the role (SELECT only), the read-only session, and no write in the code.
        engine = act_as(
            make_engine(settings.database_url, pool_size=settings.db_pool_size, read_only=True, app="d06-query"),
            settings.db_role,
        )
        app.state.engine = engine  # for the pool metrics
        state = QueryState(settings, engine, load_catalog(), metrics, clock or today_in_vietnam,
                           RateLimiter(settings.rate_limit, settings.rate_burst))
        app.state.query = state
        tasks = [asyncio.create_task(state.keeper.run(), name="d06-query-hierarchy")]
        if settings.cache_max_bytes:
            tasks.append(asyncio.create_task(follow_rollup_changes(state), name="d06-query-changes"))
        # The house GC policy (shared/memory.py): a request's rows, models and JSON are short-lived and
        # acyclic, like a batch's events, and the keeper freezes the hierarchy out of the collector's sight.
        try:
            with rare_collections():
                yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await engine.dispose()

    app = FastAPI(
        title="d06 query",
        version="1",
        description="Read-only API of Project 06 indicator values, roll-ups, drill-downs and time series.",
        lifespan=lifespan,
    )

    async def database_ready() -> None:
        await ping(state_of(app).engine)

    async def hierarchy_ready() -> None:
        if state_of(app).hierarchy is None:
            raise LookupError("hierarchy not loaded")

    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)  # inside observability: has an id
    app.add_middleware(CachedAnswers, state=lambda: getattr(app.state, "query", None))  # counted, with an id
    install_observability(app, registry, {"database": database_ready, "hierarchy": hierarchy_ready})
    app.include_router(router)
    mount_portal(app, settings)  # the reference portal at `/` (DESIGN §10)
    return app
