"""Everything the benchmark runs against: its own PostgreSQL and broker, the schema, the reference data,
an API key and the three services as processes (`python -m services.<name> --port P`, as `make run`).

Own ports and own data (`.run/bench/`), so a `make run` or a test session on the same machine is left
alone. `--database-url` / `--kafka-bootstrap` point it at servers that already run instead (the smoke
test does); the database named there must be one the benchmark may fill.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.report import Figure
from services.ingest.outbox import unpublished
from shared.auth import create_key
from shared.db import create_database, make_engine, plain_url, transaction
from shared.devstack import LocalBroker, LocalPostgres, free_port
from shared.migrate import load_reference_data, upgrade

DATABASE = "d06_bench"
SERVICES = ("ingest", "aggregate", "query")


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def note(message: str) -> None:
    print(f"    {message}", flush=True)


@dataclass
class Process:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    peak_rss_kib: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class BenchStack:
    run_dir: Path
    run_id: str
    database_url: str | None = None  # given: use it as is; else our own PostgreSQL
    kafka_bootstrap: str | None = None
    env_overrides: dict[str, str] = field(default_factory=dict)
    profile: set[str] = field(default_factory=set)  # services to record with py-spy
    pg: LocalPostgres | None = None
    broker: LocalBroker | None = None
    key: str = ""
    procs: dict[str, Process] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return f"bench-{self.run_id}.events"

    @property
    def group(self) -> str:
        return "d06-aggregate"  # the default consumer group of the aggregate service

    # ---- infrastructure

    def start_infrastructure(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.database_url is None:
            port = free_port()
            step(f"PostgreSQL 18 (embedded): starting on 127.0.0.1:{port}, data in {self.run_dir / 'pgdata'}")
            self.pg = LocalPostgres(self.run_dir / "pgdata", port)
            self.pg.start()
            self.database_url = asyncio.run(create_database(self.pg.url, DATABASE, replace=True))  # same start
        else:
            step(f"PostgreSQL: using {self.database_url.split('@')[-1]}")
        if self.kafka_bootstrap is None:
            port = free_port()
            step(f"Kafka protocol broker (Tansu, memory storage): starting on 127.0.0.1:{port}")
            self.broker = LocalBroker(port, log_path=self.run_dir / "tansu.log")
            self.broker.start()
            self.kafka_bootstrap = self.broker.bootstrap
        else:
            step(f"Kafka: using {self.kafka_bootstrap}")
        step("database: migrations, both hierarchy editions (legacy: 10,035 communes), the catalogue")
        upgrade(self.url)
        asyncio.run(load_reference_data(self.url))
        self.key = asyncio.run(self._create_key())
        self.ports = {name: free_port() for name in SERVICES}

    @property
    def url(self) -> str:
        assert self.database_url is not None
        return self.database_url

    async def _create_key(self) -> str:
        engine = make_engine(self.url, pool_size=1, app="d06-bench")
        try:
            async with transaction(engine) as conn:
                _, key = await create_key(conn, name="benchmark", scope_code="VN", scope_edition=None,
                                          roles=["submit", "read", "admin"])
        finally:
            await engine.dispose()
        return key

    def env(self) -> dict[str, str]:
        assert self.kafka_bootstrap is not None
        return {
            **os.environ,
            "DATABASE_URL": self.url,
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "D06_EVENTS_TOPIC": self.topic,
            "D06_DEAD_LETTER_TOPIC": f"bench-{self.run_id}.dead",
            "D06_TOPIC_PARTITIONS": "8",
            # A capacity measurement: the per-key limit (5,000 reads/s by default) would measure itself.
            "QUERY_RATE_LIMIT": "0",
            **self.env_overrides,
        }

    # ---- services

    def start(self, name: str) -> Process:
        log = self.run_dir / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}", "--port", str(self.ports[name])],
            env=self.env(), stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )
        self.procs[name] = Process(name, self.ports[name], proc, log)
        if name in self.profile:
            self._record(name, proc.pid)
        return self.procs[name]

    def _record(self, name: str, pid: int) -> None:
        """py-spy samples the process until it exits, then writes a flame graph (an SVG any browser opens)."""
        runs = len(list(self.run_dir.glob(f"{name}.{self.run_id}.*.flamegraph.svg")))  # one per start
        output = self.run_dir / f"{name}.{self.run_id}.{runs + 1}.flamegraph.svg"
        beside = Path(sys.executable).with_name("py-spy")  # pip install py-spy puts it in the venv
        binary = str(beside) if beside.exists() else shutil.which("py-spy")
        if binary is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy (a profiler; not a dependency)")
        command = [binary, "record", "--pid", str(pid), "--rate", "200", "--format", "flamegraph",
                   "--output", str(output), "--nonblocking"]
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(self.run_dir / "py-spy.log").open("ab"))
        note(f"py-spy records {name} (pid {pid}) into {output}")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each service, our PostgreSQL (every backend), the broker and this process."""
        used = {name: _cpu(p.proc.pid) for name, p in self.procs.items() if p.proc.poll() is None}
        if self.pg is not None and self.pg.pid is not None:
            # Backends that exited meanwhile are counted in the postmaster's children's time (it reaps them).
            used["postgres"] = _cpu(self.pg.pid, reaped=True) + sum(_cpu(pid) for pid in _children(self.pg.pid))
        if self.broker is not None and self.broker.pid is not None:
            used["tansu"] = _cpu(self.broker.pid)
        times = os.times()
        used["bench"] = times.user + times.system + times.children_user + times.children_system
        return used

    def wait_ready(self, name: str, timeout: float = 90.0, interval: float = 0.2) -> float:
        """Poll /readyz until 200; returns the monotonic time it was first seen ready."""
        process = self.procs[name]
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if process.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.proc.returncode}; see {process.log}")
                try:
                    if client.get(f"{process.url}/readyz").status_code == 200:
                        return time.monotonic()
                except httpx.HTTPError:
                    pass
                time.sleep(interval)
        raise RuntimeError(f"{name} not ready after {timeout:.0f}s; see {process.log}")

    def sample_memory(self, name: str) -> int:
        """The process's peak resident set (VmHWM, KiB), kept once the process is gone."""
        process = self.procs.get(name)
        if process is not None and process.proc.poll() is None:
            process.peak_rss_kib = max(process.peak_rss_kib, _vm_hwm(process.proc.pid))
        return process.peak_rss_kib if process else 0

    def stop(self, name: str, timeout: float = 30.0) -> None:
        process = self.procs.get(name)
        if process is None or process.proc.poll() is not None:
            return
        self.sample_memory(name)
        process.proc.terminate()
        try:
            process.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            process.proc.kill()
            process.proc.wait()

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
        if self.broker is not None:
            self.broker.stop()
        if self.pg is not None:
            self.pg.stop()

    # ---- database helpers

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(plain_url(self.url))

    async def backend_cpu(self, app: str) -> dict[int, float]:
        """{pid: CPU seconds} of the PostgreSQL backends of one application (`d06-ingest`): its share of
        PostgreSQL's work apart from the aggregator's, which writes to the same server at the same time."""
        pids = await self.fetchval("SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity "
                                   "WHERE application_name = $1", app)
        return {pid: _cpu(pid) for pid in pids}

    async def fetchval(self, sql: str, *args: Any) -> Any:
        conn = await self.connect()
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()




_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int, *, reaped: bool = False) -> float:
    """utime + stime of a process, in seconds (0 when it is gone); `reaped`: plus its waited-for children's."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rfind(")") + 2 :].split()
    return sum(int(f) for f in fields[11 : 15 if reaped else 13]) / _TICK


def _children(parent: int) -> list[int]:
    """The live children of a process (PostgreSQL's backends are all children of the postmaster)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            if int(raw[raw.rfind(")") + 2 :].split()[1]) == parent:
                members.append(int(entry.name))
    return members


class CpuMeter:
    """How busy each part of the system was during a scenario, as a share of one core."""

    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack
        self.start = stack.cpu_seconds()
        self.started = time.monotonic()
        self.used: dict[str, float] = {}  # CPU seconds of each part between start and report()

    def report(self) -> dict[str, float]:
        now, elapsed = self.stack.cpu_seconds(), time.monotonic() - self.started
        self.used = {name: now[name] - self.start.get(name, 0.0) for name in now}
        shares = {name: round(used / elapsed, 2) for name, used in self.used.items()}
        note("cpu (cores): " + ", ".join(f"{name} {share:.2f}" for name, share in shares.items()))
        return shares

    def per_event(self, scenario: str, service: str, events: int, round_: str = "") -> list[Figure]:
        """µs of CPU per event of the service and of PostgreSQL: what a change costs or saves, apart from how
        much of the machine the run got. It still grows on a busy host (shared caches and cores run slower),
        so compare runs at similar speed probes.
        PostgreSQL is left out when it is not ours (--database-url): its CPU is not ours to read."""
        parts = {f"the {service} process": self.used.get(service), "PostgreSQL": self.used.get("postgres")}
        return [Figure(scenario, f"CPU per event{round_}: {part}", 1e6 * used / events, "µs")
                for part, used in parts.items() if used is not None and events]

    def cpu_per_event(self, service: str, events: int) -> float:
        """Seconds of CPU per event of the service and PostgreSQL together (the service alone when the
        database is not ours)."""
        return (self.used.get(service, 0.0) + self.used.get("postgres", 0.0)) / events


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Progress:
    """Offsets applied by the aggregator against offsets produced by the relay, read from Postgres."""

    def __init__(self, conn: asyncpg.Connection, topic: str, group: str) -> None:
        self.conn = conn
        self.topic = topic
        self.group = group

    async def produced(self) -> int:
        return int(await self.conn.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM relay_offsets WHERE topic = $1", self.topic))

    async def applied(self) -> int:
        return int(await self.conn.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = $1 AND consumer_group = $2",
            self.topic, self.group))

    async def unpublished(self) -> int:
        return int(await self.conn.fetchval(f"SELECT count(*) FROM outbox WHERE {unpublished('$1')}", self.topic))

    async def wait_published(self, within: float) -> int:
        """Until the relay has published the whole outbox; returns the offsets produced."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not await self.unpublished():
                break
            await asyncio.sleep(0.05)
        return await self.produced()

    async def wait_applied(self, target: int, within: float, interval: float = 0.01) -> float | None:
        """Until the aggregator's stored offsets reach `target`; the monotonic time seen, or None."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self.applied() >= target:
                return time.monotonic()
            await asyncio.sleep(interval)
        return None

    async def drained(self, within: float) -> bool:
        """Until everything in the outbox is published and applied (each step within `within` s); False
        when the aggregator did not catch up."""
        produced = await self.wait_published(within=within)
        return await self.wait_applied(produced, within=within, interval=0.1) is not None
