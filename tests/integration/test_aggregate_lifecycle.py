"""The aggregator's life: starting before Postgres, a topic epoch that moves, SIGTERM in the middle of work."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import httpx

from services.aggregate.app import create_app
from shared.catalog import load_catalog
from shared.db import create_database, drop_database, make_engine
from shared.devstack import free_port
from shared.events import AcceptedEvent
from shared.hierarchy import Hierarchy
from shared.kafka import bounded, ensure_topics, make_producer
from shared.settings import AggregateSettings
from shared.verify import verify
from tests.fixtures.aggregator import (
    ACCEPTED_AT,
    aggregating,
    caught_up,
    event,
    merge,
    metric,
    no_differences,
    offsets,
    produce,
    record_in_outbox,
    row,
)
from tests.fixtures.infra import RUN_DIR, TEMPLATE, Stack
from tests.fixtures.waiting import eventually


async def test_starts_before_its_database_exists_and_becomes_ready(stack: Stack) -> None:
    name = f"d06_late_{uuid.uuid4().hex[:8]}"
    late = stack.infra.url_for(name)
    app = create_app(stack.settings(AggregateSettings, database_url=late, consumer_group=f"g-{name}"))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.get("/healthz")).status_code == 200
        answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert {"database", "hierarchy", "broker"} <= set(answer.json()["failing"])

        await create_database(stack.infra.server_url, name, template=TEMPLATE)
        try:
            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready, what="the aggregator to be ready")
            late_stack = Stack(stack.infra, late, stack.kafka_bootstrap, stack.events_topic, stack.dead_letter_topic)
            await caught_up(late_stack, f"g-{name}", await produce(late_stack, [event(1, "27991", 42)]))
            assert (await row(late_stack, "803"))["comp_num"] == 42
        finally:
            await drop_database(stack.infra.server_url, name)


async def test_shuts_down_promptly_when_nothing_is_reachable(stack: Stack) -> None:
    dead_port = free_port()
    settings = stack.settings(
        AggregateSettings, database_url=f"postgresql://postgres@127.0.0.1:{dead_port}/none",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
    )
    app = create_app(settings)
    started = time.monotonic()
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        await asyncio.sleep(1.0)
        assert (await client.get("/readyz")).status_code == 503
        assert "d06_aggregate_events_total" in (await client.get("/metrics")).text
    assert time.monotonic() - started < 10


async def test_a_new_topic_epoch_rereads_the_log_from_the_beginning(stack: Stack, hierarchy: Hierarchy) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    before = [event(1, "27991", 10), event(2, "27994", 20), event(3, "28036", 5)]
    after = event(4, "27997", 1)
    await record_in_outbox(stack, [*before, after])
    async with aggregating(stack, group) as client:
        ends = await produce(stack, before)
        await caught_up(stack, group, ends)
        assert {epoch for _, epoch in (await offsets(stack, group)).values()} == {0}

        # What the relay does when it finds the broker lost its log (here the log is intact: the
        # consumer must still start over, and re-reading it must change nothing).
        await stack.execute("INSERT INTO topic_epochs (topic, epoch) VALUES ($1, 1)", stack.events_topic)
        ends = merge(ends, await produce(stack, [after]))

        async def moved() -> bool:
            stored = await offsets(stack, group)
            return all(stored.get(p) == (n, 1) for p, n in ends.items())

        await eventually(moved, what="the offsets to move")
        text = (await client.get("/metrics")).text
    assert metric(text, "d06_aggregate_epoch_changes_total") == 1
    assert metric(text, "d06_aggregate_log_epoch") == 1
    assert metric(text, 'd06_aggregate_events_total{outcome="stale"}') == 3
    assert metric(text, 'd06_aggregate_events_total{outcome="applied"}') == 4
    assert (await row(stack, "803"))["comp_num"] == 31
    await no_differences(stack, hierarchy)


async def test_sigterm_commits_the_batch_in_hand_and_exits_zero(stack: Stack, hierarchy: Hierarchy) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    found = (hierarchy.get("legacy", f"{n:05d}") for n in range(1, 32000))
    communes = [u for u in found if u is not None and u.level == "commune"][:400]
    events = [
        AcceptedEvent(
            seq=i + 1, event_id=f"ev-{i + 1}", edition="legacy", unit=u.code, province=u.province_code or "",
            indicator="dossiers_received", period=f"2024-{month:02d}", num=Decimal(i % 97), den=None,
            accepted_at=ACCEPTED_AT,
        )
        for i, (u, month) in enumerate((u, m) for m in range(1, 13) for u in communes)
    ]
    await record_in_outbox(stack, events)
    port = free_port()
    env = stack.env() | {"AGGREGATE_CONSUMER_GROUP": group, "AGGREGATE_MAX_BATCH": "50"}
    log_path = RUN_DIR / f"{stack.events_topic}.aggregate.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once; waited for off the loop below
            [sys.executable, "-m", "services.aggregate", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            async def ready() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, what="the aggregator to be ready")
            ends = await _produce_fast(stack, events)

            async def some_applied() -> bool:
                return bool(await offsets(stack, group))

            await eventually(some_applied, what="some events applied")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # Whatever was committed is consistent (no half batch), and a restart finishes the rest exactly once.
    await no_differences_partial(stack, hierarchy)
    async with aggregating(stack, group):
        await caught_up(stack, group, ends)
    await no_differences(stack, hierarchy)
    province = await row(stack, communes[0].province_code or "", "dossiers_received", "2024-12")
    assert province is not None and province["reporting"] > 0


async def no_differences_partial(stack: Stack, hierarchy: Hierarchy) -> None:
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert await verify(conn, hierarchy, load_catalog(), check_outbox=False) == []
    finally:
        await engine.dispose()


async def _produce_fast(stack: Stack, events: list[AcceptedEvent]) -> dict[int, int]:
    await ensure_topics(stack.kafka_bootstrap, [stack.events_topic, stack.dead_letter_topic], stack.partitions)
    producer = make_producer(stack.kafka_bootstrap)
    await bounded(producer.start())
    try:
        futures = [await producer.send(stack.events_topic, e.to_bytes(), key=e.partition_key) for e in events]
        metas = await bounded(asyncio.gather(*futures), 60)
    finally:
        await bounded(producer.stop())
    ends: dict[int, int] = {}
    for meta in metas:
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    return ends
