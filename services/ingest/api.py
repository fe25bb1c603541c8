"""The ingest HTTP API: POST /v1/events and GET /v1/events/{event_id}."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from services.ingest.outbox import event_status_row
from services.ingest.runtime import Runtime
from services.ingest.schemas import BatchAccepted, EventStatus, batch_request_openapi
from services.ingest.service import Refused, Submission, can_read, event_view, submit
from services.ingest.validation import (
    EVENT_ID,
    BatchValidation,
    Context,
    parse_body,
    validate_batch,
)
from shared.auth import Principal, Role, authenticate
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
from shared.hierarchy import Hierarchy
from shared.periods import today_in_vietnam

router = APIRouter(prefix="/v1", tags=["events"])
bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="An API key created with `d06 keys create`: `Authorization: Bearer d06_…`.")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ServiceUnavailable("the service is starting; retry in a few seconds", headers={"Retry-After": "2"})
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def principal_of(
    request: Request, runtime: Runtime, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The caller's key, checked against the database on every request (so a revocation or an expiry
    takes effect at once on every replica), then charged one token of its rate limit."""
    if credentials is None:
        raise Unauthorized("send an API key: `Authorization: Bearer <key>`")
    async with transaction(runtime.engine) as conn:
        principal = await authenticate(conn, credentials.credentials, touch=True)
    if principal is None:
        raise Unauthorized("the API key is unknown, revoked or expired")
    request.state.key_id = principal.key_id  # for the log line of an error, never the key itself
    wait = runtime.limiter.acquire(principal.key_id or "")
    if wait:
        raise TooManyRequests(
            f"this API key exceeded {runtime.limiter.rate:g} requests a second; retry later",
            headers={"Retry-After": runtime.limiter.retry_after(wait)},
        )
    return principal


def loaded_hierarchy(runtime: Runtime) -> Hierarchy:
    if runtime.hierarchy is None:
        raise ServiceUnavailable("the unit hierarchy is not loaded yet; retry in a few seconds",
                                 headers={"Retry-After": "5"})
    return runtime.hierarchy


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as the streamed bytes exceed `limit` (chunked or lying clients)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit:,} bytes; send smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.post(
    "/events",
    status_code=202,
    summary="Submit a batch of indicator values",
    description=(
        "Accepts 1 to 5,000 events. Each is validated against the catalogue (indicator, native period, "
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
    runtime: RuntimeDep,
    credentials: Credentials,
    atomic: Annotated[bool, Query(description="Refuse the whole batch if any event is bad.")] = True,
) -> Response:
    limit = runtime.settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # before any work, even authentication
        raise PayloadTooLarge(f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    principal = await principal_of(request, runtime, credentials)
    if not principal.has(Role.SUBMIT):
        raise Forbidden("this API key lacks the `submit` role")
    hierarchy = loaded_hierarchy(runtime)
    events = parse_body(await read_body(request, limit))
    runtime.metrics.batch_size.observe(len(events))
    validation = validate_batch(events, Context(runtime.catalog, hierarchy, principal, today_in_vietnam()))
    try:
        async with transaction(runtime.engine) as conn:
            outcome = await submit(conn, validation, atomic=atomic, key_id=principal.key_id,
                                   client_addr=request.client.host if request.client else None)
    except Refused as refused:
        _count_refused(runtime, validation, refused)
        raise refused.problem from None
    _count(runtime, outcome)
    runtime.wake_relay()  # after the commit: the relay can only see committed rows
    return _json(outcome.body(), 202)


def _count(runtime: Runtime, outcome: Submission) -> None:
    metrics = runtime.metrics  # one increment per label set, not per event: a batch is mostly one group
    for group, n in Counter(event.group for event in outcome.stored).items():
        metrics.accepted.labels(group).inc(n)
    for group, n in Counter(event.group for event in outcome.duplicates).items():
        metrics.duplicates.labels(group).inc(n)
    for (group, reason), n in Counter((r.group, r.reason.value) for r in outcome.rejected).items():
        metrics.rejected.labels(group, reason).inc(n)


def _count_refused(runtime: Runtime, validation: BatchValidation, refused: Refused) -> None:
    metrics = runtime.metrics
    culprits = {r.index for r in refused.rejected}
    for rejection in refused.rejected:
        metrics.rejected.labels(rejection.group, rejection.reason.value).inc()
    for event in validation.valid:
        if event.index not in culprits:  # refused only because of the others in its atomic batch
            metrics.rejected.labels(event.group, "batch").inc()


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
async def get_event(
    request: Request,
    runtime: RuntimeDep,
    credentials: Credentials,
    event_id: Annotated[str, Path(description="The event_id given (or generated) at submission.")],
) -> Response:
    principal = await principal_of(request, runtime, credentials)
    hierarchy = loaded_hierarchy(runtime)
    if not EVENT_ID.fullmatch(event_id):
        raise NotFound("no such event is visible to this API key")
    async with runtime.engine.connect() as conn:
        row = await event_status_row(conn, event_id)
    if row is None or not can_read(principal, hierarchy, row.edition, row.unit):
        raise NotFound(f"no event {event_id} is visible to this API key")
    return _json(event_view(row, runtime.catalog, principal))
