"""Faults against real processes: SIGKILLed aggregators, a broker that loses its log, a PostgreSQL restart,
an ingest killed between accepting and publishing. After each, every accepted event is applied exactly
once: the province values equal the truth this test kept, and `d06 rollups verify` finds no difference.

These tests own their PostgreSQL and broker (started here, whatever DATABASE_URL/KAFKA_BOOTSTRAP say),
because they restart them.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shared.db import create_database
from shared.devstack import LocalBroker, LocalPostgres, free_port
from shared.hierarchy import Unit, read_dataset
from tests.fixtures.infra import RUN_DIR, TEMPLATE, Infra, Stack, build_template
from tests.fixtures.processes import ServiceProcesses, start_services
from tests.fixtures.workload import Workload, wait_until_rollups_match

pytestmark = pytest.mark.e2e

PROVINCES = ("01", "79", "80")  # Hà Nội, Hồ Chí Minh City, Long An: several partitions of the topic


@pytest.fixture(scope="module")
def own_infra() -> Iterator[Infra]:
    """A PostgreSQL and a broker of this module's own: the tests below kill and restart them."""
    pg = LocalPostgres(RUN_DIR / f"pgdata-faults-{os.getpid()}", free_port())
    pg.start()
    broker = LocalBroker(free_port(), log_path=RUN_DIR / f"tansu-faults-{os.getpid()}.log")
    broker.start()
    infra = Infra(pg.url, broker.bootstrap, pg, broker)
    build_template(infra)
    try:
        yield infra
    finally:
        broker.stop()
        pg.stop()
        shutil.rmtree(pg.data_dir, ignore_errors=True)


@pytest.fixture
def fault_stack(own_infra: Infra) -> Stack:
    name = f"d06_f_{uuid.uuid4().hex[:10]}"
    asyncio.run(create_database(own_infra.server_url, name, template=TEMPLATE))
    topic = f"f{uuid.uuid4().hex[:8]}"
    return Stack(
        infra=own_infra, database_url=own_infra.url_for(name), kafka_bootstrap=own_infra.kafka_bootstrap,
        events_topic=f"{topic}.events", dead_letter_topic=f"{topic}.dead",
        # Fast group membership: a killed consumer's partitions are handed over within seconds.
        extra_env={"AGGREGATE_SESSION_TIMEOUT_MS": "3000", "AGGREGATE_HEARTBEAT_INTERVAL_MS": "1000"},
    )


def _communes() -> list[Unit]:
    return [u for u in read_dataset()
            if u.edition == "legacy" and u.level == "commune" and u.province_code in PROVINCES]


def _verify(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "rollups", "verify"], env=stack.env(),
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _settle(stack: Stack, procs: ServiceProcesses, workload: Workload) -> None:
    mismatches = wait_until_rollups_match(procs.query, procs.key, workload.truth)
    assert not mismatches, f"{len(mismatches)} province values differ from the truth: {list(mismatches.items())[:5]}"
    _verify(stack)


@contextmanager
def _streaming(procs: ServiceProcesses, *, seed: int, batches: int, size: int = 100) -> Iterator[Workload]:
    """A steady stream (a batch every 0.1 s) in the background that lasts long enough for the faults the
    block injects to hit it; on leaving, the whole stream has been accepted, retries and all."""
    workload = Workload(procs.ingest, procs.key, _communes(), seed=seed)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(batches):
                workload.post(workload.batch(size))
                time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield workload
    thread.join(timeout=300)
    assert not errors, errors


def test_aggregator_sigkilled_ten_times_mid_stream(fault_stack: Stack) -> None:
    rng = random.Random(1)
    with start_services(fault_stack) as procs:
        with _streaming(procs, seed=1, batches=300) as workload:
            kills = 0
            while kills < 10:
                time.sleep(rng.uniform(0.3, 1.5))
                procs.kill("aggregate")
                kills += 1
                procs.start("aggregate", wait=rng.random() < 0.5)  # sometimes killed again before it is ready
        procs.wait_ready("aggregate")
        _settle(fault_stack, procs, workload)
        assert kills == 10 and workload.truth.accepted == 30_000


def test_broker_restart_loses_its_log_mid_stream(fault_stack: Stack) -> None:
    broker = fault_stack.infra.broker
    assert broker is not None
    with start_services(fault_stack) as procs:
        with _streaming(procs, seed=2, batches=100) as workload:
            for _ in range(2):
                time.sleep(2.0)
                broker.restart(timeout=0.5)  # memory storage: every topic, message and offset is gone
        _settle(fault_stack, procs, workload)


def test_postgres_restart_mid_stream(fault_stack: Stack) -> None:
    pg = fault_stack.infra.pg
    assert pg is not None
    with start_services(fault_stack) as procs:
        with _streaming(procs, seed=3, batches=100) as workload:
            time.sleep(1.5)
            pg.kill()  # SIGKILL the postmaster: crash recovery on the next start, like a node failure
            time.sleep(1.0)
            pg.start()
            time.sleep(1.5)
            pg.restart()  # and a clean restart
        assert workload.retries > 0  # the outage was seen by the client, and survived
        _settle(fault_stack, procs, workload)


def test_ingest_killed_between_accepting_and_publishing(fault_stack: Stack) -> None:
    fault_stack.extra_env["INGEST_RELAY_ENABLED"] = "false"
    with start_services(fault_stack) as procs:
        workload = Workload(procs.ingest, procs.key, _communes(), seed=4)
        for _ in range(20):
            workload.post(workload.batch(100))  # accepted (202) and durable, never published
        procs.kill("ingest")
        fault_stack.extra_env["INGEST_RELAY_ENABLED"] = "true"
        procs.start("ingest")
        _settle(fault_stack, procs, workload)
