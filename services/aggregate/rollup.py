"""Incremental roll-up, pure: apply a batch of set-events to the rows of the read model, in memory.

Each row holds `reported` (with the seq that set it), `computed` (the sum of its children's effective
pairs) and `reporting` (how many children have one). `effective = reported ?? computed`. When a unit's
effective pair changes from e0 to e1, its parent's computed moves by e1 − e0 and, where one side is
null, its reporting by ±1; a parent with a reported value absorbs the change. Deltas compose, so the
order in which a batch's events are walked does not matter — the property tests check exactly that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from shared.events import AcceptedEvent
from shared.values import Pair, add, pair_or_none

Key = tuple[str, str, str, str]  # edition, unit, indicator, period


@dataclass(slots=True)
class Row:
    reported: Pair | None = None
    rep_seq: int | None = None
    computed: Pair | None = None
    reporting: int = 0
    accepted_at: datetime | None = None

    @property
    def effective(self) -> Pair | None:
        return self.reported if self.reported is not None else self.computed


@dataclass(slots=True)
class Outcome:
    changed: set[Key] = field(default_factory=set)
    applied: list[AcceptedEvent] = field(default_factory=list)
    stale: list[AcceptedEvent] = field(default_factory=list)


def collapse(events: Iterable[AcceptedEvent]) -> tuple[list[AcceptedEvent], list[AcceptedEvent]]:
    """Keep the highest seq per key; the rest are superseded within the batch itself."""
    latest: dict[Key, AcceptedEvent] = {}
    superseded: list[AcceptedEvent] = []
    for ev in events:
        held = latest.get(ev.key)
        if held is None or ev.seq > held.seq:
            if held is not None:
                superseded.append(held)
            latest[ev.key] = ev
        else:
            superseded.append(ev)
    return list(latest.values()), superseded


def ancestor_keys(key: Key, parent_of: Callable[[str, str], str | None]) -> list[Key]:
    """The keys a change at `key` may reach, nearest first (stops where `parent_of` says None)."""
    edition, unit, indicator, period = key
    out: list[Key] = []
    parent = parent_of(edition, unit)
    while parent is not None:
        out.append((edition, parent, indicator, period))
        parent = parent_of(edition, parent)
    return out


def apply_batch(
    events: Iterable[AcceptedEvent],
    rows: dict[Key, Row],
    parent_of: Callable[[str, str], str | None],
    rolls_up: Callable[[str], bool],
) -> Outcome:
    """Apply `events` to `rows` in place (rows missing from the dict are created).

    `parent_of(edition, unit)` names the parent whose row is materialized, or None at the top
    (the province: the nation is summed at read time). `rolls_up(indicator)` is False for own-level
    indicators, which are stored where reported and never summed.
    """
    outcome = Outcome()
    latest, superseded = collapse(events)
    outcome.stale.extend(superseded)
    for ev in sorted(latest, key=lambda e: e.seq):
        row = rows.setdefault(ev.key, Row())
        if row.rep_seq is not None and ev.seq <= row.rep_seq:
            outcome.stale.append(ev)  # an older or replayed event: the newer one already won
            continue
        before = row.effective
        row.reported = pair_or_none(ev.num, ev.den)
        row.rep_seq = ev.seq
        row.accepted_at = ev.accepted_at
        outcome.applied.append(ev)
        outcome.changed.add(ev.key)
        if rolls_up(ev.indicator):
            _propagate(ev.key, before, row.effective, ev.accepted_at, rows, parent_of, outcome.changed)
    return outcome


def _propagate(
    key: Key,
    before: Pair | None,
    after: Pair | None,
    accepted_at: datetime,
    rows: dict[Key, Row],
    parent_of: Callable[[str, str], str | None],
    changed: set[Key],
) -> None:
    for parent_key in ancestor_keys(key, parent_of):
        if before == after:
            return
        parent = rows.setdefault(parent_key, Row())
        parent_before = parent.effective
        parent.reporting += (after is not None) - (before is not None)
        delta = add(after, None if before is None else -before)
        parent.computed = None if parent.reporting == 0 else add(parent.computed, delta)
        parent.accepted_at = accepted_at
        changed.add(parent_key)
        before, after = parent_before, parent.effective
