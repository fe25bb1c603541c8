"""One error shape everywhere, with the request id in the body, the header and the logs; nothing internal
ever reaches a client; and the limits (rate, body size) answer with their own problem types."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import services.ingest.api
from services.ingest.app import create_app
from services.query.app import create_app as create_query
from shared.settings import QuerySettings
from tests.fixtures.apps import auth, no_relay, running, serve
from tests.fixtures.infra import Stack

EVENT = {"unit": "803", "indicator": "cccd_issued", "period": "2024-07", "value": 1}
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}
# What must never appear in an answer: the database's words, the code's, a trace.
LEAKS = ("Traceback", "sqlalchemy", "asyncpg", "psycopg", "SELECT", "INSERT", "relation", "permission denied",
         "outbox", "rollups", "api_keys", "d06_query", "d06_ingest", "Error:", "Exception", ".py", "line ")


def assert_problem(response: httpx.Response, status: int, slug: str, caplog: pytest.LogCaptureFixture) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_FIELDS and body["status"] == status
    assert body["type"] == f"https://d06.gov.vn/problems/{slug}"
    request_id = response.headers["x-request-id"]
    assert body["request_id"] == request_id
    assert any(request_id in record.getMessage() for record in caplog.records), "the request id is not logged"


def assert_no_leak(response: httpx.Response) -> None:
    for word in LEAKS:
        assert word not in response.text, f"{word!r} leaked: {response.text}"


async def test_a_database_failure_in_ingest_is_a_bare_500(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    key = await stack.create_key()
    caplog.set_level(logging.INFO)
    async with running(create_app(no_relay(stack))) as client:
        await stack.execute("ALTER TABLE outbox RENAME TO outbox_gone")
        response = await client.post("/v1/events", json={"events": [EVENT]}, headers=auth(key))
        assert_problem(response, 500, "internal-error", caplog)
        assert_no_leak(response)
        # The operator's side has it all, under the same request id: the trace and the SQL error.
        logged = [r for r in caplog.records if r.levelno >= logging.ERROR and response.headers["x-request-id"]
                  in r.getMessage()]
        assert logged and logged[0].exc_info is not None


async def test_a_database_failure_in_query_is_a_bare_500(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    key = await stack.create_key(roles=("read",))
    caplog.set_level(logging.INFO)
    async with serve(stack) as client:
        await stack.execute("REVOKE SELECT ON rollups FROM d06_query")
        response = await client.get("/v1/units/803/values", params={"period": "2024-07"}, headers=auth(key))
        assert_problem(response, 500, "internal-error", caplog)
        assert_no_leak(response)


async def test_an_unexpected_exception_is_a_bare_500(
    stack: Stack, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await stack.create_key()
    caplog.set_level(logging.INFO)

    async def broken(*args: Any) -> None:
        raise RuntimeError("internal detail: /srv/d06/secret.py line 42")

    monkeypatch.setattr(services.ingest.api, "event_status_row", broken)
    async with running(create_app(no_relay(stack))) as client:
        response = await client.get("/v1/events/e-1", headers=auth(key) | {"X-Request-ID": "support-1234"})
        assert_problem(response, 500, "internal-error", caplog)
        assert response.json()["request_id"] == "support-1234"  # a client's own id is kept when it is plain
        assert "secret" not in response.text and "internal detail" not in response.text


async def test_every_error_of_both_services_has_the_one_shape(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    key = await stack.create_key()
    reader = await stack.create_key(roles=("read",))
    caplog.set_level(logging.INFO)
    async with running(create_app(no_relay(stack, max_body_bytes=4096))) as ingest:
        for response, status, slug in [
            (await ingest.post("/v1/events", content=b"{", headers=auth(key)), 400, "malformed-json"),
            (await ingest.post("/v1/events", json={"events": [EVENT]}), 401, "unauthorized"),
            (await ingest.post("/v1/events", json={"events": [EVENT]}, headers=auth(reader)), 403, "forbidden"),
            (await ingest.get("/v1/nothing-here"), 404, "not-found"),
            (await ingest.put("/v1/events", headers=auth(key)), 405, "method-not-allowed"),
            (await ingest.post("/v1/events", content=b" " * 5000, headers=auth(key)), 413, "payload-too-large"),
            (await ingest.post("/v1/admin/keys", content=b" " * 5000, headers=auth(key)), 413, "payload-too-large"),
            (await ingest.post("/v1/admin/keys", content=_chunks(5000), headers=auth(key)), 413, "payload-too-large"),
            (await ingest.post("/v1/admin/keys", json={"name": 1}, headers=auth(key)), 422, "validation-error"),
        ]:
            assert_problem(response, status, slug, caplog)
    async with serve(stack) as query:
        for response, status, slug in [
            (await query.get("/v1/indicators"), 401, "unauthorized"),
            (await query.get("/v1/units/936", headers=auth(reader) | {"X-Request-ID": "bad id\twith tab"}),
             404, "not-found"),
            (await query.get("/v1/units/803/values", headers=auth(reader)), 422, "validation-error"),
            (await query.post("/v1/indicators", headers=auth(reader)), 405, "method-not-allowed"),
            (await query.request("GET", "/v1/indicators", content=b" " * 70_000, headers=auth(reader)),
             413, "payload-too-large"),
        ]:
            assert_problem(response, status, slug, caplog)
            assert_no_leak(response)
        assert response.headers["x-request-id"] != "bad id\twith tab"


async def _chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 500):
        yield b" " * 500


async def test_readiness_failures_are_problems_without_internal_names(stack: Stack) -> None:
    await stack.execute("ALTER TABLE units RENAME TO units_gone")
    async with serve_unready(stack) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503 and response.headers["content-type"] == "application/problem+json"
        assert response.json()["failing"] == {"hierarchy": "not ready"}
        assert_no_leak(response)


@asynccontextmanager
async def serve_unready(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The query service started, without waiting for it to be ready."""
    app = create_query(stack.settings(QuerySettings))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_ingest_rate_limit_per_key(stack: Stack) -> None:
    first, second = await stack.create_key(), await stack.create_key()
    async with running(create_app(no_relay(stack, rate_limit=0.5, rate_burst=2))) as client:
        statuses = [(await client.get("/v1/events/e-1", headers=auth(first))).status_code for _ in range(3)]
        assert statuses == [404, 404, 429]
        limited = await client.post("/v1/events", json={"events": [EVENT]}, headers=auth(first))
        assert limited.status_code == 429 and limited.json()["type"].endswith("/rate-limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        assert (await client.get("/v1/events/e-1", headers=auth(second))).status_code == 404  # its own bucket
    assert await stack.fetch("SELECT 1 FROM outbox") == []


async def test_query_rate_limit_per_key_and_per_address_for_public_reads(stack: Stack) -> None:
    first, second = await stack.create_key(roles=("read",)), await stack.create_key(roles=("read",))
    async with serve(stack, rate_limit=1, rate_burst=3) as client:
        statuses = [(await client.get("/v1/indicators", headers=auth(first))).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert (await client.get("/v1/indicators", headers=auth(second))).status_code == 200
    async with serve(stack, anonymous_read=True, rate_limit=1, rate_burst=2) as client:
        statuses = [(await client.get("/v1/indicators")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert int((await client.get("/v1/indicators")).headers["retry-after"]) >= 1
