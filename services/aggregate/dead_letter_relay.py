"""The dead-letter relay: copies the `dead_letters` table to the dead-letter topic, retried until it succeeds.

The batch transaction writes every dead letter to the table (the record); this task publishes the rows not
yet on the topic, oldest first, and sets `published_at` in the transaction that claimed them, only after
the broker acknowledged them: a broker that refuses or is away leaves them to the next attempt, with
back-off, and never holds up a partition. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several
replicas never publish the same letter at once. A crash between the broker's acknowledgement and the
COMMIT that marks the rows publishes them again: a letter may then be on the topic twice, never lost
(docs/reliability.md §4).

The relay does not create the topic: the deployment provisions it (its KafkaTopic) and ingest's relay
ensures it beside the events topic. A topic the broker refuses (missing where topics are not created on
first use, or a name it rejects) leaves the letters in the table until it is writable.

The consumer wakes the task after a batch commits new letters; a slow periodic pass also catches letters
left by a replica that died, and keeps the unpublished gauge current.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.aggregate import repository as repo
from services.aggregate.metrics import AggregateMetrics
from shared.db import transaction
from shared.kafka import bounded, make_producer
from shared.retry import Backoff, describe, sleep_or_stop
from shared.settings import AggregateSettings

log = logging.getLogger("d06.aggregate.dead_letters")

ROUND = 500  # letters per transaction: a burst of poison is copied in a few rounds
PUBLISH_TIMEOUT = 15.0  # a round not acknowledged by then is rolled back and retried
IDLE_SECONDS = 30.0  # the periodic pass when nobody wakes the task


class DeadLetterRelay:
    def __init__(self, settings: AggregateSettings, engine: AsyncEngine, metrics: AggregateMetrics) -> None:
        self._settings = settings  # the topic name is read at every round
        self._engine = engine
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._producer: Any = None  # AIOKafkaProducer (untyped) once the broker answered

    def wake(self) -> None:
        """Called after a batch committed new letters: copy them now rather than at the next pass."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(first=0.5, cap=10.0)
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    more = await self._round()
                except Exception as exc:  # noqa: BLE001 - broker or Postgres away: the rows wait, retry
                    log.warning("could not copy dead letters to %s (%s); retrying",
                                self._settings.dead_letter_topic, describe(exc))
                    await self._drop_producer()
                    if await sleep_or_stop(stop, backoff.next()):
                        return
                    continue
                backoff.reset()
                if not more:
                    await self._idle(stop)
        finally:
            await self._drop_producer()

    async def _round(self) -> bool:
        """Copy one round of unpublished letters; True when more may be waiting."""
        topic = self._settings.dead_letter_topic
        async with transaction(self._engine) as conn:
            waiting = await repo.count_unpublished_dead_letters(conn)
            self._metrics.dead_letters_unpublished.set(waiting)  # first: it matters most when copies fail
            claimed = await repo.claim_unpublished_dead_letters(conn, ROUND)
            if claimed.ids:
                try:
                    await bounded(self._publish(topic, claimed.records), PUBLISH_TIMEOUT)
                except Exception:
                    self._metrics.dead_letter_publish_failures.inc(len(claimed.ids))
                    raise
                await repo.mark_dead_letters_published(conn, claimed.ids)
        self._metrics.dead_letters_unpublished.set(max(waiting - len(claimed.ids), 0))
        if claimed.ids:
            log.info("copied %d dead letter(s) to %s", len(claimed.ids), topic)
        return len(claimed.ids) == ROUND

    async def _publish(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
        if self._producer is None:
            self._producer = make_producer(self._settings.kafka_bootstrap)  # kept first: a failed start is
            await self._producer.start()                                     # stopped too
        futures = [await self._producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)  # every one acknowledged, or the round fails

    async def _idle(self, stop: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(self._wake.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, timeout=IDLE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stopper.cancel()

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await bounded(producer.stop())
        except Exception as exc:  # noqa: BLE001 - closing a client of a dead broker: nothing to save
            log.warning("closing the dead-letter producer failed: %s", describe(exc))
