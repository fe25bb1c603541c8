"""One batch, one transaction: apply the events, store the dead letters and the offsets, commit.

This is the unit of work of DESIGN §1: a crash anywhere before COMMIT leaves no trace, a crash after it
leaves offsets that say exactly what was applied, so a redelivery never counts twice. The arithmetic is
rollup.py's, in memory; the database sees at most seven statements whatever the batch size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.aggregate import repository as repo
from services.aggregate.rollup import Key, Outcome, ancestor_units, apply_batch, materialized_parent
from services.aggregate.validation import DeadLetter, Message
from shared.catalog import Catalog
from shared.db import transaction
from shared.events import AcceptedEvent
from shared.hierarchy import Hierarchy


@dataclass(frozen=True, slots=True)
class Tree:
    """The hierarchy and catalogue as the roll-up consults them, built once per hierarchy load."""

    hierarchy: Hierarchy
    catalog: Catalog
    parent_of: Callable[[str, str], str | None]

    @classmethod
    def of(cls, hierarchy: Hierarchy, catalog: Catalog) -> Tree:
        return cls(hierarchy, catalog, materialized_parent(hierarchy))

    def rolls_up(self, indicator: str) -> bool:
        found = self.catalog.get(indicator)
        return found.rollup if found is not None else False


@dataclass(slots=True)
class BatchResult:
    epoch: int  # the topic epoch the transaction saw
    epoch_changed: bool = False  # nothing was applied: the log moved under the consumer
    outcome: Outcome = field(default_factory=Outcome)
    redelivered: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    new_dead: list[DeadLetter] = field(default_factory=list)  # to copy to the topic: not seen before
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


def keys_to_load(events: list[AcceptedEvent], tree: Tree) -> set[Key]:
    """Every row the events may touch: their own and, for indicators that roll up, their ancestors'."""
    keys: set[Key] = set()
    chains: dict[tuple[str, str], list[str]] = {}
    rolling: dict[str, bool] = {}
    for ev in events:
        keys.add(ev.key)
        rolls = rolling.get(ev.indicator)
        if rolls is None:
            rolls = rolling[ev.indicator] = tree.rolls_up(ev.indicator)
        if not rolls:
            continue
        chain = chains.get((ev.edition, ev.unit))
        if chain is None:
            chain = chains[(ev.edition, ev.unit)] = ancestor_units(ev.edition, ev.unit, tree.parent_of)
        for unit in chain:
            keys.add((ev.edition, unit, ev.indicator, ev.period))
    return keys


async def apply_messages(
    engine: AsyncEngine,
    messages: list[Message],
    verdicts: list[AcceptedEvent | DeadLetter],
    tree: Tree,
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
    trees = {v.partition_key.decode() for v in verdicts if isinstance(v, AcceptedEvent)}
    async with transaction(engine) as conn:
        await repo.lock_writers(conn, group, topic, {m.partition for m in messages}, trees)
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
            rows = await repo.load_rows(conn, keys_to_load(events, tree))
            result.outcome = apply_batch(events, rows, tree.parent_of, tree.rolls_up)
            result.rows_written = await repo.upsert_rows(conn, rows, result.outcome.changed)
            await repo.announce(conn, {f"{ev.edition}/{ev.province}" for ev in result.outcome.applied})
        if result.dead:
            stored_now = await repo.insert_dead_letters(conn, result.dead)
            result.new_dead = [dl for dl in result.dead if dl.seq is None or dl.seq in stored_now]
        await repo.store_offsets(conn, group, topic, current, result.next_offsets)
    result.seconds = time.perf_counter() - started
    return result
