"""A reviewer acknowledges a data-quality flag: `POST /v1/quality/{flag_id}/acknowledge` (role `review`).

The aggregator writes the flags (shared/quality_flags.py); ingest writes only the three
`acknowledged_*` columns, which its database role may UPDATE. The flag's row is locked while it is checked,
so an aggregator batch that resolves it or changes its values (and with them clears any acknowledgement)
lands either wholly before this request, which then sees it, or wholly after.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body
from sqlalchemy import text
from sqlalchemy.engine import Row
from starlette.responses import Response

from services.ingest.deps import AppState, FlagId, LoadedHierarchy, Reviewer
from services.ingest.schemas import ACKNOWLEDGE_EXAMPLE, AcknowledgedFlag, AcknowledgeIn
from services.ingest.service import can_read
from services.ingest.validation import MAX_COMMENT, outside_scope
from shared.db import transaction
from shared.errors import (
    Conflict,
    Forbidden,
    MalformedJson,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
    responses,
)
from shared.events import announce
from shared.values import as_number

router = APIRouter(prefix="/v1/quality", tags=["quality flags"])

_LOCK = text("SELECT edition, unit, status FROM quality_flags WHERE id = :id FOR UPDATE")

_ACKNOWLEDGE = text("""
UPDATE quality_flags
SET acknowledged_by = :by, acknowledged_at = now(), acknowledged_comment = :comment
WHERE id = :id
RETURNING id, edition, unit, period, kind, code, importance, left_value, right_value, score,
          acknowledged_by, acknowledged_at, acknowledged_comment
""")


def _view(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id, "status": "acknowledged",
        "acknowledged": {"by": row.acknowledged_by, "at": row.acknowledged_at.isoformat(),
                         "comment": row.acknowledged_comment},
        "edition": row.edition, "unit": row.unit, "period": row.period, "kind": row.kind, "code": row.code,
        "importance": row.importance, "left": as_number(row.left_value), "right": as_number(row.right_value),
        "score": as_number(row.score),
    }


_EXAMPLE = {
    "id": 4127, "status": "acknowledged",
    "acknowledged": {"by": "3f9a0c1b2d4e", "at": "2026-12-02T09:14:03.512+00:00", "comment": ACKNOWLEDGE_EXAMPLE},
    "edition": "legacy", "unit": "27991", "period": "2024-01", "kind": "rule",
    "code": "vneid_l2_activated_within_cccd", "importance": "high", "left": 5000, "right": 1100, "score": None,
}


_BODY_EXAMPLES: dict[str, Any] = {
    "recounted": {"summary": "The figure was checked at its source",
                  "value": {"comment": ACKNOWLEDGE_EXAMPLE}},
    "explained": {"summary": "The figure is right for a known reason",
                  "value": {"comment": "Sáp nhập 3 xã từ 01/2024: số tăng đột biến là đúng"}},
}


@router.post(
    "/{flag_id}/acknowledge",
    summary="Acknowledge a data-quality flag: a reviewer checked the figures",
    description=(
        "Marks an open flag (a rule violation or an outlier) as checked, with a comment saying what was "
        "checked; who (the API key's id), when and the comment are kept and shown with the flag. "
        "Acknowledging again replaces them. A later change of a value the flag reads clears the "
        "acknowledgement: the flag is open for review again.\n\n"
        "Needs the `review` role (403 otherwise). The flag's unit must lie inside the key's scope and edition, "
        "as for submitting (403 otherwise, naming the flag). 404: no such flag. 409: the flag is resolved "
        f"(its figures no longer break the rule). 422: the comment is missing, blank or over {MAX_COMMENT:,} "
        "characters. Nothing changes on any error."
    ),
    response_model=None,
    responses={
        200: {"model": AcknowledgedFlag, "description": "Acknowledged.",
              "content": {"application/json": {"example": _EXAMPLE}}},
        **responses(MalformedJson, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, ValidationFailed,
                    TooManyRequests, ServiceUnavailable),
    },
)
async def acknowledge(
    state: AppState, principal: Reviewer, hierarchy: LoadedHierarchy, flag_id: FlagId,
    body: Annotated[AcknowledgeIn, Body(openapi_examples=_BODY_EXAMPLES)],
) -> Response:
    async with transaction(state.engine) as conn:
        flag = (await conn.execute(_LOCK, {"id": flag_id})).first()
        if flag is None:
            raise NotFound(f"no quality flag {flag_id}")
        if not can_read(principal, hierarchy, flag.edition, flag.unit):
            message = outside_scope(principal, flag.edition, flag.unit)
            raise Forbidden(f"flag {flag_id}: {message}; nothing was changed",
                            errors=[{"loc": "flag_id", "message": message}])
        if flag.status == "resolved":
            raise Conflict(f"flag {flag_id} is resolved: resolved flags need no acknowledgement")
        row = (await conn.execute(_ACKNOWLEDGE, {"id": flag_id, "by": principal.key_id,
                                                 "comment": body.comment})).one()
        # The query service keeps answers per province; their values show the flag, now acknowledged.
        unit = hierarchy.get(flag.edition, flag.unit)
        if unit is not None and unit.province_code is not None:
            await announce(conn, {f"{flag.edition}/{unit.province_code}"})
    return Response(orjson.dumps(_view(row)), media_type="application/json")
