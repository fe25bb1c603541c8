"""Imports (DESIGN §9): one row per uploaded file, and the index the import compares rows with.

`imports` remembers each file by its SHA-256 so that uploading the same bytes again answers with the
first import instead of importing twice; a refused file (status `failed`, nothing stored) is not
remembered for that, so a corrected request with the same file is imported. A partial unique index
makes two identical uploads at the same moment one import. The counts and the first 1,000 errors are
the summary `GET /v1/imports/{id}` shows; `rows_done` is its progress while the import runs, and
`updated_at` its heartbeat: an import that has not moved for minutes died with its process.

`ix_outbox_key` finds the latest accepted event of a key (edition, unit, indicator, period): an import
row equal to it is `unchanged` and adds no event, so re-importing an export changes nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Ingest writes its imports and reads nothing else of them; the query service has no business here.
GRANTS = {"d06_ingest": "SELECT, INSERT, UPDATE"}


def upgrade() -> None:
    op.execute("""
    CREATE TABLE imports (
        id          text        PRIMARY KEY,
        sha256      text        NOT NULL,
        key_id      text,
        format      text        NOT NULL,
        status      text        NOT NULL CHECK (status IN ('running', 'done', 'failed')),
        atomic      boolean     NOT NULL,
        rows        integer     NOT NULL DEFAULT 0,
        rows_done   integer     NOT NULL DEFAULT 0,
        accepted    integer     NOT NULL DEFAULT 0,
        created     integer     NOT NULL DEFAULT 0,
        updated     integer     NOT NULL DEFAULT 0,
        unchanged   integer     NOT NULL DEFAULT 0,
        retracted   integer     NOT NULL DEFAULT 0,
        rejected    integer     NOT NULL DEFAULT 0,
        errors      jsonb       NOT NULL DEFAULT '[]',
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz
    )""")
    op.execute("CREATE UNIQUE INDEX uq_imports_file ON imports (sha256, format, coalesce(key_id, '')) "
               "WHERE status <> 'failed'")
    op.execute("CREATE INDEX ix_outbox_key ON outbox (edition, unit, indicator, period, seq)")
    for role, privileges in GRANTS.items():
        op.execute(f"GRANT {privileges} ON imports TO {role}")


def downgrade() -> None:
    op.execute("DROP INDEX ix_outbox_key")
    op.execute("DROP TABLE imports")
