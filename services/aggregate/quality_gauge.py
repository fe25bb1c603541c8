"""The gauge of open quality flags, counted from the table at a steady pace.

The aggregator writes the flags, but a reviewer's acknowledgement is written by ingest, and any replica's
batches move them: only the table knows the whole count. So every replica counts it, every
`AGGREGATE_QUALITY_GAUGE_SECONDS`, through the partial index of open flags (the rows that stay resolved are
never read), and reports the same figure: alerts take max() over the replicas, as for the dead letters.
The count runs whether or not this replica evaluates rules: flags opened before they were turned off are
still open, and still shown to readers.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from services.aggregate.metrics import FLAG_SERIES, AggregateMetrics
from services.aggregate.quality_repository import count_open
from shared.retry import describe, sleep_or_stop

log = logging.getLogger("d06.aggregate.quality")


class OpenFlagsGauge:
    def __init__(self, engine: AsyncEngine, metrics: AggregateMetrics, seconds: float) -> None:
        self._engine = engine
        self._metrics = metrics
        self._seconds = seconds

    async def count(self) -> None:
        async with self._engine.connect() as conn:
            counts = await count_open(conn)
        for kind, importance, acknowledged in FLAG_SERIES:
            n = counts.get((kind, importance, acknowledged == "true"), 0)
            self._metrics.quality_flags_open.labels(kind, importance, acknowledged).set(n)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.count()
            except Exception as exc:  # noqa: BLE001 - Postgres away: the gauge keeps its last count, retry
                log.warning("could not count the open quality flags (%s); retrying", describe(exc))
            if await sleep_or_stop(stop, self._seconds):
                return
