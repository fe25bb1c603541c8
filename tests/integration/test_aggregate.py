"""The aggregator alone, on real PostgreSQL and a real broker: AcceptedEvent messages are produced straight
to the topic (as the relay would), the app runs in-process, and the rollups rows are read back with SQL.

Figures (legacy edition, Long An 80, district Bến Lức 803 and its communes; cccd_issued, 2024-07):
  27991 reports 1000, then 1200 (seq 20); an older seq 17 (999) arrives after it and is ignored.
  27994 reports 2000; 27997 reports 500 and retracts it (seq 21). 803 reports its own 4000.
  A commune of Thủ Thừa (804) reports 300, after four poison messages in the same partition.
  So 803 = reported 4000 beside computed 3200 (2 reporting), and 80 = computed 4000 + 300.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.aggregate.app import create_app
from shared.catalog import load_catalog
from shared.db import make_engine, plain_url
from shared.events import AcceptedEvent
from shared.hierarchy import Hierarchy
from shared.kafka import bounded, ensure_topics, make_producer
from shared.settings import AggregateSettings
from shared.verify import verify
from tests.conftest import Stack

ACCEPTED_AT = datetime(2024, 8, 1, 3, 0, tzinfo=UTC)


def event(
    seq: int, unit: str, num: int | None, den: int | None = None, *, indicator: str = "cccd_issued",
    period: str = "2024-07", edition: str = "legacy", province: str = "80",
) -> AcceptedEvent:
    return AcceptedEvent(
        seq=seq, event_id=f"ev-{seq}", edition=edition, unit=unit, province=province, indicator=indicator,
        period=period, num=None if num is None else Decimal(num), den=None if den is None else Decimal(den),
        accepted_at=ACCEPTED_AT,
    )


Outgoing = AcceptedEvent | tuple[bytes, bytes]  # an event, or (key, raw value) for poison


async def produce(stack: Stack, items: list[Outgoing]) -> dict[int, int]:
    """Send in order; returns partition -> next offset (what consumer_offsets must reach)."""
    await ensure_topics(stack.kafka_bootstrap, [stack.events_topic, stack.dead_letter_topic], stack.partitions)
    producer = make_producer(stack.kafka_bootstrap)
    await bounded(producer.start())
    ends: dict[int, int] = {}
    try:
        for item in items:
            key, value = (item.partition_key, item.to_bytes()) if isinstance(item, AcceptedEvent) else item
            meta = await bounded(producer.send_and_wait(stack.events_topic, value, key=key))
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        await bounded(producer.stop())
    return ends


async def record_in_outbox(stack: Stack, events: list[AcceptedEvent]) -> None:
    """What ingest would have written, so that verify() can check every reported value against it."""
    conn = await asyncpg.connect(plain_url(stack.database_url))
    try:
        await conn.executemany(
            """INSERT INTO outbox (seq, event_id, content_hash, edition, unit, province, indicator, period,
                                   num, den, accepted_at, published_at)
               OVERRIDING SYSTEM VALUE VALUES ($1, $2, 'h', $3, $4, $5, $6, $7, $8, $9, $10, $10)""",
            [(e.seq, e.event_id, e.edition, e.unit, e.province, e.indicator, e.period, e.num, e.den,
              e.accepted_at) for e in events],
        )
    finally:
        await conn.close()


async def query(stack: Stack, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(plain_url(stack.database_url))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def offsets(stack: Stack, group: str) -> dict[int, tuple[int, int]]:
    rows = await query(
        stack, "SELECT partition, next_offset, epoch FROM consumer_offsets WHERE consumer_group=$1 AND topic=$2",
        group, stack.events_topic,
    )
    return {r["partition"]: (r["next_offset"], r["epoch"]) for r in rows}


async def caught_up(stack: Stack, group: str, ends: dict[int, int]) -> None:
    async def check() -> bool:
        stored = await offsets(stack, group)
        return all(stored.get(p, (0, 0))[0] >= end for p, end in ends.items())

    await eventually(check)


async def row(stack: Stack, unit: str, indicator: str = "cccd_issued", period: str = "2024-07",
              edition: str = "legacy") -> asyncpg.Record | None:
    rows = await query(
        stack, "SELECT * FROM rollups WHERE edition=$1 AND unit=$2 AND indicator=$3 AND period=$4",
        edition, unit, indicator, period,
    )
    return rows[0] if rows else None


@asynccontextmanager
async def running(stack: Stack, group: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(stack.settings(AggregateSettings, consumer_group=group))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


async def all_copied(stack: Stack) -> bool:
    """Every dead letter in the table has been copied to the dead-letter topic."""
    return not await query(stack, "SELECT 1 FROM dead_letters WHERE published_at IS NULL")


async def dead_letter_records(stack: Stack) -> list[tuple[bytes | None, bytes]]:
    """Every record on the dead-letter topic, read up to its end offsets (no waiting for a count)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest")
    await bounded(consumer.start())
    try:
        partitions = [TopicPartition(stack.dead_letter_topic, p) for p in range(stack.partitions)]
        consumer.assign(partitions)
        await bounded(consumer.seek_to_beginning(*partitions))
        ends = await bounded(consumer.end_offsets(partitions))
        got: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + 30
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "the topic could not be read to its end"
            batch = await bounded(consumer.getmany(timeout_ms=500))
            got += [(r.key, r.value) for records in batch.values() for r in records]
        return got
    finally:
        await bounded(consumer.stop())


def snapshot_sql() -> str:
    return """SELECT edition, unit, indicator, period, rep_num, rep_den, rep_seq, comp_num, comp_den,
                     reporting, accepted_at, updated_at FROM rollups ORDER BY 1, 2, 3, 4"""


async def test_events_roll_up_and_redelivery_changes_nothing(stack: Stack, hierarchy: Hierarchy) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    commune_804 = next(u.code for u in (hierarchy.get("legacy", c) for c in ("28036", "28039")) if u)
    first = [
        event(1, "27991", 1000), event(2, "27994", 2000), event(3, "27997", 500), event(4, "803", 4000),
        event(5, "27991", 80, 100, indicator="online_dossier_rate"),
        event(6, "27994", 30, 50, indicator="online_dossier_rate"),
        event(7, "27991", 1, 1, indicator="working_group_formed"),
        event(8, "27994", 0, 1, indicator="working_group_formed"),
        event(9, "803", 3, indicator="directives_issued"),
        event(10, "25459", 700, edition="2025", period="2025-08"),
        event(11, "99999", 5),  # no such unit in the legacy edition
        event(12, "27991", 5, indicator="cmnd_converted"),  # retired
        event(14, "27991", 5, indicator="no_such_indicator"),
    ]
    poison_raw = (b"legacy/80", b"\xffnot an event")
    second = [event(20, "27991", 1200), event(17, "27991", 999), event(21, "27997", None),
              event(22, commune_804, 300)]
    await record_in_outbox(stack, first + second)

    async with running(stack, group) as client:
        assert (await client.get("/healthz")).status_code == 200
        ends = await produce(stack, [*first[:10], first[10], first[11], poison_raw, first[12]])
        await caught_up(stack, group, ends)
        ends = merge(ends, await produce(stack, second))
        await caught_up(stack, group, ends)
        await eventually(lambda: _ready(client))
        metrics = (await client.get("/metrics")).text

    c1, c3, district, province = [await row(stack, u) for u in ("27991", "27997", "803", "80")]
    assert (c1["rep_num"], c1["rep_seq"]) == (1200, 20)  # the correction won; seq 17 came later, ignored
    assert (c3["rep_num"], c3["rep_seq"]) == (None, 21)  # retracted
    assert (district["rep_num"], district["comp_num"], district["reporting"]) == (4000, 3200, 2)
    assert (province["rep_num"], province["comp_num"], province["reporting"]) == (None, 4300, 2)
    assert (await row(stack, commune_804))["rep_num"] == 300  # applied although poison came before it
    ratio = await row(stack, "80", "online_dossier_rate")
    assert (ratio["comp_num"], ratio["comp_den"], ratio["reporting"]) == (110, 150, 1)
    flags = await row(stack, "803", "working_group_formed")
    assert (flags["comp_num"], flags["comp_den"], flags["reporting"]) == (1, 2, 2)
    own = await row(stack, "803", "directives_issued")
    assert (own["rep_num"], own["comp_num"]) == (3, None)
    assert await row(stack, "80", "directives_issued") is None  # own-level: never summed
    new_edition = await row(stack, "80", period="2025-08", edition="2025")
    assert (new_edition["comp_num"], new_edition["reporting"]) == (700, 1)
    assert await row(stack, "VN") is None  # the nation is summed at read time
    assert c1["accepted_at"] == ACCEPTED_AT

    dead = {r["seq"]: r["reason"] for r in await query(stack, "SELECT seq, reason FROM dead_letters")}
    assert set(dead) == {11, 12, 14, None}  # the poison has no seq, and a row all the same
    assert dead[None].startswith("malformed: ")
    assert dead[11].startswith("unknown_unit: ")
    assert dead[12].startswith("retired_indicator: ")
    assert dead[14].startswith("unknown_indicator: ")
    await eventually(lambda: all_copied(stack))
    on_topic = [orjson.loads(value) for _, value in await dead_letter_records(stack)]
    assert sorted(d["reason"] for d in on_topic) == sorted(
        ["unknown_unit", "retired_indicator", "malformed", "unknown_indicator"]
    )

    assert metric(metrics, 'd06_aggregate_events_total{outcome="applied"}') == 13
    assert metric(metrics, 'd06_aggregate_events_total{outcome="stale"}') == 1
    assert metric(metrics, 'd06_aggregate_events_total{outcome="dead_lettered"}') == 4
    assert metric(metrics, 'd06_aggregate_dead_letters_total{reason="malformed"}') == 1
    assert metric(metrics, "d06_aggregate_freshness_seconds_count") == 13
    for partition in ends:
        assert metric(metrics, f'd06_aggregate_consumer_lag{{partition="{partition}"}}') == 0

    # Restart with the stored offsets: only the new event applies. A fetch that races the seek to the stored
    # offsets may bring back records below them; they are skipped by offset (counted `redelivered`), never
    # applied, so they can show neither as applied nor as stale.
    async with running(stack, group) as client:
        ends = merge(ends, await produce(stack, [event(30, "27994", 2100)]))
        await record_in_outbox(stack, [event(30, "27994", 2100)])
        await caught_up(stack, group, ends)
        metrics = (await client.get("/metrics")).text
    assert metric(metrics, 'd06_aggregate_events_total{outcome="applied"}') == 1
    assert metric(metrics, 'd06_aggregate_events_total{outcome="stale"}') == 0
    assert (await row(stack, "803"))["comp_num"] == 3300

    # Forget the offsets: everything is redelivered from offset 0 and nothing changes.
    before = await query(stack, snapshot_sql())
    await query(stack, "DELETE FROM consumer_offsets WHERE consumer_group = $1", group)
    async with running(stack, group) as client:
        await caught_up(stack, group, ends)
        await eventually(lambda: _stale_count(client, 15))  # every valid event, all 15 of them
    assert await query(stack, snapshot_sql()) == before
    assert len(await query(stack, "SELECT 1 FROM dead_letters")) == 4  # read twice, each stored once

    await no_differences(stack, hierarchy)


async def no_differences(stack: Stack, hierarchy: Hierarchy) -> None:
    """`d06 rollups verify`'s check: every rollup equals its recomputation from the facts."""
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert await verify(conn, hierarchy, load_catalog()) == []
    finally:
        await engine.dispose()


def merge(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    return {p: max(a.get(p, 0), b.get(p, 0)) for p in a.keys() | b.keys()}


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def _stale_count(client: httpx.AsyncClient, n: int) -> bool:
    text = (await client.get("/metrics")).text
    return metric(text, 'd06_aggregate_events_total{outcome="stale"}') >= n
