"""Poison or event: what the aggregator sets aside before the roll-up, and why."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from services.aggregate.dead_letters import DeadLetter, Message, Reason, classify, parse, recheck
from services.aggregate.metrics import WeightedHistogram
from shared.catalog import load_catalog
from shared.events import AcceptedEvent
from shared.hierarchy import NATION, Hierarchy, Unit

CATALOG = load_catalog()
UNITS = [
    Unit("legacy", NATION, None, "nation", "", "", None, ()),
    Unit("legacy", "80", NATION, "province", "", "", "80", (NATION,)),
    Unit("legacy", "803", "80", "district", "", "", "80", (NATION, "80")),
    Unit("legacy", "27991", "803", "commune", "", "", "80", (NATION, "80", "803")),
]
HIERARCHY = Hierarchy(UNITS)


def event(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "seq": 7, "event_id": "ev-7", "edition": "legacy", "unit": "27991", "province": "80",
        "indicator": "cccd_issued", "period": "2024-07", "num": "1500", "den": None,
        "accepted_at": datetime(2024, 8, 1, tzinfo=UTC).isoformat(),
    }
    base.update(overrides)
    return base


def msg(value: bytes | None, offset: int = 0) -> Message:
    return Message(partition=1, offset=offset, key=b"legacy/80", value=value)


def verdict(**overrides: object) -> AcceptedEvent | DeadLetter:
    return classify([msg(orjson.dumps(event(**overrides)))], HIERARCHY, CATALOG)[0]


def test_a_good_event_passes() -> None:
    v = verdict()
    assert isinstance(v, AcceptedEvent)
    assert v.num == Decimal(1500)


def test_a_retraction_passes() -> None:
    assert isinstance(verdict(num=None, den=None), AcceptedEvent)


def test_a_ratio_passes_with_both_components() -> None:
    assert isinstance(verdict(indicator="online_dossier_rate", num="8", den="10"), AcceptedEvent)


@pytest.mark.parametrize(
    ("raw", "seq"),
    [
        (b"\xff not json", None),
        (b"[1, 2]", None),
        (orjson.dumps({"seq": 9}), 9),  # fields missing, but its seq still identifies it
        (orjson.dumps(event(num="abc")), 7),
        (orjson.dumps(event(num="NaN")), 7),
        (orjson.dumps(event(num="1e99")), 7),
        (orjson.dumps(event(num=None, den="3")), 7),
        (orjson.dumps(event(seq=0)), None),
        (orjson.dumps(event(accepted_at="2024-08-01T00:00:00")), 7),  # no time zone
    ],
)
def test_malformed_messages(raw: bytes, seq: int | None) -> None:
    v = classify([msg(raw)], HIERARCHY, CATALOG)[0]
    assert isinstance(v, DeadLetter)
    assert v.reason is Reason.MALFORMED
    assert v.seq == seq


def test_a_tombstone_is_malformed() -> None:
    v = parse(msg(None))
    assert isinstance(v, DeadLetter) and v.reason is Reason.MALFORMED


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"indicator": "no_such_indicator"}, Reason.UNKNOWN_INDICATOR),
        ({"indicator": "cmnd_converted"}, Reason.RETIRED_INDICATOR),
        ({"edition": "1999"}, Reason.UNKNOWN_EDITION),
        ({"unit": "99999"}, Reason.UNKNOWN_UNIT),
        ({"period": "2024-H1"}, Reason.BAD_PERIOD),  # cccd_issued is monthly
        ({"period": "2024-13"}, Reason.BAD_PERIOD),
        ({"den": "10"}, Reason.BAD_VALUE),  # a stock has no denominator
        ({"indicator": "online_dossier_rate", "den": None}, Reason.BAD_VALUE),  # a ratio needs one
    ],
)
def test_events_that_cannot_apply(overrides: dict[str, object], reason: Reason) -> None:
    v = verdict(**overrides)
    assert isinstance(v, DeadLetter)
    assert v.reason is reason
    assert v.seq == 7 and v.event_id == "ev-7"
    assert v.reason_text.startswith(reason.value + ": ")


def test_a_unit_added_since_the_last_load_is_accepted_after_a_refresh() -> None:
    m = msg(orjson.dumps(event(unit="27994")))
    first = classify([m], HIERARCHY, CATALOG)
    assert isinstance(first[0], DeadLetter)
    newer = Hierarchy([*UNITS, Unit("legacy", "27994", "803", "commune", "", "", "80", (NATION, "80", "803"))])
    assert isinstance(recheck([m], first, newer, CATALOG)[0], AcceptedEvent)


def test_dead_letter_payloads_are_valid_jsonb() -> None:
    v = classify([msg(orjson.dumps(event(unit="nul\x00unit", event_id="a\x00b")))], HIERARCHY, CATALOG)[0]
    assert isinstance(v, DeadLetter)
    assert v.event_id is not None and "\x00" not in v.event_id
    assert "\\u0000" not in v.payload_json()
    garbage = classify([msg(b"\x00\xff")], HIERARCHY, CATALOG)[0]
    assert isinstance(garbage, DeadLetter)
    assert orjson.loads(garbage.payload_json())["raw"]
    assert (garbage.reason, garbage.seq, garbage.event_id) == (Reason.MALFORMED, None, None)
    assert garbage.message.value == b"\x00\xff"  # what the table keeps, byte for byte


def test_weighted_histogram_counts_identical_observations_at_once() -> None:
    h = WeightedHistogram("x_seconds", "doc", buckets=(0.5, 1.0))
    h.observe(0.2, 3)
    h.observe(0.7)
    h.observe(9.0, 2)
    [family] = list(h.collect())
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("x_seconds_bucket", "0.5")] == 3
    assert samples[("x_seconds_bucket", "1.0")] == 4
    assert samples[("x_seconds_bucket", "+Inf")] == 6
    assert samples[("x_seconds_count", None)] == 6
    assert samples[("x_seconds_sum", None)] == pytest.approx(0.6 + 0.7 + 18.0)
