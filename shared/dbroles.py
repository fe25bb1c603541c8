"""Each service acts in PostgreSQL as a role that can touch only its own tables.

The migration `0002_service_roles` creates three NOLOGIN roles and grants them per table:

| role            | reads and writes                              | only reads                               |
| --------------- | --------------------------------------------- | ---------------------------------------- |
| `d06_ingest`    | outbox, api_keys, topic_epochs, relay_offsets | units, indicators, rollups, dead_letters |
| `d06_aggregate` | rollups, consumer_offsets, dead_letters       | units, indicators, topic_epochs          |
| `d06_query`     | —                                             | units, indicators, rollups, api_keys     |

A service adopts its role with the `role` run-time parameter sent in the connection's start-up packet
(asyncpg `server_settings`). Start-up parameters become the session's default, so the pool's resets and
even a `RESET ROLE` keep the restricted role. This works with whatever login the URL names, provided
that login is a member of the role (a superuser always is): trust auth locally, one password-protected
login in Kubernetes. It protects against the service's own mistakes (a bug, a forgotten WHERE, an
injection that somehow got past bound parameters): `SET ROLE NONE` would undo it, so where a
compromised process is the threat, log in as a per-service LOGIN role instead (docs/security.md).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

INGEST_ROLE = "d06_ingest"
AGGREGATE_ROLE = "d06_aggregate"
QUERY_ROLE = "d06_query"
SERVICE_ROLES = (INGEST_ROLE, AGGREGATE_ROLE, QUERY_ROLE)


def act_as(engine: AsyncEngine, role: str) -> AsyncEngine:
    """Make every new connection of `engine` act as `role` (no-op for an empty role); returns the engine."""
    if not role:
        return engine

    @event.listens_for(engine.sync_engine, "do_connect")
    def _with_role(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        # Before the connection exists: the role is part of how it is opened, not a statement run on it.
        cparams["server_settings"] = {**cparams.get("server_settings", {}), "role": role}

    return engine
