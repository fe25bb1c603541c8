"""Which indicators each province tree holds any row of, so that rule checks ask only for values that can exist.

A rule that compares two indicators reads the second wherever the first changes; four of the catalogue's
indicators that rules name are reported nowhere in most deployments, and each check of them cost PostgreSQL a
probe that found nothing (13,000 of them for a 20,000-event month, a fifth of what rules and outliers cost it).
`indicator_presence` holds one row per (edition, province, indicator) that some batch has written a row of:
only the aggregator writes rollups, every batch records what it wrote in the same transaction, under the
province's writer lock, so a triple absent here has no row anywhere in the province's tree.

Expand only. A previous-release aggregator still running during the rollout writes rows without recording
them: after the rollout, `d06 quality rebuild` records what the read model holds (docs/operations.md,
"Upgrading to 0012").

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

GRANTS = {"d06_aggregate": "SELECT, INSERT"}  # on indicator_presence


def upgrade() -> None:
    op.execute("""
    CREATE TABLE indicator_presence (
        edition   text NOT NULL,
        province  text NOT NULL,
        indicator text NOT NULL,
        PRIMARY KEY (edition, province, indicator)
    )""")
    op.execute("""
    INSERT INTO indicator_presence (edition, province, indicator)
    SELECT DISTINCT r.edition, u.province_code, r.indicator
    FROM rollups r JOIN units u ON u.edition = r.edition AND u.code = r.unit
    WHERE u.province_code IS NOT NULL
    """)
    for role, privileges in GRANTS.items():
        op.execute(f"GRANT {privileges} ON indicator_presence TO {role}")


def downgrade() -> None:
    op.execute("DROP TABLE indicator_presence")
