"""Publication by watermark (services/ingest/outbox.py): writers committing out of seq order, two relays at
once, and a relay that dies between producing and advancing the watermark. Real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ingest import outbox
from services.ingest.metrics import IngestMetrics
from services.ingest.relay import Relay
from services.ingest.validation import ValidEvent
from shared.db import make_engine
from shared.dbroles import INGEST_ROLE, act_as
from shared.events import AcceptedEvent
from shared.hierarchy import Hierarchy
from shared.settings import IngestSettings
from tests.fixtures.aggregator import aggregating, caught_up, metric, no_differences
from tests.fixtures.infra import Stack
from tests.fixtures.topics import read_topic
from tests.fixtures.waiting import eventually


async def communes(stack: Stack, n: int) -> list[tuple[str, str]]:
    """(code, province) of `n` legacy communes of one district."""
    rows = await stack.fetch("""
        SELECT code, province_code FROM units
        WHERE edition = 'legacy' AND level = 'commune'
          AND parent_code = (SELECT parent_code FROM units WHERE edition = 'legacy' AND level = 'commune'
                             GROUP BY parent_code HAVING count(*) >= $1 ORDER BY parent_code LIMIT 1)
        ORDER BY code LIMIT $1
    """, n)
    return [(r["code"], r["province_code"]) for r in rows]


def valid(event_id: str, unit: tuple[str, str], value: int) -> ValidEvent:
    code, province = unit
    return ValidEvent(0, event_id, "legacy", code, province, "cccd_issued", "cccd", "2024-07", Decimal(value), None,
                      None, f"hash-{event_id}")


@asynccontextmanager
async def ingest_engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    """An engine acting as the ingest service's role, as the service's writers and relay do."""
    engine = act_as(make_engine(stack.database_url, pool_size=12), INGEST_ROLE)
    try:
        yield engine
    finally:
        await engine.dispose()


def relay(stack: Stack, engine: AsyncEngine, **overrides: object) -> Relay:
    return Relay(engine, stack.settings(IngestSettings, **overrides), IngestMetrics(CollectorRegistry()))


async def insert(conn: AsyncConnection, *events: ValidEvent) -> list[int]:
    seqs = await outbox.insert_events(conn, list(events), key_id=None, client_addr=None)
    return [seqs[e.event_id] for e in events if e.event_id is not None]


async def watermark(stack: Stack) -> int:
    rows = await stack.fetch("SELECT up_to FROM relay_watermarks WHERE topic = $1", stack.events_topic)
    return int(rows[0]["up_to"]) if rows else 0


async def on_topic(stack: Stack, expect: int) -> list[AcceptedEvent]:
    return [AcceptedEvent.from_bytes(r.value)
            for _, r in await read_topic(stack.kafka_bootstrap, stack.events_topic, expect=expect)]


async def produced(stack: Stack) -> int:
    """Records the relays produced to the topic (it started empty): repeats included."""
    rows = await stack.fetch("SELECT coalesce(sum(next_offset), 0) AS n FROM relay_offsets WHERE topic = $1",
                             stack.events_topic)
    return int(rows[0]["n"])


async def test_a_round_never_passes_a_writer_that_commits_later(stack: Stack) -> None:
    """The earlier seq commits after the later one, with a round in between: the round must stop below
    the running writer, or its event would end up below the watermark unpublished, for ever."""
    units = await communes(stack, 3)
    async with ingest_engine(stack) as engine:
        publisher = relay(stack, engine)
        try:
            async with engine.connect() as early, engine.connect() as late, engine.connect() as abandoned:
                await early.begin()
                await late.begin()
                await abandoned.begin()
                [early_seq] = await insert(early, valid("early", units[0], 1))
                [gone_seq] = await insert(abandoned, valid("gone", units[1], 2))
                [late_seq] = await insert(late, valid("late", units[2], 3))
                assert early_seq < gone_seq < late_seq
                await late.commit()

                await publisher._step()  # the early writer is still running
                assert await watermark(stack) < early_seq
                assert await produced(stack) == 0  # "late" waits too: the topic stays in seq order

                await early.commit()
                await publisher._step()  # the abandoned writer still runs: "early" goes, nothing above it
                assert early_seq <= await watermark(stack) < gone_seq

                await abandoned.rollback()
                await publisher._step()  # its seq is a gap the watermark passes over
                assert await watermark(stack) >= late_seq
        finally:
            await publisher._drop_producer()
    events = await on_topic(stack, expect=3)  # read for the whole wait: a third record would show
    assert sorted(e.event_id for e in events) == ["early", "late"]
    assert await produced(stack) == 2


async def test_a_dry_run_holds_nothing_back(stack: Stack) -> None:
    """A dry run's rows are rolled back in any case: it does not register, and events committed while it
    runs are published at once."""
    units = await communes(stack, 2)
    async with ingest_engine(stack) as engine:
        publisher = relay(stack, engine)
        try:
            async with engine.connect() as dry:
                await dry.begin()
                await outbox.insert_events(dry, [valid("dry", units[0], 1)], key_id=None, client_addr=None,
                                           dry_run=True)
                async with engine.begin() as conn:
                    [seq] = await insert(conn, valid("real", units[1], 2))
                await publisher._step()
                assert await watermark(stack) >= seq
                await dry.rollback()
        finally:
            await publisher._drop_producer()
    assert [e.event_id for e in await on_topic(stack, expect=1)] == ["real"]


async def test_two_relays_and_writers_committing_in_any_order_publish_every_event_once(stack: Stack) -> None:
    """Writers hold their transactions open for random times (some roll back) while two relays run: every
    committed event is published, exactly once (the two relays never publish the same range)."""
    units = await communes(stack, 20)
    rng = random.Random(6)
    committed: list[str] = []

    async def writer(engine: AsyncEngine, n: int) -> None:
        events = [valid(f"w{n}-{i}", units[(n + i) % len(units)], n * 10 + i) for i in range(rng.randint(1, 30))]
        pause, keep = rng.uniform(0, 0.08), rng.random() > 0.1
        async with engine.connect() as conn:
            await conn.begin()
            await insert(conn, *events)
            await asyncio.sleep(pause)  # others insert after us and commit before us meanwhile
            if keep:
                await conn.commit()
                committed.extend(str(e.event_id) for e in events)
                for each in relays:
                    each.wake.set()
            else:
                await conn.rollback()

    async with ingest_engine(stack) as engine:
        relays = [relay(stack, engine, relay_batch=rng.randint(5, 40), relay_idle_seconds=0.01) for _ in range(2)]
        tasks = [asyncio.create_task(r.run()) for r in relays]
        try:
            limit = asyncio.Semaphore(8)

            async def bounded_writer(n: int) -> None:
                async with limit:
                    await writer(engine, n)

            await asyncio.gather(*(bounded_writer(n) for n in range(150)))

            async def all_out() -> bool:
                rows = await stack.fetch(f"SELECT count(*) AS n FROM outbox WHERE {outbox.unpublished('$1')}",
                                         stack.events_topic)
                return bool(rows[0]["n"] == 0)

            await eventually(all_out, what="both relays to publish everything")
        finally:
            for r, task in zip(relays, tasks, strict=True):
                await r.shutdown(task)
    assert await produced(stack) == len(committed)  # no record twice
    events = await on_topic(stack, expect=len(committed))
    assert sorted(e.event_id for e in events) == sorted(committed)


async def test_a_relay_dying_before_its_watermark_commits_republishes_and_nothing_counts_twice(
    stack: Stack, hierarchy: Hierarchy
) -> None:
    """Produced, then the relay's database session dies before COMMIT (as when its process is killed): the
    watermark has not moved, the next round sends the same events again, the aggregator applies each once."""
    units = await communes(stack, 12)
    events = [valid(f"k-{i}", unit, 100 + i) for i, unit in enumerate(units)]
    async with ingest_engine(stack) as engine:
        async with engine.begin() as conn:
            await insert(conn, *events)
        publisher = relay(stack, engine)
        real_advance = outbox.advance_relay_offsets

        async def die(conn: AsyncConnection, topic: str, next_offsets: dict[int, int]) -> None:
            await conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

        try:
            outbox.advance_relay_offsets = die
            with pytest.raises(DBAPIError):
                await publisher._step()
            outbox.advance_relay_offsets = real_advance
            assert await watermark(stack) == 0
            assert len(await on_topic(stack, expect=len(events))) == len(events)  # the first copies went out

            await publisher._step()
            assert await watermark(stack) >= (await stack.fetch("SELECT max(seq) AS top FROM outbox"))[0]["top"]
        finally:
            outbox.advance_relay_offsets = real_advance
            await publisher._drop_producer()

    twice = await on_topic(stack, expect=2 * len(events))
    assert sorted(e.event_id for e in twice) == sorted([str(e.event_id) for e in events] * 2)
    ends = {r["partition"]: r["next_offset"] for r in
            await stack.fetch("SELECT partition, next_offset FROM relay_offsets WHERE topic = $1", stack.events_topic)}
    group = "watermark-kill"
    async with aggregating(stack, group) as client:
        await caught_up(stack, group, ends)  # the second round stored the offsets after both copies
        text_ = (await client.get("/metrics")).text
    assert metric(text_, 'd06_aggregate_events_total{outcome="applied"}') == len(events)
    assert metric(text_, 'd06_aggregate_events_total{outcome="stale"}') == len(events)
    values = {r["unit"]: r["rep_num"] for r in await stack.fetch(
        "SELECT unit, rep_num FROM rollups WHERE indicator = 'cccd_issued' AND rep_seq IS NOT NULL")}
    assert values == {e.unit: e.num for e in events}
    district = await stack.fetch("SELECT comp_num FROM rollups WHERE unit = (SELECT parent_code FROM units "
                                 "WHERE edition = 'legacy' AND code = $1) AND indicator = 'cccd_issued'", units[0][0])
    assert district[0]["comp_num"] == sum(e.num for e in events if e.num is not None)
    await no_differences(stack, hierarchy)

