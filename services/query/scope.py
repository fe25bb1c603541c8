"""What a key may read across the two editions (DESIGN §7 "Scope"), and the crosswalk pairs that decide it.

A key of one edition reads that edition's subtree of its scope, as `Principal.can_see` says. A key scoped to
a 2025 unit also reads, read-only, the legacy units whose territory lies wholly or partly inside it: for a
2025 province its legacy provinces with their districts and communes, for a 2025 commune the legacy
communes (or island district) mapping into it, for the 2025 nation the whole legacy edition. A key scoped to
a legacy unit reads nothing of the 2025 edition. Submitting stays within the key's own edition (ingest).

The pairs (not the weights, which the statements read live) are held in memory: about 10,500 of them, read
when the service starts following changes and again whenever `d06_crosswalk_changed` is announced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from services.query.crosswalk_sql import fetch_pairs
from shared.auth import Principal
from shared.errors import ServiceUnavailable
from shared.hierarchy import NATION, Edition, Unit
from shared.retry import describe

log = logging.getLogger("d06.query")

LEGACY, E2025 = Edition.LEGACY.value, Edition.E2025.value


@dataclass(frozen=True, slots=True)
class CrosswalkIndex:
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # 2025 code -> legacy codes
    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # legacy code -> 2025 codes
    province_2025: dict[str, str] = field(default_factory=dict)  # legacy province -> its 2025 province

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str, str]]) -> CrosswalkIndex:
        sources: dict[str, list[str]] = defaultdict(list)
        targets: dict[str, list[str]] = defaultdict(list)
        provinces: dict[str, str] = {}
        for legacy_code, code_2025, level in pairs:
            sources[code_2025].append(legacy_code)
            targets[legacy_code].append(code_2025)
            if level == "province":
                provinces[legacy_code] = code_2025
        return cls({k: tuple(sorted(v)) for k, v in sources.items()},
                   {k: tuple(sorted(v)) for k, v in targets.items()}, provinces)

    def n_sources(self, unit: Unit) -> int:
        """How many legacy units a 2025 unit is re-expressed from (the nation: the nation)."""
        return 1 if unit.code == NATION else len(self.sources.get(unit.code, ()))

    def widen(self, province_keys: Iterable[str]) -> list[str]:
        """The announced `edition/province` keys, with the 2025 province of every legacy one: its answers read
        the legacy province's rollups too."""
        out = []
        for key in province_keys:
            out.append(key)
            edition, _, province = key.partition("/")
            if edition == LEGACY and province in self.province_2025:
                out.append(f"{E2025}/{self.province_2025[province]}")
        return out


@dataclass(frozen=True, slots=True)
class Sight:
    """A key's view of both editions."""

    principal: Principal
    index: CrosswalkIndex

    def roots(self, edition: str) -> tuple[str, ...] | None:
        """The subtrees of `edition` the key reads; None: all of it."""
        scope_edition, code = self.principal.scope_edition, self.principal.scope_code
        if scope_edition in (None, edition):
            return None if code == NATION else (code,)
        if scope_edition == E2025 and edition == LEGACY:
            return None if code == NATION else self.index.sources.get(code, ())
        return ()

    def sees(self, unit: Unit) -> bool:
        roots = self.roots(unit.edition)
        return roots is None or unit.code in roots or any(root in unit.ancestors for root in roots)


REFRESH_SECONDS = 60.0  # while not listening, how long the pairs are trusted


class CrosswalkHolder:
    """The pairs in memory: read on first use, again after `forget` (a change announced) or, while no one
    listens for announcements, after REFRESH_SECONDS."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._lock = asyncio.Lock()
        self._loaded_at = float("-inf")
        self.current: CrosswalkIndex | None = None
        self.stale = True
        self.listening = False

    def forget(self) -> None:
        self.stale = True

    def _fresh(self) -> bool:
        if self.current is None or self.stale:
            return False
        return self.listening or time.monotonic() - self._loaded_at < REFRESH_SECONDS

    async def get(self) -> CrosswalkIndex:
        if self._fresh():
            assert self.current is not None
            return self.current
        async with self._lock:
            if not self._fresh():
                try:
                    await self.load()
                except Exception as exc:  # serve the pairs held, if any
                    if self.current is None:
                        raise ServiceUnavailable("the crosswalk cannot be read yet; retry in a few seconds") from exc
                    log.warning("crosswalk refresh failed, keeping the pairs held: %s", describe(exc))
            assert self.current is not None
            return self.current

    async def load(self) -> CrosswalkIndex:
        self.stale = False  # a change announced while reading marks it stale again
        try:
            async with self._engine.connect() as conn:
                index = CrosswalkIndex.of(await fetch_pairs(conn))
        except BaseException:
            self.stale = True
            raise
        self.current, self._loaded_at = index, time.monotonic()
        return index
