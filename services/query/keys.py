"""API keys known from a recent lookup, so that an answer kept in memory is served without a database trip.

A key's row is read from PostgreSQL the first time the key is used and kept (its hash, its principal) until
the `api_keys` table changes in a way that matters: a trigger (migration 0003) sends
`NOTIFY d06_keys_changed` in the transaction of any revocation, change of expiry, roles, scope or secret,
or deletion, and the service, which LISTENs on the connection that follows rollup changes (app.py), forgets
every kept key when it hears it. While it does not listen (a read replica refuses LISTEN; a lost connection
until it is back) a key is kept `ttl` seconds at most, as answers are: a revocation then acts within that,
on top of the replica's own lag. An expiry time is checked at every use. Unknown, revoked or wrong keys are
never kept: each costs its lookup, as before.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from services.query.caching import Versions
from shared.auth import Principal, hash_key, key_id_of


@dataclass(frozen=True, slots=True)
class _Known:
    secret_hash: str
    principal: Principal
    stored_at: float


class KnownKeys:
    def __init__(self, versions: Versions, *, ttl: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.versions = versions
        self.ttl = ttl
        self.max_keys = max_keys
        self.clock = clock
        self._keys: dict[str, _Known] = {}
        self._generation = 0  # bumped by every forget(): a lookup that started before it is not kept

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, token: str) -> Principal | None:
        """The principal of `token` if it was looked up and nothing has changed since; None: ask PostgreSQL."""
        key_id = key_id_of(token)
        known = self._keys.get(key_id) if key_id is not None else None
        if known is None:
            return None
        if not self.versions.listening and self.clock() - known.stored_at >= self.ttl:
            return None
        expires = known.principal.expires_at
        if expires is not None and expires <= datetime.now(UTC):
            return None
        if not hmac.compare_digest(known.secret_hash, hash_key(token)):
            return None  # the right id with a wrong secret: the lookup will refuse it
        return known.principal

    def put(self, token: str, principal: Principal, generation: int) -> None:
        """Keep the principal a lookup that started at `generation` found for `token`."""
        if generation != self._generation or principal.key_id is None:
            return
        if len(self._keys) >= self.max_keys and principal.key_id not in self._keys:
            self._keys.clear()  # far more keys than any deployment has: start over rather than grow
        self._keys[principal.key_id] = _Known(hash_key(token), principal, self.clock())

    def forget(self) -> None:
        self._keys.clear()
        self._generation += 1
