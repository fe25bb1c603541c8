"""The consumer loop: Kafka in, one Postgres transaction per batch, offsets stored with the effects.

Kafka's own offset commits are not used at all (STYLE §12, aiokafka docs/consumer.rst "local state"):
the offsets live in `consumer_offsets`, written by the transaction that applies the batch, and every
assignment seeks to them. So a crash, a rebalance or a redelivery can never apply a message twice or
skip one, and no call can hang in `commit()` against a broker that restarted under us.

The log itself may be lost (Tansu keeps it in memory; DESIGN §5). The relay then bumps the topic's
epoch and republishes from the outbox; offsets are stored with the epoch they belong to, and a consumer
that sees the epoch move re-reads the new log from its beginning. Re-reading is harmless: an event whose
seq is not above the stored one changes nothing.

While one batch's transaction waits on Postgres, the next batch is fetched and parsed (the loop is
CPU-bound in Python and I/O-bound in Postgres; overlapping them is most of the throughput). A batch read
ahead is only ever thrown away together with a seek back to its first offsets, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.aggregate import repository as repo
from services.aggregate.applier import BatchApplier, Verdicts
from services.aggregate.dead_letters import Message, classify, needs_fresher_hierarchy, recheck
from services.aggregate.metrics import AggregateMetrics
from services.aggregate.service import CurrentReference, Reference
from shared.hierarchy_keeper import HierarchyKeeper
from shared.kafka import bounded, ensure_topics
from shared.retry import Backoff, describe, sleep_or_stop
from shared.settings import AggregateSettings

log = logging.getLogger("d06.aggregate.consumer")

T = TypeVar("T")

POLL_MS = 200  # how long getmany waits for a first record; records already buffered come at once
BROKER_TIMEOUT = 15.0  # any single broker call (start, stop, seek, publish); none is awaited unbounded
# getmany also waits out a rebalance in progress: 5 s on Tansu, and up to the session timeout more when
# a member of generation 0 went away (aiokafka sends no LeaveGroup for generation 0).
GETMANY_TIMEOUT = 60.0
IDLE_EPOCH_CHECK_SECONDS = 2.0


class BrokerTrouble(Exception):
    """The consumer's position can no longer be trusted: drop the connection and let assignment re-seek."""


class _Stopping(Exception):
    """Shutdown came while waiting on the broker with no batch in hand: nothing to finish."""


async def _unless_stopped(stop: asyncio.Event, awaitable: Awaitable[T]) -> T:
    """Await, but give up as soon as `stop` is set (only for waits that hold no uncommitted work)."""
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise _Stopping


class Fetched(NamedTuple):
    messages: list[Message]
    verdicts: Verdicts
    reference: Reference


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Positions every newly assigned partition at the offset stored beside the rollups."""

    def __init__(self, owner: Aggregator, consumer: Any) -> None:
        self._owner = owner
        self._consumer = consumer  # its own, not the owner's current one: a reconnect may replace that

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._owner.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._owner.seek_to_stored(self._consumer, assigned)


class Aggregator:
    def __init__(
        self,
        settings: AggregateSettings,
        engine: AsyncEngine,
        keeper: HierarchyKeeper,
        reference: CurrentReference,
        metrics: AggregateMetrics,
        *,
        on_dead_letters: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._keeper = keeper
        self._reference = reference  # rebuilt by the keeper's on_load
        self._metrics = metrics
        self._on_dead_letters = on_dead_letters  # after a commit that stored new ones: the relay copies them
        self._applier = BatchApplier(engine, metrics, group=settings.consumer_group, topic=settings.events_topic)
        self._consumer: Any = None  # AIOKafkaConsumer (untyped) while connected
        self._epoch: int | None = None  # the topic epoch our positions belong to; None: adopt the current
        self._positions: dict[int, int] = {}  # partition -> next offset to apply, for the lag gauge

    def assigned_partitions(self) -> set[int]:
        """For /readyz: connected to the broker and holding partitions."""
        if self._consumer is None:
            return set()
        return {tp.partition for tp in self._consumer.assignment()}

    # ---- the supervisor

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; reconnect to the broker with back-off whenever it fails."""
        if await self._keeper.wait_loaded(stop) is None:
            return
        backoff = Backoff()
        while not stop.is_set():
            try:
                await _unless_stopped(stop, self._connect())
                await self._consume(stop, backoff)
            except _Stopping:
                pass
            except Exception as exc:  # noqa: BLE001 - a broker failure: reconnect rather than die
                log.warning("consumer stopped (%s); reconnecting", describe(exc))
            finally:
                await self._disconnect()
            if stop.is_set() or await sleep_or_stop(stop, backoff.next()):
                return

    async def _connect(self) -> None:
        s = self._settings
        # Not the dead-letter topic: a broker refusing it must not stop the consumer (dead_letter_relay.py).
        await bounded(
            ensure_topics(s.kafka_bootstrap, [s.events_topic], s.topic_partitions, s.topic_replication),
            2 * BROKER_TIMEOUT,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.consumer_group,
            client_id="d06-aggregate",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.max_batch,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            metadata_max_age_ms=5000,
            request_timeout_ms=max(10000, s.session_timeout_ms + 5000),
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
        )
        await bounded(self._consumer.start(), BROKER_TIMEOUT)
        self._consumer.subscribe([s.events_topic], listener=_SeekToStored(self, self._consumer))
        log.info("consuming %s as group %s", s.events_topic, s.consumer_group)

    async def _disconnect(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._positions.clear()
        if consumer is None:
            return
        try:
            await bounded(consumer.stop(), BROKER_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - closing a client of a dead broker: nothing to save
            log.warning("closing the Kafka consumer failed: %s", describe(exc))

    # ---- the loop

    async def _consume(self, stop: asyncio.Event, backoff: Backoff) -> None:
        retry = Backoff()
        last_epoch_check = time.monotonic()
        ahead: asyncio.Task[Fetched] | None = None
        try:
            while not stop.is_set():
                source, ahead = (ahead if ahead is not None else self._fetch()), None
                batch = await _unless_stopped(stop, source)
                if not batch.messages:
                    self._update_lag()
                    if time.monotonic() - last_epoch_check > IDLE_EPOCH_CHECK_SECONDS:
                        last_epoch_check = time.monotonic()
                        await self._check_epoch_when_idle()
                    continue
                backoff.reset()  # the broker delivers: a later broker failure starts its back-off afresh
                ahead = asyncio.create_task(self._fetch())
                try:
                    results = await self._applier.apply(batch.messages, batch.verdicts, batch.reference, self._epoch)
                except Exception as exc:  # noqa: BLE001 - transient (Postgres away...): roll back, retry
                    await self._discard(ahead)
                    ahead = None
                    self._metrics.batch_failures.labels("transient").inc()
                    log.warning("batch of %d messages rolled back (%s); retrying from its first offsets",
                                len(batch.messages), describe(exc))
                    self._seek_to_first(batch.messages)
                    if await sleep_or_stop(stop, retry.next()):
                        return
                    continue
                retry.reset()
                if results and results[-1].epoch_changed:
                    await self._discard(ahead)
                    ahead = None
                    await self._switch_epoch(results[-1].epoch)
                    continue
                if self._epoch is None and results:
                    self._epoch = results[-1].epoch
                    self._metrics.epoch.set(self._epoch)
                for message in batch.messages:
                    self._positions[message.partition] = message.offset + 1
                self._update_lag()
                if any(r.new_dead for r in results):
                    self._on_dead_letters()
        finally:
            if ahead is not None:  # leaving: the next assignment seeks to the stored offsets anyway
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead

    async def _fetch(self) -> Fetched:
        fetched = await bounded(
            self._consumer.getmany(timeout_ms=POLL_MS, max_records=self._settings.max_batch), GETMANY_TIMEOUT
        )
        messages = [Message(tp.partition, r.offset, r.key, r.value) for tp, records in fetched.items() for r in records]
        reference = self._reference.value
        assert reference is not None  # run() waited for the first load
        verdicts = classify(messages, reference.hierarchy, reference.catalog)
        if needs_fresher_hierarchy(verdicts) and await self._keeper.refresh_soon() is not None:
            fresher = self._reference.value
            assert fresher is not None
            if fresher is not reference:
                reference = fresher
                verdicts = recheck(messages, verdicts, reference.hierarchy, reference.catalog)
        return Fetched(messages, verdicts, reference)

    async def _discard(self, ahead: asyncio.Task[Fetched]) -> None:
        """Drop a batch read ahead, rewinding to its first offsets: the consumer already moved past it.

        It is awaited, not cancelled: a fetch cancelled just as getmany returns would lose records that
        the consumer's position has already passed (asyncio.wait_for's race), and they would be skipped.
        """
        try:
            batch = await ahead
        except Exception as exc:
            raise BrokerTrouble(f"a fetch failed ({describe(exc)})") from exc
        self._seek_to_first(batch.messages)

    # ---- positions and epochs

    async def seek_to_stored(self, consumer: Any, assigned: set[TopicPartition]) -> None:
        s = self._settings
        try:
            async with self._engine.connect() as conn:
                current, stored = await bounded(repo.read_offsets(conn, s.consumer_group, s.events_topic), 10)
        except Exception as exc:  # noqa: BLE001 - the batch transaction re-checks offsets anyway
            log.warning("cannot read stored offsets (%s); reading from the beginning, skipping what is applied",
                        describe(exc))
            self._epoch = None
            return
        self._epoch = current
        self._metrics.epoch.set(current)
        for tp in assigned:
            found = stored.get(tp.partition)
            # No stored offset (or one from a lost log): no Kafka commit either, so auto_offset_reset
            # ("earliest") starts the partition from its beginning.
            if found is not None and found.epoch == current:
                try:
                    consumer.seek(tp, found.next_offset)
                except IllegalStateError:  # revoked again meanwhile: the next assignment seeks
                    return
                self._positions[tp.partition] = found.next_offset
        log.info("assigned partitions %s at epoch %d", sorted(tp.partition for tp in assigned), current)

    def forget(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._positions.pop(tp.partition, None)
            with contextlib.suppress(KeyError):
                self._metrics.lag.remove(str(tp.partition))

    async def _switch_epoch(self, epoch: int) -> None:
        log.warning(
            "topic %s is now at epoch %s (the broker lost its log): re-reading it from the beginning",
            self._settings.events_topic, epoch,
        )
        self._epoch = epoch
        self._metrics.epoch.set(epoch)
        self._metrics.epoch_changes.inc()
        self._positions.clear()
        assigned = self._consumer.assignment() if self._consumer is not None else set()
        if not assigned:
            return
        try:
            await bounded(self._consumer.seek_to_beginning(*assigned), BROKER_TIMEOUT)
        except Exception as exc:
            # Positions still point into the old log: continuing could store them under the new epoch.
            raise BrokerTrouble(f"cannot seek to the beginning of the new log: {describe(exc)}") from exc

    async def _check_epoch_when_idle(self) -> None:
        """A consumer positioned past the end of a smaller new log would otherwise wait forever."""
        if self._epoch is None:
            return
        try:
            async with self._engine.connect() as conn:
                current = await bounded(repo.current_epoch(conn, self._settings.events_topic), 5)
        except Exception as exc:  # noqa: BLE001 - Postgres away: the next batch will tell
            log.debug("epoch check failed: %s", describe(exc))
            return
        if current != self._epoch:
            await self._switch_epoch(current)

    def _seek_to_first(self, messages: list[Message]) -> None:
        if self._consumer is None:
            return
        first: dict[int, int] = {}
        for message in messages:
            first.setdefault(message.partition, message.offset)
        for tp in self._consumer.assignment():
            if tp.partition in first:
                self._consumer.seek(tp, first[tp.partition])

    def _update_lag(self) -> None:
        if self._consumer is None:
            return
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            position = self._positions.get(tp.partition)
            if high is not None and position is not None:
                self._metrics.lag.labels(str(tp.partition)).set(max(high - position, 0))
