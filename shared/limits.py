"""Limits that keep one client from starving the others: per-key token buckets and a body-size cap.

Rate limits are kept in memory, per replica: with N replicas behind a load balancer a key gets up to N
times its rate in total. That is deliberate — a shared store (Redis, Postgres) would cost a round trip
on every request of a service whose reads must answer in milliseconds, and the limit exists to stop a
runaway integration, not to bill anyone. The ingress in front of the cluster is the place for a global
ceiling and for limiting unauthenticated floods.
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import PROBLEM_JSON, BodyTooLarge, PayloadTooLarge, problem_bytes

# Unicode categories no free text of d06 needs: controls (Cc; tab and line breaks excepted), format
# characters (Cf: zero-width space and joiners, the right-to-left override of "Trojan source"), lone
# surrogates (Cs: not even encodable in UTF-8) and private-use code points (Co).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def unsafe_character(text: str) -> tuple[int, str] | None:
    """(position, character) of the first character free text must not carry, or None."""
    if text.isprintable():  # the common case, one C-level pass
        return None
    for position, char in enumerate(text):
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) in _UNSAFE_CATEGORIES:
            return position, char
    return None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets by key: `rate` tokens a second up to `burst`; each request takes one.

    At most `max_keys` buckets are kept (least recently used evicted): keys are bounded by the
    api_keys table, but anonymous reads are keyed by client address, which is not.
    """

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: str) -> float:
        """0 when the request may go ahead (a token was taken), else the seconds until one is available."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """`Retry-After` in whole seconds (RFC 9110), never 0: a client told 0 retries at once."""
        return str(max(1, math.ceil(wait)))


class BodyLimitMiddleware:
    """Refuse request bodies above `limit` bytes with 413, whether declared or streamed.

    A declared `Content-Length` above the limit is answered before the app runs (nothing is read). A
    chunked body is counted as the app reads it, and the read that crosses the limit raises
    BodyTooLarge, which the app's error handler turns into the same 413. FastAPI reads a JSON body
    whole before validating it, so without this a client could make any JSON route buffer gigabytes.
    """

    def __init__(self, app: ASGIApp, limit: int, paths: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        # Routes that take files (POST /v1/imports) get their own, larger limit; they stream the body to disk.
        self.paths = dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope.get("path", ""), self.limit)
        for name, value in scope.get("headers") or []:
            # A Content-Length that is not a number never gets here: the HTTP server refuses it with 400.
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, send, int(value), limit)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, send: Send, declared: int, limit: int) -> None:
        state = scope.setdefault("state", {})
        state["problem"] = PayloadTooLarge.slug
        body = problem_bytes(
            PayloadTooLarge.status, PayloadTooLarge.slug, PayloadTooLarge.title,
            f"the body is {declared:,} bytes; the limit is {limit:,}",
            instance=scope.get("path", ""), request_id=state.get("request_id"),
        )
        await send({
            "type": "http.response.start", "status": PayloadTooLarge.status,
            # close: the unread body is still on its way, and must not be taken for the next request
            "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})
