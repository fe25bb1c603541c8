"""Settings: one pydantic-settings base shared by the services, a subclass (with its prefix) per service.

Shared names (`DATABASE_URL`, `KAFKA_BOOTSTRAP`, ...) are read without a prefix so that one environment
configures the whole suite; a service-specific variable (`QUERY_DATABASE_URL`) wins over the shared one,
which is how the query service gets its read-only role.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/d06"
DEV_KAFKA_BOOTSTRAP = "127.0.0.1:9092"


def env(*names: str) -> AliasChoices:
    """Read from the first of these environment variables that is set (field names work in code)."""
    return AliasChoices(*names)


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
    relay_batch: int = Field(5000, validation_alias=env("INGEST_RELAY_BATCH"))
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


class QuerySettings(CommonSettings):
    database_url: str = Field(DEV_DATABASE_URL, validation_alias=env("QUERY_DATABASE_URL", "DATABASE_URL"))
    anonymous_read: bool = Field(
        False, validation_alias=env("QUERY_ANONYMOUS_READ")
    )
    cache_max_age: int = Field(5, validation_alias=env("QUERY_CACHE_MAX_AGE"))
