"""The ingest service (port 8001): `create_app(settings)` and the lifespan that owns every resource.

Run it with `uvicorn --factory services.ingest.app:create_app --port 8001` (settings from the
environment). Start-up never waits for its dependencies: the hierarchy loader and the relay retry in
the background with back-off, `/readyz` answers 503 until the database answers, the hierarchy is
loaded and the broker was reached once, and submissions answer 503 until the hierarchy is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from services.ingest.admin import router as admin_router
from services.ingest.api import router
from services.ingest.imports import router as imports_router
from services.ingest.metrics import IngestMetrics
from services.ingest.quality import router as quality_router
from services.ingest.relay import Relay
from services.ingest.state import IngestState
from shared.catalog import load_catalog
from shared.db import make_engine, ping
from shared.dbroles import act_as
from shared.errors import install_error_handlers
from shared.hierarchy_keeper import HierarchyKeeper
from shared.limits import BodyLimitMiddleware, RateLimiter
from shared.memory import rare_collections
from shared.observability import Check, configure_logging, install_observability, new_registry
from shared.settings import IngestSettings

# A unit removed from (or added to) the hierarchy is noticed within this long on every replica.
HIERARCHY_REFRESH_SECONDS = 60.0

DESCRIPTION = """\
Receives Project 06 indicator values from ministry and provincial integrations, validates them against
the catalogue and the administrative hierarchy, and stores them durably in an outbox that a relay
publishes to Kafka. Errors are RFC 9457 `application/problem+json`.
"""


class NotStarted(RuntimeError):
    """The lifespan has not started (or has ended)."""


class HierarchyNotLoaded(RuntimeError):
    """The units have not been read from the database yet."""


class BrokerNotReached(RuntimeError):
    """The relay has not reached the broker since start-up."""


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    registry = new_registry()
    metrics = IngestMetrics(registry)
    app = FastAPI(
        title="d06 ingest", version="1.0.0", description=DESCRIPTION, lifespan=_lifespan(settings, metrics)
    )
    install_error_handlers(app)
    # Added before observability, so it runs inside it: a 413 carries the request id too.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes,
                       paths={"/v1/imports": settings.max_import_bytes})
    install_observability(app, registry, _readiness_checks(app))
    app.include_router(router)
    app.include_router(imports_router)
    app.include_router(admin_router)
    app.include_router(quality_router)
    return app


def _lifespan(
    settings: IngestSettings, metrics: IngestMetrics
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        engine = act_as(
            make_engine(settings.database_url, pool_size=settings.db_pool_size, app="d06-ingest"), settings.db_role
        )
        app.state.engine = engine  # for the pool metrics
        state = IngestState(
            settings=settings, engine=engine, catalog=load_catalog(), metrics=metrics,
            limiter=RateLimiter(settings.rate_limit, settings.rate_burst),
            keeper=HierarchyKeeper(engine, refresh_seconds=HIERARCHY_REFRESH_SECONDS),
        )
        if settings.relay_enabled:
            state.relay = Relay(engine, settings, metrics)
        hierarchy_task = asyncio.create_task(state.keeper.run(), name="d06-ingest-hierarchy")
        relay_task = asyncio.create_task(state.relay.run(), name="d06-ingest-relay") if state.relay else None
        app.state.ingest = state
        try:
            with rare_collections():
                yield
        finally:
            # Reverse order of acquisition: imports and the relay still need the engine to record their end.
            for task in list(state.imports):
                task.cancel()
            await asyncio.gather(*state.imports, return_exceptions=True)
            if state.relay is not None and relay_task is not None:
                await state.relay.shutdown(relay_task)
            hierarchy_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hierarchy_task
            app.state.ingest = None
            await engine.dispose()

    return lifespan


def _readiness_checks(app: FastAPI) -> dict[str, Check]:
    def state() -> IngestState:
        current: IngestState | None = getattr(app.state, "ingest", None)
        if current is None:
            raise NotStarted("the service is not running")
        return current

    async def database() -> None:
        await ping(state().engine)

    async def hierarchy() -> None:
        if state().hierarchy is None:
            raise HierarchyNotLoaded("the unit hierarchy is not loaded yet")

    async def broker() -> None:
        # Only the first contact gates readiness: later, Kafka being down must not take ingest out of
        # service, because accepted events wait in the outbox (DESIGN §1).
        relay = state().relay
        if relay is not None and not relay.reached_broker:
            raise BrokerNotReached("the relay has not reached the broker yet")

    return {"database": database, "hierarchy": hierarchy, "broker": broker}
