"""Who is calling: the API key checked against the database on every request, then charged its rate limit.

Reading the key's row each time (one primary-key hit) is what makes a revocation or an expiry take effect
at once on every replica; ingest also notes when a key was last used (shared.auth.authenticate).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.ingest.state import IngestState
from shared.auth import Principal, authenticate
from shared.db import transaction
from shared.errors import TooManyRequests, Unauthorized

bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="An API key created with `d06 keys create`: `Authorization: Bearer d06_…`.")


async def principal_of(
    request: Request, state: IngestState, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The caller's valid key (401 otherwise), charged one token of its rate limit (429 when spent)."""
    if credentials is None:
        raise Unauthorized("send an API key: `Authorization: Bearer <key>`")
    async with transaction(state.engine) as conn:
        principal = await authenticate(conn, credentials.credentials, touch=True)
    if principal is None:
        raise Unauthorized("the API key is unknown, revoked or expired")
    request.state.key_id = principal.key_id  # for the log line of an error, never the key itself
    wait = state.limiter.acquire(principal.key_id or "")
    if wait:
        raise TooManyRequests(
            f"this API key exceeded {state.limiter.rate:g} requests a second; retry later",
            headers={"Retry-After": state.limiter.retry_after(wait)},
        )
    return principal
