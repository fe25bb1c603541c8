"""The outbox and the relay's bookkeeping, in SQL: every statement the ingest service runs.

Functions take an open `AsyncConnection` and never commit: the request handler or the relay batch
decides the transaction. Hot paths are one set-based statement each (`json_to_recordset`, `= ANY`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest.validation import ValidEvent
from shared.events import encode, partition_key

# The batch travels as one JSON document, an array per event in the columns' order (orjson writes tuples of
# strings much faster than dataclasses), that PostgreSQL unpacks itself: one parameter instead of ten
# arrays whose every element the driver would encode in Python, and one row of two arrays back instead of a
# row per event. As jsonb, each element is parsed once and its fields are read by position.
_INSERT = text("""
WITH inserted AS (
    INSERT INTO outbox (event_id, content_hash, edition, unit, province, indicator, period, num, den, comment,
                        key_id, client_addr)
    SELECT e->>0, e->>1, e->>2, e->>3, e->>4, e->>5, e->>6, CAST(e->>7 AS numeric), CAST(e->>8 AS numeric),
           e->>9, CAST(:key_id AS text), CAST(:client_addr AS text)
    FROM jsonb_array_elements(CAST(:events AS jsonb)) WITH ORDINALITY AS t(e, i)
    ORDER BY t.i  -- seqs follow the batch order: a later event in the batch wins over an earlier one
    ON CONFLICT (event_id) DO NOTHING
    RETURNING seq, event_id
)
SELECT coalesce(array_agg(event_id), '{}') AS event_ids, coalesce(array_agg(seq), '{}') AS seqs FROM inserted
""")


async def insert_events(
    conn: AsyncConnection, events: Sequence[ValidEvent], *, key_id: str | None, client_addr: str | None
) -> dict[str, int]:
    """Insert the events (in batch order) whose event_id is new; {event_id: seq} of those inserted."""
    if not events:
        return {}
    document = orjson.dumps([  # figures as their exact text
        (e.event_id, e.content_hash, e.edition, e.unit, e.province, e.indicator, e.period,
         None if e.num is None else str(e.num), None if e.den is None else str(e.den), e.comment)
        for e in events
    ]).decode()
    row = (await conn.execute(_INSERT, {"key_id": key_id, "client_addr": client_addr, "events": document})).one()
    return dict(zip(row.event_ids, row.seqs, strict=True))


async def stored_hashes(conn: AsyncConnection, event_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """{event_id: (seq, content_hash)} of events already in the outbox."""
    if not event_ids:
        return {}
    rows = await conn.execute(
        text("SELECT event_id, seq, content_hash FROM outbox WHERE event_id = ANY(CAST(:ids AS text[]))"),
        {"ids": list(event_ids)},
    )
    return {r.event_id: (r.seq, r.content_hash) for r in rows}


# The latest event of each key, by the hash index of migration 0010 on the key's text (one probe per key,
# then the key's few events, each column rechecked). The keys travel as one JSON document and come back as
# one row of arrays, as _INSERT's events do: four text arrays cost the driver an isinstance check per
# element, and a row per key cost SQLAlchemy more than PostgreSQL its probe.
_LATEST = text("""
SELECT coalesce(array_agg(k.i), '{}') AS found, coalesce(array_agg(l.num), '{}') AS nums,
       coalesce(array_agg(l.den), '{}') AS dens, coalesce(array_agg(l.comment), '{}') AS comments
FROM jsonb_array_elements(CAST(:keys AS jsonb)) WITH ORDINALITY AS k(key, i)
CROSS JOIN LATERAL (
    SELECT o.num, o.den, o.comment FROM outbox o
    WHERE (o.edition || ' ' || o.unit || ' ' || o.indicator || ' ' || o.period)
          = ((k.key->>0) || ' ' || (k.key->>1) || ' ' || (k.key->>2) || ' ' || (k.key->>3))
      AND (o.edition, o.unit, o.indicator, o.period) = (k.key->>0, k.key->>1, k.key->>2, k.key->>3)
    ORDER BY o.seq DESC LIMIT 1
) AS l
""")


class Latest(NamedTuple):
    """What the latest accepted event of a key says: its figures (both None: it withdrew the value)."""

    num: Decimal | None
    den: Decimal | None
    comment: str | None


async def latest_contents(
    conn: AsyncConnection, keys: Sequence[tuple[str, str, str, str]]
) -> dict[tuple[str, str, str, str], Latest]:
    """{(edition, unit, indicator, period): Latest} of each key that has an accepted event."""
    distinct = list(dict.fromkeys(keys))
    if not distinct:
        return {}
    row = (await conn.execute(_LATEST, {"keys": orjson.dumps(distinct).decode()})).one()
    return {distinct[i - 1]: Latest(num, den, comment)
            for i, num, den, comment in zip(row.found, row.nums, row.dens, row.comments, strict=True)}


async def event_status_row(conn: AsyncConnection, event_id: str) -> Row[Any] | None:
    """One event with what its status derives from (CONTRACTS.md): dead letter, rollup, publication."""
    result = await conn.execute(
        text("""
        SELECT o.seq, o.event_id, o.edition, o.unit, o.indicator, o.period, o.num, o.den, o.comment,
               o.key_id, o.client_addr, o.accepted_at, o.published_at, d.reason AS dead_reason,
               EXISTS (SELECT 1 FROM rollups r
                       WHERE (r.edition, r.unit, r.indicator, r.period) = (o.edition, o.unit, o.indicator, o.period)
                         AND r.rep_seq >= o.seq) AS applied
        FROM outbox o LEFT JOIN dead_letters d ON d.seq = o.seq
        WHERE o.event_id = :event_id
        """),
        {"event_id": event_id},
    )
    return result.first()


# The columns of shared.events.WIRE_FIELDS, in order; figures as PostgreSQL's text of the stored numeric.
_CLAIM = """
SELECT seq, event_id, edition, unit, province, indicator, period, num::text, den::text, accepted_at
FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED
"""


@dataclass(slots=True)
class Claimed:
    """Outbox rows locked for publication, as the relay sends them."""

    seqs: list[int] = field(default_factory=list)
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)  # (partition key, value) in seq order


async def claim_unpublished(conn: AsyncConnection, limit: int) -> Claimed:
    """The oldest unpublished rows, locked for this transaction (rows another relay holds are skipped) and
    encoded as AcceptedEvent.to_bytes would encode them: the relay reads thousands of rows a batch, and a
    Row and an AcceptedEvent per row cost more than the rest of its work."""
    claimed = Claimed()
    stamps: dict[datetime, str] = {}  # the rows of one request share their accepted_at (its transaction's)
    for row in await (await _driver(conn)).fetch(_CLAIM, limit):
        accepted_at = row[-1]
        stamp = stamps.get(accepted_at) or stamps.setdefault(accepted_at, accepted_at.isoformat())
        claimed.seqs.append(row[0])
        claimed.messages.append((partition_key(row[2], row[4]), encode((*row[:-1], stamp))))
    return claimed


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, for reads of thousands of rows (SQLAlchemy's rows cost about a
    microsecond each). Only once the transaction has begun on it, which SQLAlchemy does at its first
    statement: locks taken outside it would be released at once."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None or not driver.is_in_transaction():
        raise RuntimeError("the transaction has not begun: run a statement through SQLAlchemy first")
    return driver


async def mark_published(conn: AsyncConnection, seqs: Sequence[int]) -> None:
    await conn.execute(
        text("UPDATE outbox SET published_at = now() WHERE seq = ANY(CAST(:seqs AS bigint[]))"),
        {"seqs": list(seqs)},
    )


async def relay_offsets(conn: AsyncConnection, topic: str) -> dict[int, int]:
    """{partition: offset after the last record the relay produced there} for the current log."""
    rows = await conn.execute(
        text("SELECT partition, next_offset FROM relay_offsets WHERE topic = :topic"), {"topic": topic}
    )
    return {r.partition: r.next_offset for r in rows}


async def advance_relay_offsets(conn: AsyncConnection, topic: str, next_offsets: dict[int, int]) -> None:
    if not next_offsets:
        return
    # GREATEST: another relay replica may have produced further into the same partition meanwhile.
    await conn.execute(
        text("""
        INSERT INTO relay_offsets (topic, partition, next_offset)
        SELECT CAST(:topic AS text), p, o
        FROM unnest(CAST(:partitions AS integer[]), CAST(:offsets AS bigint[])) AS t(p, o)
        ON CONFLICT (topic, partition)
        DO UPDATE SET next_offset = GREATEST(relay_offsets.next_offset, excluded.next_offset)
        """),
        {"topic": topic, "partitions": list(next_offsets), "offsets": list(next_offsets.values())},
    )


async def backlog(conn: AsyncConnection) -> tuple[int, float]:
    """(rows not yet published, age in seconds of the oldest of them; 0 when none)."""
    row = (await conn.execute(text("""
        SELECT count(*) AS n, coalesce(EXTRACT(EPOCH FROM now() - min(accepted_at)), 0) AS age
        FROM outbox WHERE published_at IS NULL
    """))).one()
    return int(row.n), float(row.age)


@dataclass(frozen=True, slots=True)
class LogRecovery:
    epoch: int  # the topic's new epoch: consumers re-read the new log from its start
    requeued: int  # outbox rows marked for republication


async def recover_lost_log(conn: AsyncConnection, topic: str) -> LogRecovery:
    """After the broker lost `topic`'s log: new epoch, forget produced offsets, requeue what is not applied.

    Run it in one transaction. An event is requeued unless the read model already holds it (or a
    later event of the same key: `rep_seq >= seq`) or the aggregator dead-lettered it, so nothing
    accepted is lost and applied events are not sent again. Republishing twice is harmless: the
    aggregator applies by seq. Safe to run at any time (an operator's `d06 replay` can reuse it).
    """
    epoch = (await conn.execute(
        text("""
        INSERT INTO topic_epochs AS t (topic, epoch, changed_at) VALUES (:topic, 1, now())
        ON CONFLICT (topic) DO UPDATE SET epoch = t.epoch + 1, changed_at = now()
        RETURNING epoch
        """),
        {"topic": topic},
    )).scalar_one()
    await conn.execute(text("DELETE FROM relay_offsets WHERE topic = :topic"), {"topic": topic})
    requeued = await conn.execute(text("""
        UPDATE outbox o SET published_at = NULL
        WHERE published_at IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM rollups r
                          WHERE (r.edition, r.unit, r.indicator, r.period) = (o.edition, o.unit, o.indicator, o.period)
                            AND r.rep_seq >= o.seq)
          AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = o.seq)
    """))
    return LogRecovery(int(epoch), int(requeued.rowcount))
