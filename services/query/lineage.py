"""A unit's lineage across the 2025 reform (DESIGN §7): the units of the other edition it is linked to."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.query import schemas
from services.query.metrics import QueryMetrics
from services.query.scope import Sight
from services.query.service import unit_schema
from shared.crosswalk_db import fetch_lineage
from shared.hierarchy import Edition, Hierarchy, Unit
from shared.values import as_number


async def lineage(
    conn: AsyncConnection, metrics: QueryMetrics, hierarchy: Hierarchy, sight: Sight, unit: Unit
) -> schemas.Lineage:
    """For a 2025 unit the legacy units it was formed from, for a legacy unit the 2025 units it went into;
    a unit the key may not read is left out (a legacy key reads nothing of the 2025 edition)."""
    other = Edition.LEGACY.value if unit.edition == Edition.E2025.value else Edition.E2025.value
    rows = await fetch_lineage(conn, unit.edition, unit.code)
    metrics.read("lineage", len(rows))
    items = []
    for r in rows:
        linked = hierarchy.get(other, r.code)
        if linked is not None and sight.sees(linked):
            items.append(schemas.LineageItem(code=r.code, name=r.name, level=r.level,
                                             weight=as_number(r.weight) or 0, basis=r.basis))
    return schemas.Lineage(
        unit=unit_schema(hierarchy, unit), edition=unit.edition,
        direction="formed_from" if unit.edition == Edition.E2025.value else "went_into", items=items,
    )
