"""API keys as credentials: how one is minted and stored (as a hash), checked, and what it grants.

A key reads `d06_<id>_<secret>`: the id (public, 48 bits) makes lookup one primary-key hit, the secret
(192 random bits) is never stored — only its SHA-256. A fast hash is the standard construction for
high-entropy tokens (there is nothing to brute-force); slow KDFs exist for human passwords. Ingest reads the
key's row on every request; the query service keeps the keys it looked up until api_keys announces a change
(services/query/keys.py). Who may create which key, and listing and revoking them: shared/keys.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.hierarchy import NATION, Hierarchy, Unit

PREFIX = "d06"


class Role(StrEnum):
    SUBMIT = "submit"
    READ = "read"
    ADMIN = "admin"
    REVIEW = "review"  # acknowledges data-quality flags (DESIGN §8)


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str | None  # None for anonymous public reads
    roles: frozenset[str]
    scope_edition: str | None  # None: the scope code applies to every edition (only for VN)
    scope_code: str
    expires_at: datetime | None = None

    def has(self, role: Role) -> bool:
        return role.value in self.roles

    def can_see(self, unit: Unit) -> bool:
        if self.scope_code == NATION and self.scope_edition in (None, unit.edition):
            return True
        if self.scope_edition is not None and unit.edition != self.scope_edition:
            return False
        return unit.code == self.scope_code or self.scope_code in unit.ancestors

    def covers(self, hierarchy: Hierarchy, edition: str | None, code: str) -> bool:
        """Whether the scope (`edition`, `code`) of another key lies inside this key's scope.

        A scope is a unit subtree of one edition, or VN of one or all editions (edition None): only a VN
        key of all editions covers the latter, and a unit that no longer exists is covered only by a VN
        key of its edition (its subtree cannot be placed any more).
        """
        if self.scope_code == NATION and self.scope_edition is None:
            return True
        if edition is None or edition != self.scope_edition:
            return False
        if self.scope_code == NATION:
            return True
        unit = hierarchy.get(edition, code)
        return unit is not None and self.can_see(unit)


ANONYMOUS = Principal(None, frozenset({Role.READ.value}), None, NATION)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(key id, full key to show once)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(24)}"


KEY_ID = re.compile(r"[0-9a-f]{12}")  # the public part of a key: 48 bits in hex


def key_id_of(token: str) -> str | None:
    """The id part of a well-formed key; anything else never reaches the database."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not KEY_ID.fullmatch(parts[1]):
        return None
    return parts[1]


async def create_key(
    conn: AsyncConnection,
    *,
    name: str,
    scope_code: str,
    scope_edition: str | None,
    roles: list[str],
    expires_at: datetime | None = None,
    created_by: str | None = None,
) -> tuple[str, str]:
    """(key id, full key). The full key exists only in the return value: only its hash is stored."""
    key_id, key = new_key()
    await conn.execute(
        text("""
        INSERT INTO api_keys (id, name, secret_hash, scope_edition, scope_code, roles, expires_at, created_by)
        VALUES (:id, :name, :hash, :edition, :scope, :roles, :expires, :created_by)
        """),
        {
            "id": key_id, "name": name, "hash": hash_key(key), "edition": scope_edition,
            "scope": scope_code, "roles": sorted(set(roles)), "expires": expires_at, "created_by": created_by,
        },
    )
    return key_id, key


# Every request of every service runs this statement. As the driver's own SQL (which asyncpg still prepares
# once per connection) it skips SQLAlchemy's compile-and-bind path: half the cost of a cached read.
_KEY_ROW = """
SELECT secret_hash, scope_edition, scope_code, roles, expires_at FROM api_keys
WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
"""


async def authenticate(conn: AsyncConnection, token: str, *, touch: bool) -> Principal | None:
    """The principal of a valid, unexpired, unrevoked key; None otherwise (never says which)."""
    key_id = key_id_of(token)
    if key_id is None:
        return None
    row = (await conn.exec_driver_sql(_KEY_ROW, (key_id,))).first()
    if row is None or not hmac.compare_digest(row.secret_hash, hash_key(token)):
        return None
    if touch:
        # At most one write a minute per key: last_used_at is for operators, not an audit trail.
        await conn.execute(
            text("""
            UPDATE api_keys SET last_used_at = now()
            WHERE id = :id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
            """),
            {"id": key_id},
        )
    return Principal(key_id, frozenset(row.roles), row.scope_edition, row.scope_code, row.expires_at)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
