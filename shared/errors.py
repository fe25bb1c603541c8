"""One exception base, one handler, one error shape: RFC 9457 `application/problem+json`.

Every 4xx and 5xx of every service leaves through here, with a stable `type` per kind of error, the
location of each bad field for validation errors and the request id that is also in the logs. Nothing
internal (a stack trace, SQL, a class name) ever reaches the client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("d06.errors")

PROBLEM_JSON = "application/problem+json"


def problem_type(slug: str) -> str:
    return f"https://d06.gov.vn/problems/{slug}"


# One bad field of a request. A plain dataclass rather than a model: validation builds one per bad field of
# a batch of thousands, and pydantic reads the same class for the OpenAPI schema (no docstring: it would
# become the schema's description).
@dataclass(frozen=True, slots=True)
class FieldError:
    loc: Annotated[str, Field(description="Where the bad value is, e.g. `events[3].period`.",
                              examples=["events[3].period"])]
    message: Annotated[str, Field(description="What is wrong, for a person to read.")]

    def as_dict(self) -> dict[str, str]:
        return {"loc": self.loc, "message": self.message}


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


class UnsupportedMediaType(Problem):
    status, slug, title = 415, "unsupported-media-type", "The body is not of a type this route takes"


class TooManyRequests(Problem):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(Problem):
    status, slug, title = 503, "unavailable", "A dependency is not reachable; retry later"


def responses(*problems: type[Problem]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` generated from the errors a route can raise."""
    return {p.status: p.openapi() for p in problems}


class InternalError(Problem):
    status, slug, title = 500, "internal-error", "Internal error"


INTERNAL_DETAIL = "something went wrong on our side; quote the request id when reporting it"


def safe_echo(text: str, limit: int = 120) -> str:
    """A client's string as it may appear in an error message or a log line: cut to `limit` characters,
    with invisible and control characters (NUL, zero-width, right-to-left override, lone surrogates…)
    written as `\\uXXXX`, so an echo can neither break the JSON encoder nor disguise itself."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def problem_bytes(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    instance: str,
    request_id: str | None,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The problem+json body; every string a client could have influenced is made safe to encode."""
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": safe_echo(instance, 512),
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extra or {})
    try:
        return orjson.dumps(body)
    except TypeError:  # a lone surrogate echoed somewhere deep: escape everything rather than fail
        return orjson.dumps(_escaped(body))


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return safe_echo(value, 100_000)
    if isinstance(value, dict):
        return {safe_echo(str(k), 1000): _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    return value


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
    # For the access log line of shared.observability: which problem this request got.
    request.state.problem = slug
    body = problem_bytes(
        status, slug, title, detail, instance=request.url.path, request_id=_request_id(request),
        errors=errors, extra=extra,
    )
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def location(loc: tuple[int | str, ...]) -> str:
    """`('body', 'events', 3, 'period')` → `events[3].period`, as a person would write it."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = safe_echo(str(part), 64)  # an unknown field's name is the client's text
            out += f".{name}" if out else name
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


# Errors Starlette raises itself (unknown route, wrong method), and a too-large body: FastAPI turns any
# other exception raised while it reads a body into a 400, so shared.limits raises this kind.
_HTTP_ERRORS = {
    404: (NotFound.slug, NotFound.title),
    405: ("method-not-allowed", "Method not allowed"),
    413: (PayloadTooLarge.slug, PayloadTooLarge.title),
}


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body exceeds the limit of {limit:,} bytes; send smaller batches")


# SQLSTATE classes that mean "the server cannot serve you now", not "your statement is wrong":
# 08 connection exception, 57P0x shutdown/starting up, 53300 too many connections.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")


def database_unreachable(exc: BaseException) -> bool:
    """True when `exc` means PostgreSQL could not be reached (a restart, a failover, the network).

    Such an error is a 503 the client may retry with the same event ids; anything else is a bug (500).
    The driver's exception is usually wrapped by SQLAlchemy, so the whole cause chain is inspected.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError | TimeoutError | PoolTimeout | OperationalError | InterfaceError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, asyncpg.exceptions.InterfaceError | asyncpg.exceptions.PostgresConnectionError):
            return True
        if str(getattr(current, "sqlstate", "") or "").startswith(_UNAVAILABLE_SQLSTATES):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return False


def install_error_handlers(app: FastAPI) -> None:
    _install_problem_schema(app)

    async def _database(request: Request, exc: Exception) -> Response:
        if database_unreachable(exc):
            log.warning("database unreachable (request_id=%s): %s", _request_id(request), type(exc).__name__)
            return problem_response(
                request, ServiceUnavailable.status, ServiceUnavailable.slug, ServiceUnavailable.title,
                "the database is not reachable; retry in a few seconds", headers={"Retry-After": "2"},
            )
        # The statement and the server's message go to the log only: never SQL or table names to a client.
        log.error("database error (request_id=%s)", _request_id(request), exc_info=exc)
        return problem_response(request, InternalError.status, InternalError.slug, InternalError.title,
                                INTERNAL_DETAIL)

    for kind in (DBAPIError, OSError, PoolTimeout):
        app.add_exception_handler(kind, _database)

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
            detail = "the request body could not be parsed as JSON"
            return problem_response(request, MalformedJson.status, MalformedJson.slug, MalformedJson.title, detail,
                                    errors=[{"loc": "body", "message": detail}])
        return problem_response(
            request, ValidationFailed.status, ValidationFailed.slug, ValidationFailed.title,
            f"{len(errors)} field(s) are invalid", errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        slug, title = _HTTP_ERRORS.get(exc.status_code, ("http-error", str(exc.detail)))
        return problem_response(
            request, exc.status_code, slug, title, str(exc.detail), headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Reached only by an app without shared.observability, whose middleware answers these first.
        log.exception("unhandled error (request_id=%s)", _request_id(request))
        return problem_response(request, 500, InternalError.slug, InternalError.title, INTERNAL_DETAIL)
