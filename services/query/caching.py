"""ETags, cache headers, and the answers kept in memory until the rollups they read change.

Every successful answer is validated by a hash of its own bytes: the tag changes when, and only when,
what the client would receive changes.

The same bytes are kept in memory, by (path and query, the key's scope, today), and served again while
the rollups they were read from are unchanged. The aggregator announces each commit with the provinces
it touched, as `edition/province` keys (a NOTIFY in the batch's transaction, shared.events.ROLLUPS_CHANGED),
which the service LISTENs to: an answer about a unit is stale as soon as its province is announced, an
answer about the nation as soon as any province is, and an answer read from the hierarchy alone when the
hierarchy is reloaded. A 2025 province's answers also read its legacy provinces (re-expressed values, DESIGN
§7): a legacy province announced changed makes its 2025 province's answers stale too (scope.py `widen`), and
a change of the crosswalk makes every kept answer stale. A kept answer is therefore never older than the
notification of a commit, and the freshness promise (a value visible within a second of arrival) holds as if
there were no cache. When
the service cannot listen (a read replica refuses LISTEN; a lost connection, until it is back), an answer
is kept for `ttl` seconds instead: the price in freshness is at most that.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from services.query.metrics import Endpoint, QueryMetrics
from shared.auth import Principal
from shared.hierarchy import NATION, Unit

Key = tuple[str, bytes, str | None, str, date]
Stamp = tuple[int, int]  # (listening epoch, version of the province the answer read)
NATIONWIDE = "*"  # the province key of answers that sum every province


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison, a list of tags, or `*`."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def province_key_of(unit: Unit | None) -> str | None:
    """The province (`edition/province`) whose rollups an answer about `unit` reads; None: no rollup."""
    if unit is None:
        return None
    if unit.code == NATION:
        return NATIONWIDE
    return f"{unit.edition}/{unit.province_code}"


class Versions:
    """How often each province's rollups changed since the service started listening."""

    def __init__(self) -> None:
        self.listening = False
        self._epoch = 0  # bumped at every (re)connection: announcements may have been missed before it
        self._any = 0  # every announcement: the version of nationwide answers
        self._provinces: dict[str, int] = {}  # by `edition/province` key

    def start(self) -> None:
        self._epoch += 1
        self.listening = True

    def stop(self) -> None:
        self.listening = False

    def forget_all(self) -> None:
        """Nothing kept before counts: what every answer may rest on changed (the crosswalk)."""
        self._epoch += 1

    def changed(self, province_keys: Iterable[str]) -> None:
        self._any += 1
        for key in province_keys:
            self._provinces[key] = self._provinces.get(key, 0) + 1

    def stamp(self, province_key: str | None) -> Stamp:
        if province_key is None:
            return (self._epoch, 0)
        return (self._epoch, self._any if province_key == NATIONWIDE else self._provinces.get(province_key, 0))


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    etag: str
    endpoint: Endpoint
    route: Any  # the route that built it, for the metrics of a request answered before routing
    province_key: str | None
    stamp: Stamp
    stored_at: float


class AnswerCache:
    """The answers served recently, least recently used out first once they weigh more than `max_bytes`."""

    def __init__(self, versions: Versions, *, max_bytes: int, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.versions = versions
        self.max_bytes = max_bytes
        self.ttl = ttl  # how long an answer is trusted while not listening
        self.clock = clock
        self._answers: OrderedDict[Key, Answer] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def key(scope: Scope, principal: Principal, today: date) -> Key:
        # The scope is part of the key although a visible unit reads the same for every key that sees it:
        # no answer computed for one key is ever handed to another that could not have got it.
        return (scope["path"], scope["query_string"], principal.scope_edition, principal.scope_code, today)

    def get(self, key: Key) -> Answer | None:
        """The answer kept for `key` if it is still what the routes would answer now."""
        answer = self._answers.get(key)
        if answer is None:
            return None
        if self.versions.listening:
            fresh = answer.stamp == self.versions.stamp(answer.province_key)
        else:
            fresh = self.clock() - answer.stored_at < self.ttl
        if not fresh:
            return None
        self._answers.move_to_end(key)
        return answer

    def put(self, key: Key | None, request: Request, endpoint: Endpoint, unit: Unit | None, stamp: Stamp,
            body: bytes) -> Answer:
        """Keep the answer built from rollups as they were at `stamp` (taken before reading them)."""
        answer = Answer(body, etag_of(body), endpoint, request.scope.get("route"), province_key_of(unit), stamp,
                        self.clock())
        if key is None or len(body) > self.max_bytes:
            return answer
        old = self._answers.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._answers[key] = answer
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, evicted = self._answers.popitem(last=False)
            self._bytes -= len(evicted.body)
        return answer

    def clear(self) -> None:
        self._answers.clear()
        self._bytes = 0


def respond(
    request: Request, answer: Answer, *, max_age: int, metrics: QueryMetrics
) -> Response:
    headers = {
        "ETag": answer.etag,
        # private: answers depend on the key's scope, so no shared cache may keep them.
        "Cache-Control": f"private, max-age={max_age}",
        "Vary": "Authorization",
    }
    if etag_matches(request.headers.get("if-none-match"), answer.etag):
        metrics.not_modified.labels(answer.endpoint).inc()
        return Response(status_code=304, headers=headers)
    return Response(answer.body, media_type="application/json", headers=headers)
