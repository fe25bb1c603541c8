"""`make run` keeps running when a service dies, as Kubernetes would: each service SIGKILLed under `d06 run`
comes back (a new pid in `.run/<name>.pid`, /readyz 200), events posted throughout are each applied exactly
once, and Ctrl-C still stops everything with exit code 0 and no "exited" warning for what it stopped.

The give-up path (5 crashes within 60 s) is tested without `d06 run`, which takes most of a minute to start:
the policy in tests/unit/test_restart_policy.py, the supervisor with real processes in
tests/integration/test_supervisor.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from shared.devrun import is_ready
from shared.hierarchy import Unit, read_dataset
from tests.fixtures.make_run import SERVICES, d06_run
from tests.fixtures.waiting import until
from tests.fixtures.workload import Workload, wait_until_rollups_match

pytestmark = pytest.mark.e2e

PROVINCES = ("01", "79")  # Hà Nội and Hồ Chí Minh City: the demo data has nothing there in 2024-01..03


def _communes() -> list[Unit]:
    return [u for u in read_dataset()
            if u.edition == "legacy" and u.level == "commune" and u.province_code in PROVINCES]


def _printed_url(banner: str, service: str) -> str:
    found = re.search(rf"^\s*{service}\s+(http://\S+)", banner, re.MULTILINE)
    assert found, banner
    return found.group(1)


def test_each_service_sigkilled_under_make_run_comes_back_and_no_event_is_lost() -> None:
    # Fast group membership: the restarted aggregator gets its partitions within seconds.
    with d06_run({"AGGREGATE_SESSION_TIMEOUT_MS": "3000", "AGGREGATE_HEARTBEAT_INTERVAL_MS": "1000"}) as run:
        banner = run.read_banner()
        urls = {service: _printed_url(banner, service) for service in SERVICES}
        key = (run.run_dir / "dev-api-key").read_text().strip()
        workload = Workload(urls["ingest"], key, _communes(), seed=10)
        try:
            workload.post(workload.batch(100))
            for service in SERVICES:
                old = run.pid(service)
                assert old is not None
                os.kill(old, signal.SIGKILL)
                workload.post(workload.batch(100))  # retried until ingest answers again, when it is the one killed

                def back(service: str = service, old: int = old) -> bool:
                    return run.pid(service) not in (None, old) and is_ready(urls[service])

                until(back, what=f"{service} restarted under a new pid and ready")
                workload.post(workload.batch(100))
        finally:
            workload.close()

        mismatches = wait_until_rollups_match(urls["query"], key, workload.truth, timeout=90)
        assert not mismatches, f"{len(mismatches)} province values differ: {list(mismatches.items())[:5]}"
        assert workload.truth.accepted == 700
        verify = subprocess.run(
            [sys.executable, "-m", "shared.cli", "rollups", "verify"], capture_output=True, text=True, timeout=180,
            env={**os.environ, "DATABASE_URL": run.database_url},
        )
        assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
        returncode = run.stop()  # Ctrl-C
        pidfiles_left = [service for service in SERVICES if (run.run_dir / f"{service}.pid").exists()]

    assert returncode == 0, run.output
    for service in SERVICES:
        assert f"!! {service} exited with -9 (SIGKILL); restarting in 0.5 s (restart 1)" in run.output, run.output
    _, _, stopping = run.output.partition("==> stopping")
    assert stopping, run.output
    assert "exited" not in stopping, stopping
    assert "stopped; data kept in .run/" in stopping
    assert pidfiles_left == []
