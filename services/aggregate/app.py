"""The aggregator process: the consumer, the hierarchy keeper, the dead-letter relay, the open-flags gauge and
the operator routes.

`uvicorn --factory services.aggregate.app:create_app --port 8002`. Nothing is built at import time; the
lifespan owns every resource and closes them in reverse order. Start-up never fails because Postgres or
the broker is not up yet: the tasks keep trying, and `/readyz` answers 503 until both are reachable and
the consumer holds partitions. On SIGTERM (lifespan exit) the batch in hand finishes and commits, the
consumer leaves its group, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.aggregate.consumer import Aggregator
from services.aggregate.dead_letter_relay import DeadLetterRelay
from services.aggregate.metrics import AggregateMetrics
from services.aggregate.quality_gauge import OpenFlagsGauge
from services.aggregate.service import CurrentReference
from shared.catalog import load_catalog
from shared.db import make_engine, ping
from shared.dbroles import act_as
from shared.errors import install_error_handlers
from shared.hierarchy_keeper import HierarchyKeeper
from shared.memory import rare_collections
from shared.observability import configure_logging, install_observability, new_registry
from shared.settings import AggregateSettings

log = logging.getLogger("d06.aggregate")

SHUTDOWN_SECONDS = 20.0  # the batch in hand gets this long to commit (within a pod's default 30 s grace)
HIERARCHY_REFRESH_SECONDS = 300.0
# Events for units this process has not seen trigger an early reload (an operator loaded a newer
# hierarchy), at most this often, before anyone calls them poison.
EARLY_REFRESH_INTERVAL = 5.0


class _Running:
    """What the lifespan started, for the readiness checks to look at."""

    def __init__(self) -> None:
        self.engine: AsyncEngine | None = None
        self.keeper: HierarchyKeeper | None = None
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
        # Few connections: one batch transaction at a time and its quality step's read (two together, never
        # fewer: the step waits for its own), plus readiness and refresh queries.
        engine = act_as(
            make_engine(settings.database_url, pool_size=max(2, min(settings.db_pool_size, 4)),
                        app="d06-aggregate"),
            settings.db_role,  # rollups, offsets and dead letters; nothing of ingest's (shared/dbroles.py)
        )
        app.state.engine = engine  # for the pool metrics
        reference = CurrentReference(load_catalog(), quality=settings.quality)
        keeper = HierarchyKeeper(
            engine, refresh_seconds=HIERARCHY_REFRESH_SECONDS, min_interval=EARLY_REFRESH_INTERVAL,
            on_load=reference.rebuild,
        )
        relay = DeadLetterRelay(settings, engine, metrics)
        flags_gauge = OpenFlagsGauge(engine, metrics, settings.quality_gauge_seconds)
        aggregator = Aggregator(settings, engine, keeper, reference, metrics, on_dead_letters=relay.wake)
        running.engine, running.keeper, running.aggregator = engine, keeper, aggregator
        stop = asyncio.Event()
        with rare_collections():  # the keeper freezes the long-lived heap after each hierarchy load
            tasks = [
                asyncio.create_task(keeper.run(stop), name="d06-aggregate-hierarchy"),
                asyncio.create_task(aggregator.run(stop), name="d06-aggregate-consumer"),
                asyncio.create_task(relay.run(stop), name="d06-aggregate-dead-letters"),
                asyncio.create_task(flags_gauge.run(stop), name="d06-aggregate-quality-gauge"),
            ]
            log.info("aggregator started (topic %s, group %s, rules and outliers %s)", settings.events_topic,
                     settings.consumer_group, "on" if settings.quality else "off")
            try:
                yield
            finally:
                stop.set()
                _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_SECONDS)
                for task in pending:
                    log.warning("%s did not stop in %.0fs; cancelling it", task.get_name(), SHUTDOWN_SECONDS)
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        running.engine, running.keeper, running.aggregator = None, None, None
        await engine.dispose()
        log.info("aggregator stopped")

    async def database() -> None:
        if running.engine is None:
            raise RuntimeError("not started")
        await ping(running.engine)

    async def hierarchy() -> None:
        if running.keeper is None or running.keeper.current is None:
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
