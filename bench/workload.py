"""The events the benchmark sends: the legacy hierarchy's communes, the eight required indicators.

Figures are derived from a counter, not drawn at random, so two runs send the same data; each event
carries its own `event_id`, as a careful integration does, so a batch is never a resend.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shared.catalog import Catalog, Measure, load_catalog
from shared.hierarchy import Unit, read_dataset
from shared.periods import ordinal

# DESIGN §2: the codes every deployment has (all monthly).
REQUIRED = (
    "cccd_issued", "cccd_coverage", "vneid_l2_activated", "dossiers_received",
    "online_dossier_rate", "essential_services_online", "working_group_formed", "directives_issued",
)
MONTH = "2024-06"  # the month of the aggregate, query and side-by-side scenarios
LOAD_MONTHS = tuple(f"2024-{m:02d}" for m in range(1, 7))  # the freshness scenario's background traffic
INGEST_MONTHS = tuple(f"2023-{m:02d}" for m in range(1, 13))  # the ingest scenario's (never consumed)
PROBE_INDICATOR = "dossiers_received"


@dataclass(frozen=True)
class Legacy:
    """The legacy edition as the benchmark uses it."""

    communes: list[Unit]
    provinces: list[Unit]
    districts_of: dict[str, list[Unit]]

    @classmethod
    def load(cls) -> Legacy:
        units = [u for u in read_dataset() if u.edition == "legacy"]
        districts_of: dict[str, list[Unit]] = {}
        for u in units:
            if u.level == "district" and u.parent_code is not None:
                districts_of.setdefault(u.parent_code, []).append(u)
        return cls(
            communes=[u for u in units if u.level == "commune"],
            provinces=[u for u in units if u.level == "province"],
            districts_of=districts_of,
        )


def figures(indicator: str, measure: Measure, n: int, period: str) -> dict[str, Any]:
    """Plausible figures for one event; `n` varies them by unit, `period` moves them along the months.

    They keep the catalogue's rules as real reports mostly do (accounts within cards, stocks that grow a
    little every month, at most 25 essential services), so that evaluating rules and outliers is measured
    on the checks a month of clean reports costs, not on writing a flag for every other commune.
    """
    size = 1_000 + (n * 7_919) % 50_000
    month = ordinal(period) if len(period) == 7 else 0
    dossiers = size // 10 + month % 3
    match indicator:
        case "essential_services_online":
            return {"numerator": 10 + n % 16, "denominator": 25}
        case "online_dossier_rate":  # of the dossiers received
            return {"numerator": dossiers - n % 97, "denominator": dossiers}
        case "cccd_coverage":  # holders among residents: fewer holders than cards issued
            return {"numerator": size * 9, "denominator": size * 12}
        case "dossiers_received":
            return {"value": dossiers}
    if measure is Measure.RATIO:
        return {"numerator": size - n % 97, "denominator": size}
    if measure is Measure.BOOLEAN:
        return {"value": n % 5 != 0}
    if measure is Measure.STOCK:
        level = size * 10 + month * (size // 10)  # cards (and accounts, 6 in 10) climb each month
        return {"value": level * 6 // 10 if indicator == "vneid_l2_activated" else level}
    return {"value": 1 + (n + month) % 5}


class EventFactory:
    """Events with unique ids (`<prefix><counter>`) over the given units, indicators and months."""

    def __init__(self, prefix: str, catalog: Catalog | None = None) -> None:
        self.prefix = prefix
        self.catalog = catalog or load_catalog()
        self._ids = itertools.count()

    def event(self, unit: str, indicator: str, period: str, n: int) -> dict[str, Any]:
        found = self.catalog.get(indicator)
        assert found is not None, indicator
        return {"event_id": f"{self.prefix}{next(self._ids)}", "unit": unit, "edition": "legacy",
                "indicator": indicator, "period": period, **figures(indicator, found.measure, n, period)}

    def month_of_everything(self, communes: Sequence[Unit], period: str = MONTH) -> list[dict[str, Any]]:
        """One month of every required indicator for every commune (80,280 events for the full edition)."""
        return [self.event(c.code, ind, period, i) for i, c in enumerate(communes) for ind in REQUIRED]

    def stream(self, communes: Sequence[Unit], months: Sequence[str], start: int = 0) -> Iterator[dict[str, Any]]:
        """An endless stream spread over communes, indicators and months, like many integrations at once."""
        for n in itertools.count(start):
            commune = communes[(n * 7_919) % len(communes)]  # a prime stride: every commune, no clustering
            yield self.event(commune.code, REQUIRED[n % len(REQUIRED)], months[(n // 8) % len(months)], n)


def body(events: Sequence[dict[str, Any]]) -> bytes:
    return orjson.dumps({"events": list(events)})


def batches(events: Sequence[dict[str, Any]], size: int) -> list[bytes]:
    return [body(events[i : i + size]) for i in range(0, len(events), size)]
