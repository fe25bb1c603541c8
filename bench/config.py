"""How big each scenario is: the full run of `make bench`, and a tiny one that only proves it works."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    name: str
    communes: int | None  # of the aggregate scenario's month; None: every commune (10,035)
    aggregate_pairs: int = 3  # rounds without and then with rules and outliers, alternating
    batch: int = 1_000  # events per POST in the ingest and aggregate scenarios
    ingest_clients: int = 8
    ingest_warmup: float = 3.0
    ingest_seconds: float = 20.0
    freshness_rate: int = 5_000  # events a second
    freshness_batch: int = 500  # so 10 POSTs a second, one sampled event in each
    freshness_seconds: float = 60.0
    freshness_poll: float = 0.01
    freshness_timeout: float = 10.0  # a sampled event not visible by then counts as this late
    query_clients: int = 50
    query_warmup: float = 3.0
    query_seconds: float = 20.0
    national_repeats: int = 20
    import_rows: tuple[int, ...] = (100_000, 1_000_000)  # scenario 7's files, in this order


FULL = Sizes("full", communes=None)
SMOKE = Sizes(
    "smoke", communes=300, aggregate_pairs=1, batch=100, ingest_clients=2, ingest_warmup=0.2, ingest_seconds=1.0,
    freshness_rate=200, freshness_batch=20, freshness_seconds=2.0, query_clients=4, query_warmup=0.2,
    query_seconds=1.0, national_repeats=2, import_rows=(2_000, 6_000),
)
