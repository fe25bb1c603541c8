"""Service roles: each service may touch only its own tables; who created an API key.

Roles are cluster-wide while grants live in one database: several databases migrated on one server (a
test template and its copies, staging beside production) share the roles, so they are created only if
missing (a concurrent migration may create one first) and dropped on downgrade only when no other
database still grants them anything.

Least privilege per table, from the statements each service runs (shared/dbroles.py has the table):
ingest never deletes an accepted event or a key (revocation is an UPDATE), the query service only reads.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ROLES = ("d06_ingest", "d06_aggregate", "d06_query")

GRANTS: dict[str, dict[str, str]] = {
    "d06_ingest": {
        "outbox": "SELECT, INSERT, UPDATE",
        "api_keys": "SELECT, INSERT, UPDATE",
        "topic_epochs": "SELECT, INSERT, UPDATE",
        "relay_offsets": "SELECT, INSERT, UPDATE, DELETE",
        "units": "SELECT",
        "indicators": "SELECT",
        "rollups": "SELECT",
        "dead_letters": "SELECT",
    },
    "d06_aggregate": {
        "rollups": "SELECT, INSERT, UPDATE, DELETE",
        "consumer_offsets": "SELECT, INSERT, UPDATE, DELETE",
        "dead_letters": "SELECT, INSERT, UPDATE, DELETE",
        "units": "SELECT",
        "indicators": "SELECT",
        "topic_epochs": "SELECT",
    },
    "d06_query": {
        "units": "SELECT",
        "indicators": "SELECT",
        "rollups": "SELECT",
        "api_keys": "SELECT",
    },
}

TABLES = (
    "units", "indicators", "api_keys", "outbox", "rollups", "consumer_offsets", "topic_epochs", "relay_offsets",
    "dead_letters",
)


def upgrade() -> None:
    # The admin API records which key created a key (NULL: the `d06 keys` command).
    op.execute("ALTER TABLE api_keys ADD COLUMN created_by text")

    roles = ", ".join(f"'{r}'" for r in ROLES)
    op.execute(f"""
    DO $$
    DECLARE
        r text;
    BEGIN
        FOREACH r IN ARRAY ARRAY[{roles}] LOOP
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
                BEGIN
                    -- NOLOGIN: nobody signs in as these; logins are granted membership (docs/security.md).
                    EXECUTE format('CREATE ROLE %I NOLOGIN', r);
                EXCEPTION
                    WHEN duplicate_object OR unique_violation THEN
                        NULL;  -- another database's migration created it a moment ago
                    WHEN insufficient_privilege THEN
                        RAISE EXCEPTION 'role % does not exist and % may not create it', r, current_user
                            USING HINT = 'create the roles d06_ingest, d06_aggregate and d06_query (NOLOGIN) '
                                         'or migrate as a user with CREATEROLE; see docs/security.md';
                END;
            END IF;
            -- A login that is not a superuser needs membership to adopt the role at connection start.
            -- From PostgreSQL 16 the creator of a role holds only its ADMIN option: SET is granted here.
            IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                BEGIN
                    IF current_setting('server_version_num')::int >= 160000 THEN
                        EXECUTE format('GRANT %I TO %I WITH INHERIT FALSE, SET TRUE', r, current_user);
                    ELSIF NOT pg_has_role(current_user, r, 'MEMBER') THEN
                        EXECUTE format('GRANT %I TO %I', r, current_user);
                    END IF;
                EXCEPTION WHEN insufficient_privilege THEN
                    RAISE NOTICE 'cannot make % a member of %: its services must log in as a member', current_user, r;
                END;
            END IF;
            BEGIN
                EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), r);
            EXCEPTION WHEN insufficient_privilege THEN
                NULL;  -- not the schema's owner: PUBLIC's default USAGE has to do
            END;
        END LOOP;
    END $$
    """)
    for role, tables in GRANTS.items():
        for table, privileges in tables.items():
            op.execute(f"GRANT {privileges} ON {table} TO {role}")


def downgrade() -> None:
    roles = ", ".join(f"'{r}'" for r in ROLES)
    tables = ", ".join(TABLES)
    op.execute(f"""
    DO $$
    DECLARE
        r text;
    BEGIN
        FOREACH r IN ARRAY ARRAY[{roles}] LOOP
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
                EXECUTE format('REVOKE ALL ON {tables} FROM %I', r);
                EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %I', current_schema(), r);
                BEGIN
                    EXECUTE format('DROP ROLE %I', r);
                EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
                    RAISE NOTICE 'role % kept: another database still grants it privileges', r;
                END;
            END IF;
        END LOOP;
    END $$
    """)
    op.execute("ALTER TABLE api_keys DROP COLUMN created_by")
