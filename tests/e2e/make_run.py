"""`d06 run` (what `make run` runs) as a subprocess in a directory of its own, on free ports, with the
embedded PostgreSQL and broker a fresh machine gets: what the tests of `make run` share.

The directory is under `.run/test`, not pytest's `tmp_path`: another pytest session starting on the machine
takes the other users' access off pytest's temporary root, and with it PostgreSQL's (which runs as its own
user when we are root) in the middle of a run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

from shared.devstack import free_port
from tests.conftest import RUN_DIR

STARTUP_SECONDS = 240
BANNER_END = "Ctrl-C stops everything."
SERVICES = ("ingest", "aggregate", "query")

T = TypeVar("T")


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


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """Poll `check` until it returns something other than None; that is the result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


class DevRun:
    """One `d06 run`; `stop()` is Ctrl-C, and what it printed after the banner is then in `output`."""

    def __init__(self, cwd: Path, extra_env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.ports = {name: free_port() for name in ("PG", "BROKER", *(s.upper() for s in SERVICES))}
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP")}
        env |= {f"D06_DEV_{name}_PORT": str(port) for name, port in self.ports.items()} | (extra_env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "run"], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = ""

    def read_banner(self) -> str:
        assert self.proc.stdout is not None
        return read_until(self.proc.stdout, BANNER_END, time.monotonic() + STARTUP_SECONDS)

    @property
    def run_dir(self) -> Path:
        return self.cwd / ".run"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports['PG']}/d06"

    def pid(self, service: str) -> int | None:
        """The pid in `.run/<service>.pid`, None while there is none."""
        try:
            return int((self.run_dir / f"{service}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self) -> int:
        """Ctrl-C, and the exit code once everything stopped."""
        if self.proc.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            self.output += self.proc.communicate(timeout=90)[0]
        return self.proc.returncode


@contextmanager
def d06_run(extra_env: dict[str, str] | None = None) -> Iterator[DevRun]:
    """A `d06 run` stopped (Ctrl-C) at the end, its directory removed unless D06_KEEP_LOGS is set."""
    cwd = RUN_DIR / f"make-run-{uuid.uuid4().hex[:8]}"
    cwd.mkdir(parents=True)
    run = DevRun(cwd, extra_env)
    try:
        yield run
    finally:
        run.stop()
        if os.environ.get("D06_KEEP_LOGS") is None:
            shutil.rmtree(cwd, ignore_errors=True)
