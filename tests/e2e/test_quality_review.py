"""End to end, a reviewer's day (DESIGN §8): figures that need a second look are flagged as they arrive,
shown on the values and in the province's quality listing with both sides, acknowledged with a comment,
and resolved by a correction — the three services as processes, real PostgreSQL and broker.

Commune Thị trấn Bến Lức (27991) reports more level-2 accounts than chip ID cards in January 2024 and a
month of dossiers ten times its steady year; its neighbour (27994) reports clean figures. Every expected
flag is worked out here from the figures sent.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.periods import shift
from tests.fixtures.infra import ROOT, Stack
from tests.fixtures.processes import ServiceProcesses, start_services
from tests.fixtures.waiting import until

pytestmark = pytest.mark.e2e

TOWN, NEIGHBOUR, DISTRICT, PROVINCE = "27991", "27994", "803", "80"  # Bến Lức, Long An
JAN = "2024-01"
STEADY = [100, 102, 98, 101, 99, 100, 103, 97, 100, 101, 99, 100]  # 2023's dossiers, month by month
ACCOUNTS, CARDS = 6_000, 5_000


@pytest.fixture
def services(stack: Stack) -> Iterator[ServiceProcesses]:
    with start_services(stack) as procs:
        yield procs


def _events() -> list[dict[str, Any]]:
    year = [{"unit": TOWN, "indicator": "dossiers_received", "period": shift(JAN, k - 12), "value": v}
            for k, v in enumerate(STEADY)]
    january = [
        {"unit": TOWN, "indicator": "dossiers_received", "period": JAN, "value": 1_000},
        {"unit": TOWN, "indicator": "cccd_issued", "period": JAN, "value": CARDS},
        {"unit": TOWN, "indicator": "vneid_l2_activated", "period": JAN, "value": ACCOUNTS},
        {"unit": NEIGHBOUR, "indicator": "cccd_issued", "period": JAN, "value": 3_000},
        {"unit": NEIGHBOUR, "indicator": "vneid_l2_activated", "period": JAN, "value": 1_000},
    ]
    return [{**e, "event_id": f"q-{i}"} for i, e in enumerate([*year, *january])]


def _applied(ingest: httpx.Client, event_ids: list[str]) -> None:
    def done() -> bool:
        return all(ingest.get(f"/v1/events/{i}").json().get("status") == "applied" for i in event_ids)

    until(done, what=f"events {event_ids} applied", within=90)


def _value(query: httpx.Client, unit: str, indicator: str) -> dict[str, Any]:
    response = query.get(f"/v1/units/{unit}/values", params={"period": JAN, "indicator": indicator,
                                                              "edition": "legacy"})
    assert response.status_code == 200, response.text
    (value,) = response.json()["values"]
    return dict(value)


def _listing(query: httpx.Client, unit: str = PROVINCE, **params: str) -> list[dict[str, Any]]:
    response = query.get(f"/v1/units/{unit}/quality", params={"edition": "legacy", **params})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_a_reviewer_sees_acknowledges_and_watches_flags_resolve(stack: Stack, services: ServiceProcesses) -> None:
    admin = {"Authorization": f"Bearer {services.key}"}
    reviewer = asyncio.run(stack.create_key(scope=PROVINCE, edition="legacy", roles=("read", "review"),
                                            name="reviewer-80"))
    elsewhere = asyncio.run(stack.create_key(scope="79", edition="legacy", roles=("read", "review"),
                                             name="reviewer-79"))
    ingest = httpx.Client(base_url=services.ingest, headers=admin, timeout=30)
    query = httpx.Client(base_url=services.query, headers={"Authorization": f"Bearer {reviewer}"}, timeout=30)
    events = _events()
    assert ingest.post("/v1/events", json={"events": events}).status_code == 202
    _applied(ingest, [e["event_id"] for e in events])

    # On the values: the commune's accounts carry the rule with both sides, its dossiers the outlier; the
    # neighbour's figures are clean.
    median, mad = Decimal(100), Decimal(1)  # the year's deviations from 100: their median is 1
    score = float((Decimal("0.6745") * (1_000 - median) / mad).quantize(Decimal("0.0001")))
    rule = {"kind": "rule", "code": "vneid_l2_activated_within_cccd", "importance": "high",
            "left": ACCOUNTS, "right": CARDS, "acknowledged": False}
    assert _value(query, TOWN, "vneid_l2_activated")["flags"] == [rule]
    assert _value(query, TOWN, "cccd_issued")["flags"] == [rule]
    assert _value(query, TOWN, "dossiers_received")["flags"] == [
        {"kind": "outlier", "code": "dossiers_received", "importance": "medium", "score": score,
         "constant_history": False, "acknowledged": False}]
    assert _value(query, NEIGHBOUR, "vneid_l2_activated")["flags"] == []
    # Their district and province add up 7,000 accounts against 8,000 cards: nothing to flag above them.
    assert _value(query, DISTRICT, "vneid_l2_activated")["flags"] == []

    # The province's listing: the high rule first, then the outlier, each with its unit and both sides.
    listed = _listing(query)
    assert [(f["unit"]["code"], f["code"], f["importance"]) for f in listed] == [
        (TOWN, "vneid_l2_activated_within_cccd", "high"), (TOWN, "dossiers_received", "medium")]
    assert (listed[0]["left"], listed[0]["right"], listed[0]["status"]) == (ACCOUNTS, CARDS, "open")
    assert (listed[1]["left"], listed[1]["right"], listed[1]["score"]) == (1_000, 100, score)

    # A reviewer of another province can neither read nor acknowledge them.
    other = httpx.Client(base_url=services.query, headers={"Authorization": f"Bearer {elsewhere}"}, timeout=30)
    assert other.get(f"/v1/units/{PROVINCE}/quality", params={"edition": "legacy"}).status_code == 404
    flag_id = listed[1]["id"]
    refused = httpx.post(f"{services.ingest}/v1/quality/{flag_id}/acknowledge",
                         headers={"Authorization": f"Bearer {elsewhere}"}, json={"comment": "looks fine"})
    assert refused.status_code == 403, refused.text

    # Long An's reviewer checks the dossiers: a campaign month, the figure is right.
    comment = "tháng cao điểm cấp CCCD, số liệu đúng"
    done = httpx.post(f"{services.ingest}/v1/quality/{flag_id}/acknowledge",
                      headers={"Authorization": f"Bearer {reviewer}"}, json={"comment": comment})
    assert done.status_code == 200, done.text
    assert [f["code"] for f in _listing(query)] == ["vneid_l2_activated_within_cccd"]
    (checked,) = _listing(query, status="acknowledged")
    assert (checked["id"], checked["acknowledged"]["comment"]) == (flag_id, comment)
    assert _value(query, TOWN, "dossiers_received")["flags"][0]["acknowledged"] is True

    # The commune corrects its accounts: the violation resolves, kept with its values in the listing.
    fix = {"event_id": "q-fix", "unit": TOWN, "indicator": "vneid_l2_activated", "period": JAN, "value": 4_000}
    assert ingest.post("/v1/events", json={"events": [fix]}).status_code == 202
    _applied(ingest, ["q-fix"])
    assert _value(query, TOWN, "vneid_l2_activated")["flags"] == []
    assert _listing(query) == []
    (resolved,) = _listing(query, status="resolved")
    assert (resolved["code"], resolved["left"], resolved["right"]) == ("vneid_l2_activated_within_cccd",
                                                                       ACCOUNTS, CARDS)

    # Recomputed from the facts, independently: the stored flags are exactly right.
    verify = subprocess.run([sys.executable, "-m", "shared.cli", "quality", "verify"], env=stack.env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=180, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
