"""What the ingest app holds while it runs, and the background task that keeps the hierarchy fresh."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.metrics import IngestMetrics
from services.ingest.relay import Relay
from shared.catalog import Catalog
from shared.hierarchy import Hierarchy, fetch_hierarchy
from shared.limits import RateLimiter
from shared.settings import IngestSettings

log = logging.getLogger("d06.ingest")

# A unit removed from (or added to) the hierarchy is noticed within this long on every replica.
HIERARCHY_REFRESH_SECONDS = 60.0
RETRY_FIRST, RETRY_CAP = 0.5, 10.0
GC_YOUNG = 50_000  # allocations between young collections (Python's default: 700)


@dataclass
class Runtime:
    settings: IngestSettings
    engine: AsyncEngine
    catalog: Catalog
    metrics: IngestMetrics
    limiter: RateLimiter
    relay: Relay | None = None
    hierarchy: Hierarchy | None = None  # None until first loaded: submissions answer 503 meanwhile

    def wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.wake.set()


async def keep_hierarchy(runtime: Runtime, refresh_seconds: float = HIERARCHY_REFRESH_SECONDS) -> None:
    """Load the hierarchy as soon as the database answers, then reload it periodically."""
    delay = RETRY_FIRST
    while True:
        try:
            async with runtime.engine.connect() as conn:
                hierarchy = await fetch_hierarchy(conn)
        except (OSError, TimeoutError, SQLAlchemyError) as exc:
            log.warning("hierarchy: database not reachable yet (%s); retrying in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP)
            continue
        except Exception:  # a dead loader would leave this replica on a stale tree for good
            log.exception("hierarchy: unexpected error while loading; retrying in %.1fs", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP)
            continue
        if len(hierarchy) == 0:
            # Migrated but not loaded yet (`d06 hierarchy load`): an empty tree would refuse every unit.
            log.warning("hierarchy: the units table is empty; retrying in %.1fs", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP)
            continue
        if runtime.hierarchy is None:
            log.info("hierarchy: %d units loaded", len(hierarchy))
            gc.freeze()  # the tree and the libraries live as long as the process: out of every collection
        runtime.hierarchy = hierarchy
        delay = RETRY_FIRST
        await asyncio.sleep(refresh_seconds)


@contextlib.contextmanager
def rare_collections() -> Iterator[None]:
    """Run the cyclic garbage collector rarely while the service runs.

    A batch of 1,000 events allocates some 100,000 short-lived objects (parsed JSON, figures, rows), which
    reference counting frees; with Python's default thresholds the collector runs a hundred times per batch
    and rescans the long-lived heap each time: a fifth of the process's CPU on the request-path harness.
    """
    before = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
