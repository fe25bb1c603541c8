"""Posting batches to the ingest service: the fill of the aggregate scenario, and scenario 1.

Bodies are serialised once per template and given fresh event ids by a byte replace, so the client
spends microseconds per batch: on two cores, every cycle it spends is taken from the service it measures.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.config import Sizes
from bench.http import Pool
from bench.report import Figure, percentile
from bench.stack import BenchStack, CpuMeter, note, step
from bench.workload import INGEST_MONTHS, EventFactory, Legacy
from services.ingest.outbox import unpublished

MARK = b"~ID~"


class Bodies:
    """Batch bodies cycling over templates; every event of every body gets a new id (`<prefix><n>-<i>`)."""

    def __init__(self, prefix: str, templates: Sequence[Sequence[dict[str, Any]]]) -> None:
        self.prefix = prefix
        self._templates = [
            orjson.dumps([{**e, "event_id": f"{MARK.decode()}-{i}"} for i, e in enumerate(t)])[1:-1]
            for t in templates
        ]
        self._sizes = [len(t) for t in templates]
        self._n = itertools.count()

    def next(self, extra: Sequence[dict[str, Any]] = ()) -> tuple[bytes, int]:
        """(body, number of events)."""
        n = next(self._n)
        inner = self._templates[n % len(self._templates)].replace(MARK, f"{self.prefix}{n}".encode())
        head = b"".join(orjson.dumps(e) + b"," for e in extra)
        return b'{"events":[' + head + inner + b"]}", self._sizes[n % len(self._sizes)] + len(extra)


@dataclass
class Posted:
    accepted: int = 0
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def record(self, status: int, answer: bytes, seconds: float) -> dict[str, Any] | None:
        self.requests += 1
        if status != 202:
            self.failures.append(f"{status}: {answer[:300]!r}")
            return None
        parsed: dict[str, Any] = orjson.loads(answer)
        self.accepted += int(parsed["accepted"])
        self.latencies.append(seconds)
        return parsed


async def post_all(pool: Pool, bodies: Iterable[bytes], clients: int) -> Posted:
    """Post every body (several at a time); any answer but 202 fails the run."""
    posted = Posted()
    source: Iterator[bytes] = iter(bodies)

    async def client() -> None:
        for body in source:
            started = time.perf_counter()
            status, answer = await pool.request("POST", "/v1/events", body, within=120)
            posted.record(status, answer, time.perf_counter() - started)
            if posted.failures:
                raise RuntimeError(f"ingest refused a batch: {posted.failures[0]}")

    await asyncio.gather(*(client() for _ in range(clients)))
    return posted


async def _post_for(pool: Pool, bodies: Bodies, clients: int, seconds: float) -> tuple[Posted, float]:
    """Post as fast as the service answers for `seconds` (no new request after); (posted, elapsed)."""
    posted = Posted()
    started = time.monotonic()
    deadline = started + seconds

    async def client() -> None:
        while time.monotonic() < deadline and len(posted.failures) < 10:
            body, _ = bodies.next()
            sent = time.perf_counter()
            status, answer = await pool.request("POST", "/v1/events", body, within=120)
            posted.record(status, answer, time.perf_counter() - sent)

    await asyncio.gather(*(client() for _ in range(clients)))
    return posted, time.monotonic() - started


async def scenario(stack: BenchStack, sizes: Sizes, legacy: Legacy) -> tuple[list[Figure], dict[str, Any]]:
    step(f"[scenario 1] ingest: {sizes.ingest_clients} clients post batches of {sizes.batch:,} for "
         f"{sizes.ingest_seconds:.0f} s to one ingest process (the aggregator is stopped)")
    factory = EventFactory("i")
    stream = factory.stream(legacy.communes, INGEST_MONTHS)
    templates = [[next(stream) for _ in range(sizes.batch)] for _ in range(64)]
    bodies = Bodies(f"ing{stack.run_id}-", templates)
    pool = Pool(stack.ports["ingest"], sizes.ingest_clients, {"Authorization": f"Bearer {stack.key}"})
    try:
        await _post_for(pool, bodies, sizes.ingest_clients, sizes.ingest_warmup)
        meter = CpuMeter(stack)
        posted, elapsed = await _post_for(pool, bodies, sizes.ingest_clients, sizes.ingest_seconds)
        cpu = meter.report()
    finally:
        pool.close()
    if posted.failures:
        raise RuntimeError(f"ingest refused {len(posted.failures)} batch(es); first: {posted.failures[0]}")
    rate = posted.accepted / elapsed
    p50, p99 = (percentile(posted.latencies, p) for p in (50, 99))
    note(f"{posted.accepted:,} events in {posted.requests:,} batches in {elapsed:.2f} s: {rate:,.0f} events/s; "
         f"batch latency p50 {1000 * (p50 or 0):.0f} ms, p99 {1000 * (p99 or 0):.0f} ms")
    figures = [Figure("1 ingest", f"events/s accepted durably (202, outbox committed), batches of "
                      f"{sizes.batch:,}, {sizes.ingest_clients} clients", rate, "events/s",
                      target=(">=", 50_000), floor=(">=", 20_000)),
               *meter.per_event("1 ingest", "ingest", posted.accepted)]
    details = {"events": posted.accepted, "batches": posted.requests, "seconds": elapsed,
               "batch_latency_p50_ms": 1000 * (p50 or 0), "batch_latency_p99_ms": 1000 * (p99 or 0),
               "unpublished_at_end": await stack.fetchval(
                   f"SELECT count(*) FROM outbox WHERE {unpublished('$1')}", stack.topic),
               "cpu_cores": cpu}
    return figures, details
