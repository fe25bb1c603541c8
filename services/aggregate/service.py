"""One batch, one transaction: apply the events, store the dead letters and the offsets, commit.

Every dead letter is a row of `dead_letters` from that same COMMIT, with the message's exact bytes, whether
or not it carries a seq: the table is the record, and dead_letter_relay.py copies it to the topic.

This is the unit of work of DESIGN §1: a crash anywhere before COMMIT leaves no trace, a crash after it
leaves offsets that say exactly what was applied, so a redelivery never counts twice. The arithmetic is
rollup.py's, in memory; the database sees at most eight statements whatever the batch size, and two more
where rules and outliers are evaluated and a flag changes (quality_step.py reads what they need on a
connection of its own, while the batch applies).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.aggregate import repository as repo
from services.aggregate.dead_letters import DeadLetter, Message
from services.aggregate.quality import QualityPlan
from services.aggregate.quality_step import QualityStep, write_flags
from services.aggregate.rollup import BatchEffect, Key, ancestor_units, apply_batch, materialized_parent
from shared import indicator_presence as presence
from shared.catalog import Catalog
from shared.db import transaction
from shared.events import AcceptedEvent, announce
from shared.hierarchy import Hierarchy


@dataclass(frozen=True, slots=True)
class Reference:
    """What a batch is checked and rolled up against: the hierarchy, the catalogue and the parent relation
    of materialized rows, built once per hierarchy load."""

    hierarchy: Hierarchy
    catalog: Catalog
    parent_of: Callable[[str, str], str | None]
    quality: QualityPlan | None = None  # None: rules and outliers are not evaluated (AGGREGATE_QUALITY=false)

    @classmethod
    def of(cls, hierarchy: Hierarchy, catalog: Catalog, *, quality: bool = True) -> Reference:
        plan = QualityPlan(catalog, hierarchy) if quality else None
        return cls(hierarchy, catalog, materialized_parent(hierarchy), plan)

    def rolls_up(self, indicator: str) -> bool:
        found = self.catalog.get(indicator)
        return found.rollup if found is not None else False


class CurrentReference:
    """The Reference of the hierarchy the keeper holds: `rebuild` is its on_load, so the parent relation is
    derived once per load (and frozen with the hierarchy), never per batch."""

    def __init__(self, catalog: Catalog, *, quality: bool = True) -> None:
        self._catalog = catalog
        self._quality = quality
        self.value: Reference | None = None

    def rebuild(self, hierarchy: Hierarchy) -> None:
        self.value = Reference.of(hierarchy, self._catalog, quality=self._quality)


@dataclass(slots=True)
class BatchResult:
    epoch: int  # the topic epoch the transaction saw
    epoch_changed: bool = False  # nothing was applied: the log moved under the consumer
    effect: BatchEffect = field(default_factory=BatchEffect)
    redelivered: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    new_dead: int = 0  # rows the dead-letter relay has to copy to the topic (a replayed seq adds none)
    next_offsets: dict[int, int] = field(default_factory=dict)
    rows_written: int = 0
    seconds: float = 0.0


def is_content_error(exc: BaseException) -> bool:
    """True when the batch failed because of what a message holds, so retrying as is cannot help.

    Data exceptions (SQLSTATE class 22) and integrity violations (23) come from values; arithmetic errors
    from Decimal. Anything else (a lost connection, a missing table, a bug) is retried rather than
    allowed to dead-letter good events wholesale.
    """
    if isinstance(exc, DataError | IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(code, str) and code[:2] in ("22", "23")
    return isinstance(exc, ArithmeticError)


def keys_to_load(events: list[AcceptedEvent], reference: Reference) -> set[Key]:
    """Every row the events may touch: their own and, for indicators that roll up, their ancestors'."""
    keys: set[Key] = set()
    chains: dict[tuple[str, str], list[str]] = {}
    rolling: dict[str, bool] = {}
    for ev in events:
        keys.add(ev.key)
        rolls = rolling.get(ev.indicator)
        if rolls is None:
            rolls = rolling[ev.indicator] = reference.rolls_up(ev.indicator)
        if not rolls:
            continue
        chain = chains.get((ev.edition, ev.unit))
        if chain is None:
            chain = chains[(ev.edition, ev.unit)] = ancestor_units(ev.edition, ev.unit, reference.parent_of)
        for unit in chain:
            keys.add((ev.edition, unit, ev.indicator, ev.period))
    return keys


async def apply_messages(
    engine: AsyncEngine,
    messages: list[Message],
    verdicts: list[AcceptedEvent | DeadLetter],
    reference: Reference,
    *,
    group: str,
    topic: str,
    epoch: int | None,
) -> BatchResult:
    """Apply one batch (a prefix of each partition's pending messages) in one transaction.

    `epoch` is the topic epoch the consumer's positions belong to (None: adopt the current one). When the
    transaction finds another, it writes nothing and says so: the caller must re-read the new log.
    """
    started = time.perf_counter()
    provinces = {v.partition_key.decode() for v in verdicts if isinstance(v, AcceptedEvent)}
    async with transaction(engine) as conn:
        await repo.lock_writers(conn, group, topic, {m.partition for m in messages}, provinces)
        current, stored = await repo.read_offsets(conn, group, topic)
        result = BatchResult(epoch=current)
        if epoch is not None and current != epoch:
            result.epoch_changed = True
            return result

        # Offsets stored under this epoch are the truth about what is applied; anything below them was
        # applied by an earlier batch (ours before a retry, or another consumer's before a rebalance).
        floor = {p: s.next_offset for p, s in stored.items() if s.epoch == current}
        events: list[AcceptedEvent] = []
        for message, verdict in zip(messages, verdicts, strict=True):
            if message.offset < floor.get(message.partition, 0):
                result.redelivered += 1
                continue
            if isinstance(verdict, DeadLetter):
                result.dead.append(verdict)
            else:
                events.append(verdict)
            result.next_offsets[message.partition] = message.offset + 1

        if events:
            await _apply(conn, engine, reference, events, result)
        if result.dead:
            result.new_dead = await repo.insert_dead_letters(conn, topic, current, result.dead)
        await repo.store_offsets(conn, group, topic, current, result.next_offsets)
    result.seconds = time.perf_counter() - started
    return result


async def _apply(conn: AsyncConnection, engine: AsyncEngine, reference: Reference, events: list[AcceptedEvent],
                 result: BatchResult) -> None:
    keys = keys_to_load(events, reference)
    # The rows are asked for before the quality step plans, so that PostgreSQL looks them up meanwhile.
    loading = asyncio.ensure_future(repo.load_rows(conn, keys))
    indicators = presence.of(events)
    step: QualityStep | None = None
    try:
        if reference.quality is not None:
            await asyncio.sleep(0)  # the load is sent
            step = QualityStep(engine, reference.quality, keys, events, indicators)
        rows = await loading
        result.effect = apply_batch(events, rows, reference.parent_of, reference.rolls_up)
        if step is not None:
            step.judge(rows, result.effect)  # the checks run while PostgreSQL writes the rows
        result.rows_written = await repo.upsert_rows(conn, rows, result.effect.changed)
        # Whether or not rules are evaluated now: they may be later, and must then find every row.
        await presence.record(conn, indicators)
        if step is not None:
            verdicts, around = await step.verdicts()
            await write_flags(conn, verdicts, around.held)
    finally:
        if not loading.done():  # the step failed to plan: the transaction rolls back
            loading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await loading
        if step is not None:
            await step.close()
    await announce(conn, {f"{ev.edition}/{ev.province}" for ev in result.effect.applied})
