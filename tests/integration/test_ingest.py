"""The ingest API on the real PostgreSQL (and broker, for readiness): storage, atomicity, idempotency, auth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

from services.ingest.app import create_app
from shared.settings import IngestSettings
from tests.fixtures.apps import auth, no_relay, running
from tests.fixtures.events import coverage, stock
from tests.fixtures.infra import Stack
from tests.fixtures.waiting import eventually


async def test_a_batch_is_stored_in_the_outbox_before_the_answer(stack: Stack) -> None:
    key = await stack.create_key()
    async with running(create_app(no_relay(stack))) as client:
        batch = [stock(event_id="a-1", comment="tháng 7"), coverage(event_id="a-2"),
                 stock(unit="00004", period="2025-07", value=12.5)]
        response = await client.post("/v1/events", json={"events": batch}, headers=auth(key))
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["accepted"] == 3 and body["rejected"] == []
        seqs = [e["seq"] for e in body["events"]]
        assert [e["event_id"] for e in body["events"]][:2] == ["a-1", "a-2"]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3

    rows = await stack.fetch("SELECT * FROM outbox ORDER BY seq")
    assert [r["seq"] for r in rows] == seqs
    first, second, third = rows
    assert (first["edition"], first["unit"], first["province"], first["num"], first["den"]) == (
        "legacy", "803", "80", Decimal(87700), None)
    assert first["comment"] == "tháng 7"
    assert (second["num"], second["den"]) == (Decimal(87700), Decimal(90412))
    assert (third["edition"], third["province"], third["num"]) == ("2025", "01", Decimal("12.5"))
    assert len(third["event_id"]) == 36  # a generated UUID
    assert first["key_id"] == key.split("_")[1] and first["client_addr"] == "10.1.2.3"



async def test_text_is_stored_exactly_as_sent(stack: Stack) -> None:
    """The outbox document is unpacked by PostgreSQL: quotes, backslashes and any script come back intact."""
    key = await stack.create_key()
    comment = 'số liệu "tạm tính" \\ ước 🎯 Ω'
    async with running(create_app(no_relay(stack))) as client:
        response = await client.post("/v1/events", json={"events": [stock(event_id="t.1:a_b-c", comment=comment)]},
                                     headers=auth(key))
        assert response.status_code == 202, response.text
    rows = await stack.fetch("SELECT event_id, comment FROM outbox")
    assert [(r["event_id"], r["comment"]) for r in rows] == [("t.1:a_b-c", comment)]

async def test_numbers_are_stored_exactly_as_sent(stack: Stack) -> None:
    key = await stack.create_key()
    body = b'{"events": [{"unit": "803", "indicator": "cccd_issued", "period": "2024-07", ' \
           b'"value": 999999999999999.999999}]}'
    async with running(create_app(no_relay(stack))) as client:
        response = await client.post("/v1/events", content=body, headers=auth(key))
        assert response.status_code == 202, response.text
    rows = await stack.fetch("SELECT num::text AS num FROM outbox")
    assert rows[0]["num"] == "999999999999999.999999"


async def test_atomic_batches_store_all_or_nothing(stack: Stack) -> None:
    key = await stack.create_key()
    batch = [stock(), stock(period="2024-H1"), coverage(numerator=None)]
    async with running(create_app(no_relay(stack))) as client:
        refused = await client.post("/v1/events", json={"events": batch}, headers=auth(key))
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"].endswith("/validation-error")
        assert {e["loc"] for e in problem["errors"]} == {"events[1].period", "events[2].numerator"}
        assert await stack.fetch("SELECT 1 FROM outbox") == []

        partial = await client.post("/v1/events?atomic=false", json={"events": batch}, headers=auth(key))
        assert partial.status_code == 202
        body = partial.json()
        assert body["accepted"] == 1 and len(body["events"]) == 1
        assert [(r["index"], r["status"]) for r in body["rejected"]] == [(1, 422), (2, 422)]
        assert body["rejected"][0]["type"].endswith("/validation-error")
        assert body["rejected"][0]["errors"] == [{
            "loc": "events[1].period",
            "message": "cccd_issued is reported monthly (2024-07); 2024-H1 is a half-year"}]
        assert len(await stack.fetch("SELECT 1 FROM outbox")) == 1


async def test_a_resend_is_answered_like_the_first_time_and_a_change_is_a_conflict(stack: Stack) -> None:
    key = await stack.create_key()
    batch = [stock(event_id="r-1"), coverage(event_id="r-2")]
    async with running(create_app(no_relay(stack))) as client:
        first = await client.post("/v1/events", json={"events": batch}, headers=auth(key))
        again = await client.post("/v1/events", json={"events": batch}, headers=auth(key))
        assert first.status_code == again.status_code == 202
        assert again.json() == first.json()
        # the same figure written differently is the same content
        same = await client.post("/v1/events", json={"events": [stock(event_id="r-1", value=87700.0)]},
                                 headers=auth(key))
        assert same.json()["events"] == first.json()["events"][:1]

        changed = await client.post("/v1/events", json={"events": [stock(event_id="new"),
                                                                    stock(event_id="r-1", value=1)]},
                                    headers=auth(key))
        assert changed.status_code == 409
        assert changed.json()["type"].endswith("/conflict")
        assert changed.json()["errors"][0]["loc"] == "events[1].event_id"
        assert len(await stack.fetch("SELECT 1 FROM outbox")) == 2  # "new" was not stored either

        mixed = await client.post("/v1/events?atomic=false", json={"events": [stock(event_id="new"),
                                                                                stock(event_id="r-1", value=1)]},
                                  headers=auth(key))
        assert mixed.status_code == 202
        assert [e["event_id"] for e in mixed.json()["events"]] == ["new"]
        assert [(r["index"], r["status"], r["event_id"]) for r in mixed.json()["rejected"]] == [(1, 409, "r-1")]


async def test_the_same_event_id_twice_in_one_batch(stack: Stack) -> None:
    key = await stack.create_key()
    async with running(create_app(no_relay(stack))) as client:
        twice = await client.post("/v1/events", json={"events": [stock(event_id="d"), stock(event_id="d")]},
                                  headers=auth(key))
        assert twice.status_code == 202
        assert twice.json()["accepted"] == 2
        assert len({e["seq"] for e in twice.json()["events"]}) == 1
        assert len(await stack.fetch("SELECT 1 FROM outbox")) == 1

        differ = [stock(event_id="e"), stock(event_id="e", value=5)]
        assert (await client.post("/v1/events", json={"events": differ}, headers=auth(key))).status_code == 409
        partial = await client.post("/v1/events?atomic=false", json={"events": differ}, headers=auth(key))
        assert [r["index"] for r in partial.json()["rejected"]] == [1]
        assert len(await stack.fetch("SELECT 1 FROM outbox")) == 2


async def test_keys_roles_and_scope(stack: Stack) -> None:
    long_an = await stack.create_key(scope="80", edition="legacy", roles=("submit",))
    reader = await stack.create_key(roles=("read",))
    async with running(create_app(no_relay(stack))) as client:
        missing = await client.post("/v1/events", json={"events": [stock()]})
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["type"].endswith("/unauthorized")
        forged = await client.post("/v1/events", json={"events": [stock()]},
                                   headers=auth(long_an[:-3] + "xyz"))
        assert forged.status_code == 401
        assert (await client.post("/v1/events", json={"events": [stock()]},
                                  headers=auth(reader))).status_code == 403

        inside = await client.post("/v1/events", json={"events": [stock(unit="803")]}, headers=auth(long_an))
        assert inside.status_code == 202
        outside = await client.post("/v1/events", json={"events": [stock(unit="803"), stock(unit="936")]},
                                    headers=auth(long_an))
        assert outside.status_code == 403
        assert outside.json()["detail"].startswith(
            "events[1]: unit 936 (legacy) is outside the key's scope 80 (legacy)")
        partial = await client.post("/v1/events?atomic=false",
                                    json={"events": [stock(unit="803", value=1), stock(unit="936")]},
                                    headers=auth(long_an))
        assert partial.status_code == 202
        assert [(r["index"], r["status"]) for r in partial.json()["rejected"]] == [(1, 403)]
        assert partial.json()["rejected"][0]["type"].endswith("/forbidden")
    units = [r["unit"] for r in await stack.fetch("SELECT unit FROM outbox")]
    assert units == ["803", "803"]


async def test_bodies_too_large_or_not_json(stack: Stack) -> None:
    key = await stack.create_key()
    async with running(create_app(no_relay(stack, max_body_bytes=2000))) as client:
        big = {"events": [stock(comment="x" * 900), stock(comment="y" * 900), stock(comment="z" * 900)]}
        declared = await client.post("/v1/events", json=big, headers=auth(key))
        assert declared.status_code == 413 and declared.json()["type"].endswith("/payload-too-large")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the streamed size counts
            for _ in range(10):
                yield b" " * 500

        streamed = await client.post("/v1/events", content=chunks(), headers=auth(key))
        assert streamed.status_code == 413

        malformed = await client.post("/v1/events", content=b'{"events": [', headers=auth(key))
        assert malformed.status_code == 400 and malformed.json()["type"].endswith("/malformed-json")
        empty = await client.post("/v1/events", json={"events": []}, headers=auth(key))
        assert empty.status_code == 422 and empty.json()["errors"][0]["loc"] == "events"
    assert await stack.fetch("SELECT 1 FROM outbox") == []


async def test_event_status_scope_and_submitter(stack: Stack) -> None:
    sender = await stack.create_key(scope="80", edition="legacy", roles=("submit", "read"))
    colleague = await stack.create_key(scope="80", edition="legacy", roles=("read",))
    elsewhere = await stack.create_key(scope="93", edition="legacy", roles=("read", "admin"))
    admin = await stack.create_key()
    async with running(create_app(no_relay(stack))) as client:
        posted = await client.post("/v1/events", json={"events": [coverage(event_id="s-1")]}, headers=auth(sender))
        seq = posted.json()["events"][0]["seq"]

        mine = (await client.get("/v1/events/s-1", headers=auth(sender))).json()
        assert mine["status"] == "accepted" and mine["seq"] == seq
        assert (mine["unit"], mine["numerator"], mine["denominator"]) == ("803", 87700, 90412)
        assert mine["submitted_by"] == {"key_id": sender.split("_")[1], "client_addr": "10.1.2.3"}
        assert "submitted_by" not in (await client.get("/v1/events/s-1", headers=auth(colleague))).json()
        assert "submitted_by" in (await client.get("/v1/events/s-1", headers=auth(admin))).json()
        hidden = await client.get("/v1/events/s-1", headers=auth(elsewhere))
        assert hidden.status_code == 404
        assert (await client.get("/v1/events/nope", headers=auth(admin))).status_code == 404
        assert (await client.get("/v1/events/s-1")).status_code == 401

        await stack.fetch("INSERT INTO relay_watermarks (topic, up_to) VALUES ($1, $2 - 1)", stack.events_topic, seq)
        assert (await client.get("/v1/events/s-1", headers=auth(sender))).json()["status"] == "accepted"
        await stack.execute("UPDATE relay_watermarks SET up_to = up_to + 1")  # the watermark reaches it
        assert (await client.get("/v1/events/s-1", headers=auth(sender))).json()["status"] == "published"
        await stack.fetch("""INSERT INTO rollups (edition, unit, indicator, period, rep_num, rep_den, rep_seq)
                                 VALUES ('legacy', '803', 'cccd_coverage', '2024-07', 87700, 90412, $1)""", seq)
        assert (await client.get("/v1/events/s-1", headers=auth(sender))).json()["status"] == "applied"
        await stack.execute("INSERT INTO dead_letters (seq, event_id, reason, payload) "
                              "VALUES ($1, 's-1', 'unit unknown to the aggregator', '{}')", seq)
        rejected = (await client.get("/v1/events/s-1", headers=auth(sender))).json()
        assert (rejected["status"], rejected["reason"]) == ("rejected", "unit unknown to the aggregator")


async def test_readiness_and_metrics(stack: Stack) -> None:
    key = await stack.create_key()
    async with running(create_app(stack.settings(IngestSettings))) as client:
        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, what="/readyz")
        await client.post("/v1/events", json={"events": [stock(event_id="m-1")]}, headers=auth(key))
        await client.post("/v1/events", json={"events": [stock(event_id="m-1")]}, headers=auth(key))
        await client.post("/v1/events?atomic=false", json={"events": [stock(period="2024")]}, headers=auth(key))
        text = (await client.get("/metrics")).text
        assert 'd06_ingest_events_accepted_total{group="digital_citizen"} 1.0' in text
        assert 'd06_ingest_events_duplicate_total{group="digital_citizen"} 1.0' in text
        assert 'd06_ingest_events_rejected_total{group="digital_citizen",reason="validation"} 1.0' in text
        assert "d06_ingest_batch_size_events_count 3.0" in text
        assert "d06_ingest_outbox_backlog_events" in text
        schema = (await client.get("/openapi.json")).json()
        post = schema["paths"]["/v1/events"]["post"]
        assert {"202", "400", "401", "403", "409", "413", "422", "503"} <= set(post["responses"])
        assert len(post["requestBody"]["content"]["application/json"]["example"]["events"]) == 2
        assert "ProblemDetails" in schema["components"]["schemas"]


async def test_submissions_wait_for_the_hierarchy(stack: Stack) -> None:
    key = await stack.create_key()
    await stack.execute("ALTER TABLE units RENAME TO units_hidden")  # as if not migrated yet
    app = create_app(no_relay(stack))
    async with running(app, ready=False) as client:
        refused = await client.post("/v1/events", json={"events": [stock()]}, headers=auth(key))
        assert refused.status_code == 503 and refused.json()["type"].endswith("/unavailable")
        not_ready = await client.get("/readyz")  # problem+json; the cause is logged, never shown
        assert not_ready.headers["content-type"] == "application/problem+json"
        assert not_ready.json()["failing"] == {"hierarchy": "not ready"}
        await stack.execute("ALTER TABLE units_hidden RENAME TO units")

        async def loaded() -> bool:
            return app.state.ingest.hierarchy is not None

        await eventually(loaded, what="the hierarchy to load after the table appears")
        accepted = await client.post("/v1/events", json={"events": [stock()]}, headers=auth(key))
        assert accepted.status_code == 202
