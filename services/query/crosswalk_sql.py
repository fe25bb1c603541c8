"""The statements that read through the crosswalk: re-expressed rows, and the pairs the service holds.

Re-expression is a join of `crosswalk` with the legacy `rollups` summed in Postgres: numeric × numeric(11,10)
is exact, so Σ weight × pair is computed once, to the last digit, and never rounded. The join probes the
rollups primary key (edition, unit, indicator, period) with each source's code; a 2025 province has 1–3
sources, a 2025 commune a handful, so a drill-down of 168 communes reads a few hundred rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.query.reexpress import ReRow

# A boolean is re-expressed unweighted (DESIGN §7): a commune's true/false counts 1/1 or 0/1 wherever its
# territory went, and a legacy province's effective boolean is already a coverage pair.
_REEXPRESSED = text("""
SELECT c.code_2025 AS target, r.indicator, r.period,
       sum(w.weight * CASE WHEN r.rep_num IS NOT NULL THEN r.rep_num ELSE r.comp_num END) AS num,
       sum(w.weight * CASE WHEN r.rep_num IS NOT NULL THEN r.rep_den ELSE r.comp_den END) AS den,
       count(*) AS reporting,
       bool_and(c.weight = 1) AS exact,
       max(r.updated_at) AS updated_at
FROM crosswalk c
JOIN rollups r ON r.edition = 'legacy' AND r.unit = c.legacy_code
     AND r.indicator = ANY(CAST(:indicators AS text[])) AND r.period = ANY(CAST(:periods AS text[]))
CROSS JOIN LATERAL (
    SELECT CASE WHEN r.indicator = ANY(CAST(:unweighted AS text[])) THEN 1 ELSE c.weight END AS weight
) w
WHERE c.code_2025 = ANY(CAST(:targets AS text[])) AND (r.rep_num IS NOT NULL OR r.comp_num IS NOT NULL)
GROUP BY c.code_2025, r.indicator, r.period
""")


async def reexpressed_rows(
    conn: AsyncConnection, targets: Sequence[str], indicators: Sequence[str], unweighted: Sequence[str],
    periods: Sequence[str], sources: dict[str, int],
) -> dict[tuple[str, str], list[ReRow]]:
    """(2025 unit, indicator) -> its re-expressed rows of `periods` that have a value.

    `sources` gives each target's number of legacy sources (`expected`); `unweighted` the boolean indicators.
    """
    out: dict[tuple[str, str], list[ReRow]] = {}
    if not targets or not indicators or not periods:
        return out
    rows: Sequence[Row[Any]] = (await conn.execute(_REEXPRESSED, {
        "targets": list(targets), "indicators": list(indicators), "unweighted": list(unweighted),
        "periods": sorted(set(periods)),
    })).all()
    for r in rows:
        out.setdefault((r.target, r.indicator), []).append(
            ReRow(r.period, r.num, r.den, r.reporting, sources.get(r.target, 0), r.exact, r.updated_at)
        )
    return out


_PAIRS = text("SELECT legacy_code, code_2025, legacy_level FROM crosswalk")


async def fetch_pairs(conn: AsyncConnection) -> list[tuple[str, str, str]]:
    return [(r.legacy_code, r.code_2025, r.legacy_level) for r in await conn.execute(_PAIRS)]
