"""The hierarchy as the aggregator holds it: loaded from `units` when Postgres is up, refreshed while it runs.

Ingest validates events against the hierarchy it holds; when an operator loads a newer one, events for
units this process has never seen may arrive before the next periodic refresh. Such events trigger an
early refresh (rate-limited) before anyone calls them poison.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from services.aggregate.service import Tree
from shared.catalog import Catalog
from shared.hierarchy import Hierarchy, fetch_hierarchy
from shared.retry import Backoff, describe, sleep_or_stop

log = logging.getLogger("d06.aggregate.units")

REFRESH_SECONDS = 300.0
MIN_REFRESH_INTERVAL = 5.0


class HierarchyCache:
    def __init__(self, engine: AsyncEngine, catalog: Catalog) -> None:
        self._engine = engine
        self._catalog = catalog
        self._tree: Tree | None = None
        self._loaded_at = 0.0
        self._loaded = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def tree(self) -> Tree | None:
        return self._tree

    async def load(self) -> Tree:
        """Read the units now; raises when Postgres fails or the table is still empty."""
        async with self._lock:
            async with self._engine.connect() as conn:
                hierarchy: Hierarchy = await fetch_hierarchy(conn)
            if len(hierarchy) == 0:
                # Consuming now would dead-letter every event as "unknown unit".
                raise LookupError("the units table is empty: run `d06 hierarchy load`")
            self._tree = Tree.of(hierarchy, self._catalog)
            self._loaded_at = time.monotonic()
            self._loaded.set()
            return self._tree

    async def refresh_soon(self) -> Tree | None:
        """Reload unless the hierarchy was read in the last few seconds; the new tree, or None."""
        if time.monotonic() - self._loaded_at < MIN_REFRESH_INTERVAL:
            return None
        try:
            return await self.load()
        except Exception as exc:  # noqa: BLE001 - keep the hierarchy we have; the caller decides
            log.warning("hierarchy refresh failed: %s", describe(exc))
            return None

    async def wait_loaded(self, stop: asyncio.Event) -> Tree | None:
        """The tree once the first load succeeded; None if `stop` came first."""
        waiter = asyncio.ensure_future(self._loaded.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stopper.cancel()
        return self._tree

    async def keep_fresh(self, stop: asyncio.Event) -> None:
        """The lifespan's task: load with back-off until it works, then reload periodically."""
        backoff = Backoff(first=0.5, cap=10.0)
        while not stop.is_set():
            try:
                tree = await self.load()
            except Exception as exc:  # noqa: BLE001 - Postgres not up yet, or no units: try again
                log.warning("cannot load the hierarchy yet: %s", describe(exc))
                delay = backoff.next() if self._tree is None else REFRESH_SECONDS
            else:
                backoff.reset()
                log.info("hierarchy loaded: %d units", len(tree.hierarchy))
                delay = REFRESH_SECONDS
            if await sleep_or_stop(stop, delay):
                return
