"""Dependencies of the ingest routes: the app's state, the caller with the role a route needs, the loaded
hierarchy, and the validators that turn path and query parameters into checked values (or one clear
404/422, once).

Dependencies are `async def` even when they await nothing: FastAPI runs plain `def` ones in a thread
pool, a hop per dependency per request. A dependency used by several others (the caller) runs once per
request, so a request is authenticated and charged to its rate limit once.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials

from services.ingest.auth import bearer, principal_of
from services.ingest.state import IngestState
from services.ingest.validation import EVENT_ID
from shared.auth import Principal, Role
from shared.errors import Forbidden, NotFound, ServiceUnavailable, ValidationFailed
from shared.hierarchy import Hierarchy
from shared.keys import is_key_id


async def get_state(request: Request) -> IngestState:
    state: IngestState | None = getattr(request.app.state, "ingest", None)
    if state is None:
        raise ServiceUnavailable("the service is starting; retry in a few seconds", headers={"Retry-After": "2"})
    return state


AppState = Annotated[IngestState, Depends(get_state)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def caller(request: Request, state: AppState, credentials: Credentials) -> Principal:
    return await principal_of(request, state, credentials)


Caller = Annotated[Principal, Depends(caller)]  # any valid key


def _holding(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def principal(principal: Caller) -> Principal:
        if not principal.has(role):
            raise Forbidden(f"this API key lacks the `{role.value}` role")
        return principal

    return principal


Submitter = Annotated[Principal, Depends(_holding(Role.SUBMIT))]
Admin = Annotated[Principal, Depends(_holding(Role.ADMIN))]  # authenticated before the body is validated
Reviewer = Annotated[Principal, Depends(_holding(Role.REVIEW))]


async def loaded_hierarchy(state: AppState) -> Hierarchy:
    if state.hierarchy is None:
        raise ServiceUnavailable("the unit hierarchy is not loaded yet; retry in a few seconds",
                                 headers={"Retry-After": "5"})
    return state.hierarchy


LoadedHierarchy = Annotated[Hierarchy, Depends(loaded_hierarchy)]


async def valid_event_id(
    event_id: Annotated[str, Path(description="The event_id given (or generated) at submission.")],
) -> str:
    if not EVENT_ID.fullmatch(event_id):  # could not have been stored: never quoted back
        raise NotFound("no such event is visible to this API key")
    return event_id


EventId = Annotated[str, Depends(valid_event_id)]


async def valid_key_id(
    key_id: Annotated[str, Path(max_length=64, description="The key id (the 12 hex digits after `d06_`).")],
) -> str:
    if not is_key_id(key_id):
        raise NotFound("no such key is visible to this API key")
    return key_id


KeyId = Annotated[str, Depends(valid_key_id)]

_FLAG_ID = re.compile(r"[1-9][0-9]{0,18}")
_BIGINT_MAX = 2**63 - 1


async def valid_flag_id(
    flag_id: Annotated[str, Path(max_length=32, description="The flag's `id`, as the quality listing gives it.")],
) -> int:
    if not _FLAG_ID.fullmatch(flag_id) or int(flag_id) > _BIGINT_MAX:  # could not be stored: never quoted back
        raise NotFound("no such quality flag")
    return int(flag_id)


FlagId = Annotated[int, Depends(valid_flag_id)]


async def valid_key_cursor(
    cursor: Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page.")] = None,
) -> str | None:
    if cursor is not None and not is_key_id(cursor):
        message = "not a cursor of this list; pass `next_cursor` unchanged"
        raise ValidationFailed(message, errors=[{"loc": "cursor", "message": message}])
    return cursor


KeyCursor = Annotated[str | None, Depends(valid_key_cursor)]
