"""`d06 quality verify`: the stored open flags against the flags recomputed from scratch (shared.quality_oracle).

The facts are the reported values the read model holds — `d06 rollups verify` checks those against the
outbox — and everything else (computed values, which rules break, which values stand out) is derived from
them again here. Each difference is one flag: open but not expected, expected but not open, or open with
other values.
"""

from __future__ import annotations

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


async def read_reported(conn: AsyncConnection) -> dict[Key, Amount]:
    rows = await conn.execute(text(
        "SELECT edition, unit, indicator, period, rep_num, rep_den FROM rollups WHERE rep_num IS NOT NULL"))
    return {(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in rows}


async def read_open_flags(conn: AsyncConnection) -> dict[FlagKey, ExpectedFlag]:
    rows = await conn.execute(text("""
        SELECT edition, unit, kind, code, period, left_value, right_value, score, constant_history
        FROM quality_flags WHERE status = 'open'"""))
    return {(r[0], r[1], r[2], r[3], r[4]): ExpectedFlag(r[5], r[6], r[7], r[8]) for r in rows}


async def verify_quality(conn: AsyncConnection, hierarchy: Hierarchy, catalog: Catalog) -> list[FlagDifference]:
    expected = expected_flags(await read_reported(conn), hierarchy, catalog)
    return differences(await read_open_flags(conn), expected)
