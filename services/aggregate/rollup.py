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
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext

from shared.events import AcceptedEvent
from shared.values import Pair, pair_or_none

Key = tuple[str, str, str, str]  # edition, unit, indicator, period

# The default context rounds to 28 significant digits, which would let the deltas drift from a
# from-scratch sum of large figures. 100 digits hold every sum of realistic figures exactly, and a sum
# that would not fit raises (Inexact) instead of rounding silently: the aggregator then isolates the
# event that caused it and dead-letters it.
_EXACT = Context(prec=100, traps=[Inexact, InvalidOperation, Overflow, DivisionByZero])
_ZERO = Decimal(0)


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


def ancestor_units(edition: str, unit: str, parent_of: Callable[[str, str], str | None]) -> list[str]:
    """The materialized ancestors of a unit, nearest first (stops where `parent_of` says None)."""
    out: list[str] = []
    parent = parent_of(edition, unit)
    while parent is not None:
        out.append(parent)
        parent = parent_of(edition, parent)
    return out


def ancestor_keys(key: Key, parent_of: Callable[[str, str], str | None]) -> list[Key]:
    """The keys a change at `key` may reach, nearest first."""
    edition, unit, indicator, period = key
    return [(edition, parent, indicator, period) for parent in ancestor_units(edition, unit, parent_of)]


def apply_batch(
    events: Iterable[AcceptedEvent],
    rows: dict[Key, Row],
    parent_of: Callable[[str, str], str | None],
    rolls_up: Callable[[str], bool],
) -> Outcome:
    """Apply `events` to `rows` in place (rows missing from the dict are created).

    `parent_of(edition, unit)` names the parent whose row is materialized, or None at the top
    (the province: the nation is summed at read time). `rolls_up(indicator)` is False for own-level
    indicators, which are stored where reported and never summed. Raises ArithmeticError when a sum
    would not be exact; `rows` may then be half-updated and must be thrown away.
    """
    outcome = Outcome()
    latest, superseded = collapse(events)
    outcome.stale.extend(superseded)
    chains: dict[tuple[str, str], list[str]] = {}  # many events of a batch share their ancestors
    rolling: dict[str, bool] = {}
    with localcontext(_EXACT):
        for ev in sorted(latest, key=lambda e: e.seq):
            key = ev.key
            row = rows.get(key)
            if row is None:
                row = rows[key] = Row()
            elif row.rep_seq is not None and ev.seq <= row.rep_seq:
                outcome.stale.append(ev)  # an older or replayed event: the newer one already won
                continue
            before = row.effective
            row.reported = pair_or_none(ev.num, ev.den)
            row.rep_seq = ev.seq
            row.accepted_at = ev.accepted_at
            outcome.applied.append(ev)
            outcome.changed.add(key)
            rolls = rolling.get(ev.indicator)
            if rolls is None:
                rolls = rolling[ev.indicator] = rolls_up(ev.indicator)
            if not rolls or before == row.effective:
                continue
            chain = chains.get((ev.edition, ev.unit))
            if chain is None:
                chain = chains[(ev.edition, ev.unit)] = ancestor_units(ev.edition, ev.unit, parent_of)
            _propagate(ev, chain, before, row.effective, rows, outcome.changed)
    return outcome


def _propagate(
    ev: AcceptedEvent,
    chain: list[str],
    before: Pair | None,
    after: Pair | None,
    rows: dict[Key, Row],
    changed: set[Key],
) -> None:
    for unit in chain:
        if before == after:
            return  # absorbed: the parent below reports its own figure, or the change cancelled out
        parent_key = (ev.edition, unit, ev.indicator, ev.period)
        parent = rows.get(parent_key)
        if parent is None:
            parent = rows[parent_key] = Row()
        parent_before = parent.effective
        parent.reporting += (after is not None) - (before is not None)
        parent.computed = None if parent.reporting == 0 else _shift(parent.computed, before, after)
        parent.accepted_at = ev.accepted_at
        changed.add(parent_key)
        before, after = parent_before, parent.effective


def _shift(total: Pair | None, before: Pair | None, after: Pair | None) -> Pair:
    """total − before + after, null counting as zero, in one Pair (the hot path of the roll-up).

    The denominator stays null only when every side has none, as when the pairs are added one by one.
    """
    num = _ZERO
    den = _ZERO
    has_den = False
    if total is not None:
        num += total.num
        if total.den is not None:
            den += total.den
            has_den = True
    if after is not None:
        num += after.num
        if after.den is not None:
            den += after.den
            has_den = True
    if before is not None:
        num -= before.num
        if before.den is not None:
            den -= before.den
            has_den = True
    return Pair(num, den if has_den else None)
