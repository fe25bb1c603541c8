"""Kafka helpers shared by the relay and the aggregator: explicit topics and bounded broker calls.

Topics are created explicitly at start-up (a topic auto-created by a producer after a broker restart
would get the broker's default partition count), and no broker call is ever awaited without a timeout:
a client that lived through a broker restart can otherwise hang forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger("d06.kafka")

T = TypeVar("T")

BROKER_TIMEOUT = 10.0


async def bounded(awaitable: Awaitable[T], seconds: float = BROKER_TIMEOUT) -> T:
    return await asyncio.wait_for(awaitable, seconds)


async def existing_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await bounded(admin.start())
    try:
        return set(await bounded(admin.list_topics()))
    finally:
        await bounded(admin.close())


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int, replication: int = 1) -> bool:
    """Create the topics that are missing; True if any had to be created (the log is new)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await bounded(admin.start())
    try:
        present = set(await bounded(admin.list_topics()))
        missing = [t for t in topics if t not in present]
        if missing:
            # TopicAlreadyExists: another replica won the race, with the same outcome.
            with contextlib.suppress(TopicAlreadyExistsError):
                await bounded(
                    admin.create_topics(
                        [NewTopic(t, num_partitions=partitions, replication_factor=replication) for t in missing]
                    )
                )
            log.info("created topics %s with %d partitions", missing, partitions)
        return bool(missing)
    finally:
        await bounded(admin.close())


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    # Not idempotent on purpose: Tansu rejects InitProducerId, and exactly-once comes from seq in Postgres.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=1024 * 1024,
        request_timeout_ms=10000,
        metadata_max_age_ms=5000,
    )
