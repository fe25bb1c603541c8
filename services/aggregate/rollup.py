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
from shared.hierarchy import NATION, Hierarchy
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
class BatchEffect:
    """What one batch did to the read model: the rows it changed and the events that won or lost."""

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


def materialized_parent(hierarchy: Hierarchy) -> Callable[[str, str], str | None]:
    """The parent whose row the aggregator writes: none above the province (the nation is read-time)."""

    def parent_of(edition: str, code: str) -> str | None:
        unit = hierarchy.get(edition, code)
        if unit is None or unit.parent_code in (None, NATION):
            return None
        return unit.parent_code

    return parent_of


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


@dataclass(slots=True)
class _Change:
    """A row the batch changed: its effective pair before the batch, the newest event behind the change
    and the ancestors above it (nearest first)."""

    before: Pair | None
    latest: AcceptedEvent
    chain: tuple[str, ...]


def apply_batch(
    events: Iterable[AcceptedEvent],
    rows: dict[Key, Row],
    parent_of: Callable[[str, str], str | None],
    rolls_up: Callable[[str], bool],
) -> BatchEffect:
    """Apply `events` to `rows` in place (rows missing from the dict are created).

    `parent_of(edition, unit)` names the parent whose row is materialized, or None at the top
    (the province: the nation is summed at read time). `rolls_up(indicator)` is False for own-level
    indicators, which are stored where reported and never summed. Raises ArithmeticError when a sum
    would not be exact; `rows` may then be half-updated and must be thrown away.

    Reported values are set first; then changes climb one level at a time, deepest first, so a parent
    passes its children's net change upward once instead of once per child event (a district of 20
    communes × 8 indicators moves its province 8 times, not 160).
    """
    effect = BatchEffect()
    latest, superseded = collapse(events)
    effect.stale.extend(superseded)
    levels: dict[int, dict[Key, _Change]] = {}  # depth (number of ancestors) -> rows changed at it
    chains: dict[tuple[str, str], tuple[str, ...]] = {}  # many events of a batch share their ancestors
    rolling: dict[str, bool] = {}
    with localcontext(_EXACT):
        for ev in latest:
            key = ev.key
            row = rows.get(key)
            if row is None:
                row = rows[key] = Row()
            elif row.rep_seq is not None and ev.seq <= row.rep_seq:
                effect.stale.append(ev)  # an older or replayed event: the newer one already won
                continue
            before = row.effective
            row.reported = pair_or_none(ev.num, ev.den)
            row.rep_seq = ev.seq
            row.accepted_at = ev.accepted_at
            effect.applied.append(ev)
            effect.changed.add(key)
            rolls = rolling.get(ev.indicator)
            if rolls is None:
                rolls = rolling[ev.indicator] = rolls_up(ev.indicator)
            if not rolls:
                continue
            chain = chains.get((ev.edition, ev.unit))
            if chain is None:
                chain = chains[(ev.edition, ev.unit)] = tuple(ancestor_units(ev.edition, ev.unit, parent_of))
            if chain:
                levels.setdefault(len(chain), {})[key] = _Change(before, ev, chain)
        for depth in range(max(levels, default=0), 0, -1):  # a level's changes are complete once the
            parents = levels.setdefault(depth - 1, {})      # level below it has climbed
            for key, change in levels.get(depth, {}).items():
                _climb(key, change, rows, parents, effect.changed)
    return effect


def _climb(key: Key, change: _Change, rows: dict[Key, Row], parents: dict[Key, _Change], changed: set[Key]) -> None:
    """Move the parent of `key` by the net change of `key`'s effective pair over the batch."""
    after = rows[key].effective
    before = change.before
    if before == after:
        return  # absorbed: the row reports its own figure, or its changes cancelled out
    ev = change.latest
    parent_key = (key[0], change.chain[0], key[2], key[3])
    parent = rows.get(parent_key)
    if parent is None:
        parent = rows[parent_key] = Row()
    held = parents.get(parent_key)
    if held is None:
        parents[parent_key] = _Change(parent.effective, ev, change.chain[1:])
    elif ev.seq > held.latest.seq:
        held.latest = ev
    else:
        ev = held.latest
    parent.reporting += (after is not None) - (before is not None)
    parent.computed = None if parent.reporting == 0 else _shift(parent.computed, before, after)
    parent.accepted_at = ev.accepted_at
    changed.add(parent_key)


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
