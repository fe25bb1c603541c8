"""The relay publishes by watermark: one row per topic instead of two writes per outbox row.

Marking each row `published_at` after claiming it `FOR UPDATE` cost every event a row lock, a new row
version and an entry in every index (≈15–20 µs of PostgreSQL per row, docs/performance.md). The relay now
keeps, per topic, the seq at and below which everything is published (`relay_watermarks.up_to`), and
reads the rows above it by primary key; an event is published when its seq is at or below it.
services/ingest/outbox.py explains why that can never skip an event whose transaction commits late.

- The watermark starts below the oldest row not yet published; `published_at`'s partial index goes (every
  new row would enter it, since nothing sets `published_at` any more).
- `CACHE 1` on the seq's sequence: the relay reads the sequence's last value as "every seq up to here has
  been handed out"; with a cache, a session could hand out a lower seq after that read.
- ingest may read and advance the sequence (the writers' registration takes a seq of its own).

Expand only (docs/operations.md): `published_at` and ingest's UPDATE on the outbox stay, so that the previous
release still runs on this schema (its relay, without the index, scans the outbox by seq and republishes
what this one published: harmless, the aggregator applies by seq). A later migration drops them.
During the rollout, a previous-release pod's writer does not register: an event it commits after a new relay
passed its seq is published only by its own relay, which may be stopped first. After the rollout, run
`d06 replay --from-seq N` with N the first seq accepted during it (docs/operations.md, "Upgrading to 0011").

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

GRANTS = {"d06_ingest": "SELECT, INSERT, UPDATE"}  # on relay_watermarks

# Runs as a DO block: the sequence's name is PostgreSQL's to choose.
_SEQUENCE_GRANT = """
DO $$ BEGIN
    EXECUTE format('{verb} USAGE, SELECT ON SEQUENCE %s {direction} d06_ingest',
                   pg_get_serial_sequence('outbox', 'seq'));
END $$
"""


def upgrade() -> None:
    op.execute("""
    CREATE TABLE relay_watermarks (
        topic       text        PRIMARY KEY,
        up_to       bigint      NOT NULL,
        advanced_at timestamptz NOT NULL DEFAULT now()
    )""")
    # Every topic the relay has produced to is in relay_offsets, or in topic_epochs if a lost log made it
    # forget its offsets; a topic never produced to starts at 0, as the relay would create it.
    op.execute("""
    INSERT INTO relay_watermarks (topic, up_to)
    SELECT topic, coalesce((SELECT min(seq) - 1 FROM outbox WHERE published_at IS NULL),
                           (SELECT max(seq) FROM outbox), 0)
    FROM (SELECT topic FROM relay_offsets UNION SELECT topic FROM topic_epochs) AS known
    """)
    op.execute("DROP INDEX ix_outbox_unpublished")
    op.execute("ALTER TABLE outbox ALTER COLUMN seq SET CACHE 1")
    for role, privileges in GRANTS.items():
        op.execute(f"GRANT {privileges} ON relay_watermarks TO {role}")
    op.execute(_SEQUENCE_GRANT.format(verb="GRANT", direction="TO"))


def downgrade() -> None:
    op.execute(_SEQUENCE_GRANT.format(verb="REVOKE", direction="FROM"))
    op.execute("""
    UPDATE outbox SET published_at = w.advanced_at
    FROM (SELECT min(up_to) AS up_to, max(advanced_at) AS advanced_at FROM relay_watermarks) AS w
    WHERE outbox.seq <= w.up_to AND outbox.published_at IS NULL
    """)
    op.execute("CREATE INDEX ix_outbox_unpublished ON outbox (seq) WHERE published_at IS NULL")
    op.execute("DROP TABLE relay_watermarks")
