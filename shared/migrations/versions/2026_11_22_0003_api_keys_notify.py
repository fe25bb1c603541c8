"""Announce changes to API keys: `NOTIFY d06_keys_changed` in the transaction that makes them.

The query service keeps the keys it has looked up (services/query/keys.py) and forgets them all when it
hears this. A trigger rather than a call in the code, so that every way a key can change — the admin API,
`d06 keys revoke`, an operator's SQL — is announced. Statement-level and only for the columns that decide
who may read what: the ingest service's once-a-minute `last_used_at` update announces nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHANNEL = "d06_keys_changed"  # shared.events.KEYS_CHANGED; a migration never imports the code it outlives


def upgrade() -> None:
    op.execute(f"""
    CREATE FUNCTION d06_announce_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{CHANNEL}', TG_OP);
        RETURN NULL;
    END $$
    """)
    op.execute("""
    CREATE TRIGGER api_keys_changed
    AFTER UPDATE OF secret_hash, scope_edition, scope_code, roles, expires_at, revoked_at OR DELETE OR TRUNCATE
    ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION d06_announce_keys_changed()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER api_keys_changed ON api_keys")
    op.execute("DROP FUNCTION d06_announce_keys_changed()")
