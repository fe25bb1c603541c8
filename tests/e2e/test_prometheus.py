"""A real Prometheus server scrapes the three services and answers a query for the freshness histogram."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.devstack import free_port
from tests.fixtures.deploy_toolchain import prometheus
from tests.fixtures.infra import Stack
from tests.fixtures.processes import MODULES, ServiceProcesses, start_services

pytestmark = pytest.mark.e2e


@pytest.fixture
def services(stack: Stack) -> Iterator[ServiceProcesses]:
    with start_services(stack) as procs:
        yield procs


@pytest.fixture
def prometheus_url(services: ServiceProcesses) -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        targets = "\n".join(
            f"  - job_name: {name}\n    static_configs: [{{targets: ['127.0.0.1:{services.ports[name]}']}}]"
            for name in MODULES
        )
        config.write_text(f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n{targets}\n")
        proc = subprocess.Popen(
            [str(prometheus()), f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=(Path(tmp) / "prometheus.log").open("wb"),
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    try:
        response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    except httpx.TransportError:
        return []
    if response.status_code != 200:
        return []
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def _eventually(url: str, promql: str, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = _query(url, promql)
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never answered {promql!r}")


def test_prometheus_scrapes_every_service_and_sees_freshness(
    services: ServiceProcesses, prometheus_url: str
) -> None:
    events = [{"unit": code, "edition": "legacy", "indicator": "cccd_issued", "period": "2024-07", "value": i}
              for i, code in enumerate(("27991", "27994", "27997", "803", "936"))]
    response = httpx.post(f"{services.ingest}/v1/events", json={"events": events},
                          headers={"Authorization": f"Bearer {services.key}"}, timeout=30)
    assert response.status_code == 202, response.text

    up = _eventually(prometheus_url, "count(up == 1) == 3")
    assert float(up[0]["value"][1]) == 3
    applied = _eventually(prometheus_url, "sum(d06_aggregate_freshness_seconds_count) >= 5")
    assert float(applied[0]["value"][1]) >= 5
    p99 = _eventually(
        prometheus_url, "histogram_quantile(0.99, sum by (le) (d06_aggregate_freshness_seconds_bucket))"
    )
    assert 0 <= float(p99[0]["value"][1]) < 60  # seconds from acceptance at ingest to the rollup
    accepted = _eventually(prometheus_url, "sum(d06_ingest_events_accepted_total) >= 5")
    assert float(accepted[0]["value"][1]) == 5
    _eventually(prometheus_url, 'sum(d06_http_requests_total{job="ingest",route="/v1/events",status="202"})')
