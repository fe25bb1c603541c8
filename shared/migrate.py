"""The schema and its reference data: alembic migrations run programmatically, then both hierarchy editions
and the catalogue (`d06 migrate`, `make run`, the tests and the benchmark all start from here)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.catalog import load_catalog, store_catalog
from shared.crosswalk import read_crosswalk
from shared.crosswalk_db import store_crosswalk
from shared.db import make_engine, plain_url, transaction
from shared.hierarchy import read_dataset, store_units

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", plain_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


async def load_reference_data(database_url: str) -> None:
    """Both hierarchy editions, their crosswalk and the catalogue, upserted: safe to run on every start."""
    engine = make_engine(database_url, pool_size=1, app="d06-reference-data")
    try:
        async with transaction(engine) as conn:
            await store_units(conn, read_dataset())
            await store_crosswalk(conn, read_crosswalk())
            await store_catalog(conn, load_catalog())
    finally:
        await engine.dispose()
