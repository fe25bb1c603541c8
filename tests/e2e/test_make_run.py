"""The README's promise to a newcomer: `make run` starts everything, and the two `curl` lines it prints work
as printed (the second shows the first's value in its province's rollup).

`make run` is `d06 run` once the venv is installed; it runs here in a directory of its own (its `.run/`),
on free ports, with the embedded PostgreSQL and broker a fresh machine gets.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from shared.devstack import free_port

STARTUP_SECONDS = 240


def read_until(stream: IO[str], marker: str, deadline: float) -> str:
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"`d06 run` never printed {marker!r}; it printed:\n{''.join(seen)[-4000:]}")


def curl_lines(banner: str) -> list[str]:
    """The shell commands of the banner: each `curl` line with its continuation lines."""
    commands, current = [], ""
    for line in banner.splitlines():
        stripped = line.strip()
        if stripped.startswith("curl ") or current:
            current += stripped.removesuffix("\\") + " "
            if not stripped.endswith("\\"):
                commands.append(current.strip())
                current = ""
    return commands


def test_make_run_starts_everything_and_its_printed_curl_lines_work(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP")}
    env |= {"D06_DEV_PG_PORT": str(free_port()), "D06_DEV_BROKER_PORT": str(free_port()),
            **{f"D06_DEV_{name}_PORT": str(free_port()) for name in ("INGEST", "AGGREGATE", "QUERY")}}
    run = subprocess.Popen([sys.executable, "-m", "shared.cli", "run"], cwd=tmp_path, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert run.stdout is not None
        banner = read_until(run.stdout, "Ctrl-C stops everything.", time.monotonic() + STARTUP_SECONDS)
        assert "24 seed-report events accepted" in banner
        key = (tmp_path / ".run" / "dev-api-key").read_text().strip()
        assert re.fullmatch(r"d06_[0-9a-f]{12}_\S+", key) and key in banner
        for name in ("ingest", "aggregate", "query"):
            assert (tmp_path / ".run" / f"{name}.pid").read_text().strip().isdigit()

        post, read = curl_lines(banner)
        posted = subprocess.run(["bash", "-c", post], cwd=tmp_path, capture_output=True, text=True, check=True)
        assert json.loads(posted.stdout)["accepted"] == 1, posted.stdout
        for _ in range(100):  # the rollup is visible within a second of the 202
            answer = json.loads(subprocess.run(["bash", "-c", read], cwd=tmp_path, capture_output=True, text=True,
                                               check=True).stdout)
            if answer["values"][0]["value"] == 141000:
                break
            time.sleep(0.05)
        assert answer["unit"]["name"] == "Tỉnh Long An"
        assert answer["values"][0]["value"] == 141000, answer
    finally:
        run.send_signal(signal.SIGINT)  # Ctrl-C
        output, _ = run.communicate(timeout=60)
    assert run.returncode == 0, output
    assert "stopped; data kept in .run/" in output
