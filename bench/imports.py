"""Scenario 7: a file of 100,000 rows, then one of 1,000,000, through POST /v1/imports (DESIGN §9).

Runs last, on an ingest service started afresh (so its peak memory is the import's, not the earlier
scenarios'), with the aggregator running and caught up with what the earlier scenarios left. Each file
is written to the run directory and streamed from disk; the clock starts at the first byte sent and
stops when `GET /v1/imports/{id}` says `done` (rows/s accepted) and when the aggregator's offsets reach
the relay's (time until applied). The ingest service's peak resident memory (VmHWM) is read after each
file: flat memory means about the same at both sizes. Every row is a new figure (the second file's
values differ from the first's), so each one is an event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bench.config import Sizes
from bench.report import Figure
from bench.stack import BenchStack, CpuMeter, Progress, note, step
from bench.workload import Legacy

INDICATORS = ("cccd_issued", "dossiers_received")  # a stock and a flow, both monthly
INGEST_APP = "d06-ingest"  # its connections' application_name
MONTHS = tuple(f"{y}-{m:02d}" for y in range(2016, 2023) for m in range(1, 13))


def write_file(path: Path, legacy: Legacy, rows: int, shift: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("đơn vị,chỉ tiêu,kỳ,giá trị\n")
        n = 0
        for month in MONTHS:
            for indicator in INDICATORS:
                for commune in legacy.communes:
                    if n == rows:
                        return
                    out.write(f"{commune.code},{indicator},{month},{(n * 7 + shift) % 100_000}\n")
                    n += 1
    raise ValueError(f"{rows:,} rows is more than the benchmark's keys")


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:  # a local file: a read of 64 KiB does not hold the loop up
        while chunk := file.read(1 << 16):
            yield chunk


async def _import(stack: BenchStack, path: Path, within: float) -> tuple[float, float, dict[str, Any]]:
    """(the moment the first byte went, seconds from then until `done`, the summary)."""
    headers = {"Authorization": f"Bearer {stack.key}"}
    async with httpx.AsyncClient(base_url=stack.procs["ingest"].url, headers=headers, timeout=None) as client:
        started = time.monotonic()
        answer = await client.post("/v1/imports", content=_chunks(path), headers={"Content-Type": "text/csv"})
        if answer.status_code not in (201, 202):
            raise RuntimeError(f"the import was answered {answer.status_code}: {answer.text[:300]}")
        body: dict[str, Any] = answer.json()
        deadline = started + within
        while body["status"] == "running" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            body = (await client.get(answer.headers["location"])).json()
        if body["status"] != "done" or body["rejected"]:
            raise RuntimeError(f"the import ended {body['status']} with {body['rejected']:,} rejected rows: "
                               f"{body['errors'][:3]}")
        return started, time.monotonic() - started, body


async def scenario(stack: BenchStack, sizes: Sizes, legacy: Legacy) -> tuple[list[Figure], dict[str, Any]]:
    step("[scenario 7] imports: ingest restarted, the aggregator running")
    stack.stop("ingest")
    stack.start("ingest")
    stack.start("aggregate")
    stack.wait_ready("ingest")
    stack.wait_ready("aggregate")
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    conn = await stack.connect()
    try:
        progress = Progress(conn, stack.topic, stack.group)
        # The ingest scenario's events were left unconsumed: applied first, they are not counted here.
        if not await progress.drained(within=1800):
            raise RuntimeError("the aggregator did not catch up with the earlier scenarios in 30 minutes")
        for shift, rows in enumerate(sizes.import_rows):
            path = stack.run_dir / f"import-{rows}.csv"
            write_file(path, legacy, rows, shift)
            meter = CpuMeter(stack)
            backends = await stack.backend_cpu(INGEST_APP)
            started, seconds, body = await _import(stack, path, within=3600)
            meter.report()
            after = await stack.backend_cpu(INGEST_APP)
            pg_ingest = sum(cpu - backends.get(pid, 0.0) for pid, cpu in after.items())
            produced = await progress.wait_published(within=600)
            applied = await progress.wait_applied(produced, within=1800, interval=0.1)
            until_applied = None if applied is None else applied - started
            kib = stack.sample_memory("ingest")
            accepted = body["accepted"]
            per_row = {part: 1e6 * used / accepted for part, used in
                       (("ingest", meter.used.get("ingest", 0.0)), ("postgres_ingest", pg_ingest),
                        ("postgres", meter.used.get("postgres", 0.0)))}
            note(f"{rows:,} rows ({path.stat().st_size / 1e6:,.0f} MB): done in {seconds:,.1f} s "
                 f"({accepted / seconds:,.0f} rows/s), ingest peak {kib / 1024:,.0f} MiB; CPU per row: ingest "
                 f"{per_row['ingest']:.1f} µs, its PostgreSQL backends {per_row['postgres_ingest']:.1f} µs "
                 f"(all of PostgreSQL, the aggregator's writes included: {per_row['postgres']:.1f} µs)")
            label = f"{rows:,} rows"
            figures += [
                Figure("7 imports", f"rows/s accepted, a CSV of {label}", accepted / seconds, "rows/s",
                       target=(">=", 50_000)),
                Figure("7 imports", f"CPU per row until done, {label}: the ingest process", per_row["ingest"], "µs"),
                # Left out when the server is not ours (--database-url): its processes are not ours to read.
                *([Figure("7 imports", f"CPU per row until done, {label}: ingest's PostgreSQL backends",
                          per_row["postgres_ingest"], "µs")] if stack.pg is not None else []),
                Figure("7 imports", f"s from the first byte until applied, {label}", until_applied, "s"),
                Figure("7 imports", f"ingest peak resident memory after {label}", kib / 1024, "MiB"),
            ]
            details[str(rows)] = {"seconds": seconds, "until_applied": until_applied, "peak_rss_kib": kib,
                                  "cpu_us_per_row": per_row,
                                  "bytes": path.stat().st_size}
            path.unlink()
    finally:
        await conn.close()
    return figures, details
