"""`d06 quality verify`: the stored open flags against the flags recomputed from scratch (shared.quality_oracle).

The facts are the reported values the read model holds — `d06 rollups verify` checks those against the
outbox — and everything else (computed values, which rules break, which values stand out) is derived from
them again here. Each difference is one flag: open but not expected, expected but not open, or open with
other values. `d06 quality rebuild` (shared/quality_rebuild.py) writes the same differences, one province at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.catalog import Catalog
from shared.hierarchy import Hierarchy
from shared.quality_flags import FlagKey
from shared.quality_oracle import ExpectedFlag, expected_flags
from shared.recompute import Amount, Key


@dataclass(frozen=True, slots=True)
class FlagDifference:
    key: FlagKey
    stored: ExpectedFlag | None
    expected: ExpectedFlag | None

    def __str__(self) -> str:
        edition, unit, kind, code, period = self.key
        return f"{edition}/{unit} {kind} {code} {period}: stored={_fmt(self.stored)} recomputed={_fmt(self.expected)}"

    @property
    def change(self) -> str:
        """What setting it right takes: `open` a flag not open, `update` one open with other values, or
        `resolve` one that should not be open."""
        return "resolve" if self.expected is None else "open" if self.stored is None else "update"


def _fmt(flag: ExpectedFlag | None) -> str:
    if flag is None:
        return "none"
    score = "" if flag.score is None and not flag.constant_history else f" score={flag.score}"
    return f"open left={flag.left} right={flag.right}{score}" + (" constant" if flag.constant_history else "")


def _same(a: Decimal | None, b: Decimal | None) -> bool:
    return a == b  # numeric from PostgreSQL compares by value: 5 == 5.00


def differences(stored: dict[FlagKey, ExpectedFlag], expected: dict[FlagKey, ExpectedFlag]) -> list[FlagDifference]:
    out: list[FlagDifference] = []
    for key in sorted(stored.keys() | expected.keys()):
        have, want = stored.get(key), expected.get(key)
        if have is None or want is None or not (
            _same(have.left, want.left) and _same(have.right, want.right) and _same(have.score, want.score)
            and have.constant_history == want.constant_history
        ):
            out.append(FlagDifference(key, have, want))
    return out


Units = tuple[str, Sequence[str]]  # an edition and some of its unit codes (a province tree's)


def _filter(among: Units | None, alias: str) -> tuple[str, dict[str, object]]:
    """The condition that keeps the rows of `among`, and its parameters (None: every row)."""
    if among is None:
        return "", {}
    return (f" AND {alias}.edition = :edition AND {alias}.unit = ANY(CAST(:units AS text[]))",
            {"edition": among[0], "units": list(among[1])})


async def read_reported(conn: AsyncConnection, among: Units | None = None) -> dict[Key, Amount]:
    """Every reported value, or those of the units `among`."""
    where, params = _filter(among, "r")
    rows = await conn.execute(text(
        "SELECT r.edition, r.unit, r.indicator, r.period, r.rep_num, r.rep_den FROM rollups r"
        " WHERE r.rep_num IS NOT NULL" + where), params)
    return {(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in rows}


async def read_open_flags(conn: AsyncConnection, among: Units | None = None) -> dict[FlagKey, ExpectedFlag]:
    """Every open flag with its values, or those of the units `among`."""
    where, params = _filter(among, "f")
    rows = await conn.execute(text(
        "SELECT f.edition, f.unit, f.kind, f.code, f.period, f.left_value, f.right_value, f.score,"
        " f.constant_history FROM quality_flags f WHERE f.status = 'open'" + where), params)
    return {(r[0], r[1], r[2], r[3], r[4]): ExpectedFlag(r[5], r[6], r[7], r[8]) for r in rows}


async def verify_quality(conn: AsyncConnection, hierarchy: Hierarchy, catalog: Catalog) -> list[FlagDifference]:
    expected = expected_flags(await read_reported(conn), hierarchy, catalog)
    return differences(await read_open_flags(conn), expected)
