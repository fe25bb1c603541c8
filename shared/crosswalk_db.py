"""The crosswalk in PostgreSQL: storing what the converter gives, replacing weights, reading a unit's lineage.

Writers take a SHARE ROW EXCLUSIVE lock on the table, which conflicts with itself: a weights file checked
against the pairs it read cannot be applied over pairs a concurrent `d06 hierarchy load` just replaced.
Every change is announced by the table's trigger (shared.events.CROSSWALK_CHANGED).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.crosswalk import EQUAL, WHOLE, Crosswalk
from shared.crosswalk_weights import Known, WeightLine
from shared.hierarchy import Edition

_LOCK = text("LOCK TABLE crosswalk IN SHARE ROW EXCLUSIVE MODE")

_NEW = """unnest(CAST(:legacy AS text[]), CAST(:target AS text[]), CAST(:level AS text[]),
                  CAST(:weight AS numeric[]), CAST(:basis AS text[]))
           AS t(legacy_code, code_2025, legacy_level, weight, basis)"""


@dataclass(frozen=True, slots=True)
class Stored:
    rows: int  # in the table after the load
    replaced: int  # legacy units whose pairs changed (or appeared, or went): their rows were written afresh
    own_weights: int  # legacy units keeping weights loaded by `d06 crosswalk weights`


async def store_crosswalk(conn: AsyncConnection, crosswalk: Crosswalk) -> Stored:
    """Make the table hold the crosswalk's pairs. A legacy unit whose pairs are unchanged keeps its stored
    weights (an operator's, from a weights file); one whose pairs changed is written afresh."""
    await conn.execute(_LOCK)
    params = {
        "legacy": [x.legacy_code for x in crosswalk.links],
        "target": [x.code_2025 for x in crosswalk.links],
        "level": [x.legacy_level for x in crosswalk.links],
        "weight": [x.weight for x in crosswalk.links],
        "basis": [x.basis for x in crosswalk.links],
    }
    replaced = await conn.execute(
        text(f"""
        WITH new AS (SELECT legacy_code, code_2025 FROM {_NEW}),
        changed AS (
            (SELECT legacy_code, code_2025 FROM crosswalk EXCEPT SELECT legacy_code, code_2025 FROM new)
            UNION
            (SELECT legacy_code, code_2025 FROM new EXCEPT SELECT legacy_code, code_2025 FROM crosswalk)
        ),
        gone AS (DELETE FROM crosswalk WHERE legacy_code IN (SELECT legacy_code FROM changed))
        SELECT count(DISTINCT legacy_code) FROM changed
        """),
        params,
    )
    n_replaced = replaced.scalar_one()
    await conn.execute(
        text(f"""
        INSERT INTO crosswalk (legacy_code, code_2025, legacy_level, weight, basis)
        SELECT legacy_code, code_2025, legacy_level, weight, basis FROM {_NEW}
        ON CONFLICT (legacy_code, code_2025) DO NOTHING
        """),
        params,
    )
    totals = (await conn.execute(
        text("SELECT count(*), count(DISTINCT legacy_code) FILTER (WHERE basis NOT IN (:whole, :equal)) "
             "FROM crosswalk"),
        {"whole": WHOLE, "equal": EQUAL},
    )).one()
    return Stored(rows=totals[0], replaced=n_replaced, own_weights=totals[1])


async def known_for_weights(conn: AsyncConnection) -> Known:
    """The crosswalk's pairs and both editions' codes, under the writers' lock: nothing changes them before
    this transaction applies the weights it checks against them."""
    await conn.execute(_LOCK)
    targets: dict[str, set[str]] = defaultdict(set)
    levels: dict[str, str] = {}
    for legacy_code, code_2025, level in await conn.execute(
        text("SELECT legacy_code, code_2025, legacy_level FROM crosswalk")
    ):
        targets[legacy_code].add(code_2025)
        levels[legacy_code] = level
    codes: dict[str, set[str]] = defaultdict(set)
    for edition, code in await conn.execute(text("SELECT edition, code FROM units")):
        codes[edition].add(code)
    return Known(
        targets={k: frozenset(v) for k, v in targets.items()}, levels=levels,
        legacy_codes=frozenset(codes[Edition.LEGACY.value]), codes_2025=frozenset(codes[Edition.E2025.value]),
    )


async def replace_weights(conn: AsyncConnection, lines: list[WeightLine]) -> int:
    """Set the weights and bases of checked, settled lines; returns the number of rows changed."""
    result = await conn.execute(
        text("""
        UPDATE crosswalk c SET weight = t.weight, basis = t.basis
        FROM unnest(CAST(:legacy AS text[]), CAST(:target AS text[]), CAST(:weight AS numeric[]),
                    CAST(:basis AS text[])) AS t(legacy_code, code_2025, weight, basis)
        WHERE c.legacy_code = t.legacy_code AND c.code_2025 = t.code_2025
          AND (c.weight, c.basis) IS DISTINCT FROM (t.weight, t.basis)
        """),
        {
            "legacy": [w.legacy_code for w in lines],
            "target": [w.code_2025 for w in lines],
            "weight": [w.weight for w in lines],
            "basis": [w.basis for w in lines],
        },
    )
    return result.rowcount


@dataclass(frozen=True, slots=True)
class LineageRow:
    """A unit of the other edition linked to the one asked about."""

    code: str
    name: str
    level: str
    weight: Decimal
    basis: str


async def fetch_lineage(conn: AsyncConnection, edition: str, code: str) -> list[LineageRow]:
    """For a 2025 unit, the legacy units it was formed from; for a legacy unit, the 2025 units it went into.
    Largest weight first. A unit's code length fixes its level, so a code matches rows of one level only."""
    if edition == Edition.E2025.value:
        sql = """SELECT c.legacy_code AS code, u.name, u.level, c.weight, c.basis FROM crosswalk c
                 JOIN units u ON u.edition = 'legacy' AND u.code = c.legacy_code
                 WHERE c.code_2025 = :code ORDER BY c.weight DESC, c.legacy_code"""
    else:
        sql = """SELECT c.code_2025 AS code, u.name, u.level, c.weight, c.basis FROM crosswalk c
                 JOIN units u ON u.edition = '2025' AND u.code = c.code_2025
                 WHERE c.legacy_code = :code ORDER BY c.weight DESC, c.code_2025"""
    rows = await conn.execute(text(sql), {"code": code})
    return [LineageRow(r.code, r.name, r.level, r.weight, r.basis) for r in rows]
