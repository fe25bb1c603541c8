"""Scenario 5: one national figure, from the rollups and from the facts, in the same run.

From the rollups: the statement the query service runs for `GET /v1/units/VN/values` (the nation is
summed at read time from the 63 province rows, DESIGN §3). From the facts: what a batch analytics system
does without a read model, one SQL query that starts from the reported values (decisions.md: the facts
are the reported pairs) and sums them up the hierarchy level by level, a reported figure at a district or
province taking the place of its children's sum, as d06's semantics say. Both answers must be equal.
Each statement runs `national_repeats` times after one warm-up; the medians are compared.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.config import Sizes
from bench.report import Figure
from bench.stack import BenchStack, note, step
from bench.workload import MONTH
from services.query import repository
from shared.db import make_engine

INDICATOR = "cccd_issued"

FROM_FACTS = text("""
WITH facts AS (
    SELECT unit, rep_num AS num, rep_den AS den FROM rollups
    WHERE edition = :edition AND indicator = :indicator AND period = :period AND rep_num IS NOT NULL
), communes AS (
    SELECT u.parent_code AS district, sum(f.num) AS num, sum(f.den) AS den
    FROM facts f JOIN units u ON u.edition = :edition AND u.code = f.unit AND u.level = 'commune'
    GROUP BY u.parent_code
), districts AS (
    SELECT u.parent_code AS province, sum(coalesce(f.num, c.num)) AS num,
           sum(CASE WHEN f.num IS NOT NULL THEN f.den ELSE c.den END) AS den
    FROM units u LEFT JOIN facts f ON f.unit = u.code LEFT JOIN communes c ON c.district = u.code
    WHERE u.edition = :edition AND u.level = 'district'
    GROUP BY u.parent_code
), provinces AS (
    SELECT sum(coalesce(f.num, d.num)) AS num, sum(CASE WHEN f.num IS NOT NULL THEN f.den ELSE d.den END) AS den
    FROM units u LEFT JOIN facts f ON f.unit = u.code LEFT JOIN districts d ON d.province = u.code
    WHERE u.edition = :edition AND u.level = 'province'
)
SELECT coalesce(v.num, p.num) AS num, CASE WHEN v.num IS NOT NULL THEN v.den ELSE p.den END AS den
FROM provinces p LEFT JOIN facts v ON v.unit = 'VN'
""")


async def _timed(conn: AsyncConnection, statement: Any, params: dict[str, Any], repeats: int) -> tuple[float, Any]:
    await conn.execute(statement, params)  # warm-up: plan cached, pages in memory
    times = []
    rows: Any = None
    for _ in range(repeats):
        started = time.perf_counter()
        rows = (await conn.execute(statement, params)).all()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times), rows


async def scenario(stack: BenchStack, sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    step(f"[scenario 5] the national value of {INDICATOR} for {MONTH}: from the rollups and from the facts")
    rollup = repository.nation_rows("legacy", [INDICATOR], [INDICATOR], [MONTH])
    engine = make_engine(stack.url, pool_size=1, app="d06-bench")
    try:
        async with engine.connect() as conn:
            rollup_ms, rollup_rows = await _timed(conn, rollup.statement, rollup.params, sizes.national_repeats)
            facts_ms, facts_rows = await _timed(
                conn, FROM_FACTS, {"edition": "legacy", "indicator": INDICATOR, "period": MONTH},
                sizes.national_repeats)
    finally:
        await engine.dispose()
    from_rollups = next((r.comp_num if r.rep_num is None else r.rep_num for r in rollup_rows), None)
    from_facts = facts_rows[0].num if facts_rows else None
    if from_rollups != from_facts:
        raise RuntimeError(f"the two answers differ: rollups {from_rollups}, facts {from_facts}")
    ratio = facts_ms / rollup_ms
    rows = await stack.fetchval("SELECT count(*) FROM rollups")
    note(f"both answer {from_facts:,}: rollups {rollup_ms:.2f} ms, facts {facts_ms:.2f} ms ({ratio:,.0f}× slower); "
         f"{rows:,} rows in the read model")
    figures = [
        Figure("5 national", f"from the rollups (the query service's statement), median of {sizes.national_repeats}",
               rollup_ms, "ms"),
        Figure("5 national", "from the facts (one SQL over the hierarchy), median", facts_ms, "ms"),
        Figure("5 national", "facts ÷ rollups", ratio, "x"),
    ]
    return figures, {"value": str(from_facts), "rollups_ms": rollup_ms, "facts_ms": facts_ms, "rows": rows}
