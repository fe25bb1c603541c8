"""Who is calling, and whether they may: the API key (or, on a public deployment, the client address)
of a request, checked and charged one token of its rate limit. Used by the routes (deps.py) and, before
routing, by the middleware that serves kept answers (fastpath.py)."""

from __future__ import annotations

from prometheus_client import Counter
from starlette.datastructures import Headers
from starlette.types import Scope

from services.query.connections import LazyConnection
from services.query.keys import KnownKeys
from shared.auth import ANONYMOUS, Principal, Role, authenticate, bearer_token
from shared.errors import Forbidden, TooManyRequests, Unauthorized
from shared.limits import RateLimiter

#: Where CachedAnswers (fastpath.py) leaves the principal it already resolved for a request it passed on.
RESOLVED = "principal"


class Authenticator:
    def __init__(self, keys: KnownKeys, limiter: RateLimiter, lookups: Counter, *, anonymous_read: bool) -> None:
        self.keys = keys
        self.limiter = limiter
        self.lookups = lookups  # kept keys found in memory or not, by result
        self.anonymous_read = anonymous_read

    async def principal_of(self, scope: Scope, lazy: LazyConnection) -> Principal:
        """The caller of the request `scope`, charged one token of its rate limit; a Problem otherwise."""
        header = Headers(scope=scope).get("authorization")
        if header is None and self.anonymous_read:
            # A public portal's readers have no key: each client address gets the bucket a key would.
            client = scope.get("client")
            self._charge(f"addr:{client[0] if client else '-'}")
            return ANONYMOUS
        # A key sent to a public deployment is still checked: a typo should not silently widen the view.
        token = bearer_token(header)
        if token is None:
            raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
        # Kept from an earlier lookup until api_keys changes (keys.py), so revocation and expiry still act at
        # once. `last_used_at` is not touched: this role may only SELECT (docs/security.md).
        principal = self.keys.get(token)
        self.lookups.labels("miss" if principal is None else "hit").inc()
        if principal is None:
            generation = self.keys.generation
            principal = await authenticate(await lazy.get(), token, touch=False)
            if principal is None:
                raise Unauthorized("the API key is unknown, revoked or expired")
            self.keys.put(token, principal, generation)
        scope.setdefault("state", {})["key_id"] = principal.key_id  # for the log line of an error, never the key
        if not principal.has(Role.READ):
            raise Forbidden("the API key does not have the `read` role")
        self._charge(f"key:{principal.key_id}")
        return principal

    def _charge(self, bucket: str) -> None:
        wait = self.limiter.acquire(bucket)
        if wait:
            raise TooManyRequests(
                f"more than {self.limiter.rate:g} requests a second; retry later",
                headers={"Retry-After": self.limiter.retry_after(wait)},
            )
