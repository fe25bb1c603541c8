"""A GIN index on units.ancestors: a subtree read (`ancestors @> ARRAY[root]`) probes it instead of scanning an
edition's units.

The quality listing (`GET /v1/units/{code}/quality`) joins the flags with the units below the unit asked for.
On a table of 62,000 flags over the legacy edition (docs/performance.md, "Quality listing"), finding a
province's 202 units took 6.9 ms by scanning the edition and 0.5 ms through this index; the listing of a
province's open flags went from 12 to 8 ms. Units change only when the hierarchy is loaded, so the index costs
the aggregator nothing.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # fastupdate off: the units are loaded after the migration, and entries left in GIN's pending list (until a
    # VACUUM) made the planner price the index above a scan of the edition.
    op.execute("CREATE INDEX ix_units_ancestors ON units USING gin (ancestors) WITH (fastupdate = off)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_units_ancestors")
