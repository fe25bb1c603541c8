"""Initial schema: hierarchy, catalogue, API keys, the ingest outbox, the rollups and the offsets.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Units are identified by (edition, code): GSO codes are reused across the 2025 reform.
    op.execute("""
    CREATE TABLE units (
        edition       text     NOT NULL,
        code          text     NOT NULL,
        parent_code   text,
        level         text     NOT NULL CHECK (level IN ('nation', 'province', 'district', 'commune')),
        depth         smallint NOT NULL,
        kind          text     NOT NULL,
        name          text     NOT NULL,
        name_ascii    text     NOT NULL,
        province_code text,
        ancestors     text[]   NOT NULL,
        n_children    integer  NOT NULL DEFAULT 0,
        CONSTRAINT pk_units PRIMARY KEY (edition, code),
        CONSTRAINT fk_units_parent FOREIGN KEY (edition, parent_code) REFERENCES units (edition, code)
    )""")
    op.execute("CREATE INDEX ix_units_parent ON units (edition, parent_code)")

    op.execute("""
    CREATE TABLE indicators (
        code        text PRIMARY KEY,
        name_vi     text    NOT NULL,
        name_en     text    NOT NULL,
        grp         text    NOT NULL,
        unit        text    NOT NULL,
        measure     text    NOT NULL CHECK (measure IN ('flow', 'stock', 'ratio', 'boolean')),
        components  text,
        period_type text    NOT NULL,
        rollup      boolean NOT NULL,
        target      numeric,
        retired     boolean NOT NULL DEFAULT false
    )""")

    op.execute("""
    CREATE TABLE api_keys (
        id            text PRIMARY KEY,
        name          text        NOT NULL,
        secret_hash   text        NOT NULL,
        scope_edition text,
        scope_code    text        NOT NULL,
        roles         text[]      NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        expires_at    timestamptz,
        revoked_at    timestamptz,
        last_used_at  timestamptz
    )""")

    # The outbox is the durable record of every accepted event: Kafka is a transport that may lose it.
    op.execute("""
    CREATE TABLE outbox (
        seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id     text        NOT NULL,
        content_hash text        NOT NULL,
        edition      text        NOT NULL,
        unit         text        NOT NULL,
        province     text        NOT NULL,
        indicator    text        NOT NULL,
        period       text        NOT NULL,
        num          numeric,
        den          numeric,
        comment      text,
        key_id       text,
        client_addr  text,
        accepted_at  timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz,
        CONSTRAINT uq_outbox_event_id UNIQUE (event_id)
    )""")
    op.execute("CREATE INDEX ix_outbox_unpublished ON outbox (seq) WHERE published_at IS NULL")

    # One row per (edition, unit, indicator, native period) at every level: the read model.
    op.execute("""
    CREATE TABLE rollups (
        edition     text        NOT NULL,
        unit        text        NOT NULL,
        indicator   text        NOT NULL,
        period      text        NOT NULL,
        rep_num     numeric,
        rep_den     numeric,
        rep_seq     bigint,
        comp_num    numeric,
        comp_den    numeric,
        reporting   integer     NOT NULL DEFAULT 0,
        accepted_at timestamptz,
        updated_at  timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_rollups PRIMARY KEY (edition, unit, indicator, period)
    )""")

    op.execute("""
    CREATE TABLE consumer_offsets (
        consumer_group text    NOT NULL,
        topic          text    NOT NULL,
        partition      integer NOT NULL,
        next_offset    bigint  NOT NULL,
        epoch          integer NOT NULL,
        CONSTRAINT pk_consumer_offsets PRIMARY KEY (consumer_group, topic, partition)
    )""")

    # The relay's view of the log: what it produced, and an epoch bumped each time the broker lost it.
    op.execute("""
    CREATE TABLE topic_epochs (
        topic       text PRIMARY KEY,
        epoch       integer     NOT NULL DEFAULT 0,
        changed_at  timestamptz NOT NULL DEFAULT now()
    )""")
    op.execute("""
    CREATE TABLE relay_offsets (
        topic       text    NOT NULL,
        partition   integer NOT NULL,
        next_offset bigint  NOT NULL,
        CONSTRAINT pk_relay_offsets PRIMARY KEY (topic, partition)
    )""")

    op.execute("""
    CREATE TABLE dead_letters (
        seq        bigint PRIMARY KEY,
        event_id   text        NOT NULL,
        reason     text        NOT NULL,
        payload    jsonb       NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""")


def downgrade() -> None:
    for table in (
        "dead_letters", "relay_offsets", "topic_epochs", "consumer_offsets", "rollups", "outbox",
        "api_keys", "indicators", "units",
    ):
        op.execute(f"DROP TABLE {table}")
