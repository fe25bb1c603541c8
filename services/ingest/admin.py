"""API keys over HTTP (`/v1/admin/keys`, role `admin`): create, list, read, revoke.

An admin key manages the keys whose scope lies inside its own (Principal.covers), so a province's
administrator can issue keys for its districts and communes, and never see or touch another province's.
A new key gets only roles its creator holds and never outlives it: delegation cannot widen a privilege.
A key outside the admin's scope is answered 404, exactly like one that does not exist.

The ingest service hosts these routes because its database role may write `api_keys`; the query
service's may only read it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from services.ingest.api import Credentials, RuntimeDep, loaded_hierarchy, principal_of
from services.ingest.schemas import KeyCreate, KeyCreated, KeyPage, KeyView
from shared.auth import Principal, Role, create_key, keys_within, revoke_key
from shared.db import transaction
from shared.errors import (
    Forbidden,
    MalformedJson,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
    responses,
    safe_echo,
)
from shared.hierarchy import NATION, Edition

router = APIRouter(prefix="/v1/admin/keys", tags=["api keys"])

KEY_ID = re.compile(r"[0-9a-f]{12}")
# Answers carry key metadata (and once, the key): no cache anywhere may keep them.
NO_STORE = {"Cache-Control": "no-store"}
_ERRORS = (Unauthorized, Forbidden, ValidationFailed, TooManyRequests, ServiceUnavailable)

KeyIdPath = Annotated[str, Path(max_length=64, description="The key id (the 12 hex digits after `d06_`).")]


async def _admin(request: Request, runtime: RuntimeDep, credentials: Credentials) -> Principal:
    principal = await principal_of(request, runtime, credentials)
    if not principal.has(Role.ADMIN):
        raise Forbidden("this API key lacks the `admin` role")
    return principal


Admin = Annotated[Principal, Depends(_admin)]  # a dependency: authenticated before the body is validated


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={**NO_STORE, **(headers or {})})


def view(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    if row["revoked_at"] is not None:
        state = "revoked"
    elif row["expires_at"] is not None and row["expires_at"] <= now:
        state = "expired"
    else:
        state = "active"
    return KeyView(
        id=row["id"], name=row["name"], scope=row["scope_code"], edition=row["scope_edition"],
        roles=list(row["roles"]), state=state, created_at=row["created_at"], expires_at=row["expires_at"],
        revoked_at=row["revoked_at"], last_used_at=row["last_used_at"], created_by=row["created_by"],
    ).model_dump(mode="json")


def _invalid(loc: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"loc": loc, "message": message}])


def _checked(admin: Principal, body: KeyCreate, runtime: RuntimeDep) -> tuple[str | None, datetime | None]:
    """The new key's edition and expiry, once everything about the request is known to be allowed."""
    hierarchy = loaded_hierarchy(runtime)
    edition: str | None
    if body.scope == NATION:
        edition = body.edition
    else:
        edition = body.edition or admin.scope_edition or Edition.E2025.value
        if hierarchy.get(edition, body.scope) is None:
            raise _invalid("scope", f"there is no unit '{safe_echo(body.scope, 16)}' in edition {edition}")
    if not admin.covers(hierarchy, edition, body.scope):
        mine = admin.scope_code + (f" ({admin.scope_edition})" if admin.scope_edition else "")
        theirs = body.scope + (f" ({edition})" if edition else " (every edition)")
        raise Forbidden(f"scope {theirs} is outside this key's scope {mine}")
    extra = sorted(set(body.roles) - admin.roles)
    if extra:
        raise Forbidden(f"a key cannot grant roles it does not hold: {', '.join(extra)}")
    now = datetime.now(UTC)
    expires_at = body.expires_at if body.expires_at is not None else admin.expires_at
    if expires_at is not None and expires_at <= now:
        raise _invalid("expires_at", "expires_at must be in the future")
    if admin.expires_at is not None and expires_at is not None and expires_at > admin.expires_at:
        raise Forbidden(f"the new key cannot outlive this one (it expires at {admin.expires_at.isoformat()})")
    return edition, expires_at


@router.post(
    "", status_code=201, summary="Create an API key (shown once)", response_model=None,
    responses={201: {"model": KeyCreated, "description": "The key, shown this once."},
               **responses(*_ERRORS, MalformedJson, PayloadTooLarge)},
)
async def create(runtime: RuntimeDep, admin: Admin, body: KeyCreate) -> Response:
    edition, expires_at = _checked(admin, body, runtime)
    async with transaction(runtime.engine) as conn:
        key_id, key = await create_key(
            conn, name=body.name, scope_code=body.scope, scope_edition=edition, roles=list(body.roles),
            expires_at=expires_at, created_by=admin.key_id,
        )
        (row,) = await keys_within(conn, admin, key_id=key_id)
    return _json({**view(row, datetime.now(UTC)), "key": key}, 201,
                 headers={"Location": f"/v1/admin/keys/{key_id}"})


@router.get(
    "", summary="API keys inside this key's scope", response_model=None,
    responses={200: {"model": KeyPage}, **responses(*_ERRORS)},
)
async def list_keys(
    runtime: RuntimeDep, admin: Admin,
    limit: Annotated[int, Query(ge=1, le=500, description="Keys per page.")] = 100,
    cursor: Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page.")] = None,
) -> Response:
    if cursor is not None and not KEY_ID.fullmatch(cursor):
        raise _invalid("cursor", "not a cursor of this list; pass `next_cursor` unchanged")
    async with runtime.engine.connect() as conn:
        rows = await keys_within(conn, admin, after=cursor, limit=limit + 1)
    now = datetime.now(UTC)
    page = rows[:limit]
    more = len(rows) > limit
    return _json({"items": [view(r, now) for r in page], "next_cursor": page[-1]["id"] if more else None})


async def _visible(runtime: RuntimeDep, admin: Principal, key_id: str, *, revoke: bool) -> dict[str, Any]:
    if not KEY_ID.fullmatch(key_id):
        raise NotFound("no such key is visible to this API key")
    async with transaction(runtime.engine) as conn:
        found = await keys_within(conn, admin, key_id=key_id)
        if not found:
            raise NotFound(f"no key {key_id} is visible to this API key")
        if revoke and found[0]["revoked_at"] is None:
            await revoke_key(conn, key_id)
            found = await keys_within(conn, admin, key_id=key_id)
    return view(found[0], datetime.now(UTC))


@router.get(
    "/{key_id}", summary="One API key", response_model=None,
    responses={200: {"model": KeyView}, **responses(*_ERRORS, NotFound)},
)
async def get_key(runtime: RuntimeDep, admin: Admin, key_id: KeyIdPath) -> Response:
    return _json(await _visible(runtime, admin, key_id, revoke=False))


@router.delete(
    "/{key_id}", summary="Revoke an API key, at once on every replica", response_model=None,
    description="The key stops working with the next request it makes, on every replica (each request "
    "reads the key's row). The row stays, for the audit trail. Revoking a revoked key changes nothing.",
    responses={200: {"model": KeyView}, **responses(*_ERRORS, NotFound)},
)
async def revoke(runtime: RuntimeDep, admin: Admin, key_id: KeyIdPath) -> Response:
    return _json(await _visible(runtime, admin, key_id, revoke=True))
