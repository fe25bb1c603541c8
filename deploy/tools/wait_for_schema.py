"""Wait until the database schema is at the migration head this image ships; the init container of every service.

The migration Job (`d06 migrate`, with the schema owner's role) is the only thing that changes the schema; the
services' roles cannot. Each service pod starts with this check, run with its own role (`DATABASE_URL` and
`PGPASSWORD`, the query service's on a read-only replica), so new code never runs on an old schema whatever
order Kubernetes starts things in:

- the database is at this image's head: exit 0;
- the database is at a revision this image does not know: a newer image migrated it (a rollback is under
  way); expand/contract migrations keep the previous release working on it, so exit 0 with a warning;
- otherwise (no database yet, no `alembic_version`, an older revision, no grant yet): wait and look again,
  until `D06_SCHEMA_WAIT_SECONDS` (default 600) have passed, then exit 1 so the pod shows the failure.

Run as `python /opt/d06/tools/wait_for_schema.py` (the Dockerfile copies it there). The service roles may read
only their own tables (migration 0002), so the migration Job, as the owner, first lets them read the one table
this check needs: `python /opt/d06/tools/wait_for_schema.py --grant-to d06_ingest,d06_aggregate,d06_query`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from enum import Enum

import asyncpg
from alembic.script import ScriptDirectory

from shared.db import plain_url
from shared.migrate import alembic_config

log = logging.getLogger("d06.wait_for_schema")

POLL_SECONDS = 3.0
CONNECT_TIMEOUT = 5.0


class Schema(Enum):
    CURRENT = "current"
    NEWER = "newer"  # a revision this image does not know
    BEHIND = "behind"


def classify(database_revisions: set[str], heads: set[str], known: set[str]) -> Schema:
    """Where the database stands against this image's migrations (pure: the unit tests call it)."""
    if database_revisions and database_revisions == heads:
        return Schema.CURRENT
    if database_revisions and not database_revisions <= known:
        return Schema.NEWER
    return Schema.BEHIND


def script_revisions(database_url: str) -> tuple[set[str], set[str]]:
    """(heads, every revision) of the migrations installed with this image."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    return set(script.get_heads()), {r.revision for r in script.walk_revisions()}


async def database_revisions(database_url: str) -> set[str]:
    conn = await asyncpg.connect(plain_url(database_url), timeout=CONNECT_TIMEOUT)
    try:
        rows = await conn.fetch("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()
    return {row["version_num"] for row in rows}


async def wait(database_url: str, deadline_seconds: float) -> int:
    heads, known = script_revisions(database_url)
    deadline = time.monotonic() + deadline_seconds
    last_reason = ""
    while True:
        try:
            state = classify(await database_revisions(database_url), heads, known)
            reason = f"schema is {state.value} (image head {sorted(heads)})"
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            state, reason = Schema.BEHIND, f"{type(exc).__name__}: {exc}"
        if state is Schema.CURRENT:
            log.info("database schema is at this image's head %s", sorted(heads))
            return 0
        if state is Schema.NEWER:
            log.warning("database schema is newer than this image (head %s): starting anyway", sorted(heads))
            return 0
        if reason != last_reason:
            log.info("waiting for the migration job: %s", reason)
            last_reason = reason
        if time.monotonic() >= deadline:
            log.error("schema not at head %s after %.0fs: %s", sorted(heads), deadline_seconds, reason)
            return 1
        await asyncio.sleep(POLL_SECONDS)


async def grant_read(database_url: str, roles: list[str]) -> int:
    """As the schema owner: let each role read alembic_version (idempotent; roles are quoted identifiers)."""
    conn = await asyncpg.connect(plain_url(database_url), timeout=CONNECT_TIMEOUT)
    try:
        for role in roles:
            quoted = await conn.fetchval("SELECT quote_ident($1::text)", role)
            await conn.execute(f"GRANT SELECT ON alembic_version TO {quoted}")
            log.info("%s may read alembic_version", role)
    finally:
        await conn.close()
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    url = os.environ.get("DATABASE_URL")
    if not url:
        log.error("DATABASE_URL is not set")
        return 2
    if argv[:1] == ["--grant-to"] and len(argv) == 2:
        return asyncio.run(grant_read(url, [r for r in argv[1].split(",") if r]))
    if argv:
        log.error("usage: wait_for_schema.py [--grant-to role,role,...]")
        return 2
    return asyncio.run(wait(url, float(os.environ.get("D06_SCHEMA_WAIT_SECONDS", "600"))))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
