"""End to end: the three services as processes, real PostgreSQL and broker, a user's view of the numbers.

A few hundred events over two districts of Long An (legacy edition), three months and every measure —
with corrections, a retraction, a district's own figure beside its communes' and a duplicate — then
every rollup the API serves is checked against values this test computes itself.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.hierarchy import read_dataset
from tests.fixtures.infra import Stack
from tests.fixtures.processes import ServiceProcesses, start_services

pytestmark = pytest.mark.e2e

DISTRICTS = ["803", "807"]  # Bến Lức, Cần Giuộc
PROVINCE = "80"  # Long An
MONTHS = ["2024-01", "2024-02", "2024-03"]
Key = tuple[str, str, str]  # unit, indicator, period


@pytest.fixture
def services(stack: Stack) -> Iterator[ServiceProcesses]:
    with start_services(stack) as procs:
        yield procs


def _communes() -> dict[str, list[str]]:
    units = read_dataset()
    return {
        d: sorted(u.code for u in units if u.edition == "legacy" and u.parent_code == d) for d in DISTRICTS
    }


def _events(rng: random.Random, communes: dict[str, list[str]]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for district, codes in communes.items():
        for month in MONTHS:
            for code in codes:
                base = {"unit": code, "period": month}
                events.append({**base, "indicator": "cccd_issued", "value": rng.randint(1_000, 9_000)})
                events.append({**base, "indicator": "dossiers_received", "value": rng.randint(0, 500)})
                total = rng.randint(1, 400)
                events.append({**base, "indicator": "online_dossier_rate",
                               "numerator": rng.randint(0, total), "denominator": total})
                events.append({**base, "indicator": "working_group_formed", "value": rng.random() < 0.7})
            events.append({"unit": district, "period": month, "indicator": "directives_issued",
                           "value": rng.randint(0, 9)})
    for i, event in enumerate(events):
        event["event_id"] = f"e2e-{i}"
    return events


def _pair(event: dict[str, Any]) -> tuple[Decimal, Decimal | None] | None:
    if "numerator" in event:
        return Decimal(event["numerator"]), Decimal(event["denominator"])
    value = event.get("value")
    if value is None:
        return None
    if isinstance(value, bool):
        return Decimal(int(value)), Decimal(1)
    return Decimal(value), None


def _add(a: tuple[Decimal, Decimal | None] | None, b: tuple[Decimal, Decimal | None]) -> tuple[Decimal, Decimal | None]:
    if a is None:
        return b
    return a[0] + b[0], None if a[1] is None else a[1] + (b[1] or 0)


def _display(pair: tuple[Decimal, Decimal | None] | None) -> float | None:
    if pair is None:
        return None
    num, den = pair
    return float(num) if den is None else round(float(100 * num / den), 4)


def _post(client: httpx.Client, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def test_rollups_served_equal_the_truth(stack: Stack, services: ServiceProcesses) -> None:
    rng = random.Random(6)
    communes = _communes()
    key = services.key
    headers = {"Authorization": f"Bearer {key}"}
    ingest = httpx.Client(base_url=services.ingest, headers=headers, timeout=30)
    query = httpx.Client(base_url=services.query, headers=headers, timeout=30)

    events = _events(rng, communes)
    seqs: dict[str, int] = {}
    for start in range(0, len(events), 100):
        for ack in _post(ingest, events[start : start + 100])["events"]:
            seqs[ack["event_id"]] = ack["seq"]

    # Corrections (a later event for the same key wins), a retraction, a district's own figure.
    corrections = [
        {**e, "event_id": f"fix-{i}", "value": e["value"] + 7}
        for i, e in enumerate(rng.sample([e for e in events if e["indicator"] == "cccd_issued"], 12))
    ]
    retraction = {"event_id": "retract-1", "unit": communes["807"][0], "indicator": "dossiers_received",
                  "period": "2024-02", "value": None}
    override = {"event_id": "district-own", "unit": "803", "indicator": "dossiers_received",
                "period": "2024-03", "value": 4242}
    _post(ingest, [*corrections, retraction, override])
    # A duplicate: the same event_id and content again is answered like the first time.
    again = _post(ingest, [events[0]])
    assert again["events"] == [{"event_id": "e2e-0", "seq": seqs["e2e-0"]}]
    all_events = [*events, *corrections, retraction, override]
    assert len(all_events) > 300

    # The truth, computed here: the latest event per key, then sums up the tree.
    latest: dict[Key, tuple[Decimal, Decimal | None] | None] = {}
    for e in all_events:
        latest[(e["unit"], e["indicator"], e["period"])] = _pair(e)
    truth: dict[Key, dict[str, Any]] = {}
    for indicator in ("cccd_issued", "dossiers_received", "online_dossier_rate", "working_group_formed"):
        for month in MONTHS:
            province_sum, province_reporting = None, 0
            for district, codes in communes.items():
                computed, reporting = None, 0
                for code in codes:
                    v = latest.get((code, indicator, month))
                    if v is not None:
                        computed, reporting = _add(computed, v), reporting + 1
                    truth[(code, indicator, month)] = {"value": _display(v)}
                reported = latest.get((district, indicator, month))
                effective = reported if reported is not None else computed
                truth[(district, indicator, month)] = {
                    "value": _display(effective), "reporting": reporting, "expected": len(codes),
                    "source": "reported" if reported is not None else "computed",
                    "computed": _display(computed),
                }
                if effective is not None:
                    province_sum, province_reporting = _add(province_sum, effective), province_reporting + 1
            truth[(PROVINCE, indicator, month)] = {"value": _display(province_sum), "reporting": province_reporting}
            truth[("VN", indicator, month)] = {"value": _display(province_sum), "reporting": 1, "expected": 63}

    _wait_until_applied(ingest, [e["event_id"] for e in all_events[-20:]])

    for (unit, indicator, period), want in truth.items():
        got = _value(query, unit, indicator, period)
        for field, expected in want.items():
            if field == "computed":
                assert (got["computed"] or {}).get("value") == expected, (unit, indicator, period, got)
            else:
                assert got[field] == expected, (unit, indicator, period, field, got)

    # The district's own figure beside the sum of its communes.
    own = _value(query, "803", "dossiers_received", "2024-03")
    assert own["source"] == "reported" and own["reported"]["value"] == 4242
    assert own["computed"]["value"] == truth[("803", "dossiers_received", "2024-03")]["computed"]
    # The retraction leaves no value, and the parent no longer counts that commune.
    assert _value(query, communes["807"][0], "dossiers_received", "2024-02")["value"] is None

    # Coarser periods: Q1 of a flow sums the months, of a stock takes March, of a ratio re-divides.
    q1_flow = sum(truth[(PROVINCE, "dossiers_received", m)]["value"] for m in MONTHS)
    assert _value(query, PROVINCE, "dossiers_received", "2024-Q1")["value"] == q1_flow
    march_stock = truth[(PROVINCE, "cccd_issued", "2024-03")]["value"]
    assert _value(query, PROVINCE, "cccd_issued", "2024-Q1")["value"] == march_stock
    own_level = _value(query, "803", "directives_issued", "2024-01")
    assert own_level["value"] == float(latest[("803", "directives_issued", "2024-01")][0])  # type: ignore[index]
    assert _value(query, PROVINCE, "directives_issued", "2024-01")["value"] is None  # never summed

    status = ingest.get(f"/v1/events/{all_events[-1]['event_id']}").json()
    assert status["status"] == "applied"

    verify = subprocess.run(
        [sys.executable, "-m", "shared.cli", "rollups", "verify"], env=stack.env(),
        capture_output=True, text=True, timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # Graceful shutdown: SIGTERM finishes what is in hand and every service reports success.
    for name in ("ingest", "query", "aggregate"):
        assert services.stop(name) == 0, services.tail(name)


def _value(client: httpx.Client, unit: str, indicator: str, period: str) -> dict[str, Any]:
    response = client.get(f"/v1/units/{unit}/values",
                          params={"period": period, "indicator": indicator, "edition": "legacy"})
    assert response.status_code == 200, response.text
    values = response.json()["values"]
    assert len(values) == 1, values
    value: dict[str, Any] = values[0]
    return value


def _wait_until_applied(client: httpx.Client, event_ids: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    pending = list(event_ids)
    while pending and time.monotonic() < deadline:
        pending = [e for e in pending if client.get(f"/v1/events/{e}").json().get("status") != "applied"]
        if pending:
            time.sleep(0.3)
    assert not pending, f"not applied within {timeout}s: {pending[:5]}"
