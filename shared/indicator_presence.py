"""Which indicators each province tree holds any row of (migration 0012).

Every aggregator batch records, in its own transaction and under its provinces' writer locks, the (edition,
province, indicator) of each event it applies; only batches write rollups, so a triple absent here has no row
in the province's tree, and the quality step (services/aggregate/quality_step.py) asks PostgreSQL only for the
rule inputs that can exist, and does not check a rule that skips on a missing value where one of its indicators
cannot exist. It is a superset (a retraction leaves its triple), which only costs a probe or a check.
`d06 quality rebuild` records again what the read model holds, for rows written by an aggregator that did not
record them (one of the release before, during a rollout).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import json_document
from shared.events import AcceptedEvent

Triple = tuple[str, str, str]  # edition, province, indicator

_RECORD = text("""
INSERT INTO indicator_presence (edition, province, indicator)
SELECT e, p, i FROM json_to_recordset(CAST(:triples AS json)) AS t(e text, p text, i text)
ON CONFLICT DO NOTHING
""")

_PRESENT = text("""
SELECT edition, province, indicator FROM indicator_presence WHERE province = ANY(CAST(:provinces AS text[]))
""")

_REDERIVE = text("""
INSERT INTO indicator_presence (edition, province, indicator)
SELECT DISTINCT r.edition, u.province_code, r.indicator
FROM units u JOIN rollups r ON r.edition = u.edition AND r.unit = u.code
WHERE u.edition = :edition AND u.province_code = :province
ON CONFLICT DO NOTHING
""")


def of(events: Iterable[AcceptedEvent]) -> set[Triple]:
    """The triples a batch of events records."""
    return {(ev.edition, ev.province, ev.indicator) for ev in events}


async def record(conn: AsyncConnection, triples: Collection[Triple]) -> None:
    if triples:
        await conn.execute(_RECORD, {"triples": json_document([{"e": e, "p": p, "i": i} for e, p, i in triples])})


async def present(conn: AsyncConnection, provinces: Collection[str]) -> set[Triple]:
    """The triples recorded for these provinces (codes, of any edition)."""
    if not provinces:
        return set()
    result = await conn.execute(_PRESENT, {"provinces": sorted(provinces)})
    return {(r[0], r[1], r[2]) for r in result}


async def rederive(conn: AsyncConnection, edition: str, province: str) -> int:
    """Record what one province tree's rows hold; how many triples were missing."""
    return int((await conn.execute(_REDERIVE, {"edition": edition, "province": province})).rowcount)
