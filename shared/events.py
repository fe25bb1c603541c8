"""The wire schema of an accepted event on the Kafka topic, shared by the relay and the aggregator.

Numbers travel as strings so that no float ever rounds a figure between the outbox and the rollup.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

#: The NOTIFY channel on which the aggregator announces, in the transaction of each batch that changed
#: rollups, the province trees it changed (`edition/province`, comma-separated); the query service listens
#: to know which answers it keeps in memory are stale.
ROLLUPS_CHANGED = "d06_rollups_changed"


async def announce(conn: AsyncConnection, provinces: Collection[str]) -> None:
    """Tell listeners (the query service's answer caches) which provinces (`edition/province`) this
    transaction changed: rollups, or the flags shown on their values.

    A NOTIFY is delivered at COMMIT and dropped by ROLLBACK: listeners hear of exactly what was committed.
    """
    if provinces:
        await conn.execute(text("SELECT pg_notify(:channel, :provinces)"),
                           {"channel": ROLLUPS_CHANGED, "provinces": ",".join(sorted(provinces))})


#: The NOTIFY channel on which a trigger on api_keys (migration 0003) announces, in the changing transaction,
#: that a key was revoked, deleted or had its expiry, roles, scope or secret changed.
KEYS_CHANGED = "d06_keys_changed"

#: The NOTIFY channel on which a trigger on crosswalk (migration 0005) announces, in the changing transaction,
#: that the crosswalk changed (new weights, a reload): every answer re-expressed through it is stale.
CROSSWALK_CHANGED = "d06_crosswalk_changed"


#: The fields of a message, in order. Numbers are exact decimal strings, `accepted_at` ISO 8601.
WIRE_FIELDS = ("seq", "event_id", "edition", "unit", "province", "indicator", "period", "num", "den", "accepted_at")


def encode(values: tuple[object, ...]) -> bytes:
    """A message from its WIRE_FIELDS' values: the one encoder, used by AcceptedEvent and by the relay,
    which encodes outbox rows without building an AcceptedEvent for each."""
    return orjson.dumps(dict(zip(WIRE_FIELDS, values, strict=True)))


def partition_key(edition: str, province: str) -> bytes:
    """All events of one province tree of one edition share a partition: no row has two writers."""
    return f"{edition}/{province}".encode()


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    seq: int
    event_id: str
    edition: str
    unit: str
    province: str
    indicator: str
    period: str
    num: Decimal | None  # None with den None is a retraction
    den: Decimal | None
    accepted_at: datetime

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.edition, self.unit, self.indicator, self.period)

    @property
    def partition_key(self) -> bytes:
        return partition_key(self.edition, self.province)

    def to_bytes(self) -> bytes:
        return encode((self.seq, self.event_id, self.edition, self.unit, self.province, self.indicator, self.period,
                       None if self.num is None else str(self.num), None if self.den is None else str(self.den),
                       self.accepted_at.isoformat()))

    @classmethod
    def from_bytes(cls, raw: bytes) -> AcceptedEvent:
        """Parse a message; raises ValueError (or KeyError/TypeError) on anything malformed."""
        d = orjson.loads(raw)
        return cls(
            seq=int(d["seq"]),
            event_id=str(d["event_id"]),
            edition=str(d["edition"]),
            unit=str(d["unit"]),
            province=str(d["province"]),
            indicator=str(d["indicator"]),
            period=str(d["period"]),
            num=None if d["num"] is None else Decimal(d["num"]),
            den=None if d["den"] is None else Decimal(d["den"]),
            accepted_at=datetime.fromisoformat(d["accepted_at"]),
        )
