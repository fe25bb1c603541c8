"""The aggregator alone, on real PostgreSQL and a real broker: AcceptedEvent messages are produced straight
to the topic (as the relay would), the app runs in-process, and the rollups rows are read back with SQL.

Figures (legacy edition, Long An 80, district Bến Lức 803 and its communes; cccd_issued, 2024-07):
  27991 reports 1000, then 1200 (seq 20); an older seq 17 (999) arrives after it and is ignored.
  27994 reports 2000; 27997 reports 500 and retracts it (seq 21). 803 reports its own 4000.
  A commune of Thủ Thừa (804) reports 300, after four poison messages in the same partition.
  So 803 = reported 4000 beside computed 3200 (2 reporting), and 80 = computed 4000 + 300.
"""

from __future__ import annotations

import uuid

import httpx
import orjson

from shared.hierarchy import Hierarchy
from tests.fixtures.aggregator import (
    ACCEPTED_AT,
    aggregating,
    all_copied,
    caught_up,
    dead_letter_records,
    event,
    merge,
    metric,
    no_differences,
    produce,
    record_in_outbox,
    row,
)
from tests.fixtures.infra import Stack
from tests.fixtures.waiting import eventually


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

    async with aggregating(stack, group) as client:
        assert (await client.get("/healthz")).status_code == 200
        ends = await produce(stack, [*first[:10], first[10], first[11], poison_raw, first[12]])
        await caught_up(stack, group, ends)
        ends = merge(ends, await produce(stack, second))
        await caught_up(stack, group, ends)
        await eventually(lambda: _ready(client), what="the aggregator to be ready")
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

    dead = {r["seq"]: r["reason"] for r in await stack.fetch("SELECT seq, reason FROM dead_letters")}
    assert set(dead) == {11, 12, 14, None}  # the poison has no seq, and a row all the same
    assert dead[None].startswith("malformed: ")
    assert dead[11].startswith("unknown_unit: ")
    assert dead[12].startswith("retired_indicator: ")
    assert dead[14].startswith("unknown_indicator: ")
    await eventually(lambda: all_copied(stack), what="every dead letter copied to the topic")
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
    async with aggregating(stack, group) as client:
        ends = merge(ends, await produce(stack, [event(30, "27994", 2100)]))
        await record_in_outbox(stack, [event(30, "27994", 2100)])
        await caught_up(stack, group, ends)
        metrics = (await client.get("/metrics")).text
    assert metric(metrics, 'd06_aggregate_events_total{outcome="applied"}') == 1
    assert metric(metrics, 'd06_aggregate_events_total{outcome="stale"}') == 0
    assert (await row(stack, "803"))["comp_num"] == 3300

    # Forget the offsets: everything is redelivered from offset 0 and nothing changes.
    before = await stack.fetch(snapshot_sql())
    await stack.execute("DELETE FROM consumer_offsets WHERE consumer_group = $1", group)
    async with aggregating(stack, group) as client:
        await caught_up(stack, group, ends)
        await eventually(lambda: _stale_count(client, 15), what="every valid event, all 15, counted stale")
    assert await stack.fetch(snapshot_sql()) == before
    assert len(await stack.fetch("SELECT 1 FROM dead_letters")) == 4  # read twice, each stored once

    await no_differences(stack, hierarchy)


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def _stale_count(client: httpx.AsyncClient, n: int) -> bool:
    text = (await client.get("/metrics")).text
    return metric(text, 'd06_aggregate_events_total{outcome="stale"}') >= n
