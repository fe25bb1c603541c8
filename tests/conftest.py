"""Real PostgreSQL and a real Kafka-protocol broker for every integration and end-to-end test.

`DATABASE_URL` / `KAFKA_BOOTSTRAP` point the suite at servers that already run (CI's PostgreSQL, a
Kafka cluster); when unset, the embedded PostgreSQL 18 and the Tansu broker are started for the session.
The schema is migrated once into a template database; each test gets its own copy (CREATE DATABASE …
TEMPLATE is a file copy) and its own topics, so tests never share state and pass in any order.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from shared.db import drop_database
from shared.devstack import LocalBroker, LocalPostgres, free_port
from shared.hierarchy import Hierarchy, read_dataset
from tests.fixtures.infra import RUN_DIR, TEMPLATE, Infra, Stack, build_template, fresh_stack


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    pg: LocalPostgres | None = None
    broker: LocalBroker | None = None
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        pg = LocalPostgres(RUN_DIR / f"pgdata-{os.getpid()}", free_port())
        pg.start()
        server_url = pg.url
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = LocalBroker(free_port(), log_path=RUN_DIR / "tansu.log")
        broker.start()
        bootstrap = broker.bootstrap
    infra = Infra(server_url, bootstrap, pg, broker)
    build_template(infra)
    try:
        yield infra
    finally:
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg.data_dir, ignore_errors=True)
        else:
            _run(drop_database(server_url, TEMPLATE))


@pytest.fixture(scope="session")
def hierarchy() -> Hierarchy:
    return Hierarchy(read_dataset())


@pytest.fixture
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    async with fresh_stack(infra) as fresh:
        yield fresh
