"""A reviewer acknowledges a quality flag through ingest, end to end: events posted to ingest, relayed through the
broker, applied by the aggregator with rules on, the flag acknowledged, refused for every reason a reviewer can
meet, re-opened by a changed figure, and counted by the gauge.

Figures (legacy Long An 80, Bến Lức district 803, its commune 27991): the commune reports 5,000 level-2
accounts activated against 1,000 chip ID cards issued in July 2024 and 3,000 against 100 in June, so the rule
`vneid_l2_activated_within_cccd` (high) breaks at the commune and at the district and province whose sums carry
it: six flags.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.ingest.app import create_app
from shared.auth import key_id_of
from shared.kafka import ensure_topics
from shared.settings import IngestSettings
from tests.fixtures.aggregator import aggregating
from tests.fixtures.apps import auth, no_relay, running
from tests.fixtures.infra import Stack
from tests.fixtures.waiting import eventually

RULE = "vneid_l2_activated_within_cccd"
COMMENT = "the district re-counted; the figure is right"


def figure(indicator: str, period: str, value: int | None, event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "unit": "27991", "indicator": indicator, "period": period, "value": value}


@dataclass
class Pipeline:
    stack: Stack
    ingest: httpx.AsyncClient
    aggregate: httpx.AsyncClient
    submitter: str  # VN, submit and read: no `review`

    async def post(self, *events: dict[str, Any]) -> None:
        """Posted to ingest, and waited for until the aggregator applied every one."""
        answer = await self.ingest.post("/v1/events", json={"events": list(events)}, headers=auth(self.submitter))
        assert answer.status_code == 202, answer.text

        async def applied() -> bool:
            for e in events:
                status = await self.ingest.get(f"/v1/events/{e['event_id']}", headers=auth(self.submitter))
                if status.json()["status"] != "applied":
                    return False
            return True

        await eventually(applied, what=f"events {[e['event_id'] for e in events]} to be applied")

    async def flag(self, unit: str, period: str) -> dict[str, Any]:
        rows = await self.stack.fetch("SELECT * FROM quality_flags WHERE unit = $1 AND code = $2 AND period = $3",
                                      unit, RULE, period)
        assert len(rows) == 1, (unit, period, rows)
        return dict(rows[0])

    async def open_gauge(self, acknowledged: str) -> float:
        text = (await self.aggregate.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "d06_quality_flags_open" and sample.labels == {
                        "kind": "rule", "importance": "high", "acknowledged": acknowledged}:
                    return float(sample.value)
        raise AssertionError("d06_quality_flags_open{kind=rule,importance=high} is not in /metrics")

    async def gauge_reads(self, acknowledged: str, expected: float) -> None:
        async def reads() -> bool:
            return await self.open_gauge(acknowledged) == expected

        await eventually(reads, what=f"the gauge to count {expected} open flag(s), acknowledged={acknowledged}")


@pytest.fixture
async def pipeline(stack: Stack) -> AsyncIterator[Pipeline]:
    await ensure_topics(stack.kafka_bootstrap, [stack.events_topic, stack.dead_letter_topic], stack.partitions)
    submitter = await stack.create_key(roles=("submit", "read"))
    group = f"g-{uuid.uuid4().hex[:8]}"
    async with aggregating(stack, group, quality=True, quality_gauge_seconds=0.2) as aggregate, \
            running(create_app(stack.settings(IngestSettings))) as ingest:
        yield Pipeline(stack, ingest, aggregate, submitter)


async def test_a_reviewer_acknowledges_a_flag_and_a_changed_figure_reopens_it(pipeline: Pipeline) -> None:
    reviewer = await pipeline.stack.create_key(scope="803", edition="legacy", roles=("review",))
    await pipeline.post(figure("cccd_issued", "2024-07", 1000, "jul-cards"),
                        figure("vneid_l2_activated", "2024-07", 5000, "jul-accounts"),
                        figure("cccd_issued", "2024-06", 100, "jun-cards"),
                        figure("vneid_l2_activated", "2024-06", 3000, "jun-accounts"))
    flag = await pipeline.flag("27991", "2024-07")
    assert (flag["status"], flag["left_value"], flag["right_value"]) == ("open", 5000, 1000)
    await pipeline.gauge_reads("false", 6)  # the rule at commune, district and province, for two months

    answer = await pipeline.ingest.post(f"/v1/quality/{flag['id']}/acknowledge", json={"comment": f"  {COMMENT} "},
                                        headers=auth(reviewer))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    stored = await pipeline.flag("27991", "2024-07")
    assert stored["acknowledged_by"] == key_id_of(reviewer)
    assert stored["acknowledged_comment"] == COMMENT  # trimmed
    assert stored["acknowledged_at"] is not None
    assert body == {
        "id": flag["id"], "status": "acknowledged",
        "acknowledged": {"by": key_id_of(reviewer), "at": stored["acknowledged_at"].isoformat(), "comment": COMMENT},
        "edition": "legacy", "unit": "27991", "period": "2024-07", "kind": "rule", "code": RULE,
        "importance": "high", "left": 5000, "right": 1000, "score": None,
    }
    await pipeline.gauge_reads("true", 1)
    await pipeline.gauge_reads("false", 5)

    # Acknowledging again replaces who, when and the comment.
    again = await pipeline.ingest.post(f"/v1/quality/{flag['id']}/acknowledge",
                                       json={"comment": "checked with the commune's register"}, headers=auth(reviewer))
    assert again.status_code == 200, again.text
    replaced = await pipeline.flag("27991", "2024-07")
    assert replaced["acknowledged_comment"] == "checked with the commune's register"
    assert replaced["acknowledged_at"] >= stored["acknowledged_at"]

    # The June accounts retracted: nothing left to compare, the June flags resolve.
    await pipeline.post(figure("vneid_l2_activated", "2024-06", None, "jun-accounts-retracted"))
    june = await pipeline.flag("27991", "2024-06")
    assert june["status"] == "resolved"
    resolved = await pipeline.ingest.post(f"/v1/quality/{june['id']}/acknowledge", json={"comment": COMMENT},
                                          headers=auth(reviewer))
    assert resolved.status_code == 409, resolved.text
    assert "resolved flags need no acknowledgement" in resolved.json()["detail"]
    assert (await pipeline.flag("27991", "2024-06"))["acknowledged_at"] is None

    # July's accounts corrected upwards: the rule still breaks, with other figures than the reviewer checked.
    await pipeline.post(figure("vneid_l2_activated", "2024-07", 6000, "jul-accounts-corrected"))
    reopened = await pipeline.flag("27991", "2024-07")
    assert (reopened["status"], reopened["left_value"], reopened["right_value"]) == ("open", 6000, 1000)
    assert (reopened["acknowledged_by"], reopened["acknowledged_at"], reopened["acknowledged_comment"]) == (
        None, None, None)
    await pipeline.gauge_reads("true", 0)
    await pipeline.gauge_reads("false", 3)


async def test_an_acknowledgement_is_refused_without_the_role_outside_the_scope_and_for_bad_input(
    pipeline: Pipeline,
) -> None:
    reviewer = await pipeline.stack.create_key(scope="803", edition="legacy", roles=("review",))
    await pipeline.post(figure("cccd_issued", "2024-07", 1000, "jul-cards"),
                        figure("vneid_l2_activated", "2024-07", 5000, "jul-accounts"))
    commune, province = await pipeline.flag("27991", "2024-07"), await pipeline.flag("80", "2024-07")
    before = await pipeline.stack.fetch("SELECT * FROM quality_flags ORDER BY id")

    async def acknowledge(flag_id: object, body: object, key: str = reviewer) -> httpx.Response:
        return await pipeline.ingest.post(f"/v1/quality/{flag_id}/acknowledge", json=body, headers=auth(key))

    lacking = await acknowledge(commune["id"], {"comment": COMMENT}, key=pipeline.submitter)
    assert lacking.status_code == 403
    assert lacking.json()["detail"] == "this API key lacks the `review` role"

    # Bến Lức's reviewer cannot acknowledge Long An's flag: refused like an event for a unit outside the scope.
    outside = await acknowledge(province["id"], {"comment": COMMENT})
    assert outside.status_code == 403
    problem = outside.json()
    assert problem["type"] == "https://d06.gov.vn/problems/forbidden"
    message = "unit 80 (legacy) is outside the key's scope 803 (legacy)"
    assert problem["detail"] == f"flag {province['id']}: {message}; nothing was changed"
    assert problem["errors"] == [{"loc": "flag_id", "message": message}]
    district_submitter = await pipeline.stack.create_key(scope="803", edition="legacy", roles=("submit",))
    province_event = {**figure("cccd_issued", "2024-07", 1, "x"), "unit": "80"}
    submitted = await pipeline.ingest.post("/v1/events", json={"events": [province_event]},
                                           headers=auth(district_submitter))
    assert (submitted.status_code, submitted.json()["type"], submitted.json()["errors"][0]["message"]) == (
        403, problem["type"], message)

    unknown = max(r["id"] for r in before) + 1000
    for flag_id in (unknown, "abc", "0", "99999999999999999999"):
        missing = await acknowledge(flag_id, {"comment": COMMENT})
        assert missing.status_code == 404, (flag_id, missing.text)
    assert (await acknowledge(unknown, {"comment": COMMENT})).json()["detail"] == f"no quality flag {unknown}"

    for body, message in [
        ({"comment": "   "}, "a comment is required"),
        ({}, "Field required"),
        ({"comment": "x" * 1001}, "at most 1,000 characters"),
        ({"comment": 42}, "valid string"),
        ({"comment": "ok\u202eevil"}, "control or invisible characters"),
        ({"comment": COMMENT, "status": "resolved"}, "Extra inputs are not permitted"),
    ]:
        invalid = await acknowledge(commune["id"], body)
        assert invalid.status_code == 422, (body, invalid.text)
        errors = invalid.json()["errors"]
        assert len(errors) == 1 and message in errors[0]["message"], (body, errors)
        assert errors[0]["loc"] == ("status" if "status" in body else "comment")

    assert await pipeline.stack.fetch("SELECT * FROM quality_flags ORDER BY id") == before  # nothing changed
    assert (await acknowledge(commune["id"], {"comment": "x" * 1000})).status_code == 200


async def test_the_route_is_documented_with_its_errors_and_examples(stack: Stack) -> None:
    async with running(create_app(no_relay(stack))) as ingest:
        doc = (await ingest.get("/openapi.json")).json()
    operation = doc["paths"]["/v1/quality/{flag_id}/acknowledge"]["post"]
    assert operation["summary"] and "`review` role" in operation["description"]
    assert operation["requestBody"]["content"]["application/json"]["examples"]["recounted"]["value"] == {
        "comment": COMMENT}
    assert {"200", "401", "403", "404", "409", "422"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"]["application/json"]["example"]["status"] == "acknowledged"
