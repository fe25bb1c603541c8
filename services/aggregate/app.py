"""The aggregator process: the consumer task, the hierarchy refresher and the three operator routes.

`uvicorn --factory services.aggregate.app:create_app --port 8002`. Nothing is built at import time; the
lifespan owns every resource and closes them in reverse order. Start-up never fails because Postgres or
the broker is not up yet: the tasks keep trying, and `/readyz` answers 503 until both are reachable and
the consumer holds partitions. On SIGTERM (lifespan exit) the batch in hand finishes and commits, the
consumer leaves its group, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.aggregate.consumer import Aggregator
from services.aggregate.metrics import AggregateMetrics
from services.aggregate.units import HierarchyCache
from shared.catalog import load_catalog
from shared.db import make_engine
from shared.dbroles import act_as
from shared.errors import install_error_handlers
from shared.observability import configure_logging, install_observability, new_registry
from shared.settings import AggregateSettings

log = logging.getLogger("d06.aggregate")

SHUTDOWN_SECONDS = 20.0  # the batch in hand gets this long to commit (within a pod's default 30 s grace)
CHECK_TIMEOUT = 3.0
GC_THRESHOLD = 50_000  # allocations between young collections (Python's default: 700)


class _Running:
    """What the lifespan started, for the readiness checks to look at."""

    def __init__(self) -> None:
        self.engine: AsyncEngine | None = None
        self.units: HierarchyCache | None = None
        self.aggregator: Aggregator | None = None


def create_app(settings: AggregateSettings | None = None) -> FastAPI:
    settings = settings or AggregateSettings()
    registry = new_registry()
    metrics = AggregateMetrics(registry)
    running = _Running()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not logging.getLogger().handlers:
            configure_logging(settings.log_level)
        # Few connections: one batch transaction at a time, plus readiness and refresh queries.
        engine = act_as(
            make_engine(settings.database_url, pool_size=min(settings.db_pool_size, 4), app="d06-aggregate"),
            settings.db_role,  # rollups, offsets and dead letters; nothing of ingest's (shared/dbroles.py)
        )
        app.state.engine = engine  # for the pool metrics
        units = HierarchyCache(engine, load_catalog())
        aggregator = Aggregator(settings, engine, units, metrics)
        running.engine, running.units, running.aggregator = engine, units, aggregator
        stop = asyncio.Event()
        gc_before = gc.get_threshold()
        # A batch allocates a few hundred thousand short-lived, acyclic objects (freed by refcount); with
        # the default thresholds the cyclic collector runs hundreds of times per batch and rescans the
        # long-lived heap (hierarchy, libraries) each time: a third of the CPU. Collect rarely, and
        # once the hierarchy is in memory, leave everything that exists then out of the scans.
        gc.set_threshold(GC_THRESHOLD, 50, 100)

        async def freeze_when_loaded() -> None:
            if await units.wait_loaded(stop) is not None and not stop.is_set():
                gc.freeze()

        tasks = [
            asyncio.create_task(units.keep_fresh(stop), name="d06-aggregate-hierarchy"),
            asyncio.create_task(aggregator.run(stop), name="d06-aggregate-consumer"),
            asyncio.create_task(freeze_when_loaded(), name="d06-aggregate-gc"),
        ]
        log.info("aggregator started (topic %s, group %s)", settings.events_topic, settings.consumer_group)
        try:
            yield
        finally:
            stop.set()
            _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_SECONDS)
            for task in pending:
                log.warning("%s did not stop in %.0fs; cancelling it", task.get_name(), SHUTDOWN_SECONDS)
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            gc.set_threshold(*gc_before)
            gc.unfreeze()
            running.engine, running.units, running.aggregator = None, None, None
            await engine.dispose()
            log.info("aggregator stopped")

    async def database() -> None:
        if running.engine is None:
            raise RuntimeError("not started")
        async with asyncio.timeout(CHECK_TIMEOUT), running.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def hierarchy() -> None:
        if running.units is None or running.units.tree is None:
            raise LookupError("hierarchy not loaded")

    async def broker() -> None:
        if running.aggregator is None or not running.aggregator.assigned_partitions():
            raise ConnectionError("no partitions assigned")

    app = FastAPI(
        title="d06 aggregate",
        summary="Applies accepted events to the rollups; operators see /healthz, /readyz and /metrics.",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_observability(app, registry, {"database": database, "hierarchy": hierarchy, "broker": broker})
    return app
