"""Database plumbing shared by the services: engines, the read-only flavour, and retrying connects.

Every service talks SQL through SQLAlchemy Core on asyncpg; there is no ORM because every hot statement
is a set-based `unnest` or a `Select` that Postgres aggregates itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """`postgresql://…` as operators write it, with the asyncpg driver SQLAlchemy needs."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must start with postgresql://")


def plain_url(url: str) -> str:
    """The libpq form of a URL (for asyncpg directly, alembic and psql)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_database(server_url: str, name: str, *, template: str | None = None, replace: bool = False) -> str:
    """Create database `name` on the server of `server_url` unless it exists (`replace`: drop it first, with
    its connections), as a copy of `template` if given; returns the new database's URL. For `make run`, the
    benchmark and the tests: a deployment's database is created by its operator."""
    if replace:
        await drop_database(server_url, name)
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


async def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` if it exists, closing its connections."""
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# A connection that sat unused this long is pinged before it is handed out, as pool_pre_ping would do for
# every one: a connection returned a moment ago is alive, and the ping is a round trip on every request.
IDLE_PING_SECONDS = 1.0


def make_engine(url: str, *, pool_size: int = 10, read_only: bool = False, app: str = "d06") -> AsyncEngine:
    server_settings = {"application_name": app}
    options: dict[str, Any] = {}
    if read_only:
        # Belt and braces beside the SELECT-only role: the session itself refuses writes.
        server_settings["default_transaction_read_only"] = "on"
        # A read is one statement: no BEGIN/ROLLBACK around it, nor around the ping of a checkout.
        options["isolation_level"] = "AUTOCOMMIT"
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        # No overflow: an overflow connection is closed when it comes back to a full pool, so a steady load
        # above the pool size would open (and the server fork) a new connection for every request. Above
        # the pool size, requests wait their turn for a connection instead.
        max_overflow=0,
        pool_timeout=10,
        connect_args={"server_settings": server_settings, "timeout": 5, "command_timeout": 60},
        **options,
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """pool_pre_ping for connections idle for IDLE_PING_SECONDS: a dead one (the server restarted while it
    sat in the pool) is replaced before anyone uses it; a busy pool pays no round trip for it."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _taken(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since > IDLE_PING_SECONDS:
            try:
                dbapi_connection.ping()
            except Exception as exc:
                raise DisconnectionError("the connection did not answer a ping") from exc  # the pool retries


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """The one place a unit of work commits (or rolls back on any exception)."""
    async with engine.begin() as conn:
        yield conn


async def ping(engine: AsyncEngine, seconds: float = 3.0) -> None:
    """The readiness check of every service: one round trip to the database, bounded in time."""
    async with asyncio.timeout(seconds), engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def json_document(items: list[dict[str, object]]) -> str:
    """Rows or keys as one JSON parameter, which PostgreSQL unpacks itself (json_to_recordset): one parameter
    instead of an array per column, whose every element the driver would encode in Python."""
    return orjson.dumps(items, default=str).decode()  # default: Decimal as its exact text


def province_lock(province: str) -> str:
    """The advisory lock of one province tree (`edition/province`, the events' partition key): held by every
    transaction that writes its rollups or quality flags, so no two of them interleave."""
    return f"rollups/{province}"


async def lock_advisory(conn: AsyncConnection, names: Iterable[str]) -> None:
    """Take the transaction-scoped advisory locks of `names`, released by COMMIT or ROLLBACK.

    Always in one pass ordered by the locks' keys, whoever the caller: two transactions that take locks this
    way can never wait for each other in a cycle.
    """
    await conn.execute(
        text("""
        SELECT count(pg_advisory_xact_lock(k)) FROM (
            SELECT DISTINCT hashtextextended(n, 0) AS k FROM unnest(CAST(:names AS text[])) AS n
            ORDER BY k OFFSET 0
        ) AS ordered
        """),
        {"names": sorted(set(names))},
    )
