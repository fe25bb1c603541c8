"""Every metric of the query service, in one place (the HTTP RED metrics come from shared.observability).

Labels are bounded: `endpoint` is one of ENDPOINTS, never a path or a unit code.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Endpoint = Literal["indicators", "units", "unit", "values", "children", "series", "lineage", "exports", "quality"]
ENDPOINTS: tuple[Endpoint, ...] = (
    "indicators", "units", "unit", "values", "children", "series", "lineage", "exports", "quality",
)


class QueryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # 304s: how much the portals' caches save us (and them).
        self.not_modified = Counter(
            "d06_query_not_modified_total",
            "Requests answered 304 Not Modified because the client's ETag matched.",
            ["endpoint"], registry=registry,
        )
        # Rows Postgres returned: a drill-down over a year of months reads ~12 rows per child, and a
        # change of access pattern (or a missing index) shows here before it shows in latency.
        self.rows_read = Counter(
            "d06_query_rows_read_total", "Rows read from PostgreSQL to answer requests.",
            ["endpoint"], registry=registry,
        )
        self.rows_per_request = Histogram(
            "d06_query_rows_per_request", "Rows read from PostgreSQL by one request.",
            ["endpoint"], registry=registry,
            buckets=(0, 1, 5, 20, 50, 100, 250, 500, 1000, 2500, 5000),
        )
        # The in-memory hierarchy: a failing refresh keeps serving the last good copy, so alert on these.
        self.hierarchy_refreshes = Counter(
            "d06_query_hierarchy_refreshes_total",
            "Attempts to refresh the in-memory unit hierarchy, by outcome (loaded, unchanged, failed).",
            ["outcome"], registry=registry,
        )
        # Answers served from memory (caching.py): a falling hit ratio under a steady read load means
        # the rollups change often, or the service lost its LISTEN connection (see the log).
        self.cache = Counter(
            "d06_query_cache_lookups_total",
            "Answers looked up in memory before reading PostgreSQL, by endpoint and result (hit, miss).",
            ["endpoint", "result"], registry=registry,
        )
        # API keys known from an earlier lookup (keys.py): misses are a key's first use, a key change
        # announced on api_keys, or, without LISTEN (a read replica), a key unused for QUERY_CACHE_TTL_SECONDS.
        self.keys = Counter(
            "d06_query_key_lookups_total",
            "API keys looked up in memory before reading PostgreSQL, by result (hit, miss).",
            ["result"], registry=registry,
        )
        self.hierarchy_units = Gauge(
            "d06_query_hierarchy_units", "Units in the in-memory hierarchy (0 until it is loaded).",
            registry=registry,
        )
        for result in ("hit", "miss"):
            self.keys.labels(result)
        for endpoint in ENDPOINTS:  # so every series exists at 0 from the start
            self.not_modified.labels(endpoint)
            self.rows_read.labels(endpoint)

    def read(self, endpoint: Endpoint, rows: int) -> None:
        self.rows_read.labels(endpoint).inc(rows)
        self.rows_per_request.labels(endpoint).observe(rows)
