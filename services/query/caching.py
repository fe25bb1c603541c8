"""ETags and cache headers: every successful answer is validated by a hash of its own bytes.

Hashing the body (rather than tracking versions of the read model) is exact by construction: the tag
changes when, and only when, what the client would receive changes. The portals poll; a 304 saves the
transfer and the client's parsing, not the query, which is cheap by design.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from services.query.metrics import Endpoint, QueryMetrics


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


def cached_json(
    request: Request, model: BaseModel, *, max_age: int, metrics: QueryMetrics, endpoint: Endpoint
) -> Response:
    body = model.model_dump_json().encode()
    etag = etag_of(body)
    headers = {
        "ETag": etag,
        # private: answers depend on the key's scope, so no shared cache may keep them.
        "Cache-Control": f"private, max-age={max_age}",
        "Vary": "Authorization",
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        metrics.not_modified.labels(endpoint).inc()
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
