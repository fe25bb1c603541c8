"""The ingest HTTP API: POST /v1/events and GET /v1/events/{event_id}."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from services.ingest.body import MAX_EVENTS, parse_body, read_body
from services.ingest.deps import AppState, Caller, EventId, LoadedHierarchy, Submitter
from services.ingest.outbox import event_status_row
from services.ingest.schemas import BatchAccepted, EventStatus, batch_request_openapi
from services.ingest.service import Refused, can_read, event_view, submit
from services.ingest.validation import Context, validate_batch
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
from shared.periods import today_in_vietnam

router = APIRouter(prefix="/v1", tags=["events"])


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.post(
    "/events",
    status_code=202,
    summary="Submit a batch of indicator values",
    description=(
        f"Accepts 1 to {MAX_EVENTS:,} events. Each is validated against the catalogue (indicator, native period, "
        "figures for its measure) and the hierarchy (the unit in the edition in force at the end of the "
        "period, unless `edition` is given), and must lie inside the API key's scope. Accepted events are "
        "stored durably in the outbox before the 202 answer; publication to Kafka follows at once, or "
        "as soon as Kafka is back.\n\n"
        "With `atomic=true` (default) any bad event refuses the whole batch and nothing is stored: 403 "
        "when an event is outside the key's scope, 409 when an event_id was stored with other content, "
        "422 otherwise, with one error per bad field (`events[3].period`). With `atomic=false` the "
        "valid events are stored and the bad ones are listed in `rejected`.\n\n"
        "Resending an event_id with the same content is answered like the first time (same `seq`)."
    ),
    response_model=None,
    responses={
        202: {"model": BatchAccepted, "description": "Stored in the outbox; publication follows."},
        **responses(MalformedJson, Unauthorized, Forbidden, Conflict, PayloadTooLarge, ValidationFailed,
                    TooManyRequests, ServiceUnavailable),
    },
    openapi_extra=batch_request_openapi(),
)
async def submit_events(
    request: Request,
    state: AppState,
    principal: Submitter,
    hierarchy: LoadedHierarchy,
    atomic: Annotated[bool, Query(description="Refuse the whole batch if any event is bad.")] = True,
) -> Response:
    # A declared Content-Length above the limit was refused before the app ran (BodyLimitMiddleware).
    events = parse_body(await read_body(request.stream(), state.settings.max_body_bytes))
    state.metrics.batch_size.observe(len(events))
    validation = validate_batch(events, Context(state.catalog, hierarchy, principal, today_in_vietnam()))
    try:
        async with transaction(state.engine) as conn:
            outcome = await submit(conn, validation, atomic=atomic, key_id=principal.key_id,
                                   client_addr=request.client.host if request.client else None)
    except Refused as refused:
        state.metrics.count_refused(validation, refused)
        raise refused.problem from None
    state.metrics.count(outcome)
    state.wake_relay()  # after the commit: the relay can only see committed rows
    return _json(outcome.body(), 202)


@router.get(
    "/events/{event_id}",
    summary="The status of one submitted event",
    description=(
        "`accepted` (stored in the outbox) → `published` (on Kafka) → `applied` (in the read model), or "
        "`rejected` by the aggregator with its `reason`. Any valid key whose scope contains the event's "
        "unit may ask; other events answer 404, whether or not they exist. `submitted_by` is shown to "
        "the key that sent the event and to admin keys."
    ),
    response_model=None,
    responses={200: {"model": EventStatus},
               **responses(Unauthorized, NotFound, TooManyRequests, ServiceUnavailable)},
)
async def get_event(state: AppState, principal: Caller, hierarchy: LoadedHierarchy, event_id: EventId) -> Response:
    async with state.engine.connect() as conn:
        row = await event_status_row(conn, event_id, state.settings.events_topic)
    if row is None or not can_read(principal, hierarchy, row.edition, row.unit):
        raise NotFound(f"no event {event_id} is visible to this API key")
    return _json(event_view(row, state.catalog, principal))
