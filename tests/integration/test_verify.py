"""`d06 rollups verify` names each corrupted row and column, and nothing else.

The rollups are built the way production builds them: events posted to ingest (outbox, relay, the
broker) and applied by the aggregator, both running in-process. Once verify finds nothing, each test
corrupts one column of one row with an UPDATE (rolled back afterwards) and verify must report exactly
that key and that column.

Figures: legacy Long An (80): communes 27991 (1000, then 1200) and 27994 (2000) of Bến Lức (803), which
reports its own 4000; 28036 of Thủ Thừa (804) 300; the province its own 9000. Coverage ratios below 803,
and an own-level figure at 803. 2025: Tây Ninh (80) and two of its communes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.aggregate.app import create_app as create_aggregate
from services.ingest.app import create_app as create_ingest
from shared.catalog import load_catalog
from shared.db import make_engine
from shared.hierarchy import Hierarchy
from shared.settings import AggregateSettings, IngestSettings
from shared.verify import Difference, verify
from tests.fixtures.infra import ROOT, Infra, Stack, fresh_stack
from tests.fixtures.waiting import eventually

LEGACY, E2025 = "2024-07", "2025-07"


def report(unit: str, value: int, period: str = LEGACY, indicator: str = "cccd_issued") -> dict[str, Any]:
    return {"unit": unit, "indicator": indicator, "period": period, "value": value}


def coverage(unit: str, numerator: int, denominator: int) -> dict[str, Any]:
    return {"unit": unit, "indicator": "cccd_coverage", "period": LEGACY,
            "numerator": numerator, "denominator": denominator}


BATCHES: list[list[dict[str, Any]]] = [
    [report("27991", 1000), report("27994", 2000), report("28036", 300), report("803", 4000),
     report("80", 9000), coverage("27991", 900, 1000), coverage("27994", 1500, 2000), coverage("803", 2500, 3100),
     report("803", 3, indicator="directives_issued"),
     report("25459", 10, E2025), report("25480", 20, E2025), report("80", 100, E2025)],
    [report("27991", 1200)],  # a later figure: the older one must not count
]

# (edition, unit, period) of one unit per materialized level, each with a reported figure of its own.
LEVELS = {
    "legacy commune": ("legacy", "27991", LEGACY),
    "legacy district": ("legacy", "803", LEGACY),
    "legacy province": ("legacy", "80", LEGACY),
    "2025 commune": ("2025", "25459", E2025),
    "2025 province": ("2025", "80", E2025),
}

# column -> (the corruption, the name verify gives it)
COLUMNS = {
    "reported": ("rep_num = rep_num + 1", "reported"),
    "computed": ("comp_num = coalesce(comp_num, 0) + 1", "computed"),  # a commune computes nothing
    "reporting": ("reporting = reporting + 1", "reporting"),
    "seq": ("rep_seq = rep_seq + 1000", "reported seq"),
}

WHERE = "edition = :e AND unit = :u AND indicator = :i AND period = :p"


async def _submit(client: httpx.AsyncClient, key: str, events: list[dict[str, Any]]) -> None:
    """Post one batch, once ingest has loaded its hierarchy (it answers 503 until then)."""
    response: httpx.Response | None = None

    async def answered() -> bool:
        nonlocal response
        response = await client.post("/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {key}"})
        return response.status_code != 503

    await eventually(answered, what="ingest to load its hierarchy")
    assert response is not None and response.status_code == 202, response and response.text
    assert response.json()["accepted"] == len(events), response.text


async def _differences(stack: Stack, hierarchy: Hierarchy, corruption: str | None = None,
                       key: tuple[str, ...] = ()) -> list[Difference]:
    """verify's findings, with `corruption` applied to the row of `key` in a transaction rolled back after."""
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn, conn.begin() as tx:
            if corruption is not None:
                params = dict(zip("euip", key, strict=True))
                updated = await conn.execute(text(f"UPDATE rollups SET {corruption} WHERE {WHERE}"), params)
                assert updated.rowcount == 1
            found = await verify(conn, hierarchy, load_catalog())
            await tx.rollback()
            return found
    finally:
        await engine.dispose()


@asynccontextmanager
async def _running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


@pytest.fixture(scope="module")
async def clean(infra: Infra, hierarchy: Hierarchy) -> AsyncIterator[Stack]:
    """Rollups built by ingest and the aggregator and verified clean; both are stopped before the tests."""
    async with fresh_stack(infra) as stack:
        key = await stack.create_key()
        ingest = create_ingest(stack.settings(IngestSettings))
        aggregate = create_aggregate(stack.settings(AggregateSettings))
        async with _running(ingest) as client, _running(aggregate):
            for batch in BATCHES:
                await _submit(client, key, batch)

            async def verified() -> bool:
                return await _differences(stack, hierarchy) == []

            await eventually(verified, what="verify to find the aggregator's rollups clean")
        yield stack


async def test_the_state_built_by_the_aggregator_is_what_a_person_sums(clean: Stack, hierarchy: Hierarchy) -> None:
    rows = {r["unit"]: r for r in await clean.fetch(
        "SELECT unit, rep_num, comp_num, reporting FROM rollups "
        "WHERE edition = 'legacy' AND period = $1 AND indicator = 'cccd_issued'", LEGACY)}
    coverage_803 = await clean.fetch(
        "SELECT comp_num, comp_den FROM rollups WHERE edition = 'legacy' AND unit = '803' "
        "AND indicator = 'cccd_coverage'")
    assert (rows["27991"]["rep_num"], rows["803"]["comp_num"], rows["803"]["reporting"]) == (1200, 3200, 2)
    assert (rows["80"]["rep_num"], rows["80"]["comp_num"], rows["80"]["reporting"]) == (9000, 4300, 2)  # 803's 4000
    assert [tuple(r) for r in coverage_803] == [(2400, 3000)]
    assert await _differences(clean, hierarchy) == []


@pytest.mark.parametrize("column", list(COLUMNS))
@pytest.mark.parametrize("level", list(LEVELS))
async def test_one_corrupted_column_is_named_at_its_key(
    clean: Stack, hierarchy: Hierarchy, level: str, column: str
) -> None:
    edition, unit, period = LEVELS[level]
    key = (edition, unit, "cccd_issued", period)
    corruption, name = COLUMNS[column]
    found = await _differences(clean, hierarchy, corruption, key)
    assert [(d.key, d.what) for d in found] == [(key, name)]


@pytest.mark.parametrize(("corruption", "name"), [("rep_den = rep_den + 1", "reported"),
                                                  ("comp_den = comp_den + 1", "computed")])
async def test_a_corrupted_denominator_is_named_too(
    clean: Stack, hierarchy: Hierarchy, corruption: str, name: str
) -> None:
    key = ("legacy", "803", "cccd_coverage", LEGACY)
    found = await _differences(clean, hierarchy, corruption, key)
    assert [(d.key, d.what, d.stored) for d in found] == [
        (key, name, "2500/3101" if name == "reported" else "2400/3001")
    ]


async def test_the_command_prints_the_difference_and_exits_1(clean: Stack) -> None:
    corrupt, restore = ("reporting = reporting + 1", "reporting = reporting - 1")
    where = "edition = 'legacy' AND unit = '803' AND indicator = 'cccd_issued' AND period = '2024-07'"
    await clean.execute(f"UPDATE rollups SET {corrupt} WHERE {where}")
    try:
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "shared.cli", "rollups", "verify"],
            env=clean.env(), cwd=ROOT, capture_output=True, text=True, timeout=180,
        )
    finally:
        await clean.execute(f"UPDATE rollups SET {restore} WHERE {where}")  # the other tests share this database
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["legacy/803 cccd_issued 2024-07: reporting stored=3 recomputed=2"]
    assert "1 difference(s) found" in result.stderr
