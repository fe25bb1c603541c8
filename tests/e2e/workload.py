"""A stream of events like integrations send, with the truth kept on the side to check the rollups against.

The client behaves as a careful integration does: it retries a batch whose answer it did not get (503,
a refused connection, a timeout) with the same event ids, so a retry is idempotent; the truth counts an
event only once it was answered `202` with its sequence number.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from shared.hierarchy import Unit

Key = tuple[str, str, str]  # unit, indicator, period
INDICATORS = ("dossiers_received", "cccd_issued")  # a flow and a stock: both sum up the tree
MONTHS = ("2024-01", "2024-02", "2024-03")


@dataclass
class Truth:
    """The winning (highest seq) value of every key, as acknowledged by ingest."""

    units: dict[str, Unit]
    winners: dict[Key, tuple[int, Decimal | None]] = field(default_factory=dict)
    accepted: int = 0

    def record(self, event: dict[str, Any], seq: int) -> None:
        key = (event["unit"], event["indicator"], event["period"])
        held = self.winners.get(key)
        if held is None or seq > held[0]:
            value = event.get("value")
            self.winners[key] = (seq, None if value is None else Decimal(value))

    def province_totals(self) -> dict[tuple[str, str, str], Decimal]:
        """Commune-only workloads: a province's value is the sum of its communes' values."""
        totals: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
        for (code, indicator, period), (_, value) in self.winners.items():
            if value is not None:
                province = self.units[code].province_code
                assert province is not None
                totals[(province, indicator, period)] += value
        return dict(totals)


class Workload:
    def __init__(self, ingest_url: str, key: str, communes: list[Unit], seed: int) -> None:
        self.client = httpx.Client(base_url=ingest_url, headers={"Authorization": f"Bearer {key}"}, timeout=15)
        self.rng = random.Random(seed)
        self.communes = communes
        self.truth = Truth({u.code: u for u in communes})
        self.counter = 0
        self.retries = 0

    def batch(self, size: int) -> list[dict[str, Any]]:
        events = []
        for _ in range(size):
            unit = self.rng.choice(self.communes)
            self.counter += 1
            roll = self.rng.random()
            value: int | None = None if roll < 0.03 else self.rng.randint(0, 10_000)  # some retractions
            events.append({
                "event_id": f"w{self.counter}",
                "unit": unit.code,
                "edition": "legacy",
                "indicator": self.rng.choice(INDICATORS),
                "period": self.rng.choice(MONTHS),
                "value": value,
            })
        return events

    def post(self, events: list[dict[str, Any]], deadline_s: float = 120) -> None:
        """Post until answered 202: the same ids on every retry, so a retry can never count twice."""
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                response = self.client.post("/v1/events", json={"events": events})
                if response.status_code == 202:
                    for event, ack in zip(events, response.json()["events"], strict=True):
                        assert ack["event_id"] == event["event_id"]
                        self.truth.record(event, ack["seq"])
                    self.truth.accepted += len(events)
                    return
                assert response.status_code in (502, 503), response.text
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("ingest did not accept a batch within the deadline")
            self.retries += 1
            time.sleep(0.2)

    def close(self) -> None:
        self.client.close()


def wait_until_rollups_match(
    query_url: str, key: str, truth: Truth, timeout: float = 120
) -> dict[tuple[str, str, str], Any]:
    """Poll the query API until every province value equals the truth; return the mismatches left."""
    client = httpx.Client(base_url=query_url, headers={"Authorization": f"Bearer {key}"}, timeout=15)
    expected = truth.province_totals()
    provinces = {p for p, _, _ in expected} | {u.province_code for u in truth.units.values()}
    deadline = time.monotonic() + timeout
    mismatches: dict[tuple[str, str, str], Any] = {}
    try:
        while True:
            mismatches = {}
            for province in sorted(p for p in provinces if p):
                for period in MONTHS:
                    response = client.get(f"/v1/units/{province}/values",
                                          params={"period": period, "edition": "legacy"})
                    if response.status_code != 200:
                        mismatches[(province, "*", period)] = response.status_code
                        continue
                    got = {v["indicator"]: v["value"] for v in response.json()["values"]}
                    for indicator in INDICATORS:
                        want = expected.get((province, indicator, period))
                        have = got.get(indicator)
                        if (None if want is None else float(want)) != have:
                            mismatches[(province, indicator, period)] = (have, want)
            if not mismatches or time.monotonic() > deadline:
                return mismatches
            time.sleep(0.5)
    finally:
        client.close()
