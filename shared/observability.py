"""What every service exposes to operators: request ids, RED metrics by route template, and health routes.

Each app owns its own `CollectorRegistry` (no process globals), so several apps can live in one test
process and `/metrics` shows exactly one service. Health routes are not counted in the HTTP metrics.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI
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
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class ObservabilityMiddleware:
    """Pure ASGI (no per-request BaseHTTPMiddleware task): request id, timing, and one log line."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        counted = scope["path"] not in UNCOUNTED
        if counted:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            if counted:
                self.metrics.in_flight.dec()
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.metrics.requests.labels(template, scope["method"], str(status)).inc()
                self.metrics.latency.labels(template, scope["method"]).observe(elapsed)
                if status >= 500:
                    log.warning("%s %s -> %s (request_id=%s)", scope["method"], template, status, request_id)


Check = Callable[[], Awaitable[None]]


def health_router(registry: CollectorRegistry, checks: dict[str, Check]) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Its database and broker are reachable", responses={503: {}})
    async def readyz() -> Response:
        failing: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await check()
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
                failing[name] = type(exc).__name__
        body: dict[str, Any] = {"status": "ok" if not failing else "unavailable", "failing": failing}
        return JSONResponse(body, status_code=200 if not failing else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def install_observability(app: FastAPI, registry: CollectorRegistry, checks: dict[str, Check]) -> None:
    app.add_middleware(ObservabilityMiddleware, metrics=HttpMetrics(registry))
    app.include_router(health_router(registry, checks))


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
