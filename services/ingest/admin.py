"""API keys over HTTP (`/v1/admin/keys`, role `admin`): create, list, read, revoke.

An admin key manages the keys whose scope lies inside its own (Principal.covers), so a province's
administrator can issue keys for its districts and communes, and never see or touch another province's.
A new key gets only roles its creator holds and never outlives it: delegation cannot widen a privilege.
A key outside the admin's scope is answered 404, exactly like one that does not exist.

The ingest service hosts these routes because its database role may write `api_keys`; the query
service's may only read it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from services.ingest.deps import Admin, AppState, KeyCursor, KeyId, LoadedHierarchy
from services.ingest.schemas import KeyCreate, KeyCreated, KeyPage, KeyView
from shared import keys
from shared.db import transaction
from shared.errors import (
    Forbidden,
    MalformedJson,
    NotFound,
    PayloadTooLarge,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
    responses,
)

router = APIRouter(prefix="/v1/admin/keys", tags=["api keys"])

# Answers carry key metadata (and once, the key): no cache anywhere may keep them.
NO_STORE = {"Cache-Control": "no-store"}
_ERRORS = (Unauthorized, Forbidden, ValidationFailed, TooManyRequests, ServiceUnavailable)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={**NO_STORE, **(headers or {})})


def view(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    return KeyView(
        id=row["id"], name=row["name"], scope=row["scope_code"], edition=row["scope_edition"],
        roles=list(row["roles"]), state=keys.state_of(row, now), created_at=row["created_at"],
        expires_at=row["expires_at"], revoked_at=row["revoked_at"], last_used_at=row["last_used_at"],
        created_by=row["created_by"],
    ).model_dump(mode="json")


def _problem(refused: keys.KeyRefused) -> Problem:
    if refused.forbidden:
        return Forbidden(refused.message)
    return ValidationFailed(refused.message, errors=[{"loc": refused.loc, "message": refused.message}])


@router.post(
    "", status_code=201, summary="Create an API key (shown once)", response_model=None,
    responses={201: {"model": KeyCreated, "description": "The key, shown this once."},
               **responses(*_ERRORS, MalformedJson, PayloadTooLarge)},
)
async def create(state: AppState, admin: Admin, hierarchy: LoadedHierarchy, body: KeyCreate) -> Response:
    request = keys.KeyRequest(name=body.name, scope=body.scope, roles=[r.value for r in body.roles],
                              edition=body.edition, expires_at=body.expires_at)
    now = datetime.now(UTC)
    try:
        async with transaction(state.engine) as conn:
            row, key = await keys.create(conn, request, hierarchy, admin, now)
    except keys.KeyRefused as refused:
        raise _problem(refused) from None
    return _json({**view(row, now), "key": key}, 201, headers={"Location": f"/v1/admin/keys/{row['id']}"})


@router.get(
    "", summary="API keys inside this key's scope", response_model=None,
    responses={200: {"model": KeyPage}, **responses(*_ERRORS)},
)
async def list_keys(
    state: AppState, admin: Admin, cursor: KeyCursor,
    limit: Annotated[int, Query(ge=1, le=500, description="Keys per page.")] = 100,
) -> Response:
    async with state.engine.connect() as conn:
        rows = await keys.list_visible(conn, admin, after=cursor, limit=limit + 1)
    now = datetime.now(UTC)
    page = rows[:limit]
    more = len(rows) > limit
    return _json({"items": [view(r, now) for r in page], "next_cursor": page[-1]["id"] if more else None})


@router.get(
    "/{key_id}", summary="One API key", response_model=None,
    responses={200: {"model": KeyView}, **responses(*_ERRORS, NotFound)},
)
async def get_key(state: AppState, admin: Admin, key_id: KeyId) -> Response:
    async with state.engine.connect() as conn:
        row = await keys.find(conn, key_id, admin)
    if row is None:
        raise NotFound(f"no key {key_id} is visible to this API key")
    return _json(view(row, datetime.now(UTC)))


@router.delete(
    "/{key_id}", summary="Revoke an API key, at once on every replica", response_model=None,
    description="The key stops working with the next request it makes, on every replica (each request "
    "reads the key's row). The row stays, for the audit trail. Revoking a revoked key changes nothing.",
    responses={200: {"model": KeyView}, **responses(*_ERRORS, NotFound)},
)
async def revoke(state: AppState, admin: Admin, key_id: KeyId) -> Response:
    async with transaction(state.engine) as conn:
        revoked = await keys.revoke(conn, key_id, admin)
        row = None if revoked is None else await keys.find(conn, key_id, admin)
    if row is None:
        raise NotFound(f"no key {key_id} is visible to this API key")
    return _json(view(row, datetime.now(UTC)))
