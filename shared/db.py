"""Database plumbing shared by the services: engines, the read-only flavour, and retrying connects.

Every service talks SQL through SQLAlchemy Core on asyncpg; there is no ORM because every hot statement
is a set-based `unnest` or a `Select` that Postgres aggregates itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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


def make_engine(url: str, *, pool_size: int = 10, read_only: bool = False, app: str = "d06") -> AsyncEngine:
    server_settings = {"application_name": app}
    if read_only:
        # Belt and braces beside the SELECT-only role: the session itself refuses writes.
        server_settings["default_transaction_read_only"] = "on"
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"server_settings": server_settings, "timeout": 5, "command_timeout": 60},
    )


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """The one place a unit of work commits (or rolls back on any exception)."""
    async with engine.begin() as conn:
        yield conn
