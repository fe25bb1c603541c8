"""Quality flags: rule violations and outliers, one row per (edition, unit, kind, code, period) (DESIGN §8).

`code` is the rule's code for a rule, the indicator's for an outlier. A flag is `open` while it holds and
`resolved` (its time kept, never deleted) once it stops; the aggregator writes both in the batch's
transaction. `left_value`/`right_value` are a rule's two sides, or an outlier's scored value and the
median of its window; `score` is null for a departure from a constant history (`constant_history`).
A reviewer's acknowledgement (`acknowledged_*`, written by ingest) is cleared by the aggregator when a value
the flag reads changes after it, which re-opens the flag for review. `indicators` are the codes the flag
is about, so a value's flags are found by its indicator.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

GRANTS = {
    "d06_aggregate": "SELECT, INSERT, UPDATE",
    "d06_ingest": "SELECT, UPDATE",  # the acknowledgement (acknowledged_* columns) is ingest's write
    "d06_query": "SELECT",
}


def upgrade() -> None:
    op.execute("""
    CREATE TABLE quality_flags (
        id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        edition              text        NOT NULL,
        unit                 text        NOT NULL,
        kind                 text        NOT NULL CONSTRAINT ck_quality_flags_kind CHECK (kind IN ('rule', 'outlier')),
        code                 text        NOT NULL,
        period               text        NOT NULL,
        indicators           text[]      NOT NULL,
        importance           text        NOT NULL
                             CONSTRAINT ck_quality_flags_importance CHECK (importance IN ('high', 'medium', 'low')),
        status               text        NOT NULL
                             CONSTRAINT ck_quality_flags_status CHECK (status IN ('open', 'resolved')),
        left_value           numeric,
        right_value          numeric,
        score                numeric,
        constant_history     boolean     NOT NULL DEFAULT false,
        opened_at            timestamptz NOT NULL DEFAULT now(),
        resolved_at          timestamptz,
        updated_at           timestamptz NOT NULL DEFAULT now(),
        acknowledged_by      text,
        acknowledged_at      timestamptz,
        acknowledged_comment text,
        CONSTRAINT uq_quality_flags_key UNIQUE (edition, unit, kind, code, period)
    )
    """)
    # The value objects' flags and the subtree listing read open flags by unit and period.
    op.execute("""
    CREATE INDEX ix_quality_flags_open ON quality_flags (edition, unit, period) WHERE status = 'open'
    """)
    for role, privileges in GRANTS.items():
        op.execute(f"GRANT {privileges} ON quality_flags TO {role}")


def downgrade() -> None:
    op.execute("DROP TABLE quality_flags")
