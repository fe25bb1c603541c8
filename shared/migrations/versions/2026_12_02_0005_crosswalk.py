"""The 2025 crosswalk: which legacy units each 2025 unit was formed from, with weights (DESIGN §7).

One table for every level rather than a second one for provinces: a province row and a commune row are the
same fact (this legacy unit went, wholly or in part, into that 2025 unit), lineage and re-expression read
them alike, and GSO codes have one length per level (province 2 digits, district 3, commune 5), so
`legacy_code` alone says which unit is meant within the legacy edition. `legacy_level` says it explicitly:
`province` rows map into a 2025 province, `commune` rows — and `district` rows, the five island districts
that have no communes in the legacy edition — into a 2025 commune or special zone.

`weight` has 10 decimal places and the pieces of one legacy unit sum to exactly 1 (the loader and
`d06 crosswalk weights` give the rounding remainder to the largest piece); a deferred constraint trigger
refuses, at commit, any transaction that leaves a legacy unit's weights summing to anything else. Provinces
go whole: weight 1, basis `whole`.

A trigger announces every change (`NOTIFY d06_crosswalk_changed`, shared.events.CROSSWALK_CHANGED) in the
changing transaction, so that the query service can forget the answers that rest on the crosswalk however
it was changed: `d06 hierarchy load`, `d06 crosswalk weights` or an operator's SQL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CHANNEL = "d06_crosswalk_changed"  # shared.events.CROSSWALK_CHANGED; a migration never imports the code it outlives

# Read like `units`: every service may read it; only the loader and the `d06` command (the owner) write.
GRANTS = {"d06_ingest": "SELECT", "d06_aggregate": "SELECT", "d06_query": "SELECT"}


def upgrade() -> None:
    op.execute("""
    CREATE TABLE crosswalk (
        legacy_code  text           NOT NULL,
        code_2025    text           NOT NULL,
        legacy_level text           NOT NULL CHECK (legacy_level IN ('province', 'district', 'commune')),
        weight       numeric(11,10) NOT NULL CHECK (weight >= 0 AND weight <= 1),
        basis        text           NOT NULL CHECK (basis <> ''),
        CONSTRAINT pk_crosswalk PRIMARY KEY (legacy_code, code_2025),
        CONSTRAINT ck_crosswalk_provinces_whole CHECK (legacy_level <> 'province' OR (weight = 1 AND basis = 'whole'))
    )""")
    op.execute("CREATE INDEX ix_crosswalk_2025 ON crosswalk (code_2025)")

    op.execute("""
    CREATE FUNCTION d06_crosswalk_sums_to_one() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        code  text := CASE WHEN TG_OP = 'DELETE' THEN OLD.legacy_code ELSE NEW.legacy_code END;
        total numeric;
    BEGIN
        SELECT sum(weight) INTO total FROM crosswalk WHERE legacy_code = code;
        IF total <> 1 THEN  -- NULL (every row of the unit deleted) is no contradiction
            RAISE EXCEPTION 'the crosswalk weights of legacy unit % sum to %, not 1', code, total
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """)
    op.execute("""
    CREATE CONSTRAINT TRIGGER crosswalk_sums_to_one AFTER INSERT OR UPDATE OR DELETE ON crosswalk
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION d06_crosswalk_sums_to_one()
    """)

    op.execute(f"""
    CREATE FUNCTION d06_announce_crosswalk_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{CHANNEL}', TG_OP);
        RETURN NULL;
    END $$
    """)
    op.execute("""
    CREATE TRIGGER crosswalk_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crosswalk
    FOR EACH STATEMENT EXECUTE FUNCTION d06_announce_crosswalk_changed()
    """)
    for role, privileges in GRANTS.items():
        op.execute(f"GRANT {privileges} ON crosswalk TO {role}")


def downgrade() -> None:
    op.execute("DROP TABLE crosswalk")  # its grants, index and triggers with it
    op.execute("DROP FUNCTION d06_announce_crosswalk_changed()")
    op.execute("DROP FUNCTION d06_crosswalk_sums_to_one()")
