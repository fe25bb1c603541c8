"""The outbox and the relay's bookkeeping, in SQL: every statement the ingest service runs.

Functions take an open `AsyncConnection` and never commit: the request handler or the relay batch
decides the transaction. Hot paths are one set-based statement each (`json_to_recordset`, `= ANY`).

Publication by watermark. The relay keeps, per topic, `relay_watermarks.up_to`: every seq at or below it
is published. A round reads the rows above it by seq, produces them and advances it in one transaction;
no outbox row is ever written again. Seqs are handed out at insert but transactions commit in any order,
so a round must not pass a seq whose transaction is still running: it would be invisible now and below
the watermark once committed, skipped for ever. Hence:

1. A writer registers before its first insert (`register_writer`): in one statement it takes a seq `s0`
   of its own and holds a shared advisory lock whose key is `s0` until its transaction ends. Its rows'
   seqs are taken after that statement, so all are above `s0`.
2. A round (`begin_round`) locks its topic's watermark row (`FOR UPDATE SKIP LOCKED`: one round at a time
   across replicas; the others skip), then reads the sequence's last value `H`, then, in a later
   statement, the lowest `s0` still locked `L`; the bound is `min(H, L - 1)`. Then, in a later statement
   again (READ COMMITTED: a new snapshot), it reads the rows in (watermark, bound].
3. Why nothing is skipped: a row with seq <= H got its seq before H was read, so its writer registered
   before that and, when the locks were read, either still held its lock (then L <= s0 < seq: the row is
   above the bound) or had ended, and PostgreSQL makes a commit visible before it releases the
   transaction's locks, so the row is in the snapshot of step 2's last read (or it was rolled back).
   A seq handed out but never stored (a rolled-back insert, an event_id conflict, a registration) is a
   gap the watermark passes over. The sequence has `CACHE 1` (migration 0011) so that H means what it says.
4. Nothing is counted twice: a round killed after producing and before COMMIT leaves the watermark where
   it was and the same rows go again; the aggregator applies by seq, so repeats change nothing.
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


# Writers' registrations are advisory locks in the two-integer key space, which no other lock of d06 uses
# (the aggregator's are bigint keys): the first integer is WRITER_SPACE plus the high half of s0, the
# second its low half shifted into the integer range (pg_locks shows it back as an unsigned oid).
WRITER_SPACE = 0x0D060000
_LOW_SHIFT = 2**31

# Once per transaction: the transaction-local setting says it has registered (the lock is held to its end).
_REGISTER = text(f"""
SELECT pg_advisory_xact_lock_shared(CAST({WRITER_SPACE} + (s0 >> 32) AS integer),
                                    CAST((s0 & 4294967295) - {_LOW_SHIFT} AS integer)),
       set_config('d06.outbox_writer', CAST(s0 AS text), true)
FROM (SELECT nextval(pg_get_serial_sequence('outbox', 'seq')) AS s0 OFFSET 0) AS registration
WHERE coalesce(current_setting('d06.outbox_writer', true), '') = ''
""")


async def register_writer(conn: AsyncConnection) -> None:
    """Hold back publication above a seq of this transaction's own until it ends (the module's rule 1).
    Every transaction that inserts into the outbox calls it before inserting; a second call does nothing."""
    await conn.execute(_REGISTER)


async def insert_events(
    conn: AsyncConnection, events: Sequence[ValidEvent], *, key_id: str | None, client_addr: str | None,
    dry_run: bool = False,
) -> dict[str, int]:
    """Insert the events (in batch order) whose event_id is new; {event_id: seq} of those inserted.

    `dry_run`: the caller will roll the transaction back, so its rows can never become visible and it
    need not hold back publication (a dry run of a large file would otherwise hold it for minutes)."""
    if not events:
        return {}
    if not dry_run:
        await register_writer(conn)
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


def unpublished(topic_parameter: str, seq: str = "seq") -> str:
    """The condition on an outbox row (its `seq` column) that it is not yet published to the topic the
    parameter names (`:topic` for SQLAlchemy, `$1` for asyncpg)."""
    return f"{seq} > coalesce((SELECT up_to FROM relay_watermarks WHERE topic = {topic_parameter}), 0)"


async def event_status_row(conn: AsyncConnection, event_id: str, topic: str) -> Row[Any] | None:
    """One event with what its status derives from (CONTRACTS.md): dead letter, rollup, publication."""
    result = await conn.execute(
        text(f"""
        SELECT o.seq, o.event_id, o.edition, o.unit, o.indicator, o.period, o.num, o.den, o.comment,
               o.key_id, o.client_addr, o.accepted_at, d.reason AS dead_reason,
               NOT ({unpublished(":topic", "o.seq")}) AS published,
               EXISTS (SELECT 1 FROM rollups r
                       WHERE (r.edition, r.unit, r.indicator, r.period) = (o.edition, o.unit, o.indicator, o.period)
                         AND r.rep_seq >= o.seq) AS applied
        FROM outbox o LEFT JOIN dead_letters d ON d.seq = o.seq
        WHERE o.event_id = :event_id
        """),
        {"event_id": event_id, "topic": topic},
    )
    return result.first()


# The columns of shared.events.WIRE_FIELDS, in order; figures as PostgreSQL's text of the stored numeric.
_ROWS = """
SELECT seq, event_id, edition, unit, province, indicator, period, num::text, den::text, accepted_at
FROM outbox WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3
"""

_LOCK_WATERMARK = text("SELECT up_to FROM relay_watermarks WHERE topic = :topic FOR UPDATE SKIP LOCKED")
# A topic's first round creates its row (and holds it: a row inserted is locked by its transaction).
_CREATE_WATERMARK = text("""
INSERT INTO relay_watermarks (topic, up_to) VALUES (:topic, 0) ON CONFLICT (topic) DO NOTHING RETURNING up_to
""")
_HANDED_OUT = "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('outbox', 'seq')), 0)"
# The lowest seq a running writer registered (NULL: none), in this database only: a server may hold several.
_LOWEST_WRITER = f"""
SELECT min(((CAST(classid AS bigint) - {WRITER_SPACE}) << 32) | ((CAST(objid AS bigint) + {_LOW_SHIFT}) % 4294967296))
FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 2 AND CAST(classid AS bigint) >= {WRITER_SPACE}
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@dataclass(slots=True)
class Round:
    """One round of the relay: the rows above the watermark it may publish, as the relay sends them."""

    watermark: int  # every seq at or below it was published before this round
    bound: int  # rows up to it are all visible now: no running writer can still add one
    limit: int
    seqs: list[int] = field(default_factory=list)
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)  # (partition key, value) in seq order

    @property
    def full(self) -> bool:
        """The limit cut the round short: more rows wait below the bound."""
        return len(self.seqs) >= self.limit

    @property
    def up_to(self) -> int:
        """The watermark once this round's rows are produced: past the gaps up to the bound, unless the
        limit stopped the read before it."""
        return self.seqs[-1] if self.full else self.bound


async def begin_round(conn: AsyncConnection, topic: str, limit: int) -> Round | None:
    """Lock the topic's watermark and read the rows a round may publish (the module's rule 2), encoded as
    AcceptedEvent.to_bytes would encode them: the relay reads thousands of rows a round, and a Row and an
    AcceptedEvent per row cost more than the rest of its work. None when another relay is in a round.
    The transaction must be READ COMMITTED (the default): the rows must be read in a snapshot taken after
    the running writers were looked at."""
    watermark = (await conn.execute(_LOCK_WATERMARK, {"topic": topic})).scalar()
    if watermark is None:
        watermark = (await conn.execute(_CREATE_WATERMARK, {"topic": topic})).scalar()
        if watermark is None:
            return None
    driver = await _driver(conn)
    handed_out = int(await driver.fetchval(_HANDED_OUT))  # first: every seq up to it has been taken
    lowest_writer = await driver.fetchval(_LOWEST_WRITER)  # then: who may still add rows at or below it
    bound = handed_out if lowest_writer is None else min(handed_out, int(lowest_writer) - 1)
    this = Round(watermark, max(bound, watermark), limit)
    if this.bound == watermark:
        return this
    stamps: dict[datetime, str] = {}  # the rows of one request share their accepted_at (its transaction's)
    for row in await driver.fetch(_ROWS, watermark, this.bound, limit):
        accepted_at = row[-1]
        stamp = stamps.get(accepted_at) or stamps.setdefault(accepted_at, accepted_at.isoformat())
        this.seqs.append(row[0])
        this.messages.append((partition_key(row[2], row[4]), encode((*row[:-1], stamp))))
    return this


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, for reads of thousands of rows (SQLAlchemy's rows cost about a
    microsecond each). Only once the transaction has begun on it, which SQLAlchemy does at its first
    statement: locks taken outside it would be released at once."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None or not driver.is_in_transaction():
        raise RuntimeError("the transaction has not begun: run a statement through SQLAlchemy first")
    return driver


async def advance_watermark(conn: AsyncConnection, topic: str, up_to: int) -> None:
    """Everything at or below `up_to` is published (in the round's transaction, which holds the row)."""
    await conn.execute(
        text("UPDATE relay_watermarks SET up_to = :up_to, advanced_at = now() WHERE topic = :topic AND up_to < :up_to"),
        {"topic": topic, "up_to": up_to},
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


async def backlog(conn: AsyncConnection, topic: str) -> tuple[int, float]:
    """(rows not yet published, age in seconds of the oldest of them; 0 when none)."""
    row = (await conn.execute(text(f"""
        SELECT count(*) AS n, coalesce(EXTRACT(EPOCH FROM now() - min(accepted_at)), 0) AS age
        FROM outbox WHERE {unpublished(":topic")}
    """), {"topic": topic})).one()
    return int(row.n), float(row.age)


@dataclass(frozen=True, slots=True)
class LogRecovery:
    epoch: int  # the topic's new epoch: consumers re-read the new log from its start
    requeued: int  # outbox rows the watermark moved back over, to be published again


async def recover_lost_log(conn: AsyncConnection, topic: str) -> LogRecovery:
    """After the broker lost `topic`'s log: new epoch, forget produced offsets, requeue what is not applied.

    Run it in one transaction. The watermark moves back to just below the oldest published event that the
    read model does not hold (neither it nor a later event of the same key: `rep_seq >= seq`) and that the
    aggregator did not dead-letter, so nothing accepted is lost. Applied events above that one are sent
    again too: harmless, the aggregator applies by seq. Safe to run at any time.
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
    # Waits for a round in progress: the watermark it commits is the one moved back.
    watermark = (await conn.execute(
        text("SELECT up_to FROM relay_watermarks WHERE topic = :topic FOR UPDATE"), {"topic": topic}
    )).scalar()
    if watermark is None:
        return LogRecovery(int(epoch), 0)
    oldest = (await conn.execute(text("""
        SELECT min(seq) FROM outbox o
        WHERE seq <= :watermark
          AND NOT EXISTS (SELECT 1 FROM rollups r
                          WHERE (r.edition, r.unit, r.indicator, r.period) = (o.edition, o.unit, o.indicator, o.period)
                            AND r.rep_seq >= o.seq)
          AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = o.seq)
    """), {"watermark": watermark})).scalar()
    if oldest is None:
        return LogRecovery(int(epoch), 0)
    requeued = (await conn.execute(
        text("SELECT count(*) FROM outbox WHERE seq >= :oldest AND seq <= :watermark"),
        {"oldest": oldest, "watermark": watermark},
    )).scalar_one()
    await conn.execute(text("UPDATE relay_watermarks SET up_to = :up_to WHERE topic = :topic"),
                       {"topic": topic, "up_to": oldest - 1})
    return LogRecovery(int(epoch), int(requeued))
