"""A batch through the unit of work, with poison isolation and the bookkeeping operators watch.

Validation catches what a message can be told apart by; the database may still refuse a value (a data
exception). Then the batch is split in halves, each its own transaction, until the one message that
fails stands alone and is dead-lettered: a bad message costs a few extra transactions, never a stuck
partition, and the good messages around it are applied exactly once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncEngine

from services.aggregate.dead_letters import DeadLetter, Message, Reason, dead_letter
from services.aggregate.metrics import AggregateMetrics, EventOutcome
from services.aggregate.service import BatchResult, Reference, apply_messages, is_content_error
from shared.events import AcceptedEvent
from shared.retry import describe

log = logging.getLogger("d06.aggregate.applier")

Verdicts = list[AcceptedEvent | DeadLetter]


class BatchApplier:
    def __init__(self, engine: AsyncEngine, metrics: AggregateMetrics, *, group: str, topic: str) -> None:
        self._engine = engine
        self._metrics = metrics
        self._group = group
        self._topic = topic

    async def apply(
        self, messages: list[Message], verdicts: Verdicts, reference: Reference, epoch: int | None
    ) -> list[BatchResult]:
        """Commit the batch (in several transactions if a message must be isolated), in order.

        Stops after a result whose `epoch_changed` is set: the rest belongs to a log that is gone.
        Raises on anything but a content error (Postgres away...): nothing of that part was committed.
        """
        try:
            result = await apply_messages(
                self._engine, messages, verdicts, reference, group=self._group, topic=self._topic, epoch=epoch
            )
        except Exception as exc:
            if not is_content_error(exc):
                raise
            self._metrics.batch_failures.labels("content").inc()
            if len(messages) > 1:
                half = len(messages) // 2  # a prefix of every partition: offsets stay contiguous
                first = await self.apply(messages[:half], verdicts[:half], reference, epoch)
                if first and first[-1].epoch_changed:
                    return first
                return first + await self.apply(messages[half:], verdicts[half:], reference, epoch)
            log.error("message at offset %d of partition %d fails to apply; dead-lettering it: %s",
                      messages[0].offset, messages[0].partition, describe(exc))
            letter = dead_letter(messages[0], Reason.APPLY_FAILED, describe(exc))
            result = await apply_messages(
                self._engine, messages, [letter], reference, group=self._group, topic=self._topic, epoch=epoch
            )
        if not result.epoch_changed:
            self._record(len(messages), result)
        return [result]

    def _record(self, size: int, result: BatchResult) -> None:
        m = self._metrics
        now = time.time()
        log.debug(
            "batch of %d: %d applied, %d stale, %d dead, %d redelivered, %d rows written in %.3fs",
            size, len(result.effect.applied), len(result.effect.stale), len(result.dead),
            result.redelivered, result.rows_written, result.seconds,
        )
        m.last_commit.set(now)
        m.batch_size.observe(size)
        m.batch_seconds.observe(result.seconds)
        m.rows_written.inc(result.rows_written)
        m.events.labels(EventOutcome.APPLIED.value).inc(len(result.effect.applied))
        m.events.labels(EventOutcome.STALE.value).inc(len(result.effect.stale))
        m.events.labels(EventOutcome.DEAD_LETTERED.value).inc(len(result.dead))
        m.events.labels(EventOutcome.REDELIVERED.value).inc(result.redelivered)
        for reason, count in Counter(dl.reason for dl in result.dead).items():
            m.dead_letters.labels(reason.value).inc(count)
            log.warning("dead-lettered %d message(s): %s", count, reason.value)
        # Events of one ingest request share their accepted_at: one observation per distinct instant.
        for accepted_at, count in Counter(ev.accepted_at for ev in result.effect.applied).items():
            m.freshness.observe(max(now - accepted_at.timestamp(), 0.0), count)
