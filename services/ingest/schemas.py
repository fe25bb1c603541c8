"""The shapes of the ingest API, for the OpenAPI document.

Requests are not parsed through these models: `validation.py` reads the raw JSON so that numbers stay
exact decimals and every error carries its location and a readable message. The models describe the
same contract for clients and the generated docs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import FieldError

EVENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class EventIn(BaseModel):
    """One figure: the value of `indicator` for `unit` in `period`. Sending it again replaces it."""

    model_config = ConfigDict(extra="forbid")

    event_id: str | None = Field(
        None, pattern=EVENT_ID_PATTERN,
        description="The client's idempotency key; generated when absent. Resending the same event_id "
                    "with the same content is answered like the first time; with other content it is a 409.",
    )
    unit: str = Field(description="GSO code with its leading zeros: province `80`, district `803`, "
                                  "commune `00004`, or `VN`.")
    edition: Literal["legacy", "2025"] | None = Field(
        None, description="Hierarchy edition of `unit`; when absent, the edition in force at the end of the "
                          "period (`legacy` before 2025-07-01, `2025` from then).",
    )
    indicator: str = Field(description="Catalogue code, e.g. `cccd_issued`; retired codes are refused.")
    period: str = Field(description="The indicator's native period: `2024`, `2024-H1`, `2024-Q3`, "
                                    "`2024-07` or `2024-07-15`.")
    value: float | bool | None = Field(
        None, description="flow/stock: a number ≥ 0 (exact decimals, at most 6 places). boolean: true/false. "
                          "`null` retracts the value sent before. Not for ratios.",
    )
    numerator: float | None = Field(None, description="ratio (or boolean coverage): the numerator, ≥ 0.")
    denominator: float | None = Field(None, description="ratio (or boolean coverage): the denominator, > 0.")
    comment: str | None = Field(None, max_length=1000, description="Where the figure comes from.")


class EventBatchIn(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=5000)


BATCH_EXAMPLE: dict[str, Any] = {
    "events": [
        {"event_id": "longmy-2024-07-cccd", "unit": "936", "edition": "legacy", "indicator": "cccd_issued",
         "period": "2024-07", "value": 87700, "comment": "Sơ kết 6 tháng và tháng 7/2024"},
        {"event_id": "longmy-2024-07-coverage", "unit": "936", "indicator": "cccd_coverage",
         "period": "2024-07", "numerator": 87700, "denominator": 90412},
    ]
}


def batch_request_openapi() -> dict[str, Any]:
    """`openapi_extra` of POST /v1/events: the body is documented here and read raw by the handler."""
    schema = EventBatchIn.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    schema["properties"]["events"]["items"] = EventIn.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "example": BATCH_EXAMPLE}},
        }
    }


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the batch.")
    event_id: str | None
    status: int = Field(description="403 outside the key's scope, 409 conflict, 422 invalid.")
    type: str = Field(description="Problem type URI, as in problem+json.")
    errors: list[FieldError]


class EventRef(BaseModel):
    event_id: str
    seq: int = Field(description="Sequence number in the outbox: for one unit, indicator and period, "
                                 "the highest seq wins.")


class BatchAccepted(BaseModel):
    accepted: int = Field(description="Events accepted, resends of stored events included.")
    rejected: list[RejectedEvent] = Field(description="Refused events (only with `atomic=false`).")
    events: list[EventRef]


class SubmittedBy(BaseModel):
    key_id: str | None
    client_addr: str | None


class EventStatus(BaseModel):
    event_id: str
    seq: int
    status: Literal["accepted", "published", "applied", "rejected"] = Field(
        description="`accepted` (in the outbox) → `published` (on Kafka) → `applied` (in the read model), "
                    "or `rejected` by the aggregator with a `reason`.",
    )
    reason: str | None = None
    edition: str
    unit: str
    indicator: str
    period: str
    value: float | bool | None = None
    numerator: float | None = None
    denominator: float | None = None
    comment: str | None = None
    accepted_at: datetime
    published_at: datetime | None
    submitted_by: SubmittedBy | None = Field(None, description="Only for the key that sent it, or an admin key.")


