"""Scenario 2: events applied a second by one aggregator from a topic filled before it starts.

The month goes through the real front door (ingest, its outbox and its relay) while the aggregator is
stopped, so the topic holds exactly what production would put there. The clock starts when the new
aggregator holds its partitions (its /readyz turns 200, polled every 10 ms; the consumer-group join
before that is the broker's, not the aggregator's, and takes Tansu ~5 s) and stops when the offsets it
stores with the rollups (`consumer_offsets`, polled every 10 ms) reach the end of the topic.
"""

from __future__ import annotations

from typing import Any

from bench.config import Sizes
from bench.http import Pool
from bench.ingest import post_all
from bench.report import Figure
from bench.stack import BenchStack, CpuMeter, Progress, note, step
from bench.workload import REQUIRED, EventFactory, Legacy, batches


async def scenario(stack: BenchStack, sizes: Sizes, legacy: Legacy) -> tuple[list[Figure], dict[str, Any]]:
    communes = legacy.communes[: sizes.communes] if sizes.communes else legacy.communes
    events = EventFactory(f"agg{stack.run_id}-").month_of_everything(communes)
    step(f"[scenario 2] aggregate: {len(events):,} events ({len(communes):,} communes × {len(REQUIRED)} "
         "indicators, one month) through ingest into the topic, the aggregator stopped")
    pool = Pool(stack.ports["ingest"], 8, {"Authorization": f"Bearer {stack.key}"})
    try:
        posted = await post_all(pool, batches(events, sizes.batch), clients=8)
    finally:
        pool.close()
    conn = await stack.connect()
    try:
        progress = Progress(conn, stack.topic, stack.group)
        produced = await progress.wait_published(within=120)
        note(f"{posted.accepted:,} accepted, {produced:,} on the topic; starting the aggregator")
        stack.start("aggregate")
        started = stack.wait_ready("aggregate", interval=0.01)
        meter = CpuMeter(stack)
        done = await progress.wait_applied(produced, within=600)
        cpu = meter.report()
        if done is None:
            raise RuntimeError(f"the aggregator applied {await progress.applied():,} of {produced:,} in 600 s")
    finally:
        await conn.close()
    elapsed = done - started
    rate = produced / elapsed
    note(f"{produced:,} events applied in {elapsed:.2f} s after the partitions were assigned: {rate:,.0f} events/s")
    figure = Figure("2 aggregate", f"events/s applied by one aggregator from a pre-filled topic "
                    f"({produced:,} events)", rate, "events/s", target=(">=", 50_000), floor=(">=", 20_000))
    details = {"events": produced, "seconds": elapsed, "cpu_cores": cpu}
    return [figure, *meter.per_event("2 aggregate", "aggregate", produced)], details
