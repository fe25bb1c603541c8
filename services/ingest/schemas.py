"""The shapes of the ingest API, for the OpenAPI document.

Requests are not parsed through these models: `validation.py` reads the raw JSON so that numbers stay
exact decimals and every error carries its location and a readable message. The models describe the
same contract for clients and the generated docs.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from services.ingest.body import MAX_EVENTS
from services.ingest.validation import EVENT_ID_PATTERN, MAX_COMMENT, read_comment
from shared.auth import Role
from shared.errors import FieldError
from shared.limits import unsafe_character


class EventIn(BaseModel):
    """One figure: the value of `indicator` for `unit` in `period`. Sending it again replaces it."""

    model_config = ConfigDict(extra="forbid")

    event_id: str | None = Field(
        None, pattern=f"^{EVENT_ID_PATTERN}$",
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
    comment: str | None = Field(None, max_length=MAX_COMMENT, description="Where the figure comes from.")


class EventBatchIn(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


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
    submitted_by: SubmittedBy | None = Field(None, description="Only for the key that sent it, or an admin key.")


# ---- API keys (/v1/admin/keys)

class KeyCreate(BaseModel):
    """A new key. Its scope must lie inside the creating key's, its roles among the creator's, and it
    cannot outlive the creator: an admin key can delegate what it holds, never more."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="Who holds the key, for people reading the list.",
                      examples=["Sở TT&TT Long An — integration"])
    scope: str = Field(min_length=1, max_length=16, description="The unit whose subtree the key may see and "
                       "submit for (`80`, `803`), or `VN`.", examples=["80"])
    edition: Literal["legacy", "2025"] | None = Field(
        None, description="Edition of the scope unit; default the creator's, else `2025`. For `VN`, absent "
                          "means every edition (only a creator of every edition may give that).")
    roles: list[Role] = Field(min_length=1, max_length=len(Role), description="Roles among the creator's own: "
                              "`submit`, `read`, `admin`, `review` (acknowledges data-quality flags).")
    expires_at: AwareDatetime | None = Field(
        None, description="When the key stops working (RFC 3339, with offset); default the creator's expiry.")

    @field_validator("name")
    @classmethod
    def _readable(cls, name: str) -> str:
        bad = unsafe_character(name)
        if bad is not None:
            raise ValueError(f"a name may not contain control or invisible characters (U+{ord(bad[1]):04X})")
        if not name.strip():
            raise ValueError("a name is not blank")
        return unicodedata.normalize("NFC", name.strip())


class KeyView(BaseModel):
    id: str = Field(description="The public part of the key (`d06_<id>_…`); the secret is never shown again.")
    name: str
    scope: str
    edition: str | None = Field(description="`null` for a VN key of every edition.")
    roles: list[str]
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(
        description="Last authenticated use at the ingest service, to the minute. Reads at the query service "
                    "are not recorded: its database role may only SELECT.")
    created_by: str | None = Field(description="Id of the admin key that created it; `null` for the CLI.")


class KeyCreated(KeyView):
    key: str = Field(description="The API key, shown this once: only its SHA-256 is stored.")


class KeyPage(BaseModel):
    items: list[KeyView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; `null` on the last.")


# ---- quality flags (/v1/quality/{id}/acknowledge)

ACKNOWLEDGE_EXAMPLE = "the district re-counted; the figure is right"


class AcknowledgeIn(BaseModel):
    """A reviewer's note on a flag: what was checked, for the people who read the quality listing."""

    model_config = ConfigDict(extra="forbid")

    comment: str = Field(description=f"What was checked, 1 to {MAX_COMMENT:,} characters (trimmed).",
                         examples=[ACKNOWLEDGE_EXAMPLE])

    @field_validator("comment")
    @classmethod
    def _readable(cls, comment: str) -> str:
        problems: list[str] = []
        kept = read_comment(comment.strip(), lambda _field, message: problems.append(message))
        if problems:
            raise ValueError(problems[0])
        if not kept:
            raise ValueError("a comment is required: say what was checked (e.g. \"the district re-counted\")")
        return kept


class Acknowledgement(BaseModel):
    by: str = Field(description="The id of the API key that acknowledged the flag.")
    at: datetime
    comment: str


class AcknowledgedFlag(BaseModel):
    id: int
    status: Literal["acknowledged"] = Field(description="Open, and checked by a reviewer; a later change of a "
                                                        "value the flag reads clears the acknowledgement.")
    acknowledged: Acknowledgement
    edition: str
    unit: str
    period: str
    kind: Literal["rule", "outlier"]
    code: str = Field(description="The rule's code, or the indicator's for an outlier.")
    importance: Literal["high", "medium", "low"]
    left: float | None = Field(description="A rule's left side; an outlier's scored value.")
    right: float | None = Field(description="A rule's right side; the median of an outlier's window.")
    score: float | None = Field(description="An outlier's modified z-score; null for a rule, or for a "
                                            "departure from a constant history.")
