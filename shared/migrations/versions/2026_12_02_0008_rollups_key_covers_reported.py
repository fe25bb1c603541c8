"""The rollups' primary key carries the reported numerator, so an outlier window is read from the index alone.

Scoring a month's reports reads each series' previous 13–14 months (DESIGN §8). Those rows were inserted a
month apart, so each sat on its own heap page: 16 buffer visits a series, the largest part of what rules and
outliers cost the aggregator. With `rep_num` in the key's leaf entries the same read is an index-only scan
(one or two leaf pages a series, the heap visited only for pages written since the last vacuum). The key's
columns and uniqueness are unchanged, so `ON CONFLICT (edition, unit, indicator, period)` is too; the price
is a wider index entry and no HOT update when a reported numerator changes (rows are rarely updated in place
on full pages anyway). Rebuilding the key locks `rollups` for as long as the index takes to build.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE rollups DROP CONSTRAINT pk_rollups,
        ADD CONSTRAINT pk_rollups PRIMARY KEY (edition, unit, indicator, period) INCLUDE (rep_num)
    """)


def downgrade() -> None:
    op.execute("""
    ALTER TABLE rollups DROP CONSTRAINT pk_rollups,
        ADD CONSTRAINT pk_rollups PRIMARY KEY (edition, unit, indicator, period)
    """)
