"""Database roles: what each service's connection may do, proven by trying it on the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.app import create_app as create_ingest
from shared.db import make_engine
from shared.dbroles import AGGREGATE_ROLE, INGEST_ROLE, QUERY_ROLE, act_as
from shared.migrate import downgrade, upgrade
from shared.settings import AggregateSettings, IngestSettings, QuerySettings
from tests.fixtures.apps import no_relay, running, serve
from tests.fixtures.infra import Stack

WRITES = {
    "insert rollups": "INSERT INTO rollups (edition, unit, indicator, period, rep_num) "
                      "VALUES ('legacy', '803', 'cccd_issued', '2024-07', 1)",
    "update rollups": "UPDATE rollups SET rep_num = 0",
    "delete rollups": "DELETE FROM rollups",
    "insert outbox": "INSERT INTO outbox (event_id, content_hash, edition, unit, province, indicator, period) "
                     "VALUES ('x', 'h', 'legacy', '803', '80', 'cccd_issued', '2024-07')",
    "update outbox": "UPDATE outbox SET published_at = now()",
    "delete outbox": "DELETE FROM outbox",
    "insert api_keys": "INSERT INTO api_keys (id, name, secret_hash, scope_code, roles) "
                       "VALUES ('000000000000', 'x', 'h', 'VN', '{admin}')",
    "update api_keys": "UPDATE api_keys SET roles = '{admin}'",
    "delete api_keys": "DELETE FROM api_keys",
    "update units": "UPDATE units SET name = 'x'",
    "update crosswalk": "UPDATE crosswalk SET basis = 'x'",
    "insert consumer_offsets": "INSERT INTO consumer_offsets VALUES ('g', 't', 0, 0, 0)",
    "read outbox": "SELECT count(*) FROM outbox",
    "read api_keys": "SELECT count(*) FROM api_keys",
    "read rollups": "SELECT count(*) FROM rollups",
    "read units": "SELECT count(*) FROM units",
    "create a table": "CREATE TABLE intruder (x int)",
    "truncate rollups": "TRUNCATE rollups",
}

# What each role may do among WRITES; everything else must be refused by the server.
ALLOWED = {
    QUERY_ROLE: {"read rollups", "read units", "read api_keys"},
    INGEST_ROLE: {"insert outbox", "update outbox", "insert api_keys", "update api_keys", "read outbox",
                  "read api_keys", "read rollups", "read units"},
    AGGREGATE_ROLE: {"insert rollups", "update rollups", "delete rollups", "insert consumer_offsets",
                     "read rollups", "read units"},
}


@asynccontextmanager
async def engine_as(stack: Stack, role: str) -> AsyncIterator[AsyncEngine]:
    engine = act_as(make_engine(stack.database_url, pool_size=1), role)
    try:
        yield engine
    finally:
        await engine.dispose()


async def attempt(engine: AsyncEngine, sql: str) -> bool:
    """Whether the statement runs; rolled back either way, so attempts never change the database."""
    async with engine.connect() as conn:
        try:
            await conn.execute(text(sql))
            return True
        except DBAPIError as exc:
            assert "permission denied" in str(exc.orig), exc
            return False
        finally:
            await conn.rollback()


@pytest.mark.parametrize("role", [QUERY_ROLE, INGEST_ROLE, AGGREGATE_ROLE])
async def test_each_role_may_do_exactly_what_its_service_needs(stack: Stack, role: str) -> None:
    async with engine_as(stack, role) as engine:
        allowed = {name for name, sql in WRITES.items() if await attempt(engine, sql)}
    assert allowed == ALLOWED[role]


async def test_the_services_connect_as_their_roles(stack: Stack) -> None:
    ingest = create_ingest(no_relay(stack))
    async with running(ingest), ingest.state.ingest.engine.connect() as conn:
        assert await conn.scalar(text("SELECT current_user")) == INGEST_ROLE
        await conn.execute(text("RESET ROLE"))  # a session's default survives a reset
        assert await conn.scalar(text("SELECT current_user")) == INGEST_ROLE
    async with serve(stack) as client:
        state = client._transport.app.state.query  # type: ignore[attr-defined]
        async with state.engine.connect() as conn:
            assert await conn.scalar(text("SELECT current_user")) == QUERY_ROLE
            # Two locks: the role, and the read-only session (which refuses before privileges are checked).
            with pytest.raises(DBAPIError, match="read-only transaction"):
                await conn.execute(text("UPDATE rollups SET rep_num = 0"))


def test_the_role_settings_default_per_service_and_refuse_garbage() -> None:
    assert IngestSettings().db_role == INGEST_ROLE
    assert AggregateSettings().db_role == AGGREGATE_ROLE
    assert QuerySettings().db_role == QUERY_ROLE
    assert QuerySettings(db_role="").db_role == ""  # log in as an already restricted role
    with pytest.raises(ValidationError):
        QuerySettings(db_role='postgres"; DROP TABLE x; --')


async def test_the_migration_grants_and_its_downgrade_revokes(stack: Stack) -> None:
    grants = "SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants " \
             "WHERE grantee LIKE 'd06\\_%'"
    assert len(await stack.fetch(grants)) == sum(len(p.split(",")) for p in _granted())
    await asyncio.to_thread(downgrade, stack.database_url, "0001")  # alembic runs its own event loop
    assert await stack.fetch(grants) == []
    # Roles are cluster-wide: other databases of this server (the test template) still use them.
    roles = await stack.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE 'd06\\_%' ORDER BY 1")
    assert [r["rolname"] for r in roles] == sorted([AGGREGATE_ROLE, INGEST_ROLE, QUERY_ROLE])
    await asyncio.to_thread(upgrade, stack.database_url)
    assert len(await stack.fetch(grants)) == sum(len(p.split(",")) for p in _granted())


def _granted() -> list[str]:
    from importlib import import_module

    migration = import_module("shared.migrations.versions.2026_11_22_0002_service_roles")
    crosswalk = import_module("shared.migrations.versions.2026_12_02_0005_crosswalk")
    imports = import_module("shared.migrations.versions.2026_12_02_0006_imports")
    quality = import_module("shared.migrations.versions.2026_12_02_0007_quality_flags")
    watermark = import_module("shared.migrations.versions.2026_12_03_0011_relay_watermark")
    presence = import_module("shared.migrations.versions.2026_12_03_0012_indicator_presence")
    return [privileges for tables in migration.GRANTS.values() for privileges in tables.values()] + [
        privileges for later in (crosswalk, imports, quality, watermark, presence)
        for privileges in later.GRANTS.values()
    ]
