"""Rules and outliers for one batch (DESIGN §8), run beside the batch rather than after it.

What the checks read besides the batch's own rows — which indicators the batch's provinces hold (a rule
naming one they lack is not checked), the other values the rules name, each scored series' stored history,
the flags open where a verdict may land — is read as committed before the batch, on a second connection,
while the batch's transaction loads and applies its rows (the batch's rows are asked for before the step
plans, so PostgreSQL looks them up while it does); the checks then run in a worker
thread while PostgreSQL writes those rows; only the flags that change are written, in the batch's
transaction. The two connections overlap, so PostgreSQL and the aggregator work at the same time instead of
taking turns.

Reading outside the transaction is exact because the batch holds its provinces' writer locks before the
read starts (repository.lock_writers): no other transaction can commit a row or a flag of those provinces
until the batch ends, so the read sees precisely the state the batch starts from, and the batch's own
changes are laid over it in memory (quality.after_batch). An acknowledgement (ingest) may land meanwhile; it
changes no value or status, and the writes below never undo it unless a flag's values change.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.aggregate import quality_repository as quality_repo
from services.aggregate import repository as repo
from services.aggregate.outliers import Stretch
from services.aggregate.quality import (
    OpenFlags,
    Place,
    QualityPlan,
    Series,
    Verdicts,
    after_batch,
    evaluate,
)
from services.aggregate.rollup import BatchEffect, Key, Row
from shared import indicator_presence as presence
from shared import quality_flags as flags_repo
from shared.events import AcceptedEvent
from shared.periods import ordinal
from shared.quality_flags import FlagKey, Span
from shared.rules import Rule


@dataclass(frozen=True, slots=True)
class Surroundings:
    """What the checks read besides the batch's rows, as committed before the batch, and the rules worth
    checking given which indicators the batch's provinces hold."""

    rules: dict[Place, tuple[Rule, ...]]
    rows: dict[Key, Row]  # the other values the rules read (a key absent here has no row)
    in_histories: set[Key]  # the other values the rules read that the histories hold
    histories: dict[Series, Stretch]  # laid over by the batch (quality.after_batch)
    held: dict[FlagKey, flags_repo.Held]  # the flags open where a verdict may land, with their values


class QualityStep:
    """Started once the batch holds its locks; `judge` once the batch's rows are applied in memory, then
    `verdicts` once they are written; `close` always."""

    def __init__(self, engine: AsyncEngine, plan: QualityPlan, keys: Collection[Key],
                 events: Collection[AcceptedEvent], indicators: set[presence.Triple]) -> None:
        """`indicators`: the (edition, province, indicator) of the batch's events, which it records."""
        self._plan = plan
        # Planned on every key the batch may change (a superset of what it will change): a place or series
        # the batch leaves as it was is checked to the verdict it already has, and nothing is written.
        rules = plan.rule_targets(keys)
        self._series = plan.outlier_targets(ev.key for ev in events)
        # The flags a verdict may be about, a stretch of periods a unit: a flag read beside them is never written.
        stretches: dict[tuple[str, str], tuple[str, str]] = {}
        for e, u, lo, hi in itertools.chain(((e, u, p, p) for e, u, p in rules), (
                (e, u, min(t.changed), t.last_scored) for (e, u, _), t in self._series.items())):
            was = stretches.get((e, u))
            stretches[(e, u)] = (lo, hi) if was is None else (min(was[0], lo), max(was[1], hi))
        spans = [(e, u, lo, hi) for (e, u), (lo, hi) in stretches.items()]
        self._reading = asyncio.create_task(self._read(engine, rules, keys, indicators, spans))
        self._judging: asyncio.Task[tuple[Verdicts, Surroundings]] | None = None

    async def _read(self, engine: AsyncEngine, rules: dict[Place, tuple[Rule, ...]], keys: Collection[Key],
                    indicators: set[presence.Triple], spans: Collection[Span]) -> Surroundings:
        plan = self._plan
        async with engine.connect() as conn:
            # What a province has never had a row of (shared/indicator_presence.py) is neither checked nor read:
            # most rules naming such an indicator skip, and the others find it missing without asking.
            provinces = {p for e, u, _ in rules if (p := plan.province_of(e, u)) is not None}
            present = await presence.present(conn, provinces) | indicators
            rules = plan.checkable(rules, present)
            reads = plan.rule_reads(rules)
            reads.difference_update(keys)
            in_histories = plan.held_by_histories(reads, self._series)
            rows = await repo.load_rows(conn, plan.may_exist(reads - in_histories, present))
            histories = await quality_repo.load_histories(conn, self._series)
            held = await flags_repo.open_on(conn, spans)
            await conn.rollback()  # it only read
        return Surroundings(rules, rows, in_histories, histories, held)

    def judge(self, rows: dict[Key, Row], effect: BatchEffect) -> None:
        """Start the checks, to run while the caller writes the rows; `rows` hold the batch's keys as the
        batch left them, and must not change until `verdicts` returns."""
        self._judging = asyncio.create_task(self._judge(rows, effect))

    async def verdicts(self) -> tuple[Verdicts, Surroundings]:
        """Every target's verdict after the batch, and what the checks read."""
        if self._judging is None:
            raise RuntimeError("verdicts before judge")
        return await self._judging

    async def _judge(self, rows: dict[Key, Row], effect: BatchEffect) -> tuple[Verdicts, Surroundings]:
        around = await self._reading

        histories = after_batch(around.histories, self._series, rows, effect.changed)
        in_histories = around.in_histories

        def effective(key: Key) -> tuple[Decimal, Decimal | None] | None:
            row = rows.get(key) or around.rows.get(key)
            if row is None:
                # Not the batch's (its keys are never in `in_histories`), so the history holds it as it was.
                history = histories.get(key[:3]) if key in in_histories else None
                value = None if history is None else history.get(ordinal(key[3]))
                return None if value is None else (Decimal(value), None)
            pair = row.effective
            return None if pair is None else (pair.num, pair.den)

        # A worker thread, so that the event loop goes on sending the batch's rows meanwhile.
        verdicts = await asyncio.to_thread(evaluate, self._plan, around.rules, effective, self._series, histories,
                                           OpenFlags(around.held))
        return verdicts, around

    async def close(self) -> None:
        """Stop what is still running (a batch that failed midway); an error of a task that is left matters
        only to a batch that used it, and that batch has raised it already."""
        for task in (self._reading, self._judging):
            if task is None:
                continue
            if not task.done():
                task.cancel()  # a check already in its worker thread finishes there, unread
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def write_flags(conn: AsyncConnection, verdicts: Verdicts, held: dict[FlagKey, flags_repo.Held]) -> None:
    """Open what broke or changed, resolve what holds again; a flag already as it should be is not written."""
    await flags_repo.open_flags(conn, [
        f for f in verdicts.open if held.get(f.key) != (f.left, f.right, f.score, f.constant_history)])
    await flags_repo.resolve_flags(conn, verdicts.clear)
