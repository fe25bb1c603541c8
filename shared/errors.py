"""One exception base, one handler, one error shape: RFC 9457 `application/problem+json`.

Every 4xx and 5xx of every service leaves through here, with a stable `type` per kind of error, the
location of each bad field for validation errors and the request id that is also in the logs. Nothing
internal (a stack trace, SQL, a class name) ever reaches the client.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("d06.errors")

PROBLEM_JSON = "application/problem+json"


def problem_type(slug: str) -> str:
    return f"https://d06.gov.vn/problems/{slug}"


class FieldError(BaseModel):
    loc: str = Field(description="Where the bad value is, e.g. `events[3].period`.", examples=["events[3].period"])
    message: str = Field(description="What is wrong, for a person to read.")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details: the shape of every error of every d06 service."""

    type: str = Field(description="Stable URI per kind of error.", examples=[problem_type("validation-error")])
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None = Field(None, description="Also in the X-Request-ID header and the logs.")
    errors: list[FieldError] | None = Field(None, description="For validation errors: one entry per bad field.")


class Problem(Exception):
    """Base of every error a client may see. Subclasses fix status, slug and title."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    @classmethod
    def openapi(cls) -> dict[str, Any]:
        return {
            "description": cls.title,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
        }


class MalformedJson(Problem):
    status, slug, title = 400, "malformed-json", "The body is not valid JSON"


class BadRequest(Problem):
    status, slug, title = 400, "bad-request", "Bad request"


class ValidationFailed(Problem):
    status, slug, title = 422, "validation-error", "The request has invalid fields"


class Unauthorized(Problem):
    status, slug, title = 401, "unauthorized", "A valid API key is required"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="d06"'})


class Forbidden(Problem):
    status, slug, title = 403, "forbidden", "The API key may not do this"


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(Problem):
    status, slug, title = 409, "conflict", "Conflicts with what is already stored"


class PayloadTooLarge(Problem):
    status, slug, title = 413, "payload-too-large", "The request body is too large"


class TooManyRequests(Problem):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(Problem):
    status, slug, title = 503, "unavailable", "A dependency is not reachable; retry later"


def responses(*problems: type[Problem]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` generated from the errors a route can raise."""
    return {p.status: p.openapi() for p in problems}


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def problem_response(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": _request_id(request),
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extra or {})
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def location(loc: tuple[int | str, ...]) -> str:
    """`('body', 'events', 3, 'period')` → `events[3].period`, as a person would write it."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or str(loc[0] if loc else "body")


def _clean_message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def _install_problem_schema(app: FastAPI) -> None:
    """Add `ProblemDetails` (which every `responses()` entry refers to) to the app's OpenAPI document."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes,
                tags=app.openapi_tags,
            )
            problem = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
            defs: dict[str, Any] = problem.pop("$defs", {})
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                {**defs, "ProblemDetails": problem}
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


def install_error_handlers(app: FastAPI) -> None:
    _install_problem_schema(app)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return problem_response(
            request, exc.status, exc.slug, exc.title, exc.detail,
            errors=exc.errors, headers=exc.headers, extra=exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": location(tuple(e["loc"])), "message": _clean_message(e)} for e in exc.errors()]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem_response(
                request, 400, "malformed-json", "The body is not valid JSON",
                "the request body could not be parsed as JSON", errors=errors,
            )
        return problem_response(
            request, ValidationFailed.status, ValidationFailed.slug, ValidationFailed.title,
            f"{len(errors)} field(s) are invalid", errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(
            request, exc.status_code, slug, str(exc.detail), str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": _request_id(request)})
        return problem_response(
            request, 500, "internal-error", "Internal error",
            "something went wrong on our side; quote the request id when reporting it",
        )
