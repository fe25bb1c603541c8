"""Dead letters: the table is the record of every one, with or without a seq, and the outbox of their topic.

A message too broken to carry a seq used to be kept only on the dead-letter topic, published best-effort
after the batch committed: a failed publish lost it. Now every dead letter is a row, written in the batch's
transaction with the message's exact bytes (bytea: NULs and invalid UTF-8 included), and the aggregator's
dead-letter relay copies unpublished rows to the topic and then sets `published_at`.

- `id` becomes the key; `seq` stays unique where there is one (ingest joins on it for an event's status).
- A message is dead-lettered once however often it is read: by its seq, or by where it was in the log (the
  topic, the epoch of its log, partition and offset) when it has none: a replay from forgotten offsets
  reads the same garbage again.
- `reason` keeps what `GET /v1/events/{id}` shows (`code: detail`); `code` and `detail` are its two parts.
- `event_id` is NULL when the message did not carry a readable one.
- Rows written before this revision were published (or lost) by the old best-effort copy: marked published.
  Their raw bytes and source were never stored, so those columns are nullable; so are the raw key and value
  of a new row, since a Kafka record may have none.

The aggregate role already has SELECT, INSERT, UPDATE and DELETE on the table (0002); an identity column
needs no grant on its sequence.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_pkey")
    op.execute("""
    ALTER TABLE dead_letters
        ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT dead_letters_pkey PRIMARY KEY,
        ALTER COLUMN seq DROP NOT NULL,
        ADD CONSTRAINT dead_letters_seq_key UNIQUE (seq),
        ALTER COLUMN event_id DROP NOT NULL,
        ADD COLUMN code text,
        ADD COLUMN detail text,
        ADD COLUMN raw_key bytea,
        ADD COLUMN raw_value bytea,
        ADD COLUMN source_topic text,
        ADD COLUMN source_partition integer,
        ADD COLUMN source_epoch integer,
        ADD COLUMN source_offset bigint,
        ADD COLUMN published_at timestamptz,
        ADD CONSTRAINT dead_letters_source_key UNIQUE (source_topic, source_epoch, source_partition, source_offset)
    """)
    op.execute("""
    UPDATE dead_letters SET
        code = split_part(reason, ': ', 1),
        detail = CASE WHEN position(': ' IN reason) > 0 THEN substr(reason, position(': ' IN reason) + 2) ELSE '' END,
        event_id = nullif(event_id, ''),
        published_at = created_at
    """)
    # The relay's claim reads only what waits; the index stays as small as the backlog.
    op.execute("CREATE INDEX dead_letters_unpublished ON dead_letters (id) WHERE published_at IS NULL")


def downgrade() -> None:
    # Letters without a seq had no row before this revision: they cannot be kept in the old shape.
    op.execute("DELETE FROM dead_letters WHERE seq IS NULL")
    op.execute("DROP INDEX dead_letters_unpublished")
    op.execute("UPDATE dead_letters SET event_id = '' WHERE event_id IS NULL")
    op.execute("ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_pkey")
    op.execute("""
    ALTER TABLE dead_letters
        DROP CONSTRAINT dead_letters_seq_key,
        DROP CONSTRAINT dead_letters_source_key,
        DROP COLUMN id,
        DROP COLUMN code,
        DROP COLUMN detail,
        DROP COLUMN raw_key,
        DROP COLUMN raw_value,
        DROP COLUMN source_topic,
        DROP COLUMN source_partition,
        DROP COLUMN source_epoch,
        DROP COLUMN source_offset,
        DROP COLUMN published_at,
        ALTER COLUMN seq SET NOT NULL,
        ALTER COLUMN event_id SET NOT NULL,
        ADD CONSTRAINT dead_letters_pkey PRIMARY KEY (seq)
    """)
