"""`make run`: the whole suite on one machine, from nothing, with progress as it goes.

PostgreSQL and the broker are the embedded ones unless `DATABASE_URL` / `KAFKA_BOOTSTRAP` name others.
Data lives in `.run/` and is reused by the next run; Ctrl-C stops every process this command started.
The three services are supervised (shared/devstack/supervisor.py): one that dies is restarted, and only a
crash loop stops everything. PostgreSQL and the broker are not: a developer who stops one means it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from shared.auth import Role, authenticate, create_key
from shared.db import create_database, make_engine, transaction
from shared.demo_loader import DemoLoader
from shared.devstack import LocalBroker, LocalPostgres
from shared.devstack.supervisor import CrashLoop, Program, Supervisor
from shared.keys import revoke
from shared.migrate import load_reference_data, upgrade
from shared.periods import today_in_vietnam
from shared.settings import DEV_BROKER_PORT, DEV_PG_PORT

RUN = Path(".run")
PG_PORT = int(os.environ.get("D06_DEV_PG_PORT", DEV_PG_PORT))
BROKER_PORT = int(os.environ.get("D06_DEV_BROKER_PORT", DEV_BROKER_PORT))
DATABASE = "d06"
# `seeds`: only the 24 seed-report events (the tests); otherwise a synthetic national dataset as well.
SYNTHETIC = os.environ.get("D06_DEMO", "synthetic") != "seeds"


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SERVICES = [
    Service(name, f"services.{name}", int(os.environ.get(f"D06_DEV_{name.upper()}_PORT", port)))
    for name, port in (("ingest", 8001), ("aggregate", 8002), ("query", 8003))
]
INGEST, AGGREGATE, QUERY = SERVICES


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def dev_key(url: str, path: Path = RUN / "dev-api-key") -> str:
    """Reuse `.run/dev-api-key` while it still works and holds every role; otherwise create a new VN key with
    every role. A key from before a role existed is revoked and replaced, so the printed key can do everything
    the README shows."""
    kept = path.read_text().strip() if path.exists() else None
    key = asyncio.run(_valid_dev_key(url, kept))
    if key != kept:
        path.write_text(key + "\n")
        path.chmod(0o600)
    return key


async def _valid_dev_key(url: str, kept: str | None) -> str:
    engine = make_engine(url, pool_size=1, app="d06-run")
    try:
        async with transaction(engine) as conn:
            principal = await authenticate(conn, kept, touch=False) if kept else None
            if kept and principal is not None and all(principal.has(role) for role in Role):
                return kept
            if principal is not None and principal.key_id is not None:
                await revoke(conn, principal.key_id)
            _, key = await create_key(
                conn, name="development (make run)", scope_code="VN", scope_edition=None,
                roles=[role.value for role in Role],
            )
            return key
    finally:
        await engine.dispose()


def is_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(name: str, url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until `url`/readyz answers 200; a process that exits or stays unready raises with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; {log}:\n{log_tail(log)}")
        if is_ready(url):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready after {timeout:.0f}s; {log}:\n{log_tail(log)}")


def _wait_all_ready(supervisor: Supervisor, timeout: float = 60) -> None:
    """Until every service answers /readyz; one that crashes meanwhile is restarted like any other time."""
    deadline = time.monotonic() + timeout
    pending = list(SERVICES)
    while pending:
        supervisor.poll()
        for service in [s for s in pending if is_ready(s.url)]:
            print(f"    {service.name} ready", flush=True)
            pending.remove(service)
        if pending and time.monotonic() >= deadline:
            log = _log(pending[0])
            raise RuntimeError(f"{pending[0].name} not ready after {timeout:.0f}s; {log}:\n{log_tail(log)}")
        time.sleep(0.2)


def log_tail(log: Path, lines: int = 30) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _log(service: Service) -> Path:
    return RUN / f"{service.name}.log"


def _program(service: Service, env: dict[str, str]) -> Program:
    return Program(
        service.name, [sys.executable, "-m", service.module, "--port", str(service.port)], env,
        log=_log(service), pidfile=RUN / f"{service.name}.pid",
    )


def _wait_demo_applied(key: str, supervisor: Supervisor, timeout: float = 30) -> None:
    """The demo is visible when Long An (80) shows Bến Lức's figures rolled up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.poll()
        r = httpx.get(
            f"{QUERY.url}/v1/units/80/values",
            params={"period": "2024-08", "edition": "legacy", "indicator": "cccd_issued"},
            headers={"Authorization": f"Bearer {key}"}, timeout=5,
        )
        if r.status_code == 200 and any(v.get("value") for v in r.json().get("values", [])):
            return
        time.sleep(0.3)
    print("    (the demo figures are not visible yet; the aggregator may still be joining its group)")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run(reset: bool = False) -> int:
    RUN.mkdir(exist_ok=True)
    pg: LocalPostgres | None = None
    broker: LocalBroker | None = None
    supervisor = Supervisor()
    status = 0
    # SIGTERM and a closed terminal stop everything as Ctrl-C does, wherever the start-up has got to.
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    try:
        url = os.environ.get("DATABASE_URL")
        if url:
            step(f"PostgreSQL: using DATABASE_URL ({url.split('@')[-1]})")
        else:
            step(f"PostgreSQL 18 (embedded): starting on 127.0.0.1:{PG_PORT}, data in .run/pgdata")
            pg = LocalPostgres(RUN / "pgdata", PG_PORT)
            pg.start()
            url = asyncio.run(create_database(pg.url, DATABASE, replace=reset))
        step("database: applying migrations")
        upgrade(url)
        step("hierarchy: loading both editions (legacy 63/696/10,035 and 2025 34/3,321); catalogue")
        asyncio.run(load_reference_data(url))

        bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
        if bootstrap:
            step(f"Kafka: using KAFKA_BOOTSTRAP ({bootstrap})")
        else:
            step(f"Kafka protocol broker (Tansu, memory storage): starting on 127.0.0.1:{BROKER_PORT}")
            broker = LocalBroker(BROKER_PORT, log_path=RUN / "tansu.log", pidfile=RUN / "broker.pid")
            broker.start()
            bootstrap = broker.bootstrap

        env = {**os.environ, "DATABASE_URL": url, "KAFKA_BOOTSTRAP": bootstrap,
               "QUERY_PORTAL_SYNTHETIC": str(SYNTHETIC).lower()}
        for service in SERVICES:
            step(f"{service.name}: starting on {service.url}")
            supervisor.start(_program(service, env))
        _wait_all_ready(supervisor)

        key = dev_key(url)
        step("demo: posting the seed reports' figures through the ingest API")
        subprocess.run(
            [sys.executable, "-m", "shared.cli", "demo", "load", "--key", key, "--url", INGEST.url], check=True
        )
        _wait_demo_applied(key, supervisor)
        _banner(key)
        if SYNTHETIC:
            _load_synthetic(key)
        while True:
            supervisor.poll()
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    except CrashLoop as crash:
        print(f"!! {crash}: giving up and stopping everything. The end of {crash.log}:\n{log_tail(crash.log)}",
              flush=True)
        status = 1
    finally:
        # A second Ctrl-C would leave PostgreSQL or the broker running behind us; the stop has its own timeouts.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        step("stopping")
        supervisor.stop()
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()
        print("stopped; data kept in .run/ for the next `make run`", flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _load_synthetic(key: str) -> None:
    """In the background: the services stay supervised (and Ctrl-C works) while the months go in."""
    loader = DemoLoader(key, INGEST.url, QUERY.url, RUN / "demo")

    def load() -> None:
        try:
            loader.load(today_in_vietnam())
        except (httpx.HTTPError, RuntimeError, OSError) as exc:
            print(f"!! demo: the synthetic dataset was not (fully) loaded: {exc}; the next `make run` goes on",
                  flush=True)

    threading.Thread(target=load, name="d06-demo", daemon=True).start()


def _banner(key: str) -> None:
    print(f"""
d06 is running.
  portal     {QUERY.url}/      (the reference portal: paste the key below)
  ingest     {INGEST.url}      docs: {INGEST.url}/docs
  aggregate  {AGGREGATE.url}      metrics: {AGGREGATE.url}/metrics
  query      {QUERY.url}      docs: {QUERY.url}/docs

  development API key (scope VN, roles submit,read,admin,review; also in .run/dev-api-key):
    {key}

  post an event (Bến Lức district, Long An, chip ID cards issued to date, July 2024):
    curl -s -X POST {INGEST.url}/v1/events -H "Authorization: Bearer $(cat .run/dev-api-key)" \\
      -H 'Content-Type: application/json' \\
      -d '{{"events":[{{"unit":"803","indicator":"cccd_issued","period":"2024-07","value":141000}}]}}'

  read Long An province's rollup for that month:
    curl -s "{QUERY.url}/v1/units/80/values?period=2024-07&indicator=cccd_issued" \\
      -H "Authorization: Bearer $(cat .run/dev-api-key)"

Ctrl-C stops everything.""", flush=True)
