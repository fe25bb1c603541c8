"""The wire schema of an accepted event on the Kafka topic, shared by the relay and the aggregator.

Numbers travel as strings so that no float ever rounds a figure between the outbox and the rollup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import orjson

#: The NOTIFY channel on which the aggregator announces, in the transaction of each batch that changed
#: rollups, the province trees it changed (`edition/province`, comma-separated); the query service listens
#: to know which answers it keeps in memory are stale.
ROLLUPS_CHANGED = "d06_rollups_changed"

#: The NOTIFY channel on which a trigger on api_keys (migration 0003) announces, in the changing transaction,
#: that a key was revoked, deleted or had its expiry, roles, scope or secret changed.
KEYS_CHANGED = "d06_keys_changed"


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
        """All events of one province tree of one edition share a partition: no row has two writers."""
        return f"{self.edition}/{self.province}".encode()

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "seq": self.seq,
                "event_id": self.event_id,
                "edition": self.edition,
                "unit": self.unit,
                "province": self.province,
                "indicator": self.indicator,
                "period": self.period,
                "num": None if self.num is None else str(self.num),
                "den": None if self.den is None else str(self.den),
                "accepted_at": self.accepted_at.isoformat(),
            }
        )

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
