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
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shared.auth import create_key
from shared.db import create_database, drop_database, make_engine, transaction
from shared.devstack import LocalBroker, LocalPostgres, free_port
from shared.hierarchy import Hierarchy, read_dataset
from shared.migrate import load_reference_data, upgrade
from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / ".run" / "test"
# Per test session: parallel sessions (a developer's and CI's, or pytest-xdist workers) never collide.
TEMPLATE = f"d06_template_{os.getpid()}"

S = TypeVar("S", bound=CommonSettings)


@dataclass
class Infra:
    server_url: str  # a superuser URL on the server (database part replaced per test)
    kafka_bootstrap: str
    pg: LocalPostgres | None = None
    broker: LocalBroker | None = None

    def url_for(self, database: str) -> str:
        base, _, _ = self.server_url.rpartition("/")
        return f"{base}/{database}"


@dataclass
class Stack:
    infra: Infra
    database_url: str
    kafka_bootstrap: str
    events_topic: str
    dead_letter_topic: str
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)

    def settings(self, cls: type[S], **overrides: Any) -> S:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": self.database_url,
            "kafka_bootstrap": self.kafka_bootstrap,
            "events_topic": self.events_topic,
            "dead_letter_topic": self.dead_letter_topic,
            "topic_partitions": self.partitions,
            **overrides,
        }
        return cls(**values)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "D06_ENV": "test",
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "D06_EVENTS_TOPIC": self.events_topic,
            "D06_DEAD_LETTER_TOPIC": self.dead_letter_topic,
            "D06_TOPIC_PARTITIONS": str(self.partitions),
            **self.extra_env,
        }

    async def create_key(
        self,
        scope: str = "VN",
        edition: str | None = None,
        roles: tuple[str, ...] = ("submit", "read", "admin"),
        **kwargs: Any,
    ) -> str:
        engine = make_engine(self.database_url, pool_size=1)
        try:
            async with transaction(engine) as conn:
                _, key = await create_key(
                    conn, name=kwargs.pop("name", "test"), scope_code=scope, scope_edition=edition,
                    roles=list(roles), **kwargs,
                )
            return key
        finally:
            await engine.dispose()


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


def build_template(infra: Infra) -> None:
    """The migrated schema with both hierarchy editions and the catalogue, copied by every test."""
    _run(create_database(infra.server_url, TEMPLATE, replace=True))
    upgrade(infra.url_for(TEMPLATE))
    _run(load_reference_data(infra.url_for(TEMPLATE)))




@pytest.fixture(scope="session")
def hierarchy() -> Hierarchy:
    return Hierarchy(read_dataset())


@pytest.fixture
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    name = f"d06_t_{uuid.uuid4().hex[:12]}"
    await create_database(infra.server_url, name, template=TEMPLATE)
    topic = f"t{uuid.uuid4().hex[:10]}"
    yield Stack(
        infra=infra,
        database_url=infra.url_for(name),
        kafka_bootstrap=infra.kafka_bootstrap,
        events_topic=f"{topic}.events",
        dead_letter_topic=f"{topic}.dead",
    )
    await drop_database(infra.server_url, name)
