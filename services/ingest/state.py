"""What the ingest app holds while it runs: everything its lifespan acquired, for the routes and checks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.metrics import IngestMetrics
from services.ingest.relay import Relay
from shared.catalog import Catalog
from shared.hierarchy import Hierarchy
from shared.hierarchy_keeper import HierarchyKeeper
from shared.limits import RateLimiter
from shared.settings import IngestSettings


@dataclass
class IngestState:
    settings: IngestSettings
    engine: AsyncEngine
    catalog: Catalog
    metrics: IngestMetrics
    limiter: RateLimiter
    keeper: HierarchyKeeper
    relay: Relay | None = None
    imports: set[asyncio.Task[None]] = field(default_factory=set)  # large files importing in the background

    @property
    def hierarchy(self) -> Hierarchy | None:
        """None until first loaded: submissions answer 503 meanwhile."""
        return self.keeper.current

    def wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.wake.set()
