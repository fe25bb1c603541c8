"""The relay against a real broker: publication, Kafka down, and the broker losing its log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from services.ingest.app import create_app
from services.ingest.outbox import unpublished
from services.ingest.relay import Relay
from shared.devstack import LocalBroker, free_port
from shared.events import AcceptedEvent
from shared.kafka import ensure_topics
from shared.settings import IngestSettings
from tests.fixtures.apps import auth, running
from tests.fixtures.events import coverage, stock
from tests.fixtures.infra import RUN_DIR, Stack
from tests.fixtures.topics import partitions_of, read_topic
from tests.fixtures.waiting import eventually

PROVINCE_UNITS = ["803", "936", "00004", "001", "80", "93"]  # legacy: Long An, Hậu Giang, Hà Nội


def batch(prefix: str, n: int, units: list[str] = PROVINCE_UNITS) -> list[dict[str, Any]]:
    return [stock(unit=units[i % len(units)], value=1000 + i, event_id=f"{prefix}-{i}",
                  period=f"2024-{i // len(units) + 1:02d}") for i in range(n)]


async def all_published(stack: Stack, topic: str | None = None) -> bool:
    rows = await stack.fetch(f"SELECT count(*) AS waiting FROM outbox WHERE {unpublished('$1')}",
                             topic or stack.events_topic)
    return bool(rows[0]["waiting"] == 0)


async def published_seqs(stack: Stack) -> set[int]:
    rows = await stack.fetch(f"SELECT seq FROM outbox WHERE NOT ({unpublished('$1')})", stack.events_topic)
    return {r["seq"] for r in rows}


@pytest.fixture
def own_broker() -> Iterator[LocalBroker]:
    """A broker this test may restart (memory storage: a restart loses every topic and record)."""
    broker = LocalBroker(free_port(), log_path=RUN_DIR / "tansu-ingest-loss.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def relay_of(app: Any) -> Relay:
    relay = app.state.ingest.relay
    assert isinstance(relay, Relay)
    return relay


async def test_the_relay_publishes_every_accepted_event(stack: Stack) -> None:
    key = await stack.create_key()
    app = create_app(stack.settings(IngestSettings))
    async with running(app) as client:
        posted = await client.post("/v1/events", json={"events": batch("p", 30)}, headers=auth(key))
        assert posted.status_code == 202
        await eventually(lambda: all_published(stack), what="the relay to publish the batch")
        status = (await client.get("/v1/events/p-0", headers=auth(key))).json()
        assert status["status"] == "published"
        assert "d06_ingest_relay_published_events_total 30.0" in (await client.get("/metrics")).text

    records = await read_topic(stack.kafka_bootstrap, stack.events_topic, expect=30)
    events = [(p, r.key, AcceptedEvent.from_bytes(r.value)) for p, r in records]
    assert sorted(e.event_id for _, _, e in events) == sorted(f"p-{i}" for i in range(30))
    stored = {r["seq"]: r for r in await stack.fetch("SELECT * FROM outbox")}
    per_key: dict[bytes, set[int]] = {}
    for partition, record_key, event in events:
        row = stored[event.seq]
        assert record_key == event.partition_key == f"legacy/{row['province']}".encode()
        assert (event.unit, event.num, event.den, event.accepted_at) == (
            row["unit"], row["num"], None, row["accepted_at"])
        per_key.setdefault(record_key, set()).add(partition)
    assert all(len(partitions) == 1 for partitions in per_key.values())  # one province, one partition
    # seq order within each partition
    for partition in {p for p, _, _ in events}:
        seqs = [e.seq for p, _, e in events if p == partition]
        assert seqs == sorted(seqs)
    offsets = {r["partition"]: r["next_offset"] for r in await stack.fetch("SELECT * FROM relay_offsets")}
    assert sum(offsets.values()) == 30
    assert await partitions_of(stack.kafka_bootstrap, stack.events_topic) == stack.partitions
    assert await partitions_of(stack.kafka_bootstrap, stack.dead_letter_topic) == stack.partitions



async def test_the_relay_sends_the_bytes_of_the_wire_schema(stack: Stack) -> None:
    """The relay encodes claimed rows itself (no AcceptedEvent per row): the fields of AcceptedEvent.to_bytes
    in its order, equal to the stored row, figures in plain notation (asyncpg's Decimal of 10^15 would
    print as 1.000E+15)."""
    key = await stack.create_key()
    events = [stock(event_id="w-1", value=Decimal("12.5")), stock(event_id="w-2", value=None, unit="936"),
              coverage(event_id="w-3", numerator=Decimal("0.000001"), denominator=10**15),
              stock(event_id="w-4", value=0, unit="00004"), coverage(event_id="w-5", numerator=None, denominator=None)]
    async with running(create_app(stack.settings(IngestSettings))) as client:
        posted = await client.post("/v1/events", content=orjson.dumps({"events": events}, default=str).replace(
            b'"12.5"', b"12.5").replace(b'"0.000001"', b"0.000001"), headers=auth(key))
        assert posted.status_code == 202, posted.text
        await eventually(lambda: all_published(stack), what="the relay to publish the batch")
    records = await read_topic(stack.kafka_bootstrap, stack.events_topic, expect=len(events))
    columns = ", ".join(f.name for f in fields(AcceptedEvent))
    stored = {r["seq"]: AcceptedEvent(*r) for r in await stack.fetch(f"SELECT {columns} FROM outbox")}
    assert len(records) == len(events)
    sent = {orjson.loads(record.value)["event_id"]: record for _, record in records}
    for record in sent.values():
        expected = stored[orjson.loads(record.value)["seq"]]
        assert (record.key, AcceptedEvent.from_bytes(record.value)) == (expected.partition_key, expected)
        assert list(orjson.loads(record.value)) == list(orjson.loads(expected.to_bytes()))
    assert orjson.loads(sent["w-3"].value)["den"] == "1000000000000000"
    assert orjson.loads(sent["w-1"].value)["num"] == "12.5"

async def test_kafka_down_events_wait_in_the_outbox_then_go(stack: Stack) -> None:
    key = await stack.create_key()
    port = free_port()
    app = create_app(stack.settings(IngestSettings, kafka_bootstrap=f"127.0.0.1:{port}"))
    async with running(app) as client:
        posted = await client.post("/v1/events", json={"events": batch("k", 5)}, headers=auth(key))
        assert posted.status_code == 202 and posted.json()["accepted"] == 5

        async def backlog_shown() -> bool:  # the relay counts the backlog on its own pass, not per request
            return "d06_ingest_outbox_backlog_events 5.0" in (await client.get("/metrics")).text

        await eventually(backlog_shown, what="the five waiting events in d06_ingest_outbox_backlog_events")
        assert not await all_published(stack)
        assert (await client.get("/v1/events/k-0", headers=auth(key))).json()["status"] == "accepted"
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "broker" in ready.json()["failing"]
        assert 'd06_ingest_relay_errors_total{stage="topics"} 0.0' not in (await client.get("/metrics")).text

        broker = LocalBroker(port, log_path=RUN_DIR / "tansu-ingest-late.log")
        broker.start()  # Kafka comes back: the waiting events go out without any client resending
        try:
            await eventually(lambda: all_published(stack), what="publication once Kafka is back", within=40)
            assert len(await read_topic(broker.bootstrap, stack.events_topic, expect=5)) == 5
            assert (await client.get("/readyz")).status_code == 200
        finally:
            broker.stop()


async def test_a_lost_topic_is_recreated_and_unapplied_events_republished(
    stack: Stack, own_broker: LocalBroker
) -> None:
    key = await stack.create_key()
    settings = stack.settings(IngestSettings, kafka_bootstrap=own_broker.bootstrap, topic_partitions=2)
    app = create_app(settings)
    async with running(app) as client:
        relay_of(app).topic_check_seconds = 0.5
        await client.post("/v1/events", json={"events": batch("g", 12)}, headers=auth(key))
        await eventually(lambda: all_published(stack), what="the first publication")
        applied, dead = (await stack.fetch("SELECT seq FROM outbox WHERE event_id IN ('g-0', 'g-1') "
                                               "ORDER BY event_id"))
        await stack.fetch("""INSERT INTO rollups (edition, unit, indicator, period, rep_num, rep_seq)
                                 SELECT edition, unit, indicator, period, num, seq FROM outbox WHERE seq = $1""",
                       applied["seq"])
        await stack.execute("INSERT INTO dead_letters (seq, event_id, reason, payload) VALUES ($1, 'g-1', 'x', '{}')",
                       dead["seq"])

        own_broker.restart()
        # A client's metadata request re-creates the topic with the broker's default partition count.
        admin = AIOKafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
        await admin.start()
        await admin.describe_topics([settings.events_topic])
        await admin.close()

        async def epoch_bumped() -> bool:
            rows = await stack.fetch("SELECT epoch FROM topic_epochs WHERE topic = $1", settings.events_topic)
            return bool(rows) and rows[0]["epoch"] == 1

        await eventually(epoch_bumped, what="the relay to notice the loss")
        await eventually(lambda: all_published(stack), what="the republication")
        assert 'd06_ingest_relay_log_losses_total 1.0' in (await client.get("/metrics")).text

    records = await read_topic(own_broker.bootstrap, settings.events_topic, expect=10)
    republished = sorted(AcceptedEvent.from_bytes(r.value).event_id for _, r in records)
    assert republished == sorted(f"g-{i}" for i in range(2, 12))  # not the applied one, not the dead letter
    assert await partitions_of(own_broker.bootstrap, settings.events_topic) == 2


async def test_an_offset_going_back_reveals_a_lost_log(stack: Stack, own_broker: LocalBroker) -> None:
    key = await stack.create_key()
    settings = stack.settings(IngestSettings, kafka_bootstrap=own_broker.bootstrap)
    app = create_app(settings)
    async with running(app) as client:
        await client.post("/v1/events", json={"events": batch("o", 8, ["803"])}, headers=auth(key))
        await eventually(lambda: all_published(stack), what="the first publication")
        relay_of(app).topic_check_seconds = 3600  # only a produced offset can reveal the loss now

        own_broker.restart()
        # Someone (an aggregator starting) re-creates the topics, and the new log is not empty.
        await ensure_topics(own_broker.bootstrap, [settings.events_topic], settings.topic_partitions)
        producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap, enable_idempotence=False)
        await producer.start()
        for partition in range(settings.topic_partitions):
            await producer.send_and_wait(settings.events_topic, b"noise", partition=partition)
        await producer.stop()

        await client.post("/v1/events", json={"events": [stock(unit="803", event_id="o-new", value=5)]},
                          headers=auth(key))

        async def recovered() -> bool:
            rows = await stack.fetch("SELECT epoch FROM topic_epochs")
            return bool(rows) and rows[0]["epoch"] == 1 and await all_published(stack)

        await eventually(recovered, what="the relay to notice the loss")

    records = await read_topic(own_broker.bootstrap, settings.events_topic, expect=4 + 9 + 1)
    ids = [AcceptedEvent.from_bytes(r.value).event_id for _, r in records if r.value != b"noise"]
    assert set(ids) == {f"o-{i}" for i in range(8)} | {"o-new"}


async def test_shutdown_finishes_the_batch_in_hand_and_loses_nothing(stack: Stack) -> None:
    key = await stack.create_key()
    settings = stack.settings(IngestSettings, relay_batch=200)
    events = [stock(unit=PROVINCE_UNITS[i % 6], event_id=f"s-{i}", value=i) for i in range(2000)]
    app = create_app(settings)
    async with running(app) as client:
        await eventually(lambda: _reached(app), what="the relay to reach the broker")
        posted = await client.post("/v1/events", json={"events": events}, headers=auth(key))
        assert posted.status_code == 202

        async def publishing() -> bool:
            return bool(await published_seqs(stack))

        await eventually(publishing, what="the first batch")
        # leave now, with the relay in the middle of the next batches

    marked = await published_seqs(stack)
    on_topic = await read_topic(stack.kafka_bootstrap, stack.events_topic, expect=len(marked), within=5)
    assert marked <= {AcceptedEvent.from_bytes(r.value).seq for _, r in on_topic}

    async with running(create_app(settings)):  # the next life publishes the rest
        await eventually(lambda: all_published(stack), what="the rest to be published")
    on_topic = await read_topic(stack.kafka_bootstrap, stack.events_topic, expect=2000)
    assert {AcceptedEvent.from_bytes(r.value).event_id for _, r in on_topic} == {e["event_id"] for e in events}


async def _reached(app: Any) -> bool:
    return relay_of(app).reached_broker
