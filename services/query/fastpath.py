"""Answers kept in memory, served before routing (caching.py says which answers are kept, and how long).

Routing a read through FastAPI (its dependencies, validators and the route itself) costs far more than
sending kept bytes does (docs/performance.md, "Kept answers served before routing"), so a GET whose
answer is in memory is answered here, after the same authentication every request gets (auth.py: the key
is read from PostgreSQL, so a revoked key is refused at once, and its rate limit is charged). Anything
else (no key, a bad one, no kept answer, any error) goes on to the routes, which reuse the principal if
it was resolved and answer everything else exactly as if this middleware were not there.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from services.query.auth import RESOLVED
from services.query.caching import AnswerCache, respond
from services.query.state import QueryState
from shared.auth import Principal


class CachedAnswers:
    def __init__(self, app: ASGIApp, state: Callable[[], QueryState | None]) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state() if scope["type"] == "http" and scope["method"] == "GET" else None
        if state is None or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        principal = await _caller(state, scope)
        if principal is not None:
            answer = state.cache.get(AnswerCache.key(scope, principal, state.clock()))
            if answer is not None:
                state.metrics.cache.labels(answer.endpoint, "hit").inc()
                scope["route"] = answer.route  # so the request is counted under its route
                response = respond(Request(scope), answer, max_age=state.settings.cache_max_age,
                                   metrics=state.metrics)
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})[RESOLVED] = principal
        await self.app(scope, receive, send)


async def _caller(state: QueryState, scope: Scope) -> Principal | None:
    try:
        async with state.connections.lazy() as lazy:
            return await state.auth.principal_of(scope, lazy)
    except Exception:  # noqa: BLE001 - the routes meet the same failure again, and answer it as they should
        return None
