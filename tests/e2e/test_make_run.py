"""The README's promise to a newcomer: `make run` starts everything, and the two `curl` lines it prints work
as printed (the second shows the first's value in its province's rollup).

`make run` is `d06 run` once the venv is installed; it runs here in a directory of its own (its `.run/`),
on free ports, with the embedded PostgreSQL and broker a fresh machine gets.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

from tests.fixtures.make_run import SERVICES, d06_run


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


def test_make_run_starts_everything_and_its_printed_curl_lines_work() -> None:
    with d06_run() as run:
        banner = run.read_banner()
        assert "24 seed-report events accepted" in banner
        key = (run.run_dir / "dev-api-key").read_text().strip()
        assert re.fullmatch(r"d06_[0-9a-f]{12}_\S+", key) and key in banner
        for name in SERVICES:
            assert run.pid(name) is not None

        post, read = curl_lines(banner)
        posted = subprocess.run(["bash", "-c", post], cwd=run.cwd, capture_output=True, text=True, check=True)
        assert json.loads(posted.stdout)["accepted"] == 1, posted.stdout
        for _ in range(100):  # the rollup is visible within a second of the 202
            answer = json.loads(subprocess.run(["bash", "-c", read], cwd=run.cwd, capture_output=True, text=True,
                                               check=True).stdout)
            if answer["values"][0]["value"] == 141000:
                break
            time.sleep(0.05)
        assert answer["unit"]["name"] == "Tỉnh Long An"
        assert answer["values"][0]["value"] == 141000, answer
        returncode = run.stop()  # Ctrl-C
    assert returncode == 0, run.output
    assert "stopped; data kept in .run/" in run.output
