"""`make bench` with tiny sizes, so it cannot rot: every scenario runs and reports a figure. No timing is
asserted (DESIGN §6: performance is measured by `make bench`, never by timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.infra import ROOT, Stack

pytestmark = pytest.mark.e2e


def test_the_benchmark_runs_every_scenario(stack: Stack, tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-install", "--database-url", stack.database_url,
         "--kafka-bootstrap", stack.kafka_bootstrap, "--run-dir", str(tmp_path / "run"),
         "--results-dir", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "scenario" in done.stdout and "measured" in done.stdout

    (written,) = results.glob("*.json")
    report = json.loads(written.read_text())
    assert report["profile"] == "smoke" and report["failed"] is False
    measured = {(f["scenario"], f["figure"]): f["measured"] for f in report["figures"]}
    assert {scenario for scenario, _ in measured} == {
        "1 ingest", "2 aggregate", "3 freshness", "4 query", "5 national", "6 memory", "7 imports"}
    # CPU is counted in clock ticks (10 ms): a tiny run may use none of PostgreSQL's.
    assert all(isinstance(v, int | float) and (v > 0 or ("CPU" in figure and v == 0))
               for (_, figure), v in measured.items()), measured
