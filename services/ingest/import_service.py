"""Importing a file: its rows as events, in chunks, through the validation, outbox and sequence of
POST /v1/events (service.submit), and the summary of DESIGN §9.

created, updated, unchanged and retracted compare each valid row with the latest event accepted for its
key (edition, unit, indicator, period) — in the outbox, or earlier in the same file:
- no value stands for the key (no event, or the latest withdrew it): `created`, or `unchanged` for a
  row that withdraws nothing;
- the row says what the latest event says (the same figures, and the same comment or none: an export
  carries figures, not comments): `unchanged`, and no event is added, so importing an export again
  changes nothing;
- a row an export marked as d06's own figure (`source: computed`, `basis: reexpressed`): `unchanged`,
  never submitted (a sum d06 computes must not come back as a reported figure);
- otherwise `updated`, or `retracted` for a row without a figure.
A row with its own event_id is always submitted, so that a resend is answered as POST /v1/events answers
it (`unchanged` when the outbox holds it already, a conflict when it holds other content).

An atomic import (and a dry run) is one transaction: a dry run is rolled back at the end, so it says
exactly what the import would do, rows repeated across chunks included. A non-atomic import commits
chunk by chunk, and the relay publishes each chunk while the next is read. An atomic import holds back
the publication of every event accepted after its first chunk until it commits (services/ingest/outbox.py:
the relay cannot pass a running writer's seqs), hence imports.MAX_ATOMIC_ROWS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ingest import outbox
from services.ingest.body import MAX_EVENTS
from services.ingest.import_rows import Prepared, Units, prepare, rejection_errors
from services.ingest.service import submit
from services.ingest.validation import BatchValidation, Context, RejectReason, ValidEvent
from shared.db import transaction
from shared.files.model import FileError, Table

#: Rows validated and stored together: a batch of POST /v1/events at its largest.
CHUNK_ROWS = MAX_EVENTS
MAX_ERRORS = 1000
#: A dry run lists what would happen to each row, up to this many rows (the counts are always exact).
MAX_RESULTS = 10_000

Key = tuple[str, str, str, str]


@dataclass
class Summary:
    """DESIGN §9's summary of an import, kept up to date while it runs."""

    id: str | None = None
    status: str = "running"
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retracted: int = 0
    rejected: int = 0
    errors: list[FileError] = field(default_factory=list)
    scope_row: int | None = None  # the first row outside the key's scope: an atomic import answers 403
    conflict_row: int | None = None  # the first row whose event_id holds other content: 409
    results: list[tuple[int, str]] | None = None  # (row, what happens to it), for a dry run
    done: int = 0  # rows read so far
    dhis2: bool = False  # the file was DHIS2's: the answer carries DHIS2's own import summary too

    @property
    def accepted(self) -> int:
        return self.created + self.updated + self.unchanged + self.retracted

    def refuse(self, errors: list[FileError], row: int | None) -> None:
        self.rejected += 1
        room = MAX_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(errors[:room])
        self.note(row, "rejected")

    def note(self, row: int | None, result: str) -> None:
        if self.results is not None and row is not None and len(self.results) < MAX_RESULTS:
            self.results.append((row, result))

    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "accepted": self.accepted, "created": self.created, "updated": self.updated,
                "unchanged": self.unchanged, "retracted": self.retracted, "rejected": self.rejected}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status, **self.counts(),
                               "errors": [error_dict(e) for e in self.errors]}
        if self.status == "running":
            out["progress"] = {"rows_read": self.done, "rows": self.rows}
        if self.results is not None:
            out["dryRun"] = True
            out["results"] = [{"row": r, "result": what} for r, what in sorted(self.results)]
        if self.dhis2:
            out["dhis2"] = self.dhis2_summary()
        return out

    def dhis2_summary(self) -> dict[str, Any]:
        """DHIS2's import summary, for DHIS2 tooling: a withdrawn value is `deleted`, an unchanged or
        rejected one `ignored`, and each error a conflict."""
        status = "ERROR" if self.status == "failed" else "WARNING" if self.rejected else "SUCCESS"
        return {"status": status,
                "importCount": {"imported": self.created, "updated": self.updated,
                                "ignored": self.unchanged + self.rejected, "deleted": self.retracted},
                "conflicts": [{"object": e.value or "", "value": f"row {e.row}: {e.message}" if e.row else e.message}
                              for e in self.errors]}


def error_dict(error: FileError) -> dict[str, Any]:
    return {"row": error.row, "column": error.column, "value": error.value, "message": error.message}


@dataclass(frozen=True)
class Job:
    """What an import needs besides its file: who sends it and how."""

    engine: AsyncEngine
    ctx: Context
    atomic: bool
    dry_run: bool
    client_addr: str | None
    on_commit: Callable[[], None]  # wakes the relay
    progress: Callable[[Summary], Awaitable[None]] | None = None


async def run_import(job: Job, table: Table, summary: Summary) -> Summary:
    """Read, validate and store every row of `table`, filling `summary`. An atomic import with a rejected
    row stores nothing; the caller decides how to answer (status `failed`)."""
    units = Units(job.ctx.hierarchy, job.ctx.principal)
    columns = dict(table.columns)
    rows = iter(table.rows)
    single = job.atomic or job.dry_run
    async with AsyncExitStack() as stack:
        conn: AsyncConnection | None = None
        if single:
            conn = await stack.enter_async_context(job.engine.connect())
            await stack.enter_async_context(conn.begin())

        def read_next() -> asyncio.Future[Prepared | None]:
            return asyncio.ensure_future(asyncio.to_thread(prepare, rows, CHUNK_ROWS, columns, job.ctx, units))

        # The next chunk is read and validated (in a thread) while this one is stored: parsing is this
        # process's work, storing mostly PostgreSQL's, and the two overlap. prepare() is pure, so reading
        # ahead changes nothing; on an error or a cancellation the chunk read ahead is dropped.
        ahead = read_next()
        try:
            while (chunk := await ahead) is not None:
                ahead = read_next()
                summary.done += chunk.read
                if conn is not None:
                    await _store(conn, chunk, columns, job, summary)
                else:
                    async with transaction(job.engine) as own:
                        await _store(own, chunk, columns, job, summary)
                    job.on_commit()
                if job.progress is not None:
                    await job.progress(summary)
        finally:
            ahead.cancel()
        if conn is not None:
            if job.dry_run or (job.atomic and summary.rejected):
                await conn.rollback()
            else:
                await conn.commit()
                job.on_commit()
    summary.rows = max(summary.rows, summary.done)
    summary.status = "failed" if job.atomic and summary.rejected else "done"
    return summary


async def _store(conn: AsyncConnection, chunk: Prepared, columns: dict[str, str], job: Job, summary: Summary) -> None:
    for error in chunk.refused:
        summary.refuse([error], error.row)
    for rejection in chunk.validation.rejected:
        row = chunk.rows[rejection.index]
        if rejection.reason is RejectReason.SCOPE and summary.scope_row is None:
            summary.scope_row = row.number
        summary.refuse(rejection_errors(rejection, row, columns), row.number)
    if job.atomic and summary.rejected:
        return  # the file is refused: what is left is only read, for its errors
    results: dict[int, str] = {}
    submitted: list[ValidEvent] = []
    latest = await outbox.latest_contents(conn, [_key(e) for e in chunk.validation.valid])
    for event in chunk.validation.valid:
        key = _key(event)
        withdraws = event.num is None and event.den is None
        previous = latest.get(key)
        if previous is None or (previous.num is None and previous.den is None):
            result = "unchanged" if withdraws else "created"
        elif (previous.num, previous.den) == (event.num, event.den) and event.comment in (None, previous.comment):
            # A row without a comment keeps the one stored: an export carries figures, not comments.
            result = "unchanged"
        else:
            result = "retracted" if withdraws else "updated"
        latest[key] = outbox.Latest(event.num, event.den, event.comment or (previous.comment if previous else None))
        results[event.index] = result
        if result != "unchanged" or event.event_id is not None:
            submitted.append(event)
    outcome = await submit(conn, BatchValidation(submitted, []), atomic=False, key_id=job.ctx.principal.key_id,
                           client_addr=job.client_addr, dry_run=job.dry_run)
    for event in outcome.duplicates:
        results[event.index] = "unchanged"
    for rejection in outcome.rejected:  # an event_id already stored with other content
        row = chunk.rows[rejection.index]
        results.pop(rejection.index, None)
        if summary.conflict_row is None:
            summary.conflict_row = row.number
        summary.refuse(rejection_errors(rejection, row, columns), row.number)
    for index, result in results.items():
        setattr(summary, result, getattr(summary, result) + 1)
        summary.note(chunk.rows[index].number, result)
    for row in chunk.derived:
        summary.unchanged += 1
        summary.note(row.number, "unchanged")


def _key(event: ValidEvent) -> Key:
    return (event.edition, event.unit, event.indicator, event.period)
