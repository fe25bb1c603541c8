"""The hierarchy as a service holds it: loaded when Postgres answers, kept fresh while the service runs.

Every service validates or answers against the units in memory. Start-up must not wait for Postgres
(DESIGN §5), an operator's `d06 hierarchy load` must reach every replica without a restart, and a
units table that is migrated but still empty must not be mistaken for a hierarchy with no units (it
would refuse, or dead-letter, every event). A cheap fingerprint of the table means a refresh rebuilds
the units in Python only when something changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.hierarchy import Hierarchy, fetch_hierarchy
from shared.memory import freeze_long_lived
from shared.retry import Backoff, describe, sleep_or_stop

log = logging.getLogger("d06.hierarchy")

LOAD_TIMEOUT = 30.0

_FINGERPRINT = text("""
    SELECT count(*) AS n,
           coalesce(sum(hashtext(edition || '/' || code || '/' || coalesce(parent_code, '') || '/' || name
                                 || '/' || kind || '/' || level)), 0) AS h
    FROM units
""")


class EmptyUnits(LookupError):
    """The units table has no rows yet."""


class HierarchyKeeper:
    """`current` is None until the first load succeeds; `run` is the background task that keeps it.

    `on_load` is called with each newly loaded hierarchy (a service clears what it derived from the old
    one); `on_refresh` with `"loaded"`, `"unchanged"` or `"failed"` after every attempt (for a metric).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        refresh_seconds: float,
        min_interval: float = 5.0,
        on_load: Callable[[Hierarchy], None] | None = None,
        on_refresh: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = engine
        self._refresh_seconds = refresh_seconds
        self._min_interval = min_interval
        self._on_load = on_load
        self._on_refresh = on_refresh
        self._fingerprint: tuple[int, int] | None = None
        self._attempted_at = float("-inf")
        self._loaded = asyncio.Event()
        self._lock = asyncio.Lock()
        self.current: Hierarchy | None = None

    async def load(self) -> Hierarchy:
        """Read the units now unless they did not change; raises when Postgres fails or the table is empty."""
        async with self._lock:
            self._attempted_at = time.monotonic()
            try:
                async with asyncio.timeout(LOAD_TIMEOUT), self._engine.connect() as conn:
                    row = (await conn.execute(_FINGERPRINT)).one()
                    fingerprint = (int(row.n), int(row.h))
                    if fingerprint == self._fingerprint and self.current is not None:
                        self._count("unchanged")
                        return self.current
                    if fingerprint[0] == 0:
                        raise EmptyUnits("the units table is empty: run `d06 hierarchy load`")
                    hierarchy = await fetch_hierarchy(conn)
            except BaseException:
                self._count("failed")
                raise
            self._fingerprint, self.current = fingerprint, hierarchy
            if self._on_load is not None:
                self._on_load(hierarchy)
            freeze_long_lived()  # runs at start-up and when the units change, never per request
            self._loaded.set()
            self._count("loaded")
            log.info("hierarchy loaded: %d units", len(hierarchy))
            return hierarchy

    async def refresh_soon(self) -> Hierarchy | None:
        """Reload now, unless an attempt was made in the last `min_interval` seconds: the new hierarchy,
        or None (too soon, or the reload failed: the one held stays)."""
        if time.monotonic() - self._attempted_at < self._min_interval:
            return None
        try:
            return await self.load()
        except Exception as exc:  # noqa: BLE001 - keep the hierarchy we have; the caller decides
            log.warning("hierarchy refresh failed: %s", describe(exc))
            return None

    async def wait_loaded(self, stop: asyncio.Event) -> Hierarchy | None:
        """The hierarchy once the first load succeeded; None if `stop` came first."""
        waiter = asyncio.ensure_future(self._loaded.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stopper.cancel()
        return self.current

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Load with back-off until it works, then refresh every `refresh_seconds`, until `stop` (or
        cancellation). A failed refresh keeps serving the last good hierarchy."""
        stop = stop or asyncio.Event()
        backoff = Backoff(first=0.25, cap=10.0)
        while not stop.is_set():
            try:
                await self.load()
            except Exception as exc:  # noqa: BLE001 - Postgres not up yet, or no units: try again
                log.warning("cannot load the hierarchy yet: %s", describe(exc))
                delay = backoff.next() if self.current is None else self._refresh_seconds
            else:
                backoff.reset()
                delay = self._refresh_seconds
            if await sleep_or_stop(stop, delay):
                return

    def _count(self, outcome: str) -> None:
        if self._on_refresh is not None:
            self._on_refresh(outcome)
