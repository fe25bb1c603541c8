"""Submitting a validated batch: atomicity, idempotency by event_id, and the answer the client gets.

An event_id is the client's idempotency key. Resending it with the same content is answered like the
first time (same seq); with different content it is a conflict, because silently keeping either
version would make the client believe something that is not stored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest import outbox
from services.ingest.validation import BatchValidation, Rejection, RejectReason, ValidEvent
from shared.auth import Principal, Role
from shared.catalog import Catalog, Measure
from shared.errors import Conflict, FieldError, Forbidden, Problem, ValidationFailed
from shared.hierarchy import NATION, Hierarchy
from shared.values import as_number


@dataclass
class Submission:
    """What a batch did: the answer's content and what the metrics count."""

    accepted: list[tuple[int, str, int]] = field(default_factory=list)  # (index, event_id, seq)
    rejected: list[Rejection] = field(default_factory=list)
    stored: list[ValidEvent] = field(default_factory=list)  # new rows in the outbox
    duplicates: list[ValidEvent] = field(default_factory=list)  # resends answered with the stored seq

    def body(self) -> dict[str, Any]:
        return {
            "accepted": len(self.accepted),
            "rejected": [r.as_dict() for r in sorted(self.rejected, key=lambda r: r.index)],
            "events": [{"event_id": eid, "seq": seq} for _, eid, seq in sorted(self.accepted)],
        }


class Refused(Exception):
    """An atomic batch refused as a whole: the Problem to answer, and the events that caused it."""

    def __init__(self, problem: Problem, rejected: list[Rejection]) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.rejected = rejected


def refuse_whole_batch(rejected: list[Rejection], total: int) -> Problem:
    """The problem an atomic batch gets: 403 when any event is outside the key's scope, else 422."""
    errors = [e.as_dict() for r in sorted(rejected, key=lambda r: r.index) for e in r.errors]
    scope = [r for r in rejected if r.reason is RejectReason.SCOPE]
    if scope:
        first = min(scope, key=lambda r: r.index)
        more = f" (and {len(scope) - 1} more)" if len(scope) > 1 else ""
        return Forbidden(f"events[{first.index}]: {first.errors[0].message}{more}; nothing was stored",
                         errors=errors)
    return ValidationFailed(f"{len(rejected)} of {total} event(s) are invalid; nothing was stored",
                            errors=errors)


async def submit(
    conn: AsyncConnection,
    validation: BatchValidation,
    *,
    atomic: bool,
    key_id: str | None,
    client_addr: str | None,
    new_event_id: Callable[[], str] | None = None,
    dry_run: bool = False,
) -> Submission:
    """Store the valid events of a batch in the outbox (in the caller's transaction).

    Raises Refused when `atomic` and anything is refused; the caller's transaction then rolls back,
    so nothing of the batch is stored. `dry_run`: the caller rolls back in any case (outbox.insert_events).
    """
    total = len(validation.valid) + len(validation.rejected)
    if atomic and validation.rejected:
        raise Refused(refuse_whole_batch(validation.rejected, total), validation.rejected)
    out = Submission(rejected=list(validation.rejected))
    if new_event_id is None:
        fresh = random_event_ids(sum(1 for e in validation.valid if not e.event_id))
        new_event_id = fresh.__next__
    events = [e if e.event_id else e.with_id(new_event_id()) for e in validation.valid]

    first: dict[str, ValidEvent] = {}
    repeats: list[ValidEvent] = []
    for event in events:
        eid = _eid(event)
        held = first.get(eid)
        if held is None:
            first[eid] = event
        elif held.content_hash == event.content_hash:
            repeats.append(event)  # the same event twice in one batch: stored once
        else:
            out.rejected.append(_conflict(event, f"event_id {eid} is also events[{held.index}] of this batch, "
                                                 "with different content"))
    if atomic and out.rejected:
        raise Refused(_conflict_problem(out.rejected), out.rejected)

    unique = list(first.values())
    seqs = await outbox.insert_events(conn, unique, key_id=key_id, client_addr=client_addr, dry_run=dry_run)
    known = await outbox.stored_hashes(conn, [_eid(e) for e in unique if _eid(e) not in seqs])
    conflicting: set[str] = set()
    for event in unique:
        eid = _eid(event)
        if eid in seqs:
            out.stored.append(event)
            continue
        seq, stored_hash = known[eid]
        if stored_hash == event.content_hash:
            seqs[eid] = seq
            out.duplicates.append(event)
        else:
            conflicting.add(eid)
            out.rejected.append(_conflict(event, f"event_id {eid} was already accepted (seq {seq}) with "
                                                 "different content; use a new event_id to send a new value"))
    if atomic and out.rejected:
        raise Refused(_conflict_problem(out.rejected), out.rejected)

    for event in repeats:
        eid = _eid(event)
        if eid in conflicting:
            out.rejected.append(_conflict(event, f"event_id {eid} was already accepted with different content"))
        else:
            out.duplicates.append(event)
    for event in (*unique, *repeats):
        eid = _eid(event)
        if eid not in conflicting:
            out.accepted.append((event.index, eid, seqs[eid]))
    return out


def random_event_ids(n: int) -> Iterator[str]:
    """`n` random (version 4) UUIDs as text, as `str(uuid.uuid4())` writes them: the randomness read in one
    call and no UUID object built, which cost more than the rest of storing an imported row."""
    h = os.urandom(16 * n).hex()
    for i in range(0, 32 * n, 32):
        yield (f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-{'89ab'[int(h[i + 16], 16) & 3]}"
               f"{h[i + 17:i + 20]}-{h[i + 20:i + 32]}")


def _eid(event: ValidEvent) -> str:
    if event.event_id is None:  # submit() assigns every id before this is called
        raise ValueError("event without an event_id")
    return event.event_id


def _conflict(event: ValidEvent, message: str) -> Rejection:
    return Rejection(event.index, event.event_id, RejectReason.CONFLICT,
                     (FieldError(f"events[{event.index}].event_id", message),), event.group)


def _conflict_problem(rejected: list[Rejection]) -> Problem:
    conflicts = sorted((r for r in rejected if r.reason is RejectReason.CONFLICT), key=lambda r: r.index)
    errors = [e.as_dict() for r in conflicts for e in r.errors]
    return Conflict(f"events[{conflicts[0].index}]: {conflicts[0].errors[0].message}; nothing was stored",
                    errors=errors)


STATUSES = ("accepted", "published", "applied", "rejected")


def can_read(principal: Principal, hierarchy: Hierarchy, edition: str, unit_code: str) -> bool:
    unit = hierarchy.get(edition, unit_code)
    if unit is None:  # a unit removed from the hierarchy since: only nation-wide keys still see it
        return principal.scope_code == NATION and principal.scope_edition in (None, edition)
    return principal.can_see(unit)


def event_view(row: Row[Any], catalog: Catalog, principal: Principal) -> dict[str, Any]:
    """The client's view of one stored event (GET /v1/events/{event_id})."""
    if row.dead_reason is not None:
        status = "rejected"
    elif row.applied:
        status = "applied"
    elif row.published:
        status = "published"
    else:
        status = "accepted"
    view: dict[str, Any] = {"event_id": row.event_id, "seq": row.seq, "status": status}
    if status == "rejected":
        view["reason"] = row.dead_reason
    view.update(edition=row.edition, unit=row.unit, indicator=row.indicator, period=row.period)
    view.update(_figures(row, catalog))
    if row.comment is not None:
        view["comment"] = row.comment
    view["accepted_at"] = row.accepted_at.isoformat()
    if principal.key_id is not None and (principal.key_id == row.key_id or principal.has(Role.ADMIN)):
        view["submitted_by"] = {"key_id": row.key_id, "client_addr": row.client_addr}
    return view


def _figures(row: Row[Any], catalog: Catalog) -> dict[str, Any]:
    """The figures as the client sends them for this measure (the stored pair read back)."""
    if row.num is None and row.den is None:
        return {"value": None}
    indicator = catalog.get(row.indicator)
    measure = indicator.measure if indicator else (Measure.FLOW if row.den is None else Measure.RATIO)
    if measure in (Measure.FLOW, Measure.STOCK):
        return {"value": as_number(row.num)}
    figures: dict[str, Any] = {"numerator": as_number(row.num), "denominator": as_number(row.den)}
    if measure is Measure.BOOLEAN and row.den == 1:
        figures["value"] = row.num == 1
    return figures
