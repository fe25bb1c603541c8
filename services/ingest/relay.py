"""The relay: publishes the outbox to Kafka in seq order, and notices when the broker lost the log.

One loop per ingest process; several replicas may run, and one round at a time publishes (it holds the
topic's watermark row; the others skip their turn). A round reads the rows above the watermark that no
running writer can still precede (services/ingest/outbox.py has the rule and why it skips nothing), and
advances the watermark in the transaction that read them, only after the broker acknowledged them, so a
crash at any moment leaves them to be published again (the aggregator applies by seq, so a duplicate on
the topic is harmless). Kafka being down only makes the loop back off: the events wait in the outbox.

Broker loss (DESIGN §5): `relay_offsets` keeps, per partition, the offset after the last record the relay
produced. The log is known lost when a produced record gets a lower offset than that, when the topic is
gone or has fewer partitions than were produced to, or when a partition we produced to is empty. Then
`outbox.recover_lost_log` bumps the topic epoch (the aggregator re-reads the new log from its start) and
moves the watermark back below the oldest event not yet applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest import outbox
from services.ingest.broker import delete_topic, end_offsets, inspect_topic
from services.ingest.metrics import IngestMetrics
from shared.db import transaction
from shared.kafka import bounded, ensure_topics, make_producer
from shared.retry import Backoff, describe
from shared.settings import IngestSettings

log = logging.getLogger("d06.ingest.relay")

PRODUCE_TIMEOUT = 15.0  # a batch not acknowledged by then is rolled back and retried
TOPIC_CHECK_SECONDS = 5.0
BACKLOG_EVERY_SECONDS = 1.0
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 10.0


class LogLost(Exception):
    """The broker no longer holds what the relay produced to the topic."""


class Relay:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: IngestSettings,
        metrics: IngestMetrics,
        *,
        topic_check_seconds: float = TOPIC_CHECK_SECONDS,
        produce_timeout: float = PRODUCE_TIMEOUT,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.topic_check_seconds = topic_check_seconds  # read at every round: may be changed live
        self.produce_timeout = produce_timeout
        self.wake = asyncio.Event()  # set by POST /v1/events after its commit
        self.reached_broker = False  # for /readyz: the broker answered at least once since start
        self._stopping = False
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()  # clear while a batch is in hand
        self._idle.set()
        self._producer: AIOKafkaProducer | None = None
        self._checked_at = -math.inf  # monotonic time of the last look at the topic; -inf: look at once
        self._backlog_due = 0.0
        self._stage = "topics"
        self._told_partitions = False

    @property
    def topics(self) -> list[str]:
        return [self.settings.events_topic, self.settings.dead_letter_topic]

    async def run(self) -> None:
        backoff = Backoff(first=BACKOFF_FIRST, cap=BACKOFF_CAP)
        while not self._stopping:
            try:
                more = await self._step()
                backoff.reset()
            except (KafkaError, OSError, TimeoutError, SQLAlchemyError) as exc:
                await self._failed(exc, unexpected=False)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any single failure
                await self._failed(exc, unexpected=True)
            else:
                if not more:
                    await self._pause(self.settings.relay_idle_seconds, wakeable=True)
                continue
            await self._pause(backoff.next(), wakeable=False)

    async def shutdown(self, task: asyncio.Task[None]) -> None:
        """Finish the batch in hand (published and the watermark advanced, or rolled back on timeout), then
        stop."""
        self._stopping = True
        self._stop.set()
        self.wake.set()
        if not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.produce_timeout + 5)
        task.cancel()  # only ever interrupts a sleep, a topic check or a rolled-back batch
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._drop_producer()

    async def _step(self) -> bool:
        """One round; True when there is more to publish at once."""
        if time.monotonic() >= self._backlog_due:
            await self._refresh_backlog()  # first: the backlog matters most while Kafka is down
        if self._producer is None or time.monotonic() >= self._checked_at + self.topic_check_seconds:
            await self._check_log()
        if self._producer is None:
            self._stage = "broker"
            self._producer = make_producer(self.settings.kafka_bootstrap)
            await bounded(self._producer.start())
        if self._stopping:
            return False
        try:
            return await self._publish_batch()
        except LogLost as exc:
            await self._recover(str(exc))
            return True

    async def _publish_batch(self) -> bool:
        self._idle.clear()
        try:
            started = time.perf_counter()
            topic = self.settings.events_topic
            self._stage = "database"
            async with transaction(self.engine) as conn:
                batch = await outbox.begin_round(conn, topic, self.settings.relay_batch)
                if batch is None or batch.up_to == batch.watermark:
                    return False  # another replica's relay is in a round, or nothing new is committed
                if batch.seqs:
                    produced_up_to = await outbox.relay_offsets(conn, topic)
                    self._stage = "broker"
                    placed = await bounded(self._produce(batch.messages), self.produce_timeout)
                    # Offsets only grow in a log: one below what we had produced means a new, empty log.
                    for partition, (lowest, _) in placed.items():
                        if lowest < produced_up_to.get(partition, 0):
                            raise LogLost(f"partition {partition} took offset {lowest}, below the "
                                          f"{produced_up_to[partition]} already produced")
                    self._stage = "database"
                    await outbox.advance_relay_offsets(conn, topic, {p: after for p, (_, after) in placed.items()})
                await outbox.advance_watermark(conn, topic, batch.up_to)
            self.metrics.published.inc(len(batch.seqs))
            self.metrics.relay_batch_seconds.observe(time.perf_counter() - started)
            return batch.full
        finally:
            self._idle.set()

    async def _produce(self, messages: list[tuple[bytes, bytes]]) -> dict[int, tuple[int, int]]:
        """Send every (key, value), then wait for every acknowledgement: {partition: (lowest offset taken,
        offset after the last)}.

        Messages go out as one record batch per partition (more when one fills up), in seq order within
        each: a send per message costs far more CPU, spent mostly on one future per message. Keys
        go to the partitions aiokafka's default partitioner would choose (murmur2 of the key), computed
        once per key: a batch has a few dozen keys (one per province) for thousands of messages.
        """
        producer = self._producer
        if producer is None:
            raise KafkaError("no producer")
        topic = self.settings.events_topic
        partitions = sorted(await bounded(producer.partitions_for(topic)))
        partition_of: dict[bytes, int] = {}
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in messages:
            partition = partition_of.get(key)
            if partition is None:
                partition = partition_of[key] = DefaultPartitioner()(key, partitions, partitions)
            by_partition.setdefault(partition, []).append((key, value))
        sent: list[tuple[int, int, asyncio.Future[Any]]] = []  # (partition, records, acknowledgement)
        try:
            for partition, records in by_partition.items():
                batch, count = producer.create_batch(), 0
                for key, value in records:
                    if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start one
                        sent.append((partition, count, await producer.send_batch(batch, topic, partition=partition)))
                        batch, count = producer.create_batch(), 0
                        batch.append(key=key, value=value, timestamp=None)
                    count += 1
                sent.append((partition, count, await producer.send_batch(batch, topic, partition=partition)))
            acknowledged = await asyncio.gather(*(future for _, _, future in sent))
        except BaseException:
            for _, _, future in sent:  # nobody will read them: no "exception never retrieved" noise
                future.cancel()
            raise
        placed: dict[int, tuple[int, int]] = {}
        for (partition, count, _), meta in zip(sent, acknowledged, strict=True):
            first, after = int(meta.offset), int(meta.offset) + count
            lowest, highest = placed.get(partition, (first, after))
            placed[partition] = (min(lowest, first), max(highest, after))
        return placed

    async def _check_log(self) -> None:
        """Create missing topics, and look for signs that the broker lost what we produced."""
        bootstrap, topic = self.settings.kafka_bootstrap, self.settings.events_topic
        self._stage = "topics"
        state = await inspect_topic(bootstrap, topic)
        self.reached_broker = True
        self._stage = "database"
        async with self.engine.connect() as conn:
            produced = {p: n for p, n in (await outbox.relay_offsets(conn, topic)).items() if n > 0}
        self._stage = "topics"
        lost = None
        if produced and not state.exists:
            lost = "the topic is gone"
        elif produced and max(produced) >= state.partitions:
            lost = f"the topic has {state.partitions} partitions; we had produced to partition {max(produced)}"
        elif produced:
            ends = await end_offsets(bootstrap, topic, produced)
            emptied = sorted(p for p in produced if ends.get(p, 0) == 0)
            if emptied:
                lost = f"partition(s) {emptied} hold nothing, though records were produced to them"
        if lost:
            await self._recover(lost)
            return
        if state.exists and state.partitions != self.settings.topic_partitions and not self._told_partitions:
            self._told_partitions = True
            log.warning("relay: %s has %d partitions, settings say %d; keeping the topic as it is",
                        topic, state.partitions, self.settings.topic_partitions)
        if any(t not in state.all_topics for t in self.topics):
            await self._ensure_topics()
        self._checked_at = time.monotonic()

    async def _ensure_topics(self) -> None:
        s = self.settings
        await bounded(ensure_topics(s.kafka_bootstrap, self.topics, s.topic_partitions, s.topic_replication), 30)

    async def _recover(self, why: str) -> None:
        bootstrap, topic = self.settings.kafka_bootstrap, self.settings.events_topic
        log.error("relay: the broker lost the log of %s (%s); republishing what is not applied", topic, why)
        await self._drop_producer()  # its metadata describes the lost topic
        self._stage = "topics"
        state = await inspect_topic(bootstrap, topic)
        if state.exists and state.partitions != self.settings.topic_partitions:
            # Re-created by some client's metadata request with the broker's default partition count;
            # it holds nothing we keep, and keys must map to partitions as configured.
            await delete_topic(bootstrap, topic)
        await self._ensure_topics()
        self._stage = "database"
        async with transaction(self.engine) as conn:
            recovery = await outbox.recover_lost_log(conn, topic)
        self.metrics.log_losses.inc()
        self.metrics.requeued.inc(recovery.requeued)
        log.warning("relay: %s is now at epoch %d; %d event(s) queued for republication",
                    topic, recovery.epoch, recovery.requeued)
        self._checked_at = time.monotonic()

    async def _refresh_backlog(self) -> None:
        self._stage = "database"
        async with self.engine.connect() as conn:
            count, age = await outbox.backlog(conn, self.settings.events_topic)
        self.metrics.backlog.set(count)
        self.metrics.oldest_age.set(age)
        self._backlog_due = time.monotonic() + BACKLOG_EVERY_SECONDS

    async def _failed(self, exc: BaseException, *, unexpected: bool) -> None:
        self.metrics.relay_errors.labels(self._stage).inc()
        if unexpected:
            log.exception("relay: unexpected error at stage %s; backing off", self._stage)
        else:
            log.warning("relay: %s failed (%s); backing off", self._stage, describe(exc))
        if self._stage != "database":
            self._checked_at = -math.inf  # after a broker error, look at the topic before producing again
            await self._drop_producer()  # a fresh client: no stale metadata, no half-sent batch

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await bounded(producer.stop(), 5)

    async def _pause(self, seconds: float, *, wakeable: bool) -> None:
        """Sleep; a new batch wakes an idle relay, but not one backing off from an error."""
        event = self.wake if wakeable else self._stop
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        if wakeable:
            self.wake.clear()
