"""End to end: a 200,000-row CSV sent with `d06 import` to the three services as processes, every value
checked through the query API as a user would read it.

What is checked: for each indicator and month, every province's value (the VN drill-down, one request)
equals the sum of the file's figures for that province's communes, and the nation's value their total;
a sample of 200 communes is read one by one and equals its row. A second, small file shows the command's
dry run and its exit status when a row is rejected.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.hierarchy import read_dataset
from tests.fixtures.infra import Stack
from tests.fixtures.processes import ServiceProcesses, start_services
from tests.fixtures.waiting import until

pytestmark = pytest.mark.e2e

INDICATORS = ("cccd_issued", "dossiers_received")  # a stock and a flow, both monthly
MONTHS = tuple(f"2024-{m:02d}" for m in range(1, 11))
COMMUNES = 10_000  # x 2 indicators x 10 months = 200,000 rows


@pytest.fixture
def services(stack: Stack) -> Iterator[ServiceProcesses]:
    with start_services(stack) as procs:
        yield procs


def _d06(services: ServiceProcesses, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", "import", *args, "--url", services.ingest,
                           "--key", services.key], env=services.stack.env(), capture_output=True, text=True,
                          timeout=900)


def _values(query: httpx.Client, path: str, **params: str) -> list[dict[str, Any]]:
    response = query.get(path, params={"edition": "legacy", **params})
    assert response.status_code == 200, response.text
    body = response.json()
    return list(body["items"] if "items" in body else body["values"])


def test_a_200000_row_file_reaches_every_read(stack: Stack, services: ServiceProcesses, tmp_path: Path) -> None:
    rng = random.Random(12)
    communes = sorted((u for u in read_dataset() if u.edition == "legacy" and u.level == "commune"),
                      key=lambda u: u.code)[:COMMUNES]
    figures: dict[tuple[str, str, str], int] = {}
    path = tmp_path / "communes.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write("đơn vị,chỉ tiêu,kỳ,giá trị\n")
        for unit in communes:
            for indicator in INDICATORS:
                for month in MONTHS:
                    figures[(unit.code, indicator, month)] = value = rng.randint(0, 5000)
                    out.write(f"{unit.code},{indicator},{month},{value}\n")
    assert len(figures) == 200_000

    done = _d06(services, str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "200,000" in done.stdout and "imp_" in done.stdout

    provinces: dict[tuple[str, str, str], int] = defaultdict(int)
    for unit in communes:
        for indicator in INDICATORS:
            for month in MONTHS:
                provinces[(str(unit.province_code), indicator, month)] += figures[(unit.code, indicator, month)]
    total = sum(figures[(u.code, "dossiers_received", MONTHS[-1])] for u in communes)
    query = httpx.Client(base_url=services.query, headers={"Authorization": f"Bearer {services.key}"}, timeout=60)

    def applied() -> bool:
        [nation] = _values(query, "/v1/units/VN/values", indicator="dossiers_received", period=MONTHS[-1])
        return bool(nation["value"] == total)

    until(applied, what="the 200,000 rows to be applied", within=900)
    for indicator in INDICATORS:
        for month in MONTHS:
            items = _values(query, "/v1/units/VN/children/values", indicator=indicator, period=month, limit="100")
            got = {i["unit"]["code"]: i["value"] for i in items}
            want = {code: provinces.get((code, indicator, month)) for code in got}
            assert got == want, (indicator, month)
            [nation] = _values(query, "/v1/units/VN/values", indicator=indicator, period=month)
            assert nation["value"] == sum(v for (_, i, m), v in provinces.items() if (i, m) == (indicator, month))
    for unit in rng.sample(communes, 200):
        indicator, month = rng.choice(INDICATORS), rng.choice(MONTHS)
        [value] = _values(query, f"/v1/units/{unit.code}/values", indicator=indicator, period=month)
        assert value["value"] == figures[(unit.code, indicator, month)], (unit.code, indicator, month)

    # The same file again is the first import; a small file with a bad row, as a dry run, exits 1.
    again = _d06(services, str(path))
    assert again.returncode == 0 and done.stdout.split("import ")[1][:36] in again.stdout
    small = tmp_path / "small.csv"
    small.write_text("unit,indicator,period,value\n803,cccd_issued,2024-07,1\n803,cccd_issued,2024-08,nhiều\n")
    dry = _d06(services, str(small), "--dry-run", "--atomic", "false")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "dry run" in dry.stdout and "nhiều" in dry.stdout and "is not a number" in dry.stdout
    assert asyncio.run(stack.fetch("SELECT 1 FROM outbox WHERE unit = '803'")) == []
