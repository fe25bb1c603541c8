"""What the relay asks the broker about its topic, each call bounded (a broker that restarted can hang a client).

Careful with Metadata requests that name a topic: brokers (Tansu included) auto-create a topic they are
asked about, with their default partition count. So existence is read from the full topic list first,
and only a topic known to exist is described by name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from shared.kafka import bounded

REQUEST_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class TopicState:
    exists: bool
    partitions: int  # 0 when the topic does not exist
    all_topics: frozenset[str]  # every topic of the cluster, to spot other missing ones


async def inspect_topic(bootstrap: str, topic: str) -> TopicState:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    await bounded(admin.start())
    try:
        names = frozenset(await bounded(admin.list_topics()))
        if topic not in names:
            return TopicState(False, 0, names)
        described = await bounded(admin.describe_topics([topic]))
        return TopicState(True, len(described[0]["partitions"]), names)
    finally:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await bounded(admin.close())


async def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    await bounded(admin.start())
    try:
        await bounded(admin.delete_topics([topic]))
    finally:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await bounded(admin.close())


async def end_offsets(bootstrap: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """The broker's end offset of each partition (Tansu answers the base offset of the last batch + 1,
    so only "0" is trustworthy as "this partition holds nothing")."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=REQUEST_TIMEOUT_MS
    )
    await bounded(consumer.start())
    try:
        offsets = await bounded(consumer.end_offsets([TopicPartition(topic, p) for p in partitions]))
        return {int(tp.partition): int(offset) for tp, offset in offsets.items()}
    finally:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await bounded(consumer.stop())
