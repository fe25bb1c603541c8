"""The aggregator's SQL: a handful of set-based statements per batch, whatever its size.

Nothing here commits: the batch's unit of work (service.py) owns the one transaction that applies the
events and stores the offsets together.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.aggregate.dead_letters import DeadLetter
from services.aggregate.rollup import Key, Row
from shared.db import json_document, lock_advisory, province_lock
from shared.values import pair_or_none


@dataclass(frozen=True, slots=True)
class StoredOffset:
    next_offset: int
    epoch: int


async def lock_writers(
    conn: AsyncConnection, group: str, topic: str, partitions: Iterable[int], provinces: Iterable[str]
) -> None:
    """Serialise with any other consumer writing the same partitions or provinces.

    One writer per partition is what Kafka promises, but only between rebalances: a consumer that lost a
    partition may still be finishing a batch of it. Locking the partitions makes the offset check below
    airtight; locking the provinces (`edition/province`, the partition key) also covers a topic
    recreated with another partition count, and `d06 quality rebuild` takes the same province locks.
    """
    names = [f"offsets/{group}/{topic}/{p}" for p in set(partitions)]
    await lock_advisory(conn, names + [province_lock(province) for province in set(provinces)])


async def read_offsets(conn: AsyncConnection, group: str, topic: str) -> tuple[int, dict[int, StoredOffset]]:
    """The topic's current epoch (0 until the relay first bumps it) and the offsets stored for the group."""
    rows = (await conn.execute(
        text("""
        SELECT -1 AS partition, 0::bigint AS next_offset,
               coalesce((SELECT epoch FROM topic_epochs WHERE topic = :topic), 0) AS epoch
        UNION ALL
        SELECT partition, next_offset, epoch FROM consumer_offsets
        WHERE consumer_group = :group AND topic = :topic
        """),
        {"group": group, "topic": topic},
    )).all()
    current = next(r.epoch for r in rows if r.partition == -1)
    return current, {r.partition: StoredOffset(r.next_offset, r.epoch) for r in rows if r.partition >= 0}


async def current_epoch(conn: AsyncConnection, topic: str) -> int:
    value = await conn.scalar(
        text("SELECT coalesce((SELECT epoch FROM topic_epochs WHERE topic = :topic), 0)"), {"topic": topic}
    )
    return int(value or 0)


# Keys and rows travel as one JSON document each (shared.db.json_document).
_LOAD = text("""
SELECT r.edition, r.unit, r.indicator, r.period, r.rep_num, r.rep_den, r.rep_seq,
       r.comp_num, r.comp_den, r.reporting, r.accepted_at
FROM json_to_recordset(CAST(:keys AS json)) AS k(e text, u text, i text, p text)
JOIN rollups r ON r.edition = k.e AND r.unit = k.u AND r.indicator = k.i AND r.period = k.p
""")

_UPSERT = text("""
INSERT INTO rollups AS r (edition, unit, indicator, period, rep_num, rep_den, rep_seq,
                          comp_num, comp_den, reporting, accepted_at, updated_at)
SELECT e, u, i, p, rn, rd, rs, cn, cd, rp, at, now()
FROM json_to_recordset(CAST(:rows AS json))
     AS t(e text, u text, i text, p text, rn numeric, rd numeric, rs bigint, cn numeric, cd numeric,
          rp integer, at timestamptz)
ON CONFLICT (edition, unit, indicator, period) DO UPDATE SET
    rep_num = excluded.rep_num, rep_den = excluded.rep_den, rep_seq = excluded.rep_seq,
    comp_num = excluded.comp_num, comp_den = excluded.comp_den, reporting = excluded.reporting,
    accepted_at = excluded.accepted_at, updated_at = excluded.updated_at
""")


async def load_rows(conn: AsyncConnection, keys: Collection[Key]) -> dict[Key, Row]:
    """The stored rows among `keys`, in one statement (absent keys simply do not come back)."""
    if not keys:
        return {}
    document = json_document([{"e": e, "u": u, "i": i, "p": p} for e, u, i, p in keys])
    result = await conn.execute(_LOAD, {"keys": document})
    return {
        (r[0], r[1], r[2], r[3]): Row(
            reported=pair_or_none(r[4], r[5]),
            rep_seq=r[6],
            computed=pair_or_none(r[7], r[8]),
            reporting=r[9],
            accepted_at=r[10],
        )
        for r in result
    }


async def upsert_rows(conn: AsyncConnection, rows: dict[Key, Row], keys: Collection[Key]) -> int:
    """Write the rows of `keys` with one INSERT … ON CONFLICT; returns how many."""
    if not keys:
        return 0
    items: list[dict[str, object]] = []
    for key in keys:
        row = rows[key]
        reported, computed = row.reported, row.computed
        items.append({
            "e": key[0], "u": key[1], "i": key[2], "p": key[3],
            "rn": None if reported is None else reported.num, "rd": None if reported is None else reported.den,
            "rs": row.rep_seq,
            "cn": None if computed is None else computed.num, "cd": None if computed is None else computed.den,
            "rp": row.reporting, "at": row.accepted_at,
        })
    await conn.execute(_UPSERT, {"rows": json_document(items)})
    return len(items)


async def store_offsets(
    conn: AsyncConnection, group: str, topic: str, epoch: int, next_offsets: dict[int, int]
) -> None:
    if not next_offsets:
        return
    await conn.execute(
        text("""
        INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, epoch)
        SELECT :group, :topic, p, o, :epoch
        FROM unnest(CAST(:p AS integer[]), CAST(:o AS bigint[])) AS t(p, o)
        ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET
            next_offset = excluded.next_offset, epoch = excluded.epoch
        """),
        {
            "group": group, "topic": topic, "epoch": epoch,
            "p": list(next_offsets), "o": list(next_offsets.values()),
        },
    )


async def insert_dead_letters(conn: AsyncConnection, topic: str, epoch: int, letters: list[DeadLetter]) -> int:
    """Store every letter, with or without a seq, its message's bytes exactly as they came; returns how many
    rows are new (a message read again, known by its seq or by its place in the log, adds none)."""
    if not letters:
        return 0
    result = await conn.execute(
        text("""
        INSERT INTO dead_letters (seq, event_id, code, detail, reason, payload, raw_key, raw_value,
                                  source_topic, source_epoch, source_partition, source_offset)
        SELECT s, e, c, d, r, CAST(pl AS jsonb), k, v, :topic, :epoch, p, o
        FROM unnest(CAST(:s AS bigint[]), CAST(:e AS text[]), CAST(:c AS text[]), CAST(:d AS text[]),
                    CAST(:r AS text[]), CAST(:pl AS text[]), CAST(:k AS bytea[]), CAST(:v AS bytea[]),
                    CAST(:p AS integer[]), CAST(:o AS bigint[]))
             AS t(s, e, c, d, r, pl, k, v, p, o)
        ON CONFLICT DO NOTHING
        """),
        {
            "topic": topic, "epoch": epoch,
            "s": [dl.seq for dl in letters],
            "e": [dl.event_id for dl in letters],
            "c": [dl.reason.value for dl in letters],
            "d": [dl.detail for dl in letters],
            "r": [dl.reason_text for dl in letters],
            "pl": [dl.payload_json() for dl in letters],
            "k": [dl.message.key for dl in letters],
            "v": [dl.message.value for dl in letters],
            "p": [dl.message.partition for dl in letters],
            "o": [dl.message.offset for dl in letters],
        },
    )
    return int(result.rowcount)


@dataclass(frozen=True, slots=True)
class Unpublished:
    """Dead letters claimed for the topic: their ids, and each as (key, value) for the producer."""

    ids: list[int]
    records: list[tuple[bytes | None, bytes]]


async def claim_unpublished_dead_letters(conn: AsyncConnection, limit: int) -> Unpublished:
    """The oldest letters not yet on the topic, locked until this transaction ends (a letter another
    replica's relay holds is skipped), encoded as the topic carries them: the raw key, and the letter as
    JSON (its `payload` is the message as jsonb could take it; the exact bytes stay in the table)."""
    rows = (await conn.execute(
        text("""
        SELECT id, raw_key, jsonb_build_object(
                   'reason', code, 'detail', detail, 'seq', seq, 'event_id', coalesce(event_id, ''),
                   'source', jsonb_build_object('topic', source_topic, 'partition', source_partition,
                                                'offset', source_offset),
                   'payload', payload)::text AS letter
        FROM dead_letters WHERE published_at IS NULL
        ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
        """),
        {"limit": limit},
    )).all()
    return Unpublished([r.id for r in rows], [(r.raw_key, r.letter.encode()) for r in rows])


async def mark_dead_letters_published(conn: AsyncConnection, ids: list[int]) -> None:
    await conn.execute(
        text("UPDATE dead_letters SET published_at = now() WHERE id = ANY(CAST(:ids AS bigint[]))"), {"ids": ids}
    )


async def count_unpublished_dead_letters(conn: AsyncConnection) -> int:
    return int(await conn.scalar(text("SELECT count(*) FROM dead_letters WHERE published_at IS NULL")) or 0)
