"""The three services as real processes (uvicorn), for end-to-end and fault-injection tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from shared.devrun import log_tail, wait_ready
from shared.devstack import free_port
from tests.conftest import RUN_DIR, Stack

MODULES = ("ingest", "aggregate", "query")


@dataclass
class ServiceProcesses:
    stack: Stack
    key: str
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def ingest(self) -> str:
        return self.url("ingest")

    @property
    def query(self) -> str:
        return self.url("query")

    def start(self, name: str, wait: bool = True) -> None:
        log = RUN_DIR / f"{self.stack.events_topic}.{name}.log"
        self.logs[name] = log
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}", "--port", str(self.ports[name])],
            env=self.stack.env(), stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        wait_ready(name, self.url(name), self.procs[name], self.logs[name], timeout)

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, exactly like a crashed pod."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self, name: str, timeout: float = 30) -> int:
        """SIGTERM and wait: the graceful path; returns the exit code (0 for a clean stop)."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs.get(name)
        return "" if path is None else log_tail(path, lines)


@contextmanager
def start_services(stack: Stack, names: tuple[str, ...] = MODULES) -> Iterator[ServiceProcesses]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    key = asyncio.run(stack.create_key())
    procs = ServiceProcesses(stack, key, {name: free_port() for name in MODULES})
    try:
        for name in names:
            procs.start(name, wait=False)
        for name in names:
            procs.wait_ready(name)
        yield procs
    finally:
        for name in list(procs.procs):
            procs.stop(name)
        if os.environ.get("D06_KEEP_LOGS") is None:
            for log in procs.logs.values():
                log.unlink(missing_ok=True)
