"""Scenario 3: from the 202 to the value visible through the query API, under a steady load.

Every POST (500 events, ten a second: 5,000 events/s) carries one sampled event that sets a commune's
`dossiers_received` for a (province, month) that nothing else writes, to a value of its own. From the
moment its 202 arrives, a poller reads that province's value through the query API every 10 ms until it
shows the sample's value: the province's rollup now reflects it. The background events update the first
half of 2024 for communes all over the country, so the aggregator's batches are real work. A poll costs up
to 10 ms of resolution, so the figures err on the late side.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson

from bench.config import Sizes
from bench.http import Pool
from bench.ingest import Bodies
from bench.report import Figure, percentile
from bench.stack import BenchStack, CpuMeter, Progress, note, step
from bench.workload import LOAD_MONTHS, PROBE_INDICATOR, EventFactory, Legacy


def probe_keys(legacy: Legacy) -> list[tuple[str, str, str]]:
    """(commune, province, month) of each sample: months 2016-01 onwards, provinces in turn."""
    by_province: dict[str, list[str]] = {}
    for commune in legacy.communes:
        assert commune.province_code is not None
        by_province.setdefault(commune.province_code, []).append(commune.code)
    provinces = sorted(by_province)
    months = [f"{y}-{m:02d}" for y in range(2016, 2023) for m in range(1, 13)]
    keys = []
    for n, (month, province) in enumerate(itertools.product(months, provinces)):
        communes = by_province[province]
        keys.append((communes[n % len(communes)], province, month))
    return keys


async def scenario(stack: BenchStack, sizes: Sizes, legacy: Legacy) -> tuple[list[Figure], dict[str, Any]]:
    interval = sizes.freshness_batch / sizes.freshness_rate
    posts = int(sizes.freshness_seconds / interval)
    step(f"[scenario 3] freshness: {sizes.freshness_rate:,} events/s for {sizes.freshness_seconds:.0f} s "
         f"({sizes.freshness_batch} per POST, one sampled event in each), read back through the query API")
    factory = EventFactory("f")
    stream = factory.stream(legacy.communes, LOAD_MONTHS)
    templates = [[next(stream) for _ in range(sizes.freshness_batch - 1)] for _ in range(64)]
    bodies = Bodies(f"fr{stack.run_id}-", templates)
    keys = probe_keys(legacy)
    headers = {"Authorization": f"Bearer {stack.key}"}
    ingest = Pool(stack.ports["ingest"], 16, headers)
    query = Pool(stack.ports["query"], 32, headers)
    latencies: list[float] = []
    timeline: list[tuple[float, float]] = []  # (seconds into the run the 202 came, ms to visible)
    late: list[str] = []
    refused: list[str] = []
    accepted = 0
    pollers: list[asyncio.Task[None]] = []

    async def watch(province: str, month: str, value: int, acknowledged: float) -> None:
        path = f"/v1/units/{province}/values?period={month}&indicator={PROBE_INDICATOR}&edition=legacy"
        deadline = acknowledged + sizes.freshness_timeout
        seen = sizes.freshness_timeout
        while time.monotonic() < deadline:
            status, answer = await query.request("GET", path)
            if status == 200 and orjson.loads(answer)["values"][0]["value"] == value:
                seen = time.monotonic() - acknowledged
                break
            await asyncio.sleep(sizes.freshness_poll)
        else:
            late.append(f"{province} {month}")
        latencies.append(seen)
        timeline.append((round(acknowledged - started, 2), round(1000 * seen, 1)))

    async def send(n: int) -> None:
        nonlocal accepted
        commune, province, month = keys[n % len(keys)]
        value = 1_000_000 + n
        sample = factory.event(commune, PROBE_INDICATOR, month, 0) | {"value": value}
        body, _ = bodies.next(extra=[sample])
        status, answer = await ingest.request("POST", "/v1/events", body)
        acknowledged = time.monotonic()
        if status != 202:
            refused.append(f"{status}: {answer[:200]!r}")
            return
        accepted += int(orjson.loads(answer)["accepted"])
        pollers.append(asyncio.create_task(watch(province, month, value, acknowledged)))

    senders = []
    meter = CpuMeter(stack)
    started = time.monotonic()
    try:
        for n in range(posts):
            delay = started + n * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            senders.append(asyncio.create_task(send(n)))
        await asyncio.gather(*senders)
        sent_for = time.monotonic() - started
        cpu = meter.report()
        await asyncio.gather(*pollers)
    finally:
        ingest.close()
        query.close()
    if refused:
        raise RuntimeError(f"ingest refused {len(refused)} batch(es) under the steady load; first: {refused[0]}")
    rate = accepted / sent_for
    p50, p99, worst = (percentile(latencies, p) for p in (50, 99, 100))
    ms = [None if v is None else 1000 * v for v in (p50, p99, worst)]
    note(f"{accepted:,} events at {rate:,.0f}/s; {len(latencies)} samples: p50 {ms[0]:.0f} ms, p99 {ms[1]:.0f} ms, "
         f"max {ms[2]:.0f} ms" + (f"; {len(late)} not visible within {sizes.freshness_timeout:.0f} s" if late else ""))
    await _drain(stack)
    load = f"at {rate:,.0f} events/s"
    figures = [
        Figure("3 freshness", f"p50, 202 → visible in the province's rollup, {load}", ms[0], "ms"),
        Figure("3 freshness", f"p99, {load} (floor: at 2,000/s)", ms[1], "ms", target=("<=", 500),
               floor=("<=", 1_000)),
        Figure("3 freshness", f"max, {load}", ms[2], "ms"),
    ]
    details = {"events": accepted, "seconds": sent_for, "rate": rate, "samples": len(latencies),
               "not_visible": late, "cpu_cores": cpu, "timeline": sorted(timeline)}
    return figures, details


async def _drain(stack: BenchStack) -> None:
    """Everything accepted applied, so the next scenarios read a settled read model."""
    conn = await stack.connect()
    try:
        if not await Progress(conn, stack.topic, stack.group).drained(within=120):
            raise RuntimeError("the aggregator did not catch up within 120 s after the steady load")
    finally:
        await conn.close()
