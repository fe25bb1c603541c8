"""One pooled connection per request at most, taken in turn.

A request's connection is checked out on first use: the key check and the data share it, and a request
that needs neither (a public read of the in-memory hierarchy) takes none.

Requests take their turn for a connection in arrival order (a fair semaphore as large as the pool can
serve them): the pool's own queue lets a newcomer take a connection returned for an older waiter, which
then queues again, and under many concurrent readers that left the slowest requests waiting several
times as long as the median (docs/performance.md, "Fair turns for a connection").
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.errors import ServiceUnavailable

CONNECTION_WAIT = 10.0  # seconds a request waits for a database connection before a 503


class Connections:
    """The engine and the turns of the requests that share its pool."""

    def __init__(self, engine: AsyncEngine, *, requests: int) -> None:
        self.engine = engine
        self.turns = asyncio.Semaphore(max(1, requests))

    def lazy(self) -> LazyConnection:
        return LazyConnection(self.engine, self.turns)


class LazyConnection:
    """The request's one pooled connection, checked out (after its turn) on the first `get`."""

    def __init__(self, engine: AsyncEngine, turns: asyncio.Semaphore) -> None:
        self._engine = engine
        self._turns = turns
        self._conn: AsyncConnection | None = None

    async def get(self) -> AsyncConnection:
        if self._conn is None:
            try:
                await asyncio.wait_for(self._turns.acquire(), CONNECTION_WAIT)
            except TimeoutError as exc:
                raise ServiceUnavailable("the service is overloaded; retry in a few seconds") from exc
            conn = self._engine.connect()
            try:
                await conn.start()
            except (OSError, TimeoutError, DBAPIError) as exc:
                self._turns.release()
                raise ServiceUnavailable("the database is not reachable; retry in a few seconds") from exc
            except BaseException:
                self._turns.release()
                raise
            self._conn = conn
        return self._conn

    async def __aenter__(self) -> LazyConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            finally:
                self._conn = None
                self._turns.release()
