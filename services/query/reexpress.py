"""Re-expressed values (DESIGN §7): a 2025 unit's figures for legacy periods, set beside its own.

The weighted sums over the crosswalk happen in Postgres (crosswalk_sql.py: numeric, exact, one statement);
what arrives here is, per native period, the unit's own native row and the re-expressed row of its legacy
sources. This module decides, without I/O, which of the two each period shows (the unit's own first), and
derives a coarser period from periods of either kind: the year 2025 of a flow is January–June
re-expressed plus July–December native (`basis: mixed`), that of a stock its latest month with a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from services.query.periods import Derived, NativeRow, Source, derive
from shared.catalog import Indicator
from shared.hierarchy import REFORM_DATE, Edition, Unit
from shared.periods import Period
from shared.values import Pair, add, pair_or_none


class Basis(StrEnum):
    NATIVE = "native"  # the unit's own edition
    REEXPRESSED = "reexpressed"  # the legacy edition, through the crosswalk
    MIXED = "mixed"  # a derived period built from both


REEXPRESSED_SOURCE = "reexpressed"  # `source` of a value that only the crosswalk gives


class ReRow(NamedTuple):
    """One native (legacy) period of a 2025 unit, re-expressed: Σ weight × the sources' effective pairs."""

    period: str
    num: Decimal | None
    den: Decimal | None
    reporting: int  # sources with a value
    expected: int  # all sources
    exact: bool  # every contributing weight is 1
    updated_at: datetime | None = None

    @property
    def pair(self) -> Pair | None:
        return pair_or_none(self.num, self.den)


@dataclass(frozen=True, slots=True)
class Blended:
    """A period's value for a unit: the native derivation (reported, computed) with the crosswalk's beside it."""

    effective: Pair | None
    source: str | None  # reported | computed | mixed | reexpressed
    basis: Basis
    estimated: bool
    reexpressed: Pair | None
    reported: Pair | None
    computed: Pair | None
    reporting: int
    expected: int | None  # None: the unit's number of children (a native figure's)
    updated_at: datetime | None


def native_only(d: Derived) -> Blended:
    return Blended(d.effective, d.source, Basis.NATIVE, False, None, d.reported, d.computed, d.reporting, None,
                   d.updated_at)


def reexpressible(unit: Unit, indicator: Indicator) -> bool:
    """Only a 2025 unit has legacy sources, and own-level figures stay where they were reported."""
    return unit.edition == Edition.E2025.value and indicator.rollup


def legacy_periods(periods: Iterable[Period]) -> list[str]:
    """The native periods of the legacy edition: those that end before the reform."""
    return [p.code for p in periods if p.end < REFORM_DATE]


class _Piece(NamedTuple):
    period: str
    pair: Pair
    source: str
    basis: Basis
    exact: bool
    reporting: int
    expected: int | None
    updated_at: datetime | None


def _pieces(natives: Sequence[NativeRow], reexpressed: Sequence[ReRow]) -> list[_Piece]:
    """Per native period, the unit's own value where it has one, else the re-expressed one; oldest first."""
    own = {r.period: r for r in natives if r.has_value}
    out: list[_Piece] = []
    for r in natives:
        if r.has_value and r.effective is not None and r.source is not None:
            out.append(_Piece(r.period, r.effective, r.source.value, Basis.NATIVE, True, r.reporting or 0, None,
                              r.updated_at))
    for x in reexpressed:
        pair = x.pair
        if pair is not None and x.period not in own:
            out.append(_Piece(x.period, pair, REEXPRESSED_SOURCE, Basis.REEXPRESSED, x.exact, x.reporting,
                              x.expected, x.updated_at))
    # Codes of one period type sort chronologically as text.
    return sorted(out, key=lambda p: p.period)


def _reexpressed_pair(indicator: Indicator, reexpressed: Sequence[ReRow]) -> Pair | None:
    valued = [x for x in reexpressed if x.num is not None]
    if not valued:
        return None
    if indicator.time_rollup == "latest":
        return max(valued, key=lambda x: x.period).pair
    total: Pair | None = None
    for x in valued:
        total = add(total, x.pair)
    return total


def _one_or_mixed(values: set[str], mixed: str) -> str:
    return values.pop() if len(values) == 1 else mixed


def blend(
    indicator: Indicator, natives: Sequence[NativeRow], reexpressed: Sequence[ReRow], *, sources: int,
    all_legacy: bool,
) -> Blended:
    """The value of a 2025 unit for a period whose native periods are `natives` (its own) and `reexpressed`.

    `sources` is how many legacy units map into it and `all_legacy` whether every native period of the
    period asked for is a legacy one: together they say what an empty answer counts (0 of `sources`).
    """
    own = derive(indicator, natives)
    pieces = _pieces(natives, reexpressed)
    re_pair = _reexpressed_pair(indicator, reexpressed)
    if not pieces:
        return Blended(None, None, Basis.REEXPRESSED if all_legacy else Basis.NATIVE, False, re_pair,
                       own.reported, own.computed, 0, sources if all_legacy else None, None)
    last = pieces[-1]
    if indicator.time_rollup == "latest":
        return Blended(last.pair, last.source, last.basis, not last.exact, re_pair, own.reported, own.computed,
                       last.reporting, last.expected, last.updated_at)
    total: Pair | None = None
    for piece in pieces:
        total = add(total, piece.pair)
    stamps = [p.updated_at for p in pieces if p.updated_at is not None]
    return Blended(
        total,
        _one_or_mixed({p.source for p in pieces}, Source.MIXED.value),
        Basis(_one_or_mixed({p.basis.value for p in pieces}, Basis.MIXED.value)),
        not all(p.exact for p in pieces),
        re_pair, own.reported, own.computed, last.reporting, last.expected,
        max(stamps) if stamps else None,
    )
