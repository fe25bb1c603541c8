"""What every service exposes to operators: request ids, RED metrics by route template, and health routes.

Each app owns its own `CollectorRegistry` (no process globals), so several apps can live in one test
process and `/metrics` shows exactly one service. Health routes are not counted in the HTTP metrics.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.pool import QueuePool
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import (
    INTERNAL_DETAIL,
    PROBLEM_JSON,
    InternalError,
    ServiceUnavailable,
    problem_bytes,
    problem_response,
)

log = logging.getLogger("d06.http")

UNCOUNTED = {"/healthz", "/readyz", "/metrics"}


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "d06_http_requests_total", "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"], registry=registry,
        )
        self.latency = Histogram(
            "d06_http_request_duration_seconds", "Time to answer an HTTP request, by route template.",
            ["route", "method"], registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.in_flight = Gauge(
            "d06_http_requests_in_flight", "HTTP requests being answered now.", registry=registry
        )


def new_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    return registry


# A request id the client chose is kept only if it is short and plain: it is echoed in a header and
# written to the logs, where anything else could forge a header or a log line.
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


class ObservabilityMiddleware:
    """Pure ASGI (no per-request BaseHTTPMiddleware task): request id, timing, and a log line per error.

    It is also the last line of defence: an exception nothing else handled becomes here a problem+json
    500 that carries the request id (in the body, the X-Request-ID header and the log line with the
    traceback) and nothing else — no trace, no SQL, no class name reaches the client.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope.get("headers") or [] if k == b"x-request-id"), b"")
        request_id = incoming.decode() if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = False
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        counted = scope["path"] not in UNCOUNTED
        if counted:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("%s %s: unhandled error (request_id=%s)", scope["method"], _template(scope), request_id)
            if started:
                raise  # the answer is half sent: only the server can end the connection
            state["problem"] = InternalError.slug
            body = problem_bytes(500, InternalError.slug, InternalError.title, INTERNAL_DETAIL,
                                 instance=scope["path"], request_id=request_id)
            await send_with_id({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]})
            await send_with_id({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - start
            if counted:
                self.metrics.in_flight.dec()
                template = _template(scope)
                self.metrics.requests.labels(template, scope["method"], str(status)).inc()
                self.metrics.latency.labels(template, scope["method"]).observe(elapsed)
                if status >= 400:
                    _log_problem(scope, template, status, request_id)


def _template(scope: Scope) -> str:
    return getattr(scope.get("route"), "path", None) or "unmatched"


def _log_problem(scope: Scope, template: str, status: int, request_id: str) -> None:
    """One line per error answer, so the request id a client quotes leads to what happened.

    4xx are the client's mistakes (INFO), 5xx ours (WARNING). The key id is logged, never the key.
    """
    state = scope.get("state") or {}
    log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "%s %s -> %s %s (request_id=%s key_id=%s)", scope["method"], template, status,
        state.get("problem", "-"), request_id, state.get("key_id") or "-",
    )


Check = Callable[[], Awaitable[None]]

_READY: dict[str, Any] = {
    "type": "object", "required": ["status", "failing"],
    "properties": {"status": {"type": "string", "enum": ["ok"]}, "failing": {"type": "object"}},
}


def health_router(registry: CollectorRegistry, checks: dict[str, Check]) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz", summary="Its database and broker are reachable",
        responses={200: {"description": "Ready", "content": {"application/json": {"schema": _READY}}},
                   503: ServiceUnavailable.openapi()},
    )
    async def readyz(request: Request) -> Response:
        failing: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await check()
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
                # The cause is for operators (the log), not for whoever can reach the probe.
                log.warning("not ready: %s (%s: %s)", name, type(exc).__name__, exc)
                failing[name] = "not ready"
        if not failing:
            return JSONResponse({"status": "ok", "failing": {}})
        return problem_response(
            request, ServiceUnavailable.status, ServiceUnavailable.slug, ServiceUnavailable.title,
            f"not ready: {', '.join(failing)}", extra={"failing": failing},
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


class PoolCollector(Collector):
    """The database pool at scrape time, read from `app.state.engine` (set by each service's lifespan).

    An exhausted pool is the first sign of a slow database: requests queue for a connection long before
    any query is slow, so operators watch checked-out against the pool's capacity.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "d06_db_pool_connections", "Database connections of this process's pool, by state.", labels=["state"]
        )
        capacity = GaugeMetricFamily(
            "d06_db_pool_capacity_connections", "Connections the pool may open (size plus overflow)."
        )
        engine = getattr(self.app.state, "engine", None)
        pool = getattr(getattr(engine, "sync_engine", None), "pool", None)
        if isinstance(pool, QueuePool):  # before the lifespan has built it: the families, without samples
            connections.add_metric(["checked_out"], pool.checkedout())
            connections.add_metric(["idle"], pool.checkedin())
            capacity.add_metric([], pool.size() + max(pool._max_overflow, 0))  # no public getter for overflow
        yield connections
        yield capacity


def install_observability(app: FastAPI, registry: CollectorRegistry, checks: dict[str, Check]) -> None:
    registry.register(PoolCollector(app))
    app.add_middleware(ObservabilityMiddleware, metrics=HttpMetrics(registry))
    app.include_router(health_router(registry, checks))


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
