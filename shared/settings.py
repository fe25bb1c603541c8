"""Settings: one pydantic-settings base shared by the services, a subclass (with its prefix) per service.

Shared names (`DATABASE_URL`, `KAFKA_BOOTSTRAP`, ...) are read without a prefix so that one environment
configures the whole suite; a service-specific variable (`QUERY_DATABASE_URL`) wins over the shared one,
which is how the query service gets its read-only role.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The servers `make run` starts (shared/devrun.py): with no settings, the `d06` command and a service started
# by hand talk to them.
DEV_PG_PORT, DEV_BROKER_PORT = 54329, 19092
DEV_DATABASE_URL = f"postgresql://postgres@127.0.0.1:{DEV_PG_PORT}/d06"
DEV_KAFKA_BOOTSTRAP = f"127.0.0.1:{DEV_BROKER_PORT}"


def env(*names: str) -> AliasChoices:
    """Read from the first of these environment variables that is set (field names work in code)."""
    return AliasChoices(*names)


def _role_name(role: str) -> str:
    if role and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError("a database role is a lower-case SQL identifier (a-z, 0-9, _)")
    return role


# The PostgreSQL role a service acts as (set at connection start, shared/dbroles.py); the migrations
# create each with only the privileges its service needs. One variable per service, never a shared one:
# a single role for all would defeat the point. Empty: act as the login user itself, for deployments
# that log in as a role already restricted (docs/security.md).
DbRole = Annotated[str, AfterValidator(_role_name)]


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    environment: Literal["dev", "test", "prod"] = Field(
        "dev", validation_alias=env("D06_ENV")
    )
    database_url: str = Field(DEV_DATABASE_URL, validation_alias=env("DATABASE_URL"))
    kafka_bootstrap: str = Field(
        DEV_KAFKA_BOOTSTRAP, validation_alias=env("KAFKA_BOOTSTRAP")
    )
    events_topic: str = Field("d06.events", validation_alias=env("D06_EVENTS_TOPIC"))
    dead_letter_topic: str = Field(
        "d06.events.dead", validation_alias=env("D06_DEAD_LETTER_TOPIC")
    )
    topic_partitions: int = Field(8, validation_alias=env("D06_TOPIC_PARTITIONS"))
    # Replicas of a topic the services create because it is missing (a new or emptied broker); a cluster's
    # topics come from its KafkaTopic objects, and this must match them (tests/unit/test_deploy.py).
    topic_replication: int = Field(1, ge=1, validation_alias=env("D06_TOPIC_REPLICATION"))
    db_pool_size: int = Field(10, validation_alias=env("D06_DB_POOL_SIZE"))
    log_level: str = Field("INFO", validation_alias=env("D06_LOG_LEVEL"))

    @model_validator(mode="after")
    def _no_dev_defaults_in_prod(self) -> CommonSettings:
        if self.environment == "prod" and (
            self.database_url == DEV_DATABASE_URL or self.kafka_bootstrap == DEV_KAFKA_BOOTSTRAP
        ):
            raise ValueError("DATABASE_URL and KAFKA_BOOTSTRAP must be set explicitly in prod")
        return self


class IngestSettings(CommonSettings):
    database_url: str = Field(DEV_DATABASE_URL, validation_alias=env("INGEST_DATABASE_URL", "DATABASE_URL"))
    max_body_bytes: int = Field(8 * 1024 * 1024, validation_alias=env("INGEST_MAX_BODY_BYTES"))
    # POST /v1/imports alone (DESIGN §9: 100 MB a file), streamed to a temporary file, never held in memory.
    max_import_bytes: int = Field(100 * 1024 * 1024, validation_alias=env("INGEST_MAX_IMPORT_BYTES"))
    db_role: DbRole = Field("d06_ingest", validation_alias=env("INGEST_DB_ROLE"))
    # Per-key token bucket (shared/limits.py), per replica: requests a second sustained, and at once.
    # Generous by default so benchmarks are not throttled; 0 turns it off. The prod overlay sets production
    # values (docs/security.md).
    rate_limit: float = Field(1000.0, ge=0, validation_alias=env("INGEST_RATE_LIMIT"))
    rate_burst: int = Field(2000, ge=1, validation_alias=env("INGEST_RATE_BURST"))
    # Rows a relay round claims and publishes. A round has fixed costs (round trips to the database and the
    # broker, each waiting its turn on the event loop beside the requests), so under full load larger rounds
    # publish faster (docs/performance.md).
    relay_batch: int = Field(20000, validation_alias=env("INGEST_RELAY_BATCH"))
    relay_idle_seconds: float = Field(
        0.2, validation_alias=env("INGEST_RELAY_IDLE_SECONDS")
    )
    relay_enabled: bool = Field(True, validation_alias=env("INGEST_RELAY_ENABLED"))


class AggregateSettings(CommonSettings):
    database_url: str = Field(DEV_DATABASE_URL, validation_alias=env("AGGREGATE_DATABASE_URL", "DATABASE_URL"))
    consumer_group: str = Field(
        "d06-aggregate", validation_alias=env("AGGREGATE_CONSUMER_GROUP")
    )
    max_batch: int = Field(20000, validation_alias=env("AGGREGATE_MAX_BATCH"))
    # How fast the group notices a dead member and hands its partitions over; Tansu lets a restarted consumer
    # back in only some while after the session timeout, so shorter means faster recovery after a crash.
    session_timeout_ms: int = Field(10000, ge=1000, validation_alias=env("AGGREGATE_SESSION_TIMEOUT_MS"))
    heartbeat_interval_ms: int = Field(3000, ge=300, validation_alias=env("AGGREGATE_HEARTBEAT_INTERVAL_MS"))
    db_role: DbRole = Field("d06_aggregate", validation_alias=env("AGGREGATE_DB_ROLE"))
    # Rules and outliers in the batch's transaction (DESIGN §8). Their cost is measured in docs/quality.md,
    # "Cost": false trades the flags for about a fifth more throughput.
    quality: bool = Field(True, validation_alias=env("AGGREGATE_QUALITY"))
    # How often the open flags are counted for d06_quality_flags_open (services/aggregate/quality_gauge.py).
    quality_gauge_seconds: float = Field(20.0, gt=0, validation_alias=env("AGGREGATE_QUALITY_GAUGE_SECONDS"))


class QuerySettings(CommonSettings):
    database_url: str = Field(DEV_DATABASE_URL, validation_alias=env("QUERY_DATABASE_URL", "DATABASE_URL"))
    anonymous_read: bool = Field(
        False, validation_alias=env("QUERY_ANONYMOUS_READ")
    )
    cache_max_age: int = Field(5, validation_alias=env("QUERY_CACHE_MAX_AGE"))
    # Answers kept in memory until the rollups they read change (services/query/caching.py); 0: none.
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=0, validation_alias=env("QUERY_CACHE_MAX_BYTES"))
    # How long an answer is kept when the service cannot hear of changes (LISTEN refused by a read replica,
    # or its connection lost): what a reader may wait beyond the pipeline's own latency to see a new value.
    cache_ttl: float = Field(0.25, ge=0, validation_alias=env("QUERY_CACHE_TTL_SECONDS"))
    db_role: DbRole = Field("d06_query", validation_alias=env("QUERY_DB_ROLE"))
    # Reads have no body: anything sizeable is refused before a route runs.
    max_body_bytes: int = Field(64 * 1024, validation_alias=env("QUERY_MAX_BODY_BYTES"))
    # Per key (per client address for anonymous public reads), per replica; 0 turns it off.
    rate_limit: float = Field(5000.0, ge=0, validation_alias=env("QUERY_RATE_LIMIT"))
    rate_burst: int = Field(10000, ge=1, validation_alias=env("QUERY_RATE_BURST"))
    # The portal (services/query/portal) says so in a banner: `make run` sets it when it loads synthetic data.
    portal_synthetic: bool = Field(False, validation_alias=env("QUERY_PORTAL_SYNTHETIC"))
