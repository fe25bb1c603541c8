"""The outbox's key index (0006) as a hash index on the key's text: a third of PostgreSQL's work per event.

`ix_outbox_key` (edition, unit, indicator, period, seq) is written for every event twice: when it is
inserted, and again when the relay marks it published (`published_at` is in the predicate of
`ix_outbox_unpublished`, so that update is never HOT and adds an entry to every index). Measured on the
bench's database, its four-text-column B-tree entries cost about 8 µs of PostgreSQL's CPU per insert;
a hash index on the key's text costs about a third of that, and the import's lookup (the latest event
of a key, DESIGN §9) stays one probe per key: the key's few events are fetched and the latest kept
(services/ingest/outbox.py rechecks each column, so two keys of the same text could never be confused).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The same expression as services/ingest/outbox.py's lookup: the planner uses the index only for it.
KEY_TEXT = "(edition || ' ' || unit || ' ' || indicator || ' ' || period)"


def upgrade() -> None:
    op.execute("DROP INDEX ix_outbox_key")
    op.execute(f"CREATE INDEX ix_outbox_key ON outbox USING hash ({KEY_TEXT})")


def downgrade() -> None:
    op.execute("DROP INDEX ix_outbox_key")
    op.execute("CREATE INDEX ix_outbox_key ON outbox (edition, unit, indicator, period, seq)")
