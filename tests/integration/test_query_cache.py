"""Answers kept in memory by the query service (services/query/caching.py, fastpath.py), on real PostgreSQL.

Rollups rows are changed with SQL, and the aggregator's announcement (a NOTIFY on shared.events.ROLLUPS_CHANGED)
is sent by hand: a kept answer is served until its province tree is announced, whatever the table holds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from shared.db import plain_url
from shared.events import KEYS_CHANGED, ROLLUPS_CHANGED
from tests.fixtures.apps import serve
from tests.fixtures.infra import Stack
from tests.fixtures.rollups import insert
from tests.fixtures.waiting import eventually

LONG_AN = "/v1/units/80/values?period=2024-06&indicator=cccd_issued&edition=legacy"
NATION = "/v1/units/VN/values?period=2024-06&indicator=cccd_issued&edition=legacy"


async def value(client: httpx.AsyncClient, url: str) -> Any:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return response.json()["values"][0]["value"]


async def shows(client: httpx.AsyncClient, url: str, expected: Any) -> None:
    async def check() -> bool:
        return bool(await value(client, url) == expected)

    await eventually(check, what=f"{url} to show {expected}")


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    await insert(stack, [("80", "cccd_issued", "2024-06", None, None, 500_000, None, 15),
                         ("01", "cccd_issued", "2024-06", None, None, 700_000, None, 30)])
    key = await stack.create_key(roles=("read",))
    async with serve(stack) as client:
        state = client._transport.app.state.query  # type: ignore[attr-defined]
        for _ in range(200):
            if state.versions.listening:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the query service never started listening for rollup changes")
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


async def test_an_answer_is_kept_until_its_province_is_announced(stack: Stack, api: httpx.AsyncClient) -> None:
    assert await value(api, LONG_AN) == 500_000
    await stack.execute("UPDATE rollups SET comp_num = 600000 WHERE unit = '80'")
    assert await value(api, LONG_AN) == 500_000  # nothing announced: the kept answer
    await stack.execute("SELECT pg_notify($1, 'legacy/01')", ROLLUPS_CHANGED)
    await asyncio.sleep(0.2)
    assert await value(api, LONG_AN) == 500_000  # another province's change leaves it alone
    await stack.execute("SELECT pg_notify($1, 'legacy/01,legacy/80')", ROLLUPS_CHANGED)
    await shows(api, LONG_AN, 600_000)


async def test_the_nation_is_stale_when_any_province_is(stack: Stack, api: httpx.AsyncClient) -> None:
    assert await value(api, NATION) == 1_200_000
    await stack.execute("UPDATE rollups SET comp_num = 800000 WHERE unit = '01'")
    await stack.execute("SELECT pg_notify($1, 'legacy/01')", ROLLUPS_CHANGED)
    await shows(api, NATION, 1_300_000)


async def refused_soon(client: httpx.AsyncClient, url: str, status: int) -> None:
    """The announcement of a key change arrives a moment after its commit: poll for it (1 s at most)."""
    for _ in range(100):
        if (await client.get(url)).status_code == status:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{url} was never refused with {status}")


async def test_a_kept_answer_needs_a_key_that_still_works(stack: Stack, api: httpx.AsyncClient) -> None:
    assert (await api.get(LONG_AN)).status_code == 200
    etag = (await api.get(LONG_AN)).headers["ETag"]
    assert (await api.get(LONG_AN, headers={"If-None-Match": etag})).status_code == 304
    await stack.execute("UPDATE api_keys SET revoked_at = now()")  # an operator's SQL: the trigger announces it
    await refused_soon(api, LONG_AN, 401)  # though both the answer and the key were in memory
    assert (await api.get(LONG_AN, headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await api.get(LONG_AN, headers={"Authorization": api.headers["Authorization"] + "x"})).status_code == 401


async def test_a_kept_key_loses_a_role_or_its_scope_as_soon_as_it_changes(stack: Stack, api: httpx.AsyncClient) -> None:
    assert (await api.get(LONG_AN)).status_code == 200
    await stack.execute("UPDATE api_keys SET scope_edition = 'legacy', scope_code = '01'")
    await refused_soon(api, LONG_AN, 404)  # Long An is outside Hà Nội: as if it did not exist
    await stack.execute("UPDATE api_keys SET roles = '{submit}'")
    await refused_soon(api, LONG_AN, 403)


async def test_api_keys_announce_the_changes_that_decide_access_and_only_those(stack: Stack) -> None:
    heard: list[str] = []
    listener = await asyncpg.connect(plain_url(stack.database_url))
    await listener.add_listener(KEYS_CHANGED, lambda *args: heard.append(args[3]))
    try:
        await stack.create_key(roles=("read",))
        await stack.execute("UPDATE api_keys SET last_used_at = now()")  # ingest's bookkeeping: nothing to forget
        await stack.execute("SELECT pg_sleep(0.1)")
        assert heard == []
        for change in ("UPDATE api_keys SET roles = '{read,submit}'", "UPDATE api_keys SET expires_at = now()",
                       "UPDATE api_keys SET revoked_at = now()", "DELETE FROM api_keys"):
            await stack.execute(change)
        for _ in range(100):
            if len(heard) == 4:
                break
            await asyncio.sleep(0.01)
        assert heard == ["UPDATE", "UPDATE", "UPDATE", "DELETE"]
    finally:
        await listener.close()


async def test_an_aggregator_batch_announces_what_it_changed(stack: Stack) -> None:
    """The other half: the aggregator's transaction notifies the province trees of what it applied."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from services.aggregate.dead_letters import Message
    from services.aggregate.service import Reference, apply_messages
    from shared.catalog import load_catalog
    from shared.db import make_engine
    from shared.events import AcceptedEvent
    from shared.hierarchy import fetch_hierarchy

    heard: list[str] = []
    listener = await asyncpg.connect(plain_url(stack.database_url))
    await listener.add_listener(ROLLUPS_CHANGED, lambda *args: heard.append(args[3]))
    engine = make_engine(stack.database_url, pool_size=2)  # the batch's transaction and its quality read
    try:
        async with engine.connect() as conn:
            reference = Reference.of(await fetch_hierarchy(conn), load_catalog())
        events = [AcceptedEvent(seq, f"e{seq}", "legacy", unit, province, "cccd_issued", "2024-06",
                                Decimal(10), None, datetime.now(UTC))
                  for seq, unit, province in ((1, "27991", "80"), (2, "00004", "01"))]
        messages = [Message(0, n, e.partition_key, e.to_bytes()) for n, e in enumerate(events)]
        await apply_messages(engine, messages, list(events), reference, group="g", topic="t", epoch=None)
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.02)
        assert heard == ["legacy/01,legacy/80"]
    finally:
        await engine.dispose()
        await listener.close()


async def test_a_known_key_is_not_read_again_until_it_changes(stack: Stack, api: httpx.AsyncClient) -> None:
    def lookups(metrics: str) -> dict[str, float]:
        found = re.findall(r'^d06_query_key_lookups_total\{result="(\w+)"\} (\S+)$', metrics, re.MULTILINE)
        return {result: float(n) for result, n in found}

    for _ in range(3):
        assert (await api.get(LONG_AN)).status_code == 200
    seen = lookups((await api.get("/metrics")).text)
    assert seen["hit"] >= 2 and seen["miss"] == 1  # read once, then known
    await stack.execute("UPDATE api_keys SET roles = '{read,submit}'")  # still a reader, but a change
    for _ in range(100):  # the announcement arrives a moment after the commit
        assert (await api.get(LONG_AN)).status_code == 200
        if lookups((await api.get("/metrics")).text)["miss"] > 1:
            break
        await asyncio.sleep(0.01)
    assert (await api.get(LONG_AN)).status_code == 200
    assert lookups((await api.get("/metrics")).text)["miss"] == 2  # forgotten, read again once, known again
