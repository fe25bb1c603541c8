"""Managing API keys: who may create which key, listing, revoking, and the state a key is in.

Two doors lead here: `d06 keys` (the operator at the database, bound by no other key) and ingest's
`/v1/admin/keys` (an admin key, which manages only the keys inside its own scope, and can delegate what it
holds, never more: roles among its own, a scope inside its own, an expiry no later than its own). Both ask
this module, so that the defaults and the rules cannot drift apart. How a key is minted, stored and checked
is `shared.auth`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.auth import KEY_ID, Principal, Role, create_key
from shared.errors import safe_echo
from shared.hierarchy import NATION, Edition, Hierarchy

KeyState = Literal["active", "expired", "revoked"]
ROLES = tuple(r.value for r in Role)


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """A key to create, as asked: `edition` None means the default (see `scope_edition`)."""

    name: str
    scope: str
    roles: list[str]
    edition: str | None = None
    expires_at: datetime | None = None


class KeyRefused(Exception):
    """A key that may not be created: `loc` names the field at fault; `forbidden` when the request is
    well formed but asks more than its creator may give (HTTP 403 rather than 422)."""

    def __init__(self, loc: str, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.forbidden = forbidden


def is_key_id(candidate: str) -> bool:
    return KEY_ID.fullmatch(candidate) is not None


def scope_edition(request: KeyRequest, creator: Principal | None) -> str | None:
    """The edition of the new key's scope: the one asked; else, for VN, every edition; else the
    creator's edition, else 2025 (the edition in force)."""
    if request.edition is not None or request.scope == NATION:
        return request.edition
    if creator is not None and creator.scope_edition is not None:
        return creator.scope_edition
    return Edition.E2025.value


def checked(
    request: KeyRequest, hierarchy: Hierarchy, creator: Principal | None, now: datetime
) -> tuple[str | None, datetime | None]:
    """The new key's edition and expiry, once everything about it is allowed; raises KeyRefused.
    `creator` None is the operator, who may create any key."""
    unknown = sorted(set(request.roles) - set(ROLES))
    if unknown:
        raise KeyRefused("roles", f"unknown role(s) {unknown}; roles are {', '.join(ROLES)}")
    edition = scope_edition(request, creator)
    if edition is not None and hierarchy.get(edition, request.scope) is None:
        raise KeyRefused("scope", f"there is no unit '{safe_echo(request.scope, 16)}' in edition {edition}")
    expires_at = request.expires_at
    if creator is not None:
        _within(request, edition, hierarchy, creator)
        if expires_at is None:
            expires_at = creator.expires_at  # never outlives its creator, even by default
    if expires_at is not None and expires_at <= now:
        raise KeyRefused("expires_at", "expires_at must be in the future")
    if creator is not None and creator.expires_at is not None and expires_at is not None \
            and expires_at > creator.expires_at:
        raise KeyRefused("expires_at", "the new key cannot outlive this one "
                         f"(it expires at {creator.expires_at.isoformat()})", forbidden=True)
    return edition, expires_at


def _within(request: KeyRequest, edition: str | None, hierarchy: Hierarchy, creator: Principal) -> None:
    if not creator.covers(hierarchy, edition, request.scope):
        mine = creator.scope_code + (f" ({creator.scope_edition})" if creator.scope_edition else "")
        theirs = request.scope + (f" ({edition})" if edition else " (every edition)")
        raise KeyRefused("scope", f"scope {theirs} is outside this key's scope {mine}", forbidden=True)
    extra = sorted(set(request.roles) - creator.roles)
    if extra:
        raise KeyRefused("roles", f"a key cannot grant roles it does not hold: {', '.join(extra)}", forbidden=True)


async def create(
    conn: AsyncConnection, request: KeyRequest, hierarchy: Hierarchy, creator: Principal | None, now: datetime
) -> tuple[dict[str, Any], str]:
    """(the new key's row, the key itself, to show once); raises KeyRefused."""
    edition, expires_at = checked(request, hierarchy, creator, now)
    key_id, key = await create_key(
        conn, name=request.name, scope_code=request.scope, scope_edition=edition, roles=request.roles,
        expires_at=expires_at, created_by=creator.key_id if creator else None,
    )
    row = await find(conn, key_id)
    if row is None:  # just inserted in this transaction
        raise LookupError(key_id)
    return row, key


def state_of(row: dict[str, Any], now: datetime) -> KeyState:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    return "active"


_COLUMNS = "id, name, scope_edition, scope_code, roles, created_at, expires_at, revoked_at, last_used_at, created_by"


async def list_visible(
    conn: AsyncConnection, viewer: Principal | None, *, after: str | None = None, limit: int = 100,
    key_id: str | None = None,
) -> list[dict[str, Any]]:
    """Keys whose scope lies inside `viewer`'s (see Principal.covers), by id; one key when `key_id` is
    given. `viewer` None is the operator: every key, oldest first, unpaged.

    The subtree test runs in SQL against `units`, so a page is exactly `limit` visible keys.
    """
    if viewer is None and key_id is None:
        rows = await conn.execute(text(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at"))
        return [dict(r._mapping) for r in rows]
    everything = viewer is None or (viewer.scope_code == NATION and viewer.scope_edition is None)
    rows = await conn.execute(
        text(f"""
        SELECT {_COLUMNS} FROM api_keys k
        WHERE (CAST(:everything AS boolean) OR (
                  k.scope_edition = CAST(:edition AS text)
                  AND (CAST(:code AS text) = 'VN' OR k.scope_code = CAST(:code AS text) OR EXISTS (
                      SELECT 1 FROM units u
                      WHERE u.edition = k.scope_edition AND u.code = k.scope_code
                        AND CAST(:code AS text) = ANY (u.ancestors)))))
          AND (CAST(:after AS text) IS NULL OR k.id > CAST(:after AS text))
          AND (CAST(:key_id AS text) IS NULL OR k.id = CAST(:key_id AS text))
        ORDER BY k.id
        LIMIT :limit
        """),
        {"everything": everything, "edition": viewer.scope_edition if viewer else None,
         "code": viewer.scope_code if viewer else NATION, "after": after, "key_id": key_id, "limit": limit},
    )
    return [dict(r._mapping) for r in rows]


async def find(conn: AsyncConnection, key_id: str, viewer: Principal | None = None) -> dict[str, Any] | None:
    """One key, if `viewer` may see it (a malformed id never reaches the database)."""
    if not is_key_id(key_id):
        return None
    found = await list_visible(conn, viewer, key_id=key_id, limit=1)
    return found[0] if found else None


async def revoke(conn: AsyncConnection, key_id: str, viewer: Principal | None = None) -> bool | None:
    """Revoke a key at once: True when revoked now, False when it was already, None when `viewer` cannot
    see it. The row stays, for the audit trail."""
    if await find(conn, key_id, viewer) is None:
        return None
    result = await conn.execute(
        text("UPDATE api_keys SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL RETURNING id"),
        {"id": key_id},
    )
    return result.first() is not None
