"""100,000 events across the whole legacy hierarchy (every one of its 10,035 communes), then verify."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from shared.hierarchy import read_dataset
from tests.fixtures.infra import Stack
from tests.fixtures.processes import ServiceProcesses, start_services
from tests.fixtures.workload import MONTHS, Workload, wait_until_rollups_match

pytestmark = pytest.mark.e2e

EVENTS = 100_000
BATCH = 2_000


@pytest.fixture
def services(stack: Stack) -> Iterator[ServiceProcesses]:
    with start_services(stack) as procs:
        yield procs


def test_a_national_load_rolls_up_exactly(stack: Stack, services: ServiceProcesses) -> None:
    communes = [u for u in read_dataset() if u.edition == "legacy" and u.level == "commune"]
    assert len(communes) == 10_035
    workload = Workload(services.ingest, services.key, communes, seed=100)
    # Every commune reports at least once (then random ones, with corrections and retractions).
    first = [{"event_id": f"c{u.code}", "unit": u.code, "edition": "legacy", "indicator": "cccd_issued",
              "period": MONTHS[0], "value": 1_000 + i % 977} for i, u in enumerate(communes)]
    for start in range(0, len(first), BATCH):
        workload.post(first[start : start + BATCH])
    while workload.truth.accepted < EVENTS:
        workload.post(workload.batch(min(BATCH, EVENTS - workload.truth.accepted)))
    assert workload.truth.accepted == EVENTS

    mismatches = wait_until_rollups_match(services.query, services.key, workload.truth, timeout=240)
    assert not mismatches, list(mismatches.items())[:5]
    nation = services_nation_value(services)
    assert nation == float(sum(v for (p, i, m), v in workload.truth.province_totals().items()
                               if i == "cccd_issued" and m == MONTHS[0]))
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "rollups", "verify", "--edition", "legacy"], env=stack.env(),
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no difference" in result.stdout


def services_nation_value(services: ServiceProcesses) -> float:
    import httpx

    response = httpx.get(
        f"{services.query}/v1/units/VN/values",
        params={"period": MONTHS[0], "indicator": "cccd_issued", "edition": "legacy"},
        headers={"Authorization": f"Bearer {services.key}"}, timeout=30,
    )
    assert response.status_code == 200, response.text
    value: float = response.json()["values"][0]["value"]
    return value
